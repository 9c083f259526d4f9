"""Does the README's main command answer scenes like its example? 50 fresh tiny-target colour questions.

The main command asks "What colour is the triangle?" of ``demos/examples/tiny_triangle.png``: one
tiny (6-12 px) object among bigger distractors, with the pathways ``yolo,sam,zoom``. One example
proves little either way, so this asks the same kind of question on ``--n`` fresh scenes (synth seed
``--seed``, which no training, calibration or test split uses): one open colour question per scene,
about its tiny target, through ``srice eval`` with the main command's pathways and the embedded toy.

    .venv/bin/python benchmarks/bench_toy_main.py [--n 50] [--seed 8] [--pathways yolo,sam,zoom]

Prints direct vs SRICE vs each pathway (from ``srice eval``'s summary) and SRICE's accuracy with
its 95% interval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="scenes (one question each)")
    parser.add_argument("--seed", type=int, default=8, help="synth seed (training uses 1000+)")
    parser.add_argument("--pathways", default="yolo,sam,zoom", help="the README main command's")
    parser.add_argument("--variant", default="toy")
    parser.add_argument("--out", help="keep the scenes and records here (default: a temp folder)")
    args = parser.parse_args()

    from srice.eval.report import all_records, interval
    from srice.synth import SynthKnobs, generate

    work = Path(args.out or tempfile.mkdtemp(prefix="srice-toy-main-"))
    data = work / "scenes"
    knobs = SynthKnobs(kinds=("colour",), tiny_fraction=1.0, mc_fraction=0.0)
    generate(data, seed=args.seed, n=4 * args.n, knobs=knobs)
    chosen, images = [], set()
    for line in (data / "questions.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["meta"]["target_size"] == "tiny" and r["image"] not in images and len(chosen) < args.n:
            chosen.append(line)
            images.add(r["image"])
    if len(chosen) < args.n:
        sys.exit(f"only {len(chosen)} scenes with a tiny colour question; raise the synth size")
    questions = data / "main.jsonl"
    questions.write_text("\n".join(chosen) + "\n")
    command = [str(Path(sys.executable).with_name("srice")), "eval", "--variant", args.variant]
    command += ["--data", str(questions), "--out", str(work / "eval"), "--pathways", args.pathways]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    print(f"# {args.n} fresh scenes, one tiny-target colour question each (synth seed {args.seed})\n")
    print(run.stdout)
    records = all_records(work / "eval")
    srice = interval(r["score"] for r in records)
    print(
        f"SRICE with {args.pathways}: {srice['mean']:.3f} right (95% CI {srice['low']:.3f} to "
        f"{srice['high']:.3f}, n={srice['n']}); records in {work / 'eval'}"
    )


if __name__ == "__main__":
    main()
