"""Serving-layer throughput, as ratios measured in one run (these machines are noisy).

Starts a real ``vllm serve`` of a variant (default: the tiny model) and reports:
- batched/sequential: requests per second with N requests in flight vs one at a time;
- vllm/transformers: per-request latency of the HTTP backend vs the in-process transformers backend;
- start-up time of the server (unless ``--server`` names a running one) and single-request latency,
  for context.

    .venv/bin/python benchmarks/bench_serving.py [--variant tiny] [--n 32] [--max-tokens 8] [--server URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from contextlib import ExitStack

from benchkit import add_server
from PIL import Image, ImageDraw

from srice.agent.prompts import direct_request
from srice.serving.hf import TransformersBackend
from srice.serving.launcher import server_for
from srice.serving.openai_http import OpenAIBackend
from srice.serving.variants import get_variant


def picture(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (448, 336), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y, s = rng.randrange(380), rng.randrange(270), rng.randrange(16, 64)
        draw.rectangle((x, y, x + s, y + s), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=8)
    add_server(parser)
    args = parser.parse_args()

    variant = get_variant(args.variant)
    requests = [
        direct_request(picture(i), "What colour is the square?", max_tokens=args.max_tokens)
        for i in range(args.n)
    ]
    with ExitStack() as stack:
        url, started = args.server, None
        if not url:
            server = stack.enter_context(server_for(variant))
            url, started = server.url, server.started_seconds
        http = OpenAIBackend(url, variant.served_name, concurrency=args.n)
        http.generate(requests[:2])  # warm-up
        singles = [timed(lambda r=r: http.generate([r]))[1] for r in requests]
        _, batched = timed(lambda: http.generate(requests))
    local = TransformersBackend(variant.model_path())
    local.generate(requests[:2])
    _, local_batched = timed(lambda: local.generate(requests))

    sequential = sum(singles)
    print(f"variant {variant.name}, {args.n} requests x {args.max_tokens} tokens, one image each")
    print(f"vllm serve start-up: {f'{started:.1f} s' if started else f'- (already running at {url})'}")
    print(f"single request latency (vllm, HTTP): median {statistics.median(singles) * 1000:.0f} ms")
    print(
        f"batched/sequential throughput (vllm): {sequential / batched:.2f}x "
        f"({args.n / batched:.1f} vs {args.n / sequential:.1f} req/s)"
    )
    print(f"vllm/transformers throughput, batched: {local_batched / batched:.2f}x")


if __name__ == "__main__":
    main()
