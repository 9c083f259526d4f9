"""The synthetic VQA world: determinism, answers recomputed from the scenes, pixels, COCO, knobs.

Answers are recomputed here by parsing each question and resolving its referring expressions against
scenes.jsonl with this file's own vocabulary, not with srice.synth's code, so a generator bug that
writes a wrong or ambiguous question cannot agree with itself.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srice.calibration.coco import load_coco
from srice.errors import InputError
from srice.synth import SynthKnobs, generate

SIZES = ("tiny", "small", "large")
TEXTURES = ("solid", "striped", "dotted")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black")
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
SMALL = {"min_side": 256, "max_side": 320}  # fast PNGs for tests that need many questions


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Default-sized images (672-1344 px), for pixel and COCO checks."""
    out = tmp_path_factory.mktemp("synth_full")
    return out, generate(out, seed=0, n=45)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Many questions on small images, for answer and share checks."""
    out = tmp_path_factory.mktemp("synth_many")
    return out, generate(out, seed=7, n=600, knobs=SynthKnobs(**SMALL))


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = generate(tmp_path / "a", seed=3, n=24, knobs=SynthKnobs(**SMALL))
    generate(tmp_path / "b", seed=3, n=24, knobs=SynthKnobs(**SMALL))
    generate(tmp_path / "c", seed=4, n=24, knobs=SynthKnobs(**SMALL))
    fa, fb, fc = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert fa == fb
    assert len(fa) == a.n_images + 4
    assert fa["questions.jsonl"] != fc["questions.jsonl"]
    assert fa["scenes.jsonl"] != fc["scenes.jsonl"]
    assert not set(k for k in fa if k.startswith("images/")) & set(k for k in fc if k.startswith("images/"))
    manifest = json.loads(fa["synth.json"])
    assert manifest["seed"] == 3 and manifest["n"] == 24 and manifest["version"] >= 1
    assert manifest["knobs"]["min_side"] == 256
    import hashlib

    assert manifest["sha256"]["questions.jsonl"] == hashlib.sha256(fa["questions.jsonl"]).hexdigest()


def test_more_questions_extend_the_same_images(tmp_path):
    generate(tmp_path / "small", seed=5, n=20, knobs=SynthKnobs(**SMALL))
    generate(tmp_path / "big", seed=5, n=40, knobs=SynthKnobs(**SMALL))
    small, big = files(tmp_path / "small"), files(tmp_path / "big")
    images = [k for k in small if k.startswith("images/")]
    assert all(small[k] == big[k] for k in images)
    q_small = read_jsonl(tmp_path / "small" / "questions.jsonl")
    q_big = read_jsonl(tmp_path / "big" / "questions.jsonl")
    assert q_small == q_big[: len(q_small)]


def test_exactly_n_questions_and_progress(tmp_path):
    calls = []
    summary = generate(tmp_path / "o", seed=1, n=13, knobs=SynthKnobs(**SMALL), progress=calls.append)
    assert summary.n_questions == sum(calls) == 13
    assert len(read_jsonl(tmp_path / "o" / "questions.jsonl")) == 13
    assert len(read_jsonl(tmp_path / "o" / "scenes.jsonl")) == summary.n_images == len(calls)


def resolve(expression: str, objects: list[dict]) -> dict:
    """The single object an expression such as "tiny striped red star" or "blue object" denotes."""
    *adjectives, noun = expression.split()
    matches = [o for o in objects if noun == "object" or o["shape"] == noun]
    assert noun == "object" or noun in SHAPES, expression
    for word in adjectives:
        field = "size" if word in SIZES else "texture" if word in TEXTURES else "colour"
        assert field != "colour" or word in COLOURS, f"unknown word {word!r} in {expression!r}"
        matches = [o for o in matches if o[field] == word]
    assert len(matches) == 1, f"{expression!r} matches {len(matches)} objects"
    return matches[0]


def recompute(question: str, objects: list[dict]) -> tuple[str, list[dict]]:
    """(answer, target objects) from the question text and the scene alone."""
    if m := re.fullmatch(r"What colour is the (.+)\?", question):
        o = resolve(m[1], objects)
        return o["colour"], [o]
    if m := re.fullmatch(r"What shape is the (.+)\?", question):
        o = resolve(m[1], objects)
        return o["shape"], [o]
    if m := re.fullmatch(r"What is written on the (.+)\?", question):
        o = resolve(m[1], objects)
        assert o["text"], question
        return o["text"], [o]
    if m := re.fullmatch(r"How many (.+) are there\?", question):
        words = m[1].split()
        colour = words[0] if words[0] in COLOURS else None
        noun = words[-1]
        shape = None if noun == "objects" else noun.removesuffix("s")
        assert shape is None or shape in SHAPES, question
        hits = [
            o
            for o in objects
            if (colour is None or o["colour"] == colour) and (shape is None or o["shape"] == shape)
        ]
        return str(len(hits)), hits
    if m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", question):
        hits = [o for o in objects if o["colour"] == m[1] and o["shape"] == m[2]]
        return ("yes", hits) if hits else ("no", [o for o in objects if o["shape"] == m[2]])
    if m := re.fullmatch(r"Is the (.+) left or right of the (.+)\?", question):
        a, b = resolve(m[1], objects), resolve(m[2], objects)
        if a["box"][2] <= b["box"][0]:
            return "left", [a, b]
        assert b["box"][2] <= a["box"][0], f"{question}: boxes overlap horizontally"
        return "right", [a, b]
    raise AssertionError(f"unrecognised question {question!r}")


def test_every_answer_recomputes_from_the_scene(many, full):
    for out, _ in (many, full):
        scenes = {s["id"]: s for s in read_jsonl(out / "scenes.jsonl")}
        questions = read_jsonl(out / "questions.jsonl")
        assert len({q["id"] for q in questions}) == len(questions)
        kinds = Counter()
        for q in questions:
            scene = scenes[q["meta"]["image_id"]]
            assert q["image"] == scene["image"] and (out / q["image"]).exists()
            answer, targets = recompute(q["question"], scene["objects"])
            kinds[q["kind"]] += 1
            if q["options"] is None:
                assert q["metric"] == "exact" and not q["kind"].endswith("_mc")
                assert q["answer"] == answer == answer.lower() and q["answers"][0] == answer
            else:
                assert q["metric"] == "mc" and q["kind"].endswith("_mc")
                assert len(q["options"]) == len(set(q["options"])) == 4
                assert q["answer"] in "ABCD" and q["answers"] == [q["answer"]]
                assert q["options"]["ABCD".index(q["answer"])] == answer
            if q["kind"] == "count":
                assert int(answer) >= 1
            meta = q["meta"]
            assert sorted(meta["target_ids"]) == sorted(t["id"] for t in targets)
            boxes = [t["box"] for t in targets]
            union = [
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ]
            assert meta["target_box"] == union
            assert meta["target_size"] == min((t["size"] for t in targets), key=SIZES.index)
        if out == many[0]:
            assert set(kinds) == {
                "colour",
                "count",
                "exists",
                "text",
                "leftright",
                "colour_mc",
                "shape_mc",
                "text_mc",
            }


def test_scene_geometry(many):
    out, _ = many
    for scene in read_jsonl(out / "scenes.jsonl"):
        objects = scene["objects"]
        assert 2 <= len(objects) <= 7
        assert any(o["size"] == "tiny" for o in objects) and any(o["size"] != "tiny" for o in objects)
        for o in objects:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= scene["width"] and 0 <= y1 < y2 <= scene["height"]
            side = max(x2 - x1, y2 - y1)
            if o["size"] == "tiny":
                assert 6 <= side <= 12, o
            else:
                assert side >= 20, o
            if o["size"] == "large":
                assert side >= 0.11 * min(scene["width"], scene["height"])
        for i, a in enumerate(objects):
            for b in objects[i + 1 :]:
                apart = a["box"][2] <= b["box"][0] or b["box"][2] <= a["box"][0]
                assert apart or a["box"][3] <= b["box"][1] or b["box"][3] <= a["box"][1], (a["id"], b["id"])


def test_pixels_and_coco_masks(full):
    out, summary = full
    scenes = read_jsonl(out / "scenes.jsonl")
    annotated = load_coco(out / "annotations.json", out / "images", masks=True)
    assert len(annotated) == len(scenes) == summary.n_images
    rgb_of = {}
    for scene, item in zip(scenes, annotated):
        image = np.asarray(Image.open(item.path).convert("RGB"))
        assert image.shape == (scene["height"], scene["width"], 3)
        assert 672 <= scene["width"] <= 1344 and 672 <= scene["height"] <= 1344
        assert item.truth.labels == tuple(o["shape"] for o in scene["objects"])
        background = np.asarray(scene["background"])
        for o, box, mask in zip(scene["objects"], item.truth.boxes, item.truth.masks):
            assert list(box) == o["box"]
            x1, y1, x2, y2 = o["box"]
            inside = mask[y1:y2, x1:x2]
            assert mask.sum() == inside.sum() == o["area"] > 0  # non-empty and inside its box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            rgb = tuple(o["rgb"])
            assert rgb_of.setdefault(o["colour"], rgb) == rgb
            pixels = image[y1:y2, x1:x2]
            own = np.all(pixels == rgb, axis=-1)
            if o["texture"] == "solid" and not o["text"]:
                assert own[inside].all(), o["id"]
            assert own[inside].mean() > 0.5, o["id"]  # stripes, dots and text leave the colour dominant
            assert not own[~inside].any(), o["id"]  # nothing painted outside the mask
            assert np.abs(pixels[~inside].astype(int) - background).max(initial=0) <= 60
    names = list(rgb_of)
    for i, a in enumerate(names):  # well-separated colours
        for b in names[i + 1 :]:
            assert math.dist(rgb_of[a], rgb_of[b]) > 60, (a, b)


def test_coco_file_layout(full):
    out, _ = full
    coco = json.loads((out / "annotations.json").read_text())
    assert {c["name"] for c in coco["categories"]} == set(SHAPES)
    for a in coco["annotations"]:
        assert a["iscrowd"] == 0 and set(a["attributes"]) >= {
            "colour",
            "texture",
            "text",
            "size",
            "object_id",
        }
        seg = a["segmentation"]  # default mask_format="rle": exact under every decoder
        assert set(seg) == {"size", "counts"} and all(isinstance(c, int) for c in seg["counts"])
        h, w = seg["size"]
        assert sum(seg["counts"]) == h * w


def test_polygon_mask_format(tmp_path):
    generate(tmp_path, seed=0, n=6, knobs=SynthKnobs(mask_format="polygon"))
    coco = json.loads((tmp_path / "annotations.json").read_text())
    kinds = set()
    for a in coco["annotations"]:
        seg = a["segmentation"]
        name = next(c["name"] for c in coco["categories"] if c["id"] == a["category_id"])
        if name == "circle":
            assert set(seg) == {"size", "counts"}
            kinds.add("rle")
        else:
            assert isinstance(seg, list) and len(seg[0]) >= 6
            kinds.add("polygon")
    assert "polygon" in kinds


def test_tiny_share_and_balance(many, tmp_path):
    def check(out: Path, p: float) -> None:
        questions = read_jsonl(out / "questions.jsonl")
        n = len(questions)
        share = sum(q["meta"]["target_size"] == "tiny" for q in questions) / n
        # The plan is stratified per image, so binomial sd is an upper bound; 4 sd plus a little for
        # the rare question that had to fall back to the other size class.
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.02, (share, p)

    out, summary = many
    check(out, 0.5)
    assert abs(summary.tiny_share - 0.5) < 0.1
    questions = read_jsonl(out / "questions.jsonl")
    letters = Counter(q["answer"] for q in questions if q["options"])
    total = sum(letters.values())
    for letter in "ABCD":  # uniform letter position, +-4 sd
        assert abs(letters[letter] - total / 4) <= 4 * math.sqrt(total * 0.25 * 0.75), letters
    yes_no = Counter(q["answer"] for q in questions if q["kind"] == "exists")
    assert min(yes_no["yes"], yes_no["no"]) >= 0.3 * sum(yes_no.values())
    tiny_texts = [q for q in questions if q["kind"] == "text" and q["meta"]["target_size"] == "tiny"]
    assert tiny_texts and all(q["answer"].isdigit() for q in tiny_texts)
    generate(tmp_path / "p2", seed=2, n=300, knobs=SynthKnobs(tiny_fraction=0.2, kinds=["colour"], **SMALL))
    check(tmp_path / "p2", 0.2)
    assert {q["kind"] for q in read_jsonl(tmp_path / "p2" / "questions.jsonl")} == {"colour"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "positive integer"),
        ({"n": -3}, "positive integer"),
        ({"n": 2.5}, "positive integer"),
        ({"seed": -1}, "seed"),
        ({"kinds": ["colour", "weight"]}, "unknown question kind"),
        ({"kinds": []}, "unknown question kind"),
        ({"tiny_fraction": 1.5}, "tiny_fraction"),
        ({"mc_fraction": -0.1}, "mc_fraction"),
        ({"min_side": 900, "max_side": 800}, "larger than max_side"),
        ({"max_side": 100}, "max_side"),
        ({"mask_format": "png"}, "mask_format"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    run = {"seed": 0, "n": 5} | {k: v for k, v in kwargs.items() if k in ("seed", "n")}
    with pytest.raises(InputError, match=message):
        knobs = SynthKnobs(**{k: v for k, v in kwargs.items() if k not in run})
        generate(tmp_path / "o", **run, knobs=knobs)
    assert not (tmp_path / "o").exists()


def test_output_folder_rules(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not write"):
        generate(foreign, seed=0, n=5, knobs=SynthKnobs(**SMALL))
    assert (foreign / "notes.txt").read_text() == "mine"
    out = tmp_path / "out"
    generate(out, seed=0, n=30, knobs=SynthKnobs(**SMALL))
    second = generate(
        out, seed=0, n=6, knobs=SynthKnobs(**SMALL)
    )  # an earlier output is replaced, stale images go
    assert len(list((out / "images").iterdir())) == second.n_images


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside pycocotools, with numpy 2
def test_rle_masks_are_exact_for_pycocotools_too(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    out = tmp_path / "rle"
    generate(out, seed=9, n=12, knobs=SynthKnobs(mask_format="rle", **SMALL))
    reference = coco_api.COCO(str(out / "annotations.json"))
    for item in load_coco(out / "annotations.json", out / "images", masks=True):
        anns = reference.loadAnns(reference.getAnnIds(imgIds=[item.image_id]))
        assert anns and all(isinstance(a["segmentation"], dict) for a in anns)
        for a, mask in zip(anns, item.truth.masks):
            assert np.array_equal(reference.annToMask(a).astype(bool), mask)
