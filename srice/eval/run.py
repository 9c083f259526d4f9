"""Batch evaluation: run the agent over a benchmark, one JSONL record per question, resumable.

Records are appended (and flushed) as each batch finishes, so an interrupted run loses at most the
batch in flight. On restart the records file is read back, a torn last line (a kill mid-write) is cut
off, and only questions without a record are run: no question is redone or written twice. A question
the agent cannot answer (unreadable image, bad question) gets a record with its error and score 0; a
serving failure stops the run instead, since every later question would fail the same way, and the
next run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from srice.agent import Agent, Item
from srice.agent.answers import normalize_vqa_answer
from srice.agent.trace import Answer
from srice.eval.items import EvalItem
from srice.eval.metrics import score


@dataclass(frozen=True)
class EvalRun:
    records_path: Path
    done_before: int  # records already there when the run started
    written: int  # records this run added
    seconds: float


def records_name(shard: tuple[int, int] = (0, 1)) -> str:
    index, count = shard
    return "records.jsonl" if count == 1 else f"records-{index}of{count}.jsonl"


def read_records(path: Path, *, repair: bool = False) -> list[dict]:
    """Every complete record in ``path``; with ``repair``, a torn last line is cut from the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end = [], 0
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        records.append(record)
        good_end += len(line)
    if repair and good_end != len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


def run(
    agent: Agent,
    items: Sequence[EvalItem],
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_batch: Callable[[list[dict]], None] | None = None,
) -> EvalRun:
    """Answer every item that has no record yet, a batch at a time, appending its records.
    ``on_batch`` gets each batch's records once they are on disk (the CLI warns about failures)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / records_name(shard)
    done = {r["id"] for r in read_records(path, repair=True)}
    todo = [item for item in items if item.id not in done]
    if on_resume:
        on_resume(len(items) - len(todo))
    began, written = time.perf_counter(), 0
    with open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            t0 = time.perf_counter()
            answers = agent.answer_batch([Item(i.image, i.question, i.options, i.id) for i in batch])
            seconds = (time.perf_counter() - t0) / len(batch)
            records = [make_record(item, answer, seconds) for item, answer in zip(batch, answers)]
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
            written += len(batch)
            if on_batch:
                on_batch(records)
            if progress:
                progress(len(batch))
    return EvalRun(path, len(done), written, time.perf_counter() - began)


def set_covers(prediction_set: Sequence[str], item: EvalItem) -> bool:
    """Whether a US prediction set holds the truth: the letter for multiple choice, else a candidate
    that begins one of the true answers (the open-answer sets are over first tokens)."""
    if item.options:
        return item.answers[0] in prediction_set
    truths = [normalize_vqa_answer(a) for a in item.answers]
    return any(
        normalize_vqa_answer(c) and t.startswith(normalize_vqa_answer(c))
        for c in prediction_set
        for t in truths
    )


def make_record(item: EvalItem, answer: Answer, seconds: float) -> dict:
    """One question's record. Unlabelled questions (test splits) get ``None`` scores, which the
    summary leaves out of the averages instead of counting them wrong."""
    labelled = bool(item.answers)
    pathways = {}
    for p in answer.trace:
        u = p.uncertainty
        pathways[p.name] = {
            "answer": p.answer,  # multiple choice: a given option's letter (the reply may say otherwise)
            "reply": p.reply,
            "mapped": p.mapped,
            "score": (score(item, p.answer) if p.ok else 0.0) if labelled else None,
            "uncertainty": None if u is None or math.isinf(u.score) else u.score,
            "tiebreak": None if u is None else u.tiebreak,
            "set_size": None if u is None else len(u.prediction_set),
            "covered": None if u is None or not labelled else set_covers(u.prediction_set, item),
            "seconds": round(p.tool_seconds + p.model_seconds, 4),
            "error": p.error,
            "error_kind": p.error_kind,
            # what a tool pathway showed: its calibrated regions' count and best score, and the window
            "regions": None if p.calibrated is None else len(p.calibrated["scores"]),
            "region_score": max(p.calibrated["scores"], default=None) if p.calibrated else None,
            "view_box": list(p.view_box) if p.view_box else None,
            "tool_text": list(p.tool_text),  # what a text-reading tool (OCR) read there, given to the model
        }
    scores = [p["score"] for p in pathways.values() if p["score"] is not None]
    return {
        "id": item.id,
        "kind": item.kind,
        "metric": item.metric,
        "question": item.question,
        "options": list(item.options) if item.options else None,
        "answers": list(item.answers),
        "answer": answer.answer,  # multiple choice: the option's letter, as the truth in "answers"
        "answer_text": answer.answer_text,
        "pathway": answer.pathway,
        "uncertainty": None if math.isinf(answer.uncertainty) else answer.uncertainty,
        "score": (score(item, answer.answer) if answer.error is None else 0.0) if labelled else None,
        "oracle_score": (max(scores) if scores else 0.0) if labelled else None,
        "pathways": pathways,
        "targets": list(answer.targets),
        "mllm_calls": answer.mllm_calls,
        "early_exit": answer.early_exit,
        "seconds": round(seconds, 4),
        "error": answer.error,
        "meta": {k: v for k, v in item.meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
    }
