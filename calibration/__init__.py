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

Predictions and ground truth are paired by :func:`match` (greedy by score, IoU and label).
"""

from .base import METHODS, Calibrator, data_hash, load_calibrator
from .conformal import min_n
from .files import FORMAT_VERSION
from .margins import BoxMarginCalibrator
from .masks import MaskCalibrator
from .matching import Example, GroundTruth, Matching, box_iou, match
from .sequential import SequentialCalibrator
from .synthetic import synthetic_examples
from .threshold import ThresholdCalibrator

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "BoxMarginCalibrator",
    "Calibrator",
    "Example",
    "GroundTruth",
    "MaskCalibrator",
    "Matching",
    "SequentialCalibrator",
    "ThresholdCalibrator",
    "box_iou",
    "data_hash",
    "load_calibrator",
    "match",
    "min_n",
    "synthetic_examples",
]
