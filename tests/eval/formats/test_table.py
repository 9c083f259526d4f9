"""Hugging Face datasets saved to disk and parquet files, in each benchmark's field layout."""

from pathlib import Path

import pytest
from format_files import _images

from srice.errors import InputError
from srice.eval.data import load_items, parse_spec
from srice.images import load_image


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


def test_limit_takes_the_first_items(hf):
    assert [i.id for i in load_items(hf["textvqa"], limit=2)] == ["101", "102"]
    assert len(load_items(hf["textvqa"], limit=99)) == 3


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
