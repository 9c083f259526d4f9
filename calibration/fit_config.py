"""How ``srice calibrate`` fits a tool's calibrator (``ToolFitConfig``): the method, its level and
the split. A light module: the command line reads the methods and the defaults for ``--help``;
``srice.calibration.tool_fit`` does the fitting with them."""

from __future__ import annotations

from dataclasses import dataclass

from srice.errors import InputError

METHODS = ("threshold", "precision", "margins", "mask", "sequential")
TARGETS = ("image", "all", "none")  # what the tool is asked to find: each image's labels, all, anything


@dataclass(frozen=True)
class ToolFitConfig:
    method: str = "sequential"  # threshold then margins
    alpha: float = 0.1  # miscoverage level
    delta: float = 0.1  # learn-then-test failure probability (method "precision")
    iou: float = 0.5  # IoU that makes a prediction match an object
    targets: str = "image"
    holdout: float = 0.3  # share of images kept to measure coverage
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown calibration method {self.method!r}; known: {', '.join(METHODS)}")
        if self.targets not in TARGETS:
            raise InputError(f"targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if not 0 <= self.holdout < 1:
            raise InputError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")
