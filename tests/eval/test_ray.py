"""``srice eval --ray`` on a real local Ray cluster (started here with ``ray.init``: 2 CPUs, on
127.0.0.1), two agent workers, the tiny model behind a real ``vllm serve``, the embedded YOLO: the
records equal a plain run's; a worker killed mid-run is replaced and its batch redone; a driver
SIGKILLed mid-run leaves whole records, no model server behind, and a rerun finishes the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_srice as srice
from conftest import scene
from srice.eval.records import comparable, read_records

N = 12
ARGS = ["--variant", "tiny", "--pathways", "yolo,zoom", "--batch-size", "2", "--max-failed-items", "0.1"]


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR", namespace="srice-tests")  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-questions")
    rows = []
    for i in range(N):
        scene(seed=300 + i).save(root / f"{i}.png")
        if i % 3 == 0:
            rows.append({"id": f"q{i}", "image": f"{i}.png", "question": "Which shape is largest?",
                         "options": ["circle", "square", "star"], "answer": "B"})  # fmt: skip
        else:
            rows.append({"id": f"q{i}", "image": f"{i}.png", "question": "What colour is the square?",
                         "answer": "red"})  # fmt: skip
    (root / "4.png").write_bytes(b"\x89PNG broken")  # a bad item costs its own record on Ray too
    (root / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "q.jsonl"


@pytest.fixture(scope="module")
def plain(questions, vllm_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    r = srice("eval", "--data", str(questions), "--out", str(out), *ARGS, "--server", vllm_server.url)
    assert r.returncode == 0, r.stderr
    return _comparable(out)


def _comparable(out) -> dict:
    """The records by id, as two runs should agree on them (``srice.eval.records.comparable``)."""
    records = read_records(out / "records.jsonl")
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "a question was written twice"
    return {r["id"]: comparable(r) for r in records}


def _pids(word: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", word], capture_output=True, text=True).stdout.split()
    return {int(p) for p in found}


def _wait_for_records(out, n, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(read_records(out / "records.jsonl")) < n:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.1)


def test_records_on_ray_equal_a_plain_run_with_the_model_server_srice_starts_on_the_node(
    cluster, questions, plain, tmp_path
):
    servers_before = _pids("vllm serve")
    out = tmp_path / "ray"
    r = srice("eval", "--data", str(questions), "--out", str(out), *ARGS, "--ray", cluster)
    assert r.returncode == 0, r.stderr
    assert "ray: 2 agent worker(s) on 1 node(s)" in r.stderr
    assert _comparable(out) == plain  # every question once, the same answers, pathways and scores
    assert json.loads((out / "summary.json").read_text())["n"] == N
    assert "not a readable image" in _comparable(out)["q4"]["error"]
    deadline = time.monotonic() + 30
    while _pids("vllm serve") - servers_before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _pids("vllm serve") - servers_before  # the node's server went with the run


def test_a_worker_killed_mid_run_is_replaced_and_its_batch_redone(
    cluster, questions, plain, vllm_server, tmp_path
):
    import ray

    out = tmp_path / "ray"
    proc = subprocess.Popen(
        [sys.executable, "-m", "srice", "eval", "--data", str(questions), "--out", str(out), *ARGS,
         "--ray", cluster, "--server", vllm_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_records(out, 2, proc)
    workers = _pids("ray::AgentWorker")
    assert len(workers) == 2
    ray.kill(ray.get_actor("worker-0", namespace=f"srice-eval-{proc.pid}"), no_restart=False)
    replaced = set()
    while not replaced and proc.poll() is None:
        replaced = _pids("ray::AgentWorker") - workers
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert replaced, "Ray did not start a replacement worker"
    assert _comparable(out) == plain  # 0 lost, 0 duplicated, nothing failed for the death
    assert not any("Ray worker died" in (r["error"] or "") for r in read_records(out / "records.jsonl"))


def test_a_driver_killed_mid_run_leaves_whole_records_and_no_server_and_a_rerun_finishes(
    cluster, questions, plain, vllm_server, tmp_path
):
    servers_before = _pids("vllm serve")
    out = tmp_path / "ray"
    proc = subprocess.Popen(
        [sys.executable, "-m", "srice", "eval", "--data", str(questions), "--out", str(out), *ARGS,
         "--ray", cluster],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_records(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = read_records(out / "records.jsonl")
    assert 2 <= len(kept) < N and len(kept) % 2 == 0  # whole batches only
    deadline = time.monotonic() + 60
    while (_pids("vllm serve") - servers_before or _pids("ray::AgentWorker")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _pids("vllm serve") - servers_before, "the node's model server outlived its driver"
    assert not _pids("ray::AgentWorker"), "the driver's workers outlived it"
    r = srice("eval", "--data", str(questions), "--out", str(out), *ARGS, "--ray", cluster,
              "--server", vllm_server.url)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"resuming: {len(kept)} of {N} questions already have records" in r.stderr
    assert _comparable(out) == plain
