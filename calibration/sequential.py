"""Threshold, then margins: the usual calibration of a detector in SRICE, fitted on disjoint data.

``conformalize`` shuffles the examples with a seeded permutation and splits them in two halves. The
first half fits the threshold (on all its predictions). The second half fits the box margins on the
matched pairs whose prediction survives that threshold, which are exactly the pairs ``apply`` will
widen. Why disjoint halves: the margin guarantee needs its calibration pairs to be exchangeable with
a new surviving pair, which holds when the threshold is fixed independently of them; fitted on the
same images, the threshold would depend on the very pairs it selects. (The threshold's own
guarantee does not involve the margins.) Each half must be big enough for its step; the seed is
stored, so the split is reproducible and recorded in the file.

The two calibrators passed in are fitted in place (and saved/loaded nested in this one's file).
``apply`` = threshold then margins; ``meta["calibration"]`` records both steps under ``steps``.
``alpha`` of the sequential calibrator is the sum of the steps' alphas, a nominal budget only: each
step's guarantee is stated in its own terms (expected per-image recall; containment of a kept
matched pair), and the file and ``evaluate`` report them separately.
"""

from __future__ import annotations

import numpy as np

from srice.errors import CalibrationError
from srice.tools.regions import Regions

from .base import Calibrator
from .file_format import FORMAT_VERSION
from .margins import BoxMarginCalibrator
from .matching import Example
from .threshold import ThresholdCalibrator


class SequentialCalibrator(Calibrator):
    """``ThresholdCalibrator`` then ``BoxMarginCalibrator``, each on its own half of the data."""

    method = "sequential"
    config_keys = ("seed",)

    def __init__(self, threshold: ThresholdCalibrator, margins: BoxMarginCalibrator, seed: int = 0):
        if not isinstance(threshold, ThresholdCalibrator) or not isinstance(margins, BoxMarginCalibrator):
            raise CalibrationError(
                "SequentialCalibrator needs a ThresholdCalibrator and a BoxMarginCalibrator, in that order."
            )
        super().__init__(min(threshold.alpha + margins.alpha, 1.0 - 1e-12))
        self.threshold = threshold
        self.margins = margins
        self.seed = int(seed)

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the threshold half and the margin half of n examples."""
        order = np.random.default_rng(self.seed).permutation(n)
        return np.sort(order[: n // 2]), np.sort(order[n // 2 :])

    def _conformalize(self, examples: list[Example]) -> tuple[int, dict]:
        n = len(examples)
        need = self.threshold.min_n() if self.threshold.mode == "recall" else 1
        if n // 2 < need:
            raise CalibrationError(
                f"SequentialCalibrator uses half of the examples for the threshold, which needs at least "
                f"{need} images for alpha={self.threshold.alpha:g}, so it needs at least {2 * need} "
                f"examples but got {n}; add calibration images or raise alpha."
            )
        first, second = self.split(n)
        self.threshold.conformalize([examples[i] for i in first])
        kept = [Example(self.threshold._apply(examples[i].pred), examples[i].truth) for i in second]
        # Matching is greedy by score, so matching the kept predictions gives the surviving pairs.
        self.margins.conformalize(kept)
        return n, self._nested()

    def _nested(self) -> dict:
        return {
            "threshold": _strip(self.threshold.to_dict()),
            "margins": _strip(self.margins.to_dict()),
        }

    def _restore(self, fitted: dict) -> None:
        self.threshold = ThresholdCalibrator.from_dict(
            _unstrip(fitted["threshold"]), "<sequential.threshold>"
        )
        self.margins = BoxMarginCalibrator.from_dict(_unstrip(fitted["margins"]), "<sequential.margins>")

    @classmethod
    def _from_params(cls, alpha: float, params: dict) -> Calibrator:
        threshold = ThresholdCalibrator.from_dict(_unstrip(params["threshold"]), "<sequential.threshold>")
        margins = BoxMarginCalibrator.from_dict(_unstrip(params["margins"]), "<sequential.margins>")
        return cls(threshold, margins, seed=params["seed"])

    def _apply(self, regions: Regions) -> Regions:
        return self.margins._apply(self.threshold._apply(regions))

    def _fitted_record(self) -> dict:
        return {"steps": [self.threshold.record(), self.margins.record()]}

    def _evaluate(self, examples: list[Example]) -> dict:
        threshold = self.threshold.evaluate(examples)
        kept = [Example(self.threshold._apply(ex.pred), ex.truth) for ex in examples]
        margins = self.margins.evaluate(kept)
        n_truth = sum(len(ex.truth) for ex in examples)
        found_and_contained = margins["n_contained"]
        return {
            "metric": "threshold, then margins on the kept matched pairs (each in its own terms)",
            "target": None,
            "coverage": found_and_contained / n_truth if n_truth else None,
            "coverage_note": "share of true objects found and contained; informational, no joint guarantee",
            "n": len(examples),
            "steps": {"threshold": threshold, "margins": margins},
        }


def _strip(data: dict) -> dict:
    """A nested calibrator's file dict without the fields the outer file already carries (the outer
    checksum covers the nested parts)."""
    return {k: v for k, v in data.items() if k not in ("format_version", "created_by", "checksum")}


def _unstrip(data: dict) -> dict:
    if not isinstance(data, dict):
        raise TypeError("a nested calibrator must be a JSON object")
    return {"format_version": FORMAT_VERSION} | data
