"""Uncertainty scores on completions built by hand (the parser under test is the real one)."""

import math

import numpy as np
import pytest

from srice.agent.uncertainty import SetSizeScore, calibrate_qhat, lac_set, option_probabilities
from srice.errors import CalibrationError
from srice.serving.types import Completion, TokenLogprob


def completion(first: dict[str, float], rest: int = 0) -> Completion:
    """A completion whose first token's top alternatives have the given probabilities."""
    top = tuple(TokenLogprob(t, math.log(p)) for t, p in sorted(first.items(), key=lambda kv: -kv[1]))
    tokens = (TokenLogprob(top[0].token, top[0].logprob, top),) + tuple(
        TokenLogprob("x", math.log(0.5)) for _ in range(rest)
    )
    return Completion("".join(t.token for t in tokens), tokens, "stop", 0.0)


def test_option_letters_are_collected_and_renormalised():
    token = completion({" B": 0.5, "B.": 0.1, "A": 0.2, "(C": 0.1, "hello": 0.1}).tokens[0]
    p = option_probabilities(token, 4)
    assert p == pytest.approx([0.2 / 0.9, 0.6 / 0.9, 0.1 / 0.9, 0.0])
    assert option_probabilities(completion({"hello": 1.0}).tokens[0], 3) == pytest.approx([1 / 3] * 3)


def test_multiple_choice_uncalibrated_set_size_and_tiebreak():
    score = SetSizeScore(alpha=0.1)
    sure = score(completion({"A": 0.95, "B": 0.05}), ["x", "y", "z"])
    assert sure.score == 1 and sure.prediction_set == ("A",) and sure.tiebreak == pytest.approx(0.05)
    unsure = score(completion({"A": 0.5, "B": 0.3, "C": 0.2}), ["x", "y", "z"])
    assert unsure.score == 3 and unsure.key > sure.key
    assert "uncalibrated" in unsure.method


def test_multiple_choice_calibrated_set():
    score = SetSizeScore(qhat_choice=0.75)  # include options with p >= 0.25
    u = score(completion({"A": 0.5, "B": 0.3, "C": 0.2}), ["x", "y", "z"])
    assert u.prediction_set == ("A", "B") and u.score == 2
    tight = SetSizeScore(qhat_choice=0.01)(completion({"A": 0.5, "B": 0.5}), ["x", "y"])
    assert tight.prediction_set == () and tight.score == 3  # nothing plausible: worse than the full set


def test_open_answer_sets_and_the_unseen_tail():
    score = SetSizeScore(alpha=0.1)
    peaked = score(completion({"red": 0.93, "blue": 0.02}, rest=2))
    assert peaked.score == 1 and peaked.prediction_set == ("red",)
    flat = score(completion({"red": 0.3, "blue": 0.3, "green": 0.2}))
    assert flat.score == 4  # 0.8 visible < 0.9 needed: more than the 3 we can see
    assert flat.tiebreak == pytest.approx(-math.log(0.3))
    calibrated = SetSizeScore(qhat_open=0.5)(completion({"red": 0.6, "blue": 0.39}))
    assert calibrated.score == 1  # the hidden tail (<= 0.01) cannot reach p >= 0.5
    unknown = SetSizeScore(qhat_open=0.95)(completion({"red": 0.3, "blue": 0.2, "green": 0.1}))
    assert unknown.score == 4  # hidden answers with p up to 0.1 >= 0.05 would be members too


def test_no_content_is_maximally_uncertain():
    empty = Completion("", (), "stop", 0.0)
    assert SetSizeScore()(empty).score == math.inf
    assert SetSizeScore()(empty, ["a", "b"]).score == 2


def test_lac_fallback_reaches_mass():
    assert list(lac_set(np.array([0.1, 0.6, 0.3]), 0.05, None)) == [1, 2, 0]
    assert list(lac_set(np.array([0.1, 0.6, 0.3]), 0.1, None)) == [1, 2]
    assert list(lac_set(np.array([0.1, 0.6, 0.3]), 0.45, None)) == [1]


def test_qhat_coverage_over_seeds():
    """LAC sets with calibrated q-hat cover the true label with probability in
    [1 - alpha, 1 - alpha + 1/(n + 1)] (exchangeable data, continuous scores)."""
    alpha, n, n_test, seeds, k = 0.1, 100, 4000, 300, 5
    coverages = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        probs = rng.dirichlet(np.full(k, 0.7), size=n + n_test)
        labels = (probs.cumsum(axis=1) < rng.random((len(probs), 1))).sum(axis=1)  # a calibrated model
        p_true = probs[np.arange(len(labels)), labels]
        qhat = calibrate_qhat(p_true[:n], alpha)
        coverages.append(np.mean(1 - p_true[n:] <= qhat))
    mean, sem = np.mean(coverages), np.std(coverages, ddof=1) / math.sqrt(seeds)
    assert 1 - alpha - 3 * sem <= mean <= 1 - alpha + 1 / (n + 1) + 3 * sem


def test_qhat_needs_enough_data():
    with pytest.raises(CalibrationError, match="need at least 9"):
        calibrate_qhat([0.5] * 8, 0.1)
    assert calibrate_qhat([0.5] * 9, 0.1) == pytest.approx(0.5)


def test_an_empty_set_is_the_most_uncertain_case_not_a_certain_one():
    """With a calibrated q-hat no candidate may pass: the set is empty, and its US is above every
    set that can be formed (options + 1; top-k + 1 for open answers), never 1."""
    choice = SetSizeScore(qhat_choice=0.78)
    flat5 = choice(completion(dict.fromkeys("ABCDE", 0.2)), list("vwxyz"))
    sharp = choice(completion({"A": 0.97, "B": 0.03}), list("vwxyz"))
    split = choice(completion({"A": 0.6, "B": 0.4}), list("vwxyz"))
    assert flat5.prediction_set == () and flat5.score == 6
    assert sharp.score == 1 and split.score == 2
    assert sharp.key < split.key < flat5.key
    open_ = SetSizeScore(qhat_open=0.91)
    words = [f"w{i}" for i in range(20)]
    flat = open_(completion(dict.fromkeys(words, 0.04)))
    peaked = open_(completion({"red": 0.95, "blue": 0.01}))
    two = open_(completion({"red": 0.5, "blue": 0.45, "green": 0.01}))
    assert flat.prediction_set == () and flat.score == 21
    assert peaked.score == 1 and two.score == 2 and flat.key > two.key > peaked.key
