"""The report's statistics against the libraries and by hand: the US AUROC is scikit-learn's (equal to
the pairwise definition, ties counted half, and fast at scale), accuracy intervals are Wilson score
intervals (scipy's on 0/1 scores; never zero-width at 0% or 100%, never outside [0, 1]), and paired
differences keep their normal interval."""

from __future__ import annotations

import math
import random
import time

import pytest

from srice.eval.report import interval, summarize, us_auroc


def _records(pairs):
    """Records whose direct pathway has (score, uncertainty, tie-break) as given."""
    out = []
    for score, us, tiebreak in pairs:
        p = {
            "score": score,
            "uncertainty": us,
            "tiebreak": tiebreak,
            "error": None,
            "covered": True,
            "set_size": 1,
        }
        out.append({"score": score, "oracle_score": score, "pathways": {"direct": p}, "error": None})
    return out


def _pairwise(records, name="direct"):
    """The definition: P(a wrong answer's US > a right one's), ties half (what report used to loop)."""
    right, wrong = [], []
    for r in records:
        p = r["pathways"][name]
        us = p["uncertainty"] + min(max(p["tiebreak"] or 0.0, 0.0), 0.999999)
        (right if p["score"] >= 0.5 else wrong).append(us)
    wins = sum((w > c) + 0.5 * (w == c) for w in wrong for c in right)
    return wins / (len(right) * len(wrong))


def test_us_auroc_is_the_pairwise_value_with_ties_and_equals_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = random.Random(3)
    # few distinct US values, so many ties; scores 0, 1 and partial (0.3 counts wrong, 0.6 right)
    pairs = [
        (rng.choice([0.0, 0.3, 0.6, 1.0]), rng.choice([1, 2, 3]), rng.choice([0.0, 0.25, 0.5]))
        for _ in range(300)
    ]
    records = _records(pairs)
    value = us_auroc(records, "direct")
    assert value == pytest.approx(_pairwise(records), abs=1e-12)
    labels = [int(s < 0.5) for s, _, _ in pairs]  # wrong answers are the positive class
    assert value == pytest.approx(roc_auc_score(labels, [u + t for _, u, t in pairs]), abs=1e-12)
    assert us_auroc(_records([(1.0, 1, 0.1), (0.0, 1, 0.1)]), "direct") == 0.5  # one tie: chance


def test_us_auroc_of_many_answers_takes_no_quadratic_time():
    """20k answers: 1e8 pairs for a pairwise loop (tens of seconds in Python), a sort for sklearn."""
    rng = random.Random(5)
    records = _records(
        [(float(rng.random() < 0.5), rng.randint(1, 4), rng.random() * 0.9) for _ in range(20_000)]
    )
    began = time.perf_counter()
    value = us_auroc(records, "direct")
    assert time.perf_counter() - began < 3.0 and 0.45 < value < 0.55


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (10, 10), (0, 10), (7, 10), (55, 80), (299, 300)])
def test_accuracy_intervals_are_wilson_score_intervals(k, n):
    from scipy.stats import binomtest

    ci = interval([1.0] * k + [0.0] * (n - k))
    low, high = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ci["mean"] == pytest.approx(k / n) and ci["n"] == n
    assert ci["low"] == pytest.approx(low, abs=1e-9) and ci["high"] == pytest.approx(high, abs=1e-9)
    assert 0.0 <= ci["low"] < ci["high"] <= 1.0  # width even at 0% and 100%
    assert ci["low"] <= ci["mean"] <= ci["high"]


def test_wilson_by_hand_at_100_percent():
    # n = 10, all right: low = n / (n + z^2) = 10 / 13.8415 = 0.7225 (z = 1.95996), high = 1
    ci = interval([1.0] * 10)
    assert ci["low"] == pytest.approx(10 / (10 + 1.959964**2), abs=1e-6) and ci["high"] == 1.0
    # fractional scores (VQA accuracy, ANLS) in [0, 1]: Wilson at their mean, still inside [0, 1]
    ci = interval([1.0, 0.3, 0.6, 1.0])
    assert 0.0 < ci["low"] < 0.725 < ci["high"] < 1.0 and ci["mean"] == pytest.approx(0.725)


def test_differences_keep_the_paired_normal_interval():
    diffs = [0.0, 1.0, 0.0, 0.0]  # sample sd 0.5: half-width 1.96 * 0.5 / 2
    ci = interval(diffs, difference=True)
    assert ci["mean"] == 0.25 and ci["high"] - ci["mean"] == pytest.approx(1.96 * 0.25, rel=1e-4)
    ci = interval([1.0, -1.0, 0.0, 1.0])  # a value below 0: a difference without being told
    assert ci["mean"] == 0.25 and ci["high"] - ci["mean"] == pytest.approx(
        1.96 * math.sqrt(2.75 / 3) / 2, rel=1e-4
    )
    records = _records([(1.0, 1, 0.1), (0.0, 2, 0.1), (1.0, 1, 0.2), (1.0, 1, 0.3)])
    for r, direct in zip(records, (1.0, 0.0, 0.0, 0.0)):
        r["pathways"]["direct"]["score"] = direct
        r |= {
            "kind": "",
            "pathway": "direct",
            "uncertainty": 1.0,
            "mllm_calls": 2,
            "seconds": 0.1,
            "meta": {},
        }
    summary = summarize(records)  # srice - direct per question: 0, 0, +1, +1
    assert summary["srice_minus_direct"]["mean"] == 0.5
    assert summary["srice_minus_direct"]["high"] - 0.5 == pytest.approx(1.96 * math.sqrt(1 / 3) / 2, rel=1e-4)
