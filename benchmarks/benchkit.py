"""What several benchmarks share (not a benchmark itself): the option that names a running model
server, and the toy's synthetic split with the options that size it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def add_server(parser: argparse.ArgumentParser) -> None:
    """``--server URL``: a running ``vllm serve`` of the variant, so the benchmark starts none (and
    does not time one's start-up); default ``$SRICE_SERVER``, as for ``srice``."""
    parser.add_argument(
        "--server",
        default=os.environ.get("SRICE_SERVER"),
        help="a running vllm serve of the variant (default: $SRICE_SERVER, else one is started here)",
    )


def eval_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that run ``srice eval`` on a fresh toy split: questions, tools,
    batch size, split seed and the model server."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="questions")
    parser.add_argument("--tools", default="yolo,zoom")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7, help="synth split seed")
    add_server(parser)
    return parser


def toy_split(prefix: str, seed: int, n: int) -> Path:
    """A new temporary folder holding ``synth/``: ``n`` questions (synth ``seed``) of the kinds the
    toy bundle learned. Returns the folder."""
    from srice.builtin.toy_bundle import bundle_kinds
    from srice.synth import SynthKnobs, generate

    work = Path(tempfile.mkdtemp(prefix=prefix))
    generate(work / "synth", seed=seed, n=n, knobs=SynthKnobs(kinds=bundle_kinds()))
    return work


def prefix_cache(urls) -> tuple[float, float]:
    """Prompt tokens the vLLM servers at ``urls`` were asked to prefill, and those their prefix cache
    served, summed from each one's ``/metrics`` (counters since it started: read before and after a
    run and subtract)."""
    import re

    import httpx

    counters = {"prompt_tokens_total": 0.0, "prompt_tokens_cached_total": 0.0}
    for url in urls:
        text = httpx.get(url.rstrip("/") + "/metrics", timeout=30).text
        for name in counters:
            values = re.findall(rf"^vllm:{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
            counters[name] += sum(float(v) for v in values)
    return counters["prompt_tokens_total"], counters["prompt_tokens_cached_total"]
