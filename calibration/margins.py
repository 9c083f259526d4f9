"""Box margins by split conformal prediction: widen a tool's boxes so they contain the true object.

SRICE widens the calibrated regions' boxes "by split-conformal quantiles"; the details are ours.

Calibration units are matched (prediction, truth) pairs (:func:`~srice.calibration.matching.match`,
boxes clamped to the image first, exactly as ``apply`` sees them). Per pair, the nonconformity of
each edge is how far the predicted edge must move outward to reach the true edge,

    e = (x1p - x1g, y1p - y1g, x2g - x2p, y2g - y2p)     (negative: already outside the true edge),

in pixels (``kind="additive"``), or divided by the predicted box's width (x edges) or height
(y edges) for ``kind="multiplicative"``, which transfers across image resolutions and object sizes.
The width/height is floored at 1 pixel so a degenerate predicted box does not blow the score up.

``combine="max"`` scores a pair by max(e) and takes one quantile q, the ceil((n+1)(1-alpha))-th
smallest of the n scores, and widens all four edges by q: the widened box contains the true box
exactly when max(e) <= q, so P(contain) >= 1 - alpha for a new matched pair, and <= 1 - alpha +
1/(n+1) when the scores have no ties. ``combine="bonferroni"`` takes one quantile per edge at level
alpha/4 (union bound): also >= 1 - alpha, more conservative by design, but it lets the four edges
get different margins (useful when a tool is loose on one side). It needs n >= ceil(4/alpha) - 1.

Choices where the paper is silent:

* Never shrink: a negative quantile (a tool that draws loose boxes) is applied as 0. Shrinking keeps
  the guarantee in theory, but SRICE uses the boxes for zoomed crops, where cutting into the tool's
  own box on the strength of a calibration set is the worse error; the raw quantile is recorded.
  The upper coverage bound above then holds only when q >= 0.
* After widening, boxes are clamped to the image. When the true box lies inside the image (it does
  after clamping it), clamping never breaks containment.
* Matched pairs of one image are treated as exchangeable with those of other images; if a tool's
  errors are strongly correlated within an image the guarantee is approximate.
* Additive margins are in the calibration images' pixels: apply them to images of the same
  resolution, or use the multiplicative kind.
"""

from __future__ import annotations

import numpy as np

from srice.errors import CalibrationError
from srice.tools.regions import Regions

from .base import Calibrator
from .conformal import check_iou, conformal_quantile, min_n, too_few
from .matching import Example, clip_boxes, match_boxes

KINDS = ("additive", "multiplicative")
COMBINES = ("max", "bonferroni")
MAX_MARGIN = 1e5  # pixels (additive) or a factor (multiplicative): larger is a damaged file, not a fit


def edge_scores(pred_boxes: np.ndarray, truth_boxes: np.ndarray, kind: str) -> np.ndarray:
    """(k, 4) nonconformity of each edge of k matched (pred, truth) box pairs (see module docstring)."""
    p = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(truth_boxes, dtype=np.float64).reshape(-1, 4)
    e = np.stack([p[:, 0] - g[:, 0], p[:, 1] - g[:, 1], g[:, 2] - p[:, 2], g[:, 3] - p[:, 3]], axis=1)
    if kind == "multiplicative":
        e = e / _scales(p)
    return e


def _scales(boxes: np.ndarray) -> np.ndarray:
    """(k, 4) per-edge scale of the multiplicative kind: width for x edges, height for y edges."""
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    return np.stack([w, h, w, h], axis=1)


def widen(boxes: np.ndarray, margins: np.ndarray, kind: str, image_size) -> np.ndarray:
    """Boxes moved outward by ``margins`` (4,) per edge (times width/height if multiplicative).

    Negative margins count as 0 (never shrink); the result is clamped to the image. ``image_size`` is
    one (width, height) or one per box.
    """
    boxes = clip_boxes(boxes, image_size)
    step = np.broadcast_to(np.maximum(np.asarray(margins, dtype=np.float64), 0.0), (len(boxes), 4))
    if kind == "multiplicative":
        step = step * _scales(boxes)
    return clip_boxes(boxes + step * np.array([-1.0, -1.0, 1.0, 1.0]), image_size)


def matched_pairs(examples: list[Example], iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clamped (pred boxes, truth boxes, image sizes (k, 2)) of all matched pairs, in example order."""
    preds, truths, sizes = [np.zeros((0, 4))], [np.zeros((0, 4))], [np.zeros((0, 2))]
    for ex in examples:
        pred = clip_boxes(ex.pred.boxes, ex.pred.image_size)
        truth = clip_boxes(ex.truth.boxes, ex.truth.image_size)
        m = match_boxes(pred, ex.pred.scores, ex.pred.labels, truth, ex.truth.labels, iou=iou)
        preds.append(pred[m.pred_index])
        truths.append(truth[m.truth_index])
        sizes.append(np.tile(np.asarray(ex.pred.image_size, dtype=np.float64), (len(m), 1)))
    return np.concatenate(preds), np.concatenate(truths), np.concatenate(sizes)


def contains(outer: np.ndarray, inner: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Row-wise: does xyxy box ``outer`` contain ``inner`` (to a relative tolerance)?"""
    slack = tol * (1.0 + np.abs(inner))
    return (
        (outer[:, 0] <= inner[:, 0] + slack[:, 0])
        & (outer[:, 1] <= inner[:, 1] + slack[:, 1])
        & (outer[:, 2] >= inner[:, 2] - slack[:, 2])
        & (outer[:, 3] >= inner[:, 3] - slack[:, 3])
    )


class BoxMarginCalibrator(Calibrator):
    """Split-conformal box margins; ``apply`` widens every box so it contains the true object.

    Guarantee: P(widened predicted box contains the true box) >= 1 - alpha for a new matched pair.
    """

    method = "box_margins"
    config_keys = ("kind", "combine", "iou")

    def __init__(self, alpha: float = 0.1, kind: str = "additive", combine: str = "max", iou: float = 0.5):
        super().__init__(alpha)
        if kind not in KINDS:
            raise CalibrationError(
                f"BoxMarginCalibrator kind must be one of {', '.join(KINDS)}, got {kind!r}."
            )
        if combine not in COMBINES:
            raise CalibrationError(
                f"BoxMarginCalibrator combine must be one of {', '.join(COMBINES)}, got {combine!r}."
            )
        self.kind = kind
        self.combine = combine
        self.iou = check_iou(iou)
        self.margins = np.full(4, np.nan)

    def min_n(self) -> int:
        """Minimum number of matched pairs."""
        return min_n(self.alpha if self.combine == "max" else self.alpha / 4, "split")

    def _conformalize(self, examples: list[Example]) -> tuple[int, dict]:
        pred, truth, _ = matched_pairs(examples, self.iou)
        n = len(pred)
        if n < self.min_n():
            raise too_few("matched (prediction, truth) pairs", n, self.min_n(), self.alpha, self.name)
        e = edge_scores(pred, truth, self.kind)
        if self.combine == "max":
            q = np.full(4, conformal_quantile(e.max(axis=1), self.alpha))
        else:
            q = np.array([conformal_quantile(e[:, j], self.alpha / 4) for j in range(4)])
        return n, {"quantiles": [float(v) for v in q], "margins": [float(v) for v in np.maximum(q, 0.0)]}

    def _restore(self, fitted: dict) -> None:
        margins = np.array([float(v) for v in fitted["margins"]], dtype=np.float64)
        if margins.shape != (4,) or not np.all(np.isfinite(margins)) or np.any(np.abs(margins) > MAX_MARGIN):
            raise ValueError(f"margins must be 4 finite numbers of at most {MAX_MARGIN:g} in size")
        self.margins = margins

    def _apply(self, regions: Regions) -> Regions:
        return regions.replace(boxes=widen(regions.boxes, self.margins, self.kind, regions.image_size))

    def _evaluate(self, examples: list[Example]) -> dict:
        pred, truth, sizes = matched_pairs(examples, self.iou)
        widened = widen(pred, self.margins, self.kind, sizes)
        ok = contains(widened, truth)
        area = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
        new_area = (widened[:, 2] - widened[:, 0]) * (widened[:, 3] - widened[:, 1])
        ratio = new_area[area > 0] / area[area > 0]
        metric = "containment of the true box by the widened box (matched pairs)"
        return self._coverage(metric, ok, len(examples)) | {
            "n_contained": int(ok.sum()),
            "contained_before": float(contains(pred, truth).mean()) if len(ok) else None,
            "mean_area_ratio": float(ratio.mean()) if len(ratio) else None,
            "margins": [float(v) for v in self.margins],
        }
