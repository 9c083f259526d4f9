"""What the embedded tools cost per image on this machine: the toy YOLO at each of its predict sizes
(the 2x upscaled size is there for tiny targets), and the tool stage of yolo+sam when sam segments
the yolo tool's boxes (what the agent does now) against sam running a detector of its own (the same
model a second time, as before).

Then the agent's whole tool stage (yolo, sam on yolo's boxes, zoom; calibrators; the views' crops)
over the first ``n`` synthetic questions (several share an image), split by part, before and after
the stage stopped doing needless CPU work (issue 27 item 3), both measured in this run:

- before: each question loaded its own copy of its image (so every tool ran once per question) and
  each view was cut and resized on its own (crop, then bicubic to 448 px: ``_crop_before`` below);
- after: questions on one image share it (each tool runs once per image), a window shown by several
  pathways is cut once, in one resize that reduces first for large shrinks, no larger than the toy
  model's view (``AgentConfig.crop_max_pixels`` = its processor's ``max_pixels``).

YOLO's pre-processing (letterbox), inference and post-processing are ultralytics' own per-image
timings (``Results.speed``), summed; "other" is the rest of the predict calls (PIL to array, setup).

    .venv/bin/python benchmarks/bench_tools_cost.py [--n 16] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

PARTS = (
    ("yolo preprocess (letterbox)", "yolo preprocess"),
    ("yolo inference", "yolo inference"),
    ("yolo postprocess", "yolo postprocess"),
    ("yolo other", "yolo other"),
    ("sam", "sam"),
    ("calibration", "calibration"),
    ("crops (PIL crop and resize)", "crops"),
)


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
    stage_split(work, rows[: args.n])


def _crop_before(image, regions, *, context, out_size, max_pixels=None, min_side=64):
    """The view as it was made before: the window cut, then resized alone (bicubic, no reduction)."""
    from PIL import Image

    from srice.agent.visual import Crop, crop_window

    box, n = crop_window(image.size, regions.boxes, context=context, min_side=min_side)
    crop = image.crop(box)
    scale = out_size / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return Crop(crop.resize(size, Image.Resampling.BICUBIC) if size != crop.size else crop, box, n)


def _view_before(config, image, regions, _crops):
    return _crop_before(image, regions, context=config.crop_context, out_size=config.crop_size)


class _Regions:
    """Replies to the region request with the question's true targets; tools need no other answer."""

    name = "bench"

    def __init__(self, rows):
        self.rows = rows

    def generate(self, requests):
        from srice.serving.types import Completion
        from srice.toy.data import targets_of

        out = []
        for r in requests:
            text = "".join(p for p in r.messages[0].content if isinstance(p, str))
            row = next(row for row in self.rows if row["question"] in text)
            out.append(
                Completion(json.dumps(targets_of(row)) if "JSON list" in text else "A", (), "stop", 0.0)
            )
        return out


def stage_split(work: Path, rows: list[dict]) -> None:
    """The tool stage of the agent over ``rows``, split by part, before and after (module docstring)."""
    import srice.agent.loop as loop
    from srice.agent import Agent, AgentConfig, Item
    from srice.builder.agents import view_pixels
    from srice.builder.toolbox import build_tools, load_calibrators
    from srice.builtin.toy_bundle import TOY_DIR, has_toy_yolo
    from srice.images import load_image

    names = ["yolo", "sam", "zoom"]
    tools = build_tools(names)
    calibrators = load_calibrators(TOY_DIR / "calib", names) if has_toy_yolo() else {}
    after = AgentConfig(crop_max_pixels=view_pixels(TOY_DIR / "mllm") if has_toy_yolo() else None)
    agent = Agent(_Regions(rows), tools, calibrators, after)
    spent: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def timed(key, fn):
        def run(*a, **k):
            began = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - began
                counts[key] += 1

        return run

    yolo = next(t for t in tools if t.name == "yolo")
    sam = next(t for t in tools if t.name == "sam")
    predict_at, segment, crop = yolo._predict_at, sam.segment, loop.crop_regions

    def predict(size, images, *a, **k):
        began = time.perf_counter()
        results = predict_at(size, images, *a, **k)
        spent["yolo images"] += len(images)
        ms = {
            part: sum(r.speed[part] for r in results) for part in ("preprocess", "inference", "postprocess")
        }
        for part, value in ms.items():
            spent[f"yolo {part}"] += value / 1e3
        spent["yolo other"] += time.perf_counter() - began - sum(ms.values()) / 1e3
        return results

    yolo._predict_at, sam.segment = predict, timed("sam", segment)
    for c in calibrators.values():
        c.apply = timed("calibration", c.apply)
    images = {r["image"]: str(work / "synth" / r["image"]) for r in rows}
    runs = {}
    try:
        loop.crop_regions = timed("crops", crop)
        agent.answer_batch([Item(next(iter(images.values())), rows[0]["question"])])  # weights, warm-up
        for name in ("before", "after"):
            if name == "before":  # a copy of the image per question: nothing to share
                agent.config = replace(after, crop_max_pixels=None)
                items = [Item(load_image(images[r["image"]]), r["question"], r.get("options")) for r in rows]
                agent._crop = timed("crops", partial(_view_before, agent.config))  # no window shared
            else:
                agent.config = after
                items = [Item(images[r["image"]], r["question"], r.get("options")) for r in rows]
                del agent._crop
            batch = agent.start(items)
            spent.clear()
            counts.clear()
            began = time.perf_counter()
            agent.use_tools(batch)
            total = time.perf_counter() - began
            views = sum(len(w.views) for w in batch.live)
            sizes = {v.size for w in batch.live for v in w.views.values()}
            largest = max(sizes, key=lambda s: s[0] * s[1])
            runs[name] = (total, dict(spent), counts["crops"], views, largest)
    finally:
        yolo._predict_at, sam.segment, loop.crop_regions = predict_at, segment, crop

    _print_split(len(rows), len(images), runs)


def _print_split(questions: int, images: int, runs: dict) -> None:
    """The before -> after lines of ``stage_split``'s two runs."""
    print(f"\n# tool stage (yolo, sam on yolo's boxes, zoom) over {questions} questions on {images} "
          "images, seconds: before -> after")  # fmt: skip
    (b_total, b, b_crops, b_views, b_big), (a_total, a, a_crops, a_views, a_big) = (
        runs["before"],
        runs["after"],
    )
    print(f"yolo images predicted (all sizes): {b['yolo images']:.0f} -> {a['yolo images']:.0f}")
    for label, key in PARTS:
        print(f"{label}: {b.get(key, 0.0):.3f} -> {a.get(key, 0.0):.3f}")
    print(f"crops made: {b_crops} -> {a_crops} for {b_views} -> {a_views} views; largest crop "
          f"{b_big[0]}x{b_big[1]} -> {a_big[0]}x{a_big[1]} px")  # fmt: skip
    print(f"tool stage: {b_total:.3f} -> {a_total:.3f} s ({1 - a_total / b_total:.0%} less)")


if __name__ == "__main__":
    main()
