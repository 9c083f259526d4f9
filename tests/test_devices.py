"""``--device``: one string for where the tools and the in-process model run, checked before any
work, and carried into every tool and backend built from it."""

from __future__ import annotations

import pytest
import torch

from conftest import run_srice, scene
from srice.devices import check_device, default_dtype, resolve_device
from srice.errors import InputError

NO_GPU = not torch.cuda.is_available()


def test_device_strings_are_checked_before_torch_is_asked():
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert check_device(good) == good
    for bad in ("gpu", "CUDA", "cuda:", "cuda:x", "mps", "", None):
        with pytest.raises(InputError, match="--device must be auto, cpu, cuda or cuda:N"):
            check_device(bad)


def test_auto_is_cuda_where_torch_sees_a_gpu_else_the_cpu():
    assert resolve_device("auto") == ("cpu" if NO_GPU else "cuda:0")
    assert resolve_device("cpu") == "cpu"
    assert default_dtype("cpu") == "float32" and default_dtype("cuda:1") == "bfloat16"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_where_there_is_none_is_one_line():
    for device in ("cuda", "cuda:1"):
        with pytest.raises(InputError, match=f"--device {device}: CUDA is not available on this machine"):
            resolve_device(device)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize(
    "command",
    [
        ["ask", "--image", "{image}", "--question", "What colour is it?"],
        ["serve", "--agent"],
        ["mcp"],
        ["demo"],
        ["eval", "--data", "{data}", "--out", "{out}"],
        ["calibrate", "--uncertainty", "--synth", "10", "-o", "{out}/u.json"],
        ["calibrate", "--tool", "yolo", "--data", "{data}", "--images", "{folder}", "-o", "{out}/y.json"],
        ["compress", "--model", "toy", "--method", "magnitude", "-o", "{out}"],
        ["train-toy", "--out", "{out}"],
    ],
    ids=lambda c: c[0] if c[0] != "calibrate" else f"calibrate-{c[1]}",
)
def test_every_command_refuses_cuda_without_a_gpu_in_one_line_before_any_work(command, tmp_path):
    scene().save(tmp_path / "a.png")
    (tmp_path / "q.jsonl").write_text('{"id": "q", "image": "a.png", "question": "Is there a star?"}\n')
    values = {
        "image": tmp_path / "a.png",
        "data": tmp_path / "q.jsonl",
        "out": tmp_path / "out",
        "folder": tmp_path,
    }
    r = run_srice(*(part.format(**values) for part in command), "--device", "cuda", timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines == [
        "srice: error: --device cuda: CUDA is not available on this machine (torch "
        f"{torch.__version__} sees no GPU); use --device cpu or auto"
    ], r.stderr
    assert not (tmp_path / "out").exists()


def test_device_cpu_gives_the_records_of_a_run_without_the_flag(vllm_server, tmp_path):
    """The toy's tools (YOLO, SAM, zoom) on ``--device cpu`` and on the default: the same records."""
    from srice.eval.records import comparable, read_records

    data = tmp_path / "synth"
    assert run_srice("synth", "--seed", "21", "--n", "6", "--out", str(data)).returncode == 0
    runs = {}
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / name
        where = ["--server", vllm_server.url, "--variant", "tiny", "--pathways", "yolo,sam,zoom"]
        r = run_srice("eval", "--data", str(data / "questions.jsonl"), "--out", str(out), *where, *extra)
        assert r.returncode == 0, r.stderr
        runs[name] = [comparable(record) for record in read_records(out / "records.jsonl")]
    assert len(runs["cpu"]) == 6 and runs["cpu"] == runs["default"]
    assert any(p for record in runs["cpu"] for p in record["pathways"] if p != "direct")
