"""Calibration files: one strict-JSON object per calibration, read back with every error named.

Both kinds of calibration, a tool's calibrator (``srice.calibration.base``) and the uncertainty
score's (``srice.calibration.uncertainty_calibration``), are written and read here, as::

    {"format_version": 1, "method": "threshold", "alpha": 0.1, "n": 100,
     "data_hash": "sha256:...", "params": {...}, "created_by": "srice 0.1.0", "checksum": "sha256:..."}

``params`` holds the settings and the fitted parameters; ``n`` counts the calibration units the
guarantee is stated over (images, matched pairs, matched instances or questions). Non-finite numbers
(a "keep nothing" threshold of +inf) are written as the strings "inf"/"-inf" so the file stays strict
JSON. The checksum covers every other field: a file edited or damaged after it was written is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from srice.errors import CalibrationError, InputError
from srice.files import read_file as read_bytes
from srice.files import write_atomic

from .conformal import check_alpha, min_n

MAX_FILE_BYTES = 16 * 1024 * 1024

FORMAT_VERSION = 1
RECREATE = "recreate it with conformalize(...).save(path)"  # what to do about a bad calibrator file


def encode_float(value: float) -> float | str:
    """A float for strict JSON: +-inf become "inf"/"-inf" (NaN is a bug and raises)."""
    value = float(value)
    if math.isnan(value):
        raise ValueError("NaN cannot be stored in a calibration file")
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_float(value: Any) -> float:
    """A number from a file: a JSON number or "inf"/"-inf"; NaN (never written by srice) is refused."""
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def checksum(data: dict) -> str:
    """sha256 of the file's own content (every field but the checksum, canonical JSON): a file edited
    or damaged after it was written no longer matches."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def created_by() -> str:
    from srice import __version__

    return f"srice {__version__}"


def calibration_file(method: str, alpha: float, n: int, data_hash: str, params: dict) -> dict:
    """The file's object for a fitted calibration, with its checksum."""
    data = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "alpha": alpha,
        "n": n,
        "data_hash": data_hash,
        "params": params,
        "created_by": created_by(),
    }
    return data | {"checksum": checksum(data)}


def write_calibration(path: str | os.PathLike, data: dict) -> Path:
    """Write a calibration file atomically: a crash never leaves a truncated file."""
    return write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_file(path: str | os.PathLike, remedy: str = RECREATE) -> dict:
    """The JSON object of a calibration file, or a CalibrationError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise CalibrationError(
            f"Calibration file {path} does not exist; check the path or create it with "
            f"conformalize(...).save(path)."
        )
    try:
        text = read_bytes(path, "calibration file", MAX_FILE_BYTES).decode("utf-8")
    except (InputError, UnicodeDecodeError) as e:
        raise CalibrationError(
            f"Calibration file {path} cannot be read ({e}); check it or {remedy}."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise CalibrationError(
            f"Calibration file {path} is not valid JSON (corrupt or truncated); {remedy}."
        ) from None
    return data


def refusal(source: str, problem: str, remedy: str = RECREATE) -> CalibrationError:
    """The error for a file refused for one field: the file, then the field and what is wrong with
    it (``problem`` begins with the field's name), then what to do."""
    return CalibrationError(f"Calibration file {source}: {problem.rstrip('.')}; {remedy}.")


def nan_field(value: Any, where: str = "params") -> str | None:
    """The first field under ``value`` that holds NaN (``params.margins[2]``), or None: srice never
    writes NaN (``encode_float`` refuses it), so one in a file is damage or an edit."""
    if isinstance(value, float) and math.isnan(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = nan_field(item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
        if found:
            return found
    return None


def check_header(data: Any, source: str, remedy: str = RECREATE) -> dict:
    """The file's object once its shared fields are checked (present, typed, alpha in range, enough
    calibration units for any guarantee at alpha, no NaN anywhere); every refusal names the file and
    the field."""
    if not isinstance(data, dict):
        raise CalibrationError(f"Calibration file {source} does not hold a JSON object; {remedy}.")
    if "format_version" in data and data["format_version"] != FORMAT_VERSION:  # before the fields: they vary
        raise CalibrationError(
            f"Calibration file {source} has format_version {data['format_version']!r} but this srice "
            f"reads version {FORMAT_VERSION}; {remedy} (with this srice)."
        )
    fields = ("format_version", "method", "alpha", "n", "data_hash", "params")
    missing = [key for key in fields if key not in data]
    if missing:
        raise CalibrationError(
            f"Calibration file {source} lacks {', '.join(missing)} (not a srice calibration file or "
            f"truncated); {remedy}."
        )
    n, alpha = data["n"], data["alpha"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise refusal(source, f"n must be a whole number >= 0, got {n!r}", remedy)
    if not isinstance(data["params"], dict):
        raise refusal(source, f"params must be a JSON object, got {type(data['params']).__name__}", remedy)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise refusal(source, f"alpha must be a number strictly between 0 and 1, got {alpha!r}", remedy)
    if not isinstance(data["data_hash"], str):
        raise refusal(source, f"data_hash must be text, got {data['data_hash']!r}", remedy)
    if where := nan_field(data["params"]):
        raise refusal(source, f"{where} is NaN, which srice never writes", remedy)
    alpha = check_alpha(alpha)
    if n < min_n(alpha, "crc"):
        raise CalibrationError(
            f"Calibration file {source} was fitted on n={n} calibration units, too few for any guarantee "
            f"at alpha={alpha:g} (at least {min_n(alpha, 'crc')}); recalibrate on more data."
        )
    return data


def verify_checksum(data: dict, source: str, remedy: str = RECREATE) -> None:
    """A ``CalibrationError`` when a file that carries a checksum no longer matches it (files of
    earlier srice versions carry none and are checked field by field only)."""
    if "checksum" in data and data["checksum"] != checksum(data):
        raise CalibrationError(
            f"Calibration file {source} does not match its checksum: it was edited or damaged after it "
            f"was written; {remedy}."
        )
