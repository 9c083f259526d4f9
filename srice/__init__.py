"""srice: reliable, tool-using multimodal inference (SRICE: seeing and reasoning with confidence).

``srice.Agent``, ``srice.AgentConfig``, ``srice.Item`` and ``srice.Answer`` are imported on first
use, so ``import srice`` (and the CLI's start-up) stays light.
"""

from srice.errors import CalibrationError, InputError, ServingError, SriceError, ToolError

__version__ = "0.1.0"
_LAZY = {
    "Agent": "srice.agent",
    "AgentConfig": "srice.agent",
    "Item": "srice.agent",
    "Answer": "srice.agent.trace",
}
__all__ = ["CalibrationError", "InputError", "ServingError", "SriceError", "ToolError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'srice' has no attribute {name!r}")
