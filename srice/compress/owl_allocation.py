"""OWL: outlier-weighted layerwise sparsity (Yin et al., ICML 2024), as its reference code computes it.

Layers with many outlier scores are pruned less. Per block l (a decoder layer), the outlier ratio
D_l is the share of its Wanda scores above M x the block's mean score. The reference code
(luuyin/OWL, ``prune_wanda_outlier``) scales the ratios to [0, 2*lambda] and sets the block's
density to D~_l - mean(D~) + (1 - S), i.e. its sparsity to S - (D~_l - mean(D~)): the mean stays S
and a layer may sit up to 2*lambda from it. A layer pushed to sparsity <= 0 gets 0.01, as there;
one pushed to >= 1 (the reference then prunes every weight) is kept just below 1. Where all ratios
are equal the reference divides by zero; here every layer gets S.

``clamp=True`` is srice's earlier variant: every layer within [S - lambda, S + lambda] (centred
deviations shrunk by a common factor when they exceed lambda, lambda capped at min(S, 1 - S)), so
the mean stays S and the order stays inverse to the outlier ratio. It differs from the reference by
up to lambda on a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from srice.compress.masks import check_sparsity
from srice.errors import InputError

FLOOR = 0.01  # the reference's sparsity for a layer its rule pushes to <= 0
CEILING = 1.0 - 1e-6  # below 1: a layer keeps a weight per row


def outlier_ratio(scores: Sequence[torch.Tensor], m: float = 5.0) -> float:
    """Share of all entries of one block's score tensors that exceed ``m`` x their common mean."""
    flat = torch.cat([s.detach().float().flatten() for s in scores])
    if flat.numel() == 0:
        raise ValueError("no scores")
    return float((flat > m * flat.mean()).float().mean())


def effective_lambda(sparsity: float, lam: float, clamp: bool = False) -> float:
    """Lambda as the allocation uses it: as given, or with ``clamp`` capped at min(S, 1 - S)."""
    return max(0.0, min(float(lam), sparsity, 1.0 - sparsity - 1e-6)) if clamp else float(lam)


def allocate(
    ratios: Sequence[float], sparsity: float, lam: float = 0.08, *, clamp: bool = False
) -> list[float]:
    """Per-block sparsities from outlier ratios: the reference rule, or with ``clamp`` srice's
    +-lambda variant (module docstring). More outliers, less pruning; the mean is ``sparsity``."""
    sparsity = check_sparsity(sparsity)
    if lam < 0:
        raise InputError(f"OWL lambda must be >= 0, got {lam:g}")
    if not ratios:
        raise InputError("OWL needs at least one block")
    lam = effective_lambda(sparsity, lam, clamp)
    d = torch.tensor(list(ratios), dtype=torch.float64)
    spread = float(d.max() - d.min())
    if spread == 0 or lam == 0:
        return [sparsity] * len(d)
    scaled = (d - d.min()) / spread * 2 * lam
    dev = scaled - scaled.mean()
    if not clamp:
        return [FLOOR if float(sparsity - x) <= 0 else min(float(sparsity - x), CEILING) for x in dev]
    worst = float(dev.abs().max())
    if worst > lam:
        dev = dev * (lam / worst)
    return [min(max(float(sparsity - x), 0.0), CEILING) for x in dev]  # clamp rounding only
