"""What a run's records add up to: accuracy per pathway and slice, paired intervals, US statistics,
``summary.json`` / ``summary.md``, and prediction files for other toolkits' scorers."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from srice.eval.run import read_records


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[dict]) -> dict:
    """Accuracy of direct vs SRICE vs each fixed pathway vs the oracle-best pathway, overall and per
    question kind and target size; model calls per question; US and its prediction sets."""
    out = {"n": len(records), "errors": sum(r["error"] is not None for r in records)}
    out["overall"] = _accuracies(records)
    for key in ("kind", "target_size"):
        groups = defaultdict(list)
        for r in records:
            value = r.get(key) if key == "kind" else r.get("meta", {}).get(key)
            if value:
                groups[value].append(r)
        if groups:
            out[f"by_{key}"] = {name: _accuracies(rs) for name, rs in sorted(groups.items())}
    out["mllm_calls_per_question"] = _mean(r["mllm_calls"] for r in records)
    out["mean_uncertainty"] = _mean(r["uncertainty"] for r in records)
    out["seconds_per_question"] = _mean(r["seconds"] for r in records)
    direct = [r["pathways"]["direct"] for r in records if "direct" in r["pathways"]]
    out["direct_us_set_coverage"] = _mean(p["covered"] for p in direct)
    out["direct_us_set_size"] = _mean(p["set_size"] for p in direct)
    chosen = [r["pathways"][r["pathway"]] for r in records if r["pathway"] in r["pathways"]]
    out["selected_us_set_coverage"] = _mean(p["covered"] for p in chosen)
    out["selected_us_set_size"] = _mean(p["set_size"] for p in chosen)
    out["srice_minus_direct"] = _paired(records, "score", "direct")
    out["oracle_minus_srice"] = _paired(records, "oracle_score", "srice")
    names = sorted({name for r in records for name in r["pathways"]})
    out["us_auroc"] = {name: us_auroc(records, name) for name in names}
    return out


def interval(values) -> dict | None:
    """Mean and its normal-approximation 95% interval (1.96 standard errors)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    n, mean = len(values), sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = 1.96 * math.sqrt(var / n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def _paired(records: Sequence[dict], first: str, second: str) -> dict | None:
    """``first - second`` per question (SRICE vs direct on the same questions), with its interval:
    paired, so question difficulty cancels out of the width."""

    def value(r, name):
        return r["score"] if name == "srice" else r[name] if name in r else _pathway_score(r, name)

    return interval(
        value(r, first) - value(r, second)
        for r in records
        if value(r, first) is not None and value(r, second) is not None
    )


def us_auroc(records: Sequence[dict], name: str) -> float | None:
    """How well a pathway's US separates its wrong answers from its right ones: the probability that
    a wrong answer has the higher US (ties count half). 0.5 is chance, 1 perfect. US compares as
    (set size, tie-break), folded into one number since the tie-break lies in [0, 1)."""
    right, wrong = [], []
    for r in records:
        p = r["pathways"].get(name)
        if not p or p.get("score") is None or p.get("uncertainty") is None or p.get("error"):
            continue
        us = p["uncertainty"] + min(max(p.get("tiebreak") or 0.0, 0.0), 0.999999)
        (right if p["score"] >= 0.5 else wrong).append(us)
    if not right or not wrong:
        return None
    wins = sum((w > c) + 0.5 * (w == c) for w in wrong for c in right)
    return wins / (len(right) * len(wrong))


def _accuracies(records: Sequence[dict]) -> dict:
    names = sorted({name for r in records for name in r["pathways"]} - {"direct"})
    table = {
        "n": len(records),
        "direct": _mean(_pathway_score(r, "direct") for r in records),
    }
    table["srice"] = _mean(r["score"] for r in records)
    for name in names:
        table[name] = _mean(_pathway_score(r, name) for r in records)
    table["oracle"] = _mean(r["oracle_score"] for r in records)
    return table


def _pathway_score(record: dict, name: str) -> float | None:
    """A pathway's score; a question that failed outright counts 0 for every pathway, one that never
    ran the pathway (early exit) is left out of that pathway's average."""
    if name in record["pathways"]:
        return record["pathways"][name]["score"]
    return 0.0 if record["error"] is not None and record["score"] is not None else None


def markdown(summary: dict) -> str:
    """The summary as Markdown tables: one row per slice, one column per pathway."""
    rows = [("overall", summary["overall"])]
    for key in ("by_kind", "by_target_size"):
        rows += [(f"{key.removeprefix('by_')}={name}", table) for name, table in summary.get(key, {}).items()]
    columns = ["n", "direct", "srice"]
    columns += sorted({c for _, t in rows for c in t} - {"n", "direct", "srice", "oracle"}) + ["oracle"]
    lines = ["| slice | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, table in rows:
        cells = [_cell(table.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for key in (
        "n",
        "errors",
        "mllm_calls_per_question",
        "mean_uncertainty",
        "seconds_per_question",
        "direct_us_set_coverage",
        "direct_us_set_size",
        "selected_us_set_coverage",
        "selected_us_set_size",
    ):
        lines.append(f"- {key}: {_cell(summary.get(key))}")
    for key in ("srice_minus_direct", "oracle_minus_srice"):
        if d := summary.get(key):
            lines.append(
                f"- {key}: {d['mean']:+.3f} (95% CI {d['low']:+.3f} to {d['high']:+.3f}, n={d['n']})"
            )
    if aurocs := summary.get("us_auroc"):
        lines.append(
            "- US AUROC (wrong vs right answers): " + ", ".join(f"{k} {_cell(v)}" for k, v in aurocs.items())
        )
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def all_records(out_dir: str | Path) -> list[dict]:
    """Every shard's records in ``out_dir`` (shards run on other machines can be copied in)."""
    records, seen = [], set()
    for path in sorted(Path(out_dir).glob("records*.jsonl")):
        for r in read_records(path):
            if r["id"] not in seen:
                seen.add(r["id"])
                records.append(r)
    return records


def write_reports(out_dir: str | Path) -> dict:
    """summary.json, summary.md and prediction files for other toolkits' scorers, from all records.

    - ``predictions.jsonl``: ``{"question_id", "answer"}`` per question, the submission format of
      lmms-eval's VQAv2/TextVQA-style tasks (and of the official evaluation servers);
    - ``predictions.tsv``: VLMEvalKit's layout, ``index, question, A..D, answer, prediction, category``,
      which its multiple-choice and VQA scorers read.
    """
    out_dir = Path(out_dir)
    records = all_records(out_dir)
    summary = summarize(records)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary))
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"question_id": r["id"], "answer": r["answer"]}) + "\n")
    letters = max((len(r["options"] or ()) for r in records), default=0)
    header = ["index", "question", *"ABCDEFGHIJ"[: max(letters, 4)], "answer", "prediction", "category"]
    with open(out_dir / "predictions.tsv", "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for r in records:
            options = list(r["options"] or []) + [""] * (len(header) - 5 - len(r["options"] or []))
            row = [
                r["id"],
                r["question"],
                *options,
                r["answers"][0] if r["answers"] else "",
                r["answer"],
                r["kind"],
            ]
            f.write("\t".join(str(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n")
    return summary
