"""Calibrating the uncertainty score: LAC q-hats and the early-exit threshold, from answered questions.

Data: labelled ``EvalItem``s, read by ``srice.eval.data.load_items`` from any format ``srice eval``
reads (our JSONL, VLMEvalKit TSV, parquet, saved HF datasets). Each question gets the direct
pathway once; a question whose image cannot be read, or that has no answer, is skipped and counted.

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
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from srice.agent.answers import normalize_vqa_answer
from srice.agent.prompts import LETTERS, direct_request
from srice.agent.uncertainty import SetSizeScore, answer_token, calibrate_qhat, option_probabilities
from srice.calibration.files import checksum
from srice.errors import CalibrationError, InputError
from srice.eval import metrics
from srice.eval.items import EvalItem
from srice.files import read_file as read_bytes
from srice.images import load_image

FORMAT_VERSION = 1
METHOD = "uncertainty-lac"
MAX_FILE_BYTES = 1024 * 1024


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
    # what early exit does on the exit half: the share of questions that exit (each skips the region
    # proposal and every tool pathway) and the share that exit with a wrong answer (bound: alpha)
    exit_share: float | None = None
    exit_wrong: float | None = None
    format_version: int = FORMAT_VERSION
    method: str = METHOD

    def score(self) -> SetSizeScore:
        return SetSizeScore(alpha=self.alpha, qhat_choice=self.qhat_choice, qhat_open=self.qhat_open)

    def save(self, path: str | Path) -> None:
        """Write the calibration as JSON with a checksum of its own content (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data | {"checksum": checksum(data)}, f, indent=2, allow_nan=False)
        os.replace(f.name, path)

    @classmethod
    def load(cls, path: str | Path) -> UncertaintyCalibration:
        """Read a file written by ``save``, checked field by field (types, ranges, finite values,
        enough questions for each q-hat at alpha) and against its checksum where it has one."""
        if not Path(path).exists():
            raise CalibrationError(f"uncertainty calibration not found: {path}")
        try:
            data = json.loads(read_bytes(Path(path), "uncertainty calibration", MAX_FILE_BYTES))
        except (InputError, ValueError) as e:
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
        stored = data.pop("checksum", None)
        try:
            calibration = cls(**data)
            calibration.check()
        except TypeError as e:
            raise CalibrationError(f"{path} is missing or has unknown fields ({e}); recalibrate") from None
        except ValueError as e:
            raise CalibrationError(
                f"{path} is invalid: {e}; recalibrate with srice calibrate --uncertainty"
            ) from None
        if stored is not None and stored != checksum(data):
            raise CalibrationError(
                f"{path} does not match its checksum: it was edited or damaged after it was written; "
                "recalibrate with srice calibrate --uncertainty"
            )
        return calibration

    def check(self) -> None:
        """A ``ValueError`` naming the first field that is out of its type or range."""

        def number(name, value, low, high, *, none=False, integer=False):
            if value is None and none:
                return
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
                raise ValueError(
                    f"{name} must be a finite {'integer' if integer else 'number'}, got {value!r}"
                )
            if not low <= value <= high:
                raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")

        number("alpha", self.alpha, 1e-6, 1 - 1e-6)
        number("qhat_choice", self.qhat_choice, 0.0, 1.0, none=True)
        number("qhat_open", self.qhat_open, 0.0, 1.0, none=True)
        number("early_exit", self.early_exit, 0.0, 1e6, none=True)  # a US: a set size (+ options/top-k)
        for name in ("n_choice", "n_open", "n_exit", "skipped"):
            number(name, getattr(self, name), 0, 1e12, integer=True)
        for name in ("exit_share", "exit_wrong"):
            number(name, getattr(self, name), 0.0, 1.0, none=True)
        need = math.ceil(1 / self.alpha - 1 - 1e-9)
        for kind, qhat, n in (
            ("choice", self.qhat_choice, self.n_choice),
            ("open", self.qhat_open, self.n_open),
        ):
            if qhat is not None and n < need:
                raise ValueError(
                    f"qhat_{kind} rests on n_{kind}={n} questions, too few for alpha={self.alpha:g} "
                    f"(at least {need})"
                )
        if self.early_exit is not None and self.n_exit < need:
            raise ValueError(
                f"early_exit rests on n_exit={self.n_exit} questions, too few for alpha={self.alpha:g}"
            )
        if not isinstance(self.data_hash, str):
            raise ValueError("data_hash must be text")


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
    truths = [normalize_vqa_answer(a) for a in item.answers]
    candidates = token.top_logprobs or (token,)
    return float(
        sum(
            math.exp(c.logprob)
            for c in candidates
            if (piece := normalize_vqa_answer(c.token)) and any(t.startswith(piece) for t in truths)
        )
    )


def _data_hash(items: Sequence[EvalItem]) -> str:
    """Of the questions, options, answers and image bytes (not paths: the same data in another
    folder hashes the same)."""

    def image(item: EvalItem) -> str:
        source = item.image
        if isinstance(source, Path):
            try:
                source = source.read_bytes()
            except OSError:
                return str(source)
        data = source if isinstance(source, bytes) else source.tobytes()
        return hashlib.sha256(data).hexdigest()

    rows = [[image(i), i.question, list(i.options) if i.options else None, i.answers[0]] for i in items]
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
