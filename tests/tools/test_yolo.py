"""YoloTool on real ultralytics models with random weights (built offline from yolo11n yamls)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import scene
from srice.builtin.tiny_tools import tiny_yolo
from srice.errors import ToolError
from srice.tools import get_tool
from srice.tools.regions import Regions
from srice.tools.vocab import COCO_NAMES
from srice.tools.yolo import YoloTool

LOW = 1e-6  # random weights score ~1e-4 to 1e-5: a low conf lets detections through


@pytest.fixture(scope="module")
def yolo():
    return YoloTool(weights=tiny_yolo(), conf=LOW, max_det=20, imgsz=320)


def test_detects_with_types_shapes_and_coco_labels(yolo):
    image = scene(320, 240)
    regions = yolo(image, [])
    assert isinstance(regions, Regions) and regions.tool == "yolo"
    assert regions.image_size == (320, 240) and regions.masks is None
    assert 0 < len(regions) <= 20
    assert regions.boxes.shape == (len(regions), 4) and regions.boxes.dtype == np.float64
    assert np.all((regions.scores >= LOW) & (regions.scores <= 1))
    assert np.all(regions.boxes[:, [0, 2]] <= 320) and np.all(regions.boxes[:, [1, 3]] <= 240)
    assert np.all(regions.boxes >= 0)
    assert set(regions.labels) <= set(COCO_NAMES)
    assert np.all(np.diff(regions.scores) <= 0)  # best first
    json.dumps(regions.to_json())  # traces are JSON


def test_targets_select_matching_classes(yolo):
    image = scene(320, 240)
    cars = yolo(image, ["the red cars"])
    assert len(cars) > 0 and set(cars.labels) == {"car"}
    assert cars.meta["classes"] == {"the red cars": ["car"]}
    mixed = yolo(image, ["two men", "a vehicle"])
    assert len(mixed) > 0 and set(mixed.labels) <= {"person", "car", "truck", "bus", "motorcycle"}
    nothing = yolo(image, ["unicorn"])
    assert len(nothing) == 0 and nothing.meta["unmatched_targets"] == ["unicorn"]
    assert nothing.image_size == (320, 240)


def assert_same_detections(a: Regions, b: Regions, atol: float = 0.05) -> None:
    """Equal up to float noise; equal scores may come in either order, so match boxes, not positions."""
    assert len(a) == len(b) and a.image_size == b.image_size
    unused = list(range(len(b)))
    for box, score, label in zip(a.boxes, a.scores, a.labels):
        match = [
            j
            for j in unused
            if b.labels[j] == label
            and np.abs(b.boxes[j] - box).max() <= atol
            and abs(b.scores[j] - score) <= 1e-3
        ]
        assert match, f"no counterpart for {label} {box} {score}"
        unused.remove(match[0])


def test_batch_equals_single_calls(yolo):
    images = [scene(320, 240, seed=1), scene(320, 240, seed=2), scene(256, 320, seed=3)]
    targets = [["car"], [], ["person", "dog"]]
    batch = yolo.batch(images, targets)
    for image, t, got in zip(images, targets, batch):
        assert_same_detections(got, yolo(image, t))


def test_torch_threads_are_restored(yolo):
    from ultralytics.utils import NUM_THREADS
    from ultralytics.utils.torch_utils import select_device

    before = torch.get_num_threads()
    chosen = NUM_THREADS + 1  # anything but what ultralytics would set
    try:
        torch.set_num_threads(chosen)
        fresh = YoloTool(weights=tiny_yolo(), conf=LOW)  # load + device selection + predict
        fresh(scene(), ["car"])
        yolo.batch([scene(), scene(seed=4)], [[], ["person"]])
        assert torch.get_num_threads() == chosen
        select_device("cpu", verbose=False)  # what the guard undoes
        assert torch.get_num_threads() == NUM_THREADS
    finally:
        torch.set_num_threads(before)


def test_importing_ultralytics_leaves_the_environment_alone():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = (
        "import os, numpy, torch; from srice.tools.yolo import import_ultralytics\n"
        "t, p = torch.get_num_threads(), numpy.get_printoptions()\n"
        "import_ultralytics()\n"
        "print(os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads() == t)\n"
        "print(numpy.get_printoptions() == p)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "True", "True"]


def test_model_yaml_builds_offline():
    tool = get_tool("yolo", weights="yolo11n.yaml", conf=LOW, max_det=5)
    regions = tool(scene(), [])
    assert 0 < len(regions) <= 5 and set(regions.labels) <= set(tool.class_names.values())


def test_segmentation_model_returns_masks():
    tool = YoloTool(weights=tiny_yolo(segment=True), conf=LOW, max_det=4)
    regions = tool(scene(320, 240), [])
    assert 0 < len(regions) <= 4
    assert regions.masks is not None and regions.masks.shape == (len(regions), 240, 320)
    assert regions.masks.dtype == bool
    empty = tool(scene(), ["unicorn"])
    assert empty.masks is not None and empty.masks.shape == (0, 240, 320)


def test_missing_and_corrupt_weights_give_tool_errors(tmp_path, monkeypatch):
    with pytest.raises(ToolError, match="not found"):
        YoloTool(weights=tmp_path / "nope.pt")(scene(), [])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ToolError, match="cannot load YOLO weights"):
        YoloTool(weights=corrupt)(scene(), [])
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_yolo().read_bytes()[:5000])
    with pytest.raises(ToolError, match="cannot load YOLO weights"):
        YoloTool(weights=truncated)(scene(), [])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ToolError, match="no YOLO weights given"):
        YoloTool()(scene(), [])


def test_open_vocabulary_model_takes_the_phrases_as_classes(monkeypatch):
    """A real YOLOE (from its yaml); only its text encoder, a MobileCLIP download, is stood in for."""
    tool = YoloTool(weights="yoloe-11.yaml", conf=LOW, max_det=5, imgsz=320)
    assert tool.open_vocabulary
    own = tuple(tool.class_names.values())
    encoded: list[list[str]] = []

    def text_embeddings(texts):  # deterministic stand-in with the encoder's output shape
        encoded.append(list(texts))
        g = torch.Generator().manual_seed(len(texts))
        return torch.randn(1, len(texts), 512, generator=g)

    monkeypatch.setattr(tool.model, "get_text_pe", text_embeddings)
    found = tool(scene(), ["red square", "blue circle"])
    assert 0 < len(found) <= 5 and set(found.labels) <= {"red square", "blue circle"}
    assert found.meta["open_vocabulary"] is True
    batch = tool.batch([scene(), scene(seed=2), scene(seed=3)], [["a dog"], ["a sign"], ["a dog"]])
    assert [set(r.labels) for r in batch] == [{"a dog"}, {"a sign"}, {"a dog"}]
    assert encoded.count(["a dog"]) == 1  # one set_classes per distinct phrase list in a batch
    everything = tool(scene(), [])  # back to the model's own vocabulary
    assert set(everything.labels) <= set(own) and encoded[-1] == list(own)


def _iou(box, boxes):
    x1, y1 = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    x2, y2 = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def test_several_predict_sizes_merge_by_class_nms():
    image = scene(320, 240)
    options = {"weights": tiny_yolo(), "conf": LOW, "max_det": 20, "iou": 0.5}
    singles = [YoloTool(**options, imgsz=size)(image, []) for size in (320, 160)]
    both = YoloTool(**options, imgsz=(320, 160))(image, [])
    assert 0 < len(both) <= 20 and np.all(np.diff(both.scores) <= 0)
    # every merged box comes from one of the sizes, and the best box of either size survives
    pool = [(b, s, label) for r in singles for b, s, label in zip(r.boxes, r.scores, r.labels)]
    for box, score, label in zip(both.boxes, both.scores, both.labels):
        assert any(label == lb and np.allclose(box, b) and np.isclose(score, s) for b, s, lb in pool)
    assert np.isclose(both.scores[0], max(r.scores.max() for r in singles))
    # and no two boxes of one class overlap beyond the NMS threshold
    for k, (box, label) in enumerate(zip(both.boxes, both.labels)):
        same = [j for j in range(k + 1, len(both)) if both.labels[j] == label]
        assert np.all(_iou(box, both.boxes[same]) <= 0.5 + 1e-6)
    with pytest.raises(ValueError, match="imgsz"):
        YoloTool(weights=tiny_yolo(), imgsz=())
