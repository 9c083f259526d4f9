"""Files: reading what users name (regular files only, of bounded size, read with a bound) and
writing what srice keeps (whole or not at all).

A path a user gives may name a FIFO (reading blocks forever), a device such as /dev/zero (reading
never ends) or a file far larger than anything srice reads; each is a clear ``InputError`` before a
byte is read. A file srice writes (records' settings, calibrations, the variant registry) is replaced
atomically: a crash or a full disk leaves the old content or the new, never a torn file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from srice.errors import InputError


def read_file(path: Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Anything else (a FIFO, which would block,
    a device such as /dev/zero, which never ends, a folder) is an ``InputError`` before a byte is read,
    and the read itself is bounded in case the file grows meanwhile."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} path is a folder: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} is not a regular file (a pipe, socket or device): {path}")
    if info.st_size > limit:
        raise InputError(
            f"{what} file too large: {info.st_size / 2**20:.1f} MB > limit {limit / 2**20:.0f} MB: {path}"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InputError(f"{what} file too large: over {limit / 2**20:.0f} MB: {path}")
    return data


def check_regular(path: Path, what: str) -> None:
    """An ``InputError`` unless ``path`` is a regular file (for files read as a stream)."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} is not a regular file: {path}")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace the content of ``path`` with ``data`` at once: written to a temporary file in the same
    folder, flushed to disk, then renamed over ``path``. On any failure the temporary file is removed
    and ``path`` keeps what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # as an ordinary file, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
