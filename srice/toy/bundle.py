"""``srice train-toy``: trains and calibrates the whole embedded toy bundle, and writes its manifest.

One command makes everything ``srice ask`` uses by default (``srice.toy``): the toy MLLM, the shape
detector, the detector's conformal calibrator and the uncertainty calibration. Every stage draws
synthetic data from its own seed range, so none of them sees another's data, and none sees an
evaluation split (``srice synth`` seeds below 1000).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from srice.toy.train_mllm import TOY_KINDS, TrainConfig
from srice.toy.train_yolo import YoloConfig

CALIB_SEED_OFFSET = 5000  # calibration questions: synth seed 5000 + model seed
ALPHA = 0.1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version() -> str:
    """The git commit the bundle was built from (plus '-dirty' for uncommitted changes), if known."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def calibrate_bundle(
    out: Path,
    seed: int,
    *,
    questions: int = 300,
    kinds: tuple[str, ...] = TOY_KINDS,
    log: Callable[[str], None] = print,
) -> dict:
    """Fit the detector's calibrator (CRC recall threshold, then split-conformal box margins) and the
    uncertainty calibration on a synthetic split of their own."""
    from srice.builtin.toy_bundle import toy_yolo_options
    from srice.calibration.coco import load_coco
    from srice.calibration.tool_fit import calibrate, make_calibrator, run_tool
    from srice.eval.data import load_items
    from srice.eval.uncertainty_fit import calibrate_uncertainty
    from srice.serving.hf import TransformersBackend
    from srice.synth import SynthKnobs, generate
    from srice.tools import get_tool

    calib = out / "calib"
    calib.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="srice-calib-") as tmp:
        data = Path(tmp) / "synth"
        generate(data, seed=seed + CALIB_SEED_OFFSET, n=questions, knobs=SynthKnobs(kinds=kinds))
        began = time.perf_counter()
        yolo = get_tool("yolo", **toy_yolo_options(out))
        records = load_coco(data / "annotations.json", data / "images")
        examples, failed = run_tool(yolo, records, targets="image")
        run = calibrate(examples, make_calibrator("sequential", ALPHA), holdout=0.3, seed=seed)
        run.calibrator.save(calib / "yolo.json")
        detector = {
            "images": len(examples),
            "failed": len(failed),
            "holdout": run.holdout,
            "seconds": round(time.perf_counter() - began, 1),
        }
        log(f"detector calibration: {json.dumps(run.holdout)}")
        began = time.perf_counter()
        backend = TransformersBackend(out / "mllm", batch_size=16)
        us = calibrate_uncertainty(backend, load_items(data / "questions.jsonl"), alpha=ALPHA, seed=seed)
        us.save(calib / "uncertainty.json")
        uncertainty = {
            "questions": questions,
            "alpha": ALPHA,
            "seconds": round(time.perf_counter() - began, 1),
        } | {k: v for k, v in asdict(us).items() if isinstance(v, (int, float, str, type(None)))}
        log(f"uncertainty calibration: {json.dumps(uncertainty)}")
    return {"detector": detector, "uncertainty": uncertainty, "data_seed": seed + CALIB_SEED_OFFSET}


def _stage(report: Path, run: Callable[[], dict], log) -> dict:
    """A training stage's report: read back from an earlier run's staging folder, or run it now."""
    if report.exists():
        log(f"resuming: keeping the stage {report} records")
        return json.loads(report.read_text())
    result = run()
    report.write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_bundle(
    out: str | Path,
    *,
    seed: int = 0,
    mllm: TrainConfig | None = None,
    yolo: YoloConfig | None = None,
    calib_questions: int = 300,
    resume: str | Path | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict:
    """Train the toy MLLM and the detector (on ``device``: ``cpu``, ``auto``, ``cuda:N``), calibrate
    both, and write ``manifest.json``. The bundle
    is built in a staging folder and moved into ``out`` only when complete; a run that failed or
    was stopped leaves its staging folder, and ``resume`` (that folder) keeps the stages it finished
    (the trained MLLM, the trained detector) instead of training them again."""
    import srice.toy.train_mllm as train_toy
    from srice.devices import resolve_device
    from srice.toy import train_yolo

    device = resolve_device(device)  # a device this machine lacks fails before any training
    mllm = replace(mllm or TrainConfig(), seed=seed, device=device)
    yolo = replace(yolo or YoloConfig(), seed=seed, device=device)
    out = Path(out)
    began = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(resume) if resume else Path(tempfile.mkdtemp(prefix=".toy-", dir=out.parent))
    done = False
    try:
        mllm_report = _stage(
            staging / "mllm" / "training.json", lambda: train_toy.train(staging / "mllm", mllm, log=log), log
        )
        log(f"MLLM trained in {mllm_report['total_seconds']:.0f} s: {json.dumps(mllm_report['held_out'])}")
        yolo_report = _stage(
            staging / "yolo-training.json", lambda: train_yolo.train(staging / "yolo.pt", yolo, log=log), log
        )
        log(f"detector trained in {yolo_report['total_seconds']:.0f} s")
        calibration = calibrate_bundle(staging, seed, questions=calib_questions, kinds=mllm.kinds, log=log)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "seed": seed,
            "code_version": code_version(),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "total_seconds": round(time.perf_counter() - began, 1),
            "data": {
                "mllm_train_synth_seed": seed + train_toy.TRAIN_SEED_OFFSET,
                "detector_train_synth_seed": seed + train_yolo.TRAIN_SEED_OFFSET,
                "calibration_synth_seed": calibration["data_seed"],
                "kinds": list(mllm.kinds),
            },
            "mllm": mllm_report,
            "detector": yolo_report,
            "calibration": calibration,
            "files": {
                str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files
            },
        }
        manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        done = True
    finally:
        if not done:  # minutes of training are not thrown away with a late failure
            log(f"train-toy did not finish; its stages so far are kept: continue with --resume {staging}")
    return manifest
