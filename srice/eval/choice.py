"""Which option letter a free-text reply chooses (multiple-choice scoring); see ``extract_choice``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from srice.eval.vqa import normalize_vqa_answer

# ---------------------------------------------------------------------------------------------------
# Multiple choice

# A capital "A" or "I" (or a lower-case "a"/"i") followed by one of these words is a letter ("A is
# correct", "A because ..."); followed by any other word it is the article or pronoun ("A red circle").
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
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]


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


def mc_accuracy(prediction: str, answer_letter: str, options: Sequence[str] | None) -> float:
    """1 when the letter ``extract_choice`` reads from the prediction is ``answer_letter``."""
    return float(extract_choice(prediction, options) == answer_letter.strip().upper())
