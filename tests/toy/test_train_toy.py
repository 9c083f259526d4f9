"""``srice train-toy`` at toy-of-a-toy sizes: every stage runs for real (tokenizer, MLLM steps,
ultralytics training, both calibrations). The real sizes and their results are in
srice/assets/toy/manifest.json."""

from __future__ import annotations

import os

import pytest

from conftest import run_srice
from srice.builtin.toy_bundle import TOY_DIR
from srice.errors import CalibrationError
from srice.synth.scene import SHAPES
from srice.toy.train_mllm import TrainConfig
from srice.toy.train_yolo import YoloConfig


def test_a_failed_stage_keeps_what_the_earlier_stages_trained(tmp_path):
    """Minutes of training must survive a late failure: here the detector, trained for one epoch
    on six tiles, finds nothing, so its calibration fails with a clear error."""
    from srice.builder.toolbox import build_tools
    from srice.serving.hf import TransformersBackend
    from srice.serving.types import Message, Request
    from srice.toy.bundle import train_bundle

    logged = []
    with pytest.raises(CalibrationError, match="matched"):
        train_bundle(
            tmp_path / "bundle",
            seed=3,
            mllm=TrainConfig(
                steps=3,
                focus_steps=2,
                region_steps=2,
                vision_steps=2,
                vision_batch=4,
                batch_size=4,
                warmup=1,
                eval_images=2,
            ),
            yolo=YoloConfig(images=3, tiles_per_image=2, epochs=1, batch=4),
            calib_questions=90,
            log=logged.append,
        )
    [staging] = tmp_path.glob(".toy-*")
    assert f"--resume {staging}" in logged[-1] and not (tmp_path / "bundle").exists()
    [reply] = TransformersBackend(staging / "mllm").generate(
        [Request((Message("user", ("What colour is the star?",)),), max_tokens=4)]
    )
    assert reply.tokens  # the trained MLLM loads and generates
    [yolo] = build_tools(["yolo"], {"yolo": str(staging / "yolo.pt")})
    assert tuple(yolo.class_names.values()) == SHAPES


@pytest.mark.skipif(not (TOY_DIR / "yolo.pt").exists(), reason="needs the trained toy bundle (issue 6)")
def test_calibrate_bundle_fits_both_calibrations_on_its_own_split(tmp_path):
    from srice.calibration import load_calibrator
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration
    from srice.toy.bundle import calibrate_bundle

    os.symlink(TOY_DIR / "mllm", tmp_path / "mllm")
    os.symlink(TOY_DIR / "yolo.pt", tmp_path / "yolo.pt")
    report = calibrate_bundle(tmp_path, seed=3, questions=90, log=lambda text: None)
    assert report["data_seed"] == 5003 and report["detector"]["images"] >= 26
    assert report["detector"]["holdout"]["n"] > 0
    calibrator = load_calibrator(tmp_path / "calib" / "yolo.json")  # sequential: alpha per step
    assert calibrator.threshold.alpha == calibrator.margins.alpha == 0.1
    assert UncertaintyCalibration.load(tmp_path / "calib" / "uncertainty.json").n_open > 0


def test_train_toy_help_names_its_knobs():
    r = run_srice("train-toy", "--help")
    assert r.returncode == 0 and "--steps" in r.stdout and "--yolo-epochs" in r.stdout
    r = run_srice("train-toy", "--steps", "0", "--out", "/nonexistent/x")
    assert r.returncode == 1 and "at least 1" in r.stderr


def test_detector_tiles_cover_both_predict_scales(tmp_path):
    from PIL import Image

    from srice.toy.train_yolo import cut_tiles

    config = YoloConfig(images=6, tiles_per_image=2, coarse_tiles_per_image=1)
    counts = cut_tiles(config, tmp_path, range(6))
    assert counts["tiles"] == 18
    for index in range(6):
        native = [Image.open(tmp_path / "images" / f"s3000_{index:06d}_t{t}.png").size for t in (0, 1)]
        assert native == [(160, 160)] * 2
        name = f"s3000_{index:06d}_t2"
        assert Image.open(tmp_path / "images" / f"{name}.png").size == (320, 320)
        rows = [[float(v) for v in line.split()] for line in (tmp_path / "labels" / f"{name}.txt").open()]
        assert rows, "a coarse tile is cut around a small or large object"
        # tiny objects (3-12 px at this scale) are left to the native scale: no coarse label is a speck
        assert all(max(w, h) * 320 >= 8 for _, _, _, w, h in rows)
