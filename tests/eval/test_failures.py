"""Failures are counted where users look: tool timeouts per image, per-tool failure counts in the
summary, live warnings, and a non-zero exit when too much failed. A real vllm serve of the tiny
model answers; the slow and hanging tools wrap the real zoom tool with a delay (the delay is the
point of the test, so it is ours)."""

import json
import time

import pytest

from conftest import run_srice as srice
from conftest import scene
from srice.agent import Agent, AgentConfig
from srice.eval import report, run
from srice.eval.items import EvalItem
from srice.serving.openai_http import OpenAIBackend
from srice.tools import get_tool


class Delayed:
    """The real zoom tool, ``seconds`` slower per image."""

    separate_views = True
    reads_text = False

    def __init__(self, seconds: float, name: str = "zoom"):
        self.inner, self.seconds, self.name = get_tool("zoom"), seconds, name

    def batch(self, images, targets):
        time.sleep(self.seconds * len(images))
        return self.inner.batch(images, targets)

    def __call__(self, image, targets):
        return self.batch([image], [targets])[0]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    out = []
    for i in range(8):
        scene(seed=300 + i).save(root / f"{i}.png")
        out.append(EvalItem(f"q{i}", root / f"{i}.png", "What colour is the square?", ("red",)))
    return out


@pytest.fixture(scope="module")
def backend(vllm_server):
    return OpenAIBackend(vllm_server.url, vllm_server.served_name, timeout=60)


def test_the_tool_limit_is_per_image_so_a_batch_of_slow_images_still_runs(backend, items, tmp_path):
    """0.3 s per image over a batch of 8 takes 2.4 s; a 1 s limit per image allows 8 s. (The old
    limit covered the whole batch: the tool timed out on every question and nothing said so.)"""
    agent = Agent(backend, [Delayed(0.3)], config=AgentConfig(tool_timeout=1.0))
    run.run(agent, items, tmp_path, batch_size=8)
    summary = report.write_reports(tmp_path)
    assert summary["failures"]["tools"]["zoom"] == {
        "questions": 8,
        "failed": 0,
        "timed_out": 0,
        "reasons": {},
    }
    assert summary["overall"]["n_by_column"]["zoom[0]"] == 8


def test_a_tool_that_overruns_is_counted_per_tool_with_its_reason(backend, items, tmp_path):
    agent = Agent(backend, [Delayed(3.0), Delayed(0.0, "fast")], config=AgentConfig(tool_timeout=0.2))
    batches = []
    began = time.monotonic()
    run.run(agent, items, tmp_path, batch_size=4, on_batch=batches.append)
    assert time.monotonic() - began < 20  # each batch waited 0.8 s for the hung tool, not 12 s
    assert [len(b) for b in batches] == [4, 4]
    summary = report.write_reports(tmp_path)
    zoom = summary["failures"]["tools"]["zoom"]
    assert zoom["questions"] == 8 and zoom["failed"] == 8 and zoom["timed_out"] == 8
    assert zoom["reasons"] == {"timeout: the tool overran its time limit": 8}
    assert summary["failures"]["tools"]["fast"]["failed"] == 0
    record = json.loads((tmp_path / "records.jsonl").read_text().splitlines()[0])
    assert record["pathways"]["zoom"]["error_kind"] == "timeout"
    assert "0.2 s per image x 4" in record["pathways"]["zoom"]["error"]
    text = (tmp_path / "summary.md").read_text()
    assert "tool zoom: ran on 8 questions, failed on 8 (8 timed out)" in text
    assert "fast[0]" in text and "zoom[0]" not in text  # the failed tool made no single-view pathways


def test_eval_warns_live_and_exits_3_when_a_tool_fails_too_often(questions_dir, vllm_server, tmp_path):
    out = tmp_path / "run"
    r = srice("eval", "--data", str(questions_dir / "q.jsonl"), "--out", str(out), "--pathways", "yolo",
              "--tool-timeout", "0.0001", "--variant", "tiny", "--server", vllm_server.url,
              "--batch-size", "4")  # fmt: skip
    assert r.returncode == 3, r.stderr
    warnings = [
        line for line in r.stderr.splitlines() if line.startswith("warning: tool yolo failed on 4 of 4")
    ]
    assert len(warnings) == 2 and "timeout" in warnings[0]
    assert (
        "srice: error: tool yolo failed on 8 of 8 questions (8 timed out): 100% > --max-tool-failures"
        in r.stderr
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"]["tools"]["yolo"]["timed_out"] == 8 and summary["n"] == 8
    allowed = srice("eval", "--data", str(questions_dir / "q.jsonl"), "--out", str(out), "--pathways", "yolo",
                    "--tool-timeout", "0.0001", "--variant", "tiny", "--server", vllm_server.url,
                    "--max-tool-failures", "1")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr  # all 8 resumed; the user allowed every failure


def test_eval_of_questions_whose_images_are_missing_exits_3_with_the_reason(
    questions_dir, vllm_server, tmp_path
):
    lines = (questions_dir / "q.jsonl").read_text().splitlines()
    missing = tmp_path / "q.jsonl"
    missing.write_text("".join(line.replace('"image": "', '"image": "gone-') + "\n" for line in lines))
    out = tmp_path / "run"
    r = srice("eval", "--data", str(missing), "--out", str(out), "--pathways", "", "--variant", "tiny",
              "--server", vllm_server.url)  # fmt: skip
    assert r.returncode == 3
    assert "warning: 8 of 8 questions of this batch got no answer (image not found)" in r.stderr
    assert "srice: error: 8 of 8 questions got no answer: 100% > --max-failed-items 0.05" in r.stderr
    assert "- records: 8 of 8 failed outright (no answer):" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def questions_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    rows = []
    for i in range(8):
        scene(seed=400 + i).save(root / f"{i}.png")
        rows.append(
            {"id": f"q{i}", "image": f"{i}.png", "question": "What colour is the square?", "answer": "red"}
        )
    (root / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
