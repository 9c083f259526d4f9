"""Metrics against hand-computed cases; expected values are worked out in the comments."""

import pytest

from srice.errors import InputError
from srice.eval.items import EvalItem
from srice.eval.metrics import (
    PopeSummary,
    anls,
    exact_match,
    extract_choice,
    mc_accuracy,
    normalize_vqa_answer,
    pope_summary,
    relaxed_accuracy,
    score,
    vqa_accuracy,
    yes_no,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two dogs", "2 dogs"),
        ("2 dogs", "2 dogs"),
        ("none", "0"),
        ("TEN", "10"),
        ("The cat", "cat"),
        ("a man on an elephant", "man on elephant"),
        ("theater", "theater"),  # "the" only as a whole word
        ("3.5", "3.5"),  # a decimal point survives
        ("1,000", "1000"),  # a comma between digits: punctuation deleted, digits joined
        ("1,000 people, mostly", "1000 people mostly"),
        ("yes.", "yes"),  # a period not before a digit goes
        ("3.", "3"),
        ("e.g. this", "eg this"),
        ("red, blue", "red blue"),  # comma touching a space: deleted
        ("red,blue", "red blue"),  # comma between letters: becomes a space
        ("t-shirt", "t shirt"),
        ("(left)", "left"),
        ("what?!", "what"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("don't", "don't"),  # apostrophes are kept
        ("its", "its"),  # an ordinary word, not a contraction
        ("  Multiple\tspaces\n here ", "multiple spaces here"),
        ("10:30", "10:30"),
        ("", ""),
    ],
)
def test_normalize_vqa_answer(raw, expected):
    assert normalize_vqa_answer(raw) == expected


def _ten(matching: str, k: int) -> list[str]:
    return [matching] * k + [f"other{i}" for i in range(10 - k)]


@pytest.mark.parametrize(
    "k, expected",
    [
        # k of 10 annotators gave the prediction. Leaving out a matching annotator leaves k-1
        # matches, leaving out another leaves k: mean = (k*min(1,(k-1)/3) + (10-k)*min(1,k/3)) / 10
        (0, 0.0),
        (1, 0.3),  # (1*0 + 9*(1/3)) / 10
        (2, 0.6),  # (2*(1/3) + 8*(2/3)) / 10 = (2/3 + 16/3) / 10
        (3, 0.9),  # (3*(2/3) + 7*1) / 10
        (4, 1.0),  # (4*1 + 6*1) / 10
        (10, 1.0),
    ],
)
def test_vqa_accuracy_leave_one_out(k, expected):
    assert vqa_accuracy("2", _ten("2", k)) == pytest.approx(expected)


def test_vqa_accuracy_normalises_both_sides():
    assert vqa_accuracy("Two.", _ten("2", 3)) == pytest.approx(0.9)
    assert vqa_accuracy("the red one", _ten("red one", 1)) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "prediction, answers, official",
    [
        # all ten agree: the official script compares the raw texts (stripped only)
        ("two", ["2"] * 10, 0.0),
        ("Red", ["red"] * 10, 0.0),
        ("Red.", ["red"] * 10, 0.0),
        (" red\n", ["red"] * 10, 1.0),
        ("Two", ["Two"] * 10, 1.0),
        # they differ: both sides normalised
        ("two", ["two"] * 3 + ["2"] * 7, 1.0),  # every answer becomes "2"
        ("T-Shirt", ["t-shirt"] * 5 + ["tshirt"] * 5, 1.0),  # "t shirt" five times: 4 or 5 others match
        ("yes", ["yes"] * 2 + ["no"] * 8, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10
        ("the dog", ["dog"] * 4 + ["a dog"] * 6, 1.0),  # articles dropped: ten "dog"
        ("dont", ["don't"] * 5 + ["do not"] * 5, 1.0),
        ("1,000", ["1000"] * 9 + ["1"], 1.0),
        # at most 32 periods are removed: 33 leave one, ".yes" matches nothing
        ("." * 33 + "yes", ["yes"] * 9 + ["no"], 0.0),
    ],
)
def test_vqa_accuracy_equals_the_official_script(prediction, answers, official):
    """Hand-computed from the official vqaEval.py's rules (module docstring of srice.eval.vqa)."""
    assert vqa_accuracy(prediction, answers) == pytest.approx(official)


def test_vqa_accuracy_normalised_variant_is_an_option():
    assert vqa_accuracy("two", ["2"] * 10, normalise_answers=True) == 1.0
    assert vqa_accuracy("Red.", ["red"] * 10, normalise_answers=True) == 1.0
    assert vqa_accuracy("two", ["two"] * 3 + ["2"] * 7, normalise_answers=True) == 1.0


def test_vqa_accuracy_with_fewer_answers():
    # three answers, two match: leaving out a match leaves 1 -> 1/3 (twice); leaving out the other
    # leaves 2 -> 2/3 (once): (1/3 + 1/3 + 2/3) / 3 = 4/9
    assert vqa_accuracy("cat", ["cat", "cat", "dog"]) == pytest.approx(4 / 9)
    assert vqa_accuracy("cat", ["Cat"]) == 1.0  # one answer: exact normalised match
    assert vqa_accuracy("dog", ["cat"]) == 0.0
    assert vqa_accuracy("cat", []) == 0.0


def test_exact_match():
    assert exact_match("Two dogs.", ["2 dogs"]) == 1.0
    assert exact_match("The Eiffel Tower", "eiffel tower") == 1.0
    assert exact_match("three", ["2", "4"]) == 0.0


def test_anls():
    assert anls("ABC ", ["abc"]) == 1.0  # case-insensitive, stripped
    assert anls("abcx", ["abcd"]) == pytest.approx(0.75)  # distance 1/4
    assert anls("abxy", ["abcd"]) == 0.0  # distance 2/4 = 0.5 = tau: zero
    assert anls("abcdefxyzw", ["abcdefghij"]) == pytest.approx(0.6)  # distance 4/10 < tau
    assert anls("abxy", ["abcd"], tau=0.6) == pytest.approx(0.5)
    assert anls("abcx", ["zzzz", "abcd", "abcx"]) == 1.0  # best answer counts
    assert anls("", ["abc"]) == 0.0
    assert anls("", [""]) == 1.0
    assert anls("anything", []) == 0.0


@pytest.mark.parametrize(
    "prediction, label, expected",
    [  # lmms-eval's / Qwen-VL's relaxed_correctness, worked out by hand
        ("105", "100", 1.0),  # |105 - 100| / 100 = 0.05 <= 0.05: counts
        ("95", "100", 1.0),
        ("105.1", "100", 0.0),  # 0.051
        ("94.9", "100", 0.0),
        ("21", "20", 1.0),  # 1/20 = 0.05
        ("0.315", "0.3", 0.0),  # 0.015 / 0.3 is 0.05000000000000004 in floats: over, as in the reference
        ("45%", "0.45", 1.0),  # a percentage is divided by 100: 0.45 = 0.45
        ("0.45", "45%", 1.0),
        ("45%", "45", 0.0),  # 0.45 vs 45
        ("50%%", "0.5", 1.0),  # every trailing % goes, one division
        ("12.", "12", 1.0),  # float("12.") = 12
        (" 45", "45", 1.0),  # float() ignores surrounding blanks
        ("1e2", "100", 1.0),
        ("1,050", "1000", 0.0),  # float() refuses the comma: compared as text
        ("$12", "12", 0.0),  # nor a currency sign
        ("-5", "5", 0.0),  # 10 / 5 = 2
        ("0", "0", 1.0),  # a zero target compares as text: "0" == "0"
        ("0.0", "0", 0.0),  # "0.0" != "0"
        ("0.01", "0", 0.0),
        ("0%", "0", 0.0),
        ("Yes", "yes", 1.0),  # not numbers: exact match after lowercasing
        ("Yes.", "yes", 0.0),  # no punctuation dropped
        ("Yes ", "yes", 0.0),  # nor blanks, outside numbers
        ("Brazil", "Argentina", 0.0),
        ("about 100", "100", 0.0),  # no number extraction from sentences
        ("nan", "nan", 0.0),  # a NaN target is read as a number, and NaN is within 5% of nothing
        ("%", "%", 1.0),  # "" is no number: text
    ],
)
def test_relaxed_accuracy(prediction, label, expected):
    assert relaxed_accuracy(prediction, label) == expected


def test_relaxed_accuracy_any_label():
    assert relaxed_accuracy("7", ["10", "7.2"]) == 1.0  # 0.2/7.2 = 2.8%
    assert relaxed_accuracy("7", ["10", "8"]) == 0.0
    assert relaxed_accuracy(None, ["", "x"]) == 1.0  # no reply reads as "", which matches an empty label


OPTIONS = ("blue square", "red circle", "dark red", "green")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),  # a lone letter is unambiguous in any case
        ("B) blue", "B"),
        ("(b) red circle", "B"),
        ("C: dark red", "C"),
        ("A. blue square", "A"),  # a delimited A is the letter
        ("The answer is B", "B"),
        ("The answer is B because it is round.", "B"),
        ("Answer: b", "B"),
        ("the correct option is (C)", "C"),
        ("Option A is wrong; the answer is C.", "C"),  # cues disagree: the last answer cue
        ("I think B", "B"),  # "I" followed by a word is the pronoun
        ("So the best fit is (D).", "D"),
        ("A is correct", "A"),
        ("The answer is A.", "A"),
        ("The answer is a.", "A"),
        # the article: falls through to the option texts
        ("A red circle", "B"),
        ("The answer is A red circle", "B"),
        ("The answer is a red circle.", "B"),
        ("I see a red circle", "B"),
        # option text
        ("green", "D"),
        ("Green.", "D"),
        ("It is dark red", "C"),  # "red circle" not in it; "dark red" is
        ("square", "A"),  # the reply inside exactly one option
        ("red", None),  # inside two options
        ("E", None),  # not an option letter
        ("purple", None),
        ("", None),
    ],
)
def test_extract_choice(reply, expected):
    assert extract_choice(reply, OPTIONS) == expected


def test_extract_choice_without_options_uses_a_to_d():
    assert extract_choice("The answer is C", None) == "C"
    assert extract_choice("F", None) is None
    assert extract_choice("red circle", None) is None


def test_mc_accuracy():
    assert mc_accuracy("(B) red circle", "B", OPTIONS) == 1.0
    assert mc_accuracy("red circle", "b", OPTIONS) == 1.0
    assert mc_accuracy("A", "B", OPTIONS) == 0.0


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("yes", "yes"),
        ("Yes, there is a dog.", "yes"),
        ("No.", "no"),
        ("no, but yes there's a cat", "no"),  # the leading word wins
        ("I would say yes", "yes"),
        ("The answer is: NO", "no"),
        ("yes or no", "yes"),
        ("there might be one", None),
        ("nope", None),
        ("eyes", None),
        ("", None),
    ],
)
def test_yes_no(reply, expected):
    assert yes_no(reply) == expected


def test_pope_summary():
    predictions = ["yes", "no", "Yes, there is", "maybe", "no", "yes"]
    answers = ["yes", "no", "yes", "yes", "yes", "No"]
    # TP: 1, 3   TN: 2   FN: 5   FP: 6   unparsed: 4 (truth yes: a miss)
    summary = pope_summary(predictions, answers)
    assert summary == PopeSummary(
        n=6,
        accuracy=pytest.approx(3 / 6),  # TP + TN = 3
        precision=pytest.approx(2 / 3),  # 2 of the 3 yes replies
        recall=pytest.approx(2 / 4),  # 2 of the 4 true yes
        f1=pytest.approx(4 / 7),  # 2 * (2/3) * (1/2) / (2/3 + 1/2)
        yes_ratio=pytest.approx(3 / 6),
        unparsed=1,
    )


def test_pope_summary_edges():
    empty = pope_summary([], [])
    assert (empty.n, empty.accuracy, empty.precision, empty.f1) == (0, 0.0, 0.0, 0.0)
    all_no = pope_summary(["no", "no"], ["no", "yes"])
    assert (all_no.accuracy, all_no.precision, all_no.recall, all_no.yes_ratio) == (0.5, 0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="not yes or no"):
        pope_summary(["yes"], ["maybe"])
    with pytest.raises(ValueError):
        pope_summary(["yes"], [])


def _item(metric, answers, options=None):
    return EvalItem(id="1", image=b"", question="q", answers=tuple(answers), metric=metric, options=options)


def test_score_dispatch():
    assert score(_item("vqa", _ten("2", 2)), "two") == pytest.approx(0.6)
    assert score(_item("anls", ["abcd"]), "abcx") == pytest.approx(0.75)
    assert score(_item("relaxed", ["100"]), "104") == 1.0
    assert score(_item("mc", ["B"], OPTIONS), "The answer is (B)") == 1.0
    assert score(_item("mc", ["B"], OPTIONS), "green") == 0.0
    assert score(_item("exact", ["2 dogs"]), "Two dogs.") == 1.0
    assert score(_item("pope", ["yes"]), "Yes, there is.") == 1.0
    assert score(_item("pope", ["no"]), "I am not sure") == 0.0
    assert score(_item("vqa", []), "anything") == 0.0  # unlabelled
    assert score(_item("exact", ["x"]), None) == 0.0
