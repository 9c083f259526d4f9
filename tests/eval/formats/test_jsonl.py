"""Our JSONL question files: rows, bad rows named by file and line, lazy reading."""

import re
from pathlib import Path

import pytest
from format_files import COLOURS, _png, _write_jsonl

from srice.errors import InputError
from srice.eval.data import iter_items, load_items
from srice.eval.items import EvalItem
from srice.images import load_image

# ---------------------------------------------------------------------------------------------------
# JSONL


@pytest.fixture
def jsonl(tmp_path) -> Path:
    (tmp_path / "imgs").mkdir()
    for colour in COLOURS[:3]:
        (tmp_path / "imgs" / f"{colour}.png").write_bytes(_png(colour))
    rows = [
        {"id": "q1", "image": "imgs/red.png", "question": "Colour?", "options": ["red", "blue"],
         "answer": "A", "kind": "colour", "meta": {"target_size": "large"}},
        {"id": "q2", "image": "imgs/green.png", "question": "Colour?", "options": ["red", "green", "blue"],
         "answer": "green"},  # option text -> letter
        {"image": "imgs/blue.png", "question": "How many?", "answer": "two"},  # id = line number
        {"image": "imgs/red.png", "question": "What?", "answers": ["red"] * 9 + ["pink"], "metric": "vqa"},
        {"image": str(tmp_path / "imgs" / "red.png"), "question": "Absolute?", "answer": 3},
    ]  # fmt: skip
    return _write_jsonl(tmp_path / "q.jsonl", [rows[0], rows[1], "", rows[2], rows[3], rows[4]])


def test_jsonl(jsonl):
    items = load_items(str(jsonl))
    assert [i.id for i in items] == ["q1", "q2", "4", "5", "6"]  # a blank line 3 still counts
    first, second, third, fourth, fifth = items
    assert first == EvalItem(
        "q1", jsonl.parent / "imgs/red.png", "Colour?", ("A",), "mc", ("red", "blue"), "colour"
    )
    assert first.meta["target_size"] == "large"
    assert (second.metric, second.answers, second.options) == ("mc", ("B",), ("red", "green", "blue"))
    assert (third.metric, third.answers, third.options) == ("exact", ("two",), None)
    assert fourth.metric == "vqa" and len(fourth.answers) == 10
    assert fifth.answers == ("3",) and fifth.image == jsonl.parent / "imgs/red.png"
    assert load_image(third.image).getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"q\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"q\.jsonl:2: each line must be a JSON object"),
        ('{"image": "x.png"}', r"q\.jsonl:2: missing 'question'"),
        ('{"image": "x.png", "question": "q", "answer": "a", "metric": "bleu"}', "unknown metric 'bleu'"),
        ('{"image": "x.png", "question": "q", "options": ["x", "y"], "answer": "C"}', "neither an option"),
        ('{"image": "x.png", "question": "q", "options": "x,y", "answer": "A"}', "must be a list"),
        ('{"image": "x.png", "question": "q", "answer": "a", "metric": "mc"}', "needs 'options'"),
        ('{"id": "q7", "image": "x.png", "question": "  "}', r"q\.jsonl:2: missing 'question'"),
        (
            '{"image": "x.png", "question": "q", "options": '
            + str([f"o{i}" for i in range(30)]).replace("'", '"')
            + "}",
            "30 options; at most 26",
        ),
    ],
)
def test_a_bad_row_costs_its_own_item_named_by_file_and_line(tmp_path, line, message):
    """A row that is no question is loaded as an item with its error (its record fails, the file
    does not): the good rows around it load as usual."""
    good = '{"image": "x.png", "question": "q", "answer": "a"}'
    path = _write_jsonl(tmp_path / "q.jsonl", [good, line, good])
    first, bad, third = load_items(path)
    assert first.error is None and third.error is None and third.id == "3"
    assert bad.error is not None and re.search(message, bad.error), bad.error
    assert bad.id == ("q7" if '"q7"' in line else "2")


def test_a_duplicate_id_still_rejects_the_file(tmp_path):
    """Records are keyed by id: two rows with one id cannot both have a record."""
    row = '{"id": "1", "image": "x.png", "question": "q", "answer": "a"}'
    with pytest.raises(InputError, match="duplicate id '1' \\(line 1 and line 2"):
        load_items(_write_jsonl(tmp_path / "q.jsonl", [row, row]))


def test_jsonl_is_lazy_and_limit_stops_early(tmp_path):
    rows = [{"image": "x.png", "question": "q", "answer": "a"}] * 3 + ["{broken"]
    path = _write_jsonl(tmp_path / "q.jsonl", rows)
    assert [i.id for i in load_items(path, limit=3)] == ["1", "2", "3"]
    assert load_items(path, limit=0) == []
    assert ":4:" in load_items(path)[3].error
    assert next(iter_items(path)).id == "1"
