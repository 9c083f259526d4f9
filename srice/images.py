"""Reading user images safely: one clear ``InputError`` for anything unusable, RGB for the rest.

Odd modes (palette, LA, CMYK, 16-bit, float) are converted rather than rejected: users' benchmark
images come in all of them. Sizes are checked from the header before any pixel is decoded, so a
decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from srice.errors import InputError
from srice.files import read_file

MAX_PIXELS = 64_000_000  # ~8000 x 8000; far beyond what an MLLM sees, far below a bomb
MAX_FILE_BYTES = 64 * 1024 * 1024  # an image file larger than this is not a photo or a scan
MAX_QUESTION_CHARS = 4000


def load_image(source: str | Path | bytes | Image.Image, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An RGB copy of ``source`` (path, bytes or PIL image), upright per its EXIF orientation."""
    name = "image"
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (bytes, bytearray)):
            data, name = bytes(source), "image bytes"
        else:
            path = Path(source)
            name = str(path)
            data = read_file(path, "image", MAX_FILE_BYTES)
        if not data:
            raise InputError(f"image is empty (0 bytes): {name}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputError(f"image too large (decompression bomb guard): {e}: {name}") from None
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"not a readable image: {name} ({type(e).__name__})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}x{height}): {name}")
    if width * height > max_pixels:
        raise InputError(
            f"image too large: {width}x{height} = {width * height:,} pixels > limit {max_pixels:,}: {name}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as e:
        raise InputError(f"corrupt image: {name} ({type(e).__name__}: {e})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency flattened onto white and high bit depths scaled, not clipped."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit integer or float: scale what is there
            top = 255.0 if array.max() <= 255 else float(array.max())
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def check_text(text: str, what: str) -> None:
    """An ``InputError`` for text that cannot be sent as UTF-8 (an unpaired surrogate from a broken
    decode, say): it would fail the request later, for a reason the user could not see."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start : e.end].encode("unicode_escape").decode()
        raise InputError(
            f"{what} is not valid text: {bad} at character {e.start} cannot be encoded"
        ) from None


def check_question(question: str) -> str:
    """The stripped question, or an ``InputError`` for empty or absurdly long ones."""
    if not isinstance(question, str):
        raise InputError(f"question must be text, got {type(question).__name__}")
    q = question.strip()
    if not q:
        raise InputError("question is empty")
    check_text(q, "question")
    if len(q) > MAX_QUESTION_CHARS:
        raise InputError(f"question too long: {len(q)} characters > limit {MAX_QUESTION_CHARS}")
    return q
