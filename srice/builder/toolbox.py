"""The agent's tools by name, and their calibrators.

``srice ask --tools yolo,sam`` must work out of the box on a machine with no model hub, so a tool
given no weights gets the embedded local model: the shape detector of the trained toy bundle
(``srice.builtin.toy_bundle``) for ``yolo`` and ``sam``'s boxes when the bundle is there, else the
tiny random-weight builds of ``srice.builtin.tiny_tools``. Calibrators are found by tool name in a
calibration folder: ``DIR/<tool>.json``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from srice.devices import resolve_device
from srice.errors import InputError
from srice.tools import TOOLS, get_tool, tool_class

CALIBRATED_TOOLS = ("yolo", "owl", "sam", "ocr")  # tools whose regions have a conformal calibrator


def embedded_options(name: str, device: str = "auto") -> dict:
    """Constructor options that point a tool at its embedded local model, on ``device``."""
    from srice.builtin import tiny_tools

    if name == "yolo":
        from srice.builtin.toy_bundle import has_toy_yolo, toy_yolo_options

        if has_toy_yolo():  # the shape detector trained with the toy model (srice train-toy)
            return toy_yolo_options()
        return {"weights": str(tiny_tools.tiny_yolo()), "max_det": 50}
    if name == "owl":
        return {"weights": str(tiny_tools.tiny_owl()), "max_det": 50}
    if name == "sam":
        # SAM returns one full-size mask per box: 20 boxes of a 1344 px image are already 36 MB
        detector = get_tool("yolo", **tool_options("yolo", device=device))
        return {"checkpoint": str(tiny_tools.tiny_sam()), "detector": detector, "max_prompts": 20}
    return {}


_ULTRALYTICS_NAME = re.compile(r"^yolo[\w.-]*\.(pt|yaml|yml)$")  # an asset ultralytics knows by name
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # org/name: a hub model, fetched only because it is named


def check_tool_weights(weights: Mapping[str, str]) -> None:
    """An ``InputError`` for a weights file that is not there, before anything is loaded or started.
    A bare ultralytics model name (``yolo11n.pt``) and a hub id for OWL (``org/name``) are names,
    not files: the tool fetches those only because the user named them."""
    for tool, value in weights.items():
        path = Path(str(value)).expanduser()
        if path.exists():
            if tool != "owl" and not path.is_file():
                raise InputError(f"--tool-weights {tool}: not a file: {path}")
            continue
        named = (tool == "yolo" and _ULTRALYTICS_NAME.match(str(value))) or (
            tool == "owl" and _HUB_ID.match(str(value))
        )
        if not named:
            raise InputError(f"--tool-weights {tool}: file not found: {path}")


def check_tools(names: Sequence[str], weights: Mapping[str, str]) -> None:
    """An ``InputError`` for an unknown tool, weights named for a tool not used, or a weights file
    that is not there: before anything is loaded or started."""
    unknown = sorted(set(names) - set(TOOLS)) + sorted(set(weights) - set(names))
    if unknown:
        raise InputError(f"unknown or unused tool(s) {unknown}; valid tools: {', '.join(sorted(TOOLS))}")
    check_tool_weights(weights)


def tool_options(
    name: str,
    weights: str | None = None,
    *,
    trust_weights: bool = False,
    extra: Mapping | None = None,
    device: str = "auto",
) -> dict:
    """A tool's constructor options: its embedded model (with ``extra`` options), or the weights file
    named for it, on ``device`` where the tool runs a model."""
    options = embedded_options(name, device) | dict(extra or {})
    if "device" in inspect.signature(tool_class(name)).parameters:
        options.setdefault("device", device)
    if weights is not None:
        options["checkpoint" if name == "sam" else "weights"] = weights
        if name == "yolo":
            options["trust_weights"] = trust_weights
    return options


def build_tools(
    names: Sequence[str],
    weights: Mapping[str, str] | None = None,
    *,
    trust_weights: bool = False,
    device: str = "auto",
) -> list:
    """Tools by name, on ``device`` (resolved here, once: ``srice.devices``); ``weights`` maps a name
    to its model file, else the embedded model is used. User weights load safely (no code in them
    runs) unless ``trust_weights``."""
    weights = dict(weights or {})
    check_tools(names, weights)
    device = resolve_device(device)
    built: dict = {}
    for name in sorted(names, key=lambda n: n == "sam"):  # sam last: it may take yolo's boxes
        built[name] = build_tool(name, weights, built, trust_weights=trust_weights, device=device)
    return [built[name] for name in names]


def build_tool(
    name: str,
    weights: Mapping[str, str],
    built: Mapping,
    *,
    trust_weights: bool = False,
    device: str = "auto",
):
    """One tool on ``device``, next to those ``built`` already: ``sam`` on the embedded detector
    segments the boxes of the ``yolo`` built beside it (the agent then detects once per image)."""
    options = tool_options(name, weights.get(name), trust_weights=trust_weights, device=device)
    if name == "sam" and "yolo" in built and "yolo" not in weights:
        options["detector"] = built["yolo"]  # the same detector: the agent hands sam its boxes
    tool = get_tool(name, **options)
    if name in weights:
        tool.load()  # weights the user named are checked now, before any question
    return tool


def load_calibrators(folder: str | Path | None, names: Sequence[str]) -> dict:
    """The calibrators found in ``folder`` for the given tool names (missing files: uncalibrated)."""
    if folder is None:
        return {}
    from srice.calibration import load_calibrator

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"calibration folder not found: {folder}")
    return {
        name: load_calibrator(folder / f"{name}.json") for name in names if (folder / f"{name}.json").exists()
    }
