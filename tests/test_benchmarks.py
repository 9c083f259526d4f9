"""Every benchmark, run as its users run it on a tiny input, with each figure it prints parsed and
checked: a number in its range (a ratio positive and finite, an accuracy or share in [0, 1], a count
equal to what was asked, an interval's low <= mean <= high, records identical where a benchmark
compares them). Timings are never asserted: a time only has to be a number, a ratio a positive one.

One real ``vllm serve`` of the toy serves every benchmark that needs a model and takes ``--server``
or ``$SRICE_SERVER``; it also answers to the names under which the toy benchmarks register the same
model as a variant of their own (``ALIASES``). ``bench_faults`` also starts a server of its own
(killing it is its point), and ``bench_toy_ceiling`` one as long as it takes no ``$SRICE_SERVER``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
NUM = r"([-+]?\d+(?:\.\d+)?)"  # a printed number: nan, inf or a missing figure match nothing

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def server(toy_server) -> str:
    """The suite's one ``vllm serve`` of the toy (``conftest.toy_server``, which answers to ``ALIASES``)."""
    return toy_server.url


def bench(name: str, *args: str, server: str | None = None, timeout: float = 600) -> str:
    """What ``benchmarks/NAME.py ARGS`` prints, run in its own process (``$SRICE_SERVER`` set to
    ``server``, or unset); a failed run fails the test with its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "SRICE_SERVER"}
    if server:
        env["SRICE_SERVER"] = server
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args]
    r = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert r.returncode == 0, f"{name} failed:\n{r.stderr[-4000:]}"
    return r.stdout


def figures(pattern: str, text: str) -> list[float]:
    """The numbers the groups of ``pattern`` (a whole printed line, ``NUM`` for each figure) hold."""
    match = re.search(f"^{pattern}$", text, re.M)
    assert match, f"no line matches {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def ratio(*values: float) -> None:
    for v in values:
        assert math.isfinite(v) and v > 0, v


def timing(*values: float) -> None:
    """A time or a rate, as printed (rounded: it may read 0)."""
    for v in values:
        assert math.isfinite(v) and v >= 0, v


def share(*values: float) -> None:
    for v in values:
        assert 0 <= v <= 1, v


def ordered(low: float, mean: float, high: float) -> None:
    assert low <= mean <= high, (low, mean, high)


def test_every_benchmark_has_a_test():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_bench_")}
    assert tested == {p.stem for p in BENCHMARKS}


def test_bench_serving(server):
    out = bench("bench_serving", "--variant", "toy", "--n", "4", server=server)
    assert "variant toy, 4 requests x 8 tokens, one image each" in out
    assert f"vllm serve start-up: - (already running at {server})" in out
    timing(*figures(rf"single request latency \(vllm, HTTP\): median {NUM} ms", out))
    gain, together, alone = figures(
        rf"batched/sequential throughput \(vllm\): {NUM}x \({NUM} vs {NUM} req/s\)", out
    )
    ratio(gain)
    timing(together, alone)
    ratio(*figures(rf"vllm/transformers throughput, batched: {NUM}x", out))


def test_bench_agent(server):
    out = bench("bench_agent", "--variant", "toy", "--n", "4", "--tools", "zoom", server=server)
    [pathways] = figures(rf"variant toy, 4 questions, tools zoom, {NUM} pathways per question", out)
    assert pathways == 5  # direct and the four quadrants
    wall, model, tools, agent = figures(
        rf"answer_batch: {NUM} s = model {NUM} s \+ tools {NUM} s \+ agent {NUM} s", out
    )
    assert min(wall, model, tools) >= 0 and abs(model + tools + agent - wall) <= 0.021
    ratio(*figures(rf"overhead \(wall / \(generate \+ tools\)\): {NUM}", out))
    served, asked, share, srice, calls, direct, times = figures(
        rf"prefix cache: {NUM} of {NUM} prompt tokens served from it \({NUM}\); model time per question: "
        rf"SRICE {NUM} s \({NUM} calls\) vs direct alone {NUM} s, ratio {NUM}x",
        out,
    )
    assert 0 < served <= asked and share == pytest.approx(served / asked, abs=0.0006)
    # every request of a question starts with its image and question: on the CPU build's blocks of 32
    # tokens that prefix is reused (blocks of 128, its default, reused nothing: 3.4% on the toy)
    assert share >= 0.1
    assert calls >= 5  # direct, the region question, four quadrants
    timing(srice, direct)
    ratio(times)
    gain, together, alone = figures(
        rf"batched/sequential throughput: {NUM}x \({NUM} vs {NUM} questions/s\)", out
    )
    ratio(gain)
    timing(together, alone)


def test_bench_agent_server(server):
    out = bench("bench_agent_server", "--n", "4", "--tools", "zoom", server=server)
    assert out.startswith("# agent server (--workers auto) vs in-process, 4 questions, tools zoom,")
    timing(*figures(rf"in-process answer_batch\(4\): {NUM} s \({NUM} q/s\)", out))
    timing(*figures(rf"4 concurrent OpenAI clients: {NUM} s \({NUM} q/s\)", out))
    timing(*figures(rf"4 clients one at a time: {NUM} s \({NUM} q/s\)", out))
    ratio(*figures(rf"throughput ratio, concurrent clients / in-process: {NUM} \(target >= 0.95\)", out))
    figures(rf"server overhead per request: {NUM} ms", out)  # either sign
    ratio(*figures(rf"micro-batching gain, concurrent / one at a time: {NUM}x", out))
    assert figures(rf"answers equal to in-process: {NUM}/{NUM}", out) == [4, 4]
    batches, size = figures(
        rf"batches the concurrent clients' questions ran in: {NUM} \(mean size {NUM}\)", out
    )
    assert 1 <= batches <= 4 and 1 <= size <= 4 and abs(batches * size - 4) <= 0.05 * batches


def test_bench_early_exit(server):
    # alpha 0.9 so that a few calibration questions give a threshold and every figure is printed
    args = ("--n", "6", "--calib-n", "12", "--alpha", "0.9", "--pathways", "zoom")
    out = bench("bench_early_exit", *args, server=server)
    assert "# toy on synth seed 7 (n=6), pathways zoom, alpha 0.9" in out
    calls, accuracy = figures(
        rf"without early exit: {NUM} model calls per question, SRICE accuracy {NUM}", out
    )
    threshold, fast_calls, exited, fast_accuracy = figures(
        rf"with early exit \(US <= {NUM}\): {NUM} model calls per question \({NUM}% exited\), "
        rf"SRICE accuracy {NUM}",
        out,
    )
    assert math.isfinite(threshold)
    assert 1 <= fast_calls <= calls and 0 <= exited <= 100
    share(accuracy, fast_accuracy)
    calls_ratio, saved = figures(rf"calls ratio \(early exit / plain\): {NUM}; calls saved {NUM}%", out)
    assert 0 < calls_ratio <= 1 and abs(calls_ratio - fast_calls / calls) <= 0.005
    assert abs(saved - 100 * (1 - calls_ratio)) <= 0.1
    lost, low, high, n = figures(rf"accuracy lost: {NUM} \(95% CI {NUM} to {NUM}, n={NUM}\)", out)
    ordered(low, lost, high)
    assert n == 6 and abs(lost - (accuracy - fast_accuracy)) <= 0.002
    met = re.search(r"^goal \(>= 30% fewer calls for <= 0.5 points\): (met|not met)$", out, re.M)
    assert met and (met[1] == "met") == (saved >= 30 and lost <= 0.005)


def test_bench_eval_pipeline(server):
    out = bench("bench_eval_pipeline", "--n", "4", "--batch-size", "2", "--tools", "zoom", "--settings",
                "shared", server=server)  # fmt: skip
    assert "one agent stage by stage vs 2 agent workers: 4 toy questions in 2 batches of 2, tools zoom" in out
    assert "## shared (all cores shared)" in out and "## pinned" not in out
    one = rf"stage by stage \(--workers 1\): {NUM} s \({NUM} q/s\): model {NUM} s, tools {NUM} s"
    wall, rate, model, tools = figures(one, out)
    timing(wall, rate, model, tools)
    workers = rf"agent workers \(--workers 2\): {NUM} s \({NUM} q/s\), after {NUM} s to start them \(.*\)"
    timing(*figures(workers, out))
    ratio(*figures(rf"throughput ratio, workers / stage by stage: {NUM}", out))
    [limit] = figures(rf"limit, \(model \+ tools\) / max\(model, tools\): {NUM}", out)
    assert 1 <= limit <= 2
    assert figures(rf"records identical \(timings left out, floats to 6 digits\): {NUM}/{NUM}", out) == [4, 4]


def test_bench_eval_ray(server):
    out = bench("bench_eval_ray", "--n", "4", "--batch-size", "2", "--tools", "zoom", server=server)
    assert "(2 workers, local cluster), 4 questions in batches of 2, tools zoom" in out
    for run in ("plain", "ray"):
        wall, own, rate = figures(rf"{run}: {NUM} s from start to exit, eval {NUM} s \({NUM} q/s\)", out)
        timing(wall, own, rate)
        assert own <= wall
    ratio(*figures(rf"overhead ratio ray / plain, start to exit: {NUM} \(target <= 1.15\)", out))
    ratio(*figures(rf"overhead ratio ray / plain, eval only: {NUM}", out))
    assert figures(rf"records identical \(timings left out, floats to 6 digits\): {NUM}/{NUM}", out) == [4, 4]
    [one] = figures(rf"  1 node\(s\): {NUM} q/s", out)
    timing(one)
    for nodes in (2, 4, 8):  # on paper: linear in the nodes
        [rate] = figures(rf"  {nodes} node\(s\): {NUM} q/s", out)
        assert rate == pytest.approx(nodes * one, abs=0.005 * (nodes + 1))  # both printed to 2 digits


def test_bench_faults(server):
    # direct answers only (no tool pathway): the bench is about bad items and a dead server
    out = bench("bench_faults", "--n", "12", "--pathways", "", server=server)
    assert "# toy, pathways : 22 questions, 10 bad, server killed at 40%" in out
    code, at_kill = figures(
        rf"first run: exit {NUM} after {NUM} records; its last line: srice: error: .+", out
    )
    assert code != 0 and 0 < at_kill < 22
    assert "resumed run: exit 0; 1 resume" in out
    assert figures(rf"records written: {NUM} of {NUM}", out) == [22, 22]
    [failed] = figures(rf"failed \(no answer\), by reason: {NUM}", out)
    by_reason = [int(k) for k in re.findall(r"^  (\d+) x .+$", out, re.M)]
    assert failed == 10 == sum(by_reason)  # the ten bad items, and nothing else
    assert figures(rf"lost: {NUM}; duplicated: {NUM}; quarantined lines: {NUM}", out) == [0, 0, 0]
    assert "good records equal to the clean run's: True (12 compared)" in out


def test_bench_tools_cost():
    from srice.builder.toolbox import embedded_options

    out = bench("bench_tools_cost", "--n", "1")
    assert out.startswith("# embedded tools, 1 synth images")
    sizes = re.findall(rf"^yolo at (\d+) px: {NUM} s per image$", out, re.M)
    assert [int(s) for s, _ in sizes] == list(embedded_options("yolo")["imgsz"])
    timing(*(float(t) for _, t in sizes))
    [shared] = figures(rf"yolo \+ sam, sam on yolo's boxes: {NUM} s per image", out)
    [separate] = figures(rf"yolo \+ sam, sam with its own detector: {NUM} s per image", out)
    [saved] = figures(rf"saved by sharing: {NUM}%", out)
    ratio(shared, separate)
    assert saved < 100 and abs(saved - 100 * (1 - shared / separate)) <= 1 + 100 * 0.01 / shared
    # the tool stage's split, before (each question its own image, each view cut apart) and after
    assert re.search(
        r"^# tool stage \(yolo, sam on yolo's boxes, zoom\) over \d+ questions on \d+ images", out, re.M
    )
    before, after = figures(rf"yolo images predicted \(all sizes\): {NUM} -> {NUM}", out)
    assert 1 <= after <= before
    crops, crops_after, views, views_after = figures(
        rf"crops made: {NUM} -> {NUM} for {NUM} -> {NUM} views.*", out
    )
    assert views == views_after and crops == views and 1 <= crops_after <= crops
    total, total_after = figures(rf"tool stage: {NUM} -> {NUM} s .*", out)
    timing(total, total_after)


def test_bench_seft():
    out = bench("bench_seft", "--sparsities", "0.7", "--steps", "2", "--batch-size", "4", "--n", "4",
                "--train-n", "8", "--tools", "")  # fmt: skip
    assert out.startswith("# SEFT vs repairs of the Wanda-pruned toy: 2 steps of batch 4 on 8 training")
    acc = rf"{NUM} \[{NUM}, {NUM}\]"
    rows = {}
    for model, repair in (("dense toy", "-"), ("wanda 0.7", "none"), ("wanda 0.7", "dense"),
                          ("wanda 0.7", "lora"), ("wanda 0.7", "seft")):  # fmt: skip
        sparsity, nll, d, dl, dh, s, sl, sh, seconds = figures(
            rf"{model} +{re.escape(repair)} +{NUM} +{NUM} +{acc} +{acc} +{NUM}", out
        )
        ordered(dl, d, dh), ordered(sl, s, sh), timing(seconds), ratio(nll)
        rows[repair] = sparsity
    assert rows["-"] == 0 and rows["lora"] < 0.1  # merged LoRA is dense again
    assert rows["none"] == rows["dense"] == rows["seft"] and 0.69 <= rows["seft"] <= 0.7
    for repair in ("dense", "lora", "seft"):
        line = rf"sparsity 0.7: {repair} recovers ({NUM}|n/a) of the direct accuracy pruning lost \({NUM}.*"
        assert re.search(rf"^{line}\), ({NUM}|n/a) of the NLL \({NUM}(, within chance)?\)$", out, re.M), out
    figures(rf"sparsity 0.7: seft minus dense-then-re-prune: direct accuracy {NUM}, NLL {NUM}", out)


def test_bench_compress(tmp_path):
    from srice.synth import SynthKnobs, generate

    generate(tmp_path / "synth", seed=7, n=3, knobs=SynthKnobs(kinds=("colour", "exists")))
    args = ["--variant", "tiny", "--data", str(tmp_path / "synth"), "--smoke", "--no-serve", "--limit", "1",
            "--calib-n", "2", "--max-tokens", "4", "--work", str(tmp_path / "work"),
            "--json", str(tmp_path / "rows.json")]  # fmt: skip
    out = bench("bench_compress", *args)
    for method in ("wanda", "sparsegpt"):
        ours, theirs, ratio_ = figures(
            rf"pruning time, {method} at 0.5 \(2 samples\): ours {NUM} s, llm-compressor {NUM} s, "
            rf"ratio ours/llm-compressor {NUM}x",
            out,
        )
        timing(ours, theirs)
        ratio(ratio_)
    [dense_nll] = figures(rf"W4A16 by llm-compressor's pipelines, 1 test questions \(dense NLL {NUM}\):", out)
    pipelines = {}
    for name in ("basic", "sequential"):
        sci = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"  # KL in %.3g: 2.66e-07
        nll, kl, agree = figures(rf"\| {name} \| {NUM} \| {sci} \| {NUM} \|", out)
        assert nll > 0 and kl >= -1e-6 and agree in (0.0, 1.0)
        pipelines[name] = nll
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["w4a16_pipelines"]["dense"]["nll"] == pytest.approx(dense_nll, abs=1e-5)
    assert {k: round(v["nll"], 5) for k, v in saved["w4a16_pipelines"].items() if k != "dense"} == pipelines
    assert re.search(r"^base .+ \(tiny\); 1 questions from ", out, re.M)
    main = out[out.index("accuracy: direct pathway") :]
    table = [line.split(" | ") for line in re.findall(r"^\| (.+) \|(?: .*)?$", main, re.M)][1:]  # no header
    assert [row[0] for row in table] == "dense wanda-50 owl-wanda-50 sparsegpt-50 depth-50 w4a16".split()
    dense = float(table[0][5])
    for name, _, _, achieved, layers, accuracy, versus, colour, crop, agree, latency in table[:-1]:
        share(
            float(accuracy), float(agree), *(float(c) for c in (colour, crop) if c != "-")
        )  # "-": none asked
        assert float(versus) == pytest.approx(float(accuracy) - dense, abs=0.0015)
        if "wanda" in name or "sparsegpt" in name:
            assert abs(float(achieved) - 0.5) <= 0.05, name  # the sparsity asked
        assert layers == ("1" if name == "depth-50" else "all")  # the tiny model has 2 layers; half go
        assert latency == "-"  # --no-serve: no latency
    assert table[0][9] == "1.000"  # dense agrees with itself
    assert out.rstrip().endswith("skipped: needs vllm (--no-serve)")
    assert [r["name"] for r in saved["rows"]] == [row[0] for row in table]
    for r, row in zip(saved["rows"][:-1], table):
        assert f"{r['accuracy']:.3f}" == row[5] and f"{r['agree']:.3f}" == row[9]


def test_bench_toy_accuracy(server, tmp_path):
    args = ("--n", "2", "--pathways", "zoom", "--out", str(tmp_path))  # the detector runs in steps 4-5
    out = bench("bench_toy_accuracy", *args, server=server)
    assert re.search(r"^2 questions in [\d.]+ s; records: ", out, re.M)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert sum(k["n"] for k in report["kinds"].values()) == 2
    for kind in report["kinds"].values():
        share(kind["majority"], kind["best"]["mean"], kind["srice"]["mean"], *kind["pathways"].values())
        ordered(kind["best"]["low"], kind["best"]["mean"], kind["best"]["high"])
        ordered(kind["srice"]["low"], kind["srice"]["mean"], kind["srice"]["high"])
        assert kind["best_minus_majority"] == pytest.approx(kind["best"]["mean"] - kind["majority"])
        assert kind["best"]["mean"] == max(kind["pathways"].values())
    coverage = report["detector_coverage"]
    assert coverage["images"] >= 1 and coverage["failed"] == 0
    share(coverage["coverage"])
    for size in report["detector_top_box"].values():
        assert size.pop("n") >= 1
        share(*size.values())


def test_bench_toy_main(server):
    out = bench("bench_toy_main", "--n", "2", "--pathways", "zoom", server=server)
    assert out.startswith("# 2 fresh scenes, one tiny-target colour question each")
    mean, low, high, n = figures(rf"SRICE with zoom: {NUM} right \(95% CI {NUM} to {NUM}, n={NUM}\); .+", out)
    share(mean)
    ordered(low, mean, high)
    assert n == 2


def test_bench_toy_ceiling(server):
    out = bench("bench_toy_ceiling", "--n", "4", server=server)
    means = r" \| ".join([NUM] * 5)
    rows = re.findall(rf"^\| (\S+) \| (\d+) \| {means} \|$", out, re.M)
    assert rows and rows[0][0] == "overall" and 1 <= int(rows[0][1]) <= 4
    for _, _, direct, crop, srice, oracle, chosen in rows:
        share(*map(float, (direct, crop, srice, oracle, chosen)))
        assert max(float(direct), float(crop), float(srice)) <= float(oracle)  # the best of the two
    gains = json.loads(out.strip().splitlines()[-1])
    for gain in gains.values():
        ordered(gain["low"], gain["mean"], gain["high"])
        assert gain["n"] == int(rows[0][1])
    assert gains["oracle_minus_srice"]["mean"] >= 0


def test_bench_gpu(tmp_path):
    out = bench("bench_gpu", "--n", "1", "--batch", "1", "--no-big", "--out", str(tmp_path / "gpu.json"))
    gpu = re.search(r"^# bench_gpu: 1 questions \(synth seed 7\), tools yolo,sam,zoom, GPU: (.+)$", out, re.M)
    assert gpu
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["questions"] == 1 and saved["gpu"] == gpu[1]
    devices = ["cpu"] + ([] if gpu[1] == "none" else ["cuda:0"])
    assert list(saved["devices"]) == devices
    for device, result in saved["devices"].items():
        stages, tools = result["stages"], result["tools_seconds_per_image"]
        cells = r" \| ".join([NUM] * 6)
        printed = figures(rf"\| {device} \| {cells} \|", out)
        expected = [*stages["seconds"].values(), stages["questions_per_second"], tools["yolo"], tools["sam"]]
        assert printed == pytest.approx(expected, abs=0.006)
        assert all(v >= 0 for v in stages["seconds"].values()) and set(tools) == {"yolo", "sam"}
        assert stages["total"] == pytest.approx(sum(stages["seconds"].values()), abs=0.002)
        assert stages["questions_per_second"] == pytest.approx(1 / stages["total"], rel=0.01, abs=0.001)
        timing(*tools.values())
    if gpu[1] == "none":
        assert "no CUDA device here: no CUDA rows, no CUDA-vs-CPU comparison, no 2 B-parameter model" in out
    else:  # the same agent on both devices
        assert saved["cuda_vs_cpu_equal"] == {"n": 1, "answers": 1, "pathways": 1, "uncertainty": 1}


def test_bench_zoomtree():
    out = bench("bench_zoomtree", "--n", "4", "--depths", "2")
    assert out.startswith("# zoom tree vs the other pathways: 4 questions (synth seed 13")
    acc = rf"{NUM} \[{NUM}, {NUM}\]"
    calls = {}
    for label in ("direct", "zoom grid", "zoom tree d2", r"detector \(yolo\)",
                  r"SRICE grid\+yolo", r"SRICE \+tree d2"):  # fmt: skip
        tree = label.startswith(("zoom tree", "SRICE \\+tree"))
        values = figures(rf"{label} +{NUM} +{acc} +{acc} +" + (acc if tree else "-"), out)
        for at in range(1, len(values), 3):  # mean [low, high]
            ordered(values[at + 1], values[at], values[at + 2])
        calls[label] = values[0]
    # the calls the agent counted: direct + region, then 4 per level (beam 1) and the answer
    assert calls["direct"] == 1 and calls["zoom grid"] == 6  # no region proposal without a tool
    assert calls["zoom tree d2"] == 2 + 8 + 1 and "zoom tree d1" not in out
    figures(rf"tiny targets: tree d2 minus zoom grid {NUM} \((?:beyond|within) the intervals\)", out)
    figures(rf"all questions: SRICE with the tree minus without {NUM}, at {NUM} calls per question", out)
