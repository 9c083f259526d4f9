"""A question that failed for a passing reason (a rate limit that outlasted the retries) is redone
when the run resumes; one the server refused for its own content stays as it was recorded; the
summary counts the retries by status.

The model is the real tiny ``vllm serve``; in front of it sits a loopback proxy written here that
answers 429 (or 400) to the questions a test names and forwards the rest: a real vLLM cannot be made
to rate-limit on cue.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading

import httpx
import pytest

from conftest import run_srice, scene
from srice.agent import Agent
from srice.eval import report, run
from srice.eval.items import EvalItem
from srice.serving.openai_http import OpenAIBackend


class Proxy(http.server.ThreadingHTTPServer):
    """Answers ``refuse[word]`` (a status) to requests whose body holds ``word``, forwards the rest."""

    def __init__(self, upstream: str, refuse: dict[bytes, int]):
        self.upstream, self.refuse, self.seen = upstream, refuse, []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # the CLI's check that the server is up and serves the model
        r = httpx.get(self.server.upstream + self.path, timeout=30)
        self.send_response(r.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        refused = [status for word, status in self.server.refuse.items() if word in body]
        self.server.seen.append(body)
        headers = {"Content-Type": "application/json"}
        if refused:
            status, payload = refused[0], b'{"error": {"message": "refused here"}}'
            if status == 429:
                headers["Retry-After"] = "0.1"
        else:
            r = httpx.post(self.server.upstream + self.path, content=body, headers=headers, timeout=120)
            status, payload = r.status_code, r.content
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def items(tmp_path):
    out = []
    for i, shape in enumerate(("square", "circle", "triangle", "star")):
        scene(seed=400 + i).save(tmp_path / f"{i}.png")
        out.append(EvalItem(f"q{i}", tmp_path / f"{i}.png", f"What colour is the {shape}?", ("red",)))
    return out


def _records(out) -> dict[str, dict]:
    return {r["id"]: r for r in run.read_records(out / "records.jsonl")}


def test_a_rate_limited_question_is_redone_on_resume_and_a_rejected_one_stays(vllm_server, items, tmp_path):
    out = tmp_path / "run"
    proxy = Proxy(vllm_server.url, {b"circle": 429, b"triangle": 400})
    try:
        backend = OpenAIBackend(proxy.url, vllm_server.served_name, retries=2, backoff=0.01, timeout=60)
        run.run(Agent(backend), items, out)
    finally:
        proxy.shutdown()
    first = _records(out)
    assert first["q1"]["error"].startswith("model: server") and "answered 429" in first["q1"]["error"]
    assert "gave up after 3 attempts" in first["q1"]["error"]
    assert "rejected this request (400)" in first["q2"]["error"]
    assert first["q0"]["error"] is None and first["q3"]["error"] is None
    summary = report.write_reports(out)
    # the circle's direct request (no tools: no region request) was tried 3 times: 2 retries, then given up
    assert summary["retries"] == {"retried": {"429": 2}, "gave_up": {"429": 1}}
    assert summary["failures"]["records"]["transient"] == 1

    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    proxy = Proxy(vllm_server.url, {b"triangle": 400})  # the rate limit has passed
    try:
        backend = OpenAIBackend(proxy.url, vllm_server.served_name, retries=2, backoff=0.01, timeout=60)
        resumed = run.run(Agent(backend), items, out)
        asked = list(proxy.seen)
        run.run(Agent(backend), items, kept, redo_transient=False)  # the user keeps what was recorded
        assert proxy.seen == asked  # nothing was asked for the kept run
    finally:
        proxy.shutdown()
    assert resumed.done_before == 3 and resumed.written == 1
    assert asked and all(b"circle" in body for body in asked)  # only the rate-limited question was redone
    second = _records(out)
    assert second["q1"]["error"] is None and second["q1"]["answer"]
    assert {k: second[k] for k in ("q0", "q2", "q3")} == {k: first[k] for k in ("q0", "q2", "q3")}
    lines = (out / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["q0", "q1", "q2", "q3"]  # one record each
    [aside] = [json.loads(line) for line in (out / "records.redone.jsonl").read_text().splitlines()]
    assert aside["record"] == first["q1"] and "answered 429" in aside["reason"]
    assert _records(kept) == first
    assert report.write_reports(out)["failures"]["records"]["transient"] == 0


def test_srice_eval_says_how_many_it_redoes(vllm_server, items, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": i.id, "image": str(i.image), "question": i.question,
                                        "answers": list(i.answers)}) + "\n" for i in items))  # fmt: skip
    out = tmp_path / "run"
    proxy = Proxy(vllm_server.url, {b"circle": 429})
    command = ["eval", "--data", str(data), "--out", str(out), "--pathways", "zoom", "--variant", "tiny"]
    try:
        first = run_srice(*command, "--server", proxy.url)
    finally:
        proxy.shutdown()
    assert first.returncode == 3, first.stderr  # 1 of 4 failed: over --max-failed-items
    assert "answered 429" in first.stderr and "redoing" not in first.stderr
    again = run_srice(*command, "--server", vllm_server.url)
    assert again.returncode == 0, again.stderr
    assert "redoing 1 question(s) whose model call failed for a passing reason (model: server" in again.stderr
    assert "answered 429" in again.stderr and "records.redone.jsonl" not in again.stderr
    assert all(r["error"] is None for r in _records(out).values())
