"""The embedded toy bundle (``embedded``: where it lives, how its detector runs) and how it is made:
training data (``data``), vision pre-training (``vision``), MLLM and YOLO training, the bundle run
that trains and calibrates both (``bundle``), and the tiny random-weight builder (``tiny``)."""

from srice.toy.embedded import (
    DETECTOR_CONF,
    PREDICT_SIZES,
    TOY_DIR,
    bundle_kinds,
    has_toy_yolo,
    toy_path,
    toy_yolo_options,
)

__all__ = [
    "DETECTOR_CONF",
    "PREDICT_SIZES",
    "TOY_DIR",
    "bundle_kinds",
    "has_toy_yolo",
    "toy_path",
    "toy_yolo_options",
]
