"""``srice calibrate`` end to end: real OCR weights on rendered words, and the uncertainty score on the
tiny model served by a real vllm serve."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import run_srice as srice
from conftest import scene
from srice.calibration import load_calibrator
from srice.calibration.uncertainty_calibration import UncertaintyCalibration
from srice.tools import get_tool

WORDS = ["STOP", "EXIT", "OPEN", "SALE", "PARK", "HOTEL", "TAXI", "BANK"]


@pytest.fixture(scope="module")
def signs(tmp_path_factory):
    """40 pictures of one or two words in known boxes, as a COCO file; one file is corrupt."""
    root = tmp_path_factory.mktemp("signs")
    rng = random.Random(0)
    font = ImageFont.load_default(size=44)
    images, annotations = [], []
    for i in range(40):
        image = Image.new("RGB", (360, 200), (250, 250, 245))
        draw = ImageDraw.Draw(image)
        for k, word in enumerate(rng.sample(WORDS, rng.randint(1, 2))):
            x, y = rng.randint(5, 150), 15 + 95 * k + rng.randint(0, 20)
            draw.text((x, y), word, fill=(10, 10, 10), font=font)
            x1, y1, x2, y2 = draw.textbbox((x, y), word, font=font)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": WORDS.index(word),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        image.save(root / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 360, "height": 200})
    (root / "39.png").write_bytes(b"broken")
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": w} for k, w in enumerate(WORDS)]}  # fmt: skip
    (root / "ann.json").write_text(json.dumps(coco))
    return root


def test_calibrate_ocr_sequential(signs, tmp_path):
    out = tmp_path / "ocr.json"
    r = srice("calibrate", "--tool", "ocr", "--data", str(signs / "ann.json"), "--images", str(signs),
              "--alpha", "0.2", "--method", "sequential", "-o", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["skipped_images"] == 1 and "39.png" in r.stderr
    assert report["calibration_images"] + report["holdout_images"] == 39
    steps = report["holdout"]["steps"]
    assert set(steps) == {"threshold", "margins"}
    assert steps["threshold"]["coverage"] >= 0.5  # real OCR finds most words
    calibrator = load_calibrator(out)
    image = Image.open(signs / "0.png").convert("RGB")
    raw = get_tool("ocr")(image, [])
    calibrated = calibrator.apply(raw)
    assert "calibration" in calibrated.meta and len(calibrated) <= len(raw)
    if len(calibrated):  # margins only widen
        kept = raw.select(raw.scores >= calibrated.scores.min())
        assert (calibrated.boxes[:, :2] <= kept.boxes[:, :2] + 1e-9).all()


def test_calibrate_tool_errors_are_one_line(signs, tmp_path):
    r = srice("calibrate", "--tool", "nope", "--data", str(signs / "ann.json"), "--images", str(signs), "-o",
              str(tmp_path / "x.json"))  # fmt: skip
    assert r.returncode == 1 and r.stderr.startswith("srice: error: unknown tool 'nope'")
    missing = str(tmp_path / "none.json")
    r = srice(
        "calibrate", "--tool", "ocr", "--data", missing, "--images", str(signs), "-o", str(tmp_path / "x")
    )
    assert r.returncode == 1 and "annotation file not found" in r.stderr


def test_calibrate_uncertainty_and_ask_uses_it(vllm_server, tmp_path):
    rows = []
    for i in range(40):
        scene(seed=100 + i).save(tmp_path / f"q{i}.png")
        if i % 2:
            rows.append({"image": f"q{i}.png", "question": "Which shape?", "options": ["circle", "square"],
                         "answer": "square" if i % 4 == 1 else "A"})  # fmt: skip
        else:
            rows.append({"image": f"q{i}.png", "question": "What colour?", "answer": "red"})
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    calib = tmp_path / "calib"
    out = str(calib / "uncertainty.json")
    r = srice("calibrate", "--uncertainty", "--data", str(tmp_path / "q.jsonl"), "--alpha", "0.2",
              "--variant", "tiny", "--server", vllm_server.url, "-o", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "early exit" in r.stdout.splitlines()[-1]  # what early exit would do, or why there is none
    r = srice("calibrate", "--uncertainty", "--data", str(tmp_path / "q.jsonl"), "--alpha", "0.2",
              "--variant", "tiny", "--server", vllm_server.url, "-o", str(calib / "uncertainty.json"),
              "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n_choice"] + report["n_open"] == 20 and report["n_exit"] == 20
    assert report["qhat_choice"] is not None and 0 <= report["qhat_choice"] <= 1
    saved = UncertaintyCalibration.load(calib / "uncertainty.json")
    assert saved.qhat_choice == report["qhat_choice"]
    r = srice("ask", "--image", str(tmp_path / "q1.png"), "--question", "Which shape?", "--options",
              "circle,square", "--calib", str(calib), "--variant", "tiny", "--server", vllm_server.url,
              "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    direct = json.loads(r.stdout)["trace"][0]
    assert direct["uncertainty"]["method"] == "set_size/choice"  # calibrated, not the fallback


def test_corrupt_uncertainty_file_is_a_clear_error(tmp_path):
    (tmp_path / "uncertainty.json").write_text('{"method": "uncertainty-lac", "format_version": 99}')
    example = Path(__file__).resolve().parents[2] / "demos" / "example.png"
    r = srice("ask", "--image", str(example), "--question", "q", "--calib", str(tmp_path), "--backend",
              "transformers")  # fmt: skip
    assert r.returncode == 1 and "format_version 99" in r.stderr


def test_early_exit_without_a_threshold_is_an_error_that_says_why():
    """The toy's own calibration has no early-exit threshold (none met alpha on its questions)."""
    example = Path(__file__).resolve().parents[2] / "demos" / "examples" / "tiny_triangle.png"
    r = srice("ask", "--image", str(example), "--question", "What colour is the triangle?", "--early-exit",
              "--backend", "transformers")  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("srice: error: ") == 1, r.stderr
    assert "has no early-exit threshold" in r.stderr and "alpha=0.1" in r.stderr
