"""A batch evaluation that bad data and a dead server cannot spoil, counted in one run.

1. 90 good synthetic questions (synth seed 7; ``--n``) and 10 bad items mixed in: a lone surrogate in a
   question, a 4000x10 image the model server rejects, an empty question, 30 options, one option,
   two equal options, a line that is no JSON, a FIFO and /dev/zero as images, a missing image;
2. a clean ``srice eval`` of the same file through one ``vllm serve``;
3. the same eval into another folder, against a server of its own, SIGKILLed (its whole process
   group) once 40% of the records are written; the eval stops with one line; a new server (or the
   ``--server`` one) serves the same command, which resumes to the end;
4. prints records written, failed (by reason), lost, duplicated, quarantined, and whether every
   good record's answer equals the clean run's.

    .venv/bin/python benchmarks/bench_faults.py [--variant toy] [--pathways zoom] [--n 90] [--out DIR]
        [--server URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import add_server
from PIL import Image


def bad_rows(folder: Path) -> list[str]:
    Image.new("RGB", (4000, 10), "red").save(folder / "strip.png")
    fifo = folder / "pipe.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    any_image = next(folder.glob("images/*.png")).relative_to(folder)
    q = "What colour is the square?"
    rows = [
        {"id": "bad-surrogate", "image": str(any_image), "question": "Colour \ud800?", "answer": "red"},
        {"id": "bad-strip", "image": "strip.png", "question": q, "answer": "red"},
        {"id": "bad-empty", "image": str(any_image), "question": "  ", "answer": "red"},
        {"id": "bad-thirty", "image": str(any_image), "question": q, "options": [f"o{i}" for i in range(30)],
         "answer": "A"},
        {"id": "bad-one", "image": str(any_image), "question": q, "options": ["red"], "answer": "A"},
        {"id": "bad-same", "image": str(any_image), "question": q, "options": ["red", "Red"], "answer": "A"},
        {"id": "bad-fifo", "image": "pipe.png", "question": q, "answer": "red"},
        {"id": "bad-zero", "image": "/dev/zero", "question": q, "answer": "red"},
        {"id": "bad-missing", "image": "gone.png", "question": q, "answer": "red"},
    ]  # fmt: skip
    return [json.dumps(r) for r in rows] + ['{"id": "bad-json", not json']


def srice(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srice", *args], capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="toy")
    parser.add_argument("--pathways", default="zoom")
    parser.add_argument("--n", type=int, default=90, help="good questions (synth seed 7)")
    parser.add_argument("--out", help="keep the data and runs here (default: a temp folder)")
    add_server(parser)
    args = parser.parse_args()

    from contextlib import ExitStack

    from srice.serving.backends import start_server
    from srice.serving.config import ServingConfig
    from srice.serving.variants import get_variant

    work = Path(args.out or tempfile.mkdtemp(prefix="srice-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    questions, expected = mixed_data(work / "data", args.n)
    variant = get_variant(args.variant)
    common = ["--data", str(questions), "--pathways", args.pathways, "--variant", variant.name,
              "--batch-size", "8", "--max-failed-items", "0.5"]  # fmt: skip

    def server_url(stack: ExitStack) -> str:  # the --server one, else a new one until the stack closes
        return args.server or stack.enter_context(start_server(variant, ServingConfig())).url

    with ExitStack() as stack:
        clean = srice("eval", *common, "--server", server_url(stack), "--out", str(work / "clean"))
        assert clean.returncode == 0, clean.stderr[-2000:]
    # the faulty run: a server of our own, killed mid-run
    first = start_server(variant, ServingConfig()).start()
    code, stopped, at_kill = killed_run(common, first, work / "faulty", round(0.4 * expected))
    with ExitStack() as stack:
        resumed = srice("eval", *common, "--server", server_url(stack), "--out", str(work / "faulty"))
    print(f"# {variant.name}, pathways {args.pathways}: {expected} questions, 10 bad, server killed at 40%")
    print(f"first run: exit {code} after {at_kill} records; its last line: {stopped[-1] if stopped else '-'}")
    print(f"resumed run: exit {resumed.returncode}; {resumed.stderr.count('resuming:')} resume")
    report(work, expected)


def mixed_data(data: Path, n: int) -> tuple[Path, int]:
    """``n`` good questions (made once per folder) with the bad rows spread among the first ones,
    written to ``all.jsonl``: (its path, the number of questions)."""
    if not (data / "questions.jsonl").exists():
        r = srice(
            "synth", "--seed", "7", "--n", str(n), "--kinds", "colour,exists,colour_mc", "--out", str(data)
        )
        assert r.returncode == 0, r.stderr
    good = (data / "questions.jsonl").read_text().splitlines()
    bad = bad_rows(data)
    heads = list(range(0, len(good), max(1, len(good) // len(bad))))[: len(bad)]
    mixed = [line for k, i in enumerate(heads) for line in (good[i], bad[k])] + bad[len(heads) :]
    mixed += [x for i, x in enumerate(good) if i not in set(heads)]
    (data / "all.jsonl").write_text("\n".join(mixed) + "\n")
    return data / "all.jsonl", len(mixed)


def killed_run(common: list[str], server, out: Path, kill_at: int) -> tuple[int, list[str], int]:
    """``srice eval`` into ``out`` against ``server``, whose process group is SIGKILLed once
    ``kill_at`` records are written: (the eval's exit code, its error lines, records at the kill)."""
    from srice.eval.records import read_records

    command = [sys.executable, "-m", "srice", "eval", *common, "--server", server.url, "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records = out / "records.jsonl"
    while proc.poll() is None and len(read_records(records)) < kill_at:
        time.sleep(0.05)
    os.killpg(server.pid, signal.SIGKILL)  # the server dies with its engine, mid-batch
    code = proc.wait(timeout=600)
    stopped = [line for line in proc.stderr.read().splitlines() if line.startswith("srice: error:")]
    server.stop()
    return code, stopped, len(read_records(records))


def report(work: Path, expected: int) -> None:
    """What the faulty run's folder holds after the resume, against the clean run's."""
    from srice.eval.records import read_records
    from srice.eval.report import failures

    records = work / "faulty" / "records.jsonl"
    raw = [json.loads(line)["id"] for line in records.read_text().splitlines()]
    final = {r["id"]: r for r in read_records(records)}
    reference = {r["id"]: r for r in read_records(work / "clean" / "records.jsonl")}
    reasons = failures(list(final.values()))["records"]["reasons"]  # as summary.json counts them
    same = all(final[i]["answer"] == r["answer"] for i, r in reference.items() if r["error"] is None)
    quarantine = records.with_name("records.quarantine.jsonl")
    print(f"records written: {len(final)} of {expected}")
    print(f"failed (no answer), by reason: {sum(reasons.values())}")
    for reason, n in sorted(reasons.items()):
        print(f"  {n} x {reason}")
    moved = len(quarantine.read_text().splitlines()) if quarantine.exists() else 0
    print(
        f"lost: {expected - len(final)}; duplicated: {len(raw) - len(set(raw))}; quarantined lines: {moved}"
    )
    compared = sum(r["error"] is None for r in reference.values())
    print(f"good records equal to the clean run's: {same} ({compared} compared)")


if __name__ == "__main__":
    main()
