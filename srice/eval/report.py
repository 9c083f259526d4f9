"""What a run's records add up to: accuracy per pathway and slice, paired intervals, US statistics,
``summary.json`` / ``summary.md``, and prediction files for other toolkits' scorers."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist

from srice.agent.prompts import LETTERS
from srice.agent.trace import tool_of
from srice.eval.records import add_counts, mixed, read_records, read_retries, transient_reason

Z95 = NormalDist().inv_cdf(0.975)  # 1.95996: two-sided 95%


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
    out["failures"] = failures(records)
    return out


_WHERE = re.compile(r"^\S+(?::\d+| row \d+): ")


def _reason(kind: str | None, message: str) -> str:
    """A failure's reason for counting: its kind and message, without what varies per item (the
    part after the first ': ' when it names a path or value), at most 120 characters."""
    if kind == "timeout":
        return "timeout: the tool overran its time limit"
    text = _WHERE.sub("", " ".join(str(message).split()))  # "data.jsonl:7: " says where, not why
    head, sep, _ = text.partition(": ")
    short = head if sep and len(head) >= 12 else text
    return f"{kind}: {short[:120]}" if kind else short[:120]


def failures(records: Sequence[dict]) -> dict:
    """What failed, counted where users look: per tool, the questions it was run on, failed on (by
    reason) and timed out on; and the records that failed outright (no answer at all), by reason."""
    tools: dict[str, dict] = {}
    record_reasons: dict[str, int] = defaultdict(int)
    for r in records:
        if r["error"] is not None:
            record_reasons[_reason(None, r["error"])] += 1
        by_tool: dict[str, list[dict]] = defaultdict(list)
        for name, p in r["pathways"].items():
            if name != "direct":
                by_tool[tool_of(name)].append(p)
        for tool, pathways in by_tool.items():
            entry = tools.setdefault(tool, {"questions": 0, "failed": 0, "timed_out": 0, "reasons": {}})
            entry["questions"] += 1
            failed = next((p for p in pathways if p.get("error")), None)
            if failed is not None:
                entry["failed"] += 1
                entry["timed_out"] += failed.get("error_kind") == "timeout"
                reason = _reason(failed.get("error_kind"), failed["error"])
                entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
    failed_records = sum(record_reasons.values())
    # failed for a reason that may pass (a rate limit that outlasted the retries): a resume redoes them
    transient = sum(transient_reason(r) is not None for r in records)
    counts = {"n": len(records), "failed": failed_records, "transient": transient}
    return {"tools": dict(sorted(tools.items())), "records": counts | {"reasons": dict(record_reasons)}}


def interval(values, *, difference: bool | None = None) -> dict | None:
    """Mean and its 95% interval, ``{"mean", "low", "high", "n"}`` (None without values).

    Scores in [0, 1] (accuracies, one per question) get the Wilson score interval at their mean:
    exact Wilson for 0/1 scores, within [0, 1], and never zero-width at 0% or 100% as the normal
    approximation is; for fractional scores (VQA accuracy, ANLS) it is conservative, since a mean of
    values in [0, 1] varies at most as a proportion does. Differences (``difference=True``, or any
    value outside [0, 1]: paired per-question differences such as SRICE minus direct) get the normal
    interval of their mean, Z95 sample standard errors, so question difficulty cancels out."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    n, mean = len(values), sum(values) / len(values)
    if difference is None:
        difference = not all(0.0 <= v <= 1.0 for v in values)
    if difference:
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        half = Z95 * math.sqrt(var / n)
        return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}
    z2 = Z95 * Z95
    centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n))
    low = 0.0 if mean == 0.0 else max(0.0, centre - half)  # exactly 0 (and 1) there, not 1e-17 off
    high = 1.0 if mean == 1.0 else min(1.0, centre + half)
    return {"mean": mean, "low": low, "high": high, "n": n}


def _paired(records: Sequence[dict], first: str, second: str) -> dict | None:
    """``first - second`` per question (SRICE vs direct on the same questions), with its interval:
    paired, so question difficulty cancels out of the width."""

    def value(r, name):
        return r["score"] if name == "srice" else r[name] if name in r else _pathway_score(r, name)

    return interval(
        (
            value(r, first) - value(r, second)
            for r in records
            if value(r, first) is not None and value(r, second) is not None
        ),
        difference=True,
    )


def us_auroc(records: Sequence[dict], name: str) -> float | None:
    """How well a pathway's US separates its wrong answers from its right ones: the probability that
    a wrong answer has the higher US (ties count half), scikit-learn's ``roc_auc_score`` with the
    wrong answers as the positive class. 0.5 is chance, 1 perfect; None without both kinds. US
    compares as (set size, tie-break), folded into one number since the tie-break lies in [0, 1)."""
    wrong, scores = [], []
    for r in records:
        p = r["pathways"].get(name)
        if not p or p.get("score") is None or p.get("uncertainty") is None or p.get("error"):
            continue
        scores.append(p["uncertainty"] + min(max(p.get("tiebreak") or 0.0, 0.0), 0.999999))
        wrong.append(int(p["score"] < 0.5))
    if not 0 < sum(wrong) < len(wrong):
        return None
    from sklearn.metrics import roc_auc_score  # scikit-learn comes with mapie

    return float(roc_auc_score(wrong, scores))


def _accuracies(records: Sequence[dict]) -> dict:
    """Mean score per column, and in ``n_by_column`` how many questions each mean is over: a tool
    pathway exists only where its tool ran and found what that view needs (``yolo[0]`` needs two
    regions), and an unlabelled question counts nowhere."""
    names = sorted({name for r in records for name in r["pathways"]} - {"direct"})
    columns = {
        "direct": [_pathway_score(r, "direct") for r in records],
        "srice": [r["score"] for r in records],
        **{name: [_pathway_score(r, name) for r in records] for name in names},
        "oracle": [r["oracle_score"] for r in records],
    }
    table = {"n": len(records)} | {name: _mean(values) for name, values in columns.items()}
    table["n_by_column"] = {name: sum(v is not None for v in values) for name, values in columns.items()}
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
    columns += sorted({c for _, t in rows for c in t} - {"n", "direct", "srice", "oracle", "n_by_column"})
    columns += ["oracle"]
    lines = [
        "Accuracy per slice and pathway; (k): the column is averaged over k questions, fewer than the "
        "slice's n (the pathway did not run, or found too few regions, on the others).",
        "",
        "| slice | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, table in rows:
        counts = table.get("n_by_column", {})
        cells = [_cell(table.get("n"))] + [
            _cell(table.get(c)) + (f" ({counts[c]})" if counts.get(c, table["n"]) != table["n"] else "")
            for c in columns[1:]
        ]
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
    if (retries := summary.get("retries")) and (retries["retried"] or retries["gave_up"]):
        lines.append("- " + retry_line(retries))
    for key in ("srice_minus_direct", "oracle_minus_srice"):
        if d := summary.get(key):
            lines.append(
                f"- {key}: {d['mean']:+.3f} (95% CI {d['low']:+.3f} to {d['high']:+.3f}, n={d['n']})"
            )
    if aurocs := summary.get("us_auroc"):
        lines.append(
            "- US AUROC (wrong vs right answers): " + ", ".join(f"{k} {_cell(v)}" for k, v in aurocs.items())
        )
    lines += failure_lines(summary.get("failures"))
    if summary.get("mixed_settings"):
        lines.append("- mixed settings: records were added under other settings (--force; records*.run.json)")
    return "\n".join(lines) + "\n"


def failure_lines(failures: dict | None) -> list[str]:
    """The failures section of summary.md: every tool and record failure, with reasons."""
    if not failures:
        return []
    lines = ["", "Failures (a failed tool pathway scores 0 in the oracle and is absent from its column):"]
    for tool, t in failures["tools"].items():
        lines.append(
            f"- tool {tool}: ran on {t['questions']} questions, failed on {t['failed']} "
            f"({t['timed_out']} timed out)" + (":" if t["reasons"] else "")
        )
        lines += [f"  - {count} x {reason}" for reason, count in t["reasons"].items()]
    rec = failures["records"]
    lines.append(
        f"- records: {rec['failed']} of {rec['n']} failed outright (no answer)"
        + (":" if rec["failed"] else "")
    )
    lines += [f"  - {count} x {reason}" for reason, count in rec["reasons"].items()]
    if rec.get("transient"):
        lines.append(
            f"- {rec['transient']} records hold a model call that failed for a reason that may pass (a rate "
            "limit, timeout or 5xx that outlasted the retries): the same command redoes them"
        )
    return lines


def retry_line(retries: dict) -> str:
    """The model server's retries by cause, and the requests given up after them."""
    made = ", ".join(f"{cause} x{n}" for cause, n in retries["retried"].items()) or "none"
    gave_up = ", ".join(f"{cause} x{n}" for cause, n in retries["gave_up"].items())
    return f"model server retries: {made}" + (f"; given up after retrying: {gave_up}" if gave_up else "")


def retry_counts(out_dir: str | Path) -> dict[str, dict[str, int]]:
    """The retries of every shard's runs in ``out_dir``, by cause (``records*.retries.json``)."""
    paths = sorted(Path(out_dir).glob("records*.retries.json"))
    return add_counts(
        *(read_retries(p.with_name(p.name.removesuffix(".retries.json") + ".jsonl")) for p in paths)
    )


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
    summary["mixed_settings"] = mixed(out_dir)  # records added with --force under other settings
    summary["retries"] = retry_counts(out_dir)  # the model server's retries, by status or cause
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # user text (questions, reasons) may hold what UTF-8 cannot encode: escaped, never a crash
    (out_dir / "summary.md").write_text(markdown(summary), encoding="utf-8", errors="backslashreplace")
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"question_id": r["id"], "answer": r["answer"]}) + "\n")
    letters = max((len(r["options"] or ()) for r in records), default=0)
    header = ["index", "question", *LETTERS[: max(letters, 4)], "answer", "prediction", "category"]
    with open(out_dir / "predictions.tsv", "w", encoding="utf-8", errors="backslashreplace") as f:
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
