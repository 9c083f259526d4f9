"""Block by block: each block's calibration inputs are the previous block's outputs, so a calibration
costs about one forward pass of the model whatever its depth (not one pass per block).

``catch`` runs the model once per sample up to the first block of a *segment* (the consecutive blocks
of one layer list: the vision blocks, or the text decoder layers) and records how the model calls
each block of the segment: the first block's hidden states, and every block's other arguments
(position embeddings, masks, ...), which depend on the sample, not on the hidden states. During that
pass the segment's blocks are stand-ins (their ``forward`` is replaced for the pass) that hand the
hidden states on without computing anything, and the last one ends the pass. The blocks of an
earlier segment stand in the same way, the last of them returning that segment's outputs, so the
text decoder sees the vision tower as the earlier segment left it (pruned for SparseGPT, dense for
Wanda) without running it again. ``Layerwise.run`` then gives each block its turn (``Turn``): its
recorded inputs and a ``forward`` over them; the next block's inputs are the outputs of the last
``forward``.

A model that changes the hidden states between two layers (e.g. Qwen3-VL's deepstack adds visual
features after some layers) cannot be run this way; ``catch`` sees it and says so.

Device: the pieces before the first block (embeddings, patch embedding, rotary tables, the vision
tower when it is not pruned, the merger) and the block whose turn it is are on the device; the
blocks and the LM head otherwise stay on the CPU, so a model larger than the GPU still prunes. The
hidden states between blocks stay on the device (calibration activations are small next to the
weights: 32 samples x 300 tokens x 4096 x 4 bytes is 157 MB). On the CPU nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from srice.compress.capture import Block
from srice.errors import InputError


class _Stop(Exception):
    pass


@dataclass
class Call:
    """How the model calls one block for one sample, the hidden states left out."""

    args: tuple
    kwargs: dict
    positional: bool  # hidden states as the first positional argument (else ``hidden_states=``)

    def __call__(self, module: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        if self.positional:
            out = module(hidden, *self.args, **self.kwargs)
        else:
            out = module(*self.args, hidden_states=hidden, **self.kwargs)
        return out[0] if isinstance(out, tuple) else out


def _split(args: tuple, kwargs: dict) -> tuple[torch.Tensor, Call]:
    if args:
        return args[0], Call(tuple(args[1:]), dict(kwargs), True)
    kwargs = dict(kwargs)
    return kwargs.pop("hidden_states"), Call((), kwargs, False)


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@contextmanager
def _stand_ins(forwards: dict[torch.nn.Module, Callable]) -> Iterator[None]:
    """Replace each module's ``forward`` for the duration (an instance attribute shadows the class's)."""
    before = {m: m.__dict__.get("forward") for m in forwards}
    try:
        for module, forward in forwards.items():
            module.forward = forward
        yield
    finally:
        for module, old in before.items():
            if old is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = old


def catch(
    model: torch.nn.Module,
    batches: Sequence[dict],
    segment: Sequence[torch.nn.Module],
    earlier: Sequence[tuple[Sequence[torch.nn.Module], list[torch.Tensor]]] = (),
    device: str = "cpu",
) -> tuple[list[torch.Tensor], list[list[Call]]]:
    """The first block's hidden states per sample, and per block of ``segment`` how each sample calls
    it. ``earlier``: (blocks, their last block's outputs per sample) of the segments before."""
    hidden: list[torch.Tensor] = []
    calls: list[list[Call]] = [[] for _ in segment]
    state: dict = {"sample": 0, "handed": None}

    def catcher(i: int):
        def forward(*args, **kwargs):
            h, call = _split(args, kwargs)
            if i == 0:
                hidden.append(h)
            elif h is not state["handed"]:
                raise InputError(
                    f"{type(model).__name__} changes the hidden states between its layers; "
                    "srice's layer-by-layer calibration cannot run it"
                )
            calls[i].append(call)
            if i == len(segment) - 1:
                raise _Stop
            state["handed"] = h
            return h

        return forward

    def passing(outputs: list[torch.Tensor] | None):
        def forward(*args, **kwargs):
            h = _split(args, kwargs)[0]
            return h if outputs is None else outputs[state["sample"]]

        return forward

    forwards = {m: catcher(i) for i, m in enumerate(segment)}
    for blocks, outputs in earlier:
        forwards.update({m: passing(None) for m in blocks[:-1]})
        forwards[blocks[-1]] = passing(outputs)
    with _stand_ins(forwards), torch.inference_mode():
        for i, batch in enumerate(batches):
            state["sample"] = i
            try:
                model(**to_device(batch, device), use_cache=False)
            except _Stop:
                continue
            raise ValueError(f"calibration sample {i} never reached the last block of the segment")
    return hidden, calls


@dataclass
class Turn:
    """One block's turn: its inputs (one hidden-state tensor and one call per sample), and
    ``forward``, which runs the block over them (on the device) and keeps the outputs."""

    block: Block
    hidden: list[torch.Tensor]
    calls: list[Call]
    counts: dict
    outputs: list[torch.Tensor] | None = None

    def forward(self) -> list[torch.Tensor]:
        with torch.inference_mode():
            self.outputs = [call(self.block.module, h) for h, call in zip(self.hidden, self.calls)]
        self.counts["block_forwards"] += 1
        return self.outputs


def place(model: torch.nn.Module, device: str, skip: Sequence[torch.nn.Module]) -> None:
    """Move ``model``'s parameters and buffers to ``device``, except those inside ``skip``."""
    skipped = {id(m) for m in skip}

    def visit(module: torch.nn.Module) -> None:
        if id(module) in skipped:
            return
        module._apply(lambda t: t.to(device), recurse=False)  # what Module.to does, for this module only
        for child in module.children():
            visit(child)

    visit(model)


@contextmanager
def on_device(module: torch.nn.Module, device: str) -> Iterator[None]:
    """``module`` on ``device`` for the duration, then back on the CPU."""
    if device == "cpu":
        yield
        return
    module.to(device)
    try:
        yield
    finally:
        module.to("cpu")


@dataclass
class Layerwise:
    """Runs calibration block by block over ``blocks`` (module order; vision blocks before text ones)."""

    model: torch.nn.Module
    batches: Sequence[dict]
    blocks: Sequence[Block]
    device: str = "cpu"
    counts: dict = field(default_factory=lambda: {"prefix_passes": 0, "block_forwards": 0, "blocks": 0})

    def segments(self) -> list[list[Block]]:
        out: list[list[Block]] = []
        for block in self.blocks:
            if out and out[-1][0].vision == block.vision:
                out[-1].append(block)
            else:
                out.append([block])
        return out

    @contextmanager
    def _prefix_on_device(self) -> Iterator[None]:
        if self.device == "cpu":
            yield
            return
        head = self.model.get_output_embeddings()
        place(self.model, self.device, [b.module for b in self.blocks] + ([head] if head else []))
        try:
            yield
        finally:
            self.model.to("cpu")

    def run(self, step: Callable[[Turn], None]) -> None:
        """``step(turn)`` for every block in order, the block on the device; its outputs (those of the
        turn's last ``forward``, run once more if ``step`` ran none) are the next block's inputs."""
        self.counts["blocks"] = len(self.blocks)
        earlier: list[tuple[list[torch.nn.Module], list[torch.Tensor]]] = []
        with self._prefix_on_device():
            segments = self.segments()
            for s, segment in enumerate(segments):
                modules = [b.module for b in segment]
                hidden, calls = catch(self.model, self.batches, modules, earlier, self.device)
                self.counts["prefix_passes"] += 1
                for i, block in enumerate(segment):
                    with on_device(block.module, self.device):
                        turn = Turn(block, hidden, calls[i], self.counts)
                        step(turn)
                        last = s == len(segments) - 1 and i == len(segment) - 1
                        if turn.outputs is None and not last:
                            turn.forward()
                    hidden = turn.outputs
                earlier.append((modules, hidden))
