"""How an evaluation is run and judged, apart from answering: which share of the questions this
machine takes (``parse_shard``), how many are answered together, and how much failure a run may have
before it fails (``FailureLimits``), with the lines that say so while it runs and at its end.

A light module: the command line reads its defaults for ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

from srice.errors import InputError, SriceError

EXIT_OVER_FAILURE_LIMITS = 3  # the run finished and wrote everything, but too much of it failed
DEFAULT_BATCH_SIZE = 32  # questions answered together (one batched model call per stage)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``--shard i/n``: this machine's share of the questions, as (i, n); none is (0, 1)."""
    if not text:
        return (0, 1)
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise SriceError(f"--shard takes i/n, e.g. 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise SriceError(f"--shard {text}: need 0 <= i < n")
    return index, count


@dataclass(frozen=True)
class FailureLimits:
    """The shares of failure a run may have and still succeed: of a tool's questions on which the
    tool failed, and of all questions that got no answer at all. Over either, ``srice eval`` exits
    with ``EXIT_OVER_FAILURE_LIMITS`` after writing everything."""

    max_tool_failures: float = 0.05
    max_failed_items: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_tool_failures", "max_failed_items"):
            if not 0 <= (value := getattr(self, name)) <= 1:
                raise InputError(f"--{name.replace('_', '-')} is a share in [0, 1], got {value}")

    def broken(self, failures: dict) -> list[str]:
        """One line per share over its limit, from a summary's ``failures`` (``srice.eval.report``)."""
        out = []
        for tool, t in failures["tools"].items():
            if t["questions"] and t["failed"] / t["questions"] > self.max_tool_failures:
                out.append(
                    f"tool {tool} failed on {t['failed']} of {t['questions']} questions ({t['timed_out']} "
                    f"timed out): {t['failed'] / t['questions']:.0%} > --max-tool-failures "
                    f"{self.max_tool_failures:g}"
                )
        rec = failures["records"]
        if rec["n"] and rec["failed"] / rec["n"] > self.max_failed_items:
            out.append(
                f"{rec['failed']} of {rec['n']} questions got no answer: "
                f"{rec['failed'] / rec['n']:.0%} > --max-failed-items {self.max_failed_items:g}"
            )
        return out


def batch_warnings(failures: dict) -> list[str]:
    """A warning for every tool that failed in a batch, and for its failed questions, with the most
    common reason (``failures`` of the batch's records, ``srice.eval.report.failures``)."""
    out = []
    for tool, t in failures["tools"].items():
        if t["failed"]:
            reason = max(t["reasons"], key=t["reasons"].get)
            out.append(f"warning: tool {tool} failed on {t['failed']} of {t['questions']} questions of this "
                       f"batch ({reason})")  # fmt: skip
    rec = failures["records"]
    if rec["failed"]:
        reason = max(rec["reasons"], key=rec["reasons"].get)
        out.append(f"warning: {rec['failed']} of {rec['n']} questions of this batch got no answer ({reason})")
    return out
