"""Every prompt srice sends, in one place.

Each stage's message is [full image, question, stage-specific text (and picture)], so the stages of
one question share their longest prefix (image, then question) and vLLM's prefix cache prefills the
image once per question, not once per pathway.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from srice.serving.types import Message, Request

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

REGION_INSTRUCTION = (
    "\nWhich objects or regions of the image must be looked at closely to answer? "
    'Reply with a JSON list of short object names, e.g. ["red car", "street sign"], or [] if the whole '
    "image is needed."
)
CROP_INTRO = "\nA zoomed view of the regions relevant to the question:"
BOXES_INTRO = "\nThe same image with the regions relevant to the question marked:"
TEXT_INTRO = "\nText read in this view:"
ZOOM_INTRO = "\nA zoomed view of part of the image:"


def question_text(question: str, options: Sequence[str] | None = None) -> str:
    if not options:
        return question
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options")
    return "\n".join([question, *(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))])


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
    temperature: float = 0.0,
) -> Request:
    """The direct pathway: the full image, the question, and the answer instruction."""
    content = (image, question_text(question, options), answer_instruction(options))
    return Request((Message("user", content),), max_tokens, temperature, top_logprobs)


def region_request(
    image: Image.Image, question: str, options: Sequence[str] | None = None, *, max_tokens: int = 48
) -> Request:
    """SRICE step 2: ask which regions the question needs (parsed by ``srice.agent.targets``)."""
    content = (image, question_text(question, options), REGION_INSTRUCTION)
    return Request((Message("user", content),), max_tokens=max_tokens, top_logprobs=0)


def pathway_request(
    image: Image.Image,
    view: Image.Image,
    question: str,
    options: Sequence[str] | None = None,
    *,
    kind: str = "crop",
    max_tokens: int = 16,
    top_logprobs: int = 5,
    texts: Sequence[str] = (),
    temperature: float = 0.0,
) -> Request:
    """SRICE step 3: the full image and question, then the tool's view (a zoomed crop or marked
    boxes) and, from a tool that reads text (OCR), the text it read there, quoted."""
    intro = CROP_INTRO if kind == "crop" else BOXES_INTRO
    read = (text_read(texts),) if texts else ()
    content = (image, question_text(question, options), intro, view, *read, answer_instruction(options))
    return Request((Message("user", content),), max_tokens, temperature, top_logprobs)


def zoom_request(
    image: Image.Image,
    view: Image.Image,
    question: str,
    options: Sequence[str] | None = None,
    targets: Sequence[str] = (),
) -> Request:
    """The zoom tree's question about one sub-view (``srice.agent.zoomtree``): is what the question
    asks about in it? One token, its yes/no logprobs read as the likelihood. Image and question come
    first, as in every other stage, so the prefix cache serves them."""
    if targets:
        ask = "\nIs there " + " or ".join(f"a {t}" for t in targets) + " in this view? Answer yes or no."
    else:
        ask = "\nIs what the question asks about in this view? Answer yes or no."
    content = (image, question_text(question, options), ZOOM_INTRO, view, ask)
    return Request((Message("user", content),), max_tokens=1, top_logprobs=20)


def text_read(texts: Sequence[str]) -> str:
    """The line that gives the model what a text-reading tool read in a view, each string quoted."""
    return TEXT_INTRO + " " + "; ".join(f'"{t}"' for t in texts)


def prompt_text(request: Request) -> str:
    """The request's text with images as <image>: what the trace shows as the prompt."""
    return "".join(p if isinstance(p, str) else "<image>" for m in request.messages for p in m.content)
