"""What the embedded tools cost per image on this machine: the toy YOLO at each of its predict sizes
(the 2x upscaled size is there for tiny targets), and the tool stage of yolo+sam when sam segments
the yolo tool's boxes (what the agent does now) against sam running a detector of its own (the same
model a second time, as before).

    .venv/bin/python benchmarks/bench_tools_cost.py [--n 16] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="images")
    parser.add_argument("--seed", type=int, default=7, help="synth split seed")
    args = parser.parse_args()

    from srice.builder.toolbox import build_tools, embedded_options
    from srice.images import load_image
    from srice.synth import generate
    from srice.tools import get_tool

    work = Path(tempfile.mkdtemp(prefix="srice-bench-tools-"))
    generate(work / "synth", seed=args.seed, n=6 * args.n)  # several questions share an image
    rows = [json.loads(line) for line in (work / "synth" / "questions.jsonl").read_text().splitlines()]
    images = list({r["image"]: load_image(work / "synth" / r["image"]) for r in rows}.values())[: args.n]
    targets = [[] for _ in images]
    n = len(images)

    def timed(fn) -> float:
        fn(images[:1], targets[:1])  # load the weights first
        began = time.perf_counter()
        fn(images, targets)
        return (time.perf_counter() - began) / n

    options = embedded_options("yolo")
    widths = [i.width for i in images]
    print(f"# embedded tools, {n} synth images ({min(widths)}-{max(widths)} px wide)\n")
    for size in options["imgsz"]:
        yolo = get_tool("yolo", **(options | {"imgsz": size}))
        print(f"yolo at {size} px: {timed(yolo.batch):.2f} s per image")
    sam, yolo = build_tools(["sam", "yolo"])  # sam takes the yolo tool's boxes
    [own] = build_tools(["sam"])  # sam with a detector of its own
    shared = timed(lambda im, t: sam.segment(im, yolo.batch(im, t)))
    separate = timed(lambda im, t: (yolo.batch(im, t), own.batch(im, t)))
    print(f"yolo + sam, sam on yolo's boxes: {shared:.2f} s per image")
    print(f"yolo + sam, sam with its own detector: {separate:.2f} s per image")
    print(f"saved by sharing: {1 - shared / separate:.0%}")


if __name__ == "__main__":
    main()
