"""Conformal calibrators for vision-tool outputs (SRICE step 3: "calibrate its output").

Every calibrator has MAPIE-style verbs: ``conformalize(examples) -> self`` fits it on a sequence of
:class:`Example` (one image's predicted :class:`~srice.tools.regions.Regions` and its
:class:`GroundTruth`), ``apply(regions) -> Regions`` calibrates a tool's output and records what it
did in ``regions.meta["calibration"]``, ``evaluate(examples) -> dict`` measures coverage on held-out
data, and ``save(path)`` / ``load(path)`` (or :func:`load_calibrator`) keep it as JSON.

* :class:`ThresholdCalibrator`: score threshold; recall by conformal risk control, or precision by
  learn-then-test (MAPIE).
* :class:`BoxMarginCalibrator`: split-conformal box margins (containment of the true box).
* :class:`MaskCalibrator`: mask dilation radius by conformal risk control (pixel recall).
* :class:`SequentialCalibrator`: threshold then margins, on disjoint halves of the data.

Predictions and ground truth are paired by :func:`match` (greedy by score, IoU and label). Names are
imported on first use, so a light module of this package (``fit_config``) loads nothing heavy.
"""

from srice.lazy import lazy_names

_LAZY = {
    **dict.fromkeys(("METHODS", "Calibrator", "data_hash", "load_calibrator"), "base"),
    "min_n": "conformal",
    "FORMAT_VERSION": "file_format",
    "BoxMarginCalibrator": "margins",
    "MaskCalibrator": "masks",
    **dict.fromkeys(("Example", "GroundTruth", "Matching", "box_iou", "match"), "matching"),
    "SequentialCalibrator": "sequential",
    "synthetic_examples": "synthetic",
    "ThresholdCalibrator": "threshold",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
