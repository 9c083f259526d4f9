"""Calibrating a vision tool on an annotated dataset: run it, split, conformalize, check held out.

The split is made once, by a seeded permutation of images (not of objects), so every object of an
image lands on the same side: objects of one image are not exchangeable with each other, images are.
Images the tool cannot process are counted and skipped, never fatal: a corrupt file costs one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from srice.calibration import (
    BoxMarginCalibrator,
    Example,
    MaskCalibrator,
    SequentialCalibrator,
    ThresholdCalibrator,
)
from srice.calibration.coco import AnnotatedImage
from srice.calibration.fit_config import METHODS, ToolFitConfig
from srice.errors import InputError, ToolError
from srice.images import load_image
from srice.tools.base import batch_or_each

DEFAULTS = ToolFitConfig()


def make_calibrator(method: str, alpha: float, *, delta: float = DEFAULTS.delta, iou: float = DEFAULTS.iou):
    if method == "threshold":
        return ThresholdCalibrator(alpha=alpha, mode="recall", iou=iou)
    if method == "precision":
        return ThresholdCalibrator(alpha=alpha, mode="precision", delta=delta, iou=iou)
    if method == "margins":
        return BoxMarginCalibrator(alpha=alpha, iou=iou)
    if method == "mask":
        return MaskCalibrator(alpha=alpha, iou=iou)
    if method == "sequential":
        return SequentialCalibrator(
            ThresholdCalibrator(alpha=alpha, mode="recall", iou=iou),
            BoxMarginCalibrator(alpha=alpha, iou=iou),
        )
    raise InputError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")


@dataclass
class CalibrationRun:
    calibrator: object
    calibration_images: int
    holdout_images: int
    holdout: dict = field(default_factory=dict)  # the calibrator's evaluate() on the held-out split


def run_tool(
    tool,
    records: Sequence[AnnotatedImage],
    *,
    targets: str = DEFAULTS.targets,
    batch_size: int = DEFAULTS.batch_size,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Example], list[str]]:
    """The tool's regions for every record, paired with the ground truth; failures listed, not raised.

    ``targets="image"`` asks the tool for the labels present in each image (as the agent asks for what
    a question needs); ``"all"`` asks for every label of the dataset; ``"none"`` for everything it finds.
    """
    vocabulary = sorted({label for r in records for label in r.truth.labels})
    examples, failed = [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        images, kept = [], []
        for record in chunk:
            try:
                images.append(load_image(record.path))
                kept.append(record)
            except InputError as e:
                failed.append(f"{record.path}: {e}")
        wanted = [
            sorted(set(r.truth.labels)) if targets == "image" else vocabulary if targets == "all" else []
            for r in kept
        ]
        outputs = batch_or_each(tool, images, wanted) if images else []
        for record, output in zip(kept, outputs):
            if isinstance(output, str):
                failed.append(f"{record.path}: {output}")
        if start == 0 and len(kept) > 1 and all(isinstance(o, str) for o in outputs):
            reasons = set(outputs)
            if len(reasons) == 1:  # the same failure on every image: the tool, not the data, is broken
                raise ToolError(f"{getattr(tool, 'name', 'tool')} failed on every image: {reasons.pop()}")
        for record, image, regions in zip(kept, images, outputs):
            if isinstance(regions, str):
                continue
            if tuple(image.size) != record.truth.image_size:
                failed.append(
                    f"{record.path}: image is {image.size}, annotation says {record.truth.image_size}"
                )
                continue
            examples.append(Example(regions, record.truth))
        if progress:
            progress(len(chunk))
    return examples, failed


def calibrate(
    examples: Sequence[Example],
    calibrator,
    *,
    holdout: float = DEFAULTS.holdout,
    seed: int = DEFAULTS.seed,
) -> CalibrationRun:
    """Conformalize on a seeded share of images and evaluate on the rest."""
    if not 0 <= holdout < 1:
        raise InputError(f"--holdout must be in [0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = len(examples) - int(round(holdout * len(examples)))
    fit = [examples[i] for i in order[:cut]]
    held = [examples[i] for i in order[cut:]]
    calibrator.conformalize(fit)
    return CalibrationRun(calibrator, len(fit), len(held), calibrator.evaluate(held) if held else {})
