"""VLMEvalKit TSV files: base64 images, image paths, options, errors."""

import base64
import re
from pathlib import Path

import pytest
from format_files import COLOURS, _png

from srice.errors import InputError
from srice.eval.data import load_items
from srice.images import load_image

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


def test_tsv_image_paths_and_option_gaps(tmp_path):
    (tmp_path / "red.png").write_bytes(_png("red"))
    path = tmp_path / "paths.tsv"
    path.write_text("index\timage_path\tquestion\tanswer\n1\tred.png\tColour?\tred\n")
    (item,) = load_items(path)
    assert item.image == tmp_path / "red.png" and (item.metric, item.answers) == ("exact", ("red",))
    path.write_text("index\timage\tquestion\tA\tB\tC\tanswer\n1\txx\tq\ta\t\tc\tA\n")
    [item] = load_items(path)
    assert "paths.tsv:2: options have a gap" in item.error
