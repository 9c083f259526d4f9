"""The benchmark loader (``srice.eval.data``): format detection, unknown inputs, shards. Each
format's own tests are in ``tests/eval/formats/``."""

import pytest

from srice.errors import InputError
from srice.eval.data import FORMATS, detect_format, load_items, shard
from srice.eval.items import EvalItem


def test_detect_format_from_columns():
    assert detect_format(["image", "query", "label"]) == "chartqa"
    assert detect_format(["image", "question", "answers", "questionId"]) == "docvqa"
    assert detect_format(["image", "question", "answers", "multiple_choice_answer"]) == "vqav2"
    assert detect_format(["image", "question", "answers", "question_id"]) == "textvqa"
    assert detect_format(["image", "question", "A", "B", "answer"]) == "mc"
    assert detect_format(["image", "question", "answer"]) == "exact"  # without data to look at
    assert set(FORMATS) >= {"textvqa", "vqav2", "docvqa", "chartqa", "pope"}


def test_unknown_or_missing_inputs(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"unknown data format: .*data\.csv"):
        load_items(tmp_path / "data.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no dataset_info.json"):
        load_items(tmp_path / "empty")
    with pytest.raises(InputError, match="data not found"):
        load_items(tmp_path / "nope.jsonl")
    (tmp_path / "q.jsonl").write_text("")
    with pytest.raises(InputError, match="apply to HF and parquet data only"):
        load_items(f"{tmp_path / 'q.jsonl'}#pope")
    with pytest.raises(InputError, match="limit must be >= 0"):
        load_items(tmp_path / "q.jsonl", limit=-1)
    assert load_items(tmp_path / "q.jsonl") == []


@pytest.mark.parametrize("n", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_are_disjoint_and_cover_everything(n, count):
    items = [EvalItem(str(k), b"", "q", ("a",)) for k in range(n)]
    shards = [shard(items, i, count) for i in range(count)]
    ids = [item.id for s in shards for item in s]
    assert ids == [item.id for item in items]  # contiguous, in order, each exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_rejects_bad_indices():
    for index, count in [(1, 1), (-1, 2), (0, 0)]:
        with pytest.raises(InputError, match="need 0 <= i < n"):
            shard([], index, count)
