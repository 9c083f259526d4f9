"""``ZoomTreeTool``: the settings and geometry of the model-guided zoom tree (ZoomEye-style search).

Not a detector: it has no model of its own. The agent searches with its own MLLM
(``srice.agent.zoomtree``): from the whole image it asks, for each sub-view of a node, how likely
what the question asks about is inside, and descends into the likeliest ``beam`` sub-view(s) until
``depth`` levels, a sub-view smaller than ``min_side`` pixels, a score below ``min_score`` (the
model sees nothing there: the search stays where it is), a score of ``stop_score`` or more (found),
or a budget of ``max_calls`` scoring calls per question. The final view is answered next to the full
image, as every tool pathway's is, and competes by the same calibrated uncertainty.

A node's sub-views (``children``) are its four quadrants, each grown by ``overlap`` times its own
size towards the node's inside, so that a small object on a quadrant's edge is whole in one of them.

``score``: ``yesno`` (default) reads P(yes) / (P(yes) + P(no)) from the first token's logprobs of a
yes/no question about the sub-view, the way ZoomEye scores existence with any MLLM; ``answer`` asks
the question itself on the sub-view and takes the top answer's probability (ZoomEye's answering
confidence): for a model never taught to judge sub-views, such as the toy, and the final answer is
then the leaf's, one call fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from srice.errors import InputError
from srice.tools.base import BaseTool
from srice.tools.regions import Regions

SCORES = ("yesno", "answer")


@dataclass(frozen=True)
class ZoomTreeConfig:
    """The search's settings; checked on creation."""

    depth: int = 2  # levels below the whole image
    beam: int = 1  # sub-views kept per level
    overlap: float = 0.25  # each quadrant grown by this share of its size towards the node's inside
    min_side: int = 32  # no sub-view with a side below this many original pixels
    min_score: float = 0.0  # the best sub-view must score at least this for the search to descend
    stop_score: float | None = None  # a sub-view scoring this or more ends the search there
    max_calls: int = 16  # scoring calls per question; a level that would exceed it is not searched
    score: str = "yesno"

    def __post_init__(self) -> None:
        for name in ("depth", "beam", "min_side", "max_calls"):
            if getattr(self, name) < 1:
                raise InputError(f"zoomtree {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.overlap < 1:
            raise InputError(f"zoomtree overlap must be in [0, 1), got {self.overlap}")
        if not 0 <= self.min_score <= 1 or (self.stop_score is not None and not 0 < self.stop_score <= 1):
            scores = f"min_score {self.min_score}, stop_score {self.stop_score}"
            raise InputError(f"zoomtree scores are in [0, 1]: {scores}")
        if self.score not in SCORES:
            raise InputError(f"zoomtree score must be one of {', '.join(SCORES)}, got {self.score!r}")

    @property
    def calls(self) -> int:
        """The most scoring calls a question can take: 4 x beam per level below the first, within
        the budget."""
        total, width = 0, 1
        for _ in range(self.depth):
            if total + 4 * width > self.max_calls:
                break
            total += 4 * width
            width = min(self.beam, 4 * width)
        return total


Box = tuple[int, int, int, int]


def children(box: Box, overlap: float, min_side: int) -> list[Box]:
    """A node's four sub-views in row-major order (whole pixels, inside the node); none where a
    sub-view would have a side below ``min_side``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    side_w, side_h = min(w, w / 2 * (1 + overlap)), min(h, h / 2 * (1 + overlap))
    if side_w < min_side or side_h < min_side or (side_w >= w and side_h >= h):
        return []
    out = []
    for top in (y1, y2 - side_h):
        for left in (x1, x2 - side_w):
            out.append((math.floor(left), math.floor(top), math.ceil(left + side_w), math.ceil(top + side_h)))
    return out


class ZoomTreeTool(BaseTool):
    """The zoom tree's settings, as a pathway the agent searches with its model (``guided``)."""

    name = "zoomtree"
    guided = True  # the agent runs it with its model (srice.agent.zoomtree), not as a tool call

    def __init__(self, config: ZoomTreeConfig | None = None, **settings) -> None:
        try:
            self.config = config or ZoomTreeConfig(**settings)
        except TypeError as e:
            raise InputError(f"bad zoomtree settings: {e}") from None

    def _run(self, images: list[Image.Image], targets: list[tuple[str, ...]]) -> list[Regions]:
        """Outside the agent, only the root: the whole image (the search needs the model)."""
        return [self.root(image) for image in images]

    def root(self, image: Image.Image) -> Regions:
        box = np.array([[0, 0, image.width, image.height]], dtype=float)
        return Regions(box, np.ones(1), ("image",), image.size, self.name)
