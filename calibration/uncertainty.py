"""Calibrating the uncertainty score: LAC q-hats and the early-exit threshold, from answered questions.

Data: a JSONL file, one question per line: ``{"image": path, "question": ..., "options": [...] or
null, "answer": ...}`` (for multiple choice the answer is the option's letter or its text). Image
paths are relative to the file. Each question gets the direct pathway once.

The calibration questions are split in two by a seeded permutation:
- first half: q-hat for LAC sets, separately for multiple-choice and open questions (the score is
  1 - p(true answer); for open answers p is the first answer token's probability mass on tokens
  that begin the true answer);
- second half: the early-exit threshold t, by conformal risk control with the loss
  "exited (US <= t) and wrong", which is monotone in t and bounded by 1: the largest t with
  (n * risk(t) + 1) / (n + 1) <= alpha. Its guarantee: the expected rate of questions that exit early
  with a wrong answer stays <= alpha. Disjoint halves keep the two guarantees separate.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from srice.agent.prompts import LETTERS, direct_request
from srice.agent.uncertainty import SetSizeScore, answer_token, calibrate_qhat, option_probabilities
from srice.errors import CalibrationError, InputError
from srice.eval.metrics import exact_match, mc_accuracy
from srice.images import load_image

FORMAT_VERSION = 1
METHOD = "uncertainty-lac"


@dataclass(frozen=True)
class LabelledQuestion:
    image: Path
    question: str
    options: tuple[str, ...] | None
    answer: str  # a letter for multiple choice


@dataclass(frozen=True)
class UncertaintyCalibration:
    alpha: float
    qhat_choice: float | None
    qhat_open: float | None
    early_exit: float | None  # None: never exit early
    n_choice: int
    n_open: int
    n_exit: int
    data_hash: str
    skipped: int = 0
    format_version: int = FORMAT_VERSION
    method: str = METHOD

    def score(self) -> SetSizeScore:
        return SetSizeScore(alpha=self.alpha, qhat_choice=self.qhat_choice, qhat_open=self.qhat_open)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(f.name, path)

    @classmethod
    def load(cls, path: str | Path) -> UncertaintyCalibration:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CalibrationError(f"uncertainty calibration not found: {path}") from None
        except (OSError, ValueError) as e:
            raise CalibrationError(
                f"uncertainty calibration {path} is not valid JSON ({e}); recalibrate"
            ) from None
        if not isinstance(data, dict) or data.get("method") != METHOD:
            raise CalibrationError(f"{path} is not an uncertainty calibration (method {METHOD!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise CalibrationError(
                f"{path} has format version {data.get('format_version')}, this srice reads {FORMAT_VERSION}; "
                "recalibrate with srice calibrate --uncertainty"
            )
        try:
            return cls(**data)
        except TypeError as e:
            raise CalibrationError(f"{path} is missing or has unknown fields ({e})") from None


def load_questions(path: str | Path) -> list[LabelledQuestion]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            options = tuple(str(o) for o in row["options"]) if row.get("options") else None
            answer = str(row["answer"]).strip()
            if options:
                answer = _letter(answer, options)
            out.append(LabelledQuestion(path.parent / row["image"], str(row["question"]), options, answer))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}:{number}: not a question record ({type(e).__name__}: {e})") from None
    return out


def _letter(answer: str, options: Sequence[str]) -> str:
    if len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
        return answer.upper()
    lowered = [o.strip().lower() for o in options]
    if answer.lower() in lowered:
        return LETTERS[lowered.index(answer.lower())]
    raise ValueError(f"answer {answer!r} is neither an option letter nor an option")


def normalise(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text).strip().lower()


def true_probability(completion, question: LabelledQuestion) -> float:
    token = answer_token(completion)
    if question.options:
        if token is None:
            return 1.0 / len(question.options)
        return float(option_probabilities(token, len(question.options))[LETTERS.index(question.answer)])
    if token is None:
        return 0.0
    truth = normalise(question.answer)
    candidates = token.top_logprobs or (token,)
    return float(
        sum(
            math.exp(c.logprob)
            for c in candidates
            if normalise(c.token) and truth.startswith(normalise(c.token))
        )
    )


def is_correct(text: str, question: LabelledQuestion) -> bool:
    """Scored as ``srice eval`` scores it: option-letter extraction, or a normalised exact match."""
    if question.options:
        return mc_accuracy(text, question.answer, question.options) == 1.0
    return exact_match(text, (question.answer,)) == 1.0


def early_exit_threshold(scores: np.ndarray, wrong: np.ndarray, alpha: float) -> float | None:
    """Largest t with (n * mean(score <= t and wrong) + 1) / (n + 1) <= alpha, or None."""
    n = len(scores)
    best = None
    for t in np.unique(scores[np.isfinite(scores)]):
        risk = float(np.mean((scores <= t) & wrong))
        if (n * risk + 1) / (n + 1) <= alpha:
            best = float(t)
        else:
            break  # the risk only grows with t
    return best


def calibrate_uncertainty(
    backend,
    questions: Sequence[LabelledQuestion],
    *,
    alpha: float = 0.1,
    seed: int = 0,
    batch_size: int = 64,
    max_tokens: int = 16,
    top_logprobs: int = 20,
    progress=None,
) -> UncertaintyCalibration:
    """Answer every question directly once, then fit q-hats and the early-exit threshold.

    A question whose image cannot be read is skipped and counted in ``skipped``.
    """
    completions, kept, skipped = [], [], 0
    for start in range(0, len(questions), batch_size):
        requests = []
        for q in questions[start : start + batch_size]:
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
        raise InputError("no calibration question has a readable image")
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
    wrong = np.array([not is_correct(completions[i].text, questions[i]) for i in second])
    digest = hashlib.sha256(
        json.dumps([[str(q.image), q.question, q.options, q.answer] for q in questions]).encode()
    ).hexdigest()[:16]
    return UncertaintyCalibration(
        alpha=alpha,
        qhat_choice=qhat["choice"],
        qhat_open=qhat["open"],
        early_exit=early_exit_threshold(scores, wrong, alpha) if len(second) else None,
        n_choice=int(sum(choice[i] for i in first)),
        n_open=int(sum(~choice[i] for i in first)),
        n_exit=len(second),
        data_hash=digest,
        skipped=skipped,
    )
