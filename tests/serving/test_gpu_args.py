"""What srice tells vllm serve on a GPU machine, unit-tested here (this machine has no GPU: the
launcher is asked to believe it has one, and nothing is started): the GPU a server uses, its memory
share beside the tools, the refusal of a server that would over-commit its GPU, the arguments of a
model named with --model on a GPU and on the CPU build, and the line that states the shares."""

from __future__ import annotations

import json

import pytest

from srice.errors import InputError, ServingError
from srice.serving import launcher
from srice.serving.launcher import VllmServer, check_gpu_share, gpu_share, share_line
from srice.serving.variants import CPU_ARGS, GPU_ARGS, variant_for_model


@pytest.fixture
def on_a_gpu(monkeypatch):
    monkeypatch.setattr(launcher, "has_gpu", lambda: True)


def server(share: float | None, gpu: int = 0, name: str = "m") -> VllmServer:
    args = [] if share is None else ["--gpu-memory-utilization", str(share)]
    return VllmServer("/models/m", served_name=name, args=["--enable-prefix-caching", *args], gpu=gpu)


def test_the_memory_share_is_the_servers_argument_or_vllms_default():
    assert gpu_share(server(0.7).args) == 0.7
    assert gpu_share(["--gpu-memory-utilization=0.55"]) == 0.55
    assert gpu_share(server(None).args) == launcher.VLLM_DEFAULT_GPU_SHARE == 0.9
    with pytest.raises(ServingError, match="must be a number"):
        gpu_share(["--gpu-memory-utilization", "most"])


def test_a_second_server_that_would_over_commit_its_gpu_is_refused_in_one_line():
    first = server(0.8, name="toy")
    check_gpu_share(first, [])  # alone: 0.8 + the tools' 0.1 fit
    with pytest.raises(ServingError) as caught:
        check_gpu_share(server(0.8, name="tiny"), [first])
    message = str(caught.value)
    assert (
        "tiny: vllm serve would take 0.8 of GPU 0's memory, where 0.8 is taken (servers: toy (0.8))"
        in message
    )
    assert "\n" not in message and "--gpu-memory-utilization" in message
    check_gpu_share(server(0.8, gpu=1), [first])  # another GPU: fine
    check_gpu_share(server(0.1), [server(0.8)])  # 0.9 in all leaves the tools their 0.1
    check_gpu_share(server(None), [])  # vLLM's default 0.9 leaves the tools exactly their 0.1
    with pytest.raises(ServingError, match="would take 0.95 of GPU 0's memory, where 0 is taken"):
        check_gpu_share(server(0.95), [])


def test_the_server_sees_only_its_gpu_and_the_cpu_build_its_settings(monkeypatch, on_a_gpu):
    env = server(0.8, gpu=2).environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and "VLLM_ENABLE_V1_MULTIPROCESSING" not in env
    monkeypatch.setattr(launcher, "has_gpu", lambda: False)
    env = server(0.8).environment()
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["TORCH_COMPILE_DISABLE"] == "1"


def test_a_model_named_with_model_gets_arguments_for_its_machine(tmp_path):
    folder = tmp_path / "My Model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 32768}}))
    gpu = variant_for_model(str(folder), gpu=True)
    assert gpu.name == gpu.served_name == "My-Model" and gpu.model == str(folder.resolve())
    assert gpu.vllm_args == (*GPU_ARGS, "--max-model-len", "8192") and gpu_share(gpu.vllm_args) == 0.8
    cpu = variant_for_model(str(folder), gpu=False)
    assert cpu.vllm_args == (*CPU_ARGS, "--max-model-len", "4096") and "float32" in cpu.vllm_args
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    assert variant_for_model(str(folder), gpu=True).vllm_args[-1] == "1024"  # never past the model's own
    hub = variant_for_model("Qwen/Qwen2-VL-2B-Instruct", gpu=True)
    assert (
        hub.is_hub
        and hub.name == "Qwen--Qwen2-VL-2B-Instruct"
        and hub.flag == "--model Qwen/Qwen2-VL-2B-Instruct"
    )
    for bad, why in ((tmp_path / "nothing-here", "no such folder"), (tmp_path, "no config.json")):
        with pytest.raises(InputError, match=why):
            variant_for_model(str(bad), gpu=False)


def test_the_share_line_says_what_each_part_gets(monkeypatch):
    monkeypatch.setattr(launcher, "gpu_memory", lambda index: ("NVIDIA H200", 143771))
    line = share_line(server(0.8, name="toy"))
    assert line == (
        "GPU 0 (NVIDIA H200, 140 GiB): vllm serve (toy) may use 0.8 of its memory = 112 GiB, the tools and "
        "other GPU work the remaining 0.2 = 28 GiB"
    )
    monkeypatch.setattr(launcher, "gpu_memory", lambda index: None)
    assert share_line(server(0.7, gpu=1)).startswith("GPU 1: vllm serve (m) may use 0.7 of its memory, the")
