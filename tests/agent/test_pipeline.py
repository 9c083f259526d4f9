"""The pipelined agent (``srice.agent.pipeline``) on the tiny model behind a real vllm serve, with the
real tiny YOLO: the same answers as one batch at a time, and the model really works on other batches
while the tools run (told from the order of events, not from timings)."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import scene
from srice.agent import Agent, AgentConfig, Item
from srice.agent.pipeline import pipelined
from srice.builtin.tiny_tools import tiny_yolo
from srice.errors import InputError
from srice.tools import get_tool


class Log:
    """A shared, ordered log of (event, name, detail) from the backend, the tools and the agent."""

    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def add(self, *event):
        with self.lock:
            self.events.append(event)


class LoggedBackend:
    def __init__(self, backend, log):
        self.backend, self.log, self.name = backend, log, backend.name

    def generate(self, requests):
        self.log.add("model", "begin", len(requests))
        try:
            return self.backend.generate(requests)
        finally:
            self.log.add("model", "end", len(requests))


class LoggedTool:
    """The real tool, with its calls logged (and made slower, so that an overlap has room to show)."""

    def __init__(self, tool, log, pause=0.3):
        self.tool, self.log, self.pause = tool, log, pause
        self.name, self.separate_views, self.reads_text = tool.name, tool.separate_views, tool.reads_text

    def __call__(self, image, targets):
        return self.batch([image], [targets])[0]

    def batch(self, images, targets):
        self.log.add("tool", "begin", len(images))
        try:
            time.sleep(self.pause)
            return self.tool.batch(images, targets)
        finally:
            self.log.add("tool", "end", len(images))


class LoggedAgent(Agent):
    def start(self, items, on_stage=None):
        self.log.add("batch", "start", items[0].id)
        return super().start(items, on_stage)

    def finish(self, batch):
        self.log.add("batch", "finish", batch.work[0].item.id)
        return super().finish(batch)


@pytest.fixture(scope="module")
def yolo():
    return get_tool("yolo", weights=str(tiny_yolo()), conf=0.001)


def _agent(http, yolo, log):
    tools = [LoggedTool(yolo, log), get_tool("zoom")]
    agent = LoggedAgent(LoggedBackend(http, log), tools, config=AgentConfig())
    agent.log = log
    return agent


def _batches(n_batches=5, size=3):
    questions = ["What colour is the square?", "Is there a star?", "How many circles are there?"]
    return [
        [Item(scene(seed=100 + b * size + i), questions[i % 3], id=f"b{b}q{i}") for i in range(size)]
        for b in range(n_batches)
    ]


def _view(answers):
    return [
        (a.item_id, a.answer, a.pathway, a.uncertainty, a.error)
        + tuple((p.name, p.answer, p.error) for p in a.trace)
        for batch in answers
        for a in batch
    ]


@pytest.mark.parametrize("depth", [2, 3])
def test_pipelined_answers_equal_one_batch_at_a_time_and_the_stages_overlap(http_backend, yolo, depth):
    batches = _batches()
    alone_log, piped_log = Log(), Log()
    alone = list(pipelined(_agent(http_backend, yolo, alone_log), batches, depth=1))
    piped = list(pipelined(_agent(http_backend, yolo, piped_log), batches, depth=depth))
    assert _view(piped) == _view(alone)
    assert [a.item_id for b in piped for a in b] == [i.id for b in batches for i in b]  # in order

    def overlaps(events):
        """Model calls that began while the tool was running."""
        running, found = False, 0
        for who, what, _ in events:
            if who == "tool":
                running = what == "begin"
            elif who == "model" and what == "begin" and running:
                found += 1
        return found

    assert overlaps(alone_log.events) == 0
    assert overlaps(piped_log.events) >= 1
    # the tool runs one batch at a time, in order; never more than `depth` batches in flight
    tool_events = [what for who, what, _ in piped_log.events if who == "tool"]
    assert tool_events == ["begin", "end"] * len(batches)
    in_flight = peak = 0
    for who, what, _ in piped_log.events:
        if who == "batch":
            in_flight += 1 if what == "start" else -1
            peak = max(peak, in_flight)
    assert peak == depth and in_flight == 0


def test_a_bad_depth_is_refused(http_backend):
    with pytest.raises(InputError, match="at least|>= 1"):
        list(pipelined(Agent(http_backend), _batches(1), depth=0))
