"""``srice mcp`` through the official MCP client (the ``mcp`` SDK), launched over stdio as agent
frameworks launch it: the tools are listed, and the calibrated detector and the SRICE answer called."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "demos" / "examples"
EXAMPLE = EXAMPLES / "tiny_triangle.png"
SRICE = str(Path(sys.executable).with_name("srice"))


def _call(args: list[str], calls: list[tuple[str, dict]]):
    async def main():
        server = StdioServerParameters(command=SRICE, args=["mcp", *args])
        async with Client(server, read_timeout_seconds=600) as client:
            listed = await client.list_tools()
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
            return listed, results

    return asyncio.run(main())


def test_the_calibrated_detector_and_the_answer_through_an_mcp_client(toy_vllm_url):
    from srice import ServingConfig, build_agent, open_backend
    from srice.builder.toolbox import build_tools, load_calibrators
    from srice.builtin.toy_bundle import TOY_DIR
    from srice.images import load_image

    image = base64.b64encode(EXAMPLE.read_bytes()).decode()
    options = [
        "--variant",
        "toy",
        "--server",
        toy_vllm_url,
        "--tools",
        "yolo,zoom",
        "--image-folder",
        str(EXAMPLES),
    ]
    listed, (detected, by_path, outside, answered) = _call(
        options,
        [
            ("detect", {"image": f"data:image/png;base64,{image}", "targets": ["triangle"]}),
            ("detect", {"image": "tiny_triangle.png", "targets": ["triangle"]}),
            ("detect", {"image": "/etc/hostname", "targets": ["triangle"]}),
            ("answer", {"image": image, "question": "What colour is the triangle?"}),
        ],
    )
    assert {t.name for t in listed.tools} == {"detect", "read_text", "answer"}
    assert not detected.is_error, detected.content
    found = detected.structured_content
    # the same regions as srice's own calibrated detector in this process
    [yolo] = build_tools(["yolo"])
    calibrator = load_calibrators(TOY_DIR / "calib", ["yolo"])["yolo"]
    calibrated = calibrator.apply(yolo(load_image(EXAMPLE), ("triangle",)))
    assert [r["box"] for r in found["regions"]] == calibrated.to_json()["boxes"]
    assert found["calibration"]["alpha"] == calibrator.alpha and found["raw_regions"] >= len(found["regions"])
    assert by_path.structured_content["regions"] == found["regions"]
    assert outside.is_error and "outside the allowed folder" in outside.content[0].text

    from contextlib import ExitStack

    with ExitStack() as stack:
        backend, variant = open_backend("toy", ServingConfig(server=toy_vllm_url), stack)
        expected = build_agent(backend, variant, ["yolo", "zoom"], log=lambda t: None).answer(
            str(EXAMPLE), "What colour is the triangle?"
        )
    out = answered.structured_content
    assert not answered.is_error, answered.content
    assert out["answer"] == expected.answer and out["pathway"] == expected.pathway
    assert out["uncertainty"] == expected.uncertainty and out["model_calls"] == expected.mllm_calls


def test_a_tool_that_is_not_loaded_is_an_error_the_caller_sees():
    image = base64.b64encode(EXAMPLE.read_bytes()).decode()
    _, (ocr, owl) = _call(
        ["--variant", "toy", "--tools", "yolo"],
        [("read_text", {"image": image}), ("detect", {"image": image, "targets": ["cat"], "tool": "owl"})],
    )
    assert ocr.is_error and "ocr tool is not loaded" in ocr.content[0].text
    assert owl.is_error and "not loaded" in owl.content[0].text


@pytest.fixture(scope="module")
def toy_vllm_url(toy_server):
    return toy_server.url
