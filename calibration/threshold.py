"""Confidence thresholds for a tool's regions: recall by conformal risk control, precision by LTT.

``mode="recall"`` (SRICE's "confidence threshold chosen by conformal risk control for recall of
relevant objects at level 1 - alpha") follows Angelopoulos et al., *Conformal Risk Control* (CRC).
For a calibration image i and threshold t, the loss is

    L_i(t) = fraction of image i's true objects that no prediction with score >= t matches
             (0 when the image has no true object),

bounded by B = 1 and non-increasing as t decreases. With n images, the threshold is the largest t
with (n/(n+1)) * mean_i L_i(t) + 1/(n+1) <= alpha, which guarantees E[L_test(t)] <= alpha: expected
per-image recall >= 1 - alpha over images drawn like the calibration images. Images without targets
count with loss 0, so they make the guarantee easier; calibrate on the image population the tool
will see. Matching is :func:`~srice.calibration.matching.match` (greedy by score), whose true
positives above t do not depend on the predictions below t, so every candidate threshold is read
off one matching. The mean loss only changes at true-positive scores, so the search over the
distinct prediction scores is exact and vectorised (one sort and one cumulative sum).

When the tool misses objects outright, no threshold may reach the level: keeping every prediction
still leaves more than alpha of the objects unfound. We do not pretend: the calibrator keeps every
prediction (threshold -inf), warns, and records ``attainable = False`` with the calibration risk it
did achieve, so the CLI and traces show that the recall target is out of this tool's reach.
The same fact qualifies the guarantee: CRC assumes the most permissive threshold meets the level,
which a tool that misses objects does not promise. Without that assumption the argument still gives
E[L_test] <= alpha + E[(R_{n+1} - alpha)_+], R_{n+1} the mean loss of keeping everything on n + 1
images; the extra term vanishes when the tool's own misses are well below alpha (the usual case, and
the one the tests measure) and is what ``attainable = False`` warns about.
When the calibration images contain no true object at all, every threshold has zero loss and CRC's
choice is to keep nothing (threshold +inf); that is correct but uninformative, so it also warns.

``mode="precision"`` is learn-then-test (Angelopoulos et al., *Learn Then Test*): with probability
>= 1 - delta over the calibration data, the precision of the kept predictions (the probability that
a prediction with score >= t is a true positive) is >= 1 - alpha. Each prediction is one binary
sample (true positive or not, its score the predicted probability), handed to MAPIE 1.6's
``mapie.risk_control.BinaryClassificationController`` (risk "precision", Hoeffding-Bentkus
p-values, Bonferroni-Holm family-wise error control over the fixed grid 0, 0.01, ..., 0.99, and,
among the certified thresholds, the one with the highest recall, i.e. the lowest). Two choices:

* The grid is fixed, not the calibration scores, because LTT's hypotheses must not depend on the
  data they are tested on. Scores must therefore be probabilities in [0, 1].
* MAPIE 1.6 returns NaN p-values for grid points above every calibration score (no kept sample),
  and its Holm procedure then tests a NaN first and certifies nothing. We pass a Holm procedure that
  reads NaN as p = 1 ("no evidence"), which is what such a threshold deserves.

If no threshold is certified (too few predictions, or a tool that is simply not that precise) the
calibrator keeps nothing (threshold +inf), warns, and records ``attainable = False``. LTT treats the
predictions as independent samples; predictions of one image can be correlated (one hard image
yields several false positives), and then the guarantee is approximate; calibrate on many images.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from srice.errors import CalibrationError, require
from srice.tools.regions import Regions

from .base import Calibrator
from .conformal import check_alpha, check_iou, min_n, too_few
from .file_format import decode_float, encode_float
from .matching import Example, match

PRECISION_GRID = np.round(np.linspace(0.0, 0.99, 100), 10)
MODES = ("recall", "precision")


def _tp_and_counts(examples: list[Example], iou: float):
    """Per prediction: (image index, score, true positive); per image: number of true objects."""
    image, scores, tp = [], [], []
    n_truth = np.zeros(len(examples), dtype=np.int64)
    for i, ex in enumerate(examples):
        n_truth[i] = len(ex.truth)
        m = match(ex.pred, ex.truth, iou=iou)
        image.append(np.full(len(ex.pred), i, dtype=np.int64))
        scores.append(ex.pred.scores)
        tp.append(m.true_positive(len(ex.pred)))
    if not image:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), n_truth
    return np.concatenate(image), np.concatenate(scores), np.concatenate(tp), n_truth


def image_losses(examples: list[Example], threshold: float, iou: float) -> np.ndarray:
    """L_i(threshold) for each image: the fraction of its true objects not found (0 without any)."""
    image, scores, tp, n_truth = _tp_and_counts(examples, iou)
    found = np.bincount(image[tp & (scores >= threshold)], minlength=len(examples))
    return np.where(n_truth > 0, 1.0 - found / np.maximum(n_truth, 1), 0.0)


def crc_recall_threshold(
    image: np.ndarray, scores: np.ndarray, tp: np.ndarray, n_truth: np.ndarray, alpha: float
) -> tuple[float, bool, float]:
    """The CRC threshold: (threshold, attainable, mean calibration loss at it).

    n * mean L(t) = (#images with objects) - G(t), where G(t) sums 1/k_i over true positives with
    score >= t; the condition (n mean L + 1)/(n+1) <= alpha becomes G(t) >= target below.
    """
    n = len(n_truth)
    with_objects = float(np.count_nonzero(n_truth))
    target = with_objects + 1.0 - alpha * (n + 1)
    if target <= 1e-9:
        return math.inf, True, with_objects / n if n else 0.0  # keeping nothing already qualifies
    s = scores[tp]
    w = 1.0 / n_truth[image[tp]]
    order = np.argsort(-s, kind="stable")
    s, gain = s[order], np.cumsum(w[order])
    if len(s) == 0:
        return -math.inf, False, with_objects / n
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of each distinct score
    ok = gain[ends] >= target - 1e-9
    if not ok.any():
        return -math.inf, False, (with_objects - gain[-1]) / n
    j = ends[int(np.argmax(ok))]
    return float(s[j]), True, (with_objects - gain[j]) / n


def _nan_safe_holm(risk_control):
    """MAPIE's Bonferroni-Holm, reading NaN p-values (grid points with no kept sample) as 1."""

    class NanSafeHolm(risk_control.FWERBonferroniHolm):
        def run(self, p_values, delta):
            p = np.asarray(p_values, dtype=float)
            return super().run(np.where(np.isnan(p), 1.0, p), delta)

    return NanSafeHolm()


def ltt_min_predictions(alpha: float, delta: float, grid_size: int = len(PRECISION_GRID)) -> int:
    """Fewest predictions with which LTT can certify any threshold.

    The best case is m kept predictions that are all true positives: the binary Bentkus p-value is
    (1 - alpha)^m, and Holm's first test is at level delta / grid_size.
    """
    return math.ceil(math.log(delta / grid_size) / math.log(1.0 - alpha) - 1e-9)


class ThresholdCalibrator(Calibrator):
    """A score threshold for a tool's regions; ``apply`` keeps the regions with score >= threshold.

    mode="recall": CRC, expected per-image recall >= 1 - alpha.
    mode="precision": LTT, P(precision of kept predictions >= 1 - alpha) >= 1 - delta.
    ``iou`` is the matching IoU that makes a prediction a true positive (labels must agree).
    """

    method = "threshold"
    config_keys = ("mode", "delta", "iou")

    def __init__(self, alpha: float = 0.1, mode: str = "recall", delta: float = 0.1, iou: float = 0.5):
        super().__init__(alpha)
        if mode not in MODES:
            raise CalibrationError(
                f"ThresholdCalibrator mode must be one of {', '.join(MODES)}, got {mode!r}."
            )
        self.mode = mode
        self.delta = check_alpha(delta, "delta")
        self.iou = check_iou(iou)
        self.threshold = math.nan

    def min_n(self) -> int:
        """Minimum calibration size: images for recall (CRC), predictions for precision (LTT)."""
        if self.mode == "recall":
            return min_n(self.alpha, "crc")
        return ltt_min_predictions(self.alpha, self.delta)

    def _conformalize(self, examples: list[Example]) -> tuple[int, dict]:
        n = len(examples)
        image, scores, tp, n_truth = _tp_and_counts(examples, self.iou)
        if self.mode == "recall":
            if n < self.min_n():
                raise too_few("calibration images", n, self.min_n(), self.alpha, self.name)
            threshold, attainable, risk = crc_recall_threshold(image, scores, tp, n_truth, self.alpha)
            if not attainable:
                warnings.warn(
                    f"ThresholdCalibrator: even keeping every prediction the tool misses {risk:.1%} of the "
                    f"objects per image on {n} calibration images, too many for recall >= {1 - self.alpha:g} "
                    f"(CRC needs (n*risk + 1)/(n+1) <= alpha); keeping all predictions, recall target not "
                    f"attainable.",
                    stacklevel=3,
                )
            elif not n_truth.any():
                warnings.warn(
                    "ThresholdCalibrator: the calibration images contain no true object, so the recall "
                    "threshold keeps nothing; calibrate on images that contain the target objects.",
                    stacklevel=3,
                )
            return n, {
                "threshold": encode_float(threshold),
                "attainable": attainable,
                "calibration_risk": float(risk),
                "n_truth": int(n_truth.sum()),
                "n_predictions": len(scores),
            }
        return n, self._conformalize_precision(scores, tp, n)

    def _conformalize_precision(self, scores: np.ndarray, tp: np.ndarray, n: int) -> dict:
        need = self.min_n()
        if len(scores) < need:
            raise too_few("predictions (precision mode)", len(scores), need, self.alpha, self.name)
        if np.any(~np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
            raise CalibrationError(
                "ThresholdCalibrator precision mode needs scores in [0, 1]; use mode='recall' for tools "
                "whose scores are not probabilities."
            )
        risk_control = require(
            "mapie.risk_control", "mapie", "ThresholdCalibrator(mode='precision')", CalibrationError
        )
        controller = risk_control.BinaryClassificationController(
            predict_function=lambda x: np.column_stack([1.0 - x, x]),
            risk="precision",
            target_level=float(1.0 - self.alpha),
            confidence_level=float(1.0 - self.delta),
            list_predict_params=PRECISION_GRID,
            fwer_method=_nan_safe_holm(risk_control),
        )
        with warnings.catch_warnings():
            # MAPIE warns when nothing is certified (handled below) and when all scores are 0/1.
            warnings.simplefilter("ignore", UserWarning)
            controller.calibrate(scores, tp.astype(int))
        attainable = controller.best_predict_param is not None
        threshold = float(controller.best_predict_param) if attainable else math.inf
        kept = scores >= threshold
        if not attainable:
            warnings.warn(
                f"ThresholdCalibrator: no threshold certifies precision >= {1 - self.alpha:g} with "
                f"confidence {1 - self.delta:g} on {len(scores)} predictions; keeping nothing "
                f"(add calibration images or raise alpha/delta).",
                stacklevel=4,
            )
        return {
            "threshold": encode_float(threshold),
            "attainable": attainable,
            "calibration_precision": float(tp[kept].mean()) if kept.any() else None,
            "n_predictions": len(scores),
            "n_true_positives": int(tp.sum()),
            "grid": "0, 0.01, ..., 0.99",
            "fwer": "bonferroni_holm",
        }

    def _restore(self, fitted: dict) -> None:
        threshold = decode_float(fitted["threshold"])
        if not (0.0 <= threshold <= 1.0 or math.isinf(threshold)):
            raise ValueError(f"threshold must be a score in [0, 1] or +-inf, got {threshold}")
        self.threshold = threshold

    def _apply(self, regions: Regions) -> Regions:
        return regions.select(regions.scores >= self.threshold)

    def _evaluate(self, examples: list[Example]) -> dict:
        image, scores, tp, n_truth = _tp_and_counts(examples, self.iou)
        kept = scores >= self.threshold
        found = np.bincount(image[tp & kept], minlength=len(examples))
        counts = {
            "n_images": len(examples),
            "n_truth": int(n_truth.sum()),
            "n_predictions": len(scores),
            "n_kept": int(kept.sum()),
            "n_true_positives_kept": int((tp & kept).sum()),
            "threshold": self.threshold if math.isfinite(self.threshold) else str(self.threshold),
        }
        if self.mode == "recall":
            losses = np.where(n_truth > 0, 1.0 - found / np.maximum(n_truth, 1), 0.0)
            object_recall = found.sum() / n_truth.sum() if n_truth.sum() else None
            return {
                "metric": "recall (mean per image; images without objects count as 1)",
                "target": 1.0 - self.alpha,
                "coverage": float(1.0 - losses.mean()) if len(losses) else None,
                "object_recall": None if object_recall is None else float(object_recall),
                "n": len(examples),
                **counts,
            }
        precision = float(tp[kept].mean()) if kept.any() else None
        return {
            "metric": "precision of kept predictions",
            "target": 1.0 - self.alpha,
            "coverage": precision,
            "confidence": 1.0 - self.delta,
            "n": int(kept.sum()),
            **counts,
        }
