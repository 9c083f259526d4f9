"""Benchmark adapters on small fixtures built here: JSONL, VLMEvalKit TSV, saved HF datasets, parquet."""

import base64
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from srice.errors import InputError
from srice.eval.data import FORMATS, detect_format, iter_items, load_items, parse_spec, shard
from srice.eval.items import EvalItem
from srice.images import load_image

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


# ---------------------------------------------------------------------------------------------------
# VLMEvalKit TSV


@pytest.fixture
def tsv(tmp_path) -> Path:
    b64 = {c: base64.b64encode(_png(c)).decode() for c in COLOURS}
    header = ["index", "image", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category"]
    rows = [
        ["10", b64["red"], "What colour is it?", "", "red", "blue", "", "", "A", "colour", "perception"],
        ["11", "10", "Is it warm?", "Think of fire.", "yes", "no", "", "", "A", "reasoning", "logic"],
        ["12", b64["blue"], "How many sides?", "", "3", "4", "5", "6", "B", "count", "perception"],
        ["13", b64["green"], "Name the colour.", "", "", "", "", "", "green", "open", ""],
        ["14", "!!! not base64 !!!", "Broken image?", "", "x", "y", "", "", "B", "broken", ""],
    ]
    path = tmp_path / "bench.tsv"
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def test_tsv(tsv):
    items = load_items(tsv)
    assert [i.id for i in items] == ["10", "11", "12", "13", "14"]
    red, warm, sides, open_, broken = items
    assert red.options == ("red", "blue") and red.answers == ("A",) and red.metric == "mc"
    assert (red.kind, red.meta["l2-category"]) == ("colour", "perception")
    assert isinstance(red.image, bytes) and load_image(red.image).getpixel((0, 0)) == (255, 0, 0)
    assert warm.image == red.image and warm.meta["image_ref"] == "10"  # a reference to row 10's image
    assert warm.question == "Hint: Think of fire.\nIs it warm?"
    assert sides.options == ("3", "4", "5", "6") and sides.answers == ("B",)
    assert (open_.metric, open_.options, open_.answers) == ("exact", None, ("green",))
    # an undecodable image is not a load error; it fails when the evaluator opens it
    assert broken.answers == ("B",)
    with pytest.raises(InputError):
        load_image(broken.image)


def test_tsv_errors(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("index\timage\tA\tB\tanswer\n1\txx\ta\tb\tA\n")
    with pytest.raises(InputError, match=r"bad\.tsv: missing column\(s\) question"):
        load_items(path)
    path.write_text("index\timage\tquestion\tA\tB\tanswer\n1\txx\tq\ta\tb\tE\n")
    [item] = load_items(path)
    assert re.search(r"bad\.tsv:2: answer 'E' is neither an option letter \(A-B\)", item.error)
    path.write_text("index\timage\tquestion\tA\tB\tanswer\n1\txx\tq\ta\tb\tA\n1\txx\tq\ta\tb\tA\n")
    with pytest.raises(InputError, match="duplicate id '1'"):
        load_items(path)


# ---------------------------------------------------------------------------------------------------
# Hugging Face datasets saved to disk, and parquet


def _images(n):
    return [Image.new("RGB", (6, 4), COLOURS[i % len(COLOURS)]) for i in range(n)]


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> dict[str, Path]:
    """Saved datasets in the field layouts of TextVQA, VQAv2, DocVQA, ChartQA and POPE, a two-split
    DatasetDict, and parquet exports."""
    import datasets

    root = tmp_path_factory.mktemp("hf")
    image = datasets.Image()
    shapes = {
        "textvqa": {
            "question_id": [101, 102, 103],
            "question": ["What brand?", "What number?", "Which word?"],
            "answers": [["nike"] * 10, ["5"] * 8 + ["five", "6"], ["stop"] * 3 + ["go"] * 7],
            "image": _images(3),
        },
        "vqav2": {
            "question_id": [1, 2],
            "question": ["Is it red?", "How many?"],
            "answers": [[{"answer": "yes", "answer_id": i} for i in range(10)],
                        [{"answer": "2", "answer_id": i} for i in range(10)]],
            "multiple_choice_answer": ["yes", "2"],
            "answer_type": ["yes/no", "number"],
            "image": _images(2),
        },
        "docvqa": {
            "questionId": [7, 8],
            "question": ["What is the date?", "Who signed?"],
            "answers": [["1 May 1999", "May 1, 1999"], ["J. Smith"]],
            "question_types": [["form"], ["handwritten", "form"]],
            "image": _images(2),
        },
        "chartqa": {
            "query": ["What is the peak?", "Which year?"],
            "label": [["42.5"], ["2019"]],
            "human_or_machine": ["human", "machine"],
            "image": _images(2),
        },
        "pope": {
            "id": ["0", "1", "2", "3"],
            "question_id": ["1", "2", "1", "2"],  # repeats across categories; "id" is unique
            "question": ["Is there a dog in the image?"] * 4,
            "answer": ["yes", "no", "No", "yes"],
            "category": ["random", "random", "adversarial", "adversarial"],
            "image": _images(4),
        },
    }  # fmt: skip
    paths = {}
    for name, columns in shapes.items():
        features = datasets.Dataset.from_dict({k: v for k, v in columns.items() if k != "image"}).features
        features["image"] = image
        dataset = datasets.Dataset.from_dict(columns, features=features)
        dataset.save_to_disk(str(root / name))
        dataset.to_parquet(str(root / f"{name}.parquet"))
        paths[name] = root / name
        paths[f"{name}.parquet"] = root / f"{name}.parquet"
    # one row with an undecodable image, one with none
    broken = datasets.Dataset.from_dict(
        {
            "question": ["q1", "q2"],
            "answer": ["cat", "dog"],
            "image": [{"bytes": b"junk", "path": None}, None],
        },  # noqa: E501
        features=datasets.Features(
            {"question": datasets.Value("string"), "answer": datasets.Value("string"), "image": image}
        ),
    )
    broken.save_to_disk(str(root / "broken"))
    paths["broken"] = root / "broken"
    pope = datasets.load_from_disk(str(root / "pope"))
    datasets.DatasetDict({"test": pope, "val": pope.select([0])}).save_to_disk(str(root / "dict"))
    paths["dict"] = root / "dict"
    nested = root / "hub" / "data"
    nested.mkdir(parents=True)
    pope.select([0, 1]).to_parquet(str(nested / "test-00000-of-00001.parquet"))
    pope.select([2]).to_parquet(str(nested / "val-00000-of-00001.parquet"))
    paths["hub"] = root / "hub"
    return paths


@pytest.mark.parametrize("suffix", ["", ".parquet"])
def test_hf_textvqa(hf, suffix):
    items = load_items(f"{hf['textvqa' + suffix]}")
    assert [i.id for i in items] == ["101", "102", "103"]
    assert all(i.metric == "vqa" and len(i.answers) == 10 and i.options is None for i in items)
    assert items[1].answers.count("5") == 8
    assert isinstance(items[0].image, bytes)  # kept undecoded
    assert load_image(items[2].image).getpixel((0, 0)) == (0, 0, 255)
    assert items[0].meta["row"] == 0 and items[0].meta["format"] == "textvqa"


@pytest.mark.parametrize("suffix", ["", ".parquet"])
def test_hf_vqav2_docvqa_chartqa(hf, suffix):
    vqa = load_items(hf["vqav2" + suffix])
    assert [(i.id, i.metric, i.answers[0], len(i.answers), i.kind) for i in vqa] == [
        ("1", "vqa", "yes", 10, "yes/no"),
        ("2", "vqa", "2", 10, "number"),
    ]
    doc = load_items(hf["docvqa" + suffix])
    assert [(i.id, i.metric, i.answers, i.kind) for i in doc] == [
        ("7", "anls", ("1 May 1999", "May 1, 1999"), "form"),
        ("8", "anls", ("J. Smith",), "handwritten/form"),
    ]
    chart = load_items(hf["chartqa" + suffix])
    assert [(i.id, i.question, i.metric, i.answers, i.kind) for i in chart] == [
        ("0", "What is the peak?", "relaxed", ("42.5",), "human"),
        ("1", "Which year?", "relaxed", ("2019",), "machine"),
    ]


@pytest.mark.parametrize("suffix", ["", ".parquet"])
def test_hf_pope(hf, suffix):
    items = load_items(hf["pope" + suffix])
    assert [(i.id, i.metric, i.answers, i.kind) for i in items] == [
        ("0", "pope", ("yes",), "random"),
        ("1", "pope", ("no",), "random"),
        ("2", "pope", ("no",), "adversarial"),
        ("3", "pope", ("yes",), "adversarial"),
    ]


def test_spec_syntax_splits_and_forced_format(hf):
    with pytest.raises(InputError, match="has splits test, val; name one"):
        load_items(hf["dict"])
    assert len(load_items(f"hf:{hf['dict']}:test")) == 4
    assert [i.id for i in load_items(f"{hf['dict']}:val")] == ["0"]
    with pytest.raises(InputError, match="no split 'train'; it has test, val"):
        load_items(f"hf:{hf['dict']}:train")
    forced = load_items(f"hf:{hf['pope']}#exact")  # yes/no answers, scored as exact match
    assert {i.metric for i in forced} == {"exact"}
    assert {i.metric for i in load_items(hf["pope"], format="exact")} == {"exact"}
    assert parse_spec(f"hf:{hf['dict']}:val#pope").split == "val"
    with pytest.raises(InputError, match="unknown data format 'coco'"):
        load_items(f"{hf['pope']}#coco")
    # a folder of parquet files laid out as on the Hub
    assert [i.id for i in load_items(hf["hub"])] == ["0", "1", "2"]
    assert [i.id for i in load_items(f"{hf['hub']}:val")] == ["2"]
    with pytest.raises(InputError, match="is a single parquet file"):
        load_items(f"{hf['pope.parquet']}:test")


def test_hf_rows_with_bad_images_still_load(hf):
    junk, missing = load_items(hf["broken"])
    assert junk.image == b"junk" and junk.metric == "exact"
    assert missing.image == b"" and missing.meta["image_error"] == "no image in this row"
    for item in (junk, missing):
        with pytest.raises(InputError):
            load_image(item.image)


def test_hf_missing_columns(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"question": ["q"], "answers": [["a"]]}).save_to_disk(str(tmp_path / "a"))
    with pytest.raises(InputError, match=r"textvqa data needs column\(s\) image; has question, answers"):
        load_items(tmp_path / "a")
    datasets.Dataset.from_dict({"image": ["x.png"], "caption": ["c"]}).to_parquet(str(tmp_path / "b.parquet"))
    with pytest.raises(InputError, match="cannot tell the benchmark format from the columns image, caption"):
        load_items(tmp_path / "b.parquet")


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


# ---------------------------------------------------------------------------------------------------
# limit and shard


def test_limit_takes_the_first_items(hf):
    assert [i.id for i in load_items(hf["textvqa"], limit=2)] == ["101", "102"]
    assert len(load_items(hf["textvqa"], limit=99)) == 3


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


def test_multiple_choice_tables(tmp_path):
    import datasets

    image = datasets.Image()
    mmbench = datasets.Dataset.from_dict(
        {
            "index": [5, 6],
            "question": ["Colour?", "Shape?"],
            "hint": ["Look closely.", None],
            "A": ["red", "square"],
            "B": ["blue", "circle"],
            "C": ["green", None],
            "answer": ["C", "circle"],
            "category": ["colour", "shape"],
            "image": _images(2),
        }
    ).cast_column("image", image)
    mmbench.to_parquet(str(tmp_path / "mmbench.parquet"))
    first, second = load_items(tmp_path / "mmbench.parquet")
    assert (first.id, first.metric, first.options, first.answers, first.kind) == (
        "5", "mc", ("red", "blue", "green"), ("C",), "colour"
    )  # fmt: skip
    assert first.question == "Hint: Look closely.\nColour?" and second.question == "Shape?"
    assert (second.options, second.answers) == (("square", "circle"), ("B",))
    scienceqa = datasets.Dataset.from_dict(
        {"question": ["Which is a mammal?"], "choices": [["frog", "whale", "shark"]], "answer": [1],
         "image": _images(1)}
    ).cast_column("image", image)  # fmt: skip
    scienceqa.save_to_disk(str(tmp_path / "sqa"))
    (item,) = load_items(tmp_path / "sqa")
    assert (item.id, item.options, item.answers) == ("0", ("frog", "whale", "shark"), ("B",))
    assert item.metric == "mc"


def test_tsv_image_paths_and_option_gaps(tmp_path):
    (tmp_path / "red.png").write_bytes(_png("red"))
    path = tmp_path / "paths.tsv"
    path.write_text("index\timage_path\tquestion\tanswer\n1\tred.png\tColour?\tred\n")
    (item,) = load_items(path)
    assert item.image == tmp_path / "red.png" and (item.metric, item.answers) == ("exact", ("red",))
    path.write_text("index\timage\tquestion\tA\tB\tC\tanswer\n1\txx\tq\ta\t\tc\tA\n")
    [item] = load_items(path)
    assert "paths.tsv:2: options have a gap" in item.error
