"""One benchmark question, whatever file format it came from (see ``srice.eval.data``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

METRICS = ("vqa", "anls", "relaxed", "mc", "exact", "pope")


@dataclass(frozen=True)
class EvalItem:
    id: str  # unique within the dataset; records and resume are keyed by it
    image: Path | bytes | Image.Image  # a file, encoded bytes (TSV base64, parquet), or a decoded image
    question: str
    answers: tuple[str, ...]  # ground truth: one answer, or VQAv2/TextVQA's ten; the letter for "mc"
    metric: str = "exact"  # how a prediction is scored: one of METRICS
    options: tuple[str, ...] | None = None  # multiple-choice options, in letter order
    kind: str = ""  # question kind, for per-kind breakdowns ("colour", "count", ...)
    meta: dict = field(default_factory=dict, compare=False)  # e.g. target size, source row
    error: str | None = None  # the row could not be read as a question: it gets a failed record

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")


def broken(id: str, why: str, meta: dict) -> EvalItem:
    """A row that is not a question (missing fields, 30 options, bad JSON): it keeps its place and
    its id, and costs its own record, never the file."""
    return EvalItem(id=id, image=b"", question="", answers=(), meta=meta, error=why)


def image_digest(image: Path | bytes | Image.Image) -> str:
    """The sha256 (hex) of an item's image content: encoded bytes, a decoded image's pixels, or the
    bytes of its file (a file that cannot be read is known by its path)."""
    if isinstance(image, Path):
        try:
            image = image.read_bytes()
        except OSError:
            return str(image)
    data = image if isinstance(image, bytes) else image.tobytes()
    return hashlib.sha256(data).hexdigest()


def item_key(item: EvalItem) -> list:
    """What identifies a question in a run's settings (``srice.eval.run``): every field its record
    depends on. A file image is known by its path (a benchmark's files are not read twice to start a
    run); bytes and decoded images by their content."""
    image = item.image if isinstance(item.image, (str, Path)) else "sha256:" + image_digest(item.image)
    return [item.id, item.question, item.options, item.answers, item.metric, str(image), item.error]
