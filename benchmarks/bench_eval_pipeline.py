"""What agent workers gain ``srice eval``: the same questions answered by one agent, stage by stage
(``--workers 1``: model, tools, model, one batch at a time) and by two agent workers (``--workers
2``: while one waits on the model server, the other runs its tools), in two settings:

- shared: the model server and the agents on all of this machine's cores (what ``srice eval`` does
  on a CPU-only machine);
- pinned: a ``vllm serve`` pinned to core 0 (all its processes: its API server's image processing
  too; ``VLLM_CPU_OMP_THREADS_BIND=0``), the agents to the other cores: a model that does not share
  the tools' cores, as vLLM on a GPU or on another host.

Prints, from one run, for each setting: the stage-by-stage run's model and tool time (model = start +
finish), the workers' start-up (a one-off cost, like the one agent's tool loading before its run),
the limit a two-stage overlap can reach, (model + tools) / max(model, tools), the throughput ratio
workers / stage by stage (start-ups left out of both), and whether the records are identical
(timings left out).

    .venv/bin/python benchmarks/bench_eval_pipeline.py [--n 32] [--tools yolo,zoom] [--batch-size 8]
        [--settings shared,pinned] [--server URL (shared only)]
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import ExitStack

from benchkit import eval_parser, toy_split


def main() -> None:
    parser = eval_parser(__doc__)
    parser.set_defaults(n=32, batch_size=8)
    parser.add_argument("--workers", type=int, default=2, help="agent workers in the overlapped run")
    parser.add_argument("--settings", default="shared,pinned", help="shared, pinned or both")
    args = parser.parse_args()
    settings = [s for s in args.settings.split(",") if s]
    if not set(settings) <= {"shared", "pinned"}:
        parser.error("--settings takes shared and/or pinned")
    if "pinned" in settings and len(os.sched_getaffinity(0)) < 2:
        parser.error("the pinned setting needs 2 cores: one for vllm serve, one for the agents")

    from srice.eval.data import load_items

    work = toy_split("srice-bench-workers-", args.seed, args.n)
    items = load_items(work / "synth" / "questions.jsonl", limit=args.n)
    tools = tuple(t for t in args.tools.split(",") if t)
    n, batches = len(items), -(-len(items) // args.batch_size)
    print(f"# srice eval, one agent stage by stage vs {args.workers} agent workers: {n} toy questions in "
          f"{batches} batches of {args.batch_size}, tools {args.tools}\n")  # fmt: skip
    for setting in settings:
        compare(setting, items, work / setting, tools, args)
    print(f"(work folder: {work})")


def compare(setting: str, items, work, tools, args) -> None:
    import torch

    from srice import ServingConfig, open_backend
    from srice.builder.pool import AgentPool
    from srice.builder.spec import AgentSpec
    from srice.builder.workers import LocalWorkers
    from srice.eval.records import comparable, read_records
    from srice.eval.run import run, run_settings, worker_answers, worker_settings, write

    cores = os.sched_getaffinity(0)
    with ExitStack() as stack:
        if setting == "pinned":
            stack.callback(os.sched_setaffinity, 0, cores)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(min(cores))
            os.sched_setaffinity(0, {min(cores)})  # vllm serve's processes inherit it: all of them there
            try:
                backend, _ = open_backend("toy", ServingConfig(), stack, log=lambda text: None)
            finally:
                del os.environ["VLLM_CPU_OMP_THREADS_BIND"]
            os.sched_setaffinity(0, cores - {min(cores)})  # the agents (and their workers) off its core
            url = backend.urls[0]
        else:
            url = args.server or open_backend("toy", ServingConfig(), stack, log=lambda text: None)[0].urls[0]
        spec = AgentSpec(serving=ServingConfig(server=url), tools=tools, device="cpu")
        with AgentPool(spec, log=lambda text: None) as pool:
            agent = pool.agent()
            run(agent, items[:2], work / "warm", batch_size=2)  # load the tools, warm the server
            torch.set_num_threads(len(os.sched_getaffinity(0)))  # one thread per core it may use
            spent = _timed_stages(agent)
            began = time.perf_counter()
            run(agent, items, work / "one", batch_size=args.batch_size)
            one = time.perf_counter() - began
        began = time.perf_counter()
        with LocalWorkers(spec, args.workers) as workers:
            workers.start()
            start = time.perf_counter() - began
            began = time.perf_counter()
            settings = run_settings(items, (0, 1), workers.call(worker_settings), None)
            answer = lambda batches: workers.map(worker_answers, batches)  # noqa: E731
            write(items, work / "workers", answer, settings=settings, batch_size=args.batch_size)
            many = time.perf_counter() - began
    records = [[comparable(r) for r in read_records(work / d / "records.jsonl")] for d in ("one", "workers")]
    same = sum(a == b for a, b in zip(*records))
    model, tools_s = spent["model"], spent["tools"]
    n = len(items)
    where = {"shared": "all cores shared", "pinned": f"vllm on core {min(cores)}, agents on the rest"}
    print(f"## {setting} ({where[setting]})")
    print(f"stage by stage (--workers 1): {one:.1f} s ({n / one:.2f} q/s): model {model:.1f} s, "
          f"tools {tools_s:.1f} s")  # fmt: skip
    print(f"agent workers (--workers {args.workers}): {many:.1f} s ({n / many:.2f} q/s), after {start:.1f} s "
          "to start them (each imports torch and loads its tools, as the one agent did first)")  # fmt: skip
    print(f"throughput ratio, workers / stage by stage: {one / many:.2f}")
    print(f"limit, (model + tools) / max(model, tools): {(model + tools_s) / max(model, tools_s):.2f}")
    print(f"records identical (timings left out, floats to 6 digits): {same}/{n}\n")


def _timed_stages(agent) -> dict:
    """Wrap the agent's three steps to add up the time each kind of stage takes."""
    spent: dict = defaultdict(float)

    def timed(kind, fn):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[kind] += time.perf_counter() - began

        return wrapper

    agent.start = timed("model", agent.start)
    agent.finish = timed("model", agent.finish)
    agent.use_tools = timed("tools", agent.use_tools)
    return spent


if __name__ == "__main__":
    main()
