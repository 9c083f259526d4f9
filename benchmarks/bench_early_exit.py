"""Early exit: model calls saved against accuracy lost, on a fresh split, in one run.

1. a calibration split (synth seed 11 by default) fits the uncertainty calibration at ``--alpha``
   with ``srice calibrate --uncertainty`` (its early-exit threshold t: the direct answer is kept,
   without region proposal or tools, when its US <= t);
2. a test split (synth seed 7) runs ``srice eval`` twice through one ``vllm serve``: without and
   with ``--early-exit``, same pathways and calibration otherwise;
3. prints model calls per question for both, the ratio, SRICE accuracy for both and the paired
   difference with its 95% interval, and whether the goal (>= 30% fewer calls for <= 0.5 points)
   is met. A calibration with no threshold is reported as such (early exit then does nothing).

    .venv/bin/python benchmarks/bench_early_exit.py [--n 200] [--alpha 0.1] [--calib-n 300] [--out DIR]
        [--server URL]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit import add_server

from srice.eval.report import all_records, interval


def srice(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("srice")), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="toy")
    parser.add_argument("--n", type=int, default=200, help="test questions (synth --seed 7)")
    parser.add_argument("--calib-n", type=int, default=300, help="calibration questions (synth --seed 11)")
    parser.add_argument("--alpha", type=float, default=0.1, help="early-exit risk level")
    parser.add_argument("--pathways", default="yolo")
    parser.add_argument("--kinds", help="synth question kinds (default: those the toy bundle learned)")
    parser.add_argument("--out", help="keep the splits and runs here (default: a temp folder)")
    add_server(parser)
    args = parser.parse_args()
    if not args.kinds:
        from srice.builtin.toy_bundle import bundle_kinds

        args.kinds = ",".join(bundle_kinds())

    from contextlib import ExitStack

    from srice.calibration.uncertainty_calibration import UncertaintyCalibration
    from srice.serving.backends import start_server
    from srice.serving.config import ServingConfig
    from srice.serving.variants import get_variant

    work = Path(args.out or tempfile.mkdtemp(prefix="srice-early-exit-"))
    work.mkdir(parents=True, exist_ok=True)
    variant = get_variant(args.variant)
    for seed, n, name in ((11, args.calib_n, "calib-data"), (7, args.n, "test")):
        if not (work / name / "questions.jsonl").exists():
            srice(
                "synth", "--seed", str(seed), "--n", str(n), "--kinds", args.kinds, "--out", str(work / name)
            )
    calib = work / "calib"
    calib.mkdir(exist_ok=True)
    source = variant.calibration_dir()
    for tool_file in Path(source).glob("*.json") if source else ():  # the tools' calibrators carry over
        if tool_file.name != "uncertainty.json":
            (calib / tool_file.name).write_bytes(tool_file.read_bytes())
    with ExitStack() as stack:
        url = args.server or stack.enter_context(start_server(variant, ServingConfig())).url
        common = ["--variant", args.variant, "--server", url]
        questions = str(work / "calib-data" / "questions.jsonl")
        fitted = srice("calibrate", "--uncertainty", "--data", questions, "--alpha", str(args.alpha),
                       "-o", str(calib / "uncertainty.json"), *common)  # fmt: skip
        print(fitted.stdout.strip().splitlines()[-1])
        us = UncertaintyCalibration.load(calib / "uncertainty.json")
        runs = {}
        for name, extra in (("plain", []), ("early-exit", ["--early-exit"])):
            if name == "early-exit" and us.early_exit is None:
                break
            out = work / name
            srice("eval", "--data", str(work / "test" / "questions.jsonl"), "--out", str(out), "--pathways",
                  args.pathways, "--calib", str(calib), *common, *extra, check=False)  # fmt: skip
            runs[name] = {r["id"]: r for r in all_records(out)}
    plain = runs["plain"]
    calls = sum(r["mllm_calls"] for r in plain.values()) / len(plain)
    accuracy = sum(r["score"] for r in plain.values()) / len(plain)
    print(f"# {args.variant} on synth seed 7 (n={len(plain)}), pathways {args.pathways}, alpha {args.alpha}")
    print(f"without early exit: {calls:.2f} model calls per question, SRICE accuracy {accuracy:.3f}")
    if "early-exit" not in runs:
        print("early exit: the calibration has no threshold at this alpha, so nothing exits (goal not met)")
        return
    fast = runs["early-exit"]
    exit_calls = sum(r["mllm_calls"] for r in fast.values()) / len(fast)
    exited = sum(r["early_exit"] for r in fast.values()) / len(fast)
    fast_accuracy = sum(r["score"] for r in fast.values()) / len(fast)
    lost = interval((plain[i]["score"] - fast[i]["score"] for i in plain if i in fast), difference=True)
    saved = 1 - exit_calls / calls
    print(f"with early exit (US <= {us.early_exit:g}): {exit_calls:.2f} model calls per question "
          f"({exited:.0%} exited), SRICE accuracy {fast_accuracy:.3f}")  # fmt: skip
    print(f"calls ratio (early exit / plain): {exit_calls / calls:.3f}; calls saved {saved:.1%}")
    print(
        f"accuracy lost: {lost['mean']:+.3f} (95% CI {lost['low']:+.3f} to {lost['high']:+.3f}, "
        f"n={lost['n']})"
    )
    met = saved >= 0.30 and lost["mean"] <= 0.005
    print(f"goal (>= 30% fewer calls for <= 0.5 points): {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
