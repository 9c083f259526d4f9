"""Uncertainty scores (US) of one answer, "prediction-set inspired" (SRICE's selection rule).

The primary score is the size of a conformal LAC prediction set built from the answer's logprobs:
a pathway whose set is {"B"} is more certain than one whose set is {"B", "D"}. Set sizes are small
integers, so ties are common; each score carries a continuous tie-break (1 - max probability for
multiple choice, length-normalised NLL for open answers). Lower is more certain on both keys.

With ``qhat`` from a calibration split (``calibrate_qhat``), the set is {y : 1 - p(y) <= qhat} and
contains the right answer with probability >= 1 - alpha. Without it the fallback is the smallest
number of most likely candidates whose probability mass reaches 1 - alpha.

An empty calibrated set says that no answer is plausible enough: total uncertainty. It scores
one more than the largest set that can be formed (options + 1; visible candidates + 1 for open
answers), so a pathway whose answer distribution is flat never wins selection over one whose set
has members.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from srice.agent.prompts import LETTERS
from srice.errors import CalibrationError
from srice.serving.types import Completion, TokenLogprob


@dataclass(frozen=True)
class Candidate:
    answer: str
    probability: float


@dataclass(frozen=True)
class Uncertainty:
    score: float  # the US: lower is more certain
    tiebreak: float  # compared when scores tie; lower is more certain
    prediction_set: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # most likely first
    method: str

    @property
    def key(self) -> tuple[float, float]:
        return (self.score, self.tiebreak)


class UncertaintyScore(Protocol):
    """Anything that turns one completion into an ``Uncertainty``; the agent takes any of these."""

    name: str

    def __call__(self, completion: Completion, options: Sequence[str] | None = None) -> Uncertainty: ...


def option_probabilities(token: TokenLogprob, n_options: int) -> np.ndarray:
    """Probabilities of the option letters A.. from one token's top logprobs, renormalised over the
    options. Pieces such as " B", "B." and "(B" count for B. Letters outside the top-k get nothing;
    if no letter is there at all the result is uniform: the model said nothing about the options.
    """
    letters = LETTERS[:n_options]
    mass = np.zeros(n_options)
    seen = {token.token: token.logprob} | {c.token: c.logprob for c in token.top_logprobs}
    for text, logprob in seen.items():
        letter = re.sub(r"[\s().:\]\[]", "", text).upper()
        if len(letter) == 1 and letter in letters:
            mass[letters.index(letter)] += math.exp(logprob)
    total = mass.sum()
    return mass / total if total > 0 else np.full(n_options, 1.0 / n_options)


def answer_token(completion: Completion) -> TokenLogprob | None:
    """The first token that carries content (leading whitespace and empty pieces skipped)."""
    for token in completion.tokens:
        if token.token.strip():
            return token
    return None


def lac_set(probabilities: np.ndarray, alpha: float, qhat: float | None) -> np.ndarray:
    """Indices in the prediction set, most likely first. Empty when a calibrated ``qhat`` admits no
    candidate; the uncalibrated fallback always holds at least the most likely one."""
    order = np.argsort(-probabilities, kind="stable")
    if qhat is not None:
        return np.asarray([i for i in order if 1.0 - probabilities[i] <= qhat + 1e-12], dtype=np.int64)
    cumulative = np.cumsum(probabilities[order])
    size = int(np.searchsorted(cumulative, 1.0 - alpha - 1e-12) + 1)
    return order[: min(size, len(order))]


@dataclass(frozen=True)
class SetSizeScore:
    """LAC set size; multiple choice over option letters, open answers over first-token candidates.

    For open answers only the top-k of the first answer token is visible. Their probabilities are
    not renormalised (the unseen tail is real uncertainty): when the visible mass cannot reach the
    set's requirement, or no candidate is plausible at all, the size is k + 1, "more than we can see".
    """

    alpha: float = 0.1
    qhat_choice: float | None = None
    qhat_open: float | None = None
    name: str = "set_size"

    @classmethod
    def calibrated(cls, calibration) -> SetSizeScore:
        """The score with a fitted calibration's level and q-hats (an ``UncertaintyCalibration``)."""
        return cls(
            alpha=calibration.alpha, qhat_choice=calibration.qhat_choice, qhat_open=calibration.qhat_open
        )

    def __call__(self, completion: Completion, options: Sequence[str] | None = None) -> Uncertainty:
        token = answer_token(completion)
        if options:
            return self._choice(token, len(options))
        return self._open(completion, token)

    def _choice(self, token: TokenLogprob | None, n: int) -> Uncertainty:
        p = option_probabilities(token, n) if token else np.full(n, 1.0 / n)
        members = lac_set(p, self.alpha, self.qhat_choice)
        order = np.argsort(-p, kind="stable")
        return Uncertainty(
            score=float(len(members) or n + 1),
            tiebreak=float(1.0 - p.max()),
            prediction_set=tuple(LETTERS[i] for i in members),
            candidates=tuple(Candidate(LETTERS[i], float(p[i])) for i in order),
            method=f"{self.name}/choice" + ("" if self.qhat_choice is not None else "/uncalibrated"),
        )

    def _open(self, completion: Completion, token: TokenLogprob | None) -> Uncertainty:
        nll = -sum(t.logprob for t in completion.tokens) / max(len(completion.tokens), 1)
        if token is None:
            return Uncertainty(math.inf, nll, (), (), f"{self.name}/open")
        pieces: dict[str, float] = {}
        for c in token.top_logprobs or (token,):
            key = c.token.strip().lower()
            pieces[key] = pieces.get(key, 0.0) + math.exp(c.logprob)
        names = list(pieces)
        p = np.array([pieces[k] for k in names])
        order = np.argsort(-p, kind="stable")
        unseen_bound = min(float(p[order[-1]]), max(0.0, 1.0 - float(p.sum())))  # no hidden answer beats this
        if self.qhat_open is not None:
            members = [i for i in order if 1.0 - p[i] <= self.qhat_open + 1e-12]
            complete = bool(members) and 1.0 - unseen_bound > self.qhat_open + 1e-12
        else:
            reach = np.flatnonzero(np.cumsum(p[order]) >= 1.0 - self.alpha - 1e-12)
            members = list(order[: reach[0] + 1]) if len(reach) else list(order)
            complete = bool(len(reach))
        size = len(members) if complete else len(order) + 1
        return Uncertainty(
            score=float(size),
            tiebreak=float(nll),
            prediction_set=tuple(names[i] for i in members),
            candidates=tuple(Candidate(names[i], float(p[i])) for i in order),
            method=f"{self.name}/open" + ("" if self.qhat_open is not None else "/uncalibrated"),
        )


def calibrate_qhat(true_probabilities: Sequence[float], alpha: float) -> float:
    """Split-conformal q-hat for LAC from the probabilities each calibration question gave its true
    answer: the ceil((n + 1)(1 - alpha))-th smallest of 1 - p. Needs n >= 1/alpha - 1.
    """
    scores = np.sort(1.0 - np.asarray(true_probabilities, dtype=float))
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)  # the epsilon keeps 10 * 0.9 from becoming 10
    if rank > n:
        need = math.ceil(1 / alpha - 1 - 1e-9)
        raise CalibrationError(f"{n} calibration answers are too few for alpha={alpha}: need at least {need}")
    return float(scores[rank - 1])
