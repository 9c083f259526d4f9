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


def _reference_number(text: str) -> float | None:
    """A number as the reference reads one: Python's ``float`` of the text (so " 45", "12.", "1e2"
    and "1_000" are numbers; "1,000" and "$12" are not), trailing "%" signs dropped and the value
    divided by 100 ("45%" is 0.45); None when ``float`` refuses it."""
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str | None, answer: str | Sequence[str], tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy, the rule of lmms-eval's and Qwen-VL's ``relaxed_correctness`` (the
    published ChartQA numbers): 1 when the prediction and the label read as numbers
    (``_reference_number``) and the prediction is within ``tolerance`` relative change of the label
    (inclusive, in floating point: 0.315 against 0.3 is 0.05000000000000004 off and misses); when
    either is no number, or the label is 0 (no relative change exists), 1 when the two are equal
    after lowercasing, nothing else removed ("0.0" misses "0", "Yes." misses "yes"). With several
    labels any may match (Qwen-VL's maximum over its annotations). Numbers inside a sentence are not
    extracted: ask for a short answer."""
    guess = prediction or ""
    number = _reference_number(guess)
    for label in as_answers(answer):
        target = _reference_number(label)
        if number is not None and target:  # a target of 0, or no number, is compared as text
            ok = abs(number - target) / abs(target) <= tolerance
        else:
            ok = guess.lower() == label.lower()
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
