"""``compress``: model folder in, compressed HF checkpoint + ``manifest.json`` out.

Methods (``METHODS``):

- ``magnitude``, ``wanda``, ``sparsegpt``: unstructured per-row (or ``nm``) sparsity in every Linear
  of the chosen blocks; ``owl=True`` replaces the uniform sparsity by OWL's per-layer allocation
  (outlier ratios of the method's own score, Wanda's for SparseGPT as in the OWL paper).
- ``llmc-wanda``, ``llmc-sparsegpt``: the same through llm-compressor (explicit per-layer sparsities).
- ``depth``: removes round(sparsity x layers) decoder layers with the lowest block influence.
- ``w4a16`` (GPTQ, 4-bit weights, group 128) and ``fp8`` (FP8 weights, dynamic per-token FP8
  activations) through llm-compressor, saved as compressed-tensors.

SparseGPT is sequential, as in its paper: block l is calibrated on the outputs of the already-pruned
blocks before it (each pass stops right after block l), so its weight updates see the inputs they
will get. Wanda takes every block's input norms from one pass over the dense model (measured: one
pass per block cost 8x the time of llm-compressor's single pass on the tiny model, for a mask that
only changes through the input norms). The vision tower stays
dense unless ``include_vision``; the LM head, embeddings and the vision merger are never pruned.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from srice.compress import masks, owl_allocation, scores
from srice.compress import sparsegpt as sgpt
from srice.compress.config import METHODS, CompressConfig
from srice.errors import InputError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "config.json", "recipe.yaml")


@dataclass(frozen=True)
class CompressResult:
    out_dir: Path
    manifest: dict
    seconds: float  # the method itself: capture + pruning/quantization, not loading or saving


def resolve_model(model: str | Path) -> tuple[Path, object | None]:
    """A model folder and the registry variant it came from (None for a plain path)."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise InputError(f"{path} is not a model folder (no config.json)")
        from srice.serving.variants import load_variants

        for v in load_variants().values():
            if (
                not v.is_hub
                and not v.model.startswith("builtin:")
                and Path(v.model_path()).resolve() == path.resolve()
            ):
                return path, v
        return path, None
    from srice.serving.variants import get_variant

    try:
        variant = get_variant(str(model))
    except InputError:
        raise InputError(f"model not found: {model!r} is neither a folder nor a registered variant") from None
    if variant.is_hub:
        raise InputError(f"variant {variant.name!r} is a hub model; download it and pass its folder")
    return Path(variant.model_path()), variant


def compress(
    model: str | Path,
    out_dir: str | Path,
    config: CompressConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CompressResult:
    """Compress ``model`` (a folder or a variant name) as ``config`` says, into ``out_dir``."""
    say = progress or (lambda text: None)
    source, variant = resolve_model(model)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"output folder {out} exists and is not empty")
    if out.resolve() == source.resolve():
        raise InputError("output folder must differ from the model folder")
    method, calib = config.method, config.calib

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.compress import capture

    say(f"loading {source}")
    processor = AutoProcessor.from_pretrained(str(source))
    net = AutoModelForImageTextToText.from_pretrained(str(source), dtype=torch.float32).eval()
    batches, calib_info = [], None
    if config.needs_data:
        from srice.eval.data import load_items

        items = load_items(calib, limit=config.calib_n)
        if not items:
            raise InputError(f"calibration data {calib} has no questions")
        batches = capture.calibration_inputs(processor, items)
        calib_info = {
            "data": str(calib),
            "samples": len(batches),
            "tokens": int(sum(b["input_ids"].numel() for b in batches)),
            "sha256": capture.data_hash(batches),
        }
    info: dict = {}
    began = time.perf_counter()
    say(f"{method}: compressing")
    with torch.no_grad():
        pruned_names = _run(net, batches, config, info, say)
    seconds = time.perf_counter() - began

    say(f"saving {out}")
    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():  # tokenizer, processor, chat template, generation config
        if f.is_file() and f.name not in WEIGHT_FILES and not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    net.save_pretrained(str(out))
    manifest = {
        "method": method,
        "description": METHODS[method],
        "base_model": str(source),
        "base_variant": variant.name if variant else None,
        "parameters": {
            "sparsity": config.sparsity,
            "nm": f"{config.nm[0]}:{config.nm[1]}" if config.nm else None,
            "owl": config.owl,
            "owl_m": config.owl_m if config.owl else None,
            "owl_lambda": config.owl_lambda if config.owl else None,
            "owl_clamp": config.owl_clamp if config.owl else None,
            "include_vision": config.include_vision,
            "calib_n": config.calib_n if config.needs_data else None,
        },
        "calibration": calib_info,
        "seconds": round(seconds, 3),
        **info,
    }
    if pruned_names is not None:
        manifest["achieved"] = _achieved(net, pruned_names)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return CompressResult(out, manifest, seconds)


def _achieved(net, names: dict[str, list[str]]) -> dict:
    """Measured share of zeros per Linear and per block, and overall over the pruned Linears."""
    modules = dict(net.named_modules())
    per_linear, per_block, zeros, total = {}, {}, 0, 0
    for block, linears in names.items():
        bz, bt = 0, 0
        for name in linears:
            w = modules[name].weight
            z = int((w == 0).sum())
            per_linear[name] = round(z / w.numel(), 6)
            bz, bt = bz + z, bt + w.numel()
        per_block[block] = round(bz / bt, 6)
        zeros, total = zeros + bz, total + bt
    return {
        "overall": round(zeros / total, 6) if total else 0.0,
        "per_block": per_block,
        "per_linear": per_linear,
    }


def _run(net, batches, plan: CompressConfig, info: dict, say) -> dict[str, list[str]] | None:
    """Apply the method to ``net`` in place; returns block -> pruned Linear names for pruning methods."""
    from srice.compress import capture, depth

    text_name, text_list, text_blocks, vision_blocks = capture.find_blocks(net)
    blocks = (vision_blocks if plan.include_vision else []) + text_blocks  # module order: vision first
    if plan.method == "depth":
        influence = capture.block_influence(net, batches, text_blocks)
        n = depth.count_for(plan.sparsity, len(text_blocks))
        drop = depth.layers_to_drop(influence, n)
        keep = depth.drop_layers(text_list, drop)
        text_config = getattr(net.config, "text_config", net.config)
        changes = depth.fix_config(text_config, keep)
        info["depth"] = {
            "block_influence": [round(x, 6) for x in influence],
            "removed_layers": drop,
            "kept_layers": keep,
            "config_changes": changes,
        }
        return None
    if plan.method in ("w4a16", "fp8"):
        from srice.compress import quant

        quant.quantize(net, plan.method, batches, include_vision=plan.include_vision)
        info["quantization"] = {"scheme": quant.SCHEMES[plan.method], "format": "compressed-tensors"}
        return None

    sparsities = [plan.sparsity] * len(blocks)
    if plan.owl:
        sparsities = _owl_allocation(net, batches, blocks, plan, info)
    names = {b.name: list(b.linears()) for b in blocks}
    info["target_sparsity"] = {b.name: round(s, 6) for b, s in zip(blocks, sparsities)}
    if plan.method.startswith("llmc-"):
        from srice.compress import quant

        classes = sorted({type(b.module).__name__ for b in blocks})
        quant.prune(net, plan.method.removeprefix("llmc-"), classes, sparsities, batches,
                    nm=plan.nm, include_vision=plan.include_vision)  # fmt: skip
        return names
    sequential = plan.method == "sparsegpt"
    stats = {}
    if plan.method == "wanda":  # one pass over the dense model, as llm-compressor's basic pipeline
        stats = capture.linear_stats(net, batches, {n: m for b in blocks for n, m in b.linears().items()})
    for i, (block, s) in enumerate(zip(blocks, sparsities)):
        say(f"{plan.method}: block {i + 1}/{len(blocks)} {block.name} at {s:.3f}")
        linears = block.linears()
        if sequential:
            stats = capture.linear_stats(net, batches, linears, hessian=True, stop_after=block.module)
        for name, layer in linears.items():
            w = layer.weight.data
            if plan.method == "sparsegpt":
                st = stats[name]
                layer.weight.data = sgpt.prune(w, st.hessian / st.tokens, s, nm=plan.nm)
                continue
            score = (
                scores.magnitude(w) if plan.method == "magnitude" else scores.wanda(w, stats[name].input_norm)
            )
            layer.weight.data = masks.apply_mask(w, masks.make_mask(score, s, plan.nm))
    return names


def _owl_allocation(net, batches, blocks, plan: CompressConfig, info: dict) -> list[float]:
    """Outlier ratio of each block's scores on the dense model, then OWL's allocation."""
    from srice.compress import capture

    ratios = []
    all_linears = {n: m for b in blocks for n, m in b.linears().items()}
    stats = {} if plan.method == "magnitude" else capture.linear_stats(net, batches, all_linears)
    for block in blocks:
        block_scores = [
            scores.magnitude(m.weight)
            if plan.method == "magnitude"
            else scores.wanda(m.weight, stats[n].input_norm)
            for n, m in block.linears().items()
        ]
        ratios.append(owl_allocation.outlier_ratio(block_scores, plan.owl_m))
    allocation = owl_allocation.allocate(ratios, plan.sparsity, plan.owl_lambda, clamp=plan.owl_clamp)
    info["owl"] = {
        "outlier_ratio": {b.name: r for b, r in zip(blocks, ratios)},
        "lambda_effective": owl_allocation.effective_lambda(plan.sparsity, plan.owl_lambda, plan.owl_clamp),
        "rule": "clamped to S +- lambda" if plan.owl_clamp else "reference (luuyin/OWL)",
    }
    return allocation
