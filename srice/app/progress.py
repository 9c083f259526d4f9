"""Progress of long commands on stderr: a tqdm bar on a terminal, and where stderr is a file or a
pipe (CI logs, nohup, a job scheduler) a plain line every so often with the rate and the ETA, so a
long run never looks hung."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """``update(k)`` as work is done; ``close()`` at the end (also as a context manager). Without a
    terminal a line goes out once ``every`` items (default: a twentieth of the total) are done since
    the last one, or ``interval`` seconds have passed, and at the end."""

    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        desc: str = "eval",
        unit: str = "q",
        stream: TextIO | None = None,
        interval: float = 30.0,
        every: int | None = None,
    ):
        self.stream = stream or sys.stderr
        self.total, self.done, self.desc, self.unit = total, done, desc, unit
        self.began, self.start_done = time.monotonic(), done
        self.interval, self.every = interval, every or max(1, total // 20)
        self.last_time, self.last_done = self.began, done
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit=unit, file=self.stream)

    def update(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        due = self.done - self.last_done >= self.every or now - self.last_time >= self.interval
        if due or self.done >= self.total:
            self.last_time, self.last_done = now, self.done
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.began
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        share = self.done / self.total if self.total else 1.0
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({share:.0%}), {rate:.2f} {self.unit}/s, "
            f"elapsed {_duration(elapsed)}, ETA {eta}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
