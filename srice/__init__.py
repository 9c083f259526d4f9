"""srice: reliable, tool-using multimodal inference (SRICE: seeing and reasoning with confidence).

``srice.Agent``, ``srice.AgentConfig``, ``srice.Item``, ``srice.Answer`` and the way to build an
agent (``srice.build_agent``, ``srice.open_backend``, ``srice.ServingConfig``) are imported on first
use, so ``import srice`` (and the CLI's start-up) stays light.
"""

from srice.errors import CalibrationError, InputError, ServingError, SriceError, ToolError

__version__ = "0.1.0"
_LAZY = {
    **dict.fromkeys(("Agent", "AgentConfig", "Item", "Answer"), "srice.agent"),
    **dict.fromkeys(("ServingConfig", "build_agent", "open_backend"), "srice.app.build"),
}
__all__ = ["CalibrationError", "InputError", "ServingError", "SriceError", "ToolError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'srice' has no attribute {name!r}")
