"""Every prompt srice sends, in one place.

Each stage's messages put what the stages of one question share first (image, question) and the
stage-specific instruction last, so vLLM's prefix cache prefills the image once per question.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from srice.serving.types import Message, Request

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def question_text(question: str, options: Sequence[str] | None = None) -> str:
    if not options:
        return question
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options")
    lines = [question, *(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))]
    return "\n".join(lines)


def answer_instruction(options: Sequence[str] | None = None) -> str:
    if options:
        return "\nAnswer with the option's letter from the given choices directly."
    return "\nAnswer the question using a single word or phrase."


def direct_request(
    image: Image.Image,
    question: str,
    options: Sequence[str] | None = None,
    *,
    max_tokens: int = 16,
    top_logprobs: int = 5,
) -> Request:
    """The direct pathway: the full image, the question, and the answer instruction."""
    text = question_text(question, options) + answer_instruction(options)
    return Request((Message.user(image, text),), max_tokens=max_tokens, top_logprobs=top_logprobs)
