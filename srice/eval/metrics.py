"""Scoring one prediction against a benchmark's ground truth, one function per benchmark convention.

Every scorer returns a float in [0, 1] for one question; ``score`` dispatches on ``EvalItem.metric``.
POPE is the one set-level metric (precision/recall/F1 over yes answers): ``pope_summary``.

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
from dataclasses import dataclass

from srice.errors import InputError
from srice.eval.items import EvalItem

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


def _as_answers(answers: str | Sequence[str]) -> list[str]:
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
    truths = [normalize_vqa_answer(a) for a in _as_answers(answers)]
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
    return float(any(guess == normalize_vqa_answer(a) for a in _as_answers(answers)))


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
    for answer in _as_answers(answers):
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
    for label in _as_answers(answer):
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
