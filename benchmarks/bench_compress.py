"""Compression benchmark: pruning time, accuracy and serving latency of compressed variants vs dense.

Ratios come from one run on one machine (these machines are noisy; compare within a run only):
- pruning time: our Wanda and SparseGPT vs llm-compressor's on the same model, data and sparsity
  (like with like: SparseGPT is sequential on both sides, each block calibrated on the pruned blocks'
  outputs; Wanda is one pass on both sides);
- W4A16 calibrated by llm-compressor's basic pipeline (srice's choice before) and by its default
  sequential one: NLL of the reference answer's first token, KL from dense, argmax agreement;
- accuracy on a synthetic test set (``srice synth``) for dense, uniform Wanda, OWL-Wanda and SparseGPT
  at each sparsity, depth-pruned variants and W4A16: the direct pathway (``srice.eval.run``), its
  colour questions, colour read from a crop of the true target box (what the toy model can do; its
  direct answers are mostly priors), and the share of direct answers identical to dense's;
- serving latency: median single-request latency through ``vllm serve``, as a ratio to dense.

    .venv/bin/srice synth --seed 7 --n 300 --kinds colour,exists,colour_mc --out /tmp/synth-test
    .venv/bin/python benchmarks/bench_compress.py --variant toy --data /tmp/synth-test
    .venv/bin/python benchmarks/bench_compress.py --variant tiny --data DIR --smoke --no-serve  # quick check

Calibration uses ``--calib`` (another synth folder; default: the test folder's first questions,
which then overlap the test set: pass a separate folder for honest numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    name: str
    method: str
    setting: str
    folder: Path
    manifest: dict | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    colour: float | None = None  # direct, colour questions only
    crop: float | None = None  # colour questions, crop of the true target box
    answers: dict | None = None  # direct answer by question id, for agreement with dense
    agree: float | None = None
    note: str = ""


def _questions(folder: str) -> str:
    path = Path(folder)
    return str(path / "questions.jsonl") if path.is_dir() else str(path)


def plan(sparsities: list[float], depths: list[float], smoke: bool) -> list[tuple[str, str, dict]]:
    """(name, method, compress kwargs) for every variant, dense first."""
    rows = [("dense", "dense", {})]
    for s in sparsities:
        pct = round(s * 100)
        rows += [
            (f"wanda-{pct}", "wanda", {"sparsity": s}),
            (f"owl-wanda-{pct}", "wanda", {"sparsity": s, "owl": True}),
            (f"sparsegpt-{pct}", "sparsegpt", {"sparsity": s}),
        ]
        if not smoke:
            rows.append((f"owl-sparsegpt-{pct}", "sparsegpt", {"sparsity": s, "owl": True}))
    rows += [(f"depth-{round(d * 100)}", "depth", {"sparsity": d}) for d in depths]
    rows.append(("w4a16", "w4a16", {}))
    return rows


def pruning_time(model: str, calib: str, calib_n: int, sparsity: float, work: Path) -> dict[str, float]:
    """Seconds of each method itself (its manifest's), ours against llm-compressor's, same data."""
    from srice.compress import CompressConfig, compress

    out = {}
    for method in ("wanda", "llmc-wanda", "sparsegpt", "llmc-sparsegpt"):
        config = CompressConfig(method, sparsity, calib=calib, calib_n=calib_n)
        out[method] = compress(model, work / f"time-{method}", config, overwrite=True).seconds
    return out


def quant_pipelines(base_path: Path, calib: str, items, calib_n: int, work: Path) -> dict:
    """W4A16 calibrated by llm-compressor's basic pipeline (no error carried forward) and by its
    default sequential one, each reloaded dequantized (the weights vLLM serves): NLL of the reference
    answer's first token on the test questions, KL(dense || W4A16) there, and the share of argmax
    tokens equal to dense's."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, CompressedTensorsConfig

    from srice.compress import capture, quant
    from srice.eval.data import load_items

    processor = AutoProcessor.from_pretrained(str(base_path))
    batches = capture.calibration_inputs(processor, load_items(calib, limit=calib_n))
    prompts = capture.calibration_inputs(processor, items, with_answers=False)
    full = capture.calibration_inputs(processor, items, with_answers=True)
    targets = [int(f["input_ids"][0, p["input_ids"].shape[1]]) for f, p in zip(full, prompts)]

    def logprobs(net):
        with torch.inference_mode():
            return [torch.log_softmax(net(**p, use_cache=False).logits[0, -1].float(), -1) for p in prompts]

    def load(folder=base_path, **kw):
        return AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32, **kw).eval()

    dense = logprobs(load())
    rows = {"dense": {"nll": sum(-lp[t].item() for lp, t in zip(dense, targets)) / len(dense)}}
    for pipeline in ("basic", None):  # None: llm-compressor's default
        net = load()
        ran = quant.quantize(net, "w4a16", batches, pipeline=pipeline)["pipeline"]
        net.save_pretrained(str(work / f"w4a16-{ran}"))
        config = CompressedTensorsConfig(dequantize=True)
        q = logprobs(load(work / f"w4a16-{ran}", quantization_config=config))
        rows[ran] = {
            "nll": sum(-lp[t].item() for lp, t in zip(q, targets)) / len(q),
            "kl": sum((d.exp() * (d - o)).sum().item() for d, o in zip(dense, q)) / len(q),
            "agree": sum(int(d.argmax()) == int(o.argmax()) for d, o in zip(dense, q)) / len(q),
        }
    return rows


def print_quant_pipelines(rows: dict, n: int) -> None:
    dense = rows["dense"]["nll"]
    print(f"\nW4A16 by llm-compressor's pipelines, {n} test questions (dense NLL {dense:.5f}):")
    print("| pipeline | answer NLL | KL(dense, W4A16) | argmax = dense |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        if name != "dense":
            print(f"| {name} | {r['nll']:.5f} | {r['kl']:.3g} | {r['agree']:.3f} |")


def accuracy_and_latency(row: Row, variant, items, args, work: Path, serve: bool) -> None:
    from contextlib import ExitStack

    from srice.agent.prompts import direct_request
    from srice.images import load_image
    from srice.serving.backends import open_backend
    from srice.serving.config import ServingConfig

    with ExitStack() as stack:
        serving = ServingConfig(backend="vllm" if serve else "transformers", concurrency=16)
        backend, _ = open_backend(variant, serving, stack)
        accuracy(row, backend, variant, items, args, work)
        if not serve:
            return
        requests = [
            direct_request(load_image(i.image), i.question, i.options, max_tokens=args.max_tokens)
            for i in items[: args.latency_n]
        ]
        backend.generate(requests[:2])  # warm-up
        singles = []
        for r in requests:
            began = time.perf_counter()
            backend.generate([r])
            singles.append(time.perf_counter() - began)
        row.latency_ms = statistics.median(singles) * 1000


def accuracy(row: Row, backend, variant, items, args, work: Path) -> None:
    """Direct-pathway accuracy (all questions and colour ones), plus the toy's real skill: colour read
    from a crop of the true target box (a perfect detector), which the direct view mostly cannot show."""
    from bench_toy_ceiling import true_box_request  # a script beside this one

    from srice.agent import AgentConfig
    from srice.builder.agents import build_agent
    from srice.eval import run as evaluate
    from srice.eval.metrics import score
    from srice.eval.report import all_records, summarize
    from srice.images import load_image

    out = work / f"eval-{row.name}"
    config = AgentConfig(max_tokens=args.max_tokens)
    evaluate.run(build_agent(backend, variant, (), config=config), items, out, batch_size=64)
    records = all_records(out)
    row.accuracy = summarize(records)["overall"]["direct"]
    row.answers = {r["id"]: r["answer"] for r in records}
    colour = [r["score"] for r in records if r["kind"] == "colour"]
    row.colour = sum(colour) / len(colour) if colour else None
    boxed = [i for i in items if i.kind == "colour" and i.meta.get("target_box")]
    requests = [true_box_request(i, load_image(i.image), config) for i in boxed]
    crops = backend.generate(requests) if requests else []
    row.crop = sum(score(i, c.text) for i, c in zip(boxed, crops)) / len(boxed) if boxed else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _agreement(row: Row, dense: Row) -> float | None:
    if not row.answers or not dense.answers:
        return None
    shared = row.answers.keys() & dense.answers.keys()
    return sum(row.answers[k] == dense.answers[k] for k in shared) / len(shared) if shared else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="toy", help="base variant (default toy)")
    parser.add_argument("--model", help="base model folder (instead of --variant)")
    parser.add_argument(
        "--data", required=True, help="synthetic test folder (srice synth) or questions.jsonl"
    )
    parser.add_argument("--calib", help="calibration folder or questions.jsonl (default: --data)")
    parser.add_argument("--calib-n", type=int, default=32)
    parser.add_argument("--limit", type=int, default=300, help="test questions (default 300)")
    parser.add_argument("--sparsities", default="0.5,0.7")
    parser.add_argument("--depths", default="0.25,0.5", help="shares of decoder layers to remove")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--latency-n", type=int, default=16, help="single requests timed per variant")
    parser.add_argument("--no-serve", action="store_true", help="accuracy in-process; no latency, no W4A16")
    parser.add_argument(
        "--smoke", action="store_true", help="a quick run: 6 questions, 4 calibration samples"
    )
    parser.add_argument("--work", help="folder for checkpoints and records (default: a temporary one)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.calib_n, args.latency_n = min(args.limit, 6), min(args.calib_n, 4), 4
        args.sparsities, args.depths = "0.5", "0.5"
    return args


def main() -> None:
    args = parse_args()
    from srice.compress.api import resolve_model
    from srice.eval.data import load_items
    from srice.serving.variants import get_variant

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["SRICE_VARIANTS"] = str(work / "variants.json")  # never touch the user's registry
    model = args.model or args.variant
    base_path, base_variant = resolve_model(model)
    base = base_variant or get_variant("tiny")
    data, calib = _questions(args.data), _questions(args.calib or args.data)
    items = load_items(data, limit=args.limit)
    sparsities = [float(s) for s in args.sparsities.split(",") if s]
    depths = [float(s) for s in args.depths.split(",") if s]

    times = pruning_time(model, calib, args.calib_n, sparsities[0], work)
    for method in ("wanda", "sparsegpt"):
        ours, theirs = times[method], times[f"llmc-{method}"]
        print(
            f"pruning time, {method} at {sparsities[0]:g} ({args.calib_n} samples): ours {ours:.2f} s, "
            f"llm-compressor {theirs:.2f} s, ratio ours/llm-compressor {ours / theirs:.2f}x",
            flush=True,
        )
    pipelines = quant_pipelines(base_path, calib, items, args.calib_n, work)
    print_quant_pipelines(pipelines, len(items))
    rows = []
    for name, method, kwargs in plan(sparsities, depths, args.smoke):
        rows.append(evaluated_row(name, method, kwargs, base_path, base, items, calib, args, work))
    print(f"\nbase {base_path} ({base.name}); {len(items)} questions from {data}")
    print_table(rows)
    if args.json:
        write_json(Path(args.json), rows, times, pipelines)


def evaluated_row(name, method, kwargs, base_path, base, items, calib, args, work: Path) -> Row:
    """One variant of the plan: compressed (unless dense), registered, evaluated; or skipped, with
    the reason in its note."""
    from srice.compress import CompressConfig, compress
    from srice.compress.register import register
    from srice.errors import SriceError
    from srice.serving.variants import Variant

    serve = not args.no_serve
    if method == "dense":
        row = Row(name, "dense", "-", base_path)
        variant = Variant(name, str(base_path), base.served_name, base.vllm_args)
    else:
        if method == "w4a16" and not serve:
            return Row(name, method, "-", work / name, note="skipped: needs vllm (--no-serve)")
        config = CompressConfig(method, calib=calib, calib_n=args.calib_n, **kwargs)
        result = compress(args.model or args.variant, work / name, config, overwrite=True)
        setting = f"{kwargs.get('sparsity', '-')}" + (" owl" if kwargs.get("owl") else "")
        row = Row(name, method, setting, result.out_dir, result.manifest)
        try:
            variant, _ = register(result, f"bench-{name}")
        except SriceError as e:  # e.g. W4A16 on a CPU whose vLLM build lacks the kernel
            return Row(name, method, setting, result.out_dir, result.manifest, note=f"skipped: {e}")
    print(f"{name}: evaluating on {len(items)} questions", file=sys.stderr, flush=True)
    accuracy_and_latency(row, variant, items, args, work, serve)
    return row


def print_table(rows: list[Row]) -> None:
    """The rows as a Markdown table, each compared with the first (dense)."""
    dense = rows[0]
    print("accuracy: direct pathway; colour: direct, colour questions; crop: colour read from a crop of the")
    print("true target box; agree: share of direct answers identical to dense's")
    print(
        "| variant | method | setting | achieved sparsity | layers | accuracy | vs dense | colour | crop "
        "| agree | latency ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r.manifest or {}
        achieved = m.get("achieved", {}).get("overall")
        r.agree = _agreement(r, dense)
        ratio = (
            f"{r.latency_ms / dense.latency_ms:.2f}x ({r.latency_ms:.0f} ms)"
            if r.latency_ms and dense.latency_ms
            else "-"
        )
        cells = [
            r.name,
            r.method,
            r.setting,
            _fmt(achieved),
            len(m["depth"]["kept_layers"]) if "depth" in m else "all",
            _fmt(r.accuracy),
            "-" if r.accuracy is None or dense.accuracy is None else f"{r.accuracy - dense.accuracy:+.3f}",
            _fmt(r.colour),
            _fmt(r.crop),
            _fmt(r.agree),
            ratio,
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |" + (f" {r.note}" if r.note else ""))


def write_json(path: Path, rows: list[Row], times: dict, pipelines: dict) -> None:
    fields = "name method setting accuracy colour crop agree latency_ms manifest note".split()
    rows_out = [{f: getattr(r, f) for f in fields} for r in rows]
    report = {"pruning_seconds": times, "w4a16_pipelines": pipelines, "rows": rows_out}
    path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
