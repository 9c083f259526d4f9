"""What ``srice eval --ray`` costs on one machine: the same questions through a plain ``srice eval``
and through ``srice eval --ray`` with a local cluster of this machine (2 agent workers), both
against one ``vllm serve`` of the toy that this script starts, or the one ``--server`` names (so
neither run pays the server's start-up), each as the user runs it (a separate process).

Prints, from one run: each run's wall time from the command's start to its exit and the eval's own
time (after start-up: Ray, workers, tools), the overhead ratios ray / plain for both (target <= 1.15),
whether the records are identical (timings left out, floats to 6 digits), and, on paper, what N nodes
would give from the measured per-question cost (each node its own model server and workers).

    .venv/bin/python benchmarks/bench_eval_ray.py [--n 64] [--tools yolo,zoom] [--batch-size 16]
        [--server URL]
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from contextlib import ExitStack

from benchkit import eval_parser, toy_split


def main() -> None:
    parser = eval_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from srice import ServingConfig, open_backend
    from srice.eval.records import comparable, read_records

    work = toy_split("srice-bench-ray-", args.seed, args.n)
    with ExitStack() as stack:
        backend, _ = open_backend("toy", ServingConfig(server=args.server), stack)
        common = ["eval", "--data", str(work / "synth" / "questions.jsonl"), "--limit", str(args.n),
                  "--variant", "toy", "--pathways", args.tools, "--batch-size", str(args.batch_size),
                  "--server", backend.urls[0], "--max-failed-items", "1",
                  "--max-tool-failures", "1"]  # fmt: skip
        runs = {
            "plain": common + ["--out", str(work / "plain")],
            "ray": common + ["--out", str(work / "ray"), "--ray", "--ray-workers", str(args.workers)],
        }
        wall, own = {}, {}
        for name, command in runs.items():
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "srice", *command], capture_output=True, text=True)
            wall[name] = time.perf_counter() - began
            if done.returncode != 0:
                sys.exit(f"{name} run failed:\n{done.stderr[-3000:]}")
            own[name] = float(re.search(r"questions in ([\d.]+) s", done.stdout).group(1))
    records = {name: [comparable(r) for r in read_records(work / name / "records.jsonl")] for name in runs}
    same = sum(a == b for a, b in zip(records["plain"], records["ray"]))
    n = args.n
    print(f"# srice eval, plain vs --ray ({args.workers} workers, local cluster), {n} questions in batches "
          f"of {args.batch_size}, tools {args.tools}, toy model (one vllm serve)\n")  # fmt: skip
    for name in runs:
        print(f"{name}: {wall[name]:.1f} s from start to exit, eval {own[name]:.1f} s "
              f"({n / own[name]:.2f} q/s)")  # fmt: skip
    print(f"overhead ratio ray / plain, start to exit: {wall['ray'] / wall['plain']:.2f} (target <= 1.15)")
    print(f"overhead ratio ray / plain, eval only: {own['ray'] / own['plain']:.2f}")
    print(f"records identical (timings left out, floats to 6 digits): {same}/{n}")
    per_question = own["ray"] / n  # one node: its server and its workers
    print("on paper, N nodes each with its own vllm serve and workers, from this node's eval time:")
    for nodes in (1, 2, 4, 8):
        print(f"  {nodes} node(s): {nodes / per_question:.2f} q/s")
    print(f"(work folder: {work})")


if __name__ == "__main__":
    main()
