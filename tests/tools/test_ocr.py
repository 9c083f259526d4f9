"""OcrTool with RapidOCR's real PP-OCRv4 weights (shipped in its wheel) on rendered text."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from srice.errors import InputError
from srice.tools import get_tool
from srice.tools.ocr import OcrTool
from srice.tools.regions import Regions


def squash(text: str) -> str:
    return "".join(text.split()).lower()


def poster() -> Image.Image:
    image = Image.new("RGB", (640, 260), "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 50), "SRICE 2026", fill="black", font=ImageFont.load_default(size=48))
    draw.text((60, 170), "hello world", fill="black", font=ImageFont.load_default(size=32))
    return image


@pytest.fixture(scope="module")
def ocr():
    return OcrTool()


def test_reads_rendered_text(ocr):
    regions = ocr(poster(), [])
    assert isinstance(regions, Regions) and regions.tool == "ocr" and regions.image_size == (640, 260)
    texts = [squash(t) for t in regions.labels]
    assert "srice2026" in texts and "helloworld" in texts
    srice = regions.boxes[texts.index("srice2026")]
    assert 20 <= srice[0] < srice[2] <= 400 and 30 <= srice[1] < srice[3] <= 130  # around where it was drawn
    assert np.all((regions.scores > 0.5) & (regions.scores <= 1))
    assert regions.masks is None and regions.meta["matched"] == "all"
    json.dumps(regions.to_json())  # traces are JSON


def test_targets_filter_texts_but_never_to_nothing(ocr):
    image = poster()
    hello = ocr(image, ["HELLO world"])  # case- and space-insensitive
    assert [squash(t) for t in hello.labels] == ["helloworld"] and hello.meta["matched"] == "targets"
    sign = ocr(image, ["the sign"])  # names the object, not its text: every text comes back
    assert len(sign) == 2 and sign.meta["matched"].startswith("none")


def test_blank_image_and_batch(ocr):
    blank = ocr(Image.new("RGB", (200, 100), "white"), ["anything"])
    assert len(blank) == 0 and blank.image_size == (200, 100)
    images = [poster(), Image.new("RGB", (50, 50), "white")]
    batch = get_tool("ocr").batch(images, [[], []])
    for image, got in zip(images, batch):
        one = ocr(image, [])
        assert got.labels == one.labels
        np.testing.assert_allclose(got.boxes, one.boxes)


def test_a_gpu_the_ocr_cannot_use_is_said_and_it_runs_on_the_cpu(monkeypatch, capsys):
    """The CPU onnxruntime installed here has no CUDA provider. No GPU here either, so the device's
    resolution is faked (to cuda:0); the provider check is onnxruntime's own."""
    import onnxruntime

    import srice.tools.ocr as ocr

    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    monkeypatch.setattr(ocr, "resolve_device", lambda device: "cuda:0")
    assert OcrTool(device="cuda").uses_cuda() is False
    why = f"onnxruntime {onnxruntime.__version__} has no CUDA provider (install onnxruntime-gpu)"
    assert capsys.readouterr().err == f"srice: ocr runs on the CPU: {why}\n"
    monkeypatch.undo()
    assert OcrTool(device="cpu").uses_cuda() is False and capsys.readouterr().err == ""
    with pytest.raises(InputError, match="--device must be"):
        OcrTool(device="gpu")
