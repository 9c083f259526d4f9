"""Field helpers every format shares: cell text, option lists, answer letters, image failures."""

from __future__ import annotations

import string
from collections.abc import Sequence

from srice.errors import InputError

LETTERS = string.ascii_uppercase


def text(value) -> str:
    """A cell as stripped text; None is "", a whole float loses its ".0" (pandas reads ids as floats)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def first(columns: Sequence[str], *names: str) -> str | None:
    """The first of ``names`` that is among ``columns``."""
    return next((n for n in names if n in columns), None)


def letter_columns(columns: Sequence[str]) -> list[str]:
    """The option columns A, B, C, ... present without a gap from A."""
    letters = [c for c in LETTERS if c in columns]
    return letters[: next((i for i, c in enumerate(letters) if c != LETTERS[i]), len(letters))]


def mc_letter(answer, options: Sequence[str], where: str) -> str:
    """``answer`` (a letter, "(B)", or an option's text) as the option's letter."""
    value = text(answer)
    bare = value.strip("()[]. ").upper()
    if len(bare) == 1 and bare in LETTERS[: len(options)]:
        return bare
    loose = " ".join(value.lower().split())
    for hits in (
        [i for i, option in enumerate(options) if option == value],
        [i for i, option in enumerate(options) if " ".join(option.lower().split()) == loose],
    ):
        if len(hits) == 1:
            return LETTERS[hits[0]]
    raise InputError(
        f"{where}: answer {value!r} is neither an option letter (A-{LETTERS[len(options) - 1]}) "
        "nor the text of one option"
    )


def options(value, where: str) -> tuple[str, ...] | None:
    """An options cell (a list, or an object keyed A, B, ...) as a tuple; empty or null is None."""
    if value is None:
        return None
    if isinstance(value, dict):
        keys = sorted(value)
        if keys != list(LETTERS[: len(keys)]):
            raise InputError(f"{where}: options as an object need keys A, B, C, ... in order, got {keys}")
        value = [value[k] for k in keys]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: 'options' must be a list or null, got {type(value).__name__}")
    if not value:
        return None
    if len(value) > len(LETTERS):
        raise InputError(f"{where}: {len(value)} options; at most {len(LETTERS)}")
    return tuple(text(v) for v in value)


def image_error(meta: dict, why: str) -> bytes:
    """An empty image whose reason travels in ``meta["image_error"]``: the evaluator records the
    failure for that item instead of the loader rejecting the file."""
    meta["image_error"] = why
    return b""


def with_hint(question: str, hint, blank: tuple[str, ...] = ("nan", "none")) -> str:
    """The question with a ``hint`` cell prepended as ``"Hint: ...\\n"`` (VLMEvalKit's convention);
    a hint that reads as one of ``blank`` (pandas' and Python's missing values) is none."""
    hint = text(hint)
    return f"Hint: {hint}\n{question}" if hint and hint.lower() not in blank else question
