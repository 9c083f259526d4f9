"""Does SRICE beat the plain model? The trained toy bundle measured on a fresh synthetic test split.

Runs, with the real stack (``srice synth``, ``srice eval`` through ``vllm serve``, the calibrated
embedded detector):

1. a test split from a seed no training or calibration stage uses (default 7; those use 1000+);
2. ``srice eval --pathways yolo``: accuracy of direct vs SRICE vs each pathway vs the oracle-best
   pathway, per question kind and target size, with paired 95% intervals, US-set coverage and the
   AUROC of US for telling wrong answers from right ones, per pathway;
3. per kind: the majority-answer baseline (the kind's most common answer on the split) against the
   best fixed pathway (a tool's view where the tool gave one, direct otherwise), with its interval:
   is each kind learned, or answered from a prior?
4. the calibrated detector's recall coverage on the same split (target: >= 1 - alpha), and how often
   its top box for the question's shape holds the question's target (IoU >= 0.5), per target size.

    .venv/bin/python benchmarks/bench_toy_accuracy.py [--n 400] [--seed 7] [--bundle DIR] [--out DIR]
        [--kinds K,...] [--pathways yolo]

The split asks the kinds the bundle was trained on (its manifest's), unless ``--kinds`` says others.

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

from srice.builtin.toy_bundle import TOY_DIR, bundle_kinds, toy_yolo_options


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


def majority_vs_best(records: list[dict]) -> dict:
    """Per kind: the majority-answer baseline and each fixed pathway's accuracy (its view where its
    tool gave one, direct otherwise, so every pathway is scored on every question), best first."""
    from collections import Counter, defaultdict

    from srice.eval.report import interval

    by_kind = defaultdict(list)
    for r in records:
        if r["score"] is not None and r["error"] is None:
            by_kind[r["kind"]].append(r)
    out = {}
    for kind, rs in sorted(by_kind.items()):
        answers = Counter(r["answers"][0] for r in rs)
        answer, count = answers.most_common(1)[0]
        names = sorted({n for r in rs for n in r["pathways"]})
        scores = {
            n: interval((r["pathways"].get(n) or r["pathways"]["direct"])["score"] for r in rs) for n in names
        }
        best = max(names, key=lambda n: scores[n]["mean"])
        out[kind] = {
            "n": len(rs),
            "majority_answer": answer,
            "majority": count / len(rs),
            "best_pathway": best,
            "best": scores[best],
            "best_minus_majority": scores[best]["mean"] - count / len(rs),
            "srice": interval(r["score"] for r in rs),
            "pathways": {n: scores[n]["mean"] for n in names},
        }
    return out


def kinds_table(table: dict) -> str:
    lines = [
        "| kind | n | majority (answer) | best pathway | best (95% CI) | best - majority | srice |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, t in table.items():
        b = t["best"]
        lines.append(
            f"| {kind} | {t['n']} | {t['majority']:.3f} ({t['majority_answer']}) | {t['best_pathway']} | "
            f"{b['mean']:.3f} ({b['low']:.3f}-{b['high']:.3f}) | {t['best_minus_majority']:+.3f} | "
            f"{t['srice']['mean']:.3f} |"
        )
    return "\n".join(lines)


def detector_top_box(bundle: Path, data: Path) -> dict:
    """How often the detector's highest-scoring box of the question's shape(s) overlaps a target
    (IoU >= 0.5), per target size, over the split's questions that name a shape."""
    from collections import defaultdict

    import numpy as np

    from srice.calibration.matching import box_iou
    from srice.images import load_image
    from srice.tools import get_tool
    from srice.toy.data import targets_of

    tool = get_tool("yolo", **toy_yolo_options(bundle))
    tally = defaultdict(lambda: [0, 0])
    for line in (data / "questions.jsonl").read_text().splitlines():
        record = json.loads(line)
        shapes = targets_of(record)
        if not shapes:
            continue
        regions = tool(load_image(data / record["image"]), shapes)
        hit = False
        if len(regions):
            top = regions.boxes[int(np.argmax(regions.scores))][None]
            hit = bool((box_iou(top, np.asarray(record["meta"]["target_boxes"], dtype=float)) >= 0.5).any())
        tally[record["meta"]["target_size"]][0] += hit
        tally[record["meta"]["target_size"]][1] += 1
    return {size: {"top_box_holds_target": k / n, "n": n} for size, (k, n) in sorted(tally.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="test questions")
    parser.add_argument("--seed", type=int, default=7, help="test split seed (training uses 1000+)")
    parser.add_argument(
        "--bundle", default=str(TOY_DIR), help="toy bundle folder (default: the packaged one)"
    )
    parser.add_argument("--out", help="keep the split and the eval records here (default: a temp folder)")
    parser.add_argument("--pathways", default="yolo")
    parser.add_argument("--kinds", help="synth question kinds (default: the bundle's, from its manifest)")
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
        kinds = args.kinds or ",".join(bundle_kinds(bundle))
        srice("synth", "--seed", str(args.seed), "--n", str(args.n), "--kinds", kinds, "--out", str(data))
    tools = ["--pathways", args.pathways, "--top-views", str(args.top_views)]
    questions = str(data / "questions.jsonl")
    table = srice("eval", "--variant", variant, "--data", questions, "--out", str(results), *tools, env=env)
    print(f"# toy bundle {bundle} on synth seed {args.seed} (n={args.n})\n")
    print(table)
    from srice.eval.report import all_records

    kinds = majority_vs_best(all_records(results))
    print("Per kind, majority-answer baseline vs the best fixed pathway:\n")
    print(kinds_table(kinds) + "\n")
    coverage = detector_coverage(bundle, data)
    print(f"detector on the test split: {json.dumps(coverage)}")
    top = detector_top_box(bundle, data)
    print(f"detector's top box holds the target: {json.dumps(top)}")
    report = {"kinds": kinds, "detector_coverage": coverage, "detector_top_box": top}
    (work / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"records and summary: {results}")


if __name__ == "__main__":
    main()
