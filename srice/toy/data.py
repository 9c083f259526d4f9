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
    colour is the small star?" -> ["star"]). The shape is all the detector matches on; copying
    whole referring expressions out of the question was a copy task the toy model had not learnt
    after 1300 steps (region accuracy 0.01-0.07), picking one of six shapes is a choice it can learn."""
    if record["meta"]["refers"]:
        phrases = list(record["meta"]["refers"])
    else:
        phrases = [record["question"].rstrip("?").split()[-1]] if record["kind"] == "exists" else []
    shapes = [_shape_of(p) for p in phrases]
    return list(dict.fromkeys(s for s in shapes if s))


def _shape_of(phrase: str) -> str | None:
    return next((s for s in SHAPES if s in phrase.split()), None)


def detector_boxes(scene: Scene, record: dict, rng: np.random.Generator, miss: float) -> np.ndarray:
    """What a calibrated shape detector would return for this question: every object of the target
    shape(s), each box jittered by up to a quarter of its size; with probability ``miss`` a wrong
    result instead (a random other object, or nothing)."""
    shapes = set(targets_of(record))
    hits = [o for o in scene.objects if o.shape in shapes]
    if rng.random() < miss or not hits:
        others = [o for o in scene.objects if o.shape not in shapes]
        hits = [others[int(rng.integers(len(others)))]] if others and rng.random() < 0.7 else []
    boxes = []
    for o in hits:
        x1, y1, x2, y2 = o.box
        w, h = x2 - x1, y2 - y1
        jitter = rng.uniform(-0.25, 0.25, size=4) * np.array([w, h, w, h])
        boxes.append([x1, y1, x2, y2] + jitter)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def detector_crop(scene: Scene, image: Image.Image, record: dict, rng, miss: float, **geometry) -> Crop:
    """The agent's zoomed crop around ``detector_boxes`` (``geometry``: ``crop_regions`` options)."""
    boxes = detector_boxes(scene, record, rng, miss)
    labels = ("object",) * len(boxes)
    regions = Regions(boxes=boxes, scores=np.ones(len(boxes)), labels=labels, image_size=image.size)
    return crop_regions(image, regions, **geometry)


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
) -> list[Example]:
    """The direct and crop examples of every question of one rendered scene, and the region example
    of a ``region_share`` of them (naming the target is a copy task, learnt from few examples).
    ``context`` and ``min_side`` shape the crops (the agent's defaults; tighter ones early in
    training, where the object fills the crop, teach the model to read crops at all)."""
    out = []
    for r in records:
        options = r["options"]
        text = prompts.question_text(r["question"], options)
        instruction = prompts.answer_instruction(options)
        answer = r["answer"]
        if "direct" in roles:
            out.append(Example((image, text, instruction), answer, "direct", r))
        if "crop" in roles:
            crop = detector_crop(scene, image, r, rng, miss, context=context, min_side=min_side).image
            out.append(Example((image, text, prompts.CROP_INTRO, crop, instruction), answer, "crop", r))
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
