"""Does SRICE beat the plain model? The trained toy bundle measured on a fresh synthetic test split.

Runs, with the real stack (``srice synth``, ``srice eval`` through ``vllm serve``, the calibrated
embedded detector):

1. a test split from a seed no training or calibration stage uses (default 7; those use 1000+);
2. ``srice eval --pathways yolo``: accuracy of direct vs SRICE vs each pathway vs the oracle-best
   pathway, per question kind and target size, with paired 95% intervals, US-set coverage and the
   AUROC of US for telling wrong answers from right ones, per pathway;
3. the calibrated detector's recall coverage on the same split (target: >= 1 - alpha).

    .venv/bin/python benchmarks/bench_toy_accuracy.py [--n 400] [--seed 7] [--bundle DIR] [--out DIR]

``--bundle`` measures another bundle (e.g. one ``srice train-toy --seed 1 --out DIR`` built); the
bundle's model is registered as a temporary variant for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from srice.toy import TOY_DIR, toy_yolo_options


def srice(*args: str, env=None) -> str:
    command = [str(Path(sys.executable).with_name("srice")), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def detector_coverage(bundle: Path, data: Path) -> dict:
    from srice.calibration import load_calibrator
    from srice.calibration.coco import load_coco
    from srice.calibration.tool_fit import run_tool
    from srice.tools import get_tool

    tool = get_tool("yolo", **toy_yolo_options(bundle))
    examples, failed = run_tool(tool, load_coco(data / "annotations.json", data / "images"), targets="image")
    calibrator = load_calibrator(bundle / "calib" / "yolo.json")
    return {"images": len(examples), "failed": len(failed), **calibrator.evaluate(examples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="test questions")
    parser.add_argument("--seed", type=int, default=7, help="test split seed (training uses 1000+)")
    parser.add_argument(
        "--bundle", default=str(TOY_DIR), help="toy bundle folder (default: the packaged one)"
    )
    parser.add_argument("--out", help="keep the split and the eval records here (default: a temp folder)")
    parser.add_argument("--pathways", default="yolo")
    parser.add_argument("--top-views", type=int, default=1, help="srice eval --top-views K")
    args = parser.parse_args()

    bundle = Path(args.bundle).resolve()
    work = Path(args.out or tempfile.mkdtemp(prefix="srice-toy-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    data, results = work / "test", work / "eval"
    env = dict(os.environ)
    # the bundle's model as a temporary variant, served like the tiny one, with the bundle's calibration
    base = json.loads((Path(__file__).parents[1] / "serving" / "variants.json").read_text())["tiny"]
    entry = base | {
        "model": str(bundle / "mllm"),
        "served_name": "srice-toy-eval",
        "calib": str(bundle / "calib"),
    }
    (work / "variants.json").write_text(json.dumps({"toy-eval": entry}))
    # SRICE_TOY_DIR makes the embedded yolo (and its predict size) the bundle's detector
    env |= {"SRICE_VARIANTS": str(work / "variants.json"), "SRICE_TOY_DIR": str(bundle)}
    variant = "toy-eval"
    if not (data / "questions.jsonl").exists():
        srice("synth", "--seed", str(args.seed), "--n", str(args.n), "--kinds", "colour,exists,colour_mc",
              "--out", str(data))  # fmt: skip
    tools = ["--pathways", args.pathways, "--top-views", str(args.top_views)]
    questions = str(data / "questions.jsonl")
    table = srice("eval", "--variant", variant, "--data", questions, "--out", str(results), *tools, env=env)
    print(f"# toy bundle {bundle} on synth seed {args.seed} (n={args.n})\n")
    print(table)
    coverage = detector_coverage(bundle, data)
    print(f"detector on the test split: {json.dumps(coverage)}")
    (work / "detector_coverage.json").write_text(json.dumps(coverage, indent=2))
    print(f"records and summary: {results}")


if __name__ == "__main__":
    main()
