"""Agent workers: whole agents in processes of their own, the one way srice overlaps the model and
the tools.

Why processes: while one worker's batch waits on the model, another's runs its tools, and nothing
they do takes turns on a lock. Threads of one process could not do it: HF generation, PIL and
ultralytics' pre- and post-processing hold the GIL (a thread pipeline measured 0.83x on 2 CPU cores,
0.98-1.03x on an H200). A worker is the agent ``srice eval --ray`` runs on each Ray actor
(``AgentWorker``), so a local run and a cluster run answer the same way.

Each worker builds the agent its spec describes: its own tools (loaded once per worker), the model
server the parent started (every worker talks to the same ``vllm serve``, which batches their
requests together), or the transformers model in the worker itself. A batch is answered whole by one
worker with ``answer_batch``, so the model gets the requests of a stage-by-stage run and the answers
are the same. Each worker gets its share of the cores for torch (``threads``), so the workers do not
oversubscribe them.

``LocalWorkers`` runs them on this machine with the standard library's process pool (spawned, not
forked: a forked copy of a process with threads and a torch runtime is not safe). A worker that dies
(killed, out of memory) breaks the pool: the run stops with one line saying so, and every batch
answered before it is kept (``srice eval`` resumes). For more than one machine, or replacement of
dead workers, there is ``srice eval --ray``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from srice.errors import InputError, SriceError

if TYPE_CHECKING:
    from srice.agent import Answer, Item
    from srice.builder.spec import AgentSpec


class AgentWorker:
    """One worker: the agent ``spec`` describes, on the model server ``url`` (None: the spec's own
    server, or the transformers backend in this process)."""

    def __init__(self, spec: AgentSpec, url: str | None, log: Callable[[str], None] | None = None):
        from srice.builder.pool import AgentPool

        if url is not None:
            spec = replace(spec, serving=replace(spec.serving, server=url))
        self.pool = AgentPool(spec, log=log or (lambda text: None))
        self.agent = self.pool.agent()

    def answer_items(
        self, settings: Hashable | None, items: Sequence[Item], on_stage: Callable[[str], None] | None = None
    ) -> list[Answer]:
        """``items`` answered together by the agent for ``settings`` (``AgentPool.agent``'s arguments
        as (name, value) pairs; None: the spec's own agent)."""
        agent = self.agent if settings is None else self.pool.agent(**dict(settings))
        return agent.answer_batch(items, on_stage=on_stage)

    def pid(self) -> int:
        return os.getpid()


def torch_threads(workers: int, cores: int | None = None) -> int:
    """Each of ``workers`` workers' share of this machine's cores for torch (at least 1)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // workers)


# the worker process's own state (set by _start_worker in each spawned process)
_worker: AgentWorker | None = None
_stages = None  # a queue back to the parent: (job token, stage text), (LOG, line) or (READY, pid)
LOG, READY = -1, -2


def _start_worker(spec: AgentSpec, url: str | None, threads: int, stages, parent: int) -> None:
    """A worker process's start: it ignores Ctrl-C (the parent stops it), dies with its parent (a
    killed ``srice eval`` leaves no worker behind), then builds its agent."""
    global _worker, _stages
    import signal
    import sys

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    torch.set_num_threads(threads)
    _stages = stages
    _worker = AgentWorker(spec, url, log=lambda text: stages.put((LOG, text)))
    stages.put((READY, os.getpid()))


def _call(fn: Callable, args: tuple):
    return fn(_worker, *args)


def worker_pid(worker: AgentWorker) -> int:
    """The worker's process id (a module-level function, as ``LocalWorkers.call`` needs)."""
    return worker.pid()


def _answer_items(settings, items, token: int | None) -> list[Answer]:
    """The answers; a job with a token ends its stages with ``(token, None)``: the answers come back
    through another pipe, so the parent waits for that marker to hear the last stage before them."""
    if token is None:
        return _worker.answer_items(settings, items, None)
    try:
        return _worker.answer_items(settings, items, lambda text: _stages.put((token, text)))
    finally:
        _stages.put((token, None))


class LocalWorkers:
    """``workers`` agent workers on this machine; a context manager (the processes stop on exit).
    ``url``: the model server they share (None: the spec's own, or the transformers model in each).
    ``log`` hears what building their agent had to say (a missing calibration), each line once."""

    def __init__(
        self,
        spec: AgentSpec,
        workers: int,
        url: str | None = None,
        threads: int | None = None,
        log: Callable[[str], None] | None = None,
    ):
        if workers < 1:
            raise InputError(f"agent workers must be >= 1, got {workers}")
        self.spec, self.workers, self.url = spec, workers, url
        self.threads = threads or torch_threads(workers)
        context = multiprocessing.get_context("spawn")
        self._stages = context.Queue()
        self._listeners: dict[int, Callable[[str], None]] = {}
        self._tokens = iter(range(1 << 62))
        self._lock = threading.Lock()
        self._log = log or (lambda text: None)
        self._said: set[str] = set()
        self._ready = threading.Condition()
        self._started = 0
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker,
            initargs=(spec, url, self.threads, self._stages, os.getpid()),
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read_stages, name="srice-worker-stages", daemon=True)
        self._reader.start()

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers; a batch still running is abandoned (its answers were never written)."""
        processes = list((self._pool._processes or {}).values())  # noqa: SLF001 - no public way
        for process in processes:
            if process.is_alive():
                process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(5)
        self._stages.put(None)

    def start(self) -> None:
        """Start every worker and wait until each has built its agent (the processes otherwise start
        on first use); a worker that could not start raises here."""
        futures = [self._pool.submit(_call, worker_pid, ()) for _ in range(self.workers)]
        for future in futures:
            self._result(future)
        with self._ready:
            while self._started < self.workers:
                if self._ready.wait(0.5) is False and self._pool._broken:  # noqa: SLF001
                    raise SriceError(f"an agent worker could not start: {self._pool._broken}")  # noqa: SLF001

    def call(self, fn: Callable, *args):
        """``fn(worker, *args)`` in one of the workers (``fn`` a module-level function: it is pickled
        by name), once it is free; blocks until done."""
        return self._result(self._pool.submit(_call, fn, args))

    def map(self, fn: Callable, batches: Iterable) -> Iterator:
        """``fn(worker, batch)`` for each batch, by whichever worker is free; the results in the
        batches' order, with at most two batches per worker in flight."""
        in_flight: deque[concurrent.futures.Future] = deque()
        for batch in batches:
            in_flight.append(self._pool.submit(_call, fn, (batch,)))
            if len(in_flight) == 2 * self.workers:
                yield self._result(in_flight.popleft())
        while in_flight:
            yield self._result(in_flight.popleft())

    def answer_items(
        self, settings: Hashable | None, items: Sequence[Item], on_stage: Callable[[str], None] | None = None
    ) -> list[Answer]:
        """``items`` answered by one worker with the agent for ``settings`` (blocks until done);
        ``on_stage`` hears the stages as the worker reports them."""
        if on_stage is None:
            return self._result(self._pool.submit(_answer_items, settings, list(items), None))
        ended = threading.Event()
        with self._lock:
            token = next(self._tokens)
            self._listeners[token] = (on_stage, ended)
        try:
            answers = self._result(self._pool.submit(_answer_items, settings, list(items), token))
            ended.wait(30)  # the job's last stages, still in the queue
            return answers
        finally:
            with self._lock:
                self._listeners.pop(token, None)

    def _read_stages(self) -> None:
        while True:
            try:
                message = self._stages.get()
            except (EOFError, OSError, queue.Empty):
                return
            if message is None:
                return
            token, text = message
            if token == READY:
                with self._ready:
                    self._started += 1
                    self._ready.notify_all()
                continue
            if token == LOG:
                if text not in self._said:
                    self._said.add(text)
                    self._log(text)
                continue
            with self._lock:
                listener, ended = self._listeners.get(token, (None, None))
            if listener is None:
                continue
            if text is None:
                ended.set()
            else:
                listener(text)

    def _result(self, future: concurrent.futures.Future):
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool as e:
            raise SriceError(
                f"an agent worker process died ({e}); what was answered before is kept, and a rerun resumes"
            ) from None


def worker_count(text: str) -> tuple[int, str]:
    """``--workers``: a number of agent workers, or ``auto``; returns the count and why (``auto``
    says which it chose).

    ``auto`` runs two workers only where a benchmark measured a gain
    (``benchmarks/bench_eval_pipeline.py``), and none has yet with the tool stage as it is now (each
    tool once per image): on 2 CPU cores 0.96x with vLLM on the same cores, 0.99-1.01x with vLLM
    pinned to one core and the agents on the other (before tools ran once per image, when they
    dominated, 2 workers measured 1.39x). On a GPU it was never measured. So ``auto`` is one agent."""
    if text != "auto":
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise InputError(f"--workers is auto or a number of agent workers (>= 1), got {text!r}")
        return count, f"{count} agent worker(s), as asked"
    return 1, "1 agent (auto: 2 workers have not measured a gain with these tools; --workers 2 to overlap)"
