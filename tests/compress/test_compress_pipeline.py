"""Compression's calibration passes on the real tiny Qwen2-VL: the layer-by-layer runner against
whole-model passes, and llm-compressor run with its own pipeline (sequential), against our Wanda,
with the image features in place, and without touching other code's loguru handlers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srice.builtin.tiny_mllm import TinySpec, tiny_model_path
from srice.compress import CompressConfig, compress


@pytest.fixture(scope="module")
def tiny4() -> Path:
    return tiny_model_path(TinySpec(num_layers=4))


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> str:
    from srice.synth import SynthKnobs, generate

    out = tmp_path_factory.mktemp("calib")
    generate(out, seed=4, n=6, knobs=SynthKnobs(min_side=336, max_side=448))
    return str(out / "questions.jsonl")


def _state(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32).state_dict()


def _masks_by_layer(ours: dict, theirs: dict) -> dict[int, int]:
    """Per decoder layer, how many mask entries differ between two models' pruned Linears."""
    out: dict[int, int] = {}
    for k in ours:
        if "language_model.layers." in k and k.endswith("proj.weight"):
            layer = int(k.split("layers.")[1].split(".")[0])
            out[layer] = out.get(layer, 0) + int(((ours[k] == 0) != (theirs[k] == 0)).sum())
    return out


def test_our_wanda_equals_llm_compressor(tiny4, calib, tmp_path):
    """Our Wanda computes |W| x ||X|| per output row with the dense model's input norms, so every mask
    must agree with llm-compressor's Wanda fed the dense blocks' outputs (the reference). Run as its
    authors run it (sequential, each block fed the pruned blocks' outputs), llm-compressor agrees on
    the first layer only: proof that its default pipeline ran, and on the image features (its own
    trace of Qwen2-VL drops them: then even the first layer's masks differ)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.compress import capture, quant
    from srice.eval.data import load_items

    ours = _state(
        compress(tiny4, tmp_path / "ours", CompressConfig("wanda", 0.6, calib=calib, calib_n=4)).out_dir
    )
    processor = AutoProcessor.from_pretrained(str(tiny4))
    batches = capture.calibration_inputs(processor, load_items(calib, limit=4))
    net = AutoModelForImageTextToText.from_pretrained(str(tiny4), dtype=torch.float32).eval()
    ran = quant.prune(net, "wanda", ["Qwen2VLDecoderLayer"], [0.6] * 4, batches, dense_inputs=True)
    assert ran["pipeline"] == "sequential" and "image features merged" in ran["inputs"]
    reference = {k: v.detach() for k, v in net.state_dict().items()}
    assert _masks_by_layer(ours, reference) == {0: 0, 1: 0, 2: 0, 3: 0}
    default = compress(tiny4, tmp_path / "llmc", CompressConfig("llmc-wanda", 0.6, calib=calib, calib_n=4))
    assert default.manifest["llmcompressor"]["pipeline"] == "sequential"
    assert default.manifest["achieved"]["overall"] == pytest.approx(0.6, abs=0.01)
    differ = _masks_by_layer(ours, _state(default.out_dir))
    assert differ[0] == 0 and all(differ[i] > 0 for i in (1, 2, 3)), differ


def test_sparsegpt_block_by_block_equals_whole_model_passes_at_a_fraction_of_the_cost(tiny4, calib):
    """The layer-by-layer runner gives the weights that recomputing every block's inputs from the
    model's input gives (one pass per block, srice's earlier way), bit for bit, vision blocks
    included; the model's input is read once per segment (vision, text), each block runs twice."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.compress import capture, pruning, sparsegpt
    from srice.compress.layerwise import Layerwise
    from srice.eval.data import load_items

    processor = AutoProcessor.from_pretrained(str(tiny4))
    batches = capture.calibration_inputs(processor, load_items(calib, limit=3))
    config = CompressConfig("sparsegpt", 0.5, calib=calib, include_vision=True)
    nets = [AutoModelForImageTextToText.from_pretrained(str(tiny4), dtype=torch.float32).eval() for _ in "ab"]
    blocks = [capture.find_blocks(n)[3] + capture.find_blocks(n)[2] for n in nets]
    calls: dict[str, int] = {}

    def count(name):
        return lambda *_: calls.__setitem__(name, calls.get(name, 0) + 1)

    nets[0].model.visual.patch_embed.register_forward_hook(count("input"))
    for b in blocks[0]:
        next(iter(b.linears().values())).register_forward_hook(count(b.name))
    with torch.no_grad():
        pruning.prune(Layerwise(nets[0], batches, blocks[0]), config, {}, lambda text: None)
        for b in blocks[1]:  # the reference: one whole-model pass per block
            stats = capture.linear_stats(nets[1], batches, b.linears(), hessian=True, stop_after=b.module)
            for name, layer in b.linears().items():
                h = stats[name].hessian / stats[name].tokens
                layer.weight.data = sparsegpt.prune(layer.weight.data, h, 0.5)
    ours, reference = nets[0].state_dict(), nets[1].state_dict()
    assert all(torch.equal(ours[k], reference[k]) for k in reference)
    assert len(blocks[0]) == 6 and calls == {"input": 2 * 3, **{b.name: 2 * 3 for b in blocks[0]}}


def test_llm_compressor_leaves_other_loguru_handlers_alone(tiny4, tmp_path):
    """A fresh process with its own loguru handler quantizes through llm-compressor: the handler is
    still there afterwards, and llm-compressor's INFO records never reached it."""
    script = (
        "import sys\n"
        "from loguru import logger\n"
        "seen = []\n"
        "logger.add(seen.append, level='DEBUG', format='{name}|{level}|{message}')\n"
        "from srice.compress import CompressConfig, compress\n"
        f"compress({str(tiny4)!r}, {str(tmp_path / 'fp8')!r}, CompressConfig('fp8'), device='cpu')\n"
        "logger.info('still here')\n"
        "print(''.join(seen))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines == ["__main__|INFO|still here"], lines[:5]
    # nor did they reach loguru's own stderr handler (which the script's last record did)
    records = [line for line in r.stderr.splitlines() if re.match(r"\d{4}-\d\d-\d\d [\d:.]+ \| ", line)]
    assert records and all(line.endswith("still here") for line in records), records[:5]
