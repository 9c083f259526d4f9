"""Tables: parquet files (one, or a folder of them) and Hugging Face datasets saved to disk, read in
batches, each row turned into an ``EvalItem`` by its benchmark's record (``benchmarks``).

The id is the first of the columns ``id``, ``questionId``, ``question_id``, ``index`` that exists
(``id`` first: POPE's ``question_id`` repeats across its categories), else the row number.

Images stay undecoded: an HF ``Image`` column is read as its stored ``{"bytes", "path"}`` (the
bytes, or the path resolved against the data folder); a string column is a path. A row whose image
is missing is still loaded; its image is ``b""`` with ``meta["image_error"]`` saying why, and the
evaluator records the failure for that item. HF datasets are read with ``load_from_disk``, never
from the Hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from srice.errors import InputError
from srice.eval.formats.benchmarks import benchmark, detect_format
from srice.eval.formats.fields import first, image_error, text, with_hint
from srice.eval.items import EvalItem, broken

BATCH = 256
EXTRAS = ("image_id", "hint", "l2-category", "docId")  # columns kept in meta (hint: in the question)


def table_items(path: Path, source: str, split: str | None, fmt: str | None) -> Iterator[EvalItem]:
    """The rows of a parquet file/folder (``source="parquet"``) or saved HF dataset (``"hf"``)."""
    table = _Table(path, source, split)
    columns = table.schema()
    spec = benchmark(fmt or detect_format(columns, table.values))
    missing = spec.missing(columns)
    if missing:
        raise InputError(
            f"{path}: {spec.name} data needs column(s) {', '.join(missing)}; has {', '.join(columns)}"
        )
    c = spec.columns(columns)
    id_column = first(columns, "id", "questionId", "question_id", "index")
    extras = [k for k in EXTRAS if k in columns]
    image_column = "image" if "image" in columns else None
    wanted = list(dict.fromkeys([image_column, c.question, c.answer, id_column, c.kind, c.choices]))
    wanted += [k for k in [*c.letters, *extras] if k not in wanted]
    wanted = [k for k in wanted if k]
    base = path if path.is_dir() else path.parent
    row_number = 0
    for batch in table.batches(wanted):
        for row in batch:
            item_id = text(row.get(id_column)) if id_column and text(row.get(id_column)) else str(row_number)
            try:
                yield _row(spec, c, row, item_id, row_number, extras, path, base)
            except InputError as e:  # this row alone is not a question
                yield broken(item_id, str(e), {"row": row_number, "format": spec.name})
            row_number += 1


def _row(spec, c, row: dict, item_id: str, row_number: int, extras, path: Path, base: Path) -> EvalItem:
    where = f"{path} row {row_number}"
    meta: dict = {"row": row_number, "format": spec.name}
    for key in extras:
        if row.get(key) is not None and key != "hint":
            meta[key] = row[key] if isinstance(row[key], (int, float, str)) else str(row[key])
    truth, choices = spec.truth(row.get(c.answer) if c.answer else None, row, c, where)
    question = text(row[c.question])
    if spec.hint:
        question = with_hint(question, row.get("hint"))
    kind = row.get(c.kind) if c.kind else None
    if isinstance(kind, list):
        kind = "/".join(str(k) for k in kind)
    return EvalItem(
        id=item_id,
        image=_image(row.get("image"), base, meta),
        question=question,
        answers=tuple(text(a) for a in truth if text(a)),
        metric=spec.metric,
        options=choices,
        kind=text(kind),
        meta=meta,
    )


class _Table:
    """One parquet file/folder or saved HF dataset (one split of it), read column-wise in batches."""

    MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")

    def __init__(self, path: Path, source: str, split: str | None):
        self.path, self.source, self.split = path, source, split

    def schema(self) -> list[str]:
        if self.source == "hf":
            return list(self.dataset().column_names)
        import pyarrow.parquet as pq

        names: list[str] = []
        for file in self.files():
            for name in pq.read_schema(file).names:
                if name not in names:
                    names.append(name)
        return names

    def batches(self, columns: list[str]) -> Iterator[list[dict]]:
        if self.source == "hf":
            for table in self.dataset().select_columns(columns).with_format("arrow").iter(batch_size=BATCH):
                yield table.to_pylist()
        else:
            import pyarrow.parquet as pq

            for file in self.files():
                for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH, columns=columns):
                    yield batch.to_pylist()

    def values(self, column: str) -> Iterable:
        for batch in self.batches([column]):
            for row in batch:
                yield row[column]

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        files = sorted(self.path.rglob("*.parquet"))
        if self.split:
            chosen = [
                f
                for f in files
                if self.split in f.relative_to(self.path).parts[:-1]
                or f.stem == self.split
                or f.stem.startswith((f"{self.split}-", f"{self.split}_"))
            ]
            if not chosen:
                raise InputError(f"{self.path}: no parquet files for split {self.split!r}")
            files = chosen
        return files

    def dataset(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        import datasets

        try:
            loaded = datasets.load_from_disk(str(self.path))
        except (OSError, ValueError, FileNotFoundError) as e:
            raise InputError(f"cannot load HF dataset {self.path}: {e}") from None
        if isinstance(loaded, datasets.DatasetDict):
            splits = list(loaded)
            if self.split is None:
                if len(splits) != 1:
                    raise InputError(
                        f"{self.path} has splits {', '.join(splits)}; name one as {self.path}:SPLIT"
                    )
                return loaded[splits[0]]
            if self.split not in loaded:
                raise InputError(f"{self.path} has no split {self.split!r}; it has {', '.join(splits)}")
            return loaded[self.split]
        if self.split is not None and self.split != str(loaded.split):
            raise InputError(f"{self.path} holds one split ({loaded.split}); drop ':{self.split}'")
        return loaded


def _image(value, base: Path, meta: dict):
    """An HF/parquet image cell as bytes or a path, undecoded."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) if value else image_error(meta, "empty image bytes")
    if isinstance(value, str) and value:
        path = Path(value)
        return path if path.is_absolute() else base / path
    if value is None or value == "":
        return image_error(meta, "no image in this row")
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    return image_error(meta, f"unsupported image cell ({type(value).__name__})")
