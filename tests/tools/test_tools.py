"""The tool registry, the shared input checks, target matching and the zoom tool (no model)."""

import numpy as np
import pytest
from PIL import Image

from conftest import scene
from srice.errors import InputError, SriceError
from srice.tools import TOOLS, Regions, Tool, get_tool, tool_class
from srice.tools.base import normalise_targets
from srice.tools.vocab import COCO_NAMES, match_targets, singular
from srice.tools.zoom import ZoomTool


def test_unknown_tool_lists_the_valid_ones():
    with pytest.raises(InputError) as e:
        get_tool("detectron")
    message = str(e.value)
    assert "detectron" in message
    for name in TOOLS:
        assert name in message
    assert isinstance(e.value, SriceError)


def test_every_registered_tool_imports_and_is_named_after_its_key():
    for name in TOOLS:
        cls = tool_class(name)
        assert cls.name == name


def test_get_tool_builds_with_options_and_rejects_unknown_ones():
    tool = get_tool("zoom", grid=3)
    assert isinstance(tool, Tool) and tool.name == "zoom" and tool.rows == tool.cols == 3
    with pytest.raises(InputError, match="bad options for tool 'zoom'"):
        get_tool("zoom", gird=3)
    with pytest.raises(TypeError):
        ZoomTool(3)  # constructors take keyword arguments only


def test_targets_are_normalised():
    assert normalise_targets(["  red  car ", "", "red car", "dog"]) == ("red car", "dog")
    assert normalise_targets("a sign") == ("a sign",)
    assert normalise_targets(None) == ()
    with pytest.raises(InputError, match="strings"):
        normalise_targets(["car", 3])


def test_batch_checks_its_inputs():
    tool = ZoomTool()
    with pytest.raises(InputError, match="one target list per image"):
        tool.batch([scene(), scene()], [["a"]])
    with pytest.raises(InputError, match="PIL images"):
        tool(np.zeros((10, 10, 3), np.uint8), [])
    assert tool.batch([], []) == []
    grey = Image.new("L", (40, 20), 128)  # odd modes are converted, not rejected
    assert tool(grey, []).image_size == (40, 20)


def test_singular_and_matching_rules():
    assert [singular(w) for w in ("cars", "buses", "people", "men", "knives", "glasses", "skis", "bus")] == [
        "car",
        "bus",
        "people",
        "man",
        "knife",
        "glass",
        "ski",
        "bus",
    ]
    names = list(COCO_NAMES)
    m = match_targets(
        [
            "the two Men on the left",
            "a red vehicle",
            "TV",
            "hot dogs",
            "unicorn",
            "Cell-phones",
            "teddy bear",
        ],
        names,
    )
    idx = {n: i for i, n in enumerate(names)}
    assert m.classes["the two Men on the left"] == (idx["person"],)
    assert set(m.classes["a red vehicle"]) == {idx["car"], idx["truck"], idx["bus"], idx["motorcycle"]}
    assert m.classes["TV"] == (idx["tv"],)
    assert m.classes["hot dogs"] == (idx["hot dog"],)  # not "dog"
    assert m.classes["Cell-phones"] == (idx["cell phone"],)
    assert m.classes["teddy bear"] == (idx["teddy bear"],)  # not "bear"
    assert m.unmatched == ("unicorn",)
    assert set(m.class_ids) >= {idx["person"], idx["car"], idx["tv"]}
    assert match_targets(["snowman", "woman"], names).classes == {"snowman": (), "woman": (idx["person"],)}
    # numeric class names (a model built from a yaml) match only literally
    assert match_targets(["0", "person"], {0: "0", 1: "1"}).classes == {"0": (0,), "person": ()}


def test_zoom_quadrants_exact():
    regions = ZoomTool(grid=2)(Image.new("RGB", (320, 240)), ["anything"])
    assert isinstance(regions, Regions) and regions.tool == "zoom"
    np.testing.assert_array_equal(
        regions.boxes, [[0, 0, 160, 120], [160, 0, 320, 120], [0, 120, 160, 240], [160, 120, 320, 240]]
    )
    assert regions.labels == ("cell 0,0", "cell 0,1", "cell 1,0", "cell 1,1")
    np.testing.assert_array_equal(regions.scores, np.ones(4))
    assert regions.masks is None and regions.image_size == (320, 240)


def test_zoom_rectangular_grid_with_centre_tiles_exactly():
    regions = ZoomTool(grid=(2, 3), centre=True)(Image.new("RGB", (301, 200)), [])
    assert len(regions) == 7 and regions.labels[-1] == "centre" and regions.labels[5] == "cell 1,2"
    cells = regions.boxes[:6]
    assert cells[:, 2].max() == 301 and cells[:, 3].max() == 200
    np.testing.assert_allclose(cells[1], [301 / 3, 0, 2 * 301 / 3, 100])
    area = ((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])).sum()
    assert area == pytest.approx(301 * 200)  # no gap, no overlap
    np.testing.assert_allclose(regions.boxes[6], [(301 - 301 / 3) / 2, 50, (301 + 301 / 3) / 2, 150])
    with pytest.raises(ValueError):
        ZoomTool(grid=0)


def test_zoom_batch_equals_single_calls():
    tool = ZoomTool(grid=3)
    images = [scene(320, 240), scene(200, 300, seed=1)]
    batch = tool.batch(images, [["a"], []])
    for image, got in zip(images, batch):
        one = tool(image, [])
        np.testing.assert_array_equal(got.boxes, one.boxes)
        assert got.labels == one.labels and got.image_size == image.size


def test_an_image_given_twice_with_the_same_targets_runs_once():
    """Several questions on one image (the same object) cost the tool one run, not one per question."""
    from srice.tools.base import BaseTool

    class Counted(BaseTool):
        name = "counted"

        def __init__(self):
            self.seen = []

        def _run(self, images, targets):
            self.seen.append(list(zip(images, targets)))
            return [Regions.empty(i.size, self.name) for i in images]

    one, other = scene(seed=1), scene(seed=2)
    tool = Counted()
    out = tool.batch([one, one, other, one], [["circle"], ["circle"], ["circle"], ["square"]])
    assert tool.seen == [[(one, ("circle",)), (other, ("circle",)), (one, ("square",))]]
    assert out[0] is out[1] and out[2] is not out[0] and out[3] is not out[0] and len(out) == 4
