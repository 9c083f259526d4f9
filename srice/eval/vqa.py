"""VQA answer normalisation and the VQA soft accuracy, as the official VQA evaluation defines them.

**VQA normalisation** (``normalize_vqa_answer``), written from the published description of the
VQA evaluation (VQA v1/v2, also used by TextVQA), applied the same way to predictions and answers:
1. newlines and tabs become spaces; the text is stripped and lower-cased;
2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches a
   space somewhere in the text (``"red, blue"`` -> ``"red blue"``) or when the text contains a comma
   between two digits (``"1,000"`` -> ``"1000"``); otherwise it becomes a space (``"t-shirt"`` ->
   ``"t shirt"``). Apostrophes, colons and ``%``/``$``/``&``/``#``/``*`` are kept, as in the original;
3. a period is removed unless a digit follows it, so decimals survive (``"3.5"``) while sentence
   periods go (``"yes."`` -> ``"yes"``, ``"3."`` -> ``"3"``);
4. word by word: number words zero..ten and ``none`` become digits (``"two"`` -> ``"2"``,
   ``"none"`` -> ``"0"``), the articles ``a``, ``an``, ``the`` are dropped, and common contractions
   written without their apostrophe are restored (``"dont"`` -> ``"don't"``; our own table,
   ``CONTRACTIONS``, limited to forms that are not also ordinary words: ``its``, ``id``, ``ill``,
   ``were``, ``wed``, ``shed``, ``well`` are left alone);
5. whitespace is collapsed to single spaces.

One deliberate difference from the original script: it skips normalising a prediction when all ten
annotators gave the same answer; we always normalise both sides, which only ever helps a correct
answer written differently (``"Two."`` for ``"2"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# ---------------------------------------------------------------------------------------------------
# VQA normalisation

_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
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
# Contractions typed without the apostrophe -> the spelled form. Keys are lower-case (normalisation
# lower-cases first) and never an ordinary English word.
CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "couldve": "could've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hes": "he's",
    "hows": "how's",
    "im": "i'm",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "ive": "i've",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "oclock": "o'clock",
    "shant": "shan't",
    "shes": "she's",
    "shouldnt": "shouldn't",
    "shouldve": "should've",
    "thats": "that's",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "werent": "weren't",
    "weve": "we've",
    "whatre": "what're",
    "whats": "what's",
    "whens": "when's",
    "wheres": "where's",
    "whos": "who's",
    "whys": "why's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "wouldve": "would've",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}


def normalize_vqa_answer(text: str) -> str:
    """``text`` normalised as the VQA evaluation does (rules in the module docstring)."""
    text = " ".join(str(text).split()).lower()
    joined_number = _DIGIT_COMMA_DIGIT.search(text) is not None
    table = {}
    for mark in _PUNCTUATION:
        if mark in text:
            delete = joined_number or f"{mark} " in text or f" {mark}" in text
            table[ord(mark)] = None if delete else " "
    text = _PERIOD_NOT_BEFORE_DIGIT.sub("", text.translate(table))
    words = []
    for word in text.split():
        word = NUMBER_WORDS.get(word, word)
        if word in ARTICLES:
            continue
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def as_answers(answers: str | Sequence[str]) -> list[str]:
    return [answers] if isinstance(answers, str) else [str(a) for a in answers]


def vqa_accuracy(prediction: str, answers: str | Sequence[str]) -> float:
    """VQA soft accuracy: the mean, over leaving out each human answer in turn, of
    ``min(1, matches among the others / 3)``.

    With ten answers and k matching the prediction this is 0.3, 0.6, 0.9 and 1.0 for k = 1, 2, 3, 4+.
    With fewer than ten answers the same leave-one-out mean is taken over the answers there are (so
    two identical answers give at most 1/3: fewer annotators, less certainty); a single answer,
    where leaving it out would leave nothing, scores an exact normalised match (1 or 0). No answers
    score 0.
    """
    truths = [normalize_vqa_answer(a) for a in as_answers(answers)]
    if not truths:
        return 0.0
    guess = normalize_vqa_answer(prediction or "")
    if len(truths) == 1:
        return float(guess == truths[0])
    matches = sum(t == guess for t in truths)
    total = 0.0
    for truth in truths:
        others = matches - (truth == guess)
        total += min(1.0, others / 3)
    return total / len(truths)


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1 when the VQA-normalised prediction equals any VQA-normalised answer."""
    guess = normalize_vqa_answer(prediction or "")
    return float(any(guess == normalize_vqa_answer(a) for a in as_answers(answers)))
