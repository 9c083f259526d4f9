"""srice: reliable, tool-using multimodal inference (SRICE: seeing and reasoning with confidence)."""

from srice.errors import CalibrationError, InputError, ServingError, SriceError, ToolError

__version__ = "0.1.0"
__all__ = ["CalibrationError", "InputError", "ServingError", "SriceError", "ToolError", "__version__"]
