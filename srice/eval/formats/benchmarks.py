"""Each benchmark's field convention, described once as a record: how to recognise its rows, which
columns hold the question, answer and kind, how the answer cell becomes ground truth, and its metric.
Adding a benchmark is adding one ``Benchmark`` to ``BENCHMARKS`` (like one task folder in lmms-eval).

The formats, in the order rows are recognised (first match wins; ``#FORMAT`` forces one):

=======  ===================================================================  =======
format   columns                                                              metric
=======  ===================================================================  =======
chartqa  ``label`` with ``query``/``question``                                relaxed
docvqa   ``answers`` with ``questionId`` (also InfographicVQA)                anls
vqav2    ``multiple_choice_answer``, or ``answers`` as ``{"answer": ...}``    vqa
textvqa  ``answers`` (a list of strings)                                      vqa
mc       option columns ``A``, ``B``, ..., or a ``choices``/``options`` list  mc
pope     ``answer``, yes or no (any case) on every row                        pope
exact    ``answer`` otherwise                                                 exact
=======  ===================================================================  =======

Multiple-choice rows take their options from ``A``, ``B``, ... or a ``choices``/``options`` list, and
their answer as a letter, an option's text, or (with a choices list, as in ScienceQA) a 0-based
index; a ``hint`` is prepended to the question.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from srice.errors import InputError
from srice.eval.formats.fields import LETTERS, first, letter_columns, mc_letter, options, text

Peek = Callable[[str], Iterable]  # a column's values, in row order, read lazily


@dataclass(frozen=True)
class Columns:
    """Where one data set keeps what a benchmark needs (resolved from its column names)."""

    question: str | None
    answer: str | None
    kind: str | None
    letters: tuple[str, ...]  # option columns A, B, ...
    choices: str | None  # an options-list column


@dataclass(frozen=True)
class Benchmark:
    name: str
    metric: str
    recognise: Callable[[set[str], Peek | None], bool]  # rows with these columns follow this format
    truth: Callable[..., tuple[list, tuple[str, ...] | None]]  # (answer cell, row, Columns, where)
    answer: tuple[str, ...] = ("answer", "answers")  # answer columns, the first present is read
    question: tuple[str, ...] = ("question",)
    kinds: tuple[str, ...] = ()  # columns naming the question kind, after "kind"
    needs_answer: bool = True  # the answer column must exist (test splits without one are loaded too)
    hint: bool = False  # a "hint" column is prepended to the question

    def columns(self, names: Sequence[str]) -> Columns:
        return Columns(
            question=first(names, *self.question),
            answer=first(names, *self.answer),
            kind=first(names, "kind", *self.kinds),
            letters=tuple(letter_columns(names)),
            choices=first(names, "choices", "options"),
        )

    def missing(self, names: Sequence[str]) -> list[str]:
        """What rows with ``names`` lack for this format."""
        c = self.columns(names)
        need = {"image": "image" if "image" in names else None, "question": c.question}
        if self.needs_answer:
            need["answer"] = c.answer
        if self.name == "mc" and not (c.letters or c.choices):
            need["options (A, B, ... or choices)"] = None
        return [name for name, column in need.items() if column is None]


# -- answer cells -> ground truth ---------------------------------------------------------------------


def vqa_answers(value) -> list:
    """TextVQA/VQAv2 answers: strings, ``{"answer": ...}`` dicts, or one dict of lists."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get("answer") or []
    if isinstance(value, str):
        return [value]
    return [v.get("answer") if isinstance(v, dict) else v for v in value]


def _vqa(raw, row, c: Columns, where: str):
    return vqa_answers(raw), None


def _listed(raw, row, c: Columns, where: str):
    return ([] if raw is None else [raw] if isinstance(raw, str) else list(raw)), None


def _plain(raw, row, c: Columns, where: str):
    return ([] if raw is None else [raw] if not isinstance(raw, list) else raw), None


def _choice(raw, row, c: Columns, where: str):
    choices = options(row[c.choices], where) if c.choices else None
    if choices is None:
        values = [text(row[k]) for k in c.letters]
        choices = tuple(values[: max((i + 1 for i, v in enumerate(values) if v), default=0)])
    if not choices:
        raise InputError(f"{where}: a multiple-choice row with no options")
    if isinstance(raw, int) and not isinstance(raw, bool) and c.choices:
        if not 0 <= raw < len(choices):
            raise InputError(f"{where}: answer index {raw} outside {len(choices)} choices")
        return [LETTERS[raw]], choices
    return ([mc_letter(raw, choices, where)] if text(raw) else []), choices


def _yes_no(raw, row, c: Columns, where: str):
    truth = [text(raw).lower()] if text(raw) else []
    if truth and truth[0] not in ("yes", "no"):
        raise InputError(f"{where}: POPE answer {raw!r} is not yes or no")
    return truth, None


# -- recognising rows ------------------------------------------------------------------------------


def _answers_are_records(peek: Peek | None) -> bool:
    """Whether the first non-empty ``answers`` cell holds ``{"answer": ...}`` records (VQAv2)."""
    if peek is None:
        return False
    for value in peek("answers"):
        if value:
            return isinstance(value, dict) or isinstance(value[0], dict)
    return False


def _all_yes_no(peek: Peek | None) -> bool:
    if peek is None:
        return False
    values = [text(v).lower() for v in peek("answer")]
    return bool(values) and all(v in ("yes", "no") for v in values)


_VQA_ANSWERS = ("answers", "multiple_choice_answer", "answer")
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "chartqa", "relaxed", lambda has, peek: "label" in has and bool(has & {"query", "question"}),
        _listed, answer=("label", "answer", "answers"), question=("query", "question"),
        kinds=("human_or_machine", "type"),
    ),
    Benchmark(
        "docvqa", "anls", lambda has, peek: {"answers", "questionId"} <= has, _listed,
        answer=_VQA_ANSWERS, kinds=("question_types",), needs_answer=False,
    ),
    Benchmark(
        "vqav2", "vqa",
        lambda has, peek: "multiple_choice_answer" in has or "answers" in has and _answers_are_records(peek),
        _vqa, answer=_VQA_ANSWERS, kinds=("answer_type", "question_type"),
    ),
    Benchmark("textvqa", "vqa", lambda has, peek: "answers" in has, _vqa, answer=_VQA_ANSWERS),
    Benchmark(
        "mc", "mc", lambda has, peek: {"A", "B"} <= has or bool(has & {"choices", "options"}), _choice,
        kinds=("category",), hint=True,
    ),
    Benchmark(
        "pope", "pope", lambda has, peek: "answer" in has and _all_yes_no(peek), _yes_no, kinds=("category",)
    ),
    Benchmark("exact", "exact", lambda has, peek: "answer" in has, _plain),
)  # fmt: skip
BY_NAME = {b.name: b for b in BENCHMARKS}
FORMATS = tuple(BY_NAME)


def benchmark(name: str) -> Benchmark:
    if name not in BY_NAME:
        raise InputError(f"unknown data format {name!r}; known: {', '.join(FORMATS)}")
    return BY_NAME[name]


def detect_format(columns: Sequence[str], peek: Peek | None = None) -> str:
    """The first benchmark whose rows look like ``columns`` (``peek`` reads a column's values where
    the names alone cannot tell: VQAv2 from TextVQA, POPE from generic yes/no data)."""
    has = set(columns)
    for b in BENCHMARKS:
        if b.recognise(has, peek):
            return b.name
    raise InputError(
        "cannot tell the benchmark format from the columns "
        f"{', '.join(columns)}: expected answers, answer, label or option columns; "
        f"or name one with '#FORMAT' ({', '.join(FORMATS)})"
    )
