"""SamTool: a tiny YOLO's boxes prompt a tiny segment-anything model (both random weights, built here)."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import scene
from srice.builtin.tiny_tools import tiny_owl, tiny_sam, tiny_yolo
from srice.errors import InputError, ToolError
from srice.tools import get_tool
from srice.tools.regions import Regions
from srice.tools.sam import SamTool, load_sam
from srice.tools.yolo import YoloTool


@pytest.fixture(scope="module")
def detector():
    return YoloTool(weights=tiny_yolo(), conf=1e-6, max_det=6, imgsz=320)


def inside(mask: np.ndarray, box: np.ndarray) -> bool:
    x1, y1, x2, y2 = box
    outside = mask.copy()
    outside[math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = False
    return not outside.any()


def test_masks_from_detector_boxes(detector):
    sam = SamTool(detector=detector, checkpoint=tiny_sam())
    image = scene(320, 240)
    regions = sam(image, [])
    dets = detector(image, [])
    assert isinstance(regions, Regions) and regions.tool == "sam" and len(regions) == len(dets) > 0
    assert regions.masks is not None and regions.masks.dtype == bool
    assert regions.masks.shape == (len(regions), 240, 320)
    assert regions.labels == dets.labels
    np.testing.assert_allclose(regions.scores, dets.scores, rtol=1e-4)
    np.testing.assert_allclose(regions.meta["prompt_boxes"], dets.boxes, atol=0.01)
    assert regions.meta["detector"] == "yolo" and len(regions.meta["mask_scores"]) == len(regions)
    for mask, box, prompt in zip(regions.masks, regions.boxes, dets.boxes):
        assert inside(mask, box) and inside(mask, prompt)
        if mask.any():  # tightened: the box is the mask's extent, inside the prompt box
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert box[0] >= math.floor(prompt[0]) and box[2] <= math.ceil(prompt[2])
    assert any(m.any() for m in regions.masks)
    json.dumps(regions.to_json())  # traces are JSON


def test_without_clipping_boxes_still_contain_their_masks(detector):
    loose = SamTool(detector=detector, checkpoint=tiny_sam(), clip_to_box=False)(scene(), [])
    for mask, box in zip(loose.masks, loose.boxes):
        assert inside(mask, box)
    kept = SamTool(detector=detector, checkpoint=tiny_sam(), tighten_boxes=False)(scene(), [])
    np.testing.assert_allclose(kept.boxes, kept.meta["prompt_boxes"], atol=0.01)
    for mask, box in zip(kept.masks, kept.boxes):
        assert inside(mask, box)


def test_multimask_picks_one_mask_per_box(detector):
    regions = SamTool(detector=detector, checkpoint=tiny_sam(), multimask=True)(scene(), [])
    assert regions.masks.shape == (len(regions), 240, 320)


def test_batch_equals_single_calls_and_empty_detections(detector):
    sam = SamTool(detector=detector, checkpoint=tiny_sam(), batch_size=2)
    images = [scene(320, 240, seed=1), scene(200, 260, seed=2), scene(320, 240, seed=3)]
    targets = [[], ["unicorn"], ["person"]]
    batch = sam.batch(images, targets)
    assert len(batch[1]) == 0 and batch[1].masks.shape == (0, 260, 200)
    for image, t, got in zip(images, targets, batch):
        one = sam(image, t)
        assert got.labels == one.labels
        np.testing.assert_allclose(got.boxes, one.boxes, atol=1.0)
        assert got.masks.shape == one.masks.shape and (got.masks != one.masks).sum() <= 0.001 * got.masks.size


def test_detector_by_name_and_open_vocabulary_detector():
    by_name = get_tool(
        "sam",
        detector="owl",
        detector_options={"weights": str(tiny_owl()), "threshold": 0.0, "max_det": 3},
        checkpoint=str(tiny_sam()),
    )
    regions = by_name(scene(), ["a red square"])
    assert len(regions) == 3 and set(regions.labels) == {"a red square"} and regions.meta["detector"] == "owl"
    with pytest.raises(InputError, match="other than sam"):
        SamTool(detector="sam")


def test_loader_restores_the_tiny_architecture():
    model = load_sam(tiny_sam())
    assert model.image_encoder.img_size == 256 and not model.training
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_missing_and_corrupt_checkpoints_give_tool_errors(tmp_path, detector):
    with pytest.raises(ToolError, match="needs checkpoint"):
        SamTool(detector=detector)(scene(), [])
    with pytest.raises(ToolError, match="not found"):
        SamTool(detector=detector, checkpoint=tmp_path / "none.pth")(scene(), [])
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(tiny_sam().read_bytes()[:1000])
    with pytest.raises(ToolError, match="cannot read SAM checkpoint"):
        SamTool(detector=detector, checkpoint=corrupt)(scene(), [])
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ToolError, match="not a SAM checkpoint"):
        SamTool(detector=detector, checkpoint=other)(scene(), [])
    wrong = tmp_path / "wrong.pth"
    blob = torch.load(tiny_sam(), weights_only=True)
    blob["model"] = {k: v for k, v in blob["model"].items() if "mask_decoder" not in k}
    torch.save(blob, wrong)
    with pytest.raises(ToolError, match="does not fit"):
        SamTool(detector=detector, checkpoint=wrong)(scene(), [])


class Counted:
    """The real detector, counting the images it is run on and failing on 200 px wide ones."""

    def __init__(self, tool):
        self.tool, self.name, self.images = tool, tool.name, 0
        self.separate_views, self.reads_text = False, False

    def batch(self, images, targets):
        self.images += len(images)
        if any(i.width == 200 for i in images):
            raise ToolError("no 200 px images")
        return self.tool.batch(images, targets)

    def __call__(self, image, targets):
        return self.batch([image], [targets])[0]


def test_an_agent_with_yolo_and_sam_detects_once_and_sam_segments_yolos_best_boxes(detector):
    """The model is a ``Scripted`` stand-in (no targets, fixed answers): this test is about the tools."""
    from conftest import Scripted
    from srice.agent import Agent, AgentConfig, Item

    counted = Counted(detector)
    shared = SamTool(detector=counted, checkpoint=tiny_sam(), max_prompts=3)
    agent = Agent(Scripted({"direct": {"red": 0.5, "blue": 0.5}, "view": {"red": 0.9, "blue": 0.1}}, "[]"),
                  [counted, shared], config=AgentConfig(top_views=0))  # fmt: skip
    images = [scene(320, 240, seed=1), scene(200, 260, seed=2), scene(320, 240, seed=3)]
    answers = agent.answer_batch([Item(image, "What colour is the circle?") for image in images])
    # one detection for both pathways: the batch, then each image alone once the batch failed
    # (without sharing, sam's own detector would have done the same again: 12)
    assert counted.images == 3 + 3
    bad = answers[1].pathway_trace("sam")
    assert bad.error == "detector yolo failed: ToolError: no 200 px images" and bad.error_kind == "tool"
    for i in (0, 2):
        got = answers[i].pathway_trace("sam").regions
        alone = SamTool(detector=detector, checkpoint=tiny_sam(), max_prompts=3)(images[i], [])
        found = detector(images[i], [])
        assert len(found) > 3 and len(got["boxes"]) == 3  # the detector's 3 best boxes prompted SAM
        best = found.boxes[np.argsort(-found.scores)[:3]]
        np.testing.assert_allclose(got["meta"]["prompt_boxes"], best, atol=0.01)
        np.testing.assert_allclose(got["boxes"], alone.boxes, atol=0.01)
        assert answers[i].pathway_trace("yolo").ok


def test_build_tools_gives_sam_the_yolo_tool_itself_unless_yolo_has_other_weights():
    from srice.builder.toolbox import build_tools

    sam, yolo = build_tools(["sam", "yolo"])
    assert sam.detector is yolo and sam.max_prompts == 20
    [alone] = build_tools(["sam"])  # its own detector, run the same way: the same boxes either way
    assert alone.detector is not yolo
    assert (alone.detector.weights, alone.detector.max_det) == (yolo.weights, yolo.max_det)
    sam, yolo = build_tools(["sam", "yolo"], {"yolo": str(tiny_yolo())})
    assert sam.detector is not yolo
