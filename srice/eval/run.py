"""Batch evaluation: run the agent over a benchmark, one JSONL record per question, resumable.

Records are appended (and fsynced) as each batch finishes, in order, so an interrupted run loses at
most the batches in flight (one, or two per agent worker: ``srice.builder.workers``). On restart the
records are checked line by line (``srice.eval.records``: a damaged line is moved aside and its
question redone), the run's settings are compared with those the records were made with, and only
questions without a record are run: none is written twice. One eval writes to a folder at a time. A
question the agent cannot answer (unreadable image, bad question, a row that is no question, a
request the model rejects) gets a record with its error and score 0; so does one whose model call
failed for a reason that may pass (a rate limit or a 5xx that outlasted the backend's retries), and
a resume redoes those by default (``redo_transient``; ``srice.eval.records``). A serving failure
(the server down) stops the run instead, since every later question would fail the same way, and the
next run resumes where it stopped. The backend's retries, by cause, are kept beside the records for
the summary. A failed write (a full disk) leaves the file whole, up to the last batch, and stops
with one line.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

from srice.agent import Agent, Item
from srice.agent.answers import begins_answer
from srice.agent.trace import Answer
from srice.errors import SriceError
from srice.eval.items import EvalItem, item_key
from srice.eval.metrics import score
from srice.eval.policy import DEFAULT_BATCH_SIZE
from srice.eval.records import (
    Damage,
    RunLock,
    add_counts,
    check_settings,
    fingerprint,
    quarantine_path,
    read_records,
    read_retries,
    repair,
    set_aside_transient,
    write_retries,
)
from srice.serving.variants import Variant

__all__ = [
    "EvalRun", "answers", "make_record", "read_records", "records_name", "run", "run_on_workers",
    "run_settings", "write",
]  # fmt: skip


@dataclass(frozen=True)
class EvalRun:
    records_path: Path
    done_before: int  # records already there when the run started
    written: int  # records this run added
    seconds: float


def records_name(shard: tuple[int, int] = (0, 1)) -> str:
    index, count = shard
    return "records.jsonl" if count == 1 else f"records-{index}of{count}.jsonl"


def run(
    agent: Agent,
    items: Sequence[EvalItem],
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    variant: Variant | None = None,
    **options,
) -> EvalRun:
    """Answer every item that has no record yet with ``agent`` in this process (see ``write``).
    ``variant``: the model's registry entry, whose name and files the run's settings then hold (the
    CLI names it). One batch at a time, stage by stage (several agents at once:
    ``srice.builder.workers``, whose records are the same). The backend's ``retry_stats`` (the
    HTTP backend's) are kept beside the records."""
    return write(
        items, out_dir, lambda batches: answers(agent, batches),
        settings=run_settings(items, shard, agent_settings(agent), variant), shard=shard,
        retries=getattr(agent.backend, "retry_stats", None), **options,
    )  # fmt: skip


def write(
    items: Sequence[EvalItem],
    out_dir: str | Path,
    answer: Callable[[list[list[EvalItem]]], Iterable[list[Answer]]],
    *,
    settings: dict,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    on_batch: Callable[[list[dict]], None] | None = None,
    on_damage: Callable[[list[Damage], Path], None] | None = None,
    on_redo: Callable[[list[dict]], None] | None = None,
    force: bool = False,
    redo_transient: bool = True,
    retries: Callable[[], dict] | None = None,
) -> EvalRun:
    """The one writer of a run's records: every item without a record, a batch at a time, its
    answers from ``answer`` (given the batches, it yields each one's answers in order: this
    process's agent, or a Ray pool's, ``srice.eval.ray_eval``). ``settings`` are what the records
    depend on (``run_settings``). ``on_batch`` gets each batch's records once they are on disk (the
    CLI warns about failures); ``on_damage`` the lines of the records file that were moved aside;
    ``force`` accepts a resume with other settings. ``redo_transient``: records that failed for a
    passing reason are moved aside and their questions redone (``on_redo`` gets them). ``retries``:
    the backend's retry counts so far (``OpenAIBackend.retry_stats``), added to the run's after each
    batch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / records_name(shard)
    with RunLock(path):
        check_settings(path, settings, force=force)
        existing, damaged = repair(path)
        if damaged and on_damage:
            on_damage(damaged, quarantine_path(path))
        if redo_transient:
            existing, redone = set_aside_transient(path, existing)
            if redone and on_redo:
                on_redo(redone)
        done = {r["id"] for r in existing}
        todo = [item for item in items if item.id not in done]
        if on_resume:
            on_resume(len(items) - len(todo))
        began, written = time.perf_counter(), 0
        before, at_start = read_retries(path), retries() if retries else {}
        with open(path, "ab", buffering=0) as f:  # unbuffered: a failed write leaves nothing to flush
            batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
            last = time.perf_counter()
            try:
                for batch, given in zip(batches, answer(batches)):
                    # a question's seconds: the wall time since the batch before came back, shared
                    # out, so the records' seconds add up to the run's time however batches overlap
                    now = time.perf_counter()
                    seconds, last = (now - last) / len(batch), now
                    records = [make_record(item, a, seconds) for item, a in zip(batch, given, strict=True)]
                    _append(f, path, records, len(done) + written)
                    written += len(batch)
                    if on_batch:
                        on_batch(records)
                    if progress:
                        progress(len(batch))
                    if retries:
                        _keep_retries(path, add_counts(before, retries(), minus=at_start))
            finally:  # also when the server went down: the retries that preceded it are counted
                if retries:
                    _keep_retries(path, add_counts(before, retries(), minus=at_start))
    return EvalRun(path, len(done), written, time.perf_counter() - began)


def _keep_retries(path: Path, counts: dict) -> None:
    try:
        write_retries(path, counts)
    except OSError:
        pass  # a full disk: the records say what matters, the counts are a summary's extra


def _append(f, path: Path, records: list[dict], before: int) -> None:
    """Append one batch's records durably; a failed write (a full disk, a quota) is cut back to the
    last whole batch, so the file stays whole and the run resumes, and ends with one line."""
    start = f.tell()
    data = memoryview("".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
    try:
        while data:
            data = data[f.write(data) :]
        os.fsync(f.fileno())
    except OSError as e:
        try:
            f.truncate(start)
        except OSError:
            pass  # the torn tail is moved aside on resume
        raise SriceError(
            f"cannot write records to {path} ({e.strerror or e}); it holds the {before} records written "
            "before, whole: free space and rerun the same command to resume"
        ) from None


def run_settings(
    items: Sequence[EvalItem], shard: tuple[int, int], agent_part: dict, variant: Variant | None = None
) -> dict:
    """What the records depend on, as ``run.json`` keeps it, for a plain run and a Ray run alike: the
    questions, the agent (``agent_settings``: the model behind the backend, the tools, their
    calibrators, the uncertainty score and the agent's configuration) and the variant's files."""
    settings = data_settings(items, shard) | agent_part
    if variant is not None:
        settings |= {"variant": variant.name, "model_files": variant.fingerprint()}
    return settings


def data_settings(items: Sequence[EvalItem], shard: tuple[int, int]) -> dict:
    return {
        "data": fingerprint([item_key(i) for i in items]),
        "questions": len(items),
        "shard": f"{shard[0]}/{shard[1]}",
    }


def agent_settings(agent: Agent) -> dict:
    us = agent.uncertainty
    return {
        "model": getattr(agent.backend, "identity", agent.backend.name),
        "tools": [t.name for t in agent.tools],
        "calibrators": {name: fingerprint(c.record()) for name, c in sorted(agent.calibrators.items())},
        "uncertainty": fingerprint(asdict(us) if is_dataclass(us) else repr(us)),
        "agent": asdict(agent.config),
    }


def answers(agent: Agent, batches: Iterable[list[EvalItem]]) -> Iterator[list[Answer]]:
    """Each batch's answers, in order, one batch at a time."""
    for batch in batches:
        yield with_row_errors(batch, agent.answer_batch(readable(batch)))


def readable(batch: Sequence[EvalItem]) -> list[Item]:
    """The agent's items for the rows the loader could read."""
    return [Item(i.image, i.question, i.options, i.id) for i in batch if i.error is None]


def with_row_errors(batch: Sequence[EvalItem], replies: Sequence[Answer]) -> list[Answer]:
    """``replies`` (to ``readable(batch)``) in the batch's places; a row the loader could not read is
    answered by its error."""
    given = iter(replies)
    return [
        next(given) if i.error is None else Answer(i.question, None, error=i.error, item_id=i.id)
        for i in batch
    ]


def worker_settings(worker) -> dict:
    """``agent_settings`` of an agent worker's agent (``srice.builder.workers``)."""
    return agent_settings(worker.agent)


def worker_answers(worker, batch: list[EvalItem]) -> list[Answer]:
    """One batch answered by an agent worker, as ``answers`` answers it."""
    return with_row_errors(batch, worker.agent.answer_batch(readable(batch)))


def run_on_workers(
    spec,
    workers: int,
    items: Sequence[EvalItem],
    out_dir: str | Path,
    *,
    url: str | None = None,
    shard: tuple[int, int] = (0, 1),
    variant: Variant | None = None,
    log: Callable[[str], None] | None = None,
    **options,
) -> EvalRun:
    """``run`` with ``workers`` agent workers (``srice.builder.workers.LocalWorkers``: an ``AgentSpec``
    built in each, on the model server ``url``): the same records and settings, so either resumes
    the other. ``log`` hears what the workers had to say when building their agent."""
    from srice.builder.workers import LocalWorkers

    with LocalWorkers(spec, workers, url, log=log) as pool:
        pool.start()
        settings = run_settings(items, shard, pool.call(worker_settings), variant)
        answer = lambda batches: pool.map(worker_answers, batches)  # noqa: E731
        return write(items, out_dir, answer, settings=settings, shard=shard, **options)


def set_covers(prediction_set: Sequence[str], item: EvalItem) -> bool:
    """Whether a US prediction set holds the truth: the letter for multiple choice, else a candidate
    that begins one of the true answers (the open-answer sets are over first tokens)."""
    if item.options:
        return item.answers[0] in prediction_set
    return any(begins_answer(c, item.answers) for c in prediction_set)


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
            "search": p.search,  # the zoom tree's nodes (box, depth, parent, score, chosen), else None
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
        "region_error": answer.region_error,  # the model call for the regions failed: tools saw the image
        "mllm_calls": answer.mllm_calls,
        "early_exit": answer.early_exit,
        "seconds": round(seconds, 4),
        "error": answer.error,
        "meta": {k: v for k, v in item.meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
    }
