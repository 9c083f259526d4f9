"""Visual prompts: turn a tool's ``Regions`` into what the MLLM is shown for that pathway.

- ``crop_regions``: a zoomed crop around the union of the regions (the main SRICE visual prompt,
  shown next to the full image);
- ``draw_regions``: the full image with the boxes (and masks) drawn and labelled.

Crop geometry, per axis, in original pixels (x and y independently):

1. boxes wholly outside the image are ignored (touching the border counts as inside); the others
   are clipped to the image, and their union taken;
2. the union is padded by ``context`` x its own size on each side;
3. a window narrower than ``min_side`` grows to ``min_side`` around the union's centre (a tiny or
   degenerate box, even a point, gets a ``min_side`` x ``min_side`` square);
4. the window is rounded outwards to whole pixels (floor of the start, ceil of the end);
5. a window larger than the image becomes the whole image along that axis; otherwise it is shifted
   back inside the image, keeping its size (a box at a corner gets a full-size window in the corner,
   not a clipped sliver);
6. the crop is resized (bicubic) so its longer side is ``out_size`` pixels, aspect kept; with
   ``max_pixels`` (the served model's per-image pixel budget, e.g. a Qwen2-VL processor's
   ``max_pixels``), a crop that would hold more pixels is made smaller, to the largest size with at
   most ``max_pixels`` (aspect kept, sides rounded down): the model's processor would only shrink it
   again, and a larger picture costs a resize, an encoding and a transfer for nothing.

The window is cut and resized in one step (``Image.resize`` with ``box``) and shrinks of
``REDUCING_GAP`` times or more are first reduced by an integer factor (``Image.reduce``, through
``reducing_gap``): fast, and within a grey level or two of the exact bicubic shrink; smaller
shrinks and every enlargement are the exact bicubic resize. The toy model's training crops
(``srice.toy.data``) are made by this same function.

No regions, or none inside the image: the window is the whole image (still resized to ``out_size``).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from srice.errors import InputError
from srice.tools.regions import Regions


@dataclass(frozen=True)
class Crop:
    """A zoomed crop: the resized picture and the window it shows, in original image pixels."""

    image: Image.Image
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (integers, x2 and y2 exclusive)
    n_regions: int  # regions inside the image that the window was built around (0: whole image)

    @property
    def scale(self) -> float:
        """Crop pixels per original pixel."""
        return self.image.width / (self.box[2] - self.box[0])

    def to_crop(self, x: float, y: float) -> tuple[float, float]:
        """An original-image point in the crop's pixel coordinates."""
        sx = self.image.width / (self.box[2] - self.box[0])
        sy = self.image.height / (self.box[3] - self.box[1])
        return (x - self.box[0]) * sx, (y - self.box[1]) * sy


def _check(image: Image.Image, regions: Regions) -> None:
    if not isinstance(image, Image.Image):
        raise InputError(f"visual prompts need a PIL image, got {type(image).__name__}")
    if tuple(regions.image_size) != tuple(image.size):
        raise InputError(
            f"regions were found on a {regions.image_size[0]}x{regions.image_size[1]} image but the image "
            f"is {image.width}x{image.height}"
        )


def _span(lo: float, hi: float, total: int, context: float, min_side: int) -> tuple[int, int]:
    """One axis of the crop window (steps 2-5 of the module docstring)."""
    pad = context * (hi - lo)
    start, end = lo - pad, hi + pad
    if end - start < min_side:
        centre = (lo + hi) / 2
        start, end = centre - min_side / 2, centre + min_side / 2
    start, end = math.floor(round(start, 6)), math.ceil(round(end, 6))
    size = end - start
    if size >= total:
        return 0, total
    if start < 0:
        return 0, size
    if end > total:
        return total - size, total
    return start, end


def crop_window(
    image_size: tuple[int, int], boxes: np.ndarray, *, context: float = 0.25, min_side: int = 64
) -> tuple[tuple[int, int, int, int], int]:
    """The crop window (x1, y1, x2, y2) for ``boxes`` on an ``image_size`` image, and how many boxes count."""
    width, height = image_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inside = (boxes[:, 0] <= width) & (boxes[:, 1] <= height) & (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)
    boxes = boxes[inside]
    if not len(boxes):
        return (0, 0, width, height), 0
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max(), boxes[:, 3].max()
    cx1, cx2 = _span(x1, x2, width, context, min_side)
    cy1, cy2 = _span(y1, y2, height, context, min_side)
    return (cx1, cy1, cx2, cy2), len(boxes)


REDUCING_GAP = 2.0  # PIL's reducing_gap: a shrink of 2x or more is first reduced by an integer factor


def crop_dimensions(window: tuple[int, int], out_size: int, max_pixels: int | None = None) -> tuple[int, int]:
    """The size of the crop of a ``window`` (width, height): step 6 of the module docstring."""
    width, height = window
    scale = out_size / max(width, height)
    if max_pixels is not None and width * height * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop_regions(
    image: Image.Image,
    regions: Regions,
    *,
    context: float = 0.25,
    min_side: int = 64,
    out_size: int = 448,
    max_pixels: int | None = None,
) -> Crop:
    """The zoomed crop of the union of ``regions`` (geometry in the module docstring)."""
    _check(image, regions)
    if context < 0 or min_side < 1 or out_size < 1 or (max_pixels is not None and max_pixels < 1):
        raise ValueError(
            f"need context >= 0, min_side >= 1, out_size >= 1, max_pixels >= 1 or None; got {context}, "
            f"{min_side}, {out_size}, {max_pixels}"
        )
    box, n = crop_window(image.size, regions.boxes, context=context, min_side=min_side)
    return crop_box(image, box, out_size=out_size, max_pixels=max_pixels, n_regions=n)


def crop_box(
    image: Image.Image,
    box: tuple[int, int, int, int],
    *,
    out_size: int = 448,
    max_pixels: int | None = None,
    n_regions: int = 0,
) -> Crop:
    """The zoomed crop of a window already inside the image, in whole pixels (step 6 of the module
    docstring): what ``crop_regions`` shows, and each node of the zoom tree (``srice.agent.zoomtree``)."""
    window = (box[2] - box[0], box[3] - box[1])
    size = crop_dimensions(window, out_size, max_pixels)
    if size == window:
        return Crop(image.crop(box), box, n_regions)
    crop = image.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=REDUCING_GAP)
    return Crop(crop, box, n_regions)


def label_colour(label: str) -> tuple[int, int, int]:
    """A bright colour that depends only on the label text (stable across runs and machines)."""
    hue = int.from_bytes(hashlib.md5(label.encode()).digest()[:4], "big") / 2**32
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_regions(
    image: Image.Image, regions: Regions, *, labels: bool = True, mask_alpha: float = 0.4
) -> Image.Image:
    """A copy of ``image`` with each region's mask filled (translucent), box outlined and label written."""
    _check(image, regions)
    width, height = image.size
    out = image.convert("RGBA")
    colours = [label_colour(label) for label in regions.labels]
    if regions.masks is not None and len(regions):
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        alpha = int(round(255 * min(max(mask_alpha, 0.0), 1.0)))
        for mask, colour in zip(regions.masks, colours):
            if mask.any():
                fill = Image.new("RGBA", image.size, (*colour, alpha))
                overlay.paste(fill, (0, 0), Image.fromarray(mask.astype(np.uint8) * 255, "L"))
        out = Image.alpha_composite(out, overlay)
    out = out.convert("RGB")
    draw = ImageDraw.Draw(out)
    line = max(2, round(min(width, height) / 160))
    font = _font(max(10, round(min(width, height) / 30)))
    for (x1, y1, x2, y2), colour in zip(regions.boxes, colours):
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour, width=line)
    if labels:
        for (x1, y1, _, _), label, score, colour in zip(
            regions.boxes, regions.labels, regions.scores, colours
        ):
            text = label if score >= 1.0 else f"{label} {score:.2f}"
            if not text:
                continue
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left + 4, bottom - top + 4
            x = min(max(0.0, float(x1)), max(0.0, width - tw))
            y = float(y1) - th if y1 - th >= 0 else min(max(0.0, float(y1)), max(0.0, height - th))
            draw.rectangle((x, y, x + tw, y + th), fill=colour)
            ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
            draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)
    return out
