"""The zoom tree pathway: its geometry and settings, its search (where it descends, its budget, its
beam and thresholds, its failures), its trace and the demo's picture of its path.

The search tests ask ``Looking``, a stand-in for a model that can judge a sub-view: it says yes in
proportion to the red pixels it is shown. The toy was never taught to judge sub-views and a random
model cannot be steered, so where the test must know which sub-view holds the target, the stand-in
answers; the real served toy runs the same pathway end to end in ``test_zoomtree_served.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from srice.agent import AgentConfig
from srice.agent.loop import Agent
from srice.agent.zoomtree import yes_probability
from srice.errors import InputError
from srice.serving.types import Completion, TokenLogprob
from srice.tools import get_tool
from srice.tools.zoomtree import ZoomTreeConfig, ZoomTreeTool, children

TARGET = (470, 350, 480, 360)  # a 10 px red square in the bottom-right quadrant of a 640x480 image


def planted(target=TARGET) -> Image.Image:
    image = Image.new("RGB", (640, 480), (200, 200, 200))
    ImageDraw.Draw(image).rectangle((target[0], target[1], target[2] - 1, target[3] - 1), fill=(255, 0, 0))
    return image


def _completion(probs: dict[str, float]) -> Completion:
    top = tuple(TokenLogprob(t, math.log(p)) for t, p in sorted(probs.items(), key=lambda kv: -kv[1]))
    return Completion(top[0].token, (TokenLogprob(top[0].token, top[0].logprob, top),), "stop", 0.0)


class Looking:
    """Says yes to "is it in this view?" as often as the view is red (0.02 + 200 x the red share),
    answers "red" to anything else, and names a square as the region. Records every request."""

    name = "looking"

    def __init__(self, fail_scoring: bool = False):
        self.requests: list = []
        self.fail_scoring = fail_scoring

    def generate(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            texts = [p for p in r.messages[0].content if isinstance(p, str)]
            images = [p for p in r.messages[0].content if isinstance(p, Image.Image)]
            if "JSON list" in texts[-1]:
                out.append(Completion('["square"]', (), "stop", 0.0))
            elif "yes or no" in texts[-1]:
                if self.fail_scoring:
                    out.append(Completion.failed("the server rejected it"))
                    continue
                view = np.asarray(images[-1].convert("RGB")).astype(int)
                red = ((view[..., 0] > 200) & (view[..., 1] < 80) & (view[..., 2] < 80)).mean()
                p = min(0.99, 0.02 + 200 * red)
                out.append(_completion({"yes": p, "no": 1 - p}))
            else:
                zoomed = len(images) > 1
                out.append(_completion({"red": 0.9, "blue": 0.1} if zoomed else {"red": 0.5, "blue": 0.5}))
        return out


def _inside(box, target=TARGET) -> bool:
    return box[0] <= target[0] and box[1] <= target[1] and box[2] >= target[2] and box[3] >= target[3]


def _ask(backend, **settings):
    agent = Agent(backend, [ZoomTreeTool(**settings)], config=AgentConfig(crop_size=448))
    answer = agent.answer(planted(), "What colour is the tiny square?")
    return agent, answer, answer.pathway_trace("zoomtree")


def test_children_are_overlapping_quadrants_inside_the_node_down_to_the_minimum_side():
    kids = children((0, 0, 640, 480), 0.25, 32)
    assert kids == [(0, 0, 400, 300), (240, 0, 640, 300), (0, 180, 400, 480), (240, 180, 640, 480)]
    assert children((0, 0, 640, 480), 0.0, 32) == [(0, 0, 320, 240), (320, 0, 640, 240), (0, 240, 320, 480),
                                                   (320, 240, 640, 480)]  # fmt: skip
    assert children((100, 50, 160, 110), 0.25, 32) == [(100, 50, 138, 88), (122, 50, 160, 88),
                                                       (100, 72, 138, 110), (122, 72, 160, 110)]  # fmt: skip
    assert children((0, 0, 50, 50), 0.25, 32) == []  # a quadrant would be 31.25 px


def test_settings_are_checked_and_the_budget_bounds_the_calls():
    assert ZoomTreeConfig().calls == 8 and ZoomTreeConfig(depth=3).calls == 12
    assert ZoomTreeConfig(depth=3, max_calls=10).calls == 8
    assert ZoomTreeConfig(depth=2, beam=2).calls == 12
    assert ZoomTreeConfig(depth=3, beam=2, max_calls=20).calls == 20
    for bad in ({"depth": 0}, {"beam": 0}, {"overlap": 1.0}, {"min_score": 1.5}, {"stop_score": 0.0},
                {"score": "vibes"}, {"max_calls": 0}):  # fmt: skip
        with pytest.raises(InputError):
            ZoomTreeConfig(**bad)
    with pytest.raises(InputError, match="bad options for tool 'zoomtree'|bad zoomtree settings"):
        get_tool("zoomtree", dpeth=2)


def test_yes_probability_sums_each_spelling_and_is_even_when_neither_is_there():
    assert yes_probability(_completion({"Yes": 0.6, " yes": 0.1, "no": 0.2, "maybe": 0.1})) == pytest.approx(
        0.7 / 0.9
    )
    assert yes_probability(_completion({"perhaps": 0.9, "maybe": 0.1})) == 0.5
    assert yes_probability(Completion("", (), "stop", 0.0)) == 0.5


def test_the_tree_descends_into_the_sub_view_that_holds_a_tiny_target():
    backend = Looking()
    agent, answer, p = _ask(backend, depth=2)
    assert p.ok and p.error is None
    chosen = [n for n in p.search if n["chosen"]]
    assert [n["depth"] for n in chosen] == [0, 1, 2] and all(_inside(n["box"]) for n in chosen)
    assert tuple(chosen[-1]["box"]) == p.view_box and p.view_box[2] - p.view_box[0] == 250
    # the chosen node beat each of its siblings
    for node in chosen[1:]:
        siblings = [n for n in p.search if n["parent"] == node["parent"]]
        assert len(siblings) == 4 and node["score"] == max(s["score"] for s in siblings)
    # direct + region (one call), a call per level, the answers: 4 batched calls; 1 + 1 + 8 + 1 requests
    assert agent.generate_calls == 4 and answer.mllm_calls == 11
    # every request starts with the full image, then the question: the prefix cache serves them
    for r in backend.requests:
        content = r.messages[0].content
        assert content[0].size == (640, 480) and content[1] == "What colour is the tiny square?"
    # the trace shows the scored nodes and the path
    assert len(p.regions["boxes"]) == 8 and len(p.calibrated["boxes"]) == 2
    assert p.to_json()["search"] == p.search


def test_budget_beam_and_thresholds_bound_the_search():
    _, answer, p = _ask(Looking(), depth=3, max_calls=10)  # a third level would take 12 calls
    assert max(n["depth"] for n in p.search) == 2 and answer.mllm_calls == 1 + 1 + 8 + 1
    _, answer, p = _ask(Looking(), depth=2, beam=2)
    assert [sum(n["depth"] == d for n in p.search) for d in (1, 2)] == [4, 8] and answer.mllm_calls == 15
    assert _inside(p.view_box)
    _, answer, p = _ask(Looking(), depth=3, stop_score=0.15)  # found at depth 1 (P(yes) ~0.19)
    assert max(n["depth"] for n in p.search) == 1 and _inside(p.view_box) and answer.mllm_calls == 7
    _, answer, p = _ask(Looking(), depth=2, min_score=0.5)  # nothing likely enough: no descent
    assert p.view_box == (0, 0, 640, 480) and [n["chosen"] for n in p.search] == [True] + [False] * 4
    _, answer, p = _ask(Looking(), depth=4, min_side=100)  # a fourth level would be 78 px wide
    assert max(n["depth"] for n in p.search) == 3


def test_a_failed_scoring_call_fails_the_pathway_not_the_question():
    _, answer, p = _ask(Looking(fail_scoring=True))
    assert p.error_kind == "model" and "rejected" in p.error and not p.ok
    assert answer.error is None and answer.pathway == "direct"


def test_scored_by_answering_the_leafs_answer_is_the_pathways():
    backend = Looking()
    agent = Agent(backend, [ZoomTreeTool(score="answer", depth=2)])
    answer = agent.answer(planted(), "What colour is the tiny square?")
    p = answer.pathway_trace("zoomtree")
    assert p.ok and p.answer == "red" and answer.mllm_calls == 1 + 1 + 8  # no separate answer call
    assert answer.pathway == "zoomtree" and p.prompt.count("<image>") == 2


def test_the_demo_draws_the_path_and_shows_the_final_view():
    from srice.app.demo_page import gallery_items, model_view, pathway_views

    config = AgentConfig(crop_size=448)
    image = planted()
    _, answer, p = _ask(Looking(), depth=2)
    [view] = pathway_views(image, answer, config)
    assert view.trace.name == "zoomtree" and view.view_image.size == model_view(image, p, config).size
    labels = [text for _, text in gallery_items([view], answer.pathway)]
    assert "the zoom path, 2 levels" in labels[0]
