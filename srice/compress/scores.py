"""Pruning scores: a weight-shaped tensor where a lower value means "cheaper to remove".

Pure functions of tensors; the activation statistics they need come from ``srice.compress.capture``.
"""

from __future__ import annotations

import torch


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """|W|: the baseline that ignores the data."""
    return weight.detach().abs().float()


def wanda(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """Wanda (Sun et al., 2023): |W_ij| * ||X_j||_2, where X_j is input feature j over all calibration
    tokens. A small weight on a large-activation input can matter more than a large weight on a quiet
    one, which is why LLM outlier features make magnitude pruning fail.

    ``input_norm`` has one entry per input column (``weight.shape[1]``).
    """
    if input_norm.ndim != 1 or input_norm.shape[0] != weight.shape[1]:
        raise ValueError(
            f"input_norm needs one value per input column ({weight.shape[1]}), got {tuple(input_norm.shape)}"
        )
    return weight.detach().abs().float() * input_norm.float().reshape(1, -1)
