"""srice: reliable, tool-using multimodal inference (SRICE: seeing and reasoning with confidence).

``srice.Agent``, ``srice.AgentConfig``, ``srice.Item``, ``srice.Answer`` and the way to build an
agent (``srice.AgentSpec``, ``srice.AgentPool``, ``srice.build_agent``, ``srice.open_backend``,
``srice.ServingConfig``) are imported on first use, so ``import srice`` (and the CLI's start-up)
stays light.
"""

from srice.errors import CalibrationError, InputError, ServingError, SriceError, ToolError
from srice.lazy import lazy_names

__version__ = "0.1.0"
_LAZY = {
    **dict.fromkeys(("Agent", "AgentConfig", "Item", "Answer"), "srice.agent"),
    "ServingConfig": "srice.serving.config",
    "open_backend": "srice.serving.backends",
    "build_agent": "srice.builder.agents",
    "AgentSpec": "srice.builder.spec",
    "AgentPool": "srice.builder.pool",
}
__all__ = ["CalibrationError", "InputError", "ServingError", "SriceError", "ToolError", "__version__", *_LAZY]


__getattr__ = lazy_names(__name__, _LAZY)
