"""The VQA soft accuracy and its answer normalisation, exactly as the official VQA evaluation
computes them (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, current version),
quirks included; TextVQA uses the same script.

Per question, with the prediction and the (usually ten) human answers:

1. newlines and tabs become spaces and both sides are stripped; nothing else yet;
2. only when the human answers are not all identical are both sides normalised
   (``normalize_vqa_answer``); when all ten agree, the prediction must equal their text as it is:
   "two" against ten "2" scores 0, and so does "Red" against ten "red" (the official quirk);
3. accuracy = the mean, over leaving out each human answer in turn, of
   ``min(1, matches among the others / 3)``: 0.3, 0.6, 0.9 and 1.0 for k = 1, 2, 3, 4+ of ten.

**Normalisation** (``normalize_vqa_answer``), the official ``processPunctuation`` then
``processDigitArticle``:

- punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches a
  space somewhere in the text or when the text holds a comma between two digits, and becomes a space
  otherwise (``"t-shirt"`` -> ``"t shirt"``, ``"1,000"`` -> ``"1000"``); apostrophes, colons and
  ``%$&#*`` are kept;
- periods not followed by a digit are removed, at most 32 of them (the script passes ``re.UNICODE``
  where ``re.sub`` takes its count);
- then, lower-cased word by word: number words zero..ten and ``none`` become digits, the articles
  ``a``, ``an``, ``the`` are dropped, and contractions typed without apostrophes are spelled out by
  the official table (``"dont"`` -> ``"don't"``; keys with capitals, which can never match a
  lower-cased word, are left out, and so are entries that map a word to itself).

``normalise_answers=True`` gives the variant srice used before: both sides always normalised, which
only ever helps a right answer written differently ("Two." for "2"). With one human answer (not a
case of the official data) the leave-one-out mean is empty and would always give 0; srice scores a
normalised exact match there (1 or 0). No answers score 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_PERIODS_REMOVED = 32
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# The official table of contractions typed without apostrophes, spelled out. Most are keyed by the
# form without any apostrophe ("dont" -> "don't"); the double contractions by each form that lacks
# one of their apostrophes ("couldnt've" and "couldn'tve" -> "couldn't've").
_SPELLED = (
    "'twas", "ain't", "aren't", "can't", "could've", "couldn't", "didn't", "doesn't", "don't", "hadn't",
    "hasn't", "haven't", "he'd", "he's", "how'd", "how'll", "how's", "isn't", "it'd", "it'll", "ma'am",
    "might've", "mightn't", "must've", "mustn't", "needn't", "not've", "o'clock", "oughtn't", "shan't",
    "should've", "shouldn't", "somebody'll", "somebody's", "someone'd", "someone'll", "someone's",
    "something'd", "something'll", "that's", "there'd", "there're", "there's", "they'd", "they'll",
    "they're", "they've", "wasn't", "we've", "weren't", "what'll", "what're", "what's", "what've",
    "when's", "where'd", "where's", "where've", "who'd", "who'll", "who's", "who've", "why'll", "why're",
    "why's", "won't", "would've", "wouldn't", "y'all", "you'd", "you'll", "you're", "you've",
)  # fmt: skip
_SPELLED_TWICE = (
    "couldn't've", "hadn't've", "he'd've", "it'd've", "mightn't've", "'ow's'at", "she'd've", "shouldn't've",
    "somebody'd've", "someone'd've", "something'd've", "there'd've", "they'd've", "we'd've", "who'd've",
    "wouldn't've", "y'all'll", "y'all'd've", "you'd've",
)  # fmt: skip
CONTRACTIONS = {s.replace("'", ""): s for s in _SPELLED}
CONTRACTIONS |= {s[:i] + s[i + 1 :]: s for s in _SPELLED_TWICE for i, c in enumerate(s) if c == "'"}
CONTRACTIONS["somebody'd"] = "somebodyd"  # sic: the official table maps this one the other way


def _clean(text: str) -> str:
    """What the official script does to every answer first: newlines and tabs to spaces, strip."""
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def _punctuation(text: str) -> str:
    joined_number = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        delete = joined_number or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if delete else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_PERIODS_REMOVED)


def _digits_and_articles(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_vqa_answer(text: str) -> str:
    """``text`` normalised as the official VQA evaluation normalises answers (module docstring)."""
    return _digits_and_articles(_punctuation(_clean(text)))


def as_answers(answers: str | Sequence[str]) -> list[str]:
    return [answers] if isinstance(answers, str) else [str(a) for a in answers]


def vqa_accuracy(prediction: str, answers: str | Sequence[str], *, normalise_answers: bool = False) -> float:
    """VQA soft accuracy of ``prediction`` against the human ``answers``, as the official script
    computes it (module docstring); ``normalise_answers=True`` always normalises both sides."""
    truths = [_clean(a) for a in as_answers(answers)]
    if not truths:
        return 0.0
    guess = _clean(prediction or "")
    if normalise_answers or len(set(truths)) > 1:
        truths = [normalize_vqa_answer(t) for t in truths]
        guess = normalize_vqa_answer(guess)
    if len(truths) == 1:
        return float(normalize_vqa_answer(guess) == normalize_vqa_answer(truths[0]))
    matches = sum(t == guess for t in truths)
    return sum(min(1.0, (matches - (t == guess)) / 3) for t in truths) / len(truths)


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1 when the VQA-normalised prediction equals any VQA-normalised answer."""
    guess = normalize_vqa_answer(prediction or "")
    return float(any(guess == normalize_vqa_answer(a) for a in as_answers(answers)))
