"""Small benchmark files built here for the format tests: PNG bytes, JSONL rows, PIL images."""

import io
import json
import os
from pathlib import Path

from PIL import Image

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLOURS = ["red", "green", "blue", "yellow", "white"]


def _png(colour: str, size=(6, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _images(n):
    return [Image.new("RGB", (6, 4), COLOURS[i % len(COLOURS)]) for i in range(n)]
