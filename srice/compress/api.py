"""``compress``: model folder in, compressed HF checkpoint + ``manifest.json`` out.

Methods (``METHODS``):

- ``magnitude``, ``wanda``, ``sparsegpt``: unstructured per-row (or ``nm``) sparsity in every Linear
  of the chosen blocks; ``owl=True`` replaces the uniform sparsity by OWL's per-layer allocation
  (outlier ratios of the method's own score, Wanda's for SparseGPT as in the OWL paper).
- ``llmc-wanda``, ``llmc-sparsegpt``: the same through llm-compressor (explicit per-layer sparsities).
- ``depth``: removes round(sparsity x layers) decoder layers with the lowest block influence.
- ``w4a16`` (GPTQ, 4-bit weights, group 128) and ``fp8`` (FP8 weights, dynamic per-token FP8
  activations) through llm-compressor, saved as compressed-tensors.

Calibration runs block by block (``srice.compress.layerwise``): each block's inputs are the previous
block's outputs, so pruning costs about one model pass whatever the depth. SparseGPT is sequential,
as in its paper (block l is calibrated on the outputs of the already-pruned blocks before it); Wanda
takes every block's input norms from the dense model (``srice.compress.pruning``). The vision tower
stays dense unless ``include_vision``; the LM head, embeddings and the vision merger are never pruned.

``device`` (``srice.devices``: auto, cpu, cuda, cuda:N) is where the calibration forwards and the
pruning math run, one block at a time: the model stays on the CPU except the block being worked on
and the small pieces before the first block, so a model larger than the GPU still prunes. The
llm-compressor methods run on it through llm-compressor's pipelines, which onload one block at a
time the same way (``srice.compress.quant``). The result is saved from the CPU; the manifest
records the device.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from srice.compress.config import METHODS, CompressConfig
from srice.errors import InputError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "config.json", "recipe.yaml")


@dataclass(frozen=True)
class CompressResult:
    out_dir: Path
    manifest: dict
    seconds: float  # the method itself: capture + pruning/quantization, not loading or saving


def source_and_output(model: str | Path, out_dir: str | Path, overwrite: bool) -> tuple[Path, object, Path]:
    """The model's folder and variant (``resolve_model``) and the output folder, checked: empty
    unless ``overwrite``, and not the model's own folder."""
    source, variant = resolve_model(model)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"output folder {out} exists and is not empty")
    if out.resolve() == source.resolve():
        raise InputError("output folder must differ from the model folder")
    return source, variant, out


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
    device: str = "auto",
) -> CompressResult:
    """Compress ``model`` (a folder or a variant name) as ``config`` says, into ``out_dir``, running the
    calibration and the pruning math on ``device`` (auto: CUDA when present)."""
    from srice.devices import resolve_device

    say = progress or (lambda text: None)
    source, variant, out = source_and_output(model, out_dir, overwrite)
    device = resolve_device(device)

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    say(f"loading {source}")
    processor = AutoProcessor.from_pretrained(str(source))
    net = AutoModelForImageTextToText.from_pretrained(str(source), dtype=torch.float32).eval()
    batches, calib_info = _calibration(processor, config)
    info: dict = {}
    began = time.perf_counter()
    say(f"{config.method}: compressing on {device}")
    with torch.no_grad():
        pruned_names = _run(net, batches, config, info, say, device)
    seconds = time.perf_counter() - began

    say(f"saving {out}")
    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():  # tokenizer, processor, chat template, generation config
        if f.is_file() and f.name not in WEIGHT_FILES and not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    net.save_pretrained(str(out))
    manifest = _manifest(config, source, variant, calib_info, seconds, device, info)
    if pruned_names is not None:
        manifest["achieved"] = _achieved(net, pruned_names)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return CompressResult(out, manifest, seconds)


def _calibration(processor, config: CompressConfig) -> tuple[list[dict], dict | None]:
    """The calibration batches (none where the method needs no data) and what the manifest says of them."""
    if not config.needs_data:
        return [], None
    from srice.compress import capture
    from srice.eval.data import load_items

    items = load_items(config.calib, limit=config.calib_n)
    if not items:
        raise InputError(f"calibration data {config.calib} has no questions")
    batches = capture.calibration_inputs(processor, items)
    return batches, {
        "data": str(config.calib),
        "samples": len(batches),
        "tokens": int(sum(b["input_ids"].numel() for b in batches)),
        "sha256": capture.data_hash(batches),
    }


def _manifest(config: CompressConfig, source: Path, variant, calib_info, seconds, device, info) -> dict:
    return {
        "method": config.method,
        "description": METHODS[config.method],
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
        "device": device,
        "seconds": round(seconds, 3),
        **info,
    }


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


def _run(
    net, batches, plan: CompressConfig, info: dict, say, device: str = "cpu"
) -> dict[str, list[str]] | None:
    """Apply the method to ``net`` in place; returns block -> pruned Linear names for pruning methods."""
    from srice.compress import capture, pruning
    from srice.compress.layerwise import Layerwise

    text_name, text_list, text_blocks, vision_blocks = capture.find_blocks(net)
    blocks = (vision_blocks if plan.include_vision else []) + text_blocks  # module order: vision first
    if plan.method == "depth":
        runner = Layerwise(net, batches, text_blocks, device)
        _depth(runner, text_list, plan, info)
        info["capture"] = dict(runner.counts)
        return None
    if plan.method in ("w4a16", "fp8"):
        from srice.compress import quant

        ran = quant.quantize(net, plan.method, batches, include_vision=plan.include_vision, device=device)
        info["quantization"] = {"scheme": quant.SCHEMES[plan.method], "format": "compressed-tensors", **ran}
        return None
    runner = Layerwise(net, batches, blocks, device)
    if plan.method.startswith("llmc-"):
        from srice.compress import quant

        sparsities, _ = pruning.allocate(runner, plan, info)
        classes = sorted({type(b.module).__name__ for b in blocks})
        info["llmcompressor"] = quant.prune(
            net, plan.method.removeprefix("llmc-"), classes, sparsities, batches,
            nm=plan.nm, include_vision=plan.include_vision, device=device,
        )  # fmt: skip
        names = {b.name: list(b.linears()) for b in blocks}
    else:
        names = pruning.prune(runner, plan, info, say)
    if runner.counts["prefix_passes"]:  # srice ran the model (llm-compressor's own passes are not counted)
        info["capture"] = dict(runner.counts)
    return names


def _depth(runner, text_list, plan: CompressConfig, info: dict) -> None:
    """Remove the decoder layers with the lowest block influence (1 - cos(h_in, h_out) per token)."""
    from srice.compress import depth

    influence = []

    def step(turn) -> None:
        total, count = 0.0, 0
        for h_in, h_out in zip(turn.hidden, turn.forward()):
            t, c = depth.cosine_distance_sum(h_in, h_out)
            total, count = total + t, count + c
        influence.append(total / count if count else 0.0)

    runner.run(step)
    n = depth.count_for(plan.sparsity, len(runner.blocks))
    drop = depth.layers_to_drop(influence, n)
    keep = depth.drop_layers(text_list, drop)
    text_config = getattr(runner.model.config, "text_config", runner.model.config)
    changes = depth.fix_config(text_config, keep)
    info["depth"] = {
        "block_influence": [round(x, 6) for x in influence],
        "removed_layers": drop,
        "kept_layers": keep,
        "config_changes": changes,
    }
