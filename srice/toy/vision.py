"""Pre-training the toy MLLM's vision tower on dense, per-token labels from the synthetic world.

Why: trained from scratch on questions alone, the toy model learned the answers' text priors and
ignored its images (its crop answers equalled its direct answers after 1300 steps). One answer per
example is a thin signal for a random vision tower; the synthetic scenes know what lies under every
image token, so each view gives ~49 labels instead. A few minutes of this gives visual tokens whose
colour a linear head reads at ~93%, and question training starts from features worth attending to.

Labels live on the merged-token grid the language model sees (2x2 patches of 14 px): a token is
labelled with the object covering the largest share of it, if that share is at least ``COVER``. A
tiny object in the full view covers far less than that and is labelled background, so pre-training
never teaches the full view to read what the token budget cannot show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from srice.synth import SynthKnobs, make_image
from srice.synth.scene import PALETTE, SHAPES, TEXTURES, Scene
from srice.toy.data import detector_crop

ATTRIBUTES = {
    "colour": ("background", *PALETTE),
    "shape": ("background", *SHAPES),
    "texture": ("background", *TEXTURES),
}
COVER = 0.1  # least share of a token an object must cover to label it
BACKGROUND_WEIGHT = 0.2  # background tokens outnumber object tokens ~10:1


@dataclass(frozen=True)
class VisionConfig:
    steps: int = 150
    batch_size: int = 32  # views (full images and crops) per step
    lr: float = 2e-3
    weight_decay: float = 0.01


def token_labels(scene: Scene, window: tuple[int, int, int, int], grid: tuple[int, int]) -> np.ndarray:
    """(attributes, tokens) labels of a view showing ``window`` of the scene on a ``grid`` of merged
    tokens (rows, columns), row-major like the vision tower's output."""
    x0, y0, x1, y1 = window
    rows, cols = grid
    best = np.zeros((rows, cols), dtype=np.float32)
    labels = np.zeros((len(ATTRIBUTES), rows, cols), dtype=np.int64)
    for o in scene.objects:
        bx0, by0, bx1, by1 = o.box
        sx0, sy0, sx1, sy1 = max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1)
        if sx0 >= sx1 or sy0 >= sy1:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = o.mask[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0]
        cover = np.asarray(Image.fromarray(mask).resize((cols, rows), Image.Resampling.BOX))
        take = (cover > best) & (cover >= COVER)
        best[take] = cover[take]
        for k, (name, values) in enumerate(ATTRIBUTES.items()):
            labels[k][take] = values.index(getattr(o, name))
    return labels.reshape(len(ATTRIBUTES), -1)


def views(
    seed: int, knobs: SynthKnobs, rng: np.random.Generator, start: int = 0, miss: float = 0.2
) -> Iterator[tuple[Image.Image, Scene, tuple[int, int, int, int]]]:
    """Endless views as the model gets them: each full image, and the agent's crop for each of its
    questions (around what a detector would return, misses included)."""
    index = start
    while True:
        scene, image, records = make_image(seed, index, knobs)
        yield image, scene, (0, 0, image.width, image.height)
        for r in records:
            crop = detector_crop(scene, image, r, rng, miss)
            yield crop.image, scene, crop.box
        index += 1


def pretrain_vision(
    model, processor, seed: int, knobs: SynthKnobs, config: VisionConfig = VisionConfig(),
    log: Callable[[str], None] = print,
) -> dict:  # fmt: skip
    """Train ``model``'s vision tower (and merger) in place with linear heads on its merged tokens;
    the heads are thrown away. Returns the last steps' per-attribute accuracy on object tokens."""
    import torch

    visual = model.model.visual
    device = next(visual.parameters()).device  # where the model was put (train-toy --device)
    width = model.config.text_config.hidden_size
    heads = torch.nn.ModuleList(torch.nn.Linear(width, len(v)) for v in ATTRIBUTES.values()).to(device)
    params = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    source = views(seed, knobs, np.random.default_rng([seed, 7]))
    began = time.perf_counter()
    right, seen = np.zeros(len(ATTRIBUTES)), 0
    for step in range(config.steps):
        pixels, grids, labels = [], [], []
        for _ in range(config.batch_size):
            image, scene, window = next(source)
            inputs = processor.image_processor(images=[image], return_tensors="pt")
            _, h, w = inputs["image_grid_thw"][0].tolist()
            merge = visual.spatial_merge_size
            pixels.append(inputs["pixel_values"])
            grids.append(inputs["image_grid_thw"])
            labels.append(torch.from_numpy(token_labels(scene, window, (h // merge, w // merge))))
        target = torch.cat(labels, dim=1).to(device)
        features = visual(torch.cat(pixels).to(device), grid_thw=torch.cat(grids).to(device)).pooler_output
        weight = torch.where(target[0] > 0, 1.0, BACKGROUND_WEIGHT)
        loss = 0.0
        for k, head in enumerate(heads):
            logits = head(features)
            loss = (
                loss
                + (torch.nn.functional.cross_entropy(logits, target[k], reduction="none") * weight).sum()
                / weight.sum()
            )
            if step >= config.steps - 20:
                on = target[0] > 0
                right[k] += (logits.argmax(-1)[on] == target[k][on]).sum().item()
        if step >= config.steps - 20:
            seen += int((target[0] > 0).sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 49 or step == config.steps - 1:
            log(f"vision step {step + 1}: loss {loss.item():.3f}")
    accuracy = {name: round(float(right[k] / max(seen, 1)), 4) for k, name in enumerate(ATTRIBUTES)}
    return {
        "steps": config.steps,
        "seconds": round(time.perf_counter() - began, 1),
        "object_token_accuracy": accuracy,
    }
