"""Compression on the real tiny Qwen2-VL: checkpoints that transformers and ``vllm serve`` load.

Calibration is multimodal (synthetic image + question prompts). The vLLM tests start real servers
of compressed checkpoints, through the CLI (``srice serve``/``ask``/``eval``) as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_srice, scene, wait_healthy
from srice.agent.prompts import direct_request
from srice.builtin.tiny_mllm import TinySpec, tiny_model_path
from srice.compress import CompressConfig, compress, masks, owl_allocation
from srice.compress.register import register
from srice.errors import ServingError
from srice.serving.hf import TransformersBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> str:
    from srice.synth import SynthKnobs, generate

    out = tmp_path_factory.mktemp("calib")
    generate(out, seed=3, n=40, knobs=SynthKnobs(min_side=336, max_side=448))  # enough to fit US q-hats
    return str(out / "questions.jsonl")


@pytest.fixture(scope="module")
def tiny4() -> Path:
    return tiny_model_path(TinySpec(num_layers=4))


def _tensors(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def _weights(folder) -> dict[str, torch.Tensor]:
    """Parameters by module name (the files use Qwen2-VL's original key names)."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _answer(folder, **load) -> str:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.serving.hf import _hf_messages

    processor = AutoProcessor.from_pretrained(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32, **load).eval()
    request = direct_request(scene(seed=2), "What colour is the square?", max_tokens=4)
    inputs = processor.apply_chat_template(
        [_hf_messages(request)], add_generation_prompt=True, tokenize=True, return_dict=True,
        processor_kwargs={"return_tensors": "pt"},
    )  # fmt: skip
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert len(new) >= 1
    return processor.tokenizer.decode(new)


def test_owl_wanda_checkpoint_keeps_vision_bit_identical_and_records_what_it_did(tiny4, calib, tmp_path):
    result = compress(tiny4, tmp_path / "owl", CompressConfig("wanda", 0.5, calib=calib, calib_n=6, owl=True))
    m = result.manifest
    before, after = _tensors(tiny4), _tensors(result.out_dir)
    assert set(before) == set(after)
    vision = [k for k in before if "visual" in k]  # file bytes, so "bit-identical" is literal
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)  # excluded: untouched
    for k in before:
        if "embed_tokens" in k or "lm_head" in k or "norm" in k:
            assert torch.equal(before[k], after[k]), k
    # achieved sparsity in the manifest is what the saved weights hold, and follows the OWL targets
    after = _weights(result.out_dir)
    for name, share in m["achieved"]["per_linear"].items():
        saved = after[name + ".weight"]
        assert share == pytest.approx(masks.sparsity_of(saved), abs=1e-6)
        target = m["target_sparsity"][name.rsplit(".", 2)[0]]
        assert (saved == 0).sum(1).tolist() == [int(saved.shape[1] * target)] * saved.shape[0]
    targets = list(m["target_sparsity"].values())
    assert len(targets) == 4 and sum(targets) / 4 == pytest.approx(0.5, abs=1e-6)
    ratios = list(m["owl"]["outlier_ratio"].values())
    assert targets == pytest.approx(
        owl_allocation.allocate(ratios, 0.5, 0.08), abs=1e-6
    )  # the reference rule
    assert max(targets) - min(targets) > 0.01 and all(0.34 - 1e-6 <= t <= 0.66 + 1e-6 for t in targets)
    assert sorted(range(4), key=ratios.__getitem__) == sorted(range(4), key=lambda i: -targets[i])
    assert m["calibration"]["samples"] == 6 and len(m["calibration"]["sha256"]) == 64
    assert m["device"] == "cpu"  # auto, on a machine without CUDA
    # one block-by-block pass over the dense model gives both OWL's ratios and Wanda's norms
    assert m["capture"] == {"prefix_passes": 1, "block_forwards": 4, "blocks": 4}
    assert m["parameters"]["owl"] and m["method"] == "wanda" and not m["parameters"]["include_vision"]
    assert json.loads((result.out_dir / "manifest.json").read_text()) == m
    assert (result.out_dir / "tokenizer.json").exists() and (result.out_dir / "chat_template.jinja").exists()
    assert _answer(result.out_dir)
    # the hash identifies the calibration data: fewer samples, another hash
    other = compress(
        tiny4, tmp_path / "owl3", CompressConfig("magnitude", 0.3, calib=calib, calib_n=3, owl=True)
    )
    assert other.manifest["calibration"] is None  # magnitude+OWL needs no data
    again = compress(tiny4, tmp_path / "w3", CompressConfig("wanda", 0.3, calib=calib, calib_n=3))
    assert again.manifest["calibration"]["sha256"] != m["calibration"]["sha256"]


def test_include_vision_prunes_vision_blocks_and_nm_is_exact(tiny4, calib, tmp_path):
    before = _weights(tiny4)
    config = CompressConfig("sparsegpt", calib=calib, calib_n=4, nm="2:4", include_vision=True)
    result = compress(tiny4, tmp_path / "v", config)
    after = _weights(result.out_dir)
    blocks = result.manifest["achieved"]["per_block"]
    assert any("visual" in b for b in blocks) and any("language_model" in b for b in blocks)
    for name in result.manifest["achieved"]["per_linear"]:
        w = after[name + ".weight"]
        assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all(), name
        assert masks.sparsity_of(w) == pytest.approx(0.5, abs=0.01)
    merger = [k for k in before if "merger" in k]
    assert merger and all(torch.equal(before[k], after[k]) for k in merger)  # never pruned
    assert _answer(result.out_dir)


def test_depth_pruned_checkpoint_is_a_standard_checkpoint(tiny4, calib, tmp_path):
    from transformers import AutoConfig

    result = compress(tiny4, tmp_path / "d", CompressConfig("depth", 0.5, calib=calib, calib_n=4))
    d = result.manifest["depth"]
    assert len(d["removed_layers"]) == 2 and len(d["kept_layers"]) == 2
    influence = d["block_influence"]
    assert max(influence[i] for i in d["removed_layers"]) <= min(influence[i] for i in d["kept_layers"])
    config = AutoConfig.from_pretrained(str(result.out_dir)).text_config
    assert config.num_hidden_layers == 2 and len(config.layer_types) == 2 and config.max_window_layers == 2
    before, after = _weights(tiny4), _weights(result.out_dir)
    for new, old in enumerate(d["kept_layers"]):
        key = "model.language_model.layers.{}.mlp.up_proj.weight"
        assert torch.equal(after[key.format(new)], before[key.format(old)])  # renumbered, not rebuilt
    assert not any(".layers.2." in k or ".layers.3." in k for k in after if "language_model" in k)
    assert _answer(result.out_dir)


@pytest.mark.parametrize("method,fmt", [("w4a16", "pack-quantized"), ("fp8", "float-quantized")])
def test_quantized_checkpoint_is_compressed_tensors_and_loads_in_transformers(
    tiny4, calib, tmp_path, method, fmt
):
    from transformers import CompressedTensorsConfig

    result = compress(tiny4, tmp_path / method, CompressConfig(method, calib=calib, calib_n=4))
    config = json.loads((result.out_dir / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == fmt
    ran = result.manifest["quantization"]
    if method == "w4a16":  # llm-compressor's default for GPTQ, fed what the model feeds its decoder
        assert ran["pipeline"] == "sequential" and "image features merged" in ran["inputs"]
    else:
        assert ran["pipeline"] == "datafree" and "inputs" not in ran
    after, before = _tensors(result.out_dir), _tensors(tiny4)
    assert any(k.endswith("weight_packed" if method == "w4a16" else "weight_scale") for k in after)
    vision = [k for k in before if "visual" in k]
    assert all(torch.equal(before[k], after[k]) for k in vision)
    # transformers on CPU runs compressed-tensors checkpoints dequantized (the backend does it itself)
    assert _answer(result.out_dir, quantization_config=CompressedTensorsConfig(dequantize=True))
    [completion] = TransformersBackend(result.out_dir).generate(
        [direct_request(scene(seed=2), "What colour is the square?", max_tokens=4)]
    )
    assert completion.tokens


def test_register_inherits_serving_args_and_fixes_w4a16_dtype(tiny4, calib, tmp_path, monkeypatch):
    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    from srice.serving.variants import get_variant

    result = compress("tiny", tmp_path / "m", CompressConfig("magnitude", 0.4))
    assert result.manifest["base_variant"] == "tiny"
    variant, path = register(result, "tiny-mag")
    assert get_variant("tiny-mag").vllm_args == get_variant("tiny").vllm_args
    assert get_variant("tiny-mag").model_path() == str((tmp_path / "m").resolve())
    q = compress("tiny-mag", tmp_path / "q", CompressConfig("fp8"))  # a registered variant is a valid --model
    assert q.manifest["base_variant"] == "tiny-mag"
    result.manifest["method"] = "w4a16"
    if not w4a16_here():  # this CPU's vLLM build has no W4A16 kernel: registering says so
        with pytest.raises(ServingError, match="use --method fp8"):
            register(result, "tiny-w4")
        return
    args = register(result, "tiny-w4")[0].vllm_args
    assert args[args.index("--dtype") + 1] == "bfloat16"


def test_bad_arguments_are_input_errors(tmp_path, calib, tiny4):
    from srice.errors import InputError

    cases = [
        (dict(method="wanda", nm="4:2", calib=calib), "N:M needs 0 < N < M"),
        (dict(method="wanda", nm="2:4", sparsity=0.3, calib=calib), "means sparsity 0.5"),
        (dict(method="fp8", nm="2:4"), "N:M applies to pruning methods"),
        (dict(method="wanda"), r"needs calibration data \(--calib\)"),
        (dict(method="depth", sparsity=0.0, calib=calib), "sparsity > 0"),
        (dict(method="w4a16", owl=True, calib=calib), "OWL allocates sparsity for"),
        (dict(method="wanda", calib=str(tmp_path / "none.jsonl")), "none.jsonl"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            compress(tiny4, tmp_path / "out", CompressConfig(**kwargs))
    with pytest.raises(InputError, match="not a model folder"):
        compress(tmp_path, tmp_path / "out", CompressConfig("magnitude"))
    with pytest.raises(InputError, match="--device must be auto, cpu, cuda or cuda:N"):
        compress(tiny4, tmp_path / "out", CompressConfig("magnitude"), device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available on this machine") as e:
            compress(tiny4, tmp_path / "out", CompressConfig("magnitude"), device="cuda")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_errors_are_one_line(tmp_path):
    cases = [
        (["--model", "tiny", "--method", "wanda", "--sparsity", "1.0"], "sparsity must be in [0, 1)"),
        (["--model", str(tmp_path / "none"), "--method", "magnitude"], "model not found"),
    ]
    for args, message in cases:
        r = run_srice("compress", *args, "-o", str(tmp_path / "out"))
        assert r.returncode == 1, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("srice: error:")
    r = run_srice("compress", "--model", "tiny", "--method", "nope", "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.vllm
def test_cli_compress_register_serve_ask_eval_through_vllm(tiny4, calib, tmp_path, monkeypatch):
    """Depth pruning, then OWL-Wanda on the result, each registered; the last one served by
    ``srice serve`` and used by ``srice ask`` and ``srice eval``; vLLM's greedy answer equals
    transformers' on the same checkpoint."""
    from srice.serving.launcher import free_port

    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    r = run_srice("compress", "--model", str(tiny4), "--method", "depth", "--sparsity", "0.25", "--calib",
                  calib, "--calib-n", "4", "-o", str(tmp_path / "d"), "--register", "t-depth")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "registered variant 't-depth'" in r.stdout
    r = run_srice("compress", "--model", "t-depth", "--method", "wanda", "--owl", "--sparsity", "0.5",
                  "--calib", calib, "--calib-n", "4", "-o", str(tmp_path / "dw"), "--register", "t-dw",
                  "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest["base_variant"] == "t-depth" and manifest["registered"] == "t-dw"
    assert len(manifest["target_sparsity"]) == 3  # the depth-pruned model has 3 layers

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "srice", "serve", "--variant", "t-dw", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, serve)
        from srice.serving.hf import TransformersBackend
        from srice.serving.openai_http import OpenAIBackend

        request = direct_request(scene(seed=5), "What colour is the square?", max_tokens=6)
        [served] = OpenAIBackend(url, "t-dw", timeout=60).generate([request])
        [local] = TransformersBackend(tmp_path / "dw").generate([request])
        assert served.text == local.text and len(served.tokens) == len(local.tokens) > 0
        image = str(ROOT / "demos" / "example.png")
        r = run_srice("ask", "--variant", "t-dw", "--server", url, "--image", image,
                      "--question", "What colour is the square?", "--tools", "", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["variant"] == "t-dw"
        r = run_srice("eval", "--variant", "t-dw", "--server", url, "--data", calib, "--pathways", "",
                      "--out", str(tmp_path / "eval"), "--limit", "8")  # fmt: skip
        assert r.returncode == 0, r.stderr
        summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
        assert summary["n"] == 8 and summary["errors"] == 0
    finally:
        os.killpg(serve.pid, 2)  # SIGINT: srice serve stops its vllm process group
        serve.wait(timeout=60)


@pytest.mark.vllm
@pytest.mark.parametrize("method", ["w4a16"])
def test_vllm_serves_quantized_checkpoints(tiny4, calib, tmp_path, monkeypatch, method):
    """W4A16 needs the registered bfloat16 dtype (vLLM's CPU W4A16 kernel has no float32 path).
    FP8 checkpoints serve with the base's float32 args too (checked by hand; one server less here)."""
    from srice.serving.launcher import server_for
    from srice.serving.openai_http import OpenAIBackend

    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    result = compress(tiny4, tmp_path / method, CompressConfig(method, calib=calib, calib_n=4))
    if not w4a16_here():  # an AVX2-only CPU: the clear error instead (and the emulated test below)
        with pytest.raises(ServingError, match="cpu_gemm_wna16.*use --method fp8"):
            register(result, f"t-{method}")
        return
    variant, _ = register(result, f"t-{method}")
    with server_for(variant, log_path=tmp_path / "vllm.log") as server:
        request = direct_request(scene(seed=5), "What colour is the square?", max_tokens=4)
        [c] = OpenAIBackend(server.url, variant.served_name, timeout=60).generate([request])
    assert len(c.tokens) == 4 and all(len(t.top_logprobs) == 5 for t in c.tokens)
    assert "compressed-tensors" in (tmp_path / "vllm.log").read_text()


def w4a16_here() -> bool:
    """Whether this machine's vLLM CPU build has the W4A16 kernel (AVX-512 builds do, AVX2 not)."""
    from srice.serving.cpu_kernels import cpu_kernels, vllm_python
    from srice.serving.launcher import find_vllm

    kernels = cpu_kernels(vllm_python(find_vllm()))
    return kernels is None or kernels.w4a16


@pytest.fixture
def avx2_only(tmp_path, monkeypatch):
    """This machine seen as an AVX2-only CPU by the vLLM environment: a start-up hook tells its torch
    that AVX-512 is missing, so vLLM really loads its ``_C_AVX2`` kernels (every AVX2 instruction runs
    on an AVX-512 CPU). That is how the suite checks the AVX2 machines' behaviour on any machine."""
    from srice.serving.cpu_kernels import cpu_kernels

    hook = tmp_path / "avx2"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import torch.cpu\n"
        "for name in ('avx512', 'avx512_bf16', 'avx512_vnni', 'amx_tile'):\n"
        "    setattr(torch.cpu, f'_is_{name}_supported', lambda: False)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(hook))
    cpu_kernels.cache_clear()
    yield
    cpu_kernels.cache_clear()


@pytest.mark.vllm
def test_avx2_cpu_refuses_w4a16_in_one_line_and_serves_fp8(avx2_only, tiny4, calib, tmp_path, monkeypatch):
    """On AVX2, vLLM's engine dies at the first W4A16 request (cpu_gemm_wna16 missing). srice says
    so before any work: compress --register, register() and the launcher; FP8, the alternative it
    names, is served there."""
    from srice.serving.cpu_kernels import cpu_kernels, vllm_python
    from srice.serving.launcher import VllmServer, find_vllm, server_for
    from srice.serving.openai_http import OpenAIBackend

    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    kernels = cpu_kernels(vllm_python(find_vllm()))
    assert kernels.library == "_C_AVX2" and not kernels.w4a16
    r = run_srice("compress", "--model", str(tiny4), "--method", "w4a16", "--calib", calib,
                  "-o", str(tmp_path / "cli"), "--register", "t-cli")  # fmt: skip
    assert r.returncode == 1 and not (tmp_path / "cli").exists(), r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "cpu_gemm_wna16" in line and "_C_AVX2" in line and "use --method fp8" in line
    w4 = compress(tiny4, tmp_path / "w4", CompressConfig("w4a16", calib=calib, calib_n=4))
    with pytest.raises(ServingError, match="use --method fp8, or serve the dense variant"):
        register(w4, "t-w4")
    server = VllmServer(w4.out_dir, log_path=tmp_path / "w4.log")
    with pytest.raises(ServingError, match="W4A16 checkpoint"):
        server.start()
    assert server.process is None and not (tmp_path / "w4.log").exists()  # refused before start-up
    fp8, _ = register(
        compress(tiny4, tmp_path / "fp8", CompressConfig("fp8", calib=calib, calib_n=4)), "t-fp8"
    )
    with server_for(fp8, log_path=tmp_path / "fp8.log") as served:
        request = direct_request(scene(seed=5), "What colour is the square?", max_tokens=4)
        [c] = OpenAIBackend(served.url, fp8.served_name, timeout=60).generate([request])
    assert len(c.tokens) == 4


def test_a_registered_variant_keeps_its_calibration(calib, tmp_path, monkeypatch):
    """compress --register fits the new model's US calibration and carries the tool calibrators
    over; using it then says nothing is missing. A variant without one says so on every use."""
    monkeypatch.setenv("SRICE_VARIANTS", str(tmp_path / "variants.json"))
    picture = str(ROOT / "demos" / "examples" / "tiny_triangle.png")
    r = run_srice("compress", "--model", "toy", "--method", "magnitude", "--sparsity", "0.3",
                  "-o", str(tmp_path / "m"), "--register", "toy-mag")  # fmt: skip
    assert r.returncode == 1 and "give them with --calib" in r.stderr and not (tmp_path / "m").exists()
    r = run_srice("compress", "--model", "toy", "--method", "magnitude", "--sparsity", "0.3", "--calib",
                  calib, "-o", str(tmp_path / "m"), "--register", "toy-mag")  # fmt: skip
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "m" / "calib"
    assert (folder / "yolo.json").read_bytes() == (ROOT / "srice/assets/toy/calib/yolo.json").read_bytes()
    us = json.loads((folder / "uncertainty.json").read_text())["params"]  # the fitted values
    assert us["qhat_open"] is not None and us["n_open"] + us["n_choice"] + us["n_exit"] == 40
    entry = json.loads((tmp_path / "variants.json").read_text())["toy-mag"]
    assert entry["calib"] == str(folder)
    ask = ["ask", "--image", picture, "--question", "What colour is the triangle?", "--backend",
           "transformers", "--tools", "yolo", "--json"]  # fmt: skip
    r = run_srice(*ask, "--variant", "toy-mag")
    assert r.returncode == 0, r.stderr
    assert "no uncertainty calibration" not in r.stderr and "no calibrator" not in r.stderr, r.stderr
    # 40 questions hold too few multiple-choice ones for their q-hat: that, and only that, is said
    assert us["qhat_choice"] is None and r.stderr.count("warning") == 1
    assert "no q-hat for multiple-choice questions" in r.stderr
    direct = json.loads(r.stdout)["trace"][0]["uncertainty"]["method"]
    assert direct == "set_size/open"  # calibrated, not the fallback
    r = run_srice(*ask, "--variant", "tiny")
    assert r.returncode == 0, r.stderr
    assert "warning: no uncertainty calibration (variant 'tiny' names no calibration folder)" in r.stderr
    assert "warning: no calibrator for tool yolo" in r.stderr
    assert json.loads(r.stdout)["trace"][0]["uncertainty"]["method"] == "set_size/open/uncalibrated"
