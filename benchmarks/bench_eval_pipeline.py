"""What pipelining ``srice eval`` gains: the same questions evaluated stage by stage (``--pipeline 1``,
one batch at a time: model, tools, model) and pipelined (``--pipeline 2``: the model starts and
finishes batches while the tools work on another).

One ``vllm serve`` of the toy (started here, or named by ``--server``) serves both runs, in this
process's agent (the one ``srice eval`` builds).
Prints, from one run: each stage's time in the stage-by-stage run (model = start + finish, tools),
the limit a two-stage pipeline can reach, (model + tools) / max(model, tools), the throughput ratio
pipelined / stage by stage, and whether the two runs' records are identical (timings left out).

    .venv/bin/python benchmarks/bench_eval_pipeline.py [--n 64] [--tools yolo,zoom] [--batch-size 16]
        [--server URL]
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack

from benchkit import eval_parser, toy_split


def main() -> None:
    parser = eval_parser(__doc__)
    parser.add_argument("--depth", type=int, default=2, help="batches in flight in the pipelined run")
    args = parser.parse_args()

    from srice import ServingConfig, build_agent, open_backend
    from srice.eval.data import load_items
    from srice.eval.records import comparable, read_records
    from srice.eval.run import run

    work = toy_split("srice-bench-pipeline-", args.seed, args.n)
    items = load_items(work / "synth" / "questions.jsonl", limit=args.n)
    tools = [t for t in args.tools.split(",") if t]

    with ExitStack() as stack:
        backend, variant = open_backend("toy", ServingConfig(server=args.server), stack)
        agent = build_agent(backend, variant, tools, log=lambda text: None)
        run(agent, items[:2], work / "warm", batch_size=2, pipeline=1)  # load the tools, warm the server
        spent = _timed_stages(agent)
        walls, stages = {}, {}
        for depth in (1, args.depth):
            spent.clear()
            began = time.perf_counter()
            run(agent, items, work / f"depth{depth}", batch_size=args.batch_size, pipeline=depth)
            walls[depth] = time.perf_counter() - began
            stages[depth] = dict(spent)
    records = {d: [comparable(r) for r in read_records(work / f"depth{d}" / "records.jsonl")] for d in walls}
    same = sum(a == b for a, b in zip(records[1], records[args.depth]))
    model, tools_s = stages[1]["model"], stages[1]["tools"]
    piped = stages[args.depth]
    n, batches = len(items), -(-len(items) // args.batch_size)
    print(f"# srice eval, stage by stage vs pipelined: {n} questions in {batches} batches of "
          f"{args.batch_size}, tools {args.tools}, toy model (one vllm serve)\n")  # fmt: skip
    print(f"stage by stage (--pipeline 1): {walls[1]:.1f} s ({n / walls[1]:.2f} q/s): model {model:.1f} s, "
          f"tools {tools_s:.1f} s")  # fmt: skip
    d = args.depth
    print(f"pipelined (--pipeline {d}): {walls[d]:.1f} s ({n / walls[d]:.2f} q/s): "
          f"model {piped['model']:.1f} s, tools {piped['tools']:.1f} s, overlapping")  # fmt: skip
    print(f"throughput ratio, pipelined / stage by stage: {walls[1] / walls[args.depth]:.2f}")
    print(f"limit, (model + tools) / max(model, tools): {(model + tools_s) / max(model, tools_s):.2f}")
    print(f"records identical (timings left out, floats to 6 digits): {same}/{n}")
    print(f"(work folder: {work})")


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
