"""The trained toy bundle in the repo: intact, small, the default, and actually trained.

The accuracy checks are loose bounds measured on a few dozen fresh synthetic questions: a
random-weight model, or one that answers from text priors alone (crop and direct answers equal),
fails them; the trained one passes with room. The full measurement, with intervals, is
benchmarks/bench_toy_accuracy.py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from srice.builtin.toy_bundle import TOY_DIR
from srice.serving.types import Message, Request
from srice.synth import SynthKnobs, make_image
from srice.toy.data import examples_for_image

if not (TOY_DIR / "manifest.json").exists():
    pytest.skip("the trained toy bundle is not in this checkout yet (issue 6)", allow_module_level=True)
MANIFEST = json.loads((TOY_DIR / "manifest.json").read_text())
KNOBS = SynthKnobs(kinds=("colour", "exists", "colour_mc"))


def test_bundle_matches_its_manifest_and_stays_small():
    for name, entry in MANIFEST["files"].items():
        data = (TOY_DIR / name).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], name
    assert MANIFEST["total_bytes"] <= 25 * 10**6
    assert {"mllm/model.safetensors", "yolo.pt", "calib/yolo.json", "calib/uncertainty.json"} <= set(
        MANIFEST["files"]
    )
    assert MANIFEST["seed"] == MANIFEST["mllm"]["config"]["seed"] == MANIFEST["detector"]["config"]["seed"]


def test_the_toy_bundle_is_the_default_everywhere():
    from srice.app.cli import build_parser
    from srice.builder.toolbox import embedded_options
    from srice.serving.variants import get_variant

    args = build_parser().parse_args(["ask", "--image", "x.png", "--question", "q"])
    variant = get_variant(args.variant)
    assert variant.name == "toy" and variant.model_path() == str(TOY_DIR / "mllm")
    assert variant.calibration_dir() == str(TOY_DIR / "calib")
    assert embedded_options("yolo")["weights"] == str(TOY_DIR / "yolo.pt")


@pytest.fixture(scope="module")
def toy_backend():
    from srice.serving.hf import TransformersBackend

    return TransformersBackend(TOY_DIR / "mllm", batch_size=16)


@pytest.fixture(scope="module")
def fresh_examples():
    """Questions from a synth seed no training or calibration stage used, with a perfect detector."""
    out = []
    for index in range(32):
        scene, image, records = make_image(11, index, KNOBS)
        rng = np.random.default_rng(index)
        out += examples_for_image(scene, image, records, rng, miss=0.0, region_share=1.0)
    return out


def _accuracy(backend, examples) -> float:
    requests = [Request((Message("user", e.content),), max_tokens=12, top_logprobs=0) for e in examples]
    return float(np.mean([c.text.strip() == e.answer for c, e in zip(backend.generate(requests), examples)]))


def _select(examples, role, tiny):
    return [e for e in examples if e.role == role and (e.record["meta"]["target_size"] == "tiny") == tiny]


def test_the_model_reads_colours_from_crops_and_names_its_targets(toy_backend, fresh_examples):
    """Colour questions (chance 1/8): read from the zoomed crop, much better than from the full
    view, where most targets are a few pixels. (Presence and multiple choice are not learnt by
    this toy: it answers them from priors; see the README.)"""
    colour = [e for e in fresh_examples if e.record["kind"] == "colour"]
    crop = _accuracy(toy_backend, [e for e in colour if e.role == "crop"])
    direct = _accuracy(toy_backend, [e for e in colour if e.role == "direct"])
    assert crop >= 0.3 and crop >= direct + 0.1, (crop, direct)
    regions = [e for e in fresh_examples if e.role == "region"]
    assert _accuracy(toy_backend, regions) >= 0.9


def test_vllm_serves_the_toy_model_with_the_same_greedy_answers(toy_server, toy_backend, fresh_examples):
    from srice.serving.openai_http import OpenAIBackend

    examples = fresh_examples[:24]  # direct, crop and region prompts
    requests = [Request((Message("user", e.content),), max_tokens=12, top_logprobs=5) for e in examples]
    served = OpenAIBackend(toy_server.url, toy_server.served_name).generate(requests)
    local = toy_backend.generate(requests)
    assert [c.text for c in served] == [c.text for c in local]
    for a, b in zip(served, local):  # first-token logprobs, what the uncertainty score reads
        assert a.tokens[0].token == b.tokens[0].token
        assert a.tokens[0].logprob == pytest.approx(b.tokens[0].logprob, abs=2e-2)


def test_readme_python_api_example_runs_as_written(toy_server):
    """The README's Python API block, run as a user would (only the server URL is this test's)."""
    from conftest import run_readme_python

    stdout = run_readme_python("Python API", "http://127.0.0.1:8000", toy_server.url)
    answer, _, pathways = stdout.strip().splitlines()[-1].partition(" [")
    assert "'direct'" in pathways and "'yolo[0]'" in pathways, stdout


def test_readme_pool_example_answers_as_build_agent_does(toy_server):
    """The README's AgentPool block, run as written: the pool's default agent answers the example as
    ``build_agent`` with the same tools does, and a second setting is a second agent."""
    from conftest import run_readme_python
    from srice import AgentPool, AgentSpec, ServingConfig, build_agent
    from srice.serving.openai_http import OpenAIBackend

    stdout = run_readme_python("The same agent described once", "http://127.0.0.1:8000", toy_server.url)
    first, second = stdout.strip().splitlines()[-2:]
    backend = OpenAIBackend(toy_server.url, toy_server.served_name)
    direct = build_agent(backend, "toy", ["yolo", "zoom"], log=lambda text: None)
    assert first == direct.answer("demos/examples/tiny_triangle.png", "What colour is the triangle?").answer
    spec = AgentSpec(tools=("yolo", "zoom"), serving=ServingConfig(server=toy_server.url))
    with AgentPool(spec, log=lambda text: None) as pool:
        assert pool.agent() is pool.agent() and pool.agent(top_views=0) is not pool.agent()
        assert pool.agent().tools[0] is pool.agent(top_views=0).tools[0]  # the tools are shared
        star = pool.agent(top_views=0).answer("demos/examples/tiny_triangle.png", "Is there a star?")
        assert second == star.answer


def test_your_model_in_one_flag_answers_as_its_registered_variant(toy_server, tmp_path):
    """``--model DIR`` (the toy's own folder, served as a variant made on the fly by a vllm serve srice
    starts) answers the README example as ``--variant toy`` does, given the same calibration."""
    import json

    from conftest import run_srice

    question = ["--image", "demos/examples/tiny_triangle.png", "--question", "What colour is the triangle?"]
    calib = ["--calib", str(TOY_DIR / "calib"), "--tools", "zoom", "--json"]
    mine = run_srice("ask", "--model", str(TOY_DIR / "mllm"), *question, *calib)
    assert mine.returncode == 0, mine.stderr[-2000:]
    toy = run_srice("ask", "--variant", "toy", "--server", toy_server.url, *question, *calib)
    assert toy.returncode == 0, toy.stderr[-2000:]
    a, b = json.loads(mine.stdout), json.loads(toy.stdout)
    assert a["variant"] == "mllm" and b["variant"] == "toy"
    assert (a["answer"], a["pathway"], a["uncertainty"]) == (b["answer"], b["pathway"], b["uncertainty"])
    hub = run_srice("ask", "--model", "someone/some-model", *question, "--tools", "")
    assert hub.returncode == 1 and hub.stderr.strip().splitlines()[-1] == (
        "srice: error: --model someone/some-model is a hub model: pass --allow-hub to download it"
    )
