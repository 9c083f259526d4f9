"""``srice eval --ray``: the same evaluation, its batches answered by a pool of agent workers on Ray.

Ray actors, not Ray Data: a worker is heavy state that must outlive one batch (the tools' models,
the calibrators, a connection to its node's model server); the batches are few and slow (seconds
each), so Ray Data's blocks, Arrow conversion and streaming executor would buy nothing but processes
on a small machine; and the records need one writer that appends whole batches in order, which is
``srice.eval.run.write`` here as in a plain run. Ray does the rest: it places the workers (spread
over the nodes, each next to its node's model server), and it replaces a worker that dies (killed,
out of memory) and runs the batch it held again on the replacement (actors made with
``max_restarts=-1`` and ``max_task_retries``). The driver gives the next batch to whichever worker
is free and hands the answers to the writer in the batches' order, at most ``2 x workers`` batches
ahead of it.

A batch whose worker died more than ``retries`` times is answered again one question at a time, so
only a question that kills workers by itself (one that runs a worker out of memory) is recorded as
failed, with the reason; every other question is answered. An error inside a worker (the model
server down) stops the run, as it does without Ray, and a rerun resumes.

Model servers: with ``--server URL`` every worker uses that server; else srice starts one ``vllm
serve`` on each node that has workers (a ``ModelServer`` actor on that node, bound to its 127.0.0.1;
the server dies with its actor); the transformers backend loads the model in each worker. Paths
(images, ``--calib``, ``--tool-weights``) must be readable at the same path on every node: a shared
filesystem, as for any Ray job.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srice.builder.workers import AgentWorker as LocalAgentWorker
from srice.errors import InputError, SriceError

if TYPE_CHECKING:  # kept out of the import: RayConfig is read by --help, which loads nothing heavy
    from srice.agent.trace import Answer
    from srice.builder.spec import AgentSpec
    from srice.eval.items import EvalItem
    from srice.eval.run import EvalRun

LOCAL = "local"  # --ray without an address: a cluster of this machine, started for the run


@dataclass(frozen=True)
class RayConfig:
    address: str = LOCAL  # "local", "auto" (the cluster this machine belongs to), HOST:PORT, ray://...
    workers: int = 2
    worker_cpus: float = 1.0  # Ray resources each worker asks for
    worker_gpus: float = 0.0  # > 0 when the tools run on GPU (a fraction shares one)
    retries: int = 2  # times a batch is run again on a replaced worker before it is split up

    def __post_init__(self) -> None:
        if not self.address:
            raise InputError("--ray takes a cluster address, 'auto', or nothing (a local cluster)")
        if self.workers < 1:
            raise InputError(f"--ray-workers must be >= 1, got {self.workers}")
        if self.worker_cpus < 0 or self.worker_gpus < 0 or self.worker_cpus + self.worker_gpus == 0:
            raise InputError("a Ray worker needs some CPUs or GPUs (--ray-worker-cpus, --ray-worker-gpus)")
        if self.retries < 0:
            raise InputError(f"--ray-retries must be >= 0, got {self.retries}")


class AgentWorker(LocalAgentWorker):
    """One Ray worker: the agent worker of a local run (``srice.builder.workers``), answering
    evaluation batches."""

    def settings(self) -> dict:
        from srice.eval.run import worker_settings

        return worker_settings(self)

    def answer(self, batch: list[EvalItem]) -> list[Answer]:
        from srice.eval.run import worker_answers

        return worker_answers(self, batch)


class ModelServer:
    """A ``vllm serve`` of the spec's variant on this actor's node, stopped with the actor: it is told
    to die with the process that started it."""

    def __init__(self, spec: AgentSpec):
        from srice.serving.backends import start_server

        self.server = start_server(spec.variant_entry(), spec.serving, log=lambda text: None)
        self.server.die_with_parent = True
        self.server.start()

    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


class RayPool:
    """Agent workers (and model servers) on a Ray cluster; a context manager that connects to the
    cluster (or starts a local one) on entry and takes everything down on exit."""

    def __init__(self, config: RayConfig, spec: AgentSpec, log: Callable[[str], None] | None = None):
        self.config, self.spec = config, spec
        # with the vllm backend and no server named, each node with workers runs its own vllm serve
        self.own_servers = spec.serving.backend == "vllm" and not spec.serving.server
        self.log = log or (lambda text: None)
        self.workers: list = []
        self.servers: list = []
        self.namespace = f"srice-eval-{os.getpid()}"

    def __enter__(self) -> RayPool:
        import ray

        cfg = self.config
        options = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if cfg.address == LOCAL:  # on 127.0.0.1: nothing of it is reachable from outside this machine
            ray.init(address="local", _node_ip_address="127.0.0.1", **options)
        else:
            ray.init(address=cfg.address, **options)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

        cfg = self.config
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
        if not nodes:
            raise SriceError("the Ray cluster has no live node with CPUs")
        placed = [nodes[i % len(nodes)] for i in range(cfg.workers)]
        urls: dict[str, str | None] = dict.fromkeys(placed)
        if self.own_servers:
            server = ray.remote(ModelServer)
            by_node = {
                node: server.options(
                    num_cpus=0, max_restarts=0, scheduling_strategy=On(node, soft=False)
                ).remote(self.spec)
                for node in urls
            }  # fmt: skip
            self.servers = list(by_node.values())
            self.log(f"ray: starting vllm serve on {len(by_node)} node(s) ...")
            urls = dict(zip(by_node, ray.get([s.url.remote() for s in by_node.values()])))
        worker = ray.remote(AgentWorker)
        self.workers = [
            worker.options(
                num_cpus=cfg.worker_cpus, num_gpus=cfg.worker_gpus, max_restarts=-1,
                max_task_retries=cfg.retries, name=f"worker-{i}", namespace=self.namespace,
                scheduling_strategy=On(node, soft=False),
            ).remote(self.spec, urls[node])
            for i, node in enumerate(placed)
        ]  # fmt: skip
        self.log(
            f"ray: {cfg.workers} agent worker(s) on {len(urls)} node(s) (actors worker-0..{cfg.workers - 1} "
            f"in namespace {self.namespace})"
        )

    def settings(self) -> dict:
        """What the workers' agent makes the records depend on (``srice.eval.run.agent_settings``)."""
        import ray

        return ray.get(self.workers[0].settings.remote())

    def answers(self, batches: list[list[EvalItem]]) -> Iterator[list[Answer]]:
        """Each batch's answers, in order, from whichever worker was free."""
        import ray

        free, pending, done = deque(self.workers), {}, {}
        sent = given = 0
        ahead = 2 * len(self.workers)
        while given < len(batches):
            while free and sent < len(batches) and sent - given < ahead:
                worker = free.popleft()
                pending[worker.answer.remote(batches[sent])] = (sent, worker)
                sent += 1
            if given in done:
                yield done.pop(given)
                given += 1
                continue
            [ready], _ = ray.wait(list(pending), num_returns=1)
            index, worker = pending.pop(ready)
            free.append(worker)
            done[index] = self._result(ready, batches[index])

    def _result(self, ref, batch: list[EvalItem]) -> list[Answer]:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # raised inside the worker: as without Ray
            cause = getattr(e, "cause", None)
            if isinstance(cause, SriceError):
                raise cause from None
            raise
        except _lost_worker() as e:
            if len(batch) == 1:
                from srice.agent.trace import Answer

                reason = (str(e).strip().splitlines() or [""])[0]
                died = f"its Ray worker died {self.config.retries + 1} times ({type(e).__name__}: {reason})"
                return [Answer(question=batch[0].question, options=None, item_id=batch[0].id, error=died)]
            self.log(f"ray: a batch of {len(batch)} lost its worker {self.config.retries + 1} times; "
                     "answering it one question at a time")  # fmt: skip
            return [
                self._result(self.workers[k % len(self.workers)].answer.remote([item]), [item])[0]
                for k, item in enumerate(batch)
            ]

    def __exit__(self, *exc) -> None:
        import ray

        if not ray.is_initialized():
            return
        try:
            if self.servers:
                ray.get([s.stop.remote() for s in self.servers], timeout=30)
        except Exception:  # noqa: BLE001 - they die with their actors anyway
            pass
        for actor in self.workers + self.servers:
            ray.kill(actor, no_restart=True)
        ray.shutdown()


def _lost_worker() -> tuple[type[BaseException], ...]:
    """The errors Ray raises when a worker died under a task (after its retries)."""
    from ray import exceptions as rx

    return tuple(
        getattr(rx, name)
        for name in ("RayActorError", "WorkerCrashedError", "OutOfMemoryError", "NodeDiedError")
        if hasattr(rx, name)
    )


def run_on_ray(
    spec: AgentSpec,
    config: RayConfig,
    items: Sequence[EvalItem],
    out_dir,
    *,
    variant,
    log: Callable[[str], None] | None = None,
    **options,
) -> EvalRun:
    """``srice eval --ray``: the records a plain run writes (``srice.eval.run.write``, the same
    settings, so either can resume the other), answered by the pool's workers."""
    from srice.eval import run as evaluate

    if options.get("shard", (0, 1)) != (0, 1):
        raise SriceError("--shard and --ray do not mix: Ray spreads the questions over its workers")
    with RayPool(config, spec, log) as pool:
        settings = evaluate.run_settings(items, (0, 1), pool.settings(), variant)
        return evaluate.write(items, out_dir, pool.answers, settings=settings, **options)
