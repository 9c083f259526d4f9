"""Reading the model's answers: the official VQA answer normalisation, which option letter a reply
chooses, and option lists that make sense. The agent reads its pathways' replies with these; the
evaluator scores with the same (``srice.eval``).

Normalisation (``normalize_vqa_answer``) is the official VQA evaluation's, described in
``srice.eval.vqa``: punctuation, at most 32 periods, number words, articles, the official
contraction table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from srice.agent.prompts import LETTERS
from srice.errors import InputError
from srice.images import check_text

# ---------------------------------------------------------------------------------------------------
# VQA answer normalisation

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


def clean_answer(text: str) -> str:
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
    return _digits_and_articles(_punctuation(clean_answer(text)))


def begins_answer(candidate: str, truths: Sequence[str]) -> bool:
    """Whether ``candidate`` (a first answer token, say) begins one of the true answers, both sides
    VQA-normalised: how an open answer's prediction set (over first tokens) is said to hold the truth,
    and which top tokens carry the truth's probability when the uncertainty score is calibrated."""
    piece = normalize_vqa_answer(candidate)
    return bool(piece) and any(normalize_vqa_answer(t).startswith(piece) for t in truths)


# ---------------------------------------------------------------------------------------------------
# Multiple choice

_LETTER_FOLLOWERS = frozenset(
    "is was seems appears looks matches would should could might must can will because since as "
    "fits describes".split()
)
_AMBIGUOUS = frozenset("aAiI")
_BRACKETED = r"[(\[]\s*([A-Za-z])\s*[)\]]"
_WHOLE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\].:]?")
_LEADING = re.compile(rf"{_BRACKETED}|([A-Za-z])[).:](?=\s|$)")
_ANSWER_CUE = re.compile(
    r"\b(?:answer|(?:correct|right|best)\s+(?:option|choice))\b\s*"
    r"(?:is|would\s+be|should\s+be|will\s+be|=)?\s*[:=]?\s*(?:option|choice)?\s*"
    rf"(?:{_BRACKETED}|([A-Za-z])(?![A-Za-z0-9']))",
    re.IGNORECASE,
)
_OPTION_CUE = re.compile(
    rf"\b(?:option|choice)\s*(?:{_BRACKETED}|([A-Za-z])(?![A-Za-z0-9']))",
    re.IGNORECASE,
)
_ANY_BRACKETED = re.compile(_BRACKETED)
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")


def _letters(options: Sequence[str] | None) -> str:
    if not options:
        return "ABCD"
    return LETTERS[: len(options)]


def _is_letter_here(letter: str, rest: str) -> bool:
    """Whether an unbracketed ``letter`` followed by ``rest`` is a choice rather than a word."""
    if letter not in _AMBIGUOUS:
        return True
    rest = rest.lstrip()
    if not rest or not rest[0].isalnum():
        return True
    next_word = re.match(r"[A-Za-z]+", rest)
    return bool(next_word) and next_word.group(0).lower() in _LETTER_FOLLOWERS


def _found(matches, text: str, letters: str) -> list[str]:
    out = []
    for m in matches:
        bracketed, bare = m.group(1), m.group(2)
        if bracketed:
            letter = bracketed
        elif bare and _is_letter_here(bare, text[m.end() :]):
            letter = bare
        else:
            continue
        if letter.upper() in letters:
            out.append(letter.upper())
    return out


def _unique(found: list[str]) -> str | None:
    return found[0] if len(set(found)) == 1 else None


def extract_choice(prediction: str, options: Sequence[str] | None = None) -> str | None:
    """The option letter a free-text reply chooses, or None. Letters run A.. over ``options``
    (A-D when no options are given). Evidence is tried strongest first; the first rule that yields
    exactly one letter wins:

    1. the whole reply is a letter, any case: "B", "b", "(B)", "B.", "B:";
    2. the reply starts with a delimited letter: "B) blue", "(b) blue", "B. blue", "B: blue";
    3. an answer cue: "The answer is B", "Answer: b", "the correct option is (C)"; when several
       cues disagree, the last one (replies conclude at the end);
    4. a bracketed letter anywhere: "... so (C)";
    5. "option C" / "choice C" anywhere;
    6. a standalone capital letter anywhere: "I think B";
    7. the reply equals one option's text (both VQA-normalised);
    8. exactly one option's text occurs in the reply (whole words; an option inside another
       matching option is dropped: "dark red" beats "red"), or else the reply occurs in exactly one
       option's text.

    Article rule: in rules 2-6 an undelimited "A"/"I" (or lower-case "a"/"i") counts as a letter
    only when no ordinary word follows it ("A.", "answer is a", "A is correct", "A because ...");
    "A red circle" is the article, so the reply falls through to the option texts (rule 7/8), which
    read it as the option "red circle". Lower-case letters are otherwise accepted only in rules
    1-3, where the context makes them unambiguous.
    """
    text = (prediction or "").strip()
    if not text:
        return None
    letters = _letters(options)
    whole = _WHOLE.fullmatch(text)
    if whole:
        return whole.group(1).upper() if whole.group(1).upper() in letters else None
    leading = _LEADING.match(text)  # the delimiter makes even "A." / "a)" a letter
    if leading and (leading.group(1) or leading.group(2)).upper() in letters:
        return (leading.group(1) or leading.group(2)).upper()
    found = _found(_ANSWER_CUE.finditer(text), text, letters)
    if found:
        return found[-1]
    for rule in (_ANY_BRACKETED, _OPTION_CUE, _STANDALONE):
        matches = list(rule.finditer(text))
        if rule is _STANDALONE:
            found = [m.group(1) for m in matches if _is_letter_here(m.group(1), text[m.end() :])]
            found = [f for f in found if f in letters]
        elif rule is _ANY_BRACKETED:
            found = [m.group(1).upper() for m in matches if m.group(1).upper() in letters]
        else:
            found = _found(matches, text, letters)
        letter = _unique(found)
        if letter:
            return letter
    return _choice_by_text(text, options) if options else None


def _choice_by_text(text: str, options: Sequence[str]) -> str | None:
    reply = normalize_vqa_answer(text)
    normalised = [normalize_vqa_answer(o) for o in options]
    exact = [i for i, o in enumerate(normalised) if o and o == reply]
    if len(exact) == 1:
        return chr(ord("A") + exact[0])
    if not reply:
        return None
    inside = [i for i, o in enumerate(normalised) if o and f" {o} " in f" {reply} "]
    inside = [
        i for i in inside if not any(j != i and f" {normalised[i]} " in f" {normalised[j]} " for j in inside)
    ]
    if len(inside) == 1:
        return chr(ord("A") + inside[0])
    if not inside:
        holders = [i for i, o in enumerate(normalised) if f" {reply} " in f" {o} "]
        if len(holders) == 1:
            return chr(ord("A") + holders[0])
    return None


def check_options(options: Sequence[str] | None) -> tuple[str, ...] | None:
    """The options, stripped, or None for an open question; an ``InputError`` unless there are at least
    two distinct (case-insensitively), non-empty ones, and at most one per letter."""
    if not options:
        return None
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise InputError(f"multiple choice needs non-empty text options, got {list(options)!r}")
    stripped = tuple(" ".join(o.split()) for o in options)
    for option in stripped:
        check_text(option, "an option")
    if len(stripped) < 2 or len({o.casefold() for o in stripped}) != len(stripped):
        raise InputError(f"multiple choice needs at least two distinct options, got {list(options)!r}")
    if len(stripped) > len(LETTERS):
        raise InputError(f"multiple choice takes at most {len(LETTERS)} options, got {len(stripped)}")
    return stripped


def option_letter(reply: str, options: Sequence[str], most_likely: str) -> tuple[str, bool]:
    """The option a reply chooses, always one of the given letters: the letter it reads as
    (``extract_choice``), else ``most_likely`` (the best given option by the answer's own
    probabilities); the flag says whether it was mapped so."""
    letter = extract_choice(reply, options)
    return (letter, False) if letter else (most_likely, True)
