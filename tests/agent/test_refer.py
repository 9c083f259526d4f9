"""Which detected region a target phrase means (srice.agent.refer), on hand-made regions."""

import numpy as np
import pytest

from srice.agent.refer import referring_phrases, size_word, view_order
from srice.tools.regions import Regions


def regions(boxes, scores, labels):
    return Regions(np.array(boxes, float), np.array(scores, float), tuple(labels), (400, 400), "yolo")


# three squares (small, large, medium) and a faint, even smaller one; one circle
SCENE = regions(
    [[0, 0, 10, 10], [100, 100, 300, 300], [50, 50, 90, 90], [20, 20, 24, 24], [300, 0, 340, 40]],
    [0.5, 0.6, 0.9, 0.05, 0.95],
    ["square", "square", "square", "square", "circle"],
)


@pytest.mark.parametrize(
    "phrase, expected",
    [
        ("the small square", -1),
        ("tiny squares", -1),
        ("the smallest one", -1),
        ("a big square", 1),
        ("the largest circle", 1),
        ("striped square", 0),
        ("small and large", 0),  # contradicts itself: no preference
        ("", 0),
    ],
)
def test_size_words(phrase, expected):
    assert size_word(phrase) == expected


def test_without_a_size_word_the_detector_order_stands():
    assert view_order(SCENE, ["square"]).tolist() == [4, 2, 1, 0, 3]
    assert view_order(SCENE, []).tolist() == [4, 2, 1, 0, 3]


def test_small_picks_the_smallest_confident_box_of_the_named_class():
    order = view_order(SCENE, ["the small square"]).tolist()
    # the 4 px square scores 0.05 < 0.3 x 0.9: it must not win on size; the circle is not a square
    assert order == [0, 2, 1, 4, 3]


def test_large_picks_the_largest_and_the_floor_is_a_share_of_the_best_score():
    assert view_order(SCENE, ["the large square"]).tolist() == [1, 2, 0, 4, 3]
    assert view_order(SCENE, ["the small square"], floor=0.0).tolist()[0] == 3
    assert view_order(SCENE, ["the small square"], floor=0.6).tolist()[:2] == [2, 1]


def test_a_phrase_naming_no_label_ranks_all_boxes_and_empty_regions_are_fine():
    assert view_order(SCENE, ["the big thing"]).tolist()[0] == 1
    assert view_order(SCENE, ["circle", "the small square"]).tolist()[0] == 0  # first sized phrase
    empty = regions(np.zeros((0, 4)), [], [])
    assert view_order(empty, ["small square"]).tolist() == []


def test_the_question_lends_its_modifiers_to_the_targets_the_model_named():
    assert referring_phrases("What colour is the small square?", ["square"]) == ["small square"]
    assert referring_phrases("Is the large star left of the tiny circle?", ["star", "circles", "dog"]) == [
        "large star",
        "tiny circle",
        "dog",  # not in the question: kept as the model said it
    ]
    assert referring_phrases("the very big striped red bus", ["bus"]) == ["big striped red bus"]  # 3 words
    assert referring_phrases("anything", []) == []
