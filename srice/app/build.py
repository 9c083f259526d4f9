"""Building the agent's tools from names, with the embedded models as defaults.

``srice ask --tools yolo,sam`` must work out of the box on a machine with no model hub, so a tool
given no weights gets the embedded local model: the shape detector of the trained toy bundle
(``srice.toy``) for ``yolo`` and ``sam``'s boxes when the bundle is there, else the tiny random-weight
builds of ``srice.tools.tiny``. Calibrators are found by tool name in a calibration folder:
``DIR/<tool>.json``; the uncertainty calibration is ``DIR/uncertainty.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from srice.errors import InputError
from srice.tools import TOOLS, get_tool


def embedded_options(name: str) -> dict:
    """Constructor options that point a tool at its embedded local model."""
    from srice.tools import tiny

    if name == "yolo":
        from srice.toy import has_toy_yolo, toy_yolo_options

        if has_toy_yolo():  # the shape detector trained with the toy model (srice train-toy)
            return toy_yolo_options()
        return {"weights": str(tiny.tiny_yolo()), "max_det": 50}
    if name == "owl":
        return {"weights": str(tiny.tiny_owl()), "max_det": 50}
    if name == "sam":
        # SAM returns one full-size mask per box: 20 boxes of a 1344 px image are already 36 MB
        detector = get_tool("yolo", **(embedded_options("yolo") | {"max_det": 20}))
        return {"checkpoint": str(tiny.tiny_sam()), "detector": detector}
    return {}


def build_tools(names: Sequence[str], weights: Mapping[str, str] | None = None) -> list:
    """Tools by name; ``weights`` maps a name to its model file, else the embedded model is used."""
    weights = dict(weights or {})
    unknown = sorted(set(names) - set(TOOLS)) + sorted(set(weights) - set(names))
    if unknown:
        raise InputError(f"unknown or unused tool(s) {unknown}; valid tools: {', '.join(sorted(TOOLS))}")
    tools = []
    for name in names:
        options = embedded_options(name)
        if name in weights:
            options["checkpoint" if name == "sam" else "weights"] = weights[name]
        tools.append(get_tool(name, **options))
    return tools


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
