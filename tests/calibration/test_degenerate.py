"""Degenerate inputs: nothing detected, nothing there, too little data, misuse, empty and border regions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from srice.calibration import (
    BoxMarginCalibrator,
    Example,
    GroundTruth,
    MaskCalibrator,
    SequentialCalibrator,
    ThresholdCalibrator,
    min_n,
    synthetic_examples,
)
from srice.calibration.conformal import conformal_rank
from srice.errors import CalibrationError
from srice.tools.regions import Regions

SIZE = (64, 48)


def box_regions(boxes, scores, size=SIZE, masks=None):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return Regions(boxes, scores, ("cat",) * len(boxes), size, "test", masks)


def truth(boxes, size=SIZE, masks=None):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return GroundTruth(boxes, ("cat",) * len(boxes), size, masks)


def no_detections(n=20):
    return [Example(Regions.empty(SIZE), truth([[5, 5, 20, 20], [30, 10, 50, 40]])) for _ in range(n)]


def no_truth(n=20, per_image=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        xy = rng.uniform(0, 40, (per_image, 2))
        boxes = np.concatenate([xy, xy + 8], axis=1)
        out.append(Example(box_regions(boxes, rng.uniform(0, 1, per_image)), GroundTruth.empty(SIZE)))
    return out


def neither(n=20):
    return [Example(Regions.empty(SIZE), GroundTruth.empty(SIZE)) for _ in range(n)]


ALL = [
    lambda: ThresholdCalibrator(0.1),
    lambda: ThresholdCalibrator(0.1, mode="precision"),
    lambda: BoxMarginCalibrator(0.1),
    lambda: MaskCalibrator(0.1),
    lambda: SequentialCalibrator(ThresholdCalibrator(0.1), BoxMarginCalibrator(0.1)),
]


# --- minimum sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.2, 0.1, 0.07, 0.05, 0.025, 0.01, 1 / 3, 0.15])
def test_min_n_is_the_smallest_size_that_works(alpha):
    split = min_n(alpha, "split")
    assert (
        conformal_rank(split, alpha) <= split and conformal_rank(split - 1, alpha) > split - 1 or split == 1
    )
    crc = min_n(alpha, "crc")
    assert 1 / (crc + 1) <= alpha + 1e-12 and (crc == 1 or 1 / crc > alpha)
    assert split == math.ceil(round(1 / alpha, 9)) - 1 or split == 1


def test_min_n_known_values():
    assert min_n(0.1) == 9 and min_n(0.1, "crc") == 9
    assert min_n(0.025) == 39
    assert min_n(0.3) == 3 and min_n(0.3, "crc") == 3
    with pytest.raises(CalibrationError):
        min_n(0.1, "bogus")


def test_too_few_examples_states_the_minimum():
    few = synthetic_examples(4, seed=1)
    with pytest.raises(CalibrationError, match=r"at least 9 calibration images .* has 4; add calibration"):
        ThresholdCalibrator(0.1).conformalize(few)
    pairs = BoxMarginCalibrator(0.1)
    with pytest.raises(CalibrationError, match=r"at least 9 matched \(prediction, truth\) pairs"):
        pairs.conformalize(few[:2])
    with pytest.raises(CalibrationError, match=r"at least 39 matched"):
        BoxMarginCalibrator(0.1, combine="bonferroni").conformalize(synthetic_examples(10, seed=1))
    with pytest.raises(CalibrationError, match=r"at least 66 predictions \(precision mode\)"):
        ThresholdCalibrator(0.1, mode="precision").conformalize(few)
    with pytest.raises(CalibrationError, match=r"at least 9 matched instances with masks"):
        MaskCalibrator(0.1).conformalize(synthetic_examples(2, seed=1, image_size=SIZE, with_masks=True))
    with pytest.raises(CalibrationError, match=r"at least 18 examples but got 4"):
        SequentialCalibrator(ThresholdCalibrator(0.1), BoxMarginCalibrator(0.1)).conformalize(few)
    with pytest.raises(CalibrationError, match="at least"):
        ThresholdCalibrator(0.1).conformalize([])


def test_single_example():
    ex = Example(box_regions([[5, 5, 20, 20], [30, 10, 50, 40], [0, 0, 3, 3]], [0.9, 0.6, 0.7]),
                 truth([[5, 5, 20, 20], [30, 10, 50, 40]]))  # fmt: skip
    with pytest.raises(CalibrationError, match="at least 9"):
        ThresholdCalibrator(0.1).conformalize([ex])
    # alpha = 0.5 needs one image: (1 * L + 1)/2 <= 0.5 only with L = 0, i.e. both objects found
    c = ThresholdCalibrator(0.5).conformalize([ex])
    assert c.threshold == 0.6 and c.n == 1
    assert len(c.apply(ex.pred)) == 3  # 0.7 (a false positive) is above 0.6 too
    assert c.evaluate([ex])["coverage"] == 1.0


# --- nothing detected, nothing there ---------------------------------------------------------------


def test_no_detections_at_all():
    data = no_detections()
    with pytest.warns(UserWarning, match="not attainable"):
        c = ThresholdCalibrator(0.1).conformalize(data)
    assert c.params["attainable"] is False and c.threshold == -math.inf
    assert c.params["calibration_risk"] == 1.0
    # it keeps everything a tool returns, and says so in the record
    regions = box_regions([[1, 1, 5, 5]], [0.01])
    out = c.apply(regions)
    assert len(out) == 1 and out.meta["calibration"]["params"]["attainable"] is False
    assert c.evaluate(data)["coverage"] == 0.0
    for make in ALL[1:4]:
        with pytest.raises(CalibrationError, match="has 0; add calibration images"):
            make().conformalize(data)


def test_no_ground_truth_at_all():
    data = no_truth()
    with pytest.warns(UserWarning, match="no true object"):
        c = ThresholdCalibrator(0.1).conformalize(data)
    assert c.threshold == math.inf and c.params["attainable"] is True
    out = c.apply(data[0].pred)
    assert len(out) == 0 and out.boxes.shape == (0, 4)
    assert c.evaluate(data)["coverage"] == 1.0 and c.evaluate(data)["object_recall"] is None
    with pytest.warns(UserWarning, match="no threshold certifies precision"):
        p = ThresholdCalibrator(0.1, mode="precision").conformalize(data)
    assert p.threshold == math.inf and p.params["attainable"] is False
    assert p.evaluate(data)["coverage"] is None and p.evaluate(data)["n_kept"] == 0
    for make in ALL[2:4]:
        with pytest.raises(CalibrationError, match="has 0"):
            make().conformalize(data)


def test_images_with_neither():
    data = neither()
    with pytest.warns(UserWarning, match="no true object"):
        c = ThresholdCalibrator(0.1).conformalize(data)
    assert c.threshold == math.inf
    assert c.evaluate(data)["coverage"] == 1.0 and c.evaluate(data)["n_predictions"] == 0


def test_unattainable_masks_warn_and_dilate_to_the_diagonal():
    ex = synthetic_examples(30, seed=4, image_size=SIZE, size_range=(10, 30), with_masks=True)
    empty = [Example(e.pred.replace(masks=np.zeros_like(e.pred.masks)), e.truth) for e in ex]
    with pytest.warns(UserWarning, match="not attainable"):
        c = MaskCalibrator(0.1).conformalize(empty)
    assert c.params["attainable"] is False and c.radius == math.ceil(math.hypot(*SIZE))


def test_mask_calibrator_needs_masks():
    ex = synthetic_examples(20, seed=4)
    with pytest.raises(CalibrationError, match="needs masks on predictions and ground truth"):
        MaskCalibrator(0.1).conformalize(ex)
    ok = MaskCalibrator(0.1).conformalize(synthetic_examples(20, seed=4, image_size=SIZE, with_masks=True))
    with pytest.raises(CalibrationError, match="needs regions with masks"):
        ok.apply(box_regions([[1, 1, 5, 5]], [0.5]))


# --- misuse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL)
def test_apply_before_conformalize_says_what_to_call(make):
    c = make()
    for verb in (lambda: c.apply(Regions.empty(SIZE)), lambda: c.evaluate([]), lambda: c.save("/tmp/x.json")):
        with pytest.raises(
            CalibrationError, match=r"conformalize\(examples\) first or load one with .*load\(path\)"
        ):
            verb()


def test_bad_settings_and_inputs():
    for bad in (0, 1, 1.5, -0.1, "x", None):
        with pytest.raises(CalibrationError, match="alpha must be"):
            ThresholdCalibrator(bad)
    with pytest.raises(CalibrationError, match="mode must be one of recall, precision"):
        ThresholdCalibrator(0.1, mode="f1")
    with pytest.raises(CalibrationError, match="delta must be"):
        ThresholdCalibrator(0.1, delta=0)
    with pytest.raises(CalibrationError, match="kind must be one of"):
        BoxMarginCalibrator(0.1, kind="log")
    with pytest.raises(CalibrationError, match="combine must be one of"):
        BoxMarginCalibrator(0.1, combine="mean")
    with pytest.raises(CalibrationError, match="iou must be"):
        MaskCalibrator(0.1, iou=0)
    with pytest.raises(CalibrationError, match="item 1 is str"):
        ThresholdCalibrator(0.1).conformalize([no_truth(1)[0], "image.png"])
    with pytest.raises(CalibrationError, match="ThresholdCalibrator and a BoxMarginCalibrator"):
        SequentialCalibrator(BoxMarginCalibrator(), ThresholdCalibrator())
    scaled = [Example(e.pred.replace(scores=e.pred.scores * 10), e.truth) for e in synthetic_examples(60)]
    with pytest.raises(CalibrationError, match=r"scores in \[0, 1\]; use mode='recall'"):
        ThresholdCalibrator(0.1, mode="precision").conformalize(scaled)


# --- empty regions and borders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    boxes = synthetic_examples(120, seed=11)
    masks = synthetic_examples(60, seed=12, image_size=SIZE, size_range=(10, 30), with_masks=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "recall": ThresholdCalibrator(0.1).conformalize(boxes),
            "precision": ThresholdCalibrator(0.2, mode="precision").conformalize(boxes),
            "additive": BoxMarginCalibrator(0.1).conformalize(boxes),
            "multiplicative": BoxMarginCalibrator(0.1, kind="multiplicative").conformalize(boxes),
            "bonferroni": BoxMarginCalibrator(0.1, combine="bonferroni").conformalize(boxes),
            "masks": MaskCalibrator(0.1).conformalize(masks),
            "sequential": SequentialCalibrator(
                ThresholdCalibrator(0.1), BoxMarginCalibrator(0.1)
            ).conformalize(boxes),
        }


@pytest.mark.parametrize(
    "name", ["recall", "precision", "additive", "multiplicative", "bonferroni", "masks", "sequential"]
)
@pytest.mark.parametrize("with_masks", [False, True])
def test_empty_regions_stay_empty_with_the_right_shapes(fitted, name, with_masks):
    c = fitted[name]
    empty = Regions.empty(SIZE, tool="yolo", with_masks=with_masks)
    out = c.apply(empty)
    assert len(out) == 0 and out.boxes.shape == (0, 4) and out.scores.shape == (0,) and out.labels == ()
    assert out.image_size == SIZE and out.tool == "yolo"
    assert (out.masks is None) == (not with_masks)
    if with_masks:
        assert out.masks.shape == (0, SIZE[1], SIZE[0])
    assert out.meta["calibration"]["method"] == c.method


def test_margins_clamp_at_the_image_border(fitted):
    c = fitted["additive"]
    q = c.margins[0]
    assert q > 1
    w, h = SIZE
    regions = box_regions([[0, 0, 10, 10], [w - 10, h - 10, w, h], [-5, 20, 30, h + 7], [20, 20, 30, 30]],
                          [0.9, 0.8, 0.7, 0.6])  # fmt: skip
    out = c.apply(regions)
    np.testing.assert_allclose(out.boxes[0], [0, 0, 10 + q, 10 + q])
    np.testing.assert_allclose(out.boxes[1], [w - 10 - q, h - 10 - q, w, h])
    np.testing.assert_allclose(out.boxes[2], [0, 20 - q, 30 + q, h])  # clamped first, then widened
    np.testing.assert_allclose(out.boxes[3], [20 - q, 20 - q, 30 + q, 30 + q])
    assert np.all(out.boxes >= 0) and np.all(out.boxes[:, [0, 2]] <= w) and np.all(out.boxes[:, [1, 3]] <= h)
    np.testing.assert_array_equal(out.scores, regions.scores)
    m = fitted["multiplicative"]
    out = m.apply(box_regions([[10, 10, 30, 20]], [0.5]))
    f = m.margins[0]
    np.testing.assert_allclose(out.boxes[0], [10 - 20 * f, 10 - 10 * f, 30 + 20 * f, 20 + 10 * f])


def test_margins_never_shrink():
    # predicted boxes systematically 3 px too large on every side: the raw quantile is negative
    rng = np.random.default_rng(0)
    data = []
    for _ in range(30):
        xy = rng.uniform(5, 12, 2)
        t = np.concatenate([xy, xy + 30])
        data.append(Example(box_regions(t + [-3, -3, 3, 3] + rng.normal(0, 0.3, 4), [0.9]), truth(t)))
    c = BoxMarginCalibrator(0.1).conformalize(data)
    assert max(c.params["quantiles"]) < 0 and c.params["margins"] == [0.0] * 4
    regions = box_regions([[10, 10, 40, 40]], [0.5])
    np.testing.assert_allclose(c.apply(regions).boxes, regions.boxes)
    assert c.evaluate(data)["coverage"] == 1.0


def test_masks_dilate_within_the_image_and_boxes_follow(fitted):
    c = fitted["masks"]
    r = c.radius
    assert r >= 1
    w, h = SIZE
    masks = np.zeros((2, h, w), dtype=bool)
    masks[0, 0:3, 0:4] = True  # touching the top-left corner
    masks[1, 20:24, 30:34] = True
    regions = box_regions([[0, 0, 4, 3], [29, 19, 35, 25]], [0.9, 0.8], masks=masks)
    out = c.apply(regions)
    assert out.masks.shape == masks.shape and np.all(out.masks[masks])  # dilation only grows
    assert out.masks[0, 0, 4 + r - 1] and not out.masks[0, 0, 4 + r]  # a disk of radius r along the row
    np.testing.assert_allclose(out.boxes[0], [0, 0, 4 + r, 3 + r])
    np.testing.assert_allclose(out.boxes[1], [min(29, 30 - r), min(19, 20 - r), 34 + r, 24 + r])
    for box, mask in zip(out.boxes, out.masks):
        ys, xs = np.nonzero(mask)
        assert box[0] <= xs.min() and box[1] <= ys.min() and box[2] >= xs.max() + 1 and box[3] >= ys.max() + 1


def test_threshold_apply_keeps_masks_labels_and_meta_aligned(fitted):
    c = fitted["recall"]
    t = c.threshold
    masks = np.zeros((3, SIZE[1], SIZE[0]), dtype=bool)
    for i in range(3):
        masks[i, i, i] = True
    regions = Regions(np.zeros((3, 4)), [t - 0.01, t, t + 0.01], ("a", "b", "c"), SIZE, "seg", masks,
                      {"timing": 1.5})  # fmt: skip
    out = c.apply(regions)
    assert out.labels == ("b", "c") and out.masks[0, 1, 1] and out.masks[1, 2, 2]
    assert out.meta["timing"] == 1.5 and out.meta["calibration"]["params"]["threshold"] == t
    assert "calibration" not in regions.meta  # the input is untouched
