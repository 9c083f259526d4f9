"""The uncertainty score's calibration: the LAC q-hats and the early-exit threshold one model was
fitted to, kept in the same file format as every calibrator (``srice.calibration.file_format``).

It is fitted by ``srice.eval.uncertainty_fit`` (answering labelled questions with the model) and
turned into the agent's score by ``srice.builder`` (``SetSizeScore`` with these q-hats).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .file_format import (
    calibration_file,
    check_header,
    read_file,
    refusal,
    verify_checksum,
    write_calibration,
)

METHOD = "uncertainty-lac"
RECALIBRATE = "recalibrate with srice calibrate --uncertainty"
_SHARED = ("alpha", "data_hash")  # fields the file format keeps beside params


@dataclass(frozen=True)
class UncertaintyCalibration:
    alpha: float
    qhat_choice: float | None
    qhat_open: float | None
    early_exit: float | None  # None: never exit early
    n_choice: int
    n_open: int
    n_exit: int
    data_hash: str
    skipped: int = 0
    # what early exit does on the exit half: the share of questions that exit (each skips the region
    # proposal and every tool pathway) and the share that exit with a wrong answer (bound: alpha)
    exit_share: float | None = None
    exit_wrong: float | None = None

    @property
    def n(self) -> int:
        """Questions the calibration rests on (both halves)."""
        return self.n_choice + self.n_open + self.n_exit

    def save(self, path: str | Path) -> Path:
        """Write the calibration file (atomically, with a checksum of its own content)."""
        params = {k: v for k, v in asdict(self).items() if k not in _SHARED}
        return write_calibration(path, calibration_file(METHOD, self.alpha, self.n, self.data_hash, params))

    @classmethod
    def load(cls, path: str | Path) -> UncertaintyCalibration:
        """Read a file written by ``save``, checked field by field (types, ranges, finite values,
        enough questions for each q-hat at alpha) and against its checksum."""
        source = str(path)
        data = check_header(read_file(path, RECALIBRATE), source, RECALIBRATE)
        if data["method"] != METHOD:
            problem = f"method must be {METHOD!r}, got {data['method']!r}: not an uncertainty calibration"
            raise refusal(source, problem, RECALIBRATE)
        unknown = sorted(set(data["params"]) - set(cls.__dataclass_fields__) - set(_SHARED))
        if unknown:
            raise refusal(
                source, f"params.{unknown[0]} is no field of an uncertainty calibration", RECALIBRATE
            )
        try:
            calibration = cls(alpha=data["alpha"], data_hash=data["data_hash"], **data["params"])
            calibration.check()
        except TypeError as e:  # a field left out
            raise refusal(source, f"params are missing a field ({e})", RECALIBRATE) from None
        except ValueError as e:
            raise refusal(source, str(e), RECALIBRATE) from None
        verify_checksum(data, source, RECALIBRATE)
        return calibration

    def check(self) -> None:
        """A ``ValueError`` naming the first field that is out of its type or range."""

        def number(name, value, low, high, *, none=False, integer=False):
            if value is None and none:
                return
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
                raise ValueError(
                    f"{name} must be a finite {'integer' if integer else 'number'}, got {value!r}"
                )
            if not low <= value <= high:
                raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")

        number("alpha", self.alpha, 1e-6, 1 - 1e-6)
        number("qhat_choice", self.qhat_choice, 0.0, 1.0, none=True)
        number("qhat_open", self.qhat_open, 0.0, 1.0, none=True)
        number("early_exit", self.early_exit, 0.0, 1e6, none=True)  # a US: a set size (+ options/top-k)
        for name in ("n_choice", "n_open", "n_exit", "skipped"):
            number(name, getattr(self, name), 0, 1e12, integer=True)
        for name in ("exit_share", "exit_wrong"):
            number(name, getattr(self, name), 0.0, 1.0, none=True)
        need = math.ceil(1 / self.alpha - 1 - 1e-9)
        for kind, qhat, n in (
            ("choice", self.qhat_choice, self.n_choice),
            ("open", self.qhat_open, self.n_open),
        ):
            if qhat is not None and n < need:
                raise ValueError(
                    f"qhat_{kind} rests on n_{kind}={n} questions, too few for alpha={self.alpha:g} "
                    f"(at least {need})"
                )
        if self.early_exit is not None and self.n_exit < need:
            raise ValueError(
                f"early_exit rests on n_exit={self.n_exit} questions, too few for alpha={self.alpha:g}"
            )
        if not isinstance(self.data_hash, str):
            raise ValueError("data_hash must be text")
