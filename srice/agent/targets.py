"""Parsing the model's region-of-interest reply into target phrases, tolerantly and without eval.

Models answer "which objects does the question need?" in every shape: a JSON list, a JSON object
with a list inside, a comma list, bullet lines, prose, or nothing. Anything we cannot read becomes
``[]``, which the agent treats as "the whole image": a bad reply costs a pathway its focus, never
the question.
"""

from __future__ import annotations

import json
import re

MAX_REPLY_CHARS = 2000  # parsing cost stays bounded whatever the model emits
MAX_TARGETS = 5
MAX_TARGET_CHARS = 40
NOTHING = {
    "",
    "none",
    "nothing",
    "n/a",
    "na",
    "null",
    "whole image",
    "the whole image",
    "entire image",
    "image",
}
# Replies that talk instead of naming things ("I cannot tell", "It depends") start like sentences.
_SENTENCE_STARTS = {"i", "we", "you", "it", "this", "that", "there", "sorry", "unable", "cannot", "no", "yes"}
_ARTICLES = re.compile(r"^(?:the|a|an|some|any)\s+", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_LEAD_IN = re.compile(r"^(?:objects?|regions?|targets?|answer)\s*:\s*", re.IGNORECASE)


def parse_targets(reply: str, max_targets: int = MAX_TARGETS) -> list[str]:
    """Target phrases from ``reply``: lower-case, de-duplicated, at most ``max_targets``."""
    text = _FENCE.sub(" ", (reply or "")[:MAX_REPLY_CHARS]).strip()
    items = _from_json(text)
    if items is None:
        items = _from_text(text)
    out: list[str] = []
    for item in items:
        phrase = _clean(item)
        if phrase and phrase not in NOTHING and phrase not in out:
            out.append(phrase)
        if len(out) == max_targets:
            break
    return out


def _from_json(text: str) -> list[str] | None:
    start = text.find("[")
    end = text.rfind("]")
    candidates = [text[start : end + 1]] if 0 <= start < end else []
    if text.startswith("{"):
        candidates.insert(0, text[: text.rfind("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):  # RecursionError: brackets nested beyond the parser
            continue
        items = _strings(value)
        if items is not None:
            return items
    return None


MAX_DEPTH = 8  # a reply nested deeper than this names no objects


def _strings(value, depth: int = 0) -> list[str] | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("objects", "targets", "regions", "items", "name", "object", "label", "target"):
            if key in value:
                return _strings(value[key], depth + 1)
        return None
    if isinstance(value, list):
        out = []
        for v in value:
            inner = _strings(v, depth + 1)
            if inner:
                out.extend(inner)
        return out
    return None


def _from_text(text: str) -> list[str]:
    lines = [_BULLET.sub("", line) for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        line = _LEAD_IN.sub("", lines[0])
        if len(line.split()) > 12 and "," not in line:  # prose, not a list
            return []
        return re.split(r"\s*(?:,|;|\band\b|/)\s*", line)
    return [_LEAD_IN.sub("", line) for line in lines]


def _clean(item: str) -> str:
    phrase = re.sub(r"[\"'`\[\]{}()<>]", "", str(item)).strip().strip(".:!?").strip().lower()
    phrase = re.sub(r"\s+", " ", _ARTICLES.sub("", phrase))
    words = phrase.split()
    if len(phrase) > MAX_TARGET_CHARS or len(words) > 5 or (words and words[0] in _SENTENCE_STARTS):
        return ""
    return phrase
