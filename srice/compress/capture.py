"""Activation capture: the calibration inputs, the blocks, and the statistics hooks.

Calibration is multimodal: each sample is an (image, question[, answer]) prompt built exactly as the
serving layer builds it (``srice.agent.prompts.direct_request`` through the processor's chat template, as
the transformers backend does), so the statistics come from image tokens and text tokens in the
proportions the served model sees. OWLed found the vision side matters; text-only calibration
would miss it.

Statistics are gathered with forward hooks (``collecting``): per Linear, the input's squared column
norms (Wanda's ||X_j||^2) and optionally X X^T (SparseGPT's Hessian), summed in float64 on the
device the inputs are on. ``srice.compress.layerwise`` runs the model block by block and calls them
on one block at a time. ``linear_stats`` gathers them over whole-model forward passes (``stop_after``
ends each pass after a module): the straightforward way, kept as the reference the layer-by-layer
runner is checked against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

VISION_WORDS = ("visual", "vision")


@dataclass
class LinearStats:
    """Sums over calibration tokens of one Linear's inputs."""

    tokens: int
    sq_norm: torch.Tensor  # (in_features,): sum over tokens of x_j^2
    hessian: torch.Tensor | None = None  # (in_features, in_features): sum of x x^T

    @property
    def input_norm(self) -> torch.Tensor:
        """||X_j||_2 over all calibration tokens, Wanda's activation factor."""
        return self.sq_norm.sqrt()


@dataclass(frozen=True)
class Block:
    """A prunable unit: one decoder layer (text) or one vision transformer block."""

    name: str
    module: torch.nn.Module
    vision: bool

    def linears(self) -> dict[str, torch.nn.Linear]:
        return {
            f"{self.name}.{n}": m for n, m in self.module.named_modules() if isinstance(m, torch.nn.Linear)
        }


def find_blocks(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList, list[Block], list[Block]]:
    """The text decoder's layer list (name, ModuleList) and the text and vision blocks, in module order.

    Text layers: the longest ModuleList named ``*layers`` outside the vision tower; vision blocks: the
    longest ModuleList inside it. The LM head, embeddings and the vision merger are never blocks.
    """
    text, vision = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            is_vision = any(w in name for w in VISION_WORDS)
            if is_vision:
                vision.append((name, module))
            elif name.split(".")[-1] == "layers":
                text.append((name, module))
    if not text:
        raise ValueError(f"no decoder layer list found in {type(model).__name__}")
    text_name, text_list = max(text, key=lambda x: len(x[1]))
    text_blocks = [Block(f"{text_name}.{i}", m, False) for i, m in enumerate(text_list)]
    vision_blocks = []
    if vision:
        vname, vlist = max(vision, key=lambda x: len(x[1]))
        vision_blocks = [Block(f"{vname}.{i}", m, True) for i, m in enumerate(vlist)]
    return text_name, text_list, text_blocks, vision_blocks


def _hf_messages(request):
    from srice.serving.hf import _hf_messages as messages

    return messages(request)


def calibration_inputs(processor, items: Sequence, *, with_answers: bool = True) -> list[dict]:
    """One model-input dict per item (batch of one, so no padding enters the statistics).

    ``items`` are ``EvalItem``s (``srice.eval.data.load_items``). With ``with_answers`` the reference
    answer follows as the assistant turn, so answer tokens are calibrated too.
    """
    from srice.agent.prompts import direct_request
    from srice.images import load_image
    from srice.serving.types import Message, Request

    out = []
    for item in items:
        request = direct_request(load_image(item.image), item.question, item.options)
        answer = item.answers[0] if item.answers else ""  # for multiple choice: the letter, as asked
        messages = request.messages
        if with_answers and answer:
            messages = (*messages, Message("assistant", (answer,)))
        inputs = processor.apply_chat_template(
            [_hf_messages(Request(messages))],
            add_generation_prompt=not (with_answers and answer),
            tokenize=True,
            return_dict=True,
            processor_kwargs={"return_tensors": "pt"},
        )
        out.append(dict(inputs))
    return out


def data_hash(batches: Iterable[dict]) -> str:
    """sha256 over every tensor the model is fed (names, shapes, bytes): the calibration set's identity."""
    h = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            value = batch[key]
            h.update(key.encode())
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _Stop(Exception):
    pass


def run_batches(model: torch.nn.Module, batches: Sequence[dict], stop_after: torch.nn.Module | None = None):
    """Forward every batch (no grad); with ``stop_after``, each pass ends right after that module."""
    handle = None
    if stop_after is not None:

        def stop(*_):
            raise _Stop

        handle = stop_after.register_forward_hook(stop)
    try:
        with torch.inference_mode():
            for batch in batches:
                try:
                    model(**batch, use_cache=False)
                except _Stop:
                    pass
    finally:
        if handle is not None:
            handle.remove()


@contextmanager
def collecting(
    linears: dict[str, torch.nn.Linear], *, hessian: bool = False
) -> Iterator[dict[str, LinearStats]]:
    """Input statistics of each Linear in ``linears`` over the forwards run inside the block; every
    Linear must have been reached by its end."""
    stats: dict[str, LinearStats] = {}

    def hook_for(name: str, layer: torch.nn.Linear):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, layer.in_features).double()
            s = stats.get(name)
            if s is None:
                n, dev = layer.in_features, x.device
                s = stats[name] = LinearStats(
                    0,
                    torch.zeros(n, dtype=torch.float64, device=dev),
                    torch.zeros(n, n, dtype=torch.float64, device=dev) if hessian else None,
                )
            s.tokens += x.shape[0]
            s.sq_norm += (x * x).sum(0)
            if hessian:
                s.hessian += x.T @ x

        return hook

    handles = [m.register_forward_pre_hook(hook_for(n, m)) for n, m in linears.items()]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(linears) - set(stats))
    if missing:
        raise ValueError(f"calibration never reached {missing[:3]}{' ...' if len(missing) > 3 else ''}")


def linear_stats(
    model: torch.nn.Module,
    batches: Sequence[dict],
    linears: dict[str, torch.nn.Linear],
    *,
    hessian: bool = False,
    stop_after: torch.nn.Module | None = None,
) -> dict[str, LinearStats]:
    """Input statistics of each Linear in ``linears`` over whole-model passes of the calibration batches."""
    with collecting(linears, hessian=hessian) as stats:
        run_batches(model, batches, stop_after)
    return stats
