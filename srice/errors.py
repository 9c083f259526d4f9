"""srice's error hierarchy: user-facing failures are ``SriceError`` subclasses with one clear line.

Anything else escaping srice is a bug in srice and should propagate with its traceback.
"""


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
