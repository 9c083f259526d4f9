"""Benchmark files -> ``EvalItem``s: our JSONL, VLMEvalKit TSV, Hugging Face datasets on disk, parquet.

**Spec syntax** (``load_items(spec)``)::

    [hf:]PATH[:SPLIT][#FORMAT]

- ``questions.jsonl``: our JSONL (below). ``bench.tsv``: a VLMEvalKit TSV.
- ``data.parquet``, or a folder of ``*.parquet`` files (read in sorted path order): parquet rows.
- ``hf:/path/to/saved`` or any folder holding ``dataset_info.json``/``state.json`` (one split, from
  ``Dataset.save_to_disk``) or ``dataset_dict.json`` (``DatasetDict.save_to_disk``): read with
  ``datasets.load_from_disk``, never from the Hub.
- ``:SPLIT`` picks a split of a saved ``DatasetDict`` (needed when it has more than one), or keeps
  only the parquet files of a folder whose name or parent folder is the split (``test-0000.parquet``,
  ``test/0.parquet``). ``#FORMAT`` forces a field convention for HF/parquet data (``FORMATS``);
  the ``format=`` keyword does the same and wins over the suffix. A path that exists as written is
  never split at ``:`` or ``#``.

**Field conventions** for HF/parquet rows, detected from the columns when not forced, first match:

=======  ===================================================================  =======
format   columns                                                              metric
=======  ===================================================================  =======
chartqa  ``label`` with ``query``/``question``                                relaxed
docvqa   ``answers`` with ``questionId`` (also InfographicVQA)                anls
vqav2    ``multiple_choice_answer``, or ``answers`` as ``{"answer": ...}``    vqa
textvqa  ``answers`` (a list of strings)                                      vqa
mc       option columns ``A``, ``B``, ..., or a ``choices``/``options`` list  mc
pope     ``answer``, yes or no (any case) on every row                        pope
exact    ``answer`` otherwise                                                 exact
=======  ===================================================================  =======

Every format needs ``image`` and a question column. The id is the first of the columns ``id``,
``questionId``, ``question_id``, ``index`` that exists (``id`` first: POPE's ``question_id`` repeats
across its categories), else the row number. Multiple-choice rows take their options from ``A``,
``B``, ... or a ``choices``/``options`` list, and their answer as a letter, an option's text, or (with
a choices list, as in ScienceQA) a 0-based index; a ``hint`` is prepended as for TSVs.

Images stay undecoded: an HF ``Image`` column is read as its stored ``{"bytes", "path"}`` (the
bytes, or the path resolved against the data folder); a string column is a path. A row whose image
is missing or not base64 is still loaded; its image is ``b""`` with ``meta["image_error"]`` saying
why, and the evaluator records the failure for that item.

**Our JSONL**: one object per line with ``image`` (a path relative to the JSONL file), ``question``,
``options`` (a list, or ``null``), ``answer`` (for multiple choice the letter, or the option's text,
which becomes its letter; a letter wins when an option's text is also a letter) and/or ``answers``
(a list), and optional ``id`` (default: the 1-based line number), ``metric`` (default ``"mc"`` with
options, else ``"exact"``), ``kind`` and ``meta`` (an object). Blank lines are skipped.

**VLMEvalKit TSV**: ``index``, ``image`` (base64; a short value equal to another row's ``index`` is
a reference to that row's image) or ``image_path``, ``question``, optional ``hint`` (prepended as
``"Hint: ...\\n"``), options ``A``, ``B``, ... (a row with all options empty is an open question,
metric ``exact``), ``answer`` (a letter), ``category`` (-> ``kind``), ``l2-category`` (-> meta).

Items without ground truth (unlabelled test splits) get ``answers == ()``. Ids must be unique.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from srice.errors import InputError
from srice.eval.items import METRICS, EvalItem

FORMATS = ("textvqa", "vqav2", "docvqa", "chartqa", "pope", "mc", "exact")
_METRIC_OF = {
    "textvqa": "vqa",
    "vqav2": "vqa",
    "docvqa": "anls",
    "chartqa": "relaxed",
    "pope": "pope",
    "mc": "mc",
    "exact": "exact",
}
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_LETTERS = string.ascii_uppercase
_BATCH = 256


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
        items = _jsonl_items(data.path)
    elif data.source == "tsv":
        items = _tsv_items(data.path)
    else:
        items = _table_items(data)
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


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _mc_letter(answer, options: Sequence[str], where: str) -> str:
    """``answer`` (a letter, "(B)", or an option's text) as the option's letter."""
    text = _text(answer)
    bare = text.strip("()[]. ").upper()
    if len(bare) == 1 and bare in _LETTERS[: len(options)]:
        return bare
    loose = " ".join(text.lower().split())
    for hits in (
        [i for i, option in enumerate(options) if option == text],
        [i for i, option in enumerate(options) if " ".join(option.lower().split()) == loose],
    ):
        if len(hits) == 1:
            return _LETTERS[hits[0]]
    raise InputError(
        f"{where}: answer {text!r} is neither an option letter (A-{_LETTERS[len(options) - 1]}) "
        "nor the text of one option"
    )


def _options(value, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        keys = sorted(value)
        if keys != list(_LETTERS[: len(keys)]):
            raise InputError(f"{where}: options as an object need keys A, B, C, ... in order, got {keys}")
        value = [value[k] for k in keys]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: 'options' must be a list or null, got {type(value).__name__}")
    if not value:
        return None
    if len(value) > len(_LETTERS):
        raise InputError(f"{where}: {len(value)} options; at most {len(_LETTERS)}")
    return tuple(_text(v) for v in value)


def _image_error(meta: dict, why: str) -> bytes:
    meta["image_error"] = why
    return b""


# ---------------------------------------------------------------------------------------------------
# JSONL


def _jsonl_items(path: Path) -> Iterator[EvalItem]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield _jsonl_item(line, path, number)
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _jsonl_item(line: str, path: Path, number: int) -> EvalItem:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except ValueError as e:
        raise InputError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
    missing = [k for k in ("image", "question") if row.get(k) in (None, "")]
    if missing:
        raise InputError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
    if not isinstance(row["image"], str):
        raise InputError(f"{where}: 'image' must be a path string")
    options = _options(row.get("options"), where)
    metric = row.get("metric") or ("mc" if options else "exact")
    if metric not in METRICS:
        raise InputError(f"{where}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if metric == "mc" and not options:
        raise InputError(f"{where}: metric 'mc' needs 'options'")
    answers = row.get("answers")
    if answers is not None and not isinstance(answers, list):
        raise InputError(f"{where}: 'answers' must be a list")
    truth = [row["answer"]] if row.get("answer") is not None else []
    truth = truth or list(answers or [])
    if metric == "mc":
        truth = [_mc_letter(truth[0], options, where)] if truth else []
    elif answers:
        truth = list(answers)
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(f"{where}: 'meta' must be an object")
    image = Path(row["image"])
    return EvalItem(
        id=_text(row.get("id")) or str(number),
        image=image if image.is_absolute() else path.parent / image,
        question=_text(row["question"]),
        answers=tuple(_text(a) for a in truth),
        metric=metric,
        options=options,
        kind=_text(row.get("kind")),
        meta={**meta, "line": number},
    )


# ---------------------------------------------------------------------------------------------------
# VLMEvalKit TSV


def _tsv_items(path: Path) -> Iterator[EvalItem]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputError(f"cannot read TSV {path}: {e}") from None
    columns = list(frame.columns)
    image_column = "image" if "image" in columns else "image_path" if "image_path" in columns else None
    missing = [c for c in ("question",) if c not in columns] + ([] if image_column else ["image"])
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(columns)}")
    letters = [c for c in _LETTERS if c in columns]
    letters = letters[: next((i for i, c in enumerate(letters) if c != _LETTERS[i]), len(letters))]
    indices = frame["index"].tolist() if "index" in columns else [str(i) for i in range(len(frame))]
    images = frame[image_column].tolist()
    by_index = dict(zip(indices, images)) if image_column == "image" else {}
    records = frame.to_dict("records")
    del frame
    for row_number, (row, index) in enumerate(zip(records, indices)):
        where = f"{path}:{row_number + 2}"  # 1-based, after the header line
        meta: dict = {"row": row_number}
        if image_column == "image":
            image = _tsv_image(row["image"], by_index, meta)
        elif row["image_path"]:
            image = Path(row["image_path"])
            image = image if image.is_absolute() else path.parent / image
        else:
            image = _image_error(meta, "no image_path")
        values = [_text(row[c]) for c in letters]
        last = max((i for i, v in enumerate(values) if v), default=-1)
        if "" in values[: last + 1]:
            raise InputError(f"{where}: options have a gap ({', '.join(letters[: last + 1])})")
        options = tuple(values[: last + 1]) or None
        answer = _text(row.get("answer"))
        if options:
            truth = (_mc_letter(answer, options, where),) if answer else ()
        else:
            truth = (answer,) if answer else ()
        question = _text(row["question"])
        hint = _text(row.get("hint"))
        if hint and hint.lower() != "nan":
            question = f"Hint: {hint}\n{question}"
        for key in ("l2-category", "split"):
            if _text(row.get(key)):
                meta[key] = _text(row[key])
        yield EvalItem(
            id=_text(index) or str(row_number),
            image=image,
            question=question,
            answers=truth,
            metric="mc" if options else "exact",
            options=options,
            kind=_text(row.get("category")),
            meta=meta,
        )


def _tsv_image(value: str, by_index: dict[str, str], meta: dict) -> bytes:
    """Base64 image bytes; a short value naming another row's index means that row's image."""
    hops = 0
    while len(value) <= 64 and value in by_index and hops < 8:
        meta.setdefault("image_ref", value)
        value, hops = by_index[value], hops + 1
    if not value:
        return _image_error(meta, "empty image cell")
    if len(value) <= 64 and hops == 8:
        return _image_error(meta, "image references form a cycle")
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as e:
        return _image_error(meta, f"image is not base64 ({e})")


# ---------------------------------------------------------------------------------------------------
# HF datasets saved to disk, and parquet


def _table_batches(data: DataSpec, columns: list[str]) -> Iterator[list[dict]]:
    if data.source == "hf":
        dataset = _hf_dataset(data)
        for table in dataset.select_columns(columns).with_format("arrow").iter(batch_size=_BATCH):
            yield table.to_pylist()
    else:
        import pyarrow.parquet as pq

        for file in _parquet_files(data):
            for batch in pq.ParquetFile(file).iter_batches(batch_size=_BATCH, columns=columns):
                yield batch.to_pylist()


def _parquet_files(data: DataSpec) -> list[Path]:
    if data.path.is_file():
        return [data.path]
    files = sorted(data.path.rglob("*.parquet"))
    if data.split:
        chosen = [
            f
            for f in files
            if data.split in f.relative_to(data.path).parts[:-1]
            or f.stem == data.split
            or f.stem.startswith((f"{data.split}-", f"{data.split}_"))
        ]
        if not chosen:
            raise InputError(f"{data.path}: no parquet files for split {data.split!r}")
        files = chosen
    return files


def _hf_dataset(data: DataSpec):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    try:
        loaded = datasets.load_from_disk(str(data.path))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise InputError(f"cannot load HF dataset {data.path}: {e}") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if data.split is None:
            if len(splits) != 1:
                raise InputError(f"{data.path} has splits {', '.join(splits)}; name one as {data.path}:SPLIT")
            return loaded[splits[0]]
        if data.split not in loaded:
            raise InputError(f"{data.path} has no split {data.split!r}; it has {', '.join(splits)}")
        return loaded[data.split]
    if data.split is not None and data.split != str(loaded.split):
        raise InputError(f"{data.path} holds one split ({loaded.split}); drop ':{data.split}'")
    return loaded


def _schema(data: DataSpec) -> list[str]:
    if data.source == "hf":
        return list(_hf_dataset(data).column_names)
    import pyarrow.parquet as pq

    names: list[str] = []
    for file in _parquet_files(data):
        for name in pq.read_schema(file).names:
            if name not in names:
                names.append(name)
    return names


def _column_values(data: DataSpec, column: str) -> Iterable:
    for batch in _table_batches(data, [column]):
        for row in batch:
            yield row[column]


def _first(columns: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in columns), None)


def detect_format(columns: Sequence[str], data: DataSpec | None = None) -> str:
    """The field convention of rows with ``columns`` (table in the module docstring). Telling POPE
    from generic question/answer data reads the ``answer`` column of ``data``."""
    has = set(columns)
    if "label" in has and has & {"query", "question"}:
        return "chartqa"
    if "answers" in has and "questionId" in has:
        return "docvqa"
    if "multiple_choice_answer" in has:
        return "vqav2"
    if "answers" in has:
        if data is not None:
            for value in _column_values(data, "answers"):
                if value:  # VQAv2 stores {"answer": ...} records (or one dict of lists)
                    return "vqav2" if isinstance(value, dict) or isinstance(value[0], dict) else "textvqa"
        return "textvqa"
    if {"A", "B"} <= has or has & {"choices", "options"}:
        return "mc"
    if "answer" in has:
        if data is not None:
            values = [_text(v).lower() for v in _column_values(data, "answer")]
            if values and all(v in ("yes", "no") for v in values):
                return "pope"
        return "exact"
    raise InputError(
        "cannot tell the benchmark format from the columns "
        f"{', '.join(columns)}: expected answers, answer, label or option columns; "
        f"or name one with '#FORMAT' ({', '.join(FORMATS)})"
    )


def _vqa_answers(value) -> list:
    """TextVQA/VQAv2 answers: strings, ``{"answer": ...}`` dicts, or one dict of lists."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get("answer") or []
    if isinstance(value, str):
        return [value]
    return [v.get("answer") if isinstance(v, dict) else v for v in value]


def _table_items(data: DataSpec) -> Iterator[EvalItem]:
    columns = _schema(data)
    fmt = data.format or detect_format(columns, data)
    question = _first(columns, "query", "question") if fmt == "chartqa" else _first(columns, "question")
    need = {"image": "image" if "image" in columns else None, "question": question}
    if fmt in ("textvqa", "vqav2", "docvqa"):
        answer = _first(columns, "answers", "multiple_choice_answer", "answer")
    elif fmt == "chartqa":
        answer = _first(columns, "label", "answer", "answers")
    else:
        answer = _first(columns, "answer", "answers")
    if fmt != "docvqa":  # DocVQA's test split has no answers column worth requiring
        need["answer"] = answer
    letters = [c for c in _LETTERS if c in columns]
    letters = letters[: next((i for i, c in enumerate(letters) if c != _LETTERS[i]), len(letters))]
    choices = _first(columns, "choices", "options")
    if fmt == "mc" and not (letters or choices):
        need["options (A, B, ... or choices)"] = None
    missing = [name for name, column in need.items() if column is None]
    if missing:
        raise InputError(
            f"{data.path}: {fmt} data needs column(s) {', '.join(missing)}; has {', '.join(columns)}"
        )
    id_column = _first(columns, "id", "questionId", "question_id", "index")  # POPE: question_id repeats
    kinds = {
        "vqav2": ("answer_type", "question_type"),
        "docvqa": ("question_types",),
        "chartqa": ("human_or_machine", "type"),
        "pope": ("category",),
        "mc": ("category",),
    }.get(fmt, ())
    kind_column = _first(columns, "kind", *kinds)
    extras = [c for c in ("image_id", "hint", "l2-category", "docId") if c in columns]
    wanted = [c for c in dict.fromkeys([need["image"], question, answer, id_column, kind_column, choices])]
    wanted += [c for c in [*letters, *extras] if c not in wanted]
    wanted = [c for c in wanted if c]
    base = data.path if data.path.is_dir() else data.path.parent
    metric = _METRIC_OF[fmt]
    row_number = 0
    for batch in _table_batches(data, wanted):
        for row in batch:
            where = f"{data.path} row {row_number}"
            meta: dict = {"row": row_number, "format": fmt}
            for key in extras:
                if row.get(key) is not None and key != "hint":
                    meta[key] = row[key] if isinstance(row[key], (int, float, str)) else str(row[key])
            text = _text(row[question])
            options = None
            raw = row.get(answer) if answer else None
            if fmt in ("textvqa", "vqav2"):
                truth = _vqa_answers(raw)
            elif fmt in ("docvqa", "chartqa"):
                truth = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
            elif fmt == "mc":
                options = _options(row[choices], where) if choices else None
                if options is None:
                    values = [_text(row[c]) for c in letters]
                    options = tuple(values[: max((i + 1 for i, v in enumerate(values) if v), default=0)])
                if not options:
                    raise InputError(f"{where}: a multiple-choice row with no options")
                if isinstance(raw, int) and not isinstance(raw, bool) and choices:
                    if not 0 <= raw < len(options):
                        raise InputError(f"{where}: answer index {raw} outside {len(options)} choices")
                    truth = [_LETTERS[raw]]
                else:
                    truth = [_mc_letter(raw, options, where)] if _text(raw) else []
                hint = _text(row.get("hint"))
                if hint and hint.lower() not in ("nan", "none"):
                    text = f"Hint: {hint}\n{text}"
            elif fmt == "pope":
                truth = [_text(raw).lower()] if _text(raw) else []
                if truth and truth[0] not in ("yes", "no"):
                    raise InputError(f"{where}: POPE answer {raw!r} is not yes or no")
            else:
                truth = [] if raw is None else [raw] if not isinstance(raw, list) else raw
            kind = row.get(kind_column) if kind_column else None
            if isinstance(kind, list):
                kind = "/".join(str(k) for k in kind)
            yield EvalItem(
                id=_text(row.get(id_column)) if id_column and _text(row.get(id_column)) else str(row_number),
                image=_table_image(row.get("image"), base, meta),
                question=text,
                answers=tuple(_text(a) for a in truth if _text(a)),
                metric=metric,
                options=options,
                kind=_text(kind),
                meta=meta,
            )
            row_number += 1


def _table_image(value, base: Path, meta: dict):
    """An HF/parquet image cell as bytes or a path, undecoded."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) if value else _image_error(meta, "empty image bytes")
    if isinstance(value, str) and value:
        path = Path(value)
        return path if path.is_absolute() else base / path
    if value is None or value == "":
        return _image_error(meta, "no image in this row")
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    return _image_error(meta, f"unsupported image cell ({type(value).__name__})")
