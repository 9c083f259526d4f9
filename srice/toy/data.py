"""Training examples for the toy MLLM, drawn from the synthetic world in the agent's own prompt formats.

The toy model must play every role the SRICE agent gives the MLLM, in exactly the words the agent
uses (``srice.agent.prompts``), so it is trained on three kinds of example per synthetic question:

- ``direct``: the full image and the question, answered;
- ``crop``: the full image, the question and a zoomed crop built by ``srice.agent.visual.crop_regions``
  around what a shape detector would return for the question's target (every object of that shape,
  boxes jittered), answered. In a share of them the "detector" missed and the crop shows other
  objects or nothing useful: the right answer stays the same, so the model learns to trust a crop
  only when the object asked about is in it, and to say so through its uncertainty;
- ``region``: the full image, the question and the region instruction, answered with the JSON list
  of the shapes the question is about (what the agent parses into detector targets).

Images are rendered at their synthetic size (672-1344 px) and shrunk by the model's processor to its
image-token budget, exactly as at inference, so tiny objects stay unreadable in the full view
however long training runs, and readable in a crop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from srice.agent import prompts
from srice.agent.visual import Crop, crop_regions
from srice.synth import SynthKnobs, make_image
from srice.synth.questions import TEXT_KINDS
from srice.synth.scene import SHAPES, Scene
from srice.tools.regions import Regions

ROLES = ("direct", "crop", "region")


@dataclass(frozen=True)
class Example:
    content: tuple  # the user message's parts (str | PIL image), as the agent sends them
    answer: str  # the assistant's reply
    role: str  # direct | crop | region
    record: dict  # the synthetic question it came from


def targets_of(record: dict) -> list[str]:
    """What the region stage should name: the shape of each object the question is about ("What
    colour is the small star?" -> ["star"], "How many red stars are there?" -> ["star"], "Is the red
    star left or right of the blue circle?" -> ["star", "circle"]); [] when the question names no
    shape ("What shape is the red object?", "How many red objects are there?"). The shape is all the
    detector matches on; copying whole referring expressions out of the question was a copy task the
    toy model had not learnt after 1300 steps (region accuracy 0.01-0.07), picking shapes is a choice
    it can learn."""
    phrases = list(record["meta"]["refers"]) or [record["question"].rstrip("?")]
    shapes = [s for p in phrases for s in _shapes_in(p)]
    return list(dict.fromkeys(shapes))


def _shapes_in(phrase: str) -> list[str]:
    """The shapes a phrase names, singular or plural ("stars", "crosses"), in order."""
    out = []
    for word in phrase.lower().split():
        for shape in SHAPES:
            if word in (shape, shape + "s", shape + "es"):
                out.append(shape)
    return out


def detector_hits(scene: Scene, record: dict, rng: np.random.Generator, miss: float) -> list:
    """The objects a calibrated shape detector would return for this question: every object of the
    target shape(s); with probability ``miss`` (or when the question names no shape) a wrong result
    instead (a random other object, or nothing)."""
    shapes = set(targets_of(record))
    hits = [o for o in scene.objects if o.shape in shapes]
    if rng.random() < miss or not hits:
        others = [o for o in scene.objects if o.shape not in shapes]
        hits = [others[int(rng.integers(len(others)))]] if others and rng.random() < 0.7 else []
    return hits


def jittered_boxes(objects, rng: np.random.Generator) -> np.ndarray:
    """The objects' boxes, each side moved by up to a quarter of the box's size, as a detector's."""
    boxes = []
    for o in objects:
        x1, y1, x2, y2 = o.box
        w, h = x2 - x1, y2 - y1
        jitter = rng.uniform(-0.25, 0.25, size=4) * np.array([w, h, w, h])
        boxes.append([x1, y1, x2, y2] + jitter)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def detector_boxes(scene: Scene, record: dict, rng: np.random.Generator, miss: float) -> np.ndarray:
    """``detector_hits``' boxes, jittered."""
    return jittered_boxes(detector_hits(scene, record, rng, miss), rng)


def crop_of(image: Image.Image, boxes: np.ndarray, **geometry) -> Crop:
    """The agent's zoomed crop around ``boxes`` (``geometry``: ``crop_regions`` options)."""
    labels = ("object",) * len(boxes)
    regions = Regions(boxes=boxes, scores=np.ones(len(boxes)), labels=labels, image_size=image.size)
    return crop_regions(image, regions, **geometry)


def detector_crop(scene: Scene, image: Image.Image, record: dict, rng, miss: float, **geometry) -> Crop:
    """The agent's zoomed crop around ``detector_boxes``."""
    return crop_of(image, detector_boxes(scene, record, rng, miss), **geometry)


def ocr_hits(scene: Scene, record: dict, rng: np.random.Generator, miss: float) -> list:
    """The one text plate an OCR pathway's view would show: the question's target when it carries
    text, else (or with probability ``miss``) another plate; [] when the scene has none."""
    plates = [o for o in scene.objects if o.text]
    targets = [o for o in plates if o.id in record["meta"]["target_ids"]]
    if targets and rng.random() >= miss:
        return targets[:1]
    others = [o for o in plates if o not in targets]
    return [others[int(rng.integers(len(others)))]] if others else []


def examples_for_image(
    scene: Scene,
    image: Image.Image,
    records: Sequence[dict],
    rng: np.random.Generator,
    *,
    miss: float = 0.2,
    region_share: float = 1.0,
    roles: Sequence[str] = ROLES,
    context: float = 0.25,
    min_side: int = 64,
    quote: float = 0.0,
) -> list[Example]:
    """The direct and crop examples of every question of one rendered scene, and the region example
    of a ``region_share`` of them (naming the target is a copy task, learnt from few examples).
    ``context`` and ``min_side`` shape the crops (the agent's defaults; tighter ones early in
    training, where the object fills the crop, teach the model to read crops at all). A ``quote``
    share of crop examples is the OCR pathway's view: one plate, its text quoted (``ocr_hits``)."""
    out = []
    for r in records:
        options = r["options"]
        text = prompts.question_text(r["question"], options)
        instruction = prompts.answer_instruction(options)
        answer = r["answer"]
        if "direct" in roles:
            out.append(Example((image, text, instruction), answer, "direct", r))
        if "crop" in roles:
            # the OCR pathway's view (one plate, its text quoted) for a ``quote`` share of text
            # questions and a third as many others, else the detector pathway's (no text)
            share = quote if r["kind"] in TEXT_KINDS else quote / 3
            plate = ocr_hits(scene, r, rng, miss) if share and rng.random() < share else []
            hits = plate or detector_hits(scene, r, rng, miss)
            crop = crop_of(image, jittered_boxes(hits, rng), context=context, min_side=min_side).image
            quoted = (prompts.text_read([plate[0].text]),) if plate else ()
            content = (image, text, prompts.CROP_INTRO, crop, *quoted, instruction)
            out.append(Example(content, answer, "crop", r))
        if "region" in roles and rng.random() < region_share:
            reply = json.dumps(targets_of(r))
            out.append(Example((image, text, prompts.REGION_INSTRUCTION), reply, "region", r))
    return out


def stream(seed: int, knobs: SynthKnobs, *, start: int = 0, **options) -> Iterator[Example]:
    """An endless stream of examples from synthetic images ``start``, ``start + 1``, ... of ``seed``
    (training uses seeds no evaluation split uses); ``options`` go to ``examples_for_image``."""
    index = start
    while True:
        scene, image, records = make_image(seed, index, knobs)
        rng = np.random.default_rng([seed, index, 99])
        yield from examples_for_image(scene, image, records, rng, **options)
        index += 1
