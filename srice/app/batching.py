"""Micro-batching across clients: questions that arrive together are answered by one ``answer_batch``.

Why: each SRICE stage is one batched model call (and one tool pass) over its batch; the agent server
gets questions one per HTTP request, so answering them one by one would give up the batching that
makes ``srice eval`` fast. A batcher thread takes the first waiting question, waits up to ``wait``
seconds for more (up to ``max_batch``), and answers them together, grouped by their settings
(questions with other tools or options cannot share a batch). There is one batcher thread per batch
answered at once (``at_once``: one per agent worker, ``srice.builder.workers``; an in-process agent
answers one batch at a time); while they are busy, the next batch gathers. The queue is bounded: a
full queue is refused at once (the server answers 429), never a hang. A question whose client went
away before its batch started is dropped, not answered.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from srice.agent import Answer, Item
from srice.app.server_config import BatchingConfig


class QueueFull(Exception):
    """The server has ``max_queue`` questions waiting already."""


@dataclass(eq=False)
class Job:
    """One question waiting for its batch; results come back on ``loop`` (the server's event loop)."""

    item: Item
    settings: Hashable
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_stage: Callable[[str], None] | None = None  # called on ``loop``
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)

    def _post(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the server is gone, nobody waits for this
            pass

    def resolve(self, answer: Answer) -> None:
        self._post(_set, self.future, answer, None)

    def fail(self, error: BaseException) -> None:
        self._post(_set, self.future, None, error)

    def stage(self, text: str) -> None:
        if self.on_stage is not None:
            self._post(self.on_stage, text)


def _set(future: asyncio.Future, value, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


Runner = Callable[[Hashable, Sequence[Item], Callable[[str], None]], list[Answer]]


class MicroBatcher:
    """``submit`` jobs from the event loop; ``run(settings, items, on_stage)`` answers each group of
    equal settings in the worker thread, batched as ``config`` says (checked there).
    ``on_batch(size, seconds)`` is told about every batch run."""

    def __init__(
        self,
        run: Runner,
        config: BatchingConfig = BatchingConfig(),
        *,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.run, self.max_batch, self.wait = run, config.max_batch, config.wait
        self.on_batch = on_batch or (lambda size, seconds: None)
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=config.max_queue)
        self._stop = threading.Event()
        self._busy = 0  # questions in the batches being answered
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"srice-batcher-{i}", daemon=True)
            for i in range(config.at_once)
        ]

    @property
    def depth(self) -> int:
        """Questions waiting or being answered."""
        return self._queue.qsize() + self._busy

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop the worker (the server calls this after its requests
        are drained)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> None:
        if self._stop.is_set():
            raise QueueFull("the server is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} questions are already waiting") from None

    def _gather(self) -> list[Job]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        jobs, deadline = [first], time.monotonic() + self.wait
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                jobs.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return [j for j in jobs if not j.cancelled.is_set()]

    def _work(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            jobs = self._gather()
            groups: dict[Hashable, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.settings, []).append(job)
            for settings, group in groups.items():
                self._count(len(group))
                began = time.monotonic()

                def stage(text: str, group=group) -> None:
                    for job in group:
                        job.stage(text)

                try:
                    answers = self.run(settings, [j.item for j in group], stage)
                except BaseException as e:  # the model server went down: every question of the batch says so
                    for job in group:
                        job.fail(e)
                else:
                    for job, answer in zip(group, answers):
                        job.resolve(answer)
                finally:
                    self._count(-len(group))
                self.on_batch(len(group), time.monotonic() - began)

    def _count(self, change: int) -> None:
        with self._lock:
            self._busy += change
