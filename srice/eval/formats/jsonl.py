"""Our JSONL: one question object per line.

Fields: ``image`` (a path relative to the JSONL file), ``question``, ``options`` (a list, or
``null``), ``answer`` (for multiple choice the letter, or the option's text, which becomes its letter;
a letter wins when an option's text is also a letter) and/or ``answers`` (a list), and optional
``id`` (default: the 1-based line number), ``metric`` (default ``"mc"`` with options, else
``"exact"``), ``kind`` and ``meta`` (an object). Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from srice.errors import InputError
from srice.eval.formats.fields import mc_letter, options, text
from srice.eval.items import METRICS, EvalItem, broken
from srice.files import check_regular

MAX_LINE_BYTES = 16 * 1024 * 1024  # a question line longer than this is not a question


def jsonl_items(path: Path) -> Iterator[EvalItem]:
    """Each line's item; a line that is not a question is a ``broken`` item keyed by its id (or its
    line number), so one bad row costs its own record and the rest of the file still loads."""
    check_regular(path, "data file")
    try:
        handle = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    with handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of the overlong line
                yield broken(
                    str(number), f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes", {"line": number}
                )
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield broken(str(number), f"{path}:{number}: not UTF-8 text ({e.reason})", {"line": number})
                continue
            if not line.strip():
                continue
            try:
                yield _item(line, path, number)
            except InputError as e:
                yield broken(_id_of(line) or str(number), str(e), {"line": number})


def _id_of(line: str) -> str:
    """The id a bad line names, when it is JSON with one (its record then carries that id)."""
    try:
        row = json.loads(line)
    except ValueError:
        return ""
    return text(row.get("id")) if isinstance(row, dict) else ""


def _item(line: str, path: Path, number: int) -> EvalItem:
    where = f"{path}:{number}"
    try:
        row = json.loads(line)
    except ValueError as e:
        raise InputError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
    missing = [k for k in ("image", "question") if not text(row.get(k))]
    if missing:
        raise InputError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
    if not isinstance(row["image"], str):
        raise InputError(f"{where}: 'image' must be a path string")
    choices = options(row.get("options"), where)
    metric = row.get("metric") or ("mc" if choices else "exact")
    if metric not in METRICS:
        raise InputError(f"{where}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if metric == "mc" and not choices:
        raise InputError(f"{where}: metric 'mc' needs 'options'")
    answers = row.get("answers")
    if answers is not None and not isinstance(answers, list):
        raise InputError(f"{where}: 'answers' must be a list")
    truth = [row["answer"]] if row.get("answer") is not None else []
    truth = truth or list(answers or [])
    if metric == "mc":
        truth = [mc_letter(truth[0], choices, where)] if truth else []
    elif answers:
        truth = list(answers)
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(f"{where}: 'meta' must be an object")
    image = Path(row["image"])
    return EvalItem(
        id=text(row.get("id")) or str(number),
        image=image if image.is_absolute() else path.parent / image,
        question=text(row["question"]),
        answers=tuple(text(a) for a in truth),
        metric=metric,
        options=choices,
        kind=text(row.get("kind")),
        meta={**meta, "line": number},
    )
