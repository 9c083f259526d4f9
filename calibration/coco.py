"""COCO-format annotations as srice ground truth, for calibrating tools on a user's own data.

Boxes come from ``bbox`` ([x, y, width, height] -> xyxy); masks, when asked for, from polygon,
uncompressed-RLE or compressed-RLE ``segmentation`` (decoded here, so pycocotools is not needed).
A malformed file fails with one ``InputError`` naming the problem; a single malformed annotation
fails too, because silently dropping ground truth would bias every coverage figure computed on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srice.calibration.matching import GroundTruth
from srice.errors import InputError


@dataclass(frozen=True)
class AnnotatedImage:
    path: Path
    image_id: int
    truth: GroundTruth


def load_coco(
    annotations: str | Path, images_dir: str | Path, *, masks: bool = False
) -> list[AnnotatedImage]:
    """Every image of a COCO file with its ground truth, in the file's image order."""
    path = Path(annotations)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"annotation file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"annotation file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path} is not COCO format: it needs an 'images' list")
    try:
        names = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        by_image: dict[int, list[dict]] = {}
        for a in data.get("annotations", []):
            by_image.setdefault(int(a["image_id"]), []).append(a)
        out = []
        for entry in data["images"]:
            image_id, width, height = int(entry["id"]), int(entry["width"]), int(entry["height"])
            anns = [a for a in by_image.get(image_id, []) if not a.get("iscrowd")]
            boxes = np.array([_xyxy(a["bbox"]) for a in anns], dtype=np.float64).reshape(-1, 4)
            labels = tuple(names.get(int(a["category_id"]), str(a["category_id"])) for a in anns)
            mask_array = None
            if masks:
                mask_array = np.zeros((len(anns), height, width), dtype=bool)
                for i, a in enumerate(anns):
                    mask_array[i] = decode_segmentation(a.get("segmentation"), width, height, a["bbox"])
            truth = GroundTruth(boxes=boxes, labels=labels, image_size=(width, height), masks=mask_array)
            out.append(AnnotatedImage(Path(images_dir) / entry["file_name"], image_id, truth))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: malformed COCO entry ({type(e).__name__}: {e})") from None
    return out


def _xyxy(bbox) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise ValueError(f"negative bbox size {bbox}")
    return [x, y, x + w, y + h]


def decode_segmentation(segmentation, width: int, height: int, bbox=None) -> np.ndarray:
    """A (height, width) bool mask from a COCO segmentation; the bbox when there is none."""
    mask = np.zeros((height, width), dtype=bool)
    if not segmentation:
        if bbox is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in _xyxy(bbox))
            mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
        return mask
    if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        # PIL treats vertices as pixel centres and fills the outline, pycocotools as pixel corners:
        # masks come out about half a pixel larger than the reference's (negligible but for tiny
        # objects). RLE segmentations decode exactly; srice synth writes RLE for that reason.
        canvas = Image.new("1", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in segmentation:
            points = [float(v) for v in polygon]
            if len(points) >= 6:
                draw.polygon(list(zip(points[::2], points[1::2])), fill=1, outline=1)
        return np.asarray(canvas, dtype=bool)
    counts = segmentation["counts"]
    if isinstance(counts, str):
        counts = rle_counts_from_string(counts)
    h, w = (int(v) for v in segmentation.get("size", (height, width)))
    flat = np.zeros(h * w, dtype=bool)
    position, value = 0, False
    for run in counts:
        flat[position : position + int(run)] = value
        position += int(run)
        value = not value
    if position != h * w:
        raise ValueError(f"RLE covers {position} pixels, mask has {h * w}")
    return flat.reshape((w, h)).T  # COCO RLE runs down columns


def rle_counts_from_string(text: str) -> list[int]:
    """Decode COCO's compressed RLE: 5-bit groups (+48 offset) with a continuation bit (0x20) and a
    sign bit on the last group (0x10); from the third run on, each value is a delta to the run two back.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_string_from_counts(counts: list[int]) -> str:
    """The inverse of ``rle_counts_from_string`` (used by tests and by writers of COCO files)."""
    out = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        while True:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            out.append(chr(group + (0x20 if more else 0) + 48))
            if not more:
                break
    return "".join(out)
