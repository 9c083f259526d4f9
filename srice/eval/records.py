"""The records file of a run and what guards it: one writer at a time, one set of settings, damaged
lines moved aside instead of deleting what follows them.

- **Lock**: ``OUT/.<records>.lock`` is held (``flock``) for the whole run; a second eval on the
  same records file stops with one line (shards of one run, each with its own records file, may
  share a folder). The kernel releases it when the process dies, even by SIGKILL.
- **Settings**: ``OUT/<records>.run.json`` holds what the records were made with (the data, the
  agent's tools, calibration and configuration, the model). A resume with other settings is refused
  unless forced, since its records would mix two experiments under one summary.
- **Damage**: every line is checked on resume: a line that is not a whole JSON record with an id
  (a torn write, a disk error, an edit), or one that repeats an id, is moved to
  ``<records>.quarantine.jsonl`` with its line number and reason, and its question is redone; the
  records after it stay where they are.
- **Passing failures**: a record whose question, region proposal or pathway failed for a reason that
  may pass (a rate limit, a timeout or a 5xx that outlasted the backend's retries:
  ``srice.serving.openai_http.is_transient``) is moved to ``<records>.redone.jsonl`` with that reason
  on resume (unless the caller keeps them), and its question is redone. A refusal of the request
  itself (another 4xx) stays: asking again would get the same answer.
- **Retries**: ``<records>.retries.json`` counts the backend's retries and give-ups by cause (the
  status code, "timeout", "unreachable", "disconnected") over every session of the run; the summary
  adds up every shard's (``srice.eval.report.retry_counts``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from srice.errors import SriceError
from srice.files import write_atomic
from srice.serving.openai_http import is_transient


def lock_path(records: Path) -> Path:
    return records.with_name(f".{records.stem}.lock")


def settings_path(records: Path) -> Path:
    return records.with_name(f"{records.stem}.run.json")


@dataclass(frozen=True)
class Damage:
    line: int  # 1-based line number in the records file
    reason: str
    text: str  # the line as it was (decoded with replacement)


def parse_records(data: bytes) -> tuple[list[dict], list[Damage]]:
    """The whole, distinct records in ``data``, and the lines that are not (in file order)."""
    records, damaged, seen = [], [], set()
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        text = line.decode("utf-8", errors="replace")
        reason = None
        if not line.endswith(b"\n"):
            reason = "torn: the last write was cut short"
        else:
            try:
                record = json.loads(line)
            except ValueError as e:
                reason = f"not JSON ({e.msg})"
            else:
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    reason = "not a record (no id)"
                elif record["id"] in seen:
                    reason = f"a second record for {record['id']!r}"
        if reason:
            damaged.append(Damage(number, reason, text))
            continue
        seen.add(record["id"])
        records.append(record)
    return records, damaged


def read_records(path: Path) -> list[dict]:
    """Every whole record in ``path`` (damaged lines skipped; ``repair`` moves them aside)."""
    if not path.exists():
        return []
    return parse_records(path.read_bytes())[0]


def repair(path: Path) -> tuple[list[dict], list[Damage]]:
    """The whole records of ``path``; damaged lines are appended to the quarantine file beside it and
    the records file is rewritten (atomically) without them."""
    if not path.exists():
        return [], []
    data = path.read_bytes()
    records, damaged = parse_records(data)
    if damaged:
        quarantine = quarantine_path(path)
        with open(quarantine, "a", encoding="utf-8") as f:
            for d in damaged:
                f.write(json.dumps({"line": d.line, "reason": d.reason, "text": d.text}) + "\n")
        bad = {d.line for d in damaged}
        lines = data.splitlines(keepends=True)
        write_atomic(path, b"".join(line for n, line in enumerate(lines, 1) if n not in bad))
    return records, damaged


def quarantine_path(path: Path) -> Path:
    return path.with_name(path.stem + ".quarantine.jsonl")


def redone_path(path: Path) -> Path:
    return path.with_name(path.stem + ".redone.jsonl")


def retries_path(path: Path) -> Path:
    return path.with_name(path.stem + ".retries.json")


def transient_reason(record: dict) -> str | None:
    """Why ``record`` failed for a reason that may pass (its question, its region proposal or one of
    its pathways' model calls), or None when nothing of it did."""
    pathways = record.get("pathways")
    reasons = [record.get("error"), record.get("region_error")]
    reasons += (
        [p.get("error") for p in pathways.values() if isinstance(p, dict)]
        if isinstance(pathways, dict)
        else []
    )
    return next((r for r in reasons if isinstance(r, str) and is_transient(r)), None)


def set_aside_transient(path: Path, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """``records`` (the whole records of ``path``) split into those kept and those that failed for a
    passing reason; the latter are appended to the redone file beside ``path`` (as ``{"reason",
    "record"}``, so no summary counts them) before the records file is rewritten (atomically)
    without them, so a crash in between loses nothing."""
    aside = {r["id"]: reason for r in records if (reason := transient_reason(r))}
    if not aside:
        return records, []
    moved = [r for r in records if r["id"] in aside]
    with open(redone_path(path), "a", encoding="utf-8") as f:
        for r in moved:
            f.write(json.dumps({"reason": aside[r["id"]], "record": r}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    kept_lines = []
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            gone = json.loads(line).get("id") in aside
        except (ValueError, AttributeError):
            gone = False
        if not gone:
            kept_lines.append(line)
    write_atomic(path, b"".join(kept_lines))
    return [r for r in records if r["id"] not in aside], moved


def read_retries(path: Path) -> dict[str, dict[str, int]]:
    """The retry counts kept beside the records file ``path`` (empty when none or unreadable)."""
    try:
        data = json.loads(retries_path(path).read_text())
        return {kind: {str(k): int(v) for k, v in data[kind].items()} for kind in ("retried", "gave_up")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"retried": {}, "gave_up": {}}


def add_counts(*counts: dict[str, dict[str, int]], minus: dict | None = None) -> dict[str, dict[str, int]]:
    """Retry counts added up (``minus``: taken off), by kind then cause, zeros left out."""
    total: dict[str, dict[str, int]] = {"retried": {}, "gave_up": {}}
    for sign, parts in ((1, counts), (-1, [minus] if minus else [])):
        for c in parts:
            for kind in total:
                for cause, n in (c.get(kind) or {}).items():
                    total[kind][cause] = total[kind].get(cause, 0) + sign * n
    return {kind: {k: v for k, v in sorted(by.items()) if v} for kind, by in total.items()}


def write_retries(path: Path, counts: dict[str, dict[str, int]]) -> None:
    write_atomic(retries_path(path), json.dumps(counts, indent=2) + "\n")


class RunLock:
    """Exclusive use of an output folder by one eval (``flock``; released when the process ends)."""

    def __init__(self, records: Path):
        self.path = lock_path(Path(records))
        self.handle = None

    def __enter__(self) -> RunLock:
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise SriceError(
                f"another srice eval (pid {holder}) is writing to {self.path.parent}; wait for it to end, "
                "or give this run another --out"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def fingerprint(value) -> str:
    """sha256 of a JSON-able value, canonical."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def check_settings(records: Path, settings: dict, *, force: bool = False) -> list[str]:
    """Record ``settings`` for the records file ``records``, or compare them with the recorded ones.
    Returns the differences (empty when the same); different settings are a ``SriceError`` unless
    ``force``, which records the new ones beside the earlier (the summary then says it is mixed)."""
    path = settings_path(Path(records))
    out_dir = path.parent
    if not path.exists():
        write_atomic(path, (json.dumps({"settings": settings, "earlier": []}, indent=2) + "\n").encode())
        return []
    try:
        stored = json.loads(path.read_text())
        before = stored["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SriceError(f"{path} is damaged ({e}); move it aside to start the run's settings anew") from None
    changes = [
        f"{key}: {_short(before.get(key))} -> {_short(settings.get(key))}"
        for key in sorted(set(before) | set(settings))
        if before.get(key) != settings.get(key)
    ]
    if changes and not force:
        raise SriceError(
            f"the records in {out_dir} were made with other settings ({'; '.join(changes)}); resume with the "
            "same settings, give another --out, or pass --force to add records made with these"
        )
    if changes:
        stored["earlier"] = [*stored.get("earlier", []), before]
        stored["settings"] = settings
        write_atomic(path, (json.dumps(stored, indent=2) + "\n").encode())
    return changes


def mixed(out_dir: Path) -> bool:
    """Whether records in ``out_dir`` were added under more than one set of settings (``--force``)."""
    for path in Path(out_dir).glob("records*.run.json"):
        try:
            if json.loads(path.read_text()).get("earlier"):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def comparable(record, digits: int = 6):
    """A record as two runs of the same questions should agree on it: timings left out, floats to
    ``digits`` significant digits (vLLM batches concurrent requests differently from run to run,
    which moves logprobs in the 8th digit). For comparing a run with another (tests, benchmarks)."""
    if isinstance(record, float) and math.isfinite(record):
        return float(f"{record:.{digits}g}")
    if isinstance(record, dict):
        return {k: comparable(v, digits) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [comparable(v, digits) for v in record]
    return record
