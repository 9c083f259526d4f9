"""The matching rule every calibrator measures with: IoU, greedy by score, labels, one-to-one."""

from __future__ import annotations

import numpy as np
import pytest

from srice.calibration import Example, GroundTruth, box_iou, match
from srice.errors import CalibrationError
from srice.tools.regions import Regions

SIZE = (100, 80)


def regions(boxes, scores, labels=None, size=SIZE):
    labels = labels or ["cat"] * len(scores)
    return Regions(np.array(boxes, dtype=float).reshape(-1, 4), scores, tuple(labels), size, "test")


def truth(boxes, labels=None, size=SIZE):
    labels = labels or ["cat"] * len(boxes)
    return GroundTruth(np.array(boxes, dtype=float).reshape(-1, 4), tuple(labels), size)


def test_box_iou_known_values_and_degenerate_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [5, 5, 5, 5]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (3, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.0])
    assert iou[2, 3] == 0.0 and np.isfinite(iou).all()  # two zero-area boxes: 0, not NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_box_iou_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (30, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 30, (30, 2))], axis=1)
    xy = rng.uniform(0, 50, (20, 2))
    b = np.concatenate([xy, xy + rng.uniform(0, 30, (20, 2))], axis=1)
    iou = box_iou(a, b)
    for i in range(len(a)):
        for j in range(len(b)):
            w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
            assert iou[i, j] == pytest.approx(w * h / (area(a[i]) + area(b[j]) - w * h))


def test_greedy_by_score_takes_the_best_overlap_and_leaves_duplicates_unmatched():
    t = truth([[10, 10, 30, 30], [50, 10, 70, 30]])
    # prediction 1 (highest score) overlaps truth 0 best; prediction 0 is a duplicate of truth 0;
    # prediction 2 overlaps nothing.
    p = regions([[11, 11, 31, 31], [10, 10, 30, 30], [80, 60, 90, 70]], [0.5, 0.9, 0.8])
    m = match(p, t)
    assert m.pairs.tolist() == [[1, 0]]
    assert m.unmatched_pred.tolist() == [0, 2]
    assert m.unmatched_truth.tolist() == [1]
    assert m.true_positive(3).tolist() == [False, True, False]
    np.testing.assert_allclose(m.ious, [1.0])


def test_matching_is_greedy_by_score_not_an_optimal_assignment():
    t = truth([[0, 0, 20, 20], [15, 0, 35, 20]])
    # the high-scored box overlaps truth 1 (IoU 0.48) better than truth 0 (0.43) and takes it, although
    # the low-scored box is exactly truth 1: greedy matching leaves truth 0 and the second box unmatched.
    p = regions([[8, 0, 28, 20], [15, 0, 35, 20]], [0.9, 0.3])
    m = match(p, t, iou=0.3)
    assert m.pairs.tolist() == [[0, 1]]
    assert m.unmatched_pred.tolist() == [1]
    assert m.unmatched_truth.tolist() == [0]


def test_iou_threshold_and_labels_case_insensitive():
    t = truth([[0, 0, 10, 10]], ["Dog"])
    p = regions([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], ["cat", " dog"])
    assert match(p, t).pairs.tolist() == [[1, 0]]
    assert match(p, t, use_labels=False).pairs.tolist() == [[0, 0]]
    half = regions([[5, 0, 15, 10]], [0.9], ["dog"])  # IoU 1/3
    assert len(match(half, t, iou=0.5)) == 0
    assert len(match(half, t, iou=0.3)) == 1


def test_matching_of_kept_predictions_is_the_restriction_of_the_full_matching():
    """The threshold calibrator relies on this: thresholding never changes who matched whom above it."""
    from srice.calibration import synthetic_examples

    for ex in synthetic_examples(200, seed=3):
        full = match(ex.pred, ex.truth)
        for t in np.unique(ex.pred.scores)[::2]:
            keep = np.flatnonzero(ex.pred.scores >= t)
            sub = match(ex.pred.select(keep), ex.truth)
            expected = {(int(p), int(g)) for p, g in full.pairs if ex.pred.scores[p] >= t}
            assert {(int(keep[p]), int(g)) for p, g in sub.pairs} == expected


def test_empty_sides():
    m = match(Regions.empty(SIZE), truth([[0, 0, 5, 5]]))
    assert m.pairs.shape == (0, 2) and m.unmatched_truth.tolist() == [0]
    m = match(regions([[0, 0, 5, 5]], [0.5]), GroundTruth.empty(SIZE))
    assert m.unmatched_pred.tolist() == [0] and len(m) == 0


def test_ground_truth_and_example_validation():
    with pytest.raises(ValueError):
        GroundTruth(np.array([[10, 0, 5, 5]]), ("a",), SIZE)
    with pytest.raises(ValueError):
        GroundTruth(np.array([[0, 0, 5, 5]]), (), SIZE)
    with pytest.raises(ValueError):
        GroundTruth(np.array([[0, 0, 5, 5]]), ("a",), SIZE, masks=np.zeros((1, 5, 5), bool))
    with pytest.raises(CalibrationError, match="image size"):
        Example(regions([[0, 0, 5, 5]], [0.5]), GroundTruth.empty((50, 50)))
    with pytest.raises(CalibrationError, match="Example"):
        Example("not regions", GroundTruth.empty(SIZE))
    assert len(GroundTruth.empty(SIZE, with_masks=True).masks) == 0
