"""``srice eval``: records, summary, predictions, resume after SIGKILL, against a real vllm serve."""

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import run_srice as srice
from conftest import scene
from srice.eval.records import comparable
from srice.eval.report import markdown, summarize
from srice.eval.run import read_records


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rows = []
    for i in range(24):
        scene(seed=200 + i).save(root / f"{i}.png")
        if i % 3 == 0:
            rows.append(
                {
                    "id": f"q{i}",
                    "image": f"{i}.png",
                    "question": "Which shape is largest?",
                    "options": ["circle", "square", "star"],
                    "answer": "B",
                    "kind": "shape",
                }
            )
        else:
            rows.append(
                {
                    "id": f"q{i}",
                    "image": f"{i}.png",
                    "question": "What colour is the square?",
                    "answer": "red",
                    "kind": "colour",
                    "meta": {"target_size": "tiny" if i % 2 else "large"},
                }
            )
    (root / "5.png").write_bytes(b"\x89PNG broken")
    (root / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "q.jsonl"


def test_eval_end_to_end(questions, vllm_server, tmp_path):
    out = tmp_path / "run"
    r = srice(
        "eval",
        "--data",
        str(questions),
        "--out",
        str(out),
        "--pathways",
        "zoom",
        "--variant",
        "tiny",
        "--server",
        vllm_server.url,
        "--batch-size",
        "8",
    )
    assert r.returncode == 0, r.stderr
    records = read_records(out / "records.jsonl")
    assert sorted(rec["id"] for rec in records) == sorted(f"q{i}" for i in range(24))
    broken = next(rec for rec in records if rec["id"] == "q5")
    assert "not a readable image" in broken["error"] and broken["score"] == 0.0
    fine = next(rec for rec in records if rec["id"] == "q1")
    assert set(fine["pathways"]) == {"direct", "zoom[0]", "zoom[1]", "zoom[2]", "zoom[3]"}
    assert fine["oracle_score"] == max(p["score"] for p in fine["pathways"].values())
    direct, cell = fine["pathways"]["direct"], fine["pathways"]["zoom[0]"]
    assert direct["regions"] is None and direct["view_box"] is None
    assert cell["regions"] == 1 and cell["view_box"][:2] == [0, 0]  # the grid's top-left cell
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 24 and summary["errors"] == 1
    assert set(summary["by_kind"]) == {"shape", "colour"} and set(summary["by_target_size"]) == {
        "tiny",
        "large",
    }
    assert summary["overall"]["oracle"] >= max(
        v for k, v in summary["overall"].items() if k not in ("n", "oracle", "n_by_column")
    )
    assert summary["mllm_calls_per_question"] == pytest.approx(sum(rec["mllm_calls"] for rec in records) / 24)
    assert "| overall |" in (out / "summary.md").read_text() and "| overall |" in r.stdout
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {p["question_id"] for p in predictions} == {rec["id"] for rec in records}
    tsv = (out / "predictions.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:7] == ["index", "question", "A", "B", "C", "D", "answer"] and len(tsv) == 25


def test_resume_after_sigkill_gives_the_same_records(questions, vllm_server, tmp_path):
    args = ["--data", str(questions), "--pathways", "", "--variant", "tiny", "--server", vllm_server.url]
    args += ["--batch-size", "2", "--workers", "2"]
    clean = tmp_path / "clean"
    assert srice("eval", *args, "--out", str(clean)).returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "srice", "eval", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_records(out / "records.jsonl")) < 6:
        time.sleep(0.05)
    workers = _workers(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2 and _gone(workers), "the agent workers outlived their killed parent"
    partial = read_records(out / "records.jsonl")
    assert 6 <= len(partial) < 24, "the run was not interrupted mid-way"
    with open(out / "records.jsonl", "a") as f:
        f.write('{"id": "q9", "torn')  # a write cut short by the kill
    r = srice("eval", *args, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"resuming: {len(partial)} of 24" in r.stderr
    final = read_records(out / "records.jsonl")
    ids = [rec["id"] for rec in final]
    assert len(ids) == len(set(ids)) == 24  # no duplicates, no gaps
    assert final[: len(partial)] == partial  # nothing rewritten
    by_id = {rec["id"]: rec for rec in read_records(clean / "records.jsonl")}
    assert {rec["id"]: rec["answer"] for rec in final} == {k: v["answer"] for k, v in by_id.items()}


def test_ctrl_c_stops_eval_within_seconds_keeping_every_finished_record(questions, vllm_server, tmp_path):
    """SIGINT while the detector works on a batch: the command ends in seconds (it used to wait for
    the detector's thread), with whole records only, and a rerun finishes the rest once each; all
    with two agent workers (up to four batches in flight), which end with the command."""
    args = ["--data", str(questions), "--pathways", "yolo", "--variant", "tiny", "--server", vllm_server.url,
            "--batch-size", "4", "--max-failed-items", "0.2", "--workers", "2"]  # fmt: skip
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "srice", "eval", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(read_records(out / "records.jsonl")) < 4:
        time.sleep(0.05)
    time.sleep(1.0)  # into the next batch's work
    workers = _workers(proc)
    assert len(workers) >= 2, workers
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    took = time.monotonic() - sent
    stderr = proc.stderr.read()
    assert code == 130 and "srice: interrupted" in stderr, stderr[-2000:]
    assert took < 15, f"{took:.1f} s from Ctrl-C to exit"
    assert "2 agent worker(s), as asked" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert _gone(workers), "an agent worker outlived the command"
    assert "eval: 4/24 q (17%)" in stderr  # progress lines although stderr is no terminal
    kept = read_records(out / "records.jsonl")
    assert 4 <= len(kept) < 24 and len(kept) % 4 == 0  # whole batches only
    assert (out / "records.jsonl").read_bytes().endswith(b"\n")
    r = srice("eval", *args, "--out", str(out))
    assert r.returncode == 0, r.stderr
    ids = [rec["id"] for rec in read_records(out / "records.jsonl")]
    assert len(ids) == len(set(ids)) == 24


def _workers(proc) -> list[psutil.Process]:
    """The agent worker processes of ``proc`` (multiprocessing's resource tracker left out)."""
    return [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]


def _gone(processes, within: float = 15.0) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return not alive


def test_agent_workers_write_the_records_one_agent_writes(questions, vllm_server, tmp_path):
    """Two agent workers, four batches in flight, answer as one agent stage by stage does."""
    args = ["--data", str(questions), "--pathways", "yolo,zoom", "--variant", "tiny", "--server",
            vllm_server.url, "--batch-size", "4", "--max-failed-items", "0.2", "--limit", "12"]  # fmt: skip
    for count in ("1", "2"):
        r = srice("eval", *args, "--workers", count, "--out", str(tmp_path / count))
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{count} agent worker(s), as asked" in r.stderr
    one, two = (read_records(tmp_path / c / "records.jsonl") for c in ("1", "2"))
    assert len(one) == 12 and [comparable(r) for r in one] == [comparable(r) for r in two]


def test_sharded_runs_cover_everything_once(questions, vllm_server, tmp_path):
    for i in range(3):
        r = srice(
            "eval",
            "--data",
            str(questions),
            "--out",
            str(tmp_path),
            "--pathways",
            "",
            "--variant",
            "tiny",
            "--server",
            vllm_server.url,
            "--shard",
            f"{i}/3",
            "--max-failed-items",  # the broken image is 1 of a shard's 8 questions
            "0.2",
            "--limit",
            "12",
        )
        assert r.returncode == 0, r.stderr
    ids = [rec["id"] for i in range(3) for rec in read_records(tmp_path / f"records-{i}of3.jsonl")]
    assert sorted(ids) == sorted(f"q{i}" for i in range(12))
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 12


def test_damaged_lines_are_moved_aside_only_when_repairing(tmp_path):
    """A torn last line, a damaged line in the middle and a repeated id: reading skips them, repair
    moves them to the quarantine file and keeps every whole record after them."""
    from srice.eval.records import repair

    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x\x00\n{"id": "c"}\n{"id": "a"}\n{"id": "d", "unfinis')
    assert [r["id"] for r in read_records(path)] == ["a", "c"]
    assert path.read_text().endswith("unfinis")
    records, damaged = repair(path)
    assert [r["id"] for r in records] == ["a", "c"] and [d.line for d in damaged] == [2, 4, 5]
    assert path.read_text() == '{"id": "a"}\n{"id": "c"}\n'
    moved = [json.loads(line) for line in (tmp_path / "records.quarantine.jsonl").read_text().splitlines()]
    assert [m["line"] for m in moved] == [2, 4, 5] and "a second record for 'a'" in moved[1]["reason"]


def test_summary_by_hand():
    def record(kind, score, pathways, size=None):
        return {
            "kind": kind,
            "score": score,
            "pathway": "direct",
            "uncertainty": 1.0,
            "mllm_calls": 4,
            "seconds": 0.1,
            "error": None,
            "meta": {"target_size": size} if size else {},
            "oracle_score": max(pathways.values()),
            "pathways": {k: {"score": v, "covered": True, "set_size": 1} for k, v in pathways.items()},
        }

    records = [
        record("colour", 1.0, {"direct": 1.0, "yolo": 0.0}, "large"),
        record("colour", 0.0, {"direct": 0.0, "yolo": 1.0}, "tiny"),
        record("count", 0.0, {"direct": 0.0, "yolo": 0.0}),
    ]
    s = summarize(records)
    counts = {"direct": 3, "srice": 3, "yolo": 3, "oracle": 3}
    assert s["overall"] == {"n": 3, "direct": 1 / 3, "srice": 1 / 3, "yolo": 1 / 3, "oracle": 2 / 3} | {
        "n_by_column": counts
    }
    assert s["by_kind"]["colour"]["oracle"] == 1.0 and s["by_target_size"]["tiny"]["yolo"] == 1.0
    assert s["direct_us_set_coverage"] == 1.0 and s["mllm_calls_per_question"] == 4
    assert "| kind=count | 1 |" in markdown(s)


def test_us_auroc_and_paired_intervals_by_hand():
    from srice.eval.report import interval, us_auroc

    def record(score, direct, direct_us, yolo, yolo_us):
        pathways = {
            "direct": {"score": direct, "uncertainty": direct_us[0], "tiebreak": direct_us[1]},
            "yolo": {"score": yolo, "uncertainty": yolo_us[0], "tiebreak": yolo_us[1]},
        }
        for p in pathways.values():
            p.update(error=None, covered=True, set_size=int(p["uncertainty"]))
        return {"score": score, "oracle_score": max(direct, yolo), "pathways": pathways, "error": None}

    records = [
        record(1.0, 1.0, (1, 0.1), 1.0, (1, 0.05)),  # both right, yolo surer
        record(1.0, 0.0, (1, 0.4), 1.0, (1, 0.02)),  # direct wrong but as sure as a right answer
        record(0.0, 0.0, (3, 0.7), 0.0, (2, 0.3)),
        record(1.0, 1.0, (1, 0.4), 0.0, (1, 0.02)),  # yolo wrong and tied with a right answer
    ]
    # direct: wrong US {1.4, 3.7} vs right {1.1, 1.4}: 3.7 beats both, 1.4 beats 1.1 and ties 1.4
    assert us_auroc(records, "direct") == pytest.approx((2 + 1 + 0.5) / 4)
    # yolo: wrong {2.3, 1.02} vs right {1.05, 1.02}: 2.3 beats both, 1.02 ties one
    assert us_auroc(records, "yolo") == pytest.approx((2 + 0.5) / 4)
    assert us_auroc(records[:1], "yolo") is None  # no wrong answers: undefined, not 1.0

    s = summarize([r | {"kind": "colour", "pathway": "yolo", "uncertainty": 1.0, "mllm_calls": 3,
                        "seconds": 0.1, "meta": {}} for r in records])  # fmt: skip
    diff = s["srice_minus_direct"]  # per question: 0, +1, 0, 0
    assert diff["mean"] == pytest.approx(0.25) and diff["n"] == 4
    # sample variance of (0, 1, 0, 0) is 0.25, so the standard error is sqrt(0.25 / 4) = 0.25
    assert diff["high"] - diff["mean"] == pytest.approx(1.96 * 0.25, rel=1e-4)
    assert s["oracle_minus_srice"]["mean"] == pytest.approx(0.0)
    assert "srice_minus_direct: +0.250" in markdown(s)
    assert interval([]) is None and interval([1.0], difference=True)["low"] == 1.0
    assert interval([1.0])["low"] < 1.0  # an accuracy of 1 of 1: Wilson, not zero-width (test_report_stats)


def test_each_column_says_its_n_where_it_differs():
    def record(pathways):
        paths = {k: {"score": v, "covered": True, "set_size": 1} for k, v in pathways.items()}
        return {"kind": "", "score": 1.0, "pathway": "direct", "uncertainty": 1.0, "mllm_calls": 2,
                "seconds": 0.1, "error": None, "meta": {}, "oracle_score": 1.0,
                "pathways": paths}  # fmt: skip

    s = summarize([record({"direct": 1.0, "yolo[0]": 1.0}), record({"direct": 0.0}), record({"direct": 1.0})])
    assert s["overall"]["n_by_column"]["yolo[0]"] == 1
    assert "| overall | 3 | 0.667 | 1.000 | 1.000 (1) | 1.000 |" in markdown(s)


def test_wide_option_tables_keep_every_column(tmp_path):
    """A multiple-choice question with 12 options writes all 12 letter columns to predictions.tsv."""
    from srice.eval.report import write_reports

    record = {"id": "1", "kind": "", "metric": "mc", "question": "q", "options": [f"o{i}" for i in range(12)],
              "answers": ["B"], "answer": "B", "pathway": "direct", "uncertainty": 1.0, "score": 1.0,
              "oracle_score": 1.0, "pathways": {}, "mllm_calls": 1, "seconds": 0.1, "error": None,
              "meta": {}}  # fmt: skip
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    write_reports(tmp_path)
    rows = [line.split("\t") for line in (tmp_path / "predictions.tsv").read_text().splitlines()]
    assert len(rows[0]) == len(rows[1]) == 2 + 12 + 3 and rows[0][2:14] == list("ABCDEFGHIJKL")
