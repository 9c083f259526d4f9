"""Mask dilation by conformal risk control: grow a segmenter's masks until they cover the object.

SRICE dilates masks "likewise" (conformally); the details are ours.

Calibration units are matched instances (:func:`~srice.calibration.matching.match` on boxes; both
the prediction and the ground truth must carry masks). Dilating a mask by radius r (integer pixels)
adds every pixel whose Euclidean distance to the mask is <= r: the structuring element is the disk
of radius r (computed with ``scipy.ndimage.distance_transform_edt``, so calibration and ``apply``
use the same exact distances and no approximation of the disk). The loss of instance i is

    L_i(r) = 1 - (pixels of the true mask inside the dilated predicted mask) / (pixels of the true mask),

in [0, 1], non-increasing in r; an empty true mask has loss 0, an empty predicted mask loss 1 at
every r (nothing to dilate). One distance transform per instance gives L_i(r) for every r at once.
CRC picks the smallest r with (n/(n+1)) mean_i L_i(r) + 1/(n+1) <= alpha, so expected pixel recall
of a new matched instance's true mask is >= 1 - alpha. If no radius up to the image diagonal
reaches that (empty predicted masks), the calibrator uses the diagonal, warns, and records
``attainable = False``; as for the recall threshold, the guarantee is exact when no predicted mask
is empty and otherwise holds up to E[(mean loss of the largest radius on n + 1 instances - alpha)_+].

Because r is an integer the empirical risk moves in steps, and CRC's lower bound on the risk
(alpha - 2/(n+1) for continuous losses) weakens by the size of the step at the chosen radius; the
upper guarantee is unaffected. Extension point: for segmenters that return soft masks (probability
maps), the natural parameter is a probability threshold instead of a radius (continuous, so the
tighter bound returns); it would be chosen by the same CRC rule on the same loss, as a second mode.

``apply`` dilates every mask by r and sets each box to the union of its original box and its
dilated mask's extent (pixel (x, y) covers [x, x+1) x [y, y+1)): the box then contains the mask, and
never loses what the tool drew. A region with an empty mask keeps its box.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from srice.errors import CalibrationError, require
from srice.tools.regions import Regions

from .base import Calibrator
from .conformal import check_iou, min_n, too_few
from .matching import Example, match


def _ndimage():
    return require("scipy.ndimage", "scipy", "MaskCalibrator", CalibrationError)


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest pixel of ``mask`` (inf if the mask is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return _ndimage().distance_transform_edt(~mask)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by the Euclidean disk of ``radius`` pixels."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    return distance_to(mask) <= radius


def max_radius(image_size: tuple[int, int]) -> int:
    """A radius that dilates any non-empty mask to the whole image: the image diagonal."""
    return math.ceil(math.hypot(*image_size))


def loss_curves(examples: list[Example], iou: float, radius: int) -> np.ndarray:
    """(instances, radius + 1) array: L_i(r) for r = 0..radius over all matched instances."""
    curves = [np.zeros((0, radius + 1))]
    for index, ex in enumerate(examples):
        m = match(ex.pred, ex.truth, iou=iou)
        if len(m) == 0:
            continue
        if ex.pred.masks is None or ex.truth.masks is None:
            side = "prediction" if ex.pred.masks is None else "ground truth"
            raise CalibrationError(
                f"MaskCalibrator needs masks on predictions and ground truth but example {index}'s "
                f"{side} has none; give both masks or use BoxMarginCalibrator."
            )
        for p, t in m.pairs:
            curves.append(instance_loss_curve(ex.pred.masks[p], ex.truth.masks[t], radius)[None])
    return np.concatenate(curves)


def instance_loss_curve(pred_mask: np.ndarray, truth_mask: np.ndarray, radius: int) -> np.ndarray:
    """L(r) for r = 0..radius: the fraction of ``truth_mask`` farther than r from ``pred_mask``."""
    total = int(truth_mask.sum())
    if total == 0:
        return np.zeros(radius + 1)
    d = distance_to(pred_mask)[truth_mask]
    # dist <= r  <=>  ceil(dist) <= r for integer r; unreachable pixels land in the last bin.
    bins = np.minimum(np.ceil(d), radius + 1).astype(np.int64)
    covered = np.cumsum(np.bincount(bins, minlength=radius + 2))[: radius + 1]
    return 1.0 - covered / total


def crc_smallest(curves: np.ndarray, alpha: float) -> int | None:
    """Smallest grid index r with (sum_i L_i(r) + 1)/(n+1) <= alpha, or None."""
    n = len(curves)
    ok = curves.sum(axis=0) + 1.0 <= alpha * (n + 1) + 1e-9
    return int(np.argmax(ok)) if ok.any() else None


class MaskCalibrator(Calibrator):
    """A dilation radius for predicted masks; expected pixel recall of the true mask >= 1 - alpha."""

    method = "mask_dilation"
    config_keys = ("iou",)

    def __init__(self, alpha: float = 0.1, iou: float = 0.5):
        super().__init__(alpha)
        self.iou = check_iou(iou)
        self.radius = -1

    def min_n(self) -> int:
        """Minimum number of matched instances."""
        return min_n(self.alpha, "crc")

    def _conformalize(self, examples: list[Example]) -> tuple[int, dict]:
        radius = max((max_radius(ex.pred.image_size) for ex in examples), default=1)
        curves = loss_curves(examples, self.iou, radius)
        n = len(curves)
        if n < self.min_n():
            raise too_few("matched instances with masks", n, self.min_n(), self.alpha, self.name)
        r = crc_smallest(curves, self.alpha)
        attainable = r is not None
        if not attainable:
            r = radius
            warnings.warn(
                f"MaskCalibrator: no dilation radius reaches pixel recall {1 - self.alpha:g} on the "
                f"calibration instances (some predicted masks are empty); dilating by the image diagonal "
                f"({r} px), recall target not attainable.",
                stacklevel=3,
            )
        return n, {
            "radius": int(r),
            "attainable": attainable,
            "calibration_risk": float(curves[:, r].mean()),
            "structuring_element": "euclidean disk",
        }

    def _restore(self, fitted: dict) -> None:
        radius = fitted["radius"]
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ValueError("radius must be a non-negative integer")
        self.radius = radius

    def _apply(self, regions: Regions) -> Regions:
        if len(regions) == 0:
            return regions.replace()
        if regions.masks is None:
            raise CalibrationError(
                "MaskCalibrator.apply needs regions with masks; apply it to a segmenter's output or use "
                "BoxMarginCalibrator for boxes."
            )
        masks = np.stack([dilate(m, self.radius) for m in regions.masks])
        boxes = regions.boxes.copy()
        for i, m in enumerate(masks):
            cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
            if len(cols):
                extent = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
                boxes[i, :2] = np.minimum(boxes[i, :2], extent[:2])
                boxes[i, 2:] = np.maximum(boxes[i, 2:], extent[2:])
        return regions.replace(boxes=boxes, masks=masks)

    def _evaluate(self, examples: list[Example]) -> dict:
        radius = max((max_radius(ex.pred.image_size) for ex in examples), default=1)
        curves = loss_curves(examples, self.iou, max(radius, self.radius))
        recall = 1.0 - curves[:, self.radius]
        metric = "pixel recall of the true mask by the dilated mask (matched instances)"
        return self._coverage(metric, recall, len(examples)) | {
            "recall_before": float(1.0 - curves[:, 0].mean()) if len(recall) else None,
            "radius": self.radius,
        }
