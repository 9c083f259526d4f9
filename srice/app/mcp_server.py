"""``srice mcp``: the calibrated vision tools and the SRICE answer as MCP tools, for agent frameworks.

Why: conformally calibrated detectors are what no other project in this space ships; an agent
framework that speaks the Model Context Protocol (Claude Desktop, smolagents, LangGraph, ...) can
call them as tools and get regions with a stated recall guarantee, or ask the whole SRICE agent.

Tools: ``detect`` (a detector's calibrated regions for target names), ``read_text`` (OCR lines) and
``answer`` (SRICE's answer with its uncertainty; the model backend starts on first use, or is the
server ``--server`` names). Images are ``data:`` URLs or base64 strings; file paths only inside the
folder ``--image-folder`` names. Runs over stdio (an MCP client launches it) or streamable HTTP on
127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srice.agent import Agent, Item
from srice.app import chat
from srice.errors import SriceError
from srice.images import load_image

DETECTORS = ("yolo", "owl", "sam")


# base64 of the first bytes of PNG, JPEG, GIF and WebP files: a bare base64 image, not a path
_BASE64_IMAGE = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")


def _image_source(image: str, folder: Path | None) -> bytes | Path:
    """A data: URL, bare base64 image bytes, or a path inside ``folder``; else a ValueError saying why."""
    try:
        if image.startswith(_BASE64_IMAGE):
            return base64.b64decode(image, validate=True)
        return chat.image_source(image, chat.Limits(image_folder=folder))
    except chat.ApiError as e:
        raise ValueError(e.message) from None
    except (binascii.Error, ValueError):
        raise ValueError("the image's base64 data is not valid") from None


class SriceTools:
    """What the MCP tools call: tools built once, calibrators from the variant's folder, and the
    agent (and its model backend) built on first ``answer``."""

    def __init__(self, make_agent: Callable[[], Agent], tools, calibrators, folder: Path | None):
        self._make_agent, self._agent, self._lock = make_agent, None, threading.Lock()
        self.tools = {t.name: t for t in tools}
        self.calibrators = dict(calibrators)
        self.folder = folder

    def detect(self, image: str, targets: Sequence[str], tool: str = "yolo") -> dict:
        if tool not in self.tools or tool not in DETECTORS:
            loaded = [t for t in self.tools if t in DETECTORS]
            raise ValueError(f"detector {tool!r} is not loaded here (loaded: {loaded})")
        picture = load_image(_image_source(image, self.folder))
        raw = self.tools[tool](picture, tuple(targets))
        calibrator = self.calibrators.get(tool)
        shown = calibrator.apply(raw) if calibrator is not None else raw
        return {
            "regions": _regions(shown),
            "raw_regions": len(raw),
            "calibration": calibrator.record() | {"params": calibrator.params} if calibrator else None,
            "image_size": list(picture.size),
        }

    def read_text(self, image: str) -> dict:
        if "ocr" not in self.tools:
            raise ValueError("the ocr tool is not loaded here (start with --tools including ocr)")
        picture = load_image(_image_source(image, self.folder))
        found = self.tools["ocr"](picture, ())
        return {
            "lines": [{"text": r["label"], "box": r["box"], "score": r["score"]} for r in _regions(found)]
        }

    def answer(self, image: str, question: str, options: Sequence[str] | None = None) -> dict:
        with self._lock:
            if self._agent is None:
                self._agent = self._make_agent()
        item = Item(
            load_image(_image_source(image, self.folder)), question, tuple(options) if options else None
        )
        [answer] = self._agent.answer_batch([item])
        if answer.error:
            raise ValueError(answer.error)
        return chat.srice_summary(answer, with_trace=False) | {"answer": answer.answer}


def _regions(regions) -> list[dict]:
    j = regions.to_json()
    return [
        {"box": b, "score": s, "label": label} for b, s, label in zip(j["boxes"], j["scores"], j["labels"])
    ]


def build_server(tools: SriceTools):
    """The MCP server with srice's tools registered."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as McpToolError

    def call(fn, *args):
        """A refusal or failure reaches the caller with its reason (MCP shows a crash's text to no one)."""
        try:
            return fn(*args)
        except (ValueError, SriceError) as e:
            raise McpToolError(str(e)) from None

    server = MCPServer(
        "srice", instructions="Calibrated vision tools and the SRICE visual question answerer."
    )

    @server.tool(structured_output=True)
    def detect(image: str, targets: list[str], tool: str = "yolo") -> dict[str, Any]:
        """Find objects by name with a conformally calibrated detector: regions whose recall of the
        named objects is at least 1 - alpha on the calibration data (see `calibration`). `image` is a
        data: URL or base64 image bytes; `targets` are object names such as ["triangle"]."""
        return call(tools.detect, image, targets, tool)

    @server.tool(structured_output=True)
    def read_text(image: str) -> dict[str, Any]:
        """The text lines OCR reads in the image, each with its box and confidence."""
        return call(tools.read_text, image)

    @server.tool(structured_output=True)
    def answer(image: str, question: str, options: list[str] | None = None) -> dict[str, Any]:
        """Answer a visual question with SRICE: the direct answer and the calibrated tool views,
        whichever the model is least uncertain about, with its uncertainty score (US, lower is
        surer), prediction set and the pathway chosen. `options` makes it multiple choice."""
        return call(tools.answer, image, question, options)

    return server


def serve(tools: SriceTools, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``tools`` over stdio (for a client that launches this process) or streamable HTTP."""
    server = build_server(tools)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
