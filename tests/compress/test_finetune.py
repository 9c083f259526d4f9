"""SEFT and its baselines on the real tiny Qwen2-VL: the zeros each pruned layer keeps, which weights
move, what stays untouched, and the result served by a real ``vllm serve`` through the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_srice, scene, wait_healthy
from srice.builtin.tiny_mllm import TinySpec, tiny_model_path
from srice.compress import CompressConfig, compress, masks
from srice.compress.config import FinetuneConfig
from srice.compress.finetune import finetune
from srice.compress.seft import evolve
from srice.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from srice.synth import SynthKnobs, generate

    out = tmp_path_factory.mktemp("data")
    generate(out, seed=11, n=40, knobs=SynthKnobs(min_side=336, max_side=448))  # enough to fit US q-hats
    return str(out / "questions.jsonl")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> dict[str, Path]:
    """The tiny model pruned by magnitude at 70%, and at 2:4."""
    base = tiny_model_path(TinySpec(num_layers=2))
    out = tmp_path_factory.mktemp("pruned")
    compress(base, out / "u70", CompressConfig("magnitude", 0.7))
    compress(base, out / "nm24", CompressConfig("magnitude", nm="2:4"))
    return {"u70": out / "u70", "nm24": out / "nm24"}


def _weights(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _linear_keys(manifest: dict) -> list[str]:
    return [f"{name}.weight" for name in manifest["achieved"]["per_linear"]]


def test_evolve_swaps_the_least_sensitive_for_the_steepest_and_keeps_the_count():
    g = torch.Generator().manual_seed(0)
    weight, grad = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    keep = masks.row_mask(weight.abs(), 0.7)
    weight = weight * keep
    new = evolve(weight, grad, keep, 0.25, "sensitivity")
    assert int(new.sum()) == int(keep.sum())
    grown, dropped = new & ~keep, keep & ~new
    assert int(grown.sum()) == int(dropped.sum()) == int(0.25 * int(keep.sum()))
    # every grown weight is steeper than every inactive one left out; every dropped one less
    # sensitive than every active one kept
    assert grad.abs()[grown].min() >= grad.abs()[~keep & ~grown].max()
    assert (weight * grad).abs()[dropped].max() <= (weight * grad).abs()[keep & new].min()
    assert torch.equal(evolve(weight, grad, keep, 0.0), keep)


def test_evolve_keeps_n_of_every_m():
    g = torch.Generator().manual_seed(1)
    weight, grad = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    keep = masks.nm_mask(weight.abs(), 2, 4)
    new = evolve(weight * keep, grad, keep, 0.5, "magnitude", nm=(2, 4))
    assert (new.reshape(8, 4, 4).sum(2) == 2).all()
    assert int((new != keep).sum()) == 2 * int(0.5 * 32)  # half the groups swapped one weight each


@pytest.mark.parametrize("which", ["u70", "nm24"])
def test_seft_keeps_every_layers_zeros_moves_weights_and_leaves_the_rest(pruned, data, tmp_path, which):
    lines = []
    config = FinetuneConfig("seft", steps=12, batch_size=4, interval=3, fraction=0.3, log_every=4, lr=1e-3)
    result = finetune(pruned[which], data, tmp_path / "out", config, device="cpu", progress=lines.append)
    manifest = result.manifest
    before, after = _weights(pruned[which]), _weights(tmp_path / "out")
    keys = _linear_keys(manifest)
    assert len(keys) == 2 * 7  # q, k, v, o, gate, up, down of each of the 2 decoder layers
    moved = 0
    for key in keys:
        assert int((after[key] == 0).sum()) == int((before[key] == 0).sum()), key  # the same zeros, per layer
        moved += int(((after[key] != 0) & (before[key] == 0)).sum())
        if which == "nm24":
            rows, cols = after[key].shape
            assert ((after[key] != 0).reshape(rows, cols // 4, 4).sum(2) == 2).all(), key
    assert moved > 0  # the topology evolved, not just the values
    assert manifest["sparsity_before"]["zeros"] == manifest["achieved"]["zeros"]
    for key in set(before) - set(keys):  # vision tower, embeddings, norms, LM head: untouched
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in keys)
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 3 and all("live sparsity" in line and "connections moved" in line for line in steps)
    assert manifest["pruning"]["method"] == "magnitude" and manifest["finetune"]["steps"] == 12
    assert len(manifest["data"]["sha256"]) == 64 and manifest["data"]["questions"] == 40


def test_the_baselines_dense_reprunes_to_the_same_zeros_lora_loses_them(pruned, data, tmp_path):
    base = _weights(pruned["u70"])
    for method in ("dense", "lora"):
        config = FinetuneConfig(method, steps=4, batch_size=4, lr=1e-3)
        manifest = finetune(pruned["u70"], data, tmp_path / method, config, device="cpu").manifest
        after = _weights(tmp_path / method)
        for key in _linear_keys(manifest):
            zeros = (after[key] == 0).sum(1)
            if method == "dense":  # each row back to the zeros it had
                assert torch.equal(zeros, (base[key] == 0).sum(1)), key
            else:
                assert int(zeros.sum()) < int((base[key] == 0).sum()), key
        assert (manifest["achieved"]["overall"] < 0.1) == (method == "lora")


def test_bad_settings_and_a_dense_model_are_refused(data, tmp_path):
    with pytest.raises(InputError, match="unknown fine-tuning method"):
        FinetuneConfig("rigl")
    with pytest.raises(InputError, match="interval must be >= 1"):
        FinetuneConfig(interval=0)
    with pytest.raises(InputError, match="no pruned layers"):
        finetune(tiny_model_path(TinySpec(num_layers=2)), data, tmp_path / "o", FinetuneConfig(steps=1))


@pytest.mark.vllm
def test_cli_seft_register_then_served_by_vllm_through_the_agent(pruned, data, tmp_path, monkeypatch):
    """``srice finetune --register`` writes a calibrated variant; ``srice serve`` serves it with vLLM
    and ``srice ask`` answers through the agent; vLLM's greedy answer equals transformers'."""
    from srice.agent.prompts import direct_request
    from srice.serving.hf import TransformersBackend
    from srice.serving.launcher import free_port
    from srice.serving.openai_http import OpenAIBackend

    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    r = run_srice("finetune", "--model", str(pruned["u70"]), "--data", data, "--steps", "6", "--batch-size",
                  "4", "--interval", "2", "-o", str(tmp_path / "s"), "--register", "t-seft", "--calib", data,
                  "--device", "cpu", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest["registered"] == "t-seft" and manifest["method"] == "seft"
    assert manifest["achieved"]["zeros"] == manifest["sparsity_before"]["zeros"]
    assert "live sparsity" in r.stderr
    assert (tmp_path / "s" / "calib" / "uncertainty.json").is_file()

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "srice", "serve", "--variant", "t-seft", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, serve)
        request = direct_request(scene(seed=5), "What colour is the square?", max_tokens=6)
        [served] = OpenAIBackend(url, "t-seft", timeout=60).generate([request])
        [local] = TransformersBackend(tmp_path / "s").generate([request])
        assert served.text == local.text and len(served.tokens) == len(local.tokens) > 0
        image = str(ROOT / "demos" / "example.png")
        r = run_srice("ask", "--variant", "t-seft", "--server", url, "--image", image,
                      "--question", "What colour is the square?", "--tools", "zoom", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)
        assert answer["variant"] == "t-seft" and "no uncertainty calibration" not in r.stderr, r.stderr
    finally:
        os.killpg(serve.pid, 2)
        serve.wait(timeout=60)
