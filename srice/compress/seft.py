"""SEFT's topology step: which of a pruned layer's connections to move, keeping their number.

SEFT (Sparsity Evolution Fine-Tuning; Xiao et al. 2025, arXiv 2505.24037, code at
github.com/QiaoXiao7282/SEFT) fine-tunes only a pruned model's remaining weights and, every few
steps, evolves which weights those are: it grows connections where the loss gradient is large and
prunes back, by a sensitivity criterion, to the layer's sparsity, so the model never gets denser.

What srice does (``evolve``), from the paper's abstract and the dynamic sparse training line it
builds on (SET, RigL); the reference code could not be fetched here, so where it differs is not
known to us:

- grow: the ``k`` inactive weights with the largest ``|dL/dw|`` (RigL's rule), starting at zero;
- drop: the ``k`` weights of those active before the step with the lowest sensitivity
  ``|w * dL/dw|`` (the first-order estimate of the loss change from removing ``w``), or the lowest
  ``|w|`` with ``criterion="magnitude"`` (SET's rule). A weight grown in this step is not dropped in
  it: it is zero, so any sensitivity rule would drop it at once;
- ``dL/dw`` is the mean gradient since the last topology step, not one batch's;
- counts are kept per layer (unstructured), or per group of M input columns of each row (N:M): a
  2:4 model stays 2:4, with a swap in the groups whose best inactive weight has the largest gradient.
"""

from __future__ import annotations

import math

import torch

from srice.compress.config import CRITERIA


def drop_score(weight: torch.Tensor, grad: torch.Tensor, criterion: str) -> torch.Tensor:
    """How much an active weight matters (low: dropped first)."""
    if criterion == "sensitivity":
        return (weight * grad).abs()
    if criterion == "magnitude":
        return weight.abs()
    raise ValueError(f"unknown drop criterion {criterion!r}; known: {', '.join(CRITERIA)}")


def swap_fraction(step: int, total: int, fraction: float, stop: float) -> float:
    """The share of a layer's active weights moved at ``step`` of ``total``: a cosine from
    ``fraction`` down to 0 at ``stop x total`` (RigL's schedule), so the topology settles before the
    end and the last steps only tune the weights."""
    end = stop * total
    if step >= end:
        return 0.0
    return fraction * 0.5 * (1 + math.cos(math.pi * step / end))


def evolve(
    weight: torch.Tensor,
    grad: torch.Tensor,
    keep: torch.Tensor,
    fraction: float,
    criterion: str = "sensitivity",
    nm: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The new keep-mask of one layer: ``fraction`` of its active weights swapped for inactive ones
    (see the module docstring), with exactly as many active weights as ``keep`` in the layer (or in
    each N:M group)."""
    if nm is not None:
        return _evolve_nm(weight, grad, keep, fraction, criterion, nm[1])
    flat_keep = keep.flatten()
    active = int(flat_keep.sum())
    k = min(int(fraction * active), active, flat_keep.numel() - active)
    if k <= 0:
        return keep
    dropping = drop_score(weight, grad, criterion).flatten().masked_fill(~flat_keep, math.inf)
    growing = grad.abs().flatten().masked_fill(flat_keep, -math.inf)
    new = flat_keep.clone()
    new[torch.topk(dropping, k, largest=False).indices] = False
    new[torch.topk(growing, k).indices] = True
    return new.view_as(keep)


def _evolve_nm(weight, grad, keep, fraction: float, criterion: str, m: int) -> torch.Tensor:
    rows, cols = keep.shape
    groups = keep.reshape(rows * (cols // m), m)
    kept = groups.sum(1)
    open_groups = (kept > 0) & (kept < m)
    k = min(int(fraction * int(open_groups.sum())), int(open_groups.sum()))
    if k <= 0:
        return keep
    dropping = drop_score(weight, grad, criterion).reshape_as(groups).masked_fill(~groups, math.inf)
    growing = grad.abs().reshape_as(groups).masked_fill(groups, -math.inf)
    best_grow, grow_at = growing.max(1)
    worst_drop_at = dropping.argmin(1)
    chosen = torch.topk(best_grow.masked_fill(~open_groups, -math.inf), k).indices
    new = groups.clone()
    new[chosen, worst_drop_at[chosen]] = False
    new[chosen, grow_at[chosen]] = True
    return new.view_as(keep)
