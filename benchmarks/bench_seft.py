"""SEFT against the usual repairs of a pruned toy: what each recovers of what pruning lost.

For each sparsity, the toy pruned with Wanda, then repaired at the same step budget on the same
training split (a synth split no evaluation uses):
- none: the pruned model as it is;
- dense: dense fine-tuning of the pruned layers, then re-pruned by magnitude to the same zeros;
- lora: LoRA on the same layers, merged (dense again: its sparsity after the merge is shown);
- seft: SEFT (``srice finetune --method seft``), the zeros kept per layer.
Each is evaluated, with the dense toy, on a fresh synth split as the accuracy of the direct answer
and of the SRICE answer (the tools and the toy's calibrations, in-process transformers backend),
with 95% Wilson intervals; the reference answers' NLL per token under the direct prompt (what
accuracy on a few hundred questions cannot resolve); and the repair's wall time. One run, one machine.

    .venv/bin/python benchmarks/bench_seft.py          # 0.5, 0.7 and 0.9, 150 steps, 150 questions
    .venv/bin/python benchmarks/bench_seft.py --sparsities 0.7 --steps 4 --n 8 --train-n 16   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchkit import toy_split

from srice.eval.report import interval

REPAIRS = ("dense", "lora", "seft")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", default="0.5,0.7,0.9")
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps of every repair")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--train-n", type=int, default=400, help="training questions (synth seed 21)")
    parser.add_argument("--n", type=int, default=150, help="evaluation questions (synth seed 8)")
    parser.add_argument("--tools", default="yolo,zoom")
    return parser.parse_args()


def evaluate(folder: Path, items, tools: list[str], work: Path) -> dict:
    """Direct and SRICE accuracy (95% intervals) of the model in ``folder``, with the toy's tools and
    calibrations."""
    from srice.agent import AgentConfig
    from srice.builder.agents import build_agent
    from srice.eval import run as evaluation
    from srice.eval.report import all_records
    from srice.serving.hf import TransformersBackend
    from srice.serving.variants import get_variant

    toy = get_variant("toy")
    backend = TransformersBackend(folder, batch_size=16)
    agent = build_agent(backend, toy, tools, config=AgentConfig(), log=lambda text: None, device="cpu")
    evaluation.run(agent, items, work, batch_size=16)
    records = all_records(work)  # a failed question counts 0 for every pathway, as in summary.json
    direct = [r["pathways"]["direct"]["score"] if "direct" in r["pathways"] else 0.0 for r in records]
    return {
        "nll": answer_nll(folder, items),
        "direct": interval(direct, difference=False),
        "srice": interval([r["score"] or 0.0 for r in records], difference=False),
        "errors": sum(r["error"] is not None for r in records),
    }


def answer_nll(folder: Path, items) -> list[tuple[float, int]]:
    """Each question's summed negative log-likelihood of its reference answer under the direct
    prompt, with its token count: far more sensitive than accuracy on a few hundred questions (the
    toy's direct answers are mostly priors, which pruning barely moves)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.compress.finetune import encoded_items

    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(str(folder))
    out = []
    with torch.inference_mode():
        for example in encoded_items(processor, items)[0]:
            batch = {k: v.unsqueeze(0) if k in ("input_ids", "labels", "mm_token_type_ids") else v
                     for k, v in example.items()}  # fmt: skip
            n = int((batch["labels"] != -100).sum()) - 1  # labels shift by one inside the model
            out.append((float(model(**batch).loss) * n, n))
    return out


def per_token(nll: list[tuple[float, int]]) -> float:
    return sum(total for total, _ in nll) / sum(n for _, n in nll)


def nll_cost_measurable(pruned: list[tuple[float, int]], dense: list[tuple[float, int]]) -> bool:
    """Whether pruning raised the answers' NLL beyond chance: the paired per-question increase's
    95% interval (normal, over the questions) lies above zero."""
    diffs = [p / n - d / n for (p, n), (d, _) in zip(pruned, dense, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = (sum((x - mean) ** 2 for x in diffs) / max(1, len(diffs) - 1)) ** 0.5
    return mean - 1.96 * sd / len(diffs) ** 0.5 > 0


def main() -> None:
    args = parse_args()
    from srice.compress import CompressConfig, compress
    from srice.compress.config import FinetuneConfig
    from srice.compress.finetune import finetune
    from srice.eval.data import load_items
    from srice.serving.variants import get_variant

    work = Path(tempfile.mkdtemp(prefix="bench-seft-"))
    train = toy_split("bench-seft-train-", 21, args.train_n) / "synth" / "questions.jsonl"
    test = load_items(toy_split("bench-seft-test-", 8, args.n) / "synth" / "questions.jsonl")
    tools = [t for t in args.tools.split(",") if t]
    toy = Path(get_variant("toy").model_path())
    sparsities = [float(s) for s in args.sparsities.split(",")]
    print(
        f"# SEFT vs repairs of the Wanda-pruned toy: {args.steps} steps of batch {args.batch_size} on "
        f"{args.train_n} training questions, evaluated on {args.n} fresh ones (direct, and SRICE with "
        f"tools {args.tools or 'none'})"
    )
    rows = [("dense toy", "-", 0.0, 0.0, evaluate(toy, test, tools, work / "eval-toy"))]
    for s in sparsities:
        pruned = work / f"wanda-{s}"
        compress(toy, pruned, CompressConfig("wanda", s, calib=str(train), calib_n=32))
        row = evaluate(pruned, test, tools, work / f"eval-{s}-none")
        rows.append((f"wanda {s:g}", "none", compress_sparsity(pruned), 0.0, row))
        for method in REPAIRS:
            config = FinetuneConfig(method, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
            began = time.perf_counter()
            result = finetune(pruned, train, work / f"{method}-{s}", config, device="cpu")
            seconds = time.perf_counter() - began
            row = evaluate(result.out_dir, test, tools, work / f"eval-{s}-{method}")
            rows.append((f"wanda {s:g}", method, result.manifest["achieved"]["overall"], seconds, row))
    print_table(rows)
    print_targets(rows, sparsities)


def compress_sparsity(folder: Path) -> float:
    import json

    return json.loads((folder / "manifest.json").read_text())["achieved"]["overall"]


def _acc(value: dict | None) -> str:
    if value is None:
        return "-"
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def print_table(rows) -> None:
    head = ("model", "repair", "sparsity", "answer NLL", "direct [95% CI]", "SRICE [95% CI]", "repair s")
    print(f"{head[0]:<12} {head[1]:<6} {head[2]:>8} {head[3]:>10} {head[4]:>24} {head[5]:>24} {head[6]:>9}")
    for model, repair, sparsity, seconds, row in rows:
        print(
            f"{model:<12} {repair:<6} {sparsity:>8.4f} {per_token(row['nll']):>10.4f} "
            f"{_acc(row['direct']):>24} {_acc(row['srice']):>24} {seconds:>9.1f}"
            + (f"  ({row['errors']} failed)" if row["errors"] else "")
        )


def print_targets(rows, sparsities: list[float]) -> None:
    """What each repair recovers of what pruning cost (direct accuracy, answer NLL), and SEFT vs
    dense-then-re-prune. A share is given only where pruning's cost is measurable: the dense toy's
    accuracy above the pruned model's 95% interval; the NLL's paired increase above zero at 95%."""
    dense = rows[0][4]
    for s in sparsities:
        by = {repair: row for model, repair, _, _, row in rows if model == f"wanda {s:g}"}
        pruned = by["none"]
        lost = dense["direct"]["mean"] - pruned["direct"]["mean"]
        measurable = dense["direct"]["mean"] > pruned["direct"]["high"]
        nll_lost = per_token(pruned["nll"]) - per_token(dense["nll"])
        nll_measurable = nll_cost_measurable(pruned["nll"], dense["nll"])
        for repair in REPAIRS:
            gained = by[repair]["direct"]["mean"] - pruned["direct"]["mean"]
            share = f"{gained / lost:.2f}" if measurable else "n/a"
            nll_gained = per_token(pruned["nll"]) - per_token(by[repair]["nll"])
            nll_share = f"{nll_gained / nll_lost:.2f}" if nll_measurable else "n/a"
            print(
                f"sparsity {s:g}: {repair} recovers {share} of the direct accuracy pruning lost "
                f"({lost:+.3f}{'' if measurable else ', within the interval'}), {nll_share} of the "
                f"NLL ({nll_lost:+.4f}{'' if nll_measurable else ', within chance'})"
            )
        diff = by["seft"]["direct"]["mean"] - by["dense"]["direct"]["mean"]
        nll_diff = per_token(by["seft"]["nll"]) - per_token(by["dense"]["nll"])
        versus = f"direct accuracy {diff:+.3f}, NLL {nll_diff:+.4f}"
        print(f"sparsity {s:g}: seft minus dense-then-re-prune: {versus}")


if __name__ == "__main__":
    main()
