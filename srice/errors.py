"""srice's error hierarchy: user-facing failures are ``SriceError`` subclasses with one clear line.

Anything else escaping srice is a bug in srice and should propagate with its traceback.
"""

import importlib


class SriceError(Exception):
    """Base class of every error srice raises on purpose."""


class InputError(SriceError):
    """Bad user input: an unreadable image, an empty question, a malformed file."""


class ServingError(SriceError):
    """The model server failed, timed out, or could not be started."""


class ToolError(SriceError):
    """A vision tool failed on an input."""


class CalibrationError(SriceError):
    """A calibrator was misused, or a calibration file is missing, corrupt or incompatible."""


def require(module: str, package: str, purpose: str, error: type[SriceError] = SriceError):
    """Import an optional dependency (a tool's model library, MAPIE, SciPy), or raise ``error`` with
    what needs it and the install line: a missing extra is a user's problem, not a crash."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(f"{purpose} needs {package} ({e}): pip install {package}") from None
