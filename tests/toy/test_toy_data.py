"""Training examples for the toy MLLM and the detector's tiles: what they teach must be true of the scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srice.agent import prompts
from srice.agent.targets import parse_targets
from srice.synth import SynthKnobs, make_image
from srice.synth.scene import SHAPES
from srice.toy.data import detector_boxes, examples_for_image, targets_of
from srice.toy.train_mllm import Encoder, TrainConfig, learning_rate
from srice.toy.train_yolo import _labels

KNOBS = SynthKnobs(kinds=("colour", "exists", "colour_mc"))


def _images(count=12):
    return [make_image(41, i, KNOBS) for i in range(count)]


def _by_id(scene):
    return {o.id: o for o in scene.objects}


def test_every_question_gives_direct_crop_and_region_examples_in_the_agents_words():
    for scene, image, records in _images(4):
        examples = examples_for_image(scene, image, records, np.random.default_rng(0), region_share=1.0)
        assert [e.role for e in examples] == ["direct", "crop", "region"] * len(records)
        for direct, crop, region in zip(examples[::3], examples[1::3], examples[2::3]):
            r = direct.record
            text = prompts.question_text(r["question"], r["options"])
            assert direct.content == (image, text, prompts.answer_instruction(r["options"]))
            assert crop.content[:3] == (image, text, prompts.CROP_INTRO)
            assert crop.content[-1] == prompts.answer_instruction(r["options"])
            # an OCR pathway's view quotes what it read, between the crop and the instruction
            assert len(crop.content) == 5 or crop.content[4].startswith(prompts.TEXT_INTRO)
            assert max(crop.content[3].size) == 448  # the agent's crop size
            assert direct.answer == crop.answer == r["answer"]
            assert region.content == (image, text, prompts.REGION_INSTRUCTION)
            # the agent's own parser reads back exactly the phrases taught
            assert parse_targets(region.answer) == [t.lower() for t in json.loads(region.answer)]


def test_region_share_thins_out_only_region_examples():
    scene, image, records = make_image(41, 0, KNOBS)
    few = examples_for_image(scene, image, records * 20, np.random.default_rng(0), region_share=0.3)
    roles = [e.role for e in few]
    assert roles.count("direct") == roles.count("crop") == 20 * len(records)
    assert 0.1 * roles.count("direct") < roles.count("region") < 0.5 * roles.count("direct")


def test_targets_name_the_object_the_question_is_about():
    seen = set()
    for _, _, records in _images():
        for r in records:
            targets = targets_of(r)
            seen.add(r["kind"])
            if r["kind"] == "exists":  # "Is there a red star?" -> ["star"]
                assert targets == [r["question"].rstrip("?").split()[-1]]
            else:  # "What colour is the small star?" -> ["star"]
                assert targets == [p.split()[-1] for p in r["meta"]["refers"]] and targets
            assert set(targets) <= set(SHAPES)
    assert seen == {"colour", "exists", "colour_mc"}


@pytest.mark.parametrize(
    ("kind", "question", "refers", "expected"),
    [
        ("count", "How many stars are there?", [], ["star"]),
        ("count", "How many red circles are there?", [], ["circle"]),
        ("count", "How many red objects are there?", [], []),
        ("leftright", "Is the red star left or right of the blue circle?", ["red star", "blue circle"],
         ["star", "circle"]),
        ("leftright", "Is the red star left or right of the blue star?", ["red star", "blue star"],
         ["star"]),
        ("shape_mc", "What shape is the red object?", ["red object"], []),
        ("text", "What is written on the red square?", ["red square"], ["square"]),
    ],
)  # fmt: skip
def test_targets_of_every_kind_are_the_shapes_the_question_names(kind, question, refers, expected):
    record = {"kind": kind, "question": question, "meta": {"refers": refers}}
    assert targets_of(record) == expected


def test_text_questions_get_the_ocr_pathways_view_quoting_the_targets_text():
    knobs = SynthKnobs(kinds=("text", "text_mc"))
    quoted = 0
    for index in range(8):
        scene, image, records = make_image(43, index, knobs)
        objects = _by_id(scene)
        rng = np.random.default_rng(index)
        always = examples_for_image(scene, image, records, rng, miss=0.0, quote=1.0, roles=("crop",))
        never = examples_for_image(scene, image, records, rng, miss=0.0, quote=0.0, roles=("crop",))
        for e, plain in zip(always, never):
            text = objects[e.record["meta"]["target_ids"][0]].text
            assert e.content[4] == prompts.text_read([text])  # the agent's own wording
            instruction = prompts.answer_instruction(e.record["options"])
            assert len(plain.content) == 5 and plain.content[4] == instruction
            quoted += 1
    assert quoted >= 8


def _covers(boxes, box):
    """Some box holds the middle 40% of ``box`` on both axes."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return any(
        b[0] <= x1 + 0.3 * w and b[2] >= x2 - 0.3 * w and b[1] <= y1 + 0.3 * h and b[3] >= y2 - 0.3 * h
        for b in boxes
    )


def test_a_detector_that_never_misses_returns_every_object_of_the_target_shape():
    for scene, _, records in _images():
        objects = _by_id(scene)
        for r in records:
            if r["kind"] == "exists":
                continue
            boxes = detector_boxes(scene, r, np.random.default_rng(1), miss=0.0)
            [target] = r["meta"]["target_ids"]
            shape = objects[target].shape
            same_shape = [o for o in scene.objects if o.shape == shape]
            assert len(boxes) == len(same_shape)
            assert all(_covers(boxes, o.box) for o in same_shape)


def test_a_detector_that_always_misses_never_returns_the_target():
    for scene, _, records in _images():
        objects = _by_id(scene)
        for r in records:
            target = objects[r["meta"]["target_ids"][0]]
            boxes = detector_boxes(scene, r, np.random.default_rng(2), miss=1.0)
            assert len(boxes) <= 1
            assert not _covers(boxes, target.box) or len(boxes) == 0


def test_encoder_labels_only_the_answer_and_the_end_token(tiny_model):
    from transformers import AutoProcessor

    encoder = Encoder(AutoProcessor.from_pretrained(tiny_model))
    scene, image, records = make_image(41, 3, KNOBS)
    examples = examples_for_image(scene, image, records, np.random.default_rng(0), region_share=1.0)
    encoded = [encoder.encode(e) for e in examples[:3]]
    image_pad = encoder.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for e, x in zip(examples, encoded):
        kept = x["labels"][x["labels"] != -100]
        assert encoder.tokenizer.decode(kept) == e.answer + "<|im_end|>"
        assert (x["mm_token_type_ids"] > 0).sum() == (x["input_ids"] == image_pad).sum() > 0
    batch = encoder.collate(encoded)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"].sum() == sum(len(x["input_ids"]) for x in encoded)
    assert len(batch["image_grid_thw"]) == 1 + 2 + 1  # direct, crop (two images), region


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    config = TrainConfig(steps=1000, warmup=100, lr=1e-3)
    rates = [learning_rate(s, 1000, config) for s in range(1000)]
    assert rates[0] == pytest.approx(1e-5) and rates[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[100:], rates[101:]))
    assert rates[-1] == pytest.approx(1e-4, rel=1e-2)


def test_tile_labels_keep_objects_that_mostly_show():
    boxes = np.array([[110, 120, 130, 140], [-10, 0, 10, 20], [95, 0, 105, 10], [500, 500, 520, 520]], float)
    lines = _labels(boxes, [0, 1, 2, 3], 100, 0, 384, 0.6)
    # inside: kept exactly; half cut by the left edge of a tile at x=100: 50% < 60% dropped
    assert lines[0] == f"0 {20 / 384:.6f} {130 / 384:.6f} {20 / 384:.6f} {20 / 384:.6f}\n"
    assert len(lines) == 1
    # the same half-visible object is kept when half is enough
    assert len(_labels(boxes, [0, 1, 2, 3], 100, 0, 384, 0.5)) == 2


def test_token_labels_mark_visible_objects_and_leave_full_view_specks_as_background():
    from srice.toy.vision import ATTRIBUTES, token_labels

    scene, image, _ = next(
        s
        for s in _images()
        if any(o.size == "large" for o in s[0].objects) and any(o.size == "tiny" for o in s[0].objects)
    )
    grid = (7, 7)
    full = token_labels(scene, (0, 0, image.width, image.height), grid)
    colours = {ATTRIBUTES["colour"][v] for v in full[0] if v}
    assert colours and colours <= {o.colour for o in scene.objects if o.size != "tiny"}
    tiny = next(o for o in scene.objects if o.size == "tiny")
    x1, y1, x2, y2 = tiny.box  # the same speck, zoomed: a 64 px window around it
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    zoom = token_labels(scene, (cx - 32, cy - 32, cx + 32, cy + 32), grid)
    assert ATTRIBUTES["colour"].index(tiny.colour) in zoom[0].tolist()
    assert ATTRIBUTES["shape"].index(tiny.shape) in zoom[1].tolist()
