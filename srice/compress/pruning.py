"""Native pruning (magnitude, Wanda, SparseGPT; OWL's per-block sparsities), block by block on the device.

Calibration runs through ``srice.compress.layerwise``: each block's inputs are the previous block's
outputs, so the cost is about one model pass, not one per block.

- Wanda: one pass over the dense model; each block's input norms are those of the dense model (its
  inputs are the dense outputs of the block before), as srice has always computed them.
- SparseGPT: sequential, as in its paper: block l is calibrated on the outputs of the already-pruned
  blocks before it. Each block runs twice (statistics, then the pruned block's outputs for the next).
- OWL: one more dense pass for the outlier ratios, unless Wanda's own pass gives them; none for
  magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from srice.compress import masks, owl_allocation, scores
from srice.compress import sparsegpt as sgpt
from srice.compress.capture import Block, LinearStats, collecting
from srice.compress.config import CompressConfig
from srice.compress.layerwise import Layerwise, Turn, on_device


def dense_norms(runner: Layerwise, owl_m: float | None) -> tuple[dict[str, LinearStats], list[float] | None]:
    """Every Linear's input statistics over the dense model, and (with ``owl_m``) each block's
    outlier ratio of its Wanda scores."""
    stats: dict[str, LinearStats] = {}
    ratios: list[float] = []

    def step(turn: Turn) -> None:
        linears = turn.block.linears()
        with collecting(linears) as block_stats:
            turn.forward()
        stats.update(block_stats)
        if owl_m is not None:
            block_scores = [scores.wanda(m.weight, block_stats[n].input_norm) for n, m in linears.items()]
            ratios.append(owl_allocation.outlier_ratio(block_scores, owl_m))

    runner.run(step)
    return stats, ratios if owl_m is not None else None


def allocate(
    runner: Layerwise, plan: CompressConfig, info: dict
) -> tuple[list[float], dict[str, LinearStats]]:
    """Each block's target sparsity (uniform, or OWL's) and, where Wanda or OWL needs them, the dense
    model's input statistics."""
    blocks = runner.blocks
    stats, ratios = {}, None
    if plan.method == "wanda" or (plan.owl and plan.method != "magnitude"):
        stats, ratios = dense_norms(runner, plan.owl_m if plan.owl else None)
    elif plan.owl:
        ratios = []
        for block in blocks:
            with on_device(block.module, runner.device):
                weights = [scores.magnitude(m.weight) for m in block.linears().values()]
                ratios.append(owl_allocation.outlier_ratio(weights, plan.owl_m))
    sparsities = [plan.sparsity] * len(blocks)
    if plan.owl:
        sparsities = owl_allocation.allocate(ratios, plan.sparsity, plan.owl_lambda, clamp=plan.owl_clamp)
        info["owl"] = {
            "outlier_ratio": {b.name: r for b, r in zip(blocks, ratios)},
            "lambda_effective": owl_allocation.effective_lambda(
                plan.sparsity, plan.owl_lambda, plan.owl_clamp
            ),
            "rule": "clamped to S +- lambda" if plan.owl_clamp else "reference (luuyin/OWL)",
        }
    info["target_sparsity"] = {b.name: round(s, 6) for b, s in zip(blocks, sparsities)}
    return sparsities, stats


def _mask_block(block: Block, sparsity: float, plan: CompressConfig, stats: dict[str, LinearStats]) -> None:
    for name, layer in block.linears().items():
        w = layer.weight.data
        score = scores.magnitude(w) if plan.method == "magnitude" else scores.wanda(w, stats[name].input_norm)
        layer.weight.data = masks.apply_mask(w, masks.make_mask(score, sparsity, plan.nm))


def prune(
    runner: Layerwise, plan: CompressConfig, info: dict, say: Callable[[str], None]
) -> dict[str, list[str]]:
    """Prune ``runner.blocks`` in place as ``plan`` says; returns block -> pruned Linear names."""
    blocks: Sequence[Block] = runner.blocks
    sparsities, stats = allocate(runner, plan, info)
    by_block = dict(zip((b.name for b in blocks), sparsities))

    def sparsegpt_step(turn: Turn) -> None:
        s = by_block[turn.block.name]
        say(f"sparsegpt: block {blocks.index(turn.block) + 1}/{len(blocks)} {turn.block.name} at {s:.3f}")
        linears = turn.block.linears()
        with collecting(linears, hessian=True) as block_stats:
            turn.forward()
        for name, layer in linears.items():
            st = block_stats.pop(name)
            layer.weight.data = sgpt.prune(layer.weight.data, st.hessian / st.tokens, s, nm=plan.nm)
        turn.forward()  # the pruned block's outputs are the next block's inputs

    if plan.method == "sparsegpt":
        runner.run(sparsegpt_step)
    else:
        for i, (block, s) in enumerate(zip(blocks, sparsities)):
            say(f"{plan.method}: block {i + 1}/{len(blocks)} {block.name} at {s:.3f}")
            with on_device(block.module, runner.device), torch.no_grad():
                _mask_block(block, s, plan, stats)
    return {b.name: list(b.linears()) for b in blocks}
