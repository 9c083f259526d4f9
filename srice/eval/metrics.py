"""Scoring one prediction against a benchmark's ground truth, one function per benchmark convention.

Every scorer returns a float in [0, 1] for one question; ``score`` dispatches on ``EvalItem.metric``.
POPE is the one set-level metric (precision/recall/F1 over yes answers): ``pope_summary``. The VQA
accuracy is in ``srice.eval.vqa``; answer normalisation and option-letter reading are the agent's
(``srice.agent.answers``), so both read replies the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from srice.agent.answers import extract_choice, normalize_vqa_answer
from srice.errors import InputError
from srice.eval.items import EvalItem
from srice.eval.vqa import as_answers, exact_match, vqa_accuracy

__all__ = [
    "PopeSummary", "anls", "exact_match", "extract_choice", "mc_accuracy", "normalize_vqa_answer",
    "pope_summary", "relaxed_accuracy", "score", "vqa_accuracy", "yes_no",
]  # fmt: skip

# ---------------------------------------------------------------------------------------------------
# ANLS (DocVQA, InfographicVQA, ST-VQA)


def _levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: str | Sequence[str], tau: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity for one question: the best over the answers of
    ``1 - d`` with ``d = levenshtein / max(len)``, and 0 where ``d >= tau``. Both sides are
    lower-cased, stripped and have their inner whitespace collapsed."""
    guess = " ".join((prediction or "").lower().split())
    best = 0.0
    for answer in as_answers(answers):
        truth = " ".join(answer.lower().split())
        longest = max(len(guess), len(truth))
        distance = _levenshtein(guess, truth) / longest if longest else 0.0
        if distance < tau:
            best = max(best, 1.0 - distance)
    return best


# ---------------------------------------------------------------------------------------------------
# Relaxed accuracy (ChartQA, PlotQA)

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CURRENCY = "$€£¥"


def _to_number(text: str) -> float | None:
    """The number ``text`` states, or None: "1,234.5", "$12", "-$3", "45%" (-> 45, not 0.45), "3."."""
    t = text.strip()
    if t.endswith("%"):
        t = t[:-1].rstrip()
    sign = ""
    if t[:1] in "+-":
        sign, t = t[:1], t[1:].lstrip()
    if t[:1] and t[:1] in _CURRENCY:
        t = t[1:].lstrip()
    t = _THOUSANDS.sub("", t)
    if not _NUMBER.fullmatch(t):
        return None
    return float(sign + t)


def relaxed_accuracy(prediction: str, answer: str | Sequence[str], tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: 1 when prediction and answer are both numbers within
    ``tolerance`` relative error of the answer (inclusive: exactly 5% off counts; a true 0 needs an
    exact 0), otherwise when they match as strings (case-insensitive, stripped, a trailing period
    ignored). With several labels, any may match.

    Numbers may carry thousands commas, a leading currency sign and a trailing ``%``; the percent
    sign is dropped, not divided out, so "45%" and "45" agree (ChartQA labels omit it) and
    "45%" vs "0.45" do not. Numbers inside a sentence are not extracted: ask for a short answer.
    """
    guess = (prediction or "").strip()
    guess_number = _to_number(guess)
    for label in as_answers(answer):
        label_number = _to_number(label)
        if guess_number is not None and label_number is not None:
            if label_number == 0:
                ok = guess_number == 0
            else:
                ok = abs(guess_number - label_number) / abs(label_number) <= tolerance + 1e-9
        else:
            ok = guess.lower().rstrip(".").strip() == label.strip().lower().rstrip(".").strip()
        if ok:
            return 1.0
    return 0.0


def mc_accuracy(prediction: str, answer_letter: str, options: Sequence[str] | None) -> float:
    """1 when the letter ``extract_choice`` reads from the prediction is ``answer_letter``."""
    return float(extract_choice(prediction, options) == answer_letter.strip().upper())


# ---------------------------------------------------------------------------------------------------
# Yes/no and POPE


def yes_no(prediction: str) -> str | None:
    """ "yes" or "no" when the reply starts with that word, or contains only one of the two words;
    None otherwise (neither, or both without a leading one). Negations without "no" ("there is not")
    are not interpreted."""
    words = re.findall(r"[a-z]+", (prediction or "").lower())
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0]
    said = {w for w in words if w in ("yes", "no")}
    return said.pop() if len(said) == 1 else None


@dataclass(frozen=True)
class PopeSummary:
    """POPE's figures over a set of yes/no questions; the positive class is "yes" (object present)."""

    n: int
    accuracy: float  # (true yes + true no) / n; an unparseable reply is wrong
    precision: float  # true yes / replies "yes"
    recall: float  # true yes / questions whose answer is "yes"; an unparseable reply misses
    f1: float
    yes_ratio: float  # replies "yes" / n
    unparsed: int  # replies that were neither yes nor no (see ``yes_no``)


def pope_summary(predictions: Sequence[str], answers: Sequence[str]) -> PopeSummary:
    """POPE accuracy, precision, recall, F1 and yes-ratio.

    A reply ``yes_no`` cannot read is its own case rather than a silent "no" (POPE's original
    script maps anything without "no"/"not" to "yes"; we neither reward nor excuse it): it is wrong
    for accuracy, is not a "yes" for precision and yes-ratio, and is a miss for recall when the truth
    is "yes". Ratios with a zero denominator are 0.
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    tp = fp = tn = unparsed = positives = 0
    for i, (prediction, answer) in enumerate(zip(predictions, answers)):
        truth = str(answer).strip().lower()
        if truth not in ("yes", "no"):
            raise InputError(f"POPE answer {i} is {answer!r}, not yes or no")
        positives += truth == "yes"
        said = yes_no(prediction)
        if said is None:
            unparsed += 1
        elif said == "yes":
            tp += truth == "yes"
            fp += truth == "no"
        else:
            tn += truth == "no"
    n = len(answers)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PopeSummary(
        n=n,
        accuracy=(tp + tn) / n if n else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        yes_ratio=(tp + fp) / n if n else 0.0,
        unparsed=unparsed,
    )


# ---------------------------------------------------------------------------------------------------


def score(item: EvalItem, prediction: str | None) -> float:
    """One prediction for one ``EvalItem``, scored by ``item.metric``. An item without ground
    truth (a benchmark's unlabelled test split) scores 0; check ``item.answers`` to leave such
    items out of averages."""
    prediction = prediction or ""
    answers = item.answers
    if not answers:
        return 0.0
    metric = item.metric
    if metric == "vqa":
        return vqa_accuracy(prediction, answers)
    if metric == "anls":
        return anls(prediction, answers)
    if metric == "relaxed":
        return relaxed_accuracy(prediction, answers)
    if metric == "mc":
        return mc_accuracy(prediction, answers[0], item.options)
    if metric == "exact":
        return exact_match(prediction, answers)
    if metric == "pope":
        return float(yes_no(prediction) == answers[0].strip().lower())
    raise InputError(f"item {item.id}: unknown metric {metric!r}")
