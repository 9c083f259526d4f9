"""Names a package hands on but imports only when first used.

Why: ``import srice`` and ``srice --help`` must not load torch, PIL or an HTTP client, yet users
write ``from srice import build_agent`` and ``from srice.serving import OpenAIBackend``. A package
sets ``__getattr__ = lazy_names(__name__, {"Name": "module", ...})`` (module paths relative to the
package, or absolute when they start with ``srice.``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_names(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` on first use and returns its ``name``."""

    def getattr_(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name]
        return getattr(
            importlib.import_module(module if module.startswith("srice.") else f"{package}.{module}"), name
        )

    return getattr_
