"""Agent overhead and batching, as ratios measured in one run (these machines are noisy).

- overhead = answer_batch wall time / (time inside backend.generate + time inside tools), 32 items:
  what the agent itself costs around the model and tool calls (target <= 1.10);
- batched/sequential = answer_batch(32) throughput vs 32 x answer();
- vLLM's prefix cache during answer_batch: the share of prompt tokens it served (every request of a
  question starts with its image and question), and the model time of SRICE per question against the
  direct answer alone (the same questions, no tools).

Runs a real vllm serve of a variant (default: the tiny model) and the embedded tools.

    .venv/bin/python benchmarks/bench_agent.py [--variant tiny] [--n 32] [--tools yolo,zoom] [--server URL]
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack

from bench_serving import picture  # the same synthetic pictures
from benchkit import add_server, prefix_cache

from srice.agent import Item
from srice.builder.agents import build_agent
from srice.serving.backends import open_backend
from srice.serving.config import ServingConfig


class Timed:
    """Adds up the wall time spent inside the wrapped object's generate/batch/__call__."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name):  # the rest (name, a tool's separate_views, ...) is the inner object's
        return getattr(self.inner, name)

    def _time(self, fn, *args):
        began = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - began

    def generate(self, requests):
        return self._time(self.inner.generate, requests)

    def batch(self, images, targets):
        return self._time(self.inner.batch, images, targets)

    def __call__(self, image, targets):
        return self._time(self.inner, image, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--tools", default="yolo,zoom")
    add_server(parser)
    args = parser.parse_args()

    items = [Item(picture(i), "What colour is the square?", ("red", "green", "blue")) for i in range(args.n)]
    with ExitStack() as stack:
        serving = ServingConfig(server=args.server, concurrency=64)
        backend, variant = open_backend(args.variant, serving, stack)
        agent = build_agent(backend, variant, args.tools.split(","))
        backend = agent.backend = Timed(agent.backend)
        tools = agent.tools = [Timed(t) for t in agent.tools]
        agent.answer_batch(items[:2])  # warm-up: lazy weights, server caches
        backend.seconds = 0.0
        for t in tools:
            t.seconds = 0.0
        before, began = prefix_cache(backend.urls), time.perf_counter()
        answers = agent.answer_batch(items)
        batched = time.perf_counter() - began
        asked, served = (after - b for after, b in zip(prefix_cache(backend.urls), before))
        inside = backend.seconds + sum(t.seconds for t in tools)
        model, tool_time = backend.seconds, sum(t.seconds for t in tools)
        direct = build_agent(backend.inner, variant, [])
        direct.backend = alone = Timed(direct.backend)
        direct.answer_batch(items)
        began = time.perf_counter()
        for item in items:
            agent.answer(item.image, item.question, item.options)
        sequential = time.perf_counter() - began
    pathways = len(answers[0].trace)
    print(f"variant {variant.name}, {args.n} questions, tools {args.tools}, {pathways} pathways per question")
    print(
        f"answer_batch: {batched:.2f} s = model {model:.2f} s + tools {tool_time:.2f} s + agent "
        f"{batched - inside:.2f} s"
    )
    print(f"overhead (wall / (generate + tools)): {batched / inside:.3f}")
    calls, share = sum(a.mllm_calls for a in answers) / len(answers), served / max(asked, 1)
    print(
        f"prefix cache: {served:.0f} of {asked:.0f} prompt tokens served from it ({share:.3f}); "
        f"model time per question: SRICE {model / args.n:.3f} s ({calls:.2f} calls) vs direct alone "
        f"{alone.seconds / args.n:.3f} s, ratio {model / alone.seconds:.2f}x"
    )
    print(
        f"batched/sequential throughput: {sequential / batched:.2f}x "
        f"({args.n / batched:.1f} vs {args.n / sequential:.1f} questions/s)"
    )


if __name__ == "__main__":
    main()
