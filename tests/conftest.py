"""Shared fixtures: the tiny model (built once, cached) and one real ``vllm serve`` of it.

Nothing here is mocked: the server is the real vLLM CPU build from .venv-vllm (env/setup.sh).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from srice.serving.types import Completion, TokenLogprob

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_variant():
    from srice.serving.variants import get_variant

    return get_variant("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_variant) -> str:
    return tiny_variant.model_path()


@pytest.fixture(scope="session")
def vllm_server(tiny_variant, tmp_path_factory):
    from srice.serving.launcher import server_for

    with server_for(tiny_variant, log_path=tmp_path_factory.mktemp("vllm") / "server.log") as server:
        yield server


# served names of the toy model in benchmarks that register it as a variant of their own
ALIASES = ("srice-toy-eval", "srice-toy-ceiling")


@pytest.fixture(scope="session")
def toy_server(tmp_path_factory):
    """One real ``vllm serve`` of the trained toy for every test that asks the toy through HTTP
    (started once: each start costs about half a minute of the suite); it also answers to
    ``ALIASES``, the names under which benchmarks register the same model."""
    from srice.serving.launcher import VllmServer
    from srice.serving.variants import get_variant

    class ToyServer(VllmServer):
        def command(self) -> list[str]:
            command = super().command()
            at = command.index("--served-model-name") + 2
            return command[:at] + list(ALIASES) + command[at:]

    toy = get_variant("toy")
    log = tmp_path_factory.mktemp("vllm") / "toy.log"
    with ToyServer(toy.model_path(), served_name=toy.served_name, args=toy.vllm_args, log_path=log) as server:
        yield server


@pytest.fixture(scope="session")
def http_backend(vllm_server):
    """The HTTP backend to the shared ``vllm serve``."""
    from srice.serving.openai_http import OpenAIBackend

    return OpenAIBackend(vllm_server.url, vllm_server.served_name, timeout=120)


@pytest.fixture(scope="session")
def hf_backend(tiny_model):
    from srice.serving.hf import TransformersBackend

    return TransformersBackend(tiny_model)


def scene(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A small picture with a few coloured shapes; different seeds give different pictures."""
    import random

    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.randrange(width - 60), rng.randrange(height - 60)
        size = rng.randrange(20, 60)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + size, y + size), fill=colour)
        else:
            draw.ellipse((x, y, x + size, y + size), fill=colour)
    return image


class Scripted:
    """Replays fixed completions by the text of the prompt's last instruction. A stand-in for the
    model where a test needs exact answer distributions (a real model cannot be made to give them)."""

    name = "scripted"

    def __init__(self, first_token_by_view: dict[str, dict[str, float]], region_reply: str = '["circle"]'):
        self.by_view, self.region_reply = first_token_by_view, region_reply

    def generate(self, requests):
        out = []
        for r in requests:
            texts = [p for p in r.messages[0].content if isinstance(p, str)]
            images = [p for p in r.messages[0].content if not isinstance(p, str)]
            if "JSON list" in texts[-1]:
                out.append(Completion(self.region_reply, (), "stop", 0.0))
                continue
            probs = self.by_view["direct" if len(images) == 1 else "view"]
            top = tuple(TokenLogprob(t, math.log(p)) for t, p in sorted(probs.items(), key=lambda kv: -kv[1]))
            out.append(
                Completion(top[0].token, (TokenLogprob(top[0].token, top[0].logprob, top),), "stop", 0.0)
            )
        return out


def run_readme_python(after: str, url: str, replacement: str, timeout: float = 600) -> str:
    """The README's first Python block after the heading text ``after``, run as a user would in a
    separate process, with only the server ``url`` it names replaced; what it printed."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", readme[readme.index(after) :], re.S)[:1]
    assert url in block, f"the README block after {after!r} no longer uses {url}"
    code = block.replace(url, replacement)
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def run_srice(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``srice ARGS`` as a user runs it: a separate process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "srice", *args], capture_output=True, text=True, timeout=timeout
    )


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until the ``srice serve`` at ``url`` answers /health (it must not exit meanwhile)."""
    import time
    import urllib.request

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        assert proc.poll() is None, "srice serve exited early"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("srice serve never became healthy")
