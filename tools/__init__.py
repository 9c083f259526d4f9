"""Vision tools: ``tool(image, targets) -> Regions``, one module per tool, behind one small interface.

A tool is a callable object with a ``name`` and a ``batch(images, targets_per_image)`` method (see
``srice.tools.base.Tool``); ``targets`` are the phrases the MLLM asked for, and empty targets mean
"everything the tool can find". Heavy libraries (ultralytics, segment-anything, transformers,
rapidocr) are imported only when a tool is looked up or first used, and weights load on first call.

Tools are named in ``TOOLS`` and built with ``get_tool(name, **options)``.
"""

from __future__ import annotations

import importlib
import inspect

from srice.errors import InputError
from srice.tools.base import Tool
from srice.tools.regions import Regions

TOOLS: dict[str, str] = {
    "yolo": "srice.tools.yolo:YoloTool",
    "owl": "srice.tools.owl:OwlTool",
    "sam": "srice.tools.sam:SamTool",
    "ocr": "srice.tools.ocr:OcrTool",
    "zoom": "srice.tools.zoom:ZoomTool",
    "zoomtree": "srice.tools.zoomtree:ZoomTreeTool",  # guided: the agent searches with its model
}


def tool_class(name: str) -> type:
    """The class registered under ``name``; unknown names list the valid ones."""
    try:
        target = TOOLS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown tool {name!r}; valid tools: {', '.join(sorted(TOOLS))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_tool(name: str, **options) -> Tool:
    """A new ``name`` tool built with ``options`` (keyword arguments of its constructor)."""
    cls = tool_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        raise InputError(f"bad options for tool {name!r}: {e}") from None
    return cls(**options)


__all__ = ["TOOLS", "Regions", "Tool", "get_tool", "tool_class"]
