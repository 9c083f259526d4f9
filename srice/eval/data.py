"""Benchmark files -> ``EvalItem``s: our JSONL, VLMEvalKit TSV, Hugging Face datasets on disk, parquet.

**Spec syntax** (``load_items(spec)``)::

    [hf:]PATH[:SPLIT][#FORMAT]

- ``questions.jsonl``: our JSONL (``formats/jsonl.py``). ``bench.tsv``: a VLMEvalKit TSV
  (``formats/tsv.py``).
- ``data.parquet``, or a folder of ``*.parquet`` files (read in sorted path order): parquet rows.
- ``hf:/path/to/saved`` or any folder holding ``dataset_info.json``/``state.json`` (one split, from
  ``Dataset.save_to_disk``) or ``dataset_dict.json`` (``DatasetDict.save_to_disk``): read with
  ``datasets.load_from_disk``, never from the Hub (``formats/table.py``).
- ``:SPLIT`` picks a split of a saved ``DatasetDict`` (needed when it has more than one), or keeps
  only the parquet files of a folder whose name or parent folder is the split (``test-0000.parquet``,
  ``test/0.parquet``). ``#FORMAT`` forces a benchmark's field convention for HF/parquet data
  (``FORMATS``, described in ``formats/benchmarks.py``); the ``format=`` keyword does the same and
  wins over the suffix. A path that exists as written is never split at ``:`` or ``#``.

Items without ground truth (unlabelled test splits) get ``answers == ()``. Ids must be unique.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from srice.errors import InputError
from srice.eval.formats.benchmarks import FORMATS, detect_format
from srice.eval.items import EvalItem
from srice.files import check_regular

__all__ = ["FORMATS", "DataSpec", "detect_format", "iter_items", "load_items", "parse_spec", "shard"]

_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``load_items`` spec."""

    path: Path
    source: str  # "jsonl", "tsv", "parquet" or "hf"
    split: str | None = None
    format: str | None = None  # a FORMATS name, or None to detect from the columns


def parse_spec(spec: str | Path, *, format: str | None = None) -> DataSpec:
    """What ``spec`` names (syntax in the module docstring); InputError if it is missing or unknown."""
    text = str(spec)
    hf = text.startswith("hf:")
    if hf:
        text = text[3:]
    split = fmt = None
    if not Path(text).exists():
        if "#" in text:
            text, fmt = text.rsplit("#", 1)
        head, sep, tail = text.rpartition(":")
        if sep and head and "/" not in tail and not Path(text).exists():
            text, split = head, tail
    fmt = format or fmt
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown data format {fmt!r} in {spec}; known: {', '.join(FORMATS)}")
    path = Path(text)
    if not path.exists():
        raise InputError(f"data not found: {path}")
    if path.is_dir():
        if hf or any((path / m).exists() for m in _HF_MARKERS):
            if not any((path / m).exists() for m in _HF_MARKERS):
                raise InputError(f"{path} is not a saved HF dataset: it has none of {', '.join(_HF_MARKERS)}")
            return DataSpec(path, "hf", split, fmt)
        if any(path.rglob("*.parquet")):
            return DataSpec(path, "parquet", split, fmt)
        raise InputError(
            f"unknown data format: folder {path} has no {', '.join(_HF_MARKERS)} and no .parquet files"
        )
    check_regular(path, "data file")  # a FIFO or a device is no benchmark
    suffix = path.suffix.lower()
    if hf:
        raise InputError(f"hf: needs a folder saved with save_to_disk, not the file {path}")
    if suffix == ".parquet":
        if split:
            raise InputError(f"{spec}: ':{split}' names a split, but {path} is a single parquet file")
        return DataSpec(path, "parquet", None, fmt)
    if suffix in (".jsonl", ".tsv"):
        if split or fmt:
            raise InputError(f"{spec}: ':split' and '#format' apply to HF and parquet data only")
        return DataSpec(path, suffix[1:], None, None)
    raise InputError(
        f"unknown data format: {path} (known: .jsonl, .tsv, .parquet, a folder saved by datasets)"
    )


def iter_items(spec: str | Path, *, format: str | None = None) -> Iterator[EvalItem]:
    """The items of ``spec`` one by one. JSONL, parquet and HF data are read lazily in batches; a
    TSV is read whole first (its image references may point anywhere in the file)."""
    data = parse_spec(spec, format=format)
    if data.source == "jsonl":
        from srice.eval.formats.jsonl import jsonl_items

        items = jsonl_items(data.path)
    elif data.source == "tsv":
        from srice.eval.formats.tsv import tsv_items

        items = tsv_items(data.path)
    else:
        from srice.eval.formats.table import table_items

        items = table_items(data.path, data.source, data.split, data.format)
    seen: dict[str, str] = {}
    for item in items:
        where = f"line {item.meta['line']}" if data.source == "jsonl" else f"row {item.meta['row']}"
        if item.id in seen:
            raise InputError(f"{data.path}: duplicate id {item.id!r} ({seen[item.id]} and {where})")
        seen[item.id] = where
        yield item


def load_items(spec: str | Path, *, limit: int | None = None, format: str | None = None) -> list[EvalItem]:
    """The first ``limit`` items (all when None) of ``spec``; see the module docstring."""
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    return list(islice(iter_items(spec, format=format), limit))


def shard(items: Sequence[EvalItem], index: int, count: int) -> list[EvalItem]:
    """The ``index``-th of ``count`` contiguous shards: item k goes to shard ``k * count // len``,
    so shards keep file order, differ in size by at most one, are disjoint and together hold every
    item once. The same items give the same shards on every machine."""
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: need 0 <= i < n")
    n = len(items)
    return list(items[index * n // count : (index + 1) * n // count])
