"""Calibrating the uncertainty score: LAC q-hats and the early-exit threshold, from answered questions.

Data: labelled ``EvalItem``s, read by ``srice.eval.data.load_items`` from any format ``srice eval``
reads (our JSONL, VLMEvalKit TSV, parquet, saved HF datasets). Each question gets the direct
pathway once; a question whose image cannot be read, or that has no answer, is skipped and counted.
The result is an ``UncertaintyCalibration`` (``srice.calibration.uncertainty_calibration``), the
file the agent's score is built from.

The calibration questions are split in two by a seeded permutation:
- first half: q-hat for LAC sets, separately for multiple-choice and open questions (the score is
  1 - p(true answer); for open answers p is the first answer token's probability mass on tokens
  that begin a true answer, both sides VQA-normalised);
- second half: the early-exit threshold t, by conformal risk control with the loss
  "exited (US <= t) and wrong" (1 - score, as ``srice eval`` scores the answer; 0 or 1 but for soft
  VQA scores), which is monotone in t and bounded by 1: the largest t with
  (n * risk(t) + 1) / (n + 1) <= alpha. Its guarantee: the expected rate of questions that exit early
  with a wrong answer stays <= alpha. Disjoint halves keep the two guarantees separate.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np

from srice.agent.answers import begins_answer
from srice.agent.prompts import LETTERS, direct_request
from srice.agent.uncertainty import SetSizeScore, answer_token, calibrate_qhat, option_probabilities
from srice.calibration.uncertainty_calibration import UncertaintyCalibration
from srice.errors import InputError
from srice.eval import metrics
from srice.eval.items import EvalItem, image_digest
from srice.images import load_image


def true_probability(completion, item: EvalItem) -> float:
    """The probability the direct answer gave the truth: the option letter's (multiple choice), or
    the first answer token's mass on candidates that begin a true answer (open questions)."""
    token = answer_token(completion)
    if item.options:
        if token is None:
            return 1.0 / len(item.options)
        return float(option_probabilities(token, len(item.options))[LETTERS.index(item.answers[0])])
    if token is None:
        return 0.0
    candidates = token.top_logprobs or (token,)
    return float(sum(math.exp(c.logprob) for c in candidates if begins_answer(c.token, item.answers)))


def _data_hash(items: Sequence[EvalItem]) -> str:
    """Of the questions, options, answers and image bytes (not paths: the same data in another
    folder hashes the same)."""
    rows = [
        [image_digest(i.image), i.question, list(i.options) if i.options else None, i.answers[0]]
        for i in items
    ]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def early_exit_threshold(scores: np.ndarray, loss: np.ndarray, alpha: float) -> float | None:
    """Largest t with (n * mean(loss where score <= t, else 0) + 1) / (n + 1) <= alpha, or None.
    ``loss`` lies in [0, 1]: 1 for a wrong answer, 0 for a right one (a boolean array works)."""
    n = len(scores)
    loss = np.asarray(loss, dtype=float)
    best = None
    for t in np.unique(scores[np.isfinite(scores)]):
        risk = float(np.mean(np.where(scores <= t, loss, 0.0)))
        if (n * risk + 1) / (n + 1) <= alpha:
            best = float(t)
        else:
            break  # the risk only grows with t
    return best


def calibrate_uncertainty(
    backend,
    questions: Sequence[EvalItem],
    *,
    alpha: float = 0.1,
    seed: int = 0,
    batch_size: int = 64,
    max_tokens: int = 16,
    top_logprobs: int = 20,
    progress=None,
) -> UncertaintyCalibration:
    """Answer every question directly once, then fit q-hats and the early-exit threshold.

    A question whose image cannot be read, or that has no answer, is skipped and counted in
    ``skipped``. The early-exit risk is the expected loss 1 - score (``srice.eval.metrics.score``,
    as ``srice eval`` scores the answer) over questions that exit.
    """
    completions, kept, skipped = [], [], 0
    for start in range(0, len(questions), batch_size):
        requests = []
        for q in questions[start : start + batch_size]:
            if not q.answers:
                skipped += 1
                continue
            try:
                image = load_image(q.image)
            except InputError:
                skipped += 1
                continue
            kept.append(q)
            requests.append(
                direct_request(image, q.question, q.options, max_tokens=max_tokens, top_logprobs=top_logprobs)
            )
        completions.extend(backend.generate(requests) if requests else [])
        if progress:
            progress(len(questions[start : start + batch_size]))
    questions = kept
    if not questions:
        raise InputError("no calibration question has a readable image and an answer")
    order = np.random.default_rng(seed).permutation(len(questions))
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    probs = np.array([true_probability(c, q) for c, q in zip(completions, questions)])
    choice = np.array([q.options is not None for q in questions])
    qhat = {}
    for kind, mask in (("choice", choice), ("open", ~choice)):
        picked = [i for i in first if mask[i]]
        qhat[kind] = (
            calibrate_qhat(probs[picked], alpha) if len(picked) >= math.ceil(1 / alpha - 1 - 1e-9) else None
        )
    score = SetSizeScore(alpha=alpha, qhat_choice=qhat["choice"], qhat_open=qhat["open"])
    scores = np.array([score(completions[i], questions[i].options).score for i in second])
    loss = np.array([1.0 - metrics.score(questions[i], completions[i].text) for i in second])
    threshold = early_exit_threshold(scores, loss, alpha) if len(second) else None
    return UncertaintyCalibration(
        alpha=alpha,
        qhat_choice=qhat["choice"],
        qhat_open=qhat["open"],
        early_exit=threshold,
        exit_share=None if threshold is None else float(np.mean(scores <= threshold)),
        exit_wrong=None if threshold is None else float(np.mean(np.where(scores <= threshold, loss, 0.0))),
        n_choice=int(sum(choice[i] for i in first)),
        n_open=int(sum(~choice[i] for i in first)),
        n_exit=len(second),
        data_hash=_data_hash(questions),
        skipped=skipped,
    )
