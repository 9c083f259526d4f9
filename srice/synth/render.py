"""Rendering synthetic scenes and writing their masks: pixels, textures, text plates, COCO segmentation.

Each object is painted only through its own mask, so a mask written here is exactly the object's
painted pixels; colours are flat palette values and PNG is lossless, so tests find them again.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from srice.synth.scene import DARK_TEXT, LIGHT_FILLS, LIGHT_TEXT, Scene, SceneObject, font


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The scene as an RGB image: a light textured background, then every object through its mask."""
    pixels = _background(scene, rng)
    for o in scene.objects:
        x1, y1, x2, y2 = o.box
        region = pixels[y1:y2, x1:x2]
        patch = _object_patch(o, rng)
        region[o.mask] = patch[o.mask]
    return Image.fromarray(pixels)


def _background(scene: Scene, rng) -> np.ndarray:
    """Soft blotches, faint scratches and sparse dark specks: enough texture that objects are not the
    only structure in the image, cheap to compress (per-pixel noise would make each PNG ~1 MB).
    Built from uint8 PIL operations because this runs once per image and dominates otherwise."""
    w, h = scene.width, scene.height
    coarse = np.clip(np.rint(rng.normal(0.0, 4.0, size=(6, 6))) + 128, 0, 255).astype(np.uint8)
    blotch = Image.fromarray(coarse).resize((w, h), Image.BILINEAR)
    image = Image.merge(
        "RGB", [blotch.point([min(max(c + v - 128, 0), 255) for v in range(256)]) for c in scene.background]
    )
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, x1 = (int(v) for v in rng.integers(0, w, size=2))
        y0, y1 = (int(v) for v in rng.integers(0, h, size=2))
        shade = int(rng.integers(10, 20))
        draw.line((x0, y0, x1, y1), fill=tuple(max(c - shade, 0) for c in scene.background), width=1)
    pixels = np.array(image)
    count = int(w * h * 0.0015)
    ys, xs = rng.integers(0, h, size=count), rng.integers(0, w, size=count)
    darker = rng.integers(15, 40, size=(count, 1))
    pixels[ys, xs] = np.clip(pixels[ys, xs].astype(np.int16) - darker, 0, 255).astype(np.uint8)
    return pixels


def _object_patch(o: SceneObject, rng) -> np.ndarray:
    """The object's pixels over its box: palette colour, pale stripes or dots, or a text plate.

    Textures keep the palette colour on most pixels, so "what colour" keeps one right answer.
    """
    x1, y1, x2, y2 = o.box
    h, w = y2 - y1, x2 - x1
    rgb = np.asarray(o.rgb, dtype=np.uint8)
    patch = np.broadcast_to(rgb, (h, w, 3)).copy()
    if o.texture != "solid":
        pale = np.rint(0.35 * rgb + 0.65 * 255).astype(np.uint8)
        period = max(6, o.side // 7)
        yy, xx = np.mgrid[0:h, 0:w]
        if o.texture == "striped":
            direction = int(rng.integers(3))
            coord = (yy, xx, xx + yy)[direction]
            patch[coord % period < max(2, period // 3)] = pale
        else:
            dy, dx = yy % period - period / 2, xx % period - period / 2
            patch[dy * dy + dx * dx <= (period / 4) ** 2] = pale
    if o.text:
        image = Image.fromarray(patch)
        face = font(o.font_size)
        left, top, right, bottom = face.getbbox(o.text)
        cx, cy = o.origin[0] + o.side / 2 - x1, o.origin[1] + o.side / 2 - y1
        ink = DARK_TEXT if o.colour in LIGHT_FILLS else LIGHT_TEXT
        ImageDraw.Draw(image).text(
            (round(cx - (left + right) / 2), round(cy - (top + bottom) / 2)), o.text, fill=ink, font=face
        )
        patch = np.asarray(image).copy()
    return patch


def segmentation(o: SceneObject, width: int, height: int, *, polygon: bool = True) -> list[list[int]] | dict:
    """COCO segmentation: the polygon for polygonal shapes (unless ``polygon`` is false), else
    uncompressed RLE of the painted pixels."""
    if polygon and o.polygon is not None:
        return [list(o.polygon)]
    full = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = o.box
    full[y1:y2, x1:x2] = o.mask
    return {"size": [height, width], "counts": rle_counts(full)}


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: alternating run lengths down the columns, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs
