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

**Normalisation** (``srice.agent.answers.normalize_vqa_answer``), the official
``processPunctuation`` then ``processDigitArticle``:

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

from collections.abc import Sequence

from srice.agent.answers import clean_answer as _clean
from srice.agent.answers import normalize_vqa_answer


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
