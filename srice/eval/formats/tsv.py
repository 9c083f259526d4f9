"""VLMEvalKit TSV: the format its benchmarks ship in.

Columns: ``index``, ``image`` (base64; a short value equal to another row's ``index`` is a reference
to that row's image) or ``image_path``, ``question``, optional ``hint`` (prepended as
``"Hint: ...\\n"``), options ``A``, ``B``, ... (a row with all options empty is an open question,
metric ``exact``), ``answer`` (a letter), ``category`` (-> ``kind``), ``l2-category`` (-> meta).
The file is read whole first: image references may point anywhere in it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from pathlib import Path

from srice.errors import InputError
from srice.eval.formats.fields import image_error, letter_columns, mc_letter, text, with_hint
from srice.eval.items import EvalItem, broken


def tsv_items(path: Path) -> Iterator[EvalItem]:
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
    letters = letter_columns(columns)
    indices = frame["index"].tolist() if "index" in columns else [str(i) for i in range(len(frame))]
    images = frame[image_column].tolist()
    by_index = dict(zip(indices, images)) if image_column == "image" else {}
    records = frame.to_dict("records")
    del frame
    for row_number, (row, index) in enumerate(zip(records, indices)):
        try:
            yield _row(path, row, index, row_number, letters, image_column, by_index)
        except InputError as e:  # this row alone is not a question
            yield broken(text(index) or str(row_number), str(e), {"row": row_number})


def _row(path: Path, row: dict, index, row_number: int, letters, image_column, by_index) -> EvalItem:
    where = f"{path}:{row_number + 2}"  # 1-based, after the header line
    meta: dict = {"row": row_number}
    if image_column == "image":
        image = _image(row["image"], by_index, meta)
    elif row["image_path"]:
        image = Path(row["image_path"])
        image = image if image.is_absolute() else path.parent / image
    else:
        image = image_error(meta, "no image_path")
    values = [text(row[c]) for c in letters]
    last = max((i for i, v in enumerate(values) if v), default=-1)
    if "" in values[: last + 1]:
        raise InputError(f"{where}: options have a gap ({', '.join(letters[: last + 1])})")
    choices = tuple(values[: last + 1]) or None
    answer = text(row.get("answer"))
    if choices:
        truth = (mc_letter(answer, choices, where),) if answer else ()
    else:
        truth = (answer,) if answer else ()
    for key in ("l2-category", "split"):
        if text(row.get(key)):
            meta[key] = text(row[key])
    return EvalItem(
        id=text(index) or str(row_number),
        image=image,
        question=with_hint(text(row["question"]), row.get("hint"), blank=("nan",)),
        answers=truth,
        metric="mc" if choices else "exact",
        options=choices,
        kind=text(row.get("category")),
        meta=meta,
    )


def _image(value: str, by_index: dict[str, str], meta: dict) -> bytes:
    """Base64 image bytes; a short value naming another row's index means that row's image."""
    hops = 0
    while len(value) <= 64 and value in by_index and hops < 8:
        meta.setdefault("image_ref", value)
        value, hops = by_index[value], hops + 1
    if not value:
        return image_error(meta, "empty image cell")
    if len(value) <= 64 and hops == 8:
        return image_error(meta, "image references form a cycle")
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as e:
        return image_error(meta, f"image is not base64 ({e})")
