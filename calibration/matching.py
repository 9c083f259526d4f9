"""Ground truth, calibration examples, and the matching of predictions to ground truth.

Every calibrator measures a tool against ground truth through one matching rule, defined here, so
"recall", "precision", "containment" and "pixel recall" all mean the same pairs.

The rule (the SRICE paper does not give one; this is the usual detection-evaluation rule, as in
PASCAL VOC / COCO):

* Boxes are clamped to the image first (what ``apply`` works with).
* Predictions are visited in descending score order (stable: equal scores keep their input order).
* Each takes, among the ground-truth objects not matched yet, the one with the highest box IoU,
  provided that IoU is >= ``iou`` and, when ``use_labels``, the labels are equal ignoring case and
  surrounding spaces. Equal IoUs go to the lower ground-truth index.
* A prediction that finds no such object is unmatched (a false positive); so is a second detection
  of an object already taken by a higher-scored prediction.

Because higher scores are matched first, the matching of the predictions with score >= t is the
full matching restricted to them, for every t. The threshold calibrator relies on that: it matches
once and reads every threshold's true positives off the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srice.errors import CalibrationError
from srice.tools.regions import Regions, normalise_boxes


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The true objects of one image, in the pixel coordinates of the image the tool saw.

    ``boxes`` (m, 4) xyxy pixels; ``labels`` one per box; ``image_size`` (width, height); ``masks``
    (m, height, width) bool or None.
    """

    boxes: np.ndarray
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        normalise_boxes(self, "GroundTruth")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, image_size: tuple[int, int], with_masks: bool = False) -> GroundTruth:
        """An image without any true object."""
        width, height = image_size
        masks = np.zeros((0, height, width), dtype=bool) if with_masks else None
        return cls(np.zeros((0, 4)), (), image_size, masks)

    def clipped_boxes(self) -> np.ndarray:
        """The boxes clamped to the image (a copy)."""
        return clip_boxes(self.boxes, self.image_size)


@dataclass(frozen=True, eq=False)
class Example:
    """One calibration image: what the tool predicted and what is really there."""

    pred: Regions
    truth: GroundTruth

    def __post_init__(self) -> None:
        if not isinstance(self.pred, Regions) or not isinstance(self.truth, GroundTruth):
            raise CalibrationError(
                "An Example needs pred=Regions and truth=GroundTruth; build it as Example(pred, truth)."
            )
        if tuple(self.pred.image_size) != tuple(self.truth.image_size):
            raise CalibrationError(
                f"Example prediction image size {self.pred.image_size} differs from ground-truth image "
                f"size {self.truth.image_size}; give the ground truth in the pixels of the image the "
                f"tool saw."
            )


@dataclass(frozen=True, eq=False)
class Matching:
    """The result of :func:`match` for one image.

    ``pairs`` (k, 2) int: (prediction index, ground-truth index), in the order the predictions were
    matched (descending score); ``ious`` (k,) the IoU of each pair; ``unmatched_pred`` and
    ``unmatched_truth`` the indices left over, ascending.
    """

    pairs: np.ndarray
    ious: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_truth: np.ndarray

    @property
    def pred_index(self) -> np.ndarray:
        return self.pairs[:, 0]

    @property
    def truth_index(self) -> np.ndarray:
        return self.pairs[:, 1]

    def true_positive(self, n_pred: int) -> np.ndarray:
        """A boolean vector over the ``n_pred`` predictions: True where the prediction was matched."""
        tp = np.zeros(n_pred, dtype=bool)
        tp[self.pairs[:, 0]] = True
        return tp

    def __len__(self) -> int:
        return len(self.pairs)


def clip_boxes(boxes: np.ndarray, image_size) -> np.ndarray:
    """xyxy boxes clamped to [0, width] x [0, height] (a copy).

    ``image_size`` is one (width, height) or one per box, shape (k, 2).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.asarray(image_size, dtype=np.float64)
    upper = np.concatenate([size, size], axis=-1)  # (4,) or (k, 4): width, height, width, height
    return np.clip(boxes, 0.0, upper)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a`` (n, 4) and ``b`` (m, 4): an (n, m) array.

    Two degenerate boxes (zero union) have IoU 0, not NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = iw.clip(0) * ih.clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _normal_label(label: str) -> str:
    return label.strip().casefold()


def match(pred: Regions, truth: GroundTruth, iou: float = 0.5, use_labels: bool = True) -> Matching:
    """Greedy one-to-one matching of ``pred`` to ``truth`` (see the module docstring for the rule).

    Boxes are compared clamped to the image, as the calibrators' ``apply`` sees them.
    """
    return match_boxes(
        clip_boxes(pred.boxes, pred.image_size),
        pred.scores,
        pred.labels,
        clip_boxes(truth.boxes, truth.image_size),
        truth.labels,
        iou,
        use_labels,
    )


def match_boxes(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: tuple[str, ...],
    truth_boxes: np.ndarray,
    truth_labels: tuple[str, ...],
    iou: float = 0.5,
    use_labels: bool = True,
) -> Matching:
    """:func:`match` on plain arrays (for callers that clamp or filter boxes first)."""
    n, m = len(pred_boxes), len(truth_boxes)
    if n == 0 or m == 0:
        return Matching(np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.arange(n), np.arange(m))
    overlap = box_iou(pred_boxes, truth_boxes)
    allowed = overlap >= iou
    if use_labels:
        codes: dict[str, int] = {}
        p_codes = np.array([codes.setdefault(_normal_label(x), len(codes)) for x in pred_labels])
        t_codes = np.array([codes.setdefault(_normal_label(x), len(codes)) for x in truth_labels])
        allowed &= p_codes[:, None] == t_codes[None, :]
    candidates = np.where(allowed, overlap, -1.0)
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    pairs = _greedy(candidates[order], order)
    if not pairs:
        return Matching(np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.arange(n), np.arange(m))
    pair_array = np.array(pairs, dtype=np.int64)
    matched_pred = np.zeros(n, dtype=bool)
    matched_pred[pair_array[:, 0]] = True
    taken = np.zeros(m, dtype=bool)
    taken[pair_array[:, 1]] = True
    return Matching(
        pair_array,
        overlap[pair_array[:, 0], pair_array[:, 1]],
        np.flatnonzero(~matched_pred),
        np.flatnonzero(~taken),
    )


def _greedy(rows: np.ndarray, order: np.ndarray) -> list[tuple[int, int]]:
    """Row by row (already in score order), take the best still-free column with value >= 0.

    ``argmax`` keeps the first of equal values, so ties go to the lower ground-truth index. Small
    problems (the usual handful of boxes) run in plain Python, which is several times faster there
    than per-row numpy calls; both paths implement the same rule.
    """
    n, m = rows.shape
    pairs: list[tuple[int, int]] = []
    if n * m <= 1024:
        free = [True] * m
        for p, row in zip(order.tolist(), rows.tolist()):
            best, best_j = -1.0, -1
            for j, value in enumerate(row):
                if value > best and free[j]:
                    best, best_j = value, j
            if best_j >= 0 and best >= 0.0:
                free[best_j] = False
                pairs.append((p, best_j))
        return pairs
    taken = np.zeros(m, dtype=bool)
    for p, row in zip(order.tolist(), rows):
        row = np.where(taken, -1.0, row)
        j = int(np.argmax(row))
        if row[j] >= 0.0:
            taken[j] = True
            pairs.append((p, j))
    return pairs
