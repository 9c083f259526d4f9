"""OWL: outlier-weighted layerwise sparsity (Yin et al., ICML 2024).

Layers with many outlier scores are pruned less. Per block l (a decoder layer), the outlier ratio
D_l is the share of its Wanda scores above M x the block's mean score. The ratios are scaled to
[0, 2*lambda]; block sparsity is S - (D~_l - mean(D~)), so the average stays S.

One deviation, written down here: the paper's rule can leave a layer up to 2*lambda from S (one
outlier-heavy layer among many plain ones). We promise [S - lambda, S + lambda], so when the
centred deviations exceed lambda they are shrunk by a common factor: the mean stays S and the order
stays inverse to the outlier ratio. lambda is also capped at min(S, 1 - S) so every layer's sparsity
is a valid fraction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from srice.compress.masks import check_sparsity
from srice.errors import InputError


def outlier_ratio(scores: Sequence[torch.Tensor], m: float = 5.0) -> float:
    """Share of all entries of one block's score tensors that exceed ``m`` x their common mean."""
    flat = torch.cat([s.detach().float().flatten() for s in scores])
    if flat.numel() == 0:
        raise ValueError("no scores")
    return float((flat > m * flat.mean()).float().mean())


def effective_lambda(sparsity: float, lam: float) -> float:
    return max(0.0, min(float(lam), sparsity, 1.0 - sparsity - 1e-6))


def allocate(ratios: Sequence[float], sparsity: float, lam: float = 0.08) -> list[float]:
    """Per-block sparsities from outlier ratios: mean ``sparsity``, within +-lambda, inverse order."""
    sparsity = check_sparsity(sparsity)
    if lam < 0:
        raise InputError(f"OWL lambda must be >= 0, got {lam:g}")
    if not ratios:
        raise InputError("OWL needs at least one block")
    lam = effective_lambda(sparsity, lam)
    d = torch.tensor(list(ratios), dtype=torch.float64)
    spread = float(d.max() - d.min())
    if spread == 0 or lam == 0:
        return [sparsity] * len(d)
    scaled = (d - d.min()) / spread * 2 * lam
    dev = scaled - scaled.mean()
    worst = float(dev.abs().max())
    if worst > lam:
        dev = dev * (lam / worst)
    return [min(max(float(sparsity - x), 0.0), 1.0 - 1e-6) for x in dev]  # clamp rounding only
