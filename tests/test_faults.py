"""Fault injection: messy data, damaged files, hostile files and broken replies, each handled as a
user would want. Loopback only and bounded: a real ``vllm serve`` of the tiny model answers, except
where a reply must be malformed on cue, which a scripted loopback server (ours) stands in for."""

from __future__ import annotations

import http.server
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_srice, scene
from srice.errors import CalibrationError
from srice.eval.records import read_records

GOOD = "What colour is the square?"


def _rows(folder: Path, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        scene(seed=500 + i).save(folder / f"{i}.png")
        rows.append({"id": f"q{i}", "image": f"{i}.png", "question": GOOD, "answer": "red"})
    return rows


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _eval(data: Path, out: Path, server, *extra, **kwargs):
    return run_srice("eval", "--data", str(data), "--out", str(out), "--pathways", "", "--variant", "tiny",
                     "--server", server.url, "--batch-size", "4", *extra, **kwargs)  # fmt: skip


def test_bad_items_cost_their_own_records_and_the_run_goes_on(vllm_server, tmp_path):
    """A lone surrogate in a question (once an httpx UnicodeEncodeError that stopped the eval), a
    4000x10 image the model server rejects with 400, an empty question, 30 options and a line that is
    no JSON, inside an otherwise good file: each fails its own record with its reason."""
    rows = _rows(tmp_path, 6)
    Image.new("RGB", (4000, 10), "red").save(tmp_path / "strip.png")
    options = [f"o{i}" for i in range(30)]
    bad = [
        '{"id": "surrogate", "image": "0.png", "question": "What colour is the \\ud800 square?"}',
        json.dumps({"id": "strip", "image": "strip.png", "question": GOOD, "answer": "red"}),
        json.dumps({"id": "empty", "image": "0.png", "question": "   ", "answer": "red"}),
        json.dumps({"id": "thirty", "image": "0.png", "question": GOOD, "options": options, "answer": "A"}),
        "{not json",
    ]
    data = _write(tmp_path / "q.jsonl", rows[:3] + bad + rows[3:])
    out = tmp_path / "run"
    r = _eval(data, out, vllm_server)
    assert r.returncode == 3, r.stderr  # 5 of 11 got no answer: over --max-failed-items, all written
    records = {rec["id"]: rec for rec in read_records(out / "records.jsonl")}
    assert len(records) == 11
    assert all(records[f"q{i}"]["error"] is None for i in range(6))
    why = {k: records[k]["error"] for k in ("surrogate", "strip", "empty", "thirty", "8")}
    assert "question is not valid text: \\ud800" in why["surrogate"]
    assert "model server rejected this request (400)" in why["strip"]
    assert "missing 'question'" in why["empty"] and "30 options; at most 26" in why["thirty"]
    assert "q.jsonl:8: not valid JSON" in why["8"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"]["records"]["failed"] == 5 and summary["n"] == 11


def test_a_second_eval_on_the_same_folder_refuses(vllm_server, tmp_path):
    data = _write(tmp_path / "q.jsonl", _rows(tmp_path, 12))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "srice", "eval", "--data", str(data), "--out", str(out), "--pathways",
               "zoom", "--variant", "tiny", "--server", vllm_server.url, "--batch-size", "2"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not read_records(out / "records.jsonl"):
        time.sleep(0.05)
    second = _eval(data, out, vllm_server)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 1 and second.stderr.count("\n") <= 2, second.stderr
    assert f"another srice eval (pid {first.pid}) is writing to {out}" in second.stderr
    ids = [rec["id"] for rec in read_records(out / "records.jsonl")]
    assert len(ids) == len(set(ids)) == 12  # the refused run wrote nothing


def test_a_damaged_middle_line_is_moved_aside_and_only_its_question_redone(vllm_server, tmp_path):
    data = _write(tmp_path / "q.jsonl", _rows(tmp_path, 8))
    out = tmp_path / "run"
    assert _eval(data, out, vllm_server).returncode == 0
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    damaged_id = json.loads(lines[2])["id"]
    lines[2] = lines[2][:40] + "\x00garbage\n"  # a disk error in the middle of the file
    (out / "records.jsonl").write_text("".join(lines))
    r = _eval(data, out, vllm_server)
    assert r.returncode == 0, r.stderr
    assert "moved 1 damaged record line(s)" in r.stderr and "line 3 (not JSON" in r.stderr
    assert "resuming: 7 of 8" in r.stderr
    final = read_records(out / "records.jsonl")
    assert sorted(rec["id"] for rec in final) == sorted(f"q{i}" for i in range(8))
    assert [rec["id"] for rec in final[:7]] == [json.loads(x)["id"] for i, x in enumerate(lines) if i != 2]
    assert final[7]["id"] == damaged_id  # the only question run again
    quarantined = (out / "records.quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) == 1 and json.loads(quarantined[0])["line"] == 3


def test_a_resume_with_other_settings_is_refused_unless_forced(vllm_server, tmp_path):
    data = _write(tmp_path / "q.jsonl", _rows(tmp_path, 4))
    out = tmp_path / "run"
    assert _eval(data, out, vllm_server).returncode == 0
    r = run_srice("eval", "--data", str(data), "--out", str(out), "--pathways", "zoom", "--variant", "tiny",
                  "--server", vllm_server.url, "--top-views", "2")  # fmt: skip
    assert (
        r.returncode == 1 and "were made with other settings (" in r.stderr and "tools: [] -> [" in r.stderr
    )
    assert "resuming" not in r.stderr
    forced = run_srice("eval", "--data", str(data), "--out", str(out), "--pathways", "zoom", "--variant",
                       "tiny", "--server", vllm_server.url, "--top-views", "2", "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mixed_settings"] and "mixed settings" in (out / "summary.md").read_text()


def test_a_failed_write_ends_with_one_line_and_a_whole_resumable_file(vllm_server, tmp_path):
    """The file-size limit makes the write fail as a full disk would (RLIMIT_FSIZE, SIGXFSZ ignored)."""
    data = _write(tmp_path / "q.jsonl", _rows(tmp_path, 12))
    out = tmp_path / "run"

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # about five records

    command = [sys.executable, "-m", "srice", "eval", "--data", str(data), "--out", str(out), "--pathways",
               "", "--variant", "tiny", "--server", vllm_server.url, "--batch-size", "2"]  # fmt: skip
    r = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    [line] = [x for x in r.stderr.splitlines() if x.startswith("srice: error:")]
    assert "cannot write records to" in line and "rerun the same command to resume" in line
    assert "Traceback" not in r.stderr
    kept = read_records(out / "records.jsonl")
    assert 0 < len(kept) < 12 and (out / "records.jsonl").read_text().endswith("\n")
    assert _eval(data, out, vllm_server).returncode == 0
    assert sorted(rec["id"] for rec in read_records(out / "records.jsonl")) == sorted(
        f"q{i}" for i in range(12)
    )


def test_a_fifo_or_a_device_as_an_image_fails_its_item_instead_of_hanging(vllm_server, tmp_path):
    rows = _rows(tmp_path, 2)
    os.mkfifo(tmp_path / "pipe.png")
    rows += [
        {"id": "fifo", "image": "pipe.png", "question": GOOD},
        {"id": "zero", "image": "/dev/zero", "question": GOOD},
    ]
    out = tmp_path / "run"
    r = _eval(_write(tmp_path / "q.jsonl", rows), out, vllm_server, "--max-failed-items", "1", timeout=120)
    assert r.returncode == 0, r.stderr
    records = {rec["id"]: rec for rec in read_records(out / "records.jsonl")}
    assert (
        "not a regular file" in records["fifo"]["error"] and "not a regular file" in records["zero"]["error"]
    )
    assert records["q0"]["error"] is None


def _craft_pt(path: Path, marker: Path) -> None:
    code = ("import os, torch, sys\n"
            "class Payload:\n"
            "    def __reduce__(self):\n"
            f"        return (os.system, ('touch {marker}',))\n"
            f"torch.save({{'model': Payload()}}, {str(path)!r})\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_crafted_detector_weights_do_not_run_their_payload(tmp_path):
    """A .pt is a pickle and ultralytics evaluates a model YAML's activation: both are loaded with
    its safe loader unless --trust-weights, and refused in one line, before any work."""
    import yaml

    marker = tmp_path / "PAYLOAD-RAN"
    _craft_pt(tmp_path / "evil.pt", marker)
    import ultralytics

    spec = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11.yaml").read_text())
    spec["activation"] = f"__import__('os').system('touch {marker}') or nn.SiLU()"
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(spec))
    picture = tmp_path / "p.png"
    scene().save(picture)
    for weights in ("evil.pt", "evil.yaml"):
        named = f"yolo={tmp_path / weights}"
        r = run_srice("ask", "--image", str(picture), "--question", GOOD, "--tools", "yolo", "--backend",
                      "transformers", "--variant", "tiny", "--tool-weights", named)  # fmt: skip
        assert r.returncode == 1, r.stderr
        [line] = [x for x in r.stderr.splitlines() if x.startswith("srice: error:")]
        assert "cannot load YOLO weights" in line and "--trust-weights" in line
        assert not marker.exists(), f"the payload of {weights} ran"


@pytest.fixture
def us_file(tmp_path):
    from srice.calibration.uncertainty import UncertaintyCalibration

    good = UncertaintyCalibration(0.1, 0.8, 0.9, None, 20, 40, 60, "abc", exit_share=None)
    good.save(tmp_path / "uncertainty.json")
    return tmp_path / "uncertainty.json"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qhat_open": "0.9"}, "qhat_open must be a finite number"),
        ({"qhat_open": math.nan}, "qhat_open must be a finite number"),
        ({"qhat_choice": -0.2}, r"qhat_choice must lie in \[0, 1\]"),
        ({"qhat_choice": 1e9}, r"qhat_choice must lie in \[0, 1\]"),
        ({"early_exit": math.inf}, "early_exit must be a finite number"),
        ({"n_open": 1}, "rests on n_open=1 questions, too few"),
        ({"alpha": 0}, r"alpha must lie in"),
    ],
)
def test_a_tampered_uncertainty_calibration_is_refused_with_the_field(us_file, change, message):
    from srice.calibration.uncertainty import UncertaintyCalibration

    data = json.loads(us_file.read_text()) | change
    us_file.write_text(json.dumps(data))  # (json writes NaN/Infinity literals for these)
    with pytest.raises(CalibrationError, match=message):
        UncertaintyCalibration.load(us_file)


def test_an_edited_calibration_file_fails_its_checksum(us_file, tmp_path):
    from srice.calibration import ThresholdCalibrator, load_calibrator, synthetic_examples
    from srice.calibration.uncertainty import UncertaintyCalibration

    data = json.loads(us_file.read_text())
    us_file.write_text(json.dumps(data | {"qhat_open": 0.5}))  # valid, but not what was fitted
    with pytest.raises(CalibrationError, match="does not match its checksum"):
        UncertaintyCalibration.load(us_file)
    path = (
        ThresholdCalibrator(alpha=0.1).conformalize(synthetic_examples(40, seed=1)).save(tmp_path / "t.json")
    )
    saved = json.loads(path.read_text())
    for change, message in (
        ({"params": saved["params"] | {"threshold": 0.01}}, "does not match its checksum"),
        ({"params": saved["params"] | {"threshold": math.nan}}, "invalid params"),
        ({"params": saved["params"] | {"threshold": 7.0}}, "invalid params"),
        ({"n": 1}, "n=1 calibration units, too few"),
    ):
        path.write_text(json.dumps(saved | change))
        with pytest.raises(CalibrationError, match=message):
            load_calibrator(path)


def test_a_malformed_variant_entry_is_named_and_the_others_keep_working(tmp_path):
    registry = tmp_path / "variants.json"
    registry.write_text(json.dumps({
        "bad-args": {"model": "builtin:tiny", "vllm_args": "--dtype float32"},
        "escape": {"model": "builtin:tiny", "served_name": "../../x"},
        "nothing": {"model": None},
        "mine": {"model": "builtin:tiny", "served_name": "mine"},
    }))  # fmt: skip
    env = os.environ | {"SRICE_VARIANTS": str(registry)}
    picture = tmp_path / "p.png"
    scene().save(picture)
    ask = [sys.executable, "-m", "srice", "ask", "--image", str(picture), "--question", GOOD, "--tools", "",
           "--backend", "transformers"]  # fmt: skip
    ok = subprocess.run([*ask, "--variant", "mine"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "malformed variant registry entries left out: bad-args" in ok.stderr
    for name, why in (("bad-args", "must be a list of strings"), ("escape", "'served_name' '../../x'"),
                      ("nothing", "'model' must name")):  # fmt: skip
        r = subprocess.run([*ask, "--variant", name], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 1 and f"variant {name!r} is malformed" in r.stderr and why in r.stderr


class _Scripted(http.server.ThreadingHTTPServer):
    """An OpenAI-style server that replies as the question asks: a malformed reply on cue."""

    def __init__(self, replies: dict[str, str], default: str):
        self.replies, self.default = replies, default
        super().__init__(("127.0.0.1", 0), _Reply)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Reply(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send(json.dumps({"data": [{"id": "scripted"}]}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        cue = next((k for k in self.server.replies if k in body), None)
        self._send((self.server.replies[cue] if cue else self.server.default).encode())

    def _send(self, payload):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_null_and_nan_replies_fail_their_request_not_the_batch():
    from srice.agent import Agent, Item
    from srice.agent.prompts import direct_request
    from srice.serving.openai_http import OpenAIBackend

    token = {"token": "red", "logprob": -0.1, "top_logprobs": [{"token": "red", "logprob": -0.1}]}
    good = json.dumps({"choices": [{"message": {"content": "red"}, "logprobs": {"content": [token]}}]})
    null = json.dumps({"choices": [{"message": None}]})
    nan = good.replace("-0.1", "NaN")
    server = _Scripted({"NULL-PLEASE": null, "NAN-PLEASE": nan}, good)
    try:
        backend = OpenAIBackend(server.url, "scripted")
        backend.check()
        questions = [GOOD, "NULL-PLEASE?", "NAN-PLEASE?"]
        first, second, third = backend.generate([direct_request(scene(), q) for q in questions])
        assert first.error is None and first.text == "red"
        assert "malformed completion" in second.error and "malformed completion" in third.error
        answers = Agent(backend).answer_batch([Item(scene(seed=i), q) for i, q in enumerate(questions)])
        assert [a.error is None for a in answers] == [True, False, False]
        assert answers[0].answer == "red" and "model: server" in answers[1].error
    finally:
        server.shutdown()


def test_deeply_nested_region_replies_and_wide_option_tables(tmp_path):
    from srice.agent.targets import parse_targets
    from srice.eval.report import write_reports

    assert parse_targets("[" * 1000 + "]" * 1000) == [] and parse_targets("[" * 1999) == []
    record = {"id": "1", "kind": "", "metric": "mc", "question": "q", "options": [f"o{i}" for i in range(12)],
              "answers": ["B"], "answer": "B", "pathway": "direct", "uncertainty": 1.0, "score": 1.0,
              "oracle_score": 1.0, "pathways": {}, "mllm_calls": 1, "seconds": 0.1, "error": None,
              "meta": {}}  # fmt: skip
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    write_reports(tmp_path)
    rows = [line.split("\t") for line in (tmp_path / "predictions.tsv").read_text().splitlines()]
    assert len(rows[0]) == len(rows[1]) == 2 + 12 + 3 and rows[0][2:14] == list("ABCDEFGHIJKL")
