"""``finetune``: a pruned model folder in, a fine-tuned checkpoint + ``manifest.json`` out.

Methods (``FINETUNE_METHODS`` in ``srice.compress.config``):

- ``seft``: only the pruned Linears' remaining weights train, and every ``interval`` steps a share
  of each layer's connections moves (``srice.compress.seft``); every layer ends with exactly the
  zeros it began with (per group of M for N:M), so the result is as sparse as its input;
- ``dense``: the same Linears train densely, then each row is pruned back by magnitude to the zeros
  it had (N:M back to N:M): the usual "fine-tune, then re-prune" repair;
- ``lora``: LoRA adapters on the same Linears, merged at the end (dense again: the manifest says
  how dense).

All three train the same weights (the pruned Linears of the decoder, and of the vision tower where
it was pruned) on the same batches with the same schedule, so they compare at equal steps. The rest
of the model (embeddings, norms, LM head, a dense vision tower) stays exactly as it was. Training
data: labelled questions (``questions.jsonl`` from ``srice synth``, or any format ``srice eval``
reads), taught as the direct pathway's prompt with the answer as the only labels.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from srice.compress.api import WEIGHT_FILES, CompressResult, source_and_output
from srice.compress.config import FINETUNE_METHODS, FinetuneConfig
from srice.compress.masks import parse_nm
from srice.compress.seft import evolve, swap_fraction
from srice.errors import InputError


def learning_rate(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up over the first tenth (at most 20 steps), then cosine decay to a tenth."""
    warmup = max(1, min(20, config.steps // 10))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def finetune(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    device: str = "auto",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CompressResult:
    """Fine-tune the pruned ``model`` (a folder or a variant) on the labelled questions in ``data``
    as ``config`` says, into ``out_dir``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.devices import resolve_device

    say = progress or (lambda text: None)
    source, variant, out = source_and_output(model, out_dir, overwrite)
    device = resolve_device(device)
    pruning = _pruning_of(source)
    say(f"loading {source}")
    processor = AutoProcessor.from_pretrained(str(source))
    net = AutoModelForImageTextToText.from_pretrained(str(source), dtype=torch.float32)
    names = pruned_linears(net, pruning)
    if not names:
        raise InputError(f"{source} has no pruned layers to fine-tune (no Linear with zeros); prune it first")
    nm = parse_nm(pruning.get("parameters", {}).get("nm")) if pruning else None
    batches, data_info = _batches(processor, data, config)
    before = _sparsity(net, names)
    torch.manual_seed(config.seed)
    net.to(device).train()
    if data_info["skipped"]:
        say(f"{len(data_info['skipped'])} question(s) left out of training (manifest.json says why)")
    say(
        f"{config.method}: {config.steps} steps on {data_info['questions']} questions, {len(names)} pruned "
        f"layers at sparsity {before['overall']:.3f}, on {device}"
    )
    began = time.perf_counter()
    losses = _train(net, names, nm, batches, config, device, say)
    seconds = time.perf_counter() - began
    net.to("cpu").eval()
    after = _sparsity(net, names)

    say(f"saving {out}")
    out.mkdir(parents=True, exist_ok=True)
    skip = (*WEIGHT_FILES, "manifest.json")
    for f in source.iterdir():  # tokenizer, processor, chat template, generation config
        if f.is_file() and f.name not in skip and not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    net.save_pretrained(str(out))
    manifest = {
        "method": config.method,
        "description": FINETUNE_METHODS[config.method],
        "base_model": str(source),
        "base_variant": variant.name if variant else (pruning or {}).get("base_variant"),
        "parameters": {"sparsity": before["overall"], "nm": f"{nm[0]}:{nm[1]}" if nm else None},
        "pruning": {k: pruning[k] for k in ("method", "parameters", "base_variant") if k in pruning}
        if pruning
        else None,
        "finetune": asdict(config),
        "data": data_info,
        "device": device,
        "seconds": round(seconds, 3),
        "loss": {"first": round(losses[0], 4), "last": round(sum(losses[-10:]) / len(losses[-10:]), 4)},
        "sparsity_before": before,
        "achieved": after,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return CompressResult(out, manifest, seconds)


def _pruning_of(source: Path) -> dict:
    path = source / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable manifest: {e}") from None


def pruned_linears(net, pruning: dict) -> list[str]:
    """The Linears to fine-tune: those the pruning manifest lists, or else every Linear of the decoder
    and vision blocks with at least 1% exact zeros (a pruned layer, not a chance zero)."""
    from srice.compress import capture
    from srice.compress.masks import sparsity_of

    listed = list((pruning.get("achieved") or {}).get("per_linear", {}))
    modules = dict(net.named_modules())
    if listed:
        missing = [n for n in listed if n not in modules]
        if missing:
            raise InputError(f"the manifest names layers the model lacks: {', '.join(missing[:3])}")
        return listed
    _, _, text_blocks, vision_blocks = capture.find_blocks(net)
    return [
        name
        for block in vision_blocks + text_blocks
        for name, linear in block.linears().items()
        if sparsity_of(linear.weight.detach()) >= 0.01
    ]


def _batches(processor, data: str | Path, config: FinetuneConfig) -> tuple[list[dict], dict]:
    """The training batches (each question once per epoch, shuffled by ``seed``) and what the
    manifest says of the data."""
    from srice.compress.capture import data_hash
    from srice.eval.data import load_items
    from srice.toy.train_mllm import Encoder

    items = [i for i in load_items(data) if i.error is None and i.answers]
    if not items:
        raise InputError(f"training data {data} has no labelled questions")
    encoder = Encoder(processor)
    encoded, skipped = encoded_items(processor, items)
    if not encoded:
        why = next(iter(skipped.values()))
        raise InputError(f"none of the {len(items)} questions of {data} could be used: {why}")
    rng = random.Random(config.seed)
    batches, order = [], []
    while len(batches) < config.steps:
        if len(order) < config.batch_size:
            order += rng.sample(range(len(encoded)), len(encoded))
        take, order = order[: config.batch_size], order[config.batch_size :]
        batches.append(encoder.collate([encoded[i] for i in take]))
    info = {"path": str(data), "questions": len(encoded), "sha256": data_hash(encoded), "skipped": skipped}
    return batches, info


def encoded_items(processor, items) -> tuple[list[dict], dict[str, str]]:
    """Each labelled question as the direct pathway's prompt with its first answer as the only
    labels; and why each question that could not be encoded was left out, by id."""
    from srice.agent import prompts
    from srice.images import load_image
    from srice.toy.train_mllm import Encoder

    encoder = Encoder(processor)
    encoded, skipped = [], {}
    for item in items:
        try:
            content = (
                load_image(item.image),
                prompts.question_text(item.question, item.options),
                prompts.answer_instruction(item.options),
            )
            encoded.append(encoder.encode(_Example(content, item.answers[0])))
        except (InputError, ValueError, OSError) as e:  # one bad question costs itself, not the run
            skipped[item.id] = str(e)
    return encoded, skipped


@dataclass(frozen=True)
class _Example:
    content: tuple
    answer: str


def _train(net, names: list[str], nm, batches: list[dict], config: FinetuneConfig, device, say) -> list:
    import torch

    from srice.compress import lora

    for p in net.parameters():
        p.requires_grad_(False)
    linears = [net.get_submodule(n) for n in names]
    masks = [linear.weight.detach() != 0 for linear in linears]
    if config.method == "lora":
        params = lora.wrap(net, names, config.rank, config.alpha)
    else:
        params = [linear.weight for linear in linears]
        for p in params:
            p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    sums = [torch.zeros_like(m, dtype=torch.float32) for m in masks] if config.method == "seft" else []
    losses, moved = [], 0
    for step, batch in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = net(**{k: v.to(device) for k, v in batch.items()}).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.method == "seft":
            for linear, keep, total in zip(linears, masks, sums):
                total += linear.weight.grad
                linear.weight.grad *= keep  # only the remaining weights train
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if config.method == "seft":
            with torch.no_grad():
                for linear, keep in zip(linears, masks):
                    linear.weight *= keep
            if (step + 1) % config.interval == 0 and step + 1 < len(batches):
                share = swap_fraction(step + 1, len(batches), config.fraction, config.stop)
                moved += _update_topology(linears, masks, sums, optimizer, share, config, nm)
        losses.append(loss.item())
        if (step + 1) % config.log_every == 0 or step + 1 == len(batches):
            zeros = sum(int((lin.weight == 0).sum()) for lin in linears)
            live = zeros / sum(lin.weight.numel() for lin in linears)
            recent = losses[-config.log_every :]
            detail = f", {moved} connections moved" if config.method == "seft" else ""
            mean = sum(recent) / len(recent)
            say(f"step {step + 1}/{len(batches)}: loss {mean:.4f}, live sparsity {live:.4f}{detail}")
    if config.method == "lora":
        lora.merge(net, names)
    if config.method == "dense":
        _reprune(linears, masks, nm)
    return losses


def _update_topology(linears, masks, sums, optimizer, share: float, config: FinetuneConfig, nm) -> int:
    """Move ``share`` of each layer's connections (``seft.evolve``); a grown weight starts at zero
    with fresh optimizer moments, a dropped one is zeroed. Returns how many moved."""
    import torch

    moved = 0
    with torch.no_grad():
        for linear, keep, total in zip(linears, masks, sums):
            mean = total / config.interval
            new = evolve(linear.weight, mean, keep, share, config.criterion, nm)
            changed = new != keep
            moved += int((new & ~keep).sum())
            linear.weight[changed] = 0.0
            state = optimizer.state.get(linear.weight, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][changed] = 0.0
            keep.copy_(new)
            total.zero_()
    return moved


def _reprune(linears, masks, nm) -> None:
    """Each row back to the zeros it had, keeping its largest weights (N:M: N of every M)."""
    import torch

    from srice.compress.masks import apply_mask, make_mask

    with torch.no_grad():
        for linear, keep in zip(linears, masks):
            w = linear.weight
            if nm:
                new = make_mask(w.abs(), 0.0, nm)
            else:
                counts = keep.sum(1, keepdim=True)
                ranks = torch.argsort(torch.argsort(w.abs(), dim=1, descending=True, stable=True), dim=1)
                new = ranks < counts
            w.copy_(apply_mask(w, new))


def _sparsity(net, names: list[str]) -> dict:
    """Share of zeros overall and per layer (as ``compress`` records it), and each layer's count."""
    shares, counts, zeros, total = {}, {}, 0, 0
    for name in names:
        w = net.get_submodule(name).weight.detach()
        counts[name] = int((w == 0).sum())
        shares[name] = round(counts[name] / w.numel(), 6)
        zeros, total = zeros + counts[name], total + w.numel()
    return {"overall": round(zeros / total, 6), "per_linear": shares, "zeros": counts}
