"""Where srice keeps what it builds: one cache root, overridable for tests and shared machines."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SRICE_CACHE``, else ``$XDG_CACHE_HOME/srice``, else ``~/.cache/srice``."""
    if env := os.environ.get("SRICE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "srice"
