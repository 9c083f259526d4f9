"""Conformal sizes and quantiles shared by the calibrators, and the checks of their settings.

Sizes: split conformal needs the ceil((n+1)(1-alpha))-th smallest of n scores to exist, i.e.
n >= ceil(1/alpha) - 1; conformal risk control with a loss bounded by B = 1 needs
1/(n+1) <= alpha, i.e. n >= 1/alpha - 1. Below that the calibrators raise instead of returning a
parameter without a guarantee. Both rounding steps use a 1e-9 tolerance, so that alpha = 0.1 gives
exactly 9 and not 10 through floating-point noise in (n+1)(1-alpha).
"""

from __future__ import annotations

import math

import numpy as np

from srice.errors import CalibrationError

_EPS = 1e-9


def min_n(alpha: float, method: str = "split") -> int:
    """The smallest calibration size for which ``method`` can give its guarantee at level ``alpha``.

    ``"split"``: split conformal, ceil((n+1)(1-alpha)) <= n  <=>  n >= ceil(1/alpha) - 1.
    ``"crc"``: conformal risk control with a loss bounded by 1, 1/(n+1) <= alpha  <=>  n >= 1/alpha - 1.
    """
    alpha = check_alpha(alpha)
    if method == "split":
        return max(1, math.ceil(1.0 / alpha - _EPS) - 1)
    if method == "crc":
        return max(1, math.ceil(1.0 / alpha - 1.0 - _EPS))
    raise CalibrationError(f"Unknown min_n method {method!r}; use 'split' or 'crc'.")


def conformal_rank(n: int, alpha: float) -> int:
    """The 1-based rank ceil((n+1)(1-alpha)) of the split-conformal quantile among n scores."""
    return max(1, math.ceil((n + 1) * (1.0 - alpha) - _EPS))


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))-th smallest of ``scores``; the caller has checked n >= min_n."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = conformal_rank(len(scores), alpha)
    if k > len(scores):  # pragma: no cover - callers check min_n first
        raise CalibrationError(f"{len(scores)} scores are too few for alpha={alpha}.")
    return float(np.partition(scores, k - 1)[k - 1])


def check_alpha(alpha: float, name: str = "alpha") -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise CalibrationError(f"{name} must be a number strictly between 0 and 1, got {alpha!r}.")
    return value


def check_iou(iou: float) -> float:
    value = float(iou)
    if not 0.0 < value <= 1.0:
        raise CalibrationError(f"iou must be in (0, 1], got {iou!r}.")
    return value


def too_few(what: str, have: int, need: int, alpha: float, calibrator: str) -> CalibrationError:
    """The error for a calibration set below the minimum size, stating the minimum."""
    return CalibrationError(
        f"{calibrator} needs at least {need} {what} for alpha={alpha:g} but the calibration data has "
        f"{have}; add calibration images or raise alpha."
    )
