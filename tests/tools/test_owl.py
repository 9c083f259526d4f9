"""OwlTool on a tiny OWLv2 (random weights, a CLIP tokenizer trained here), built offline."""

import json

import numpy as np
import pytest

from conftest import scene
from srice.builtin.tiny_tools import tiny_owl
from srice.errors import ToolError
from srice.tools import get_tool
from srice.tools.owl import OwlTool
from srice.tools.regions import Regions


@pytest.fixture(scope="module")
def owl():
    return OwlTool(weights=tiny_owl(), threshold=0.0, max_det=30)


def test_text_queries_label_every_box(owl):
    targets = ["a red square", "person"]
    regions = owl(scene(320, 240), targets)
    assert isinstance(regions, Regions) and regions.tool == "owl" and regions.image_size == (320, 240)
    assert 0 < len(regions) <= 30
    assert regions.boxes.shape == (len(regions), 4) and regions.scores.shape == (len(regions),)
    assert len(regions.labels) == len(regions) and set(regions.labels) <= set(targets)
    assert np.all((regions.scores > 0) & (regions.scores < 1))
    assert np.all(np.diff(regions.scores) <= 0)
    assert np.all(regions.boxes >= 0)
    assert np.all(regions.boxes[:, [0, 2]] <= 320) and np.all(regions.boxes[:, [1, 3]] <= 240)
    assert np.all(regions.boxes[:, 2] > regions.boxes[:, 0])  # boxes in the square padding are dropped
    json.dumps(regions.to_json())  # traces are JSON
    single = owl(scene(320, 240), ["person"])
    assert set(single.labels) == {"person"}


def test_score_is_the_best_query_sigmoid(owl):
    """One score per box: the sigmoid of its best query's logit (transformers' post-processing)."""
    import torch

    processor, model = owl._load()
    image, targets = scene(200, 200, seed=2), ["a red square", "person", "dog"]
    inputs = processor(text=[targets], images=[image], return_tensors="pt", truncation=True)
    with torch.inference_mode():
        logits = model(**inputs).logits[0]
    best = torch.sigmoid(logits.max(dim=-1).values).numpy()
    regions = OwlTool(weights=tiny_owl(), threshold=0.0, nms_iou=1.0, max_det=1000)(image, targets)
    assert len(regions) == len(best)  # square image: nothing in padding; NMS off
    np.testing.assert_allclose(np.sort(regions.scores), np.sort(best), rtol=1e-5)


def test_empty_targets_use_objectness(owl):
    regions = owl(scene(), [])
    assert len(regions) > 0 and set(regions.labels) == {"object"}
    assert regions.meta["targets"] == []


def test_threshold_and_max_det():
    strict = OwlTool(weights=tiny_owl(), threshold=0.999)(scene(), ["person"])
    assert len(strict) == 0 and strict.image_size == (320, 240)
    capped = OwlTool(weights=tiny_owl(), threshold=0.0, max_det=3)(scene(), ["person"])
    assert len(capped) == 3


def test_batch_with_different_query_lists_equals_single_calls(owl):
    images = [scene(320, 240, seed=1), scene(200, 300, seed=2), scene(256, 256, seed=3)]
    targets = [["person", "car", "dog"], [], ["a sign"]]
    batch = OwlTool(weights=tiny_owl(), threshold=0.0, max_det=30, batch_size=3).batch(images, targets)
    for image, t, got in zip(images, targets, batch):
        one = owl(image, t)
        assert got.labels == one.labels and got.image_size == image.size
        np.testing.assert_allclose(got.boxes, one.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, one.scores, atol=1e-5)


def test_registry_and_bad_weights(tmp_path):
    assert isinstance(get_tool("owl", weights=str(tiny_owl())), OwlTool)
    with pytest.raises(ToolError, match="not found"):
        OwlTool(weights=tmp_path / "missing")(scene(), ["a"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ToolError, match="cannot load OWLv2 weights"):
        OwlTool(weights=broken)(scene(), ["a"])
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(ToolError, match="model folder"):
        OwlTool(weights=a_file)(scene(), ["a"])
