"""The SRICE agent on the tiny model served by a real vllm serve, with real tools.

Two tests need known logprobs; they replay scripted completions through the real agent, parser and
uncertainty code (``Scripted`` below says so) because a random-weight model cannot be steered.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import Scripted, scene
from srice.agent import Agent, AgentConfig, Item
from srice.agent.uncertainty import SetSizeScore
from srice.builtin.tiny_tools import tiny_yolo
from srice.errors import InputError, ToolError
from srice.serving.openai_http import OpenAIBackend
from srice.tools import get_tool
from srice.tools.regions import Regions


class Counting:
    """Wraps a real backend and records each batched generate call's size."""

    def __init__(self, backend):
        self.backend, self.calls, self.name = backend, [], backend.name

    def generate(self, requests):
        self.calls.append(len(requests))
        return self.backend.generate(requests)


class Broken:
    name = "broken"
    separate_views = False
    reads_text = False

    def __call__(self, image, targets):
        raise ToolError("the broken tool always fails")

    def batch(self, images, targets):
        raise ToolError("the broken tool always fails")


class Slow:
    name = "slow"
    separate_views = False
    reads_text = False

    def __call__(self, image, targets):
        time.sleep(30)

    def batch(self, images, targets):
        time.sleep(30)


class Corner:
    """A detector stand-in that always finds the top-left quarter (no model needed for geometry)."""

    name = "corner"
    separate_views = False
    reads_text = False

    def __call__(self, image, targets):
        w, h = image.size
        return Regions([[0, 0, w / 4, h / 4]], [0.9], ["thing"], (w, h), "corner")

    def batch(self, images, targets):
        return [self(i, t) for i, t in zip(images, targets)]


@pytest.fixture(scope="module")
def http(vllm_server):
    return OpenAIBackend(vllm_server.url, vllm_server.served_name, timeout=120)


@pytest.fixture(scope="module")
def yolo():
    return get_tool("yolo", weights=str(tiny_yolo()), conf=0.001)


def test_trace_holds_every_pathway_and_selection_is_the_minimum(http, yolo):
    agent = Agent(http, [yolo, get_tool("zoom"), Corner()])
    answer = agent.answer(scene(seed=3), "What colour is the circle?")
    names = [p.name for p in answer.trace]
    assert (
        names[0] == "direct"
        and "corner" in names
        and any(n.startswith("yolo") for n in names)  # its union or its best region (or both)
        and any(n.startswith("zoom") for n in names)
    )
    ok = [p for p in answer.trace if p.ok]
    assert len(ok) == len(answer.trace)
    best = min(ok, key=lambda p: p.uncertainty.key)  # first minimum: direct wins ties
    assert answer.pathway == best.name and answer.answer == best.answer
    assert answer.uncertainty == best.uncertainty.score
    corner = answer.pathway_trace("corner")
    assert corner.view_box is not None and corner.calibrated["boxes"] == [[0, 0, 80, 60]]
    assert "<image>" in corner.prompt and corner.prompt.count("<image>") == 2
    assert answer.mllm_calls == 2 + len(answer.trace) - 1
    json.dumps(answer.to_json())  # the whole trace serialises


def test_failing_and_hanging_tools_mark_their_pathway_failed(http):
    agent = Agent(http, [Broken(), Slow(), Corner()], config=AgentConfig(tool_timeout=2))
    began = time.monotonic()
    answer = agent.answer(scene(seed=4), "Is there a square?")
    assert time.monotonic() - began < 25  # the 30 s tool did not hold the answer back
    assert "always fails" in answer.pathway_trace("broken").error
    assert "timed out after 2 s" in answer.pathway_trace("slow").error
    assert answer.pathway_trace("corner").ok and answer.answer
    assert answer.pathway in ("direct", "corner")


def test_answer_batch_makes_one_generate_call_per_stage(http, yolo):
    backend = Counting(http)
    agent = Agent(backend, [yolo, Corner()], config=AgentConfig(top_views=0))  # union views only
    items = [Item(scene(seed=i), "What colour is the square?", ("red", "blue", "green")) for i in range(32)]
    answers = agent.answer_batch(items)
    # stage 1: 32 direct + 32 region proposals; stage 2: tools; stage 3: 32 x 2 tool pathways
    assert backend.calls == [64, 64]
    assert all(a.answer in ("A", "B", "C") or a.answer for a in answers)
    assert all(len(a.trace) == 3 for a in answers)


def test_bad_image_costs_only_its_own_answer(http, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    agent = Agent(http, [Corner()])
    answers = agent.answer_batch(
        [Item(scene(seed=1), "Is there a circle?"), Item(tmp_path / "bad.png", "Is there a circle?"),
         Item(scene(seed=2), "  ")]
    )  # fmt: skip
    assert answers[0].answer and answers[0].error is None
    assert "not a readable image" in answers[1].error and answers[1].trace == []
    assert "question is empty" in answers[2].error


def test_selection_prefers_the_confident_view_and_ties_go_direct():
    # replayed completions: the direct view is unsure between B and C, the zoomed view is sure of A
    backend = Scripted({"direct": {"B": 0.5, "C": 0.45, "A": 0.05}, "view": {"A": 0.97, "B": 0.03}})
    answer = Agent(backend, [Corner()]).answer(scene(), "Which colour?", ["red", "green", "blue"])
    assert answer.targets == ("circle",)
    assert answer.pathway == "corner" and answer.answer == "A" and answer.uncertainty == 1
    assert answer.pathway_trace("direct").uncertainty.score == 2
    same = Scripted({"direct": {"A": 0.97, "B": 0.03}, "view": {"A": 0.97, "B": 0.03}})
    assert Agent(same, [Corner()]).answer(scene(), "Which colour?", ["red", "green"]).pathway == "direct"


def test_a_flat_pathway_never_beats_a_sharper_one():
    """Replayed completions through the real scorer and selection: the direct view flat over five
    options (no option plausible at the calibrated q-hat) against a zoom split 0.6 / 0.4."""
    calibrated = SetSizeScore(qhat_choice=0.78, qhat_open=0.91)
    flat = Scripted({"direct": dict.fromkeys("ABCDE", 0.2), "view": {"B": 0.6, "C": 0.4}})
    answer = Agent(flat, [Corner()], uncertainty=calibrated).answer(scene(), "Which?", list("vwxyz"))
    assert answer.pathway_trace("direct").uncertainty.score == 6
    assert answer.pathway == "corner" and answer.uncertainty == 2
    words = {f"w{i}": 0.04 for i in range(20)}
    flat_open = Scripted({"direct": words, "view": {"red": 0.5, "blue": 0.45, "green": 0.01}})
    answer = Agent(flat_open, [Corner()], uncertainty=calibrated).answer(scene(), "What colour?")
    assert answer.pathway == "corner" and answer.answer == "red"


def test_multiple_choice_answers_are_always_one_of_the_given_letters():
    """Replayed completions that put their mass on a letter that is no option ("D" of three): the
    answer is the most probable given option, marked as mapped, with its text beside the letter."""
    backend = Scripted({"direct": {"D": 0.9, "B": 0.06, "A": 0.04}, "view": {"E": 0.8, "A": 0.2}})
    answer = Agent(backend).answer(scene(), "Which colour?", ["red", "green", "blue"])
    direct = answer.pathway_trace("direct")
    assert direct.reply == "D" and direct.answer == "B" and direct.mapped
    assert answer.answer == "B" and answer.answer_text == "green"
    out = answer.to_json()
    assert out["answer"] == "green" and out["answer_letter"] == "B"
    with_view = Agent(backend, [Corner()]).answer(scene(), "Which colour?", ["red", "green", "blue"])
    assert {p.answer for p in with_view.trace} <= {"A", "B", "C"}
    plain = Agent(Scripted({"direct": {"C": 0.9, "A": 0.1}, "view": {}})).answer(
        scene(), "Which?", list("xyz")
    )
    assert plain.answer == "C" and not plain.trace[0].mapped and plain.to_json()["answer"] == "z"


@pytest.mark.parametrize(
    "options", [("red",), ("red", "red"), ("red", " Red "), ("red", ""), tuple(f"o{i}" for i in range(27))]
)
def test_bad_option_lists_fail_their_question(options):
    [answer] = Agent(Scripted({"direct": {"A": 1.0}, "view": {}})).answer_batch(
        [Item(scene(), "Which?", options)]
    )
    assert answer.error and "options" in answer.error and answer.answer == ""


def test_public_names():
    import srice

    assert srice.Agent is Agent and srice.Item is Item and srice.AgentConfig is AgentConfig


def test_early_exit_skips_tools_when_direct_is_certain():
    backend = Counting(Scripted({"direct": {"A": 0.99, "B": 0.01}, "view": {"A": 0.5, "B": 0.5}}))
    agent = Agent(backend, [Corner()], config=AgentConfig(early_exit=1))
    answer = agent.answer(scene(), "Which?", ["x", "y"])
    assert answer.early_exit and answer.pathway == "direct" and [p.name for p in answer.trace] == ["direct"]
    assert backend.calls == [1] and answer.mllm_calls == 1
    unsure = Counting(Scripted({"direct": {"A": 0.5, "B": 0.5}, "view": {"A": 0.99, "B": 0.01}}))
    answer = Agent(unsure, [Corner()], config=AgentConfig(early_exit=1)).answer(scene(), "Which?", ["x", "y"])
    assert not answer.early_exit and answer.pathway == "corner" and unsure.calls == [1, 1, 1]


def test_with_no_tool_pathway_no_regions_are_asked_for():
    """Nothing would use them: a direct-only agent makes one request per question, early exit or not."""
    for config in (AgentConfig(), AgentConfig(early_exit=1)):
        backend = Counting(Scripted({"direct": {"A": 0.6, "B": 0.4}, "view": {}}))
        answers = Agent(backend, [], config=config).answer_batch([Item(scene(), "Which?", ("x", "y"))] * 2)
        assert backend.calls == [2] and [a.mllm_calls for a in answers] == [1, 1]
        assert [a.region_reply for a in answers] == ["", ""] and answers[0].pathway == "direct"


@pytest.mark.parametrize(
    "reply, targets",
    [("", ()), ("I cannot tell.", ()), ('["unterminated', ("unterminated",)), ("x" * 10_000, ()), ("[]", ())],
)
def test_malformed_region_replies_parse_or_fall_back_to_the_whole_image(reply, targets):
    backend = Scripted({"direct": {"A": 0.6, "B": 0.4}, "view": {"A": 0.6, "B": 0.4}}, region_reply=reply)
    answer = Agent(backend, [get_tool("zoom", grid=1)]).answer(scene(), "Which?", ["x", "y"])
    assert answer.targets == targets and answer.answer == "A"
    assert answer.trace[1].view_box == (0, 0, 320, 240)  # whole image


class Three:
    """A detector stand-in with three boxes of known scores (no model needed for view bookkeeping)."""

    name = "three"
    separate_views = False
    reads_text = False
    boxes = [[0, 0, 40, 40], [200, 100, 240, 140], [100, 180, 120, 200]]

    def __call__(self, image, targets):
        return Regions(self.boxes, [0.2, 0.9, 0.5], ["circle"] * 3, image.size, "three")

    def batch(self, images, targets):
        return [self(i, t) for i, t in zip(images, targets)]


def test_top_views_add_one_pathway_per_best_region_in_score_order():
    backend = Counting(Scripted({"direct": {"A": 0.5, "B": 0.5}, "view": {"A": 0.9, "B": 0.1}}))
    keep_union = AgentConfig(top_views=2, union_max_share=1.0)
    answer = Agent(backend, [Three()], config=keep_union).answer(scene(), "Which?", ["x", "y"])
    assert [p.name for p in answer.trace] == ["direct", "three", "three[0]", "three[1]"]
    assert answer.pathway_trace("three").calibrated["boxes"] == Three.boxes  # the union view stays
    assert answer.pathway_trace("three[0]").calibrated["boxes"] == [Three.boxes[1]]  # score 0.9
    assert answer.pathway_trace("three[1]").calibrated["boxes"] == [Three.boxes[2]]  # score 0.5
    x1, y1, x2, y2 = answer.pathway_trace("three[0]").view_box
    assert x1 <= 200 and y1 <= 100 and x2 >= 240 and y2 >= 140 and (x2 - x1) < 160  # a zoom on it
    assert backend.calls == [2, 3] and answer.mllm_calls == 5
    assert answer.pathway == "three"  # equal US among the views: the first (union) wins
    plain = Agent(
        Scripted({"direct": {"A": 1.0}, "view": {"A": 1.0}}), [Three()], config=AgentConfig(top_views=0)
    )
    assert [p.name for p in plain.answer(scene(), "Which?").trace] == ["direct", "three"]
    with pytest.raises(InputError, match="top_views"):
        Agent(backend, [Three()], config=AgentConfig(top_views=-1))
    with pytest.raises(InputError, match="union_max_share"):
        Agent(backend, [Three()], config=AgentConfig(union_max_share=0))


class Two(Three):
    """Two boxes close together: their union is a real zoom."""

    name = "two"
    boxes = [[200, 100, 240, 140], [250, 110, 270, 130]]

    def __call__(self, image, targets):
        return Regions(self.boxes, [0.9, 0.5], ["circle"] * 2, image.size, "two")


def test_by_default_the_best_region_is_shown_and_a_union_that_is_no_zoom_is_not():
    backend = Counting(Scripted({"direct": {"A": 1.0}, "view": {"A": 1.0}}))
    answer = Agent(backend, [Three(), Two()]).answer(scene(), "Which?")
    # Three's boxes span most of the 320x240 scene: its union would only repeat the full image
    assert [p.name for p in answer.trace] == ["direct", "three[0]", "two", "two[0]"]
    x1, y1, x2, y2 = answer.pathway_trace("two").view_box
    assert (x2 - x1) * (y2 - y1) <= 0.5 * 320 * 240
    assert backend.calls == [2, 3]
    for config in (AgentConfig(top_views=0), AgentConfig(view="boxes")):  # no single views / no crops
        names = [p.name for p in Agent(backend, [Three()], config=config).answer(scene(), "Which?").trace]
        assert "three" in names


def test_a_size_word_in_the_question_picks_which_box_is_the_first_view():
    # the model names "circle"; the question says which one: the small circle is Three's 20 px box,
    # whose score (0.5) is below the 40 px box's (0.9) but above the 0.3 x 0.9 floor of srice.agent.refer
    backend = Scripted({"direct": {"A": 0.5, "B": 0.5}, "view": {"A": 0.9, "B": 0.1}})
    agent = Agent(backend, [Three()], config=AgentConfig(top_views=1))
    small = agent.answer(scene(), "What colour is the small circle?", ["x", "y"])
    assert small.pathway_trace("three[0]").calibrated["boxes"] == [Three.boxes[2]]
    plain = agent.answer(scene(), "What colour is the circle?", ["x", "y"])
    assert plain.pathway_trace("three[0]").calibrated["boxes"] == [Three.boxes[1]]


def test_questions_on_one_image_share_it_and_each_window_is_cut_once(tmp_path, monkeypatch):
    """Items naming one image file load it once; each tool runs once on it; a window that several
    pathways show (here the same corner from two tools, for three questions) is cropped once and
    the same picture is sent for each; ``crop_max_pixels`` caps the crop's size."""
    import srice.agent.loop as loop
    from srice.agent.visual import crop_regions

    path = tmp_path / "scene.png"
    scene(seed=4).save(path)
    calls = []

    class Twin(Corner):
        name = "twin"

    class Recording(Scripted):
        def generate(self, requests):
            self.requests = getattr(self, "requests", []) + list(requests)
            return super().generate(requests)

    class CountedCorner(Corner):
        def batch(self, images, targets):
            calls.append(len({id(i) for i in images}))
            return super().batch(images, targets)

    cropped = []
    monkeypatch.setattr(loop, "crop_regions", lambda *a, **k: cropped.append(1) or crop_regions(*a, **k))

    backend = Recording({"direct": {"A": 0.6, "B": 0.4}, "view": {"A": 0.9, "B": 0.1}})
    agent = Agent(backend, [CountedCorner(), Twin()], config=AgentConfig(crop_max_pixels=100 * 100))
    items = [Item(str(path), f"Which {i}?", ("x", "y")) for i in range(3)]
    answers = agent.answer_batch(items)
    assert all(a.error is None for a in answers)
    assert calls == [1] and len(cropped) == 1
    views = [r.images[1] for r in backend.requests if len(r.images) == 2]
    assert len(views) == 6 and all(v is views[0] for v in views)
    assert views[0].width * views[0].height <= 100 * 100 and views[0].size == (115, 86)  # 100 x 75 window
