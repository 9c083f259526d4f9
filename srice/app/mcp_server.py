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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srice.agent import Item
from srice.app import chat
from srice.app.image_input import ImageRefused, image_source
from srice.app.server_config import Limits
from srice.builder.pool import AgentPool
from srice.errors import SriceError
from srice.images import load_image

DETECTORS = ("yolo", "owl", "sam")


def _image(image: str, folder: Path | None):
    """The picture a tool call names (``srice.app.image_input``'s rules), or a ValueError saying why not."""
    try:
        return load_image(image_source(image, Limits(image_folder=folder), bare_base64=True))
    except ImageRefused as e:
        raise ValueError(e.message) from None


class SriceTools:
    """What the MCP tools call: the pool's tools and calibrators (built once, shared with the agent)
    and its agent, whose model backend starts on the first ``answer``."""

    def __init__(self, pool: AgentPool, folder: Path | None):
        self.pool, self.folder = pool, folder
        self.calibrators = pool.calibrators()

    def detect(self, image: str, targets: Sequence[str], tool: str = "yolo") -> dict:
        if tool not in self.pool.offered or tool not in DETECTORS:
            loaded = [t for t in self.pool.offered if t in DETECTORS]
            raise ValueError(f"detector {tool!r} is not loaded here (loaded: {loaded})")
        picture = _image(image, self.folder)
        raw = self.pool.tool(tool)(picture, tuple(targets))
        calibrator = self.calibrators.get(tool)
        shown = calibrator.apply(raw) if calibrator is not None else raw
        return {
            "regions": _regions(shown),
            "raw_regions": len(raw),
            "calibration": calibrator.record() | {"params": calibrator.params} if calibrator else None,
            "image_size": list(picture.size),
        }

    def read_text(self, image: str) -> dict:
        if "ocr" not in self.pool.offered:
            raise ValueError("the ocr tool is not loaded here (start with --tools including ocr)")
        found = self.pool.tool("ocr")(_image(image, self.folder), ())
        return {
            "lines": [{"text": r["label"], "box": r["box"], "score": r["score"]} for r in _regions(found)]
        }

    def answer(self, image: str, question: str, options: Sequence[str] | None = None) -> dict:
        item = Item(_image(image, self.folder), question, tuple(options) if options else None)
        [answer] = self.pool.agent().answer_batch([item])
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


def serve_mcp(tools: SriceTools, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``tools`` over stdio (for a client that launches this process) or streamable HTTP."""
    server = build_server(tools)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
