"""``Regions``: what every vision tool returns and every calibrator consumes.

Boxes are xyxy in pixels of the image the tool saw (float, x2 >= x1, y2 >= y1); scores are the
tool's confidences in [0, 1] where the tool has them (1.0 otherwise); labels are class names or, for
OCR, the recognised strings; masks, when present, are boolean arrays of shape (n, height, width).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def normalise_boxes(obj, owner: str) -> None:
    """Check and normalise the ``boxes``, ``labels``, ``image_size`` and ``masks`` fields of a frozen
    dataclass in place (shared by ``Regions`` and the calibrators' ``GroundTruth``)."""
    boxes = np.asarray(obj.boxes, dtype=np.float64).reshape(-1, 4)
    labels = tuple(str(label) for label in obj.labels)
    if len(labels) != len(boxes):
        raise ValueError(f"{owner} needs one label per box, got {len(labels)} for {len(boxes)}")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError(f"{owner} boxes must be xyxy with x2 >= x1 and y2 >= y1")
    width, height = obj.image_size
    if width < 1 or height < 1:
        raise ValueError(f"{owner} image_size must be positive, got {obj.image_size}")
    object.__setattr__(obj, "boxes", boxes)
    object.__setattr__(obj, "labels", labels)
    object.__setattr__(obj, "image_size", (int(width), int(height)))
    if obj.masks is not None:
        masks = np.asarray(obj.masks, dtype=bool)
        if masks.shape != (len(boxes), int(height), int(width)):
            raise ValueError(
                f"{owner} masks must have shape {(len(boxes), height, width)}, got {masks.shape}"
            )
        object.__setattr__(obj, "masks", masks)


@dataclass(frozen=True, eq=False)
class Regions:
    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]
    image_size: tuple[int, int]  # (width, height)
    tool: str = ""
    masks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)  # calibration parameters applied, timings, ...

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(np.asarray(self.boxes).reshape(-1, 4)):
            raise ValueError(f"Regions needs one score per box, got {len(scores)}")
        object.__setattr__(self, "scores", scores)
        normalise_boxes(self, "Regions")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, image_size: tuple[int, int], tool: str = "", with_masks: bool = False) -> Regions:
        width, height = image_size
        masks = np.zeros((0, height, width), dtype=bool) if with_masks else None
        return cls(np.zeros((0, 4)), np.zeros(0), (), image_size, tool, masks)

    def select(self, keep) -> Regions:
        """The regions at ``keep`` (a boolean mask or index array), same tool and image."""
        keep = np.asarray(keep)
        if keep.dtype != bool:
            keep = keep.astype(np.int64)
        labels = tuple(np.asarray(self.labels, dtype=object)[keep]) if len(self) else ()
        return Regions(
            self.boxes[keep],
            self.scores[keep],
            labels,
            self.image_size,
            self.tool,
            None if self.masks is None else self.masks[keep],
            dict(self.meta),
        )

    def replace(self, **changes) -> Regions:
        fields = {
            "boxes": self.boxes,
            "scores": self.scores,
            "labels": self.labels,
            "image_size": self.image_size,
            "tool": self.tool,
            "masks": self.masks,
            "meta": dict(self.meta),
        }
        return Regions(**(fields | changes))

    def clipped(self) -> Regions:
        """Boxes clamped to the image."""
        width, height = self.image_size
        boxes = self.boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return self.replace(boxes=boxes)

    def to_json(self) -> dict:
        """A JSON-ready summary (masks as pixel counts: traces stay small)."""
        return {
            "tool": self.tool,
            "image_size": list(self.image_size),
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
            "scores": [round(float(s), 4) for s in self.scores],
            "labels": list(self.labels),
            "mask_pixels": None if self.masks is None else [int(m.sum()) for m in self.masks],
            "meta": self.meta,
        }
