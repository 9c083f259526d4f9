"""What the agent server costs: 32 concurrent OpenAI clients against ``srice serve --agent``, against the
same 32 questions through in-process ``answer_batch``, and against the clients one at a time.

One ``vllm serve`` of the toy serves all three runs; the agent server runs in its own process with the
same tools and settings as the in-process agent (``--max-batch 32``). Prints, from one run:

- throughput of 32 concurrent clients / in-process ``answer_batch(32)`` (target >= 0.9), and the
  server's overhead per request;
- throughput of 32 concurrent clients / 32 clients one after another (the micro-batching gain);
- whether the server's answers equal the in-process ones.

    .venv/bin/python benchmarks/bench_agent_server.py [--n 32] [--tools yolo,zoom] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="questions (and concurrent clients)")
    parser.add_argument("--tools", default="yolo,zoom")
    parser.add_argument("--seed", type=int, default=7, help="synth split seed")
    args = parser.parse_args()

    import httpx
    import openai

    from srice import Item, ServingConfig, build_agent, open_backend
    from srice.builtin.toy_bundle import bundle_kinds
    from srice.serving.launcher import free_port
    from srice.synth import SynthKnobs, generate

    work = Path(tempfile.mkdtemp(prefix="srice-bench-server-"))
    generate(work / "synth", seed=args.seed, n=args.n, knobs=SynthKnobs(kinds=bundle_kinds()))
    rows = [json.loads(line) for line in (work / "synth" / "questions.jsonl").read_text().splitlines()][
        : args.n
    ]
    items = [
        Item(str(work / "synth" / r["image"]), r["question"], tuple(r["options"] or ()) or None) for r in rows
    ]
    tools = [t for t in args.tools.split(",") if t]

    with ExitStack() as stack:
        backend, variant = open_backend("toy", ServingConfig(), stack)
        agent = build_agent(backend, variant, tools, log=lambda text: None)
        agent.answer_batch(items[:2])  # load the tools and warm the server before timing
        began = time.perf_counter()
        local = agent.answer_batch(items)
        in_process = time.perf_counter() - began

        port = free_port()
        command = [str(Path(sys.executable).with_name("srice")), "serve", "--agent", "--variant", "toy",
                   "--server", backend.urls[0], "--port", str(port), "--tools", args.tools,
                   "--max-batch", str(args.n), "--max-queue", str(4 * args.n)]  # fmt: skip
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            else:
                sys.exit("the agent server did not start")

            def message(item):
                data = base64.b64encode(Path(item.image).read_bytes()).decode()
                text = item.question + "".join(
                    f"\n{'ABCD'[k]}. {o}" for k, o in enumerate(item.options or ())
                )
                return [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                    {"type": "text", "text": text}]}]  # fmt: skip

            async def concurrent():
                client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", timeout=600, max_retries=0)
                ask = client.chat.completions.create
                return await asyncio.gather(
                    *(ask(model="srice-toy-agent", messages=message(i)) for i in items)
                )

            sync = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=600, max_retries=0)
            sync.chat.completions.create(model="srice-toy-agent", messages=message(items[0]))  # warm
            began = time.perf_counter()
            replies = asyncio.run(concurrent())
            together = time.perf_counter() - began
            batches = _batches(httpx.get(f"{url}/metrics").text)
            began = time.perf_counter()
            for item in items:
                sync.chat.completions.create(model="srice-toy-agent", messages=message(item))
            one_by_one = time.perf_counter() - began
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)

    same = sum(r.choices[0].message.content == a.answer for r, a in zip(replies, local))
    n = len(items)
    print(f"# agent server vs in-process, {n} questions, tools {args.tools}, toy model (one vllm serve)\n")
    print(f"in-process answer_batch({n}): {in_process:.1f} s ({n / in_process:.2f} q/s)")
    print(f"{n} concurrent OpenAI clients: {together:.1f} s ({n / together:.2f} q/s)")
    print(f"{n} clients one at a time: {one_by_one:.1f} s ({n / one_by_one:.2f} q/s)")
    print(f"throughput ratio, concurrent clients / in-process: {in_process / together:.2f} (target >= 0.9)")
    print(f"server overhead per request: {(together - in_process) / n * 1000:+.0f} ms")
    print(f"micro-batching gain, concurrent / one at a time: {one_by_one / together:.2f}x")
    print(f"answers equal to in-process: {same}/{n}")
    print(f"batches the concurrent clients' questions ran in: {batches[0]:.0f} (mean size {batches[1]:.1f})")


def _batches(metrics: str) -> tuple[float, float]:
    """(batches, mean questions per batch) so far, from the server's Prometheus text (the warm-up
    question's batch subtracted)."""
    values = {}
    for line in metrics.splitlines():
        if line.startswith(("srice_batch_size_count ", "srice_batch_size_sum ")):
            name, value = line.split()
            values[name] = float(value)
    count, total = values["srice_batch_size_count"] - 1, values["srice_batch_size_sum"] - 1
    return count, total / max(count, 1)


if __name__ == "__main__":
    main()
