"""What the agent server costs: 32 concurrent OpenAI clients against ``srice serve --agent``, against the
same 32 questions through in-process ``answer_batch``, and against the clients one at a time.

One ``vllm serve`` of the toy serves all three runs; the agent server runs in its own process with the
same tools and settings as the in-process agent (``--max-batch 32``, ``--workers`` as given: default
auto, two agent workers). Prints, from one run:

- throughput of 32 concurrent clients / in-process ``answer_batch(32)`` (target >= 0.95), and the
  server's overhead per request;
- throughput of 32 concurrent clients / 32 clients one after another (the micro-batching gain);
- whether the server's answers equal the in-process ones.

    .venv/bin/python benchmarks/bench_agent_server.py [--n 32] [--tools yolo,zoom] [--seed 7] [--server URL]
        [--workers auto]
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
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchkit import add_server, toy_split

MODEL = "srice-toy-agent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="questions (and concurrent clients)")
    parser.add_argument("--tools", default="yolo,zoom")
    parser.add_argument("--seed", type=int, default=7, help="synth split seed")
    parser.add_argument("--workers", default="auto", help="the agent server's --workers")
    add_server(parser)
    args = parser.parse_args()

    from srice import ServingConfig, build_agent, open_backend

    items = _items(args.seed, args.n)
    tools = [t for t in args.tools.split(",") if t]
    with ExitStack() as stack:
        backend, variant = open_backend("toy", ServingConfig(server=args.server), stack)
        agent = build_agent(backend, variant, tools, log=lambda text: None)
        agent.answer_batch(items[:2])  # load the tools and warm the server before timing
        began = time.perf_counter()
        local = agent.answer_batch(items)
        in_process = time.perf_counter() - began
        with _agent_server(backend.urls[0], args) as url:
            replies, together, batches, one_by_one = _clients(url, items)
    _report(args, items, local, replies, in_process, together, one_by_one, batches)


def _items(seed: int, n: int) -> list:
    """The first ``n`` questions of a fresh toy split, as agent items."""
    from srice import Item

    synth = toy_split("srice-bench-server-", seed, n) / "synth"
    rows = [json.loads(line) for line in (synth / "questions.jsonl").read_text().splitlines()][:n]
    return [Item(str(synth / r["image"]), r["question"], tuple(r["options"] or ()) or None) for r in rows]


@contextmanager
def _agent_server(model_url: str, args):
    """``srice serve --agent`` in front of the model server at ``model_url``, with the in-process
    agent's tools; its URL once healthy; stopped (SIGINT) on leaving."""
    import httpx

    from srice.serving.launcher import free_port

    port = free_port()
    command = [str(Path(sys.executable).with_name("srice")), "serve", "--agent", "--variant", "toy",
               "--server", model_url, "--port", str(port), "--tools", args.tools,
               "--max-batch", str(args.n), "--max-queue", str(4 * args.n),
               "--workers", args.workers]  # fmt: skip
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
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def _message(item) -> list[dict]:
    data = base64.b64encode(Path(item.image).read_bytes()).decode()
    text = item.question + "".join(f"\n{'ABCD'[k]}. {o}" for k, o in enumerate(item.options or ()))
    return [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        {"type": "text", "text": text}]}]  # fmt: skip


def _clients(url: str, items: list) -> tuple[list, float, tuple[float, float], float]:
    """The questions asked by concurrent OpenAI clients, then by one client after another: (the
    concurrent replies, their seconds, their batches (``_batches``), the one-by-one seconds)."""
    import httpx
    import openai

    async def concurrent():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", timeout=600, max_retries=0)
        ask = client.chat.completions.create
        return await asyncio.gather(*(ask(model=MODEL, messages=_message(i)) for i in items))

    sync = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=600, max_retries=0)
    sync.chat.completions.create(model=MODEL, messages=_message(items[0]))  # warm
    began = time.perf_counter()
    replies = asyncio.run(concurrent())
    together = time.perf_counter() - began
    batches = _batches(httpx.get(f"{url}/metrics").text)
    began = time.perf_counter()
    for item in items:
        sync.chat.completions.create(model=MODEL, messages=_message(item))
    return replies, together, batches, time.perf_counter() - began


def _report(args, items, local, replies, in_process, together, one_by_one, batches) -> None:
    same = sum(r.choices[0].message.content == a.answer for r, a in zip(replies, local))
    n = len(items)
    print(f"# agent server (--workers {args.workers}) vs in-process, {n} questions, tools {args.tools}, toy "
          "model (one vllm serve)\n")  # fmt: skip
    print(f"in-process answer_batch({n}): {in_process:.1f} s ({n / in_process:.2f} q/s)")
    print(f"{n} concurrent OpenAI clients: {together:.1f} s ({n / together:.2f} q/s)")
    print(f"{n} clients one at a time: {one_by_one:.1f} s ({n / one_by_one:.2f} q/s)")
    print(f"throughput ratio, concurrent clients / in-process: {in_process / together:.2f} (target >= 0.95)")
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
