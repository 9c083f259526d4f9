"""Fault injection on an evaluation: messy data and damaged or unwritable record files, each handled as a
user would want (a bad item costs its own record; nothing is lost or written twice). A real ``vllm
serve`` of the tiny model answers."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from conftest import run_srice, scene
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
    # enough questions that the first run still writes when the second starts (with the tool stage
    # run once per image, 12 were answered within the second's start-up)
    data = _write(tmp_path / "q.jsonl", _rows(tmp_path, 48))
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
    assert len(ids) == len(set(ids)) == 48  # the refused run wrote nothing


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
