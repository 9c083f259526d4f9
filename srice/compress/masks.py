"""Masks from scores (True = keep the weight) and applying them.

Wanda compares weights within one output row ("per-output" groups): every row loses exactly the
same share, which the paper found better than a layer-wide threshold for LLMs and which makes the
achieved sparsity exact and checkable. N:M keeps the N highest-scoring weights in each group of M
consecutive input columns of a row (the hardware-friendly pattern, e.g. 2:4).
"""

from __future__ import annotations

import torch

from srice.errors import InputError


def check_sparsity(sparsity: float) -> float:
    sparsity = float(sparsity)
    if not 0.0 <= sparsity < 1.0:
        raise InputError(f"sparsity must be in [0, 1), got {sparsity:g}")
    return sparsity


def parse_nm(text: str | None) -> tuple[int, int] | None:
    """'2:4' -> (2, 4): keep N of every M. None or '' -> None (unstructured)."""
    if not text:
        return None
    try:
        n, m = (int(v) for v in str(text).split(":"))
    except ValueError:
        raise InputError(f"N:M must look like 2:4, got {text!r}") from None
    if not 0 < n < m:
        raise InputError(f"N:M needs 0 < N < M (keep N of every M weights), got {text!r}")
    return n, m


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing the ``floor(cols * sparsity)`` lowest scores of every row (ties broken by
    column order, so the result is deterministic)."""
    sparsity = check_sparsity(sparsity)
    rows, cols = score.shape
    k = int(cols * sparsity)
    keep = torch.ones_like(score, dtype=torch.bool)
    if k:
        order = torch.sort(score, dim=1, stable=True).indices[:, :k]
        keep.scatter_(1, order, False)
    return keep


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask with exactly ``n`` kept weights in each group of ``m`` consecutive input columns."""
    parse_nm(f"{n}:{m}")
    rows, cols = score.shape
    if cols % m:
        raise InputError(f"N:M with M={m} needs the input width ({cols}) to be a multiple of M")
    groups = score.reshape(rows, cols // m, m)
    top = torch.sort(groups, dim=2, descending=True, stable=True).indices[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, top, True)
    return keep.reshape(rows, cols)


def make_mask(score: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> torch.Tensor:
    return nm_mask(score, *nm) if nm else row_mask(score, sparsity)


def apply_mask(weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A new tensor: ``weight`` with the pruned entries set to exactly zero, same dtype."""
    if keep.shape != weight.shape:
        raise ValueError(f"mask shape {tuple(keep.shape)} != weight shape {tuple(weight.shape)}")
    return torch.where(keep, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def sparsity_of(weight: torch.Tensor) -> float:
    """Share of exact zeros."""
    return float((weight == 0).sum()) / weight.numel()
