"""The zoom tree search, run by the agent with its own model (settings and geometry:
``srice.tools.zoomtree``).

Every question of a batch searches at once, level by level: each level is one batched model call
holding every live question's sub-view requests, so the server keeps them all in flight and the
prefix cache serves each question's image and text once. A question's search ends at its depth,
its budget, sub-views under the minimum size, a best score below ``min_score`` or one at
``stop_score``; its final view is the best-scoring node of the last beam (the whole image if the
search never descended). Every node, scored or not chosen, goes to the trace with its box, depth,
parent and score; a failed scoring call fails the pathway (``error_kind`` "model"), as a tool's
failure does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from srice.agent.visual import crop_box
from srice.serving.types import Completion, Request
from srice.tools.regions import Regions
from srice.tools.zoomtree import ZoomTreeConfig, children

YES, NO = "yes", "no"


@dataclass
class Node:
    box: tuple[int, int, int, int]  # original image pixels, x2 and y2 exclusive
    depth: int
    parent: int | None  # index of the parent node in the search's nodes
    score: float | None = None  # the root is not scored
    chosen: bool = False  # on the path to the final view
    completion: Completion | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        score = None if self.score is None else round(self.score, 6)
        return {"box": list(self.box), "depth": self.depth, "parent": self.parent, "score": score,
                "chosen": self.chosen}  # fmt: skip


@dataclass
class Search:
    """One question's search."""

    image: Image.Image
    nodes: list[Node]
    beam: list[int]  # indices of the nodes being expanded
    calls: int = 0
    seconds: float = 0.0
    error: str | None = None
    done: bool = False

    def choose(self) -> Node:
        """The final view: the best-scoring node of the last beam; marks its path as chosen."""
        best = max(self.beam, key=lambda i: -math.inf if self.nodes[i].score is None else self.nodes[i].score)
        at: int | None = best
        while at is not None:
            self.nodes[at].chosen = True
            at = self.nodes[at].parent
        return self.nodes[best]


def yes_probability(completion: Completion) -> float:
    """P(yes) / (P(yes) + P(no)) over the first token's alternatives ("Yes", " yes", ... summed);
    0.5 when neither is among them (the model says nothing either way)."""
    if not completion.tokens:
        return 0.5
    first = completion.tokens[0]
    mass = {YES: 0.0, NO: 0.0}
    seen = set()
    for t in (first, *first.top_logprobs):
        word = t.token.strip().lower()
        if word in mass and t.token not in seen:
            seen.add(t.token)
            mass[word] += math.exp(t.logprob)
    total = mass[YES] + mass[NO]
    return mass[YES] / total if total > 0 else 0.5


def run(
    searches: Sequence[Search],
    config: ZoomTreeConfig,
    request: Callable[[int, Image.Image], Request],
    generate: Callable[[list[Request]], list[Completion]],
    score: Callable[[int, Completion], float],
    view: Callable[[Image.Image, tuple[int, int, int, int]], Image.Image],
) -> None:
    """Search every question level by level. ``request(i, view)`` is question i's scoring request
    for a sub-view picture, ``score(i, completion)`` its score in [0, 1], ``view(image, box)`` the
    sub-view's picture (cropped and zoomed as the pathway views are)."""
    for _ in range(config.depth):
        asked: list[tuple[int, int]] = []  # (search, node) per request
        requests = []
        for i, s in enumerate(searches):
            if s.done:
                continue
            kids = [(parent, box) for parent in s.beam for box in children(s.nodes[parent].box,
                    config.overlap, config.min_side)]  # fmt: skip
            if not kids or s.calls + len(kids) > config.max_calls:
                s.done = True
                continue
            for parent, box in kids:
                s.nodes.append(Node(box, s.nodes[parent].depth + 1, parent))
                asked.append((i, len(s.nodes) - 1))
                requests.append(request(i, view(s.image, box)))
            s.calls += len(kids)
        if not requests:
            return
        began = time.perf_counter()
        completions = generate(requests)
        share = (time.perf_counter() - began) / len({i for i, _ in asked})
        new: dict[int, list[int]] = {}
        for (i, at), completion in zip(asked, completions):
            s, node = searches[i], searches[i].nodes[at]
            node.completion = completion
            if completion.error is not None:
                s.error = s.error or f"model: {completion.error}"
            else:
                node.score = score(i, completion)
            new.setdefault(i, []).append(at)
        for i, kids in new.items():
            s = searches[i]
            s.seconds += share
            if s.error is not None:
                s.done = True
                continue
            ranked = sorted(kids, key=lambda k: -s.nodes[k].score)
            if s.nodes[ranked[0]].score < config.min_score:
                s.done = True  # nothing likelier below: the search stays where it is
                continue
            s.beam = ranked[: config.beam]
            found = config.stop_score is not None and s.nodes[ranked[0]].score >= config.stop_score
            s.done = found


def start(image: Image.Image) -> Search:
    """A search at the root: the whole image."""
    return Search(image, [Node((0, 0, image.width, image.height), 0, None)], [0])


def zoomed(out_size: int, max_pixels: int | None) -> Callable[[Image.Image, tuple], Image.Image]:
    """A node's picture: its window zoomed as a pathway's crop is (``crop_box``)."""
    return lambda image, box: crop_box(image, box, out_size=out_size, max_pixels=max_pixels).image


def regions(search: Search, image_size: tuple[int, int], chosen: bool) -> dict:
    """The scored nodes (or, ``chosen``, the path to the final view) as ``Regions.to_json()``: what the
    trace's regions and the demo draw. A search that never descended is its whole image."""
    nodes = [n for n in search.nodes if n.score is not None and (n.chosen or not chosen)]
    if not nodes:
        nodes = [search.nodes[0]]
    boxes = np.array([n.box for n in nodes], dtype=np.float64)
    scores = [1.0 if n.score is None else n.score for n in nodes]
    labels = tuple(f"depth {n.depth}" for n in nodes)
    return Regions(boxes, scores, labels, image_size, "zoomtree").to_json()
