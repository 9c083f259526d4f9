"""The zoom tree against the other pathways: accuracy against model calls per question.

On a fresh synth split with half the targets tiny (the toy bundle's kinds), the toy answers through
each method, in-process (transformers backend), one evaluation per method:
- direct: the full image alone;
- zoom grid: direct and the four quadrants, the least uncertain kept;
- zoom tree at depths 1, 2 and 3: direct and the tree's final view, the least uncertain kept;
- detector: direct and the yolo views;
- SRICE without the tree (grid and detector) and with it (grid, detector, tree at depth 2).
Each row gives the accuracy of the selected answers with its 95% Wilson interval, on all questions
and on those with a tiny target, the tree pathway's own accuracy where there is one, and the model
requests per question (direct, region proposal, scoring and answers, as the agent counts them).

    .venv/bin/python benchmarks/bench_zoomtree.py                  # 160 questions (synth seed 13)
    .venv/bin/python benchmarks/bench_zoomtree.py --n 4 --depths 1 --methods direct,tree   # quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from srice.eval.report import interval

METHODS = ("direct", "grid", "tree", "detector", "srice", "srice+tree")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160, help="questions (half with a tiny target)")
    parser.add_argument("--seed", type=int, default=13, help="synth split seed")
    parser.add_argument("--depths", default="1,2,3", help="zoom tree depths to run")
    parser.add_argument("--score", default="yesno", help="zoom tree scoring: yesno or answer")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args()


def runs(methods: list[str], depths: list[int], score: str) -> list[tuple[str, list]]:
    """(label, tools) of every evaluation: tool names, or a built zoom tree."""
    from srice.tools.zoomtree import ZoomTreeTool

    def tree(depth: int) -> ZoomTreeTool:
        return ZoomTreeTool(depth=depth, score=score)

    out = []
    for method in methods:
        if method == "direct":
            out.append(("direct", []))
        elif method == "grid":
            out.append(("zoom grid", ["zoom"]))
        elif method == "tree":
            out += [(f"zoom tree d{d}", [tree(d)]) for d in depths]
        elif method == "detector":
            out.append(("detector (yolo)", ["yolo"]))
        elif method == "srice":
            out.append(("SRICE grid+yolo", ["zoom", "yolo"]))
        elif method == "srice+tree":
            out.append(("SRICE +tree d2", ["zoom", "yolo", tree(2)]))
        else:
            raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return out


def evaluate(backend, tools: list, items, work: Path) -> dict:
    from srice.builder.agents import build_agent
    from srice.eval import run as evaluation
    from srice.eval.report import all_records
    from srice.serving.variants import get_variant

    agent = build_agent(backend, get_variant("toy"), tools, log=lambda text: None, device="cpu")
    evaluation.run(agent, items, work, batch_size=16)
    records = all_records(work)
    tiny = [r for r in records if r["meta"].get("target_size") == "tiny"]

    def acc(rows, pathway: str | None = None):
        if pathway is None:
            return interval([r["score"] or 0.0 for r in rows], difference=False)
        scores = [(r["pathways"].get(pathway) or {}).get("score") or 0.0 for r in rows]
        return interval(scores, difference=False)

    tree = "zoomtree" if any("zoomtree" in r["pathways"] for r in records) else None
    return {
        "all": acc(records),
        "tiny": acc(tiny),
        "tree_tiny": acc(tiny, tree) if tree else None,
        "calls": sum(r["mllm_calls"] for r in records) / len(records),
        "errors": sum(r["error"] is not None for r in records),
        "tree_failed": sum(bool((r["pathways"].get("zoomtree") or {}).get("error")) for r in records),
        "tiny_n": len(tiny),
        "picked_tree": sum(r["pathway"] == "zoomtree" for r in records),
    }


def _acc(value: dict | None) -> str:
    return "-" if value is None else f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def main() -> None:
    args = parse_args()
    from srice.builtin.toy_bundle import bundle_kinds
    from srice.eval.data import load_items
    from srice.serving.hf import TransformersBackend
    from srice.serving.variants import get_variant
    from srice.synth import SynthKnobs, generate

    work = Path(tempfile.mkdtemp(prefix="bench-zoomtree-"))
    knobs = SynthKnobs(kinds=bundle_kinds(), tiny_fraction=0.5)
    generate(work / "synth", seed=args.seed, n=args.n, knobs=knobs)
    items = load_items(work / "synth" / "questions.jsonl")
    backend = TransformersBackend(Path(get_variant("toy").model_path()), batch_size=args.batch_size)
    depths = [int(d) for d in args.depths.split(",") if d]
    plan = runs([m for m in args.methods.split(",") if m], depths, args.score)
    print(f"# zoom tree vs the other pathways: {len(items)} questions (synth seed {args.seed}, half with a "
          f"tiny target), the toy in-process, tree scored by {args.score}")  # fmt: skip
    rows = []
    for k, (label, tools) in enumerate(plan):
        rows.append((label, evaluate(backend, tools, items, work / f"eval-{k}")))
    head = ("method", "calls/q", "all [95% CI]", "tiny [95% CI]", "tree alone, tiny")
    print(f"{head[0]:<17} {head[1]:>7} {head[2]:>24} {head[3]:>24} {head[4]:>24}")
    for label, row in rows:
        failed = [f"{row[k]} {k.replace('_', ' ')}" for k in ("errors", "tree_failed") if row[k]]
        print(f"{label:<17} {row['calls']:>7.2f} {_acc(row['all']):>24} {_acc(row['tiny']):>24} "
              f"{_acc(row['tree_tiny']):>24}" + (f"  ({', '.join(failed)})" if failed else ""))  # fmt: skip
    by = dict(rows)
    verdicts(by, depths)
    print("# " + json.dumps({label: row["picked_tree"] for label, row in rows if row["picked_tree"]}))


def verdicts(by: dict, depths: list[int]) -> None:
    """The issue's two targets, each said plainly with the figures it rests on."""
    grid, tree = by.get("zoom grid"), by.get("zoom tree d2")
    if grid and tree:
        diff = tree["tiny"]["mean"] - grid["tiny"]["mean"]
        apart = tree["tiny"]["low"] > grid["tiny"]["high"]
        where = "beyond" if apart else "within"
        print(f"tiny targets: tree d2 minus zoom grid {diff:+.3f} ({where} the intervals)")
    with_tree, without = by.get("SRICE +tree d2"), by.get("SRICE grid+yolo")
    if with_tree and without:
        diff = with_tree["all"]["mean"] - without["all"]["mean"]
        print(f"all questions: SRICE with the tree minus without {diff:+.3f}, at "
              f"{with_tree['calls'] - without['calls']:+.2f} calls per question")  # fmt: skip


if __name__ == "__main__":
    main()
