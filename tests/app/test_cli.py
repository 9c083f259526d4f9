"""The ``srice`` command as a user runs it: real subprocesses, real servers."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_srice as srice
from conftest import scene
from srice.agent.prompts import direct_request
from srice.errors import SriceError
from srice.images import load_image
from srice.serving.launcher import free_port


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    scene(seed=7).save(path)
    return path


def _check_json(out: str) -> dict:
    data = json.loads(out)
    assert data["answer"] and data["tokens"]
    for t in data["tokens"]:
        assert set(t) >= {"token", "logprob", "top_logprobs"}
        assert len(t["top_logprobs"]) == 20 and all({"token", "logprob"} <= set(c) for c in t["top_logprobs"])
    return data


def test_ask_transformers_json(picture, hf_backend):
    r = srice(
        "ask",
        "--image",
        str(picture),
        "--question",
        "What colour is the square?",
        "--backend",
        "transformers",
        "--variant",
        "tiny",
        "--tools",
        "",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    data = _check_json(r.stdout)
    assert data["pathway"] == "direct" and [p["name"] for p in data["trace"]] == ["direct"]
    request = direct_request(load_image(picture), "What colour is the square?", top_logprobs=20)
    expected = hf_backend.generate([request])[0]
    assert data["answer"] == expected.text
    assert [t["token"] for t in data["tokens"]] == [t.token for t in expected.tokens]


def test_ask_agent_trace_against_running_server(picture, vllm_server, hf_backend):
    r = srice(
        "ask", "--image", str(picture), "--question", "Is there a circle?", "--options", "yes,no",
        "--tools", "yolo,sam,ocr,zoom", "--variant", "tiny", "--server", vllm_server.url, "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = _check_json(r.stdout)
    trace = {p["name"]: p for p in data["trace"]}
    assert {"direct", "yolo", "sam", "ocr", "zoom[0]", "zoom[3]"} <= set(trace)
    for name, p in trace.items():
        assert p["error"] is None and p["uncertainty"]["score"] is not None, name
        assert set(p) >= {"regions", "calibrated", "prompt", "answer", "uncertainty", "seconds", "error"}
    best = min(data["trace"], key=lambda p: (p["uncertainty"]["score"], p["uncertainty"]["tiebreak"]))
    assert data["pathway"] == best["name"] and data["answer_letter"] == best["answer"] in ("A", "B")
    assert data["answer"] == {"A": "yes", "B": "no"}[best["answer"]]  # the option's text beside its letter
    request = direct_request(load_image(picture), "Is there a circle?", ["yes", "no"], top_logprobs=20)
    assert trace["direct"]["reply"] == hf_backend.generate([request])[0].text.strip()


def test_text_read_by_ocr_reaches_the_model_and_the_output(vllm_server, tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    sign = Image.new("RGB", (480, 240), "white")
    ImageDraw.Draw(sign).text((60, 70), "HELLO", fill="black", font=ImageFont.load_default(size=80))
    sign.save(tmp_path / "hello.png")
    ask = ["ask", "--image", str(tmp_path / "hello.png"), "--question", "What is written on the sign?",
           "--tools", "ocr", "--variant", "tiny", "--server", vllm_server.url]  # fmt: skip
    r = srice(*ask, "--json")
    assert r.returncode == 0, r.stderr
    ocr = next(p for p in json.loads(r.stdout)["trace"] if p["name"] == "ocr")
    assert ocr["tool_text"] == ["HELLO"]
    assert 'Text read in this view: "HELLO"' in ocr["prompt"]  # the model's prompt holds it
    r = srice(*ask)
    assert r.returncode == 0 and "text read: 'HELLO'" in r.stdout, r.stdout


def test_ask_starts_and_stops_its_own_server(picture):
    r = srice("ask", "--image", str(picture), "--question", "What colour is the circle?")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("answer: ") and lines[1].startswith("uncertainty: ")
    assert any(line.lstrip("* ").startswith("direct") for line in lines[2:])
    assert sum(line.lstrip("* ").startswith("zoom[") for line in lines[2:]) == 4  # the default tool
    port = re.search(r"vllm serve ready at http://127.0.0.1:(\d+) in", r.stderr).group(1)
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert left == [], "the server srice ask started outlived it"


@pytest.mark.parametrize("sigint", ["default", "ignored"])  # ignored: how a background job starts
def test_serve_runs_until_interrupted(picture, sigint):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "srice", "serve", "--variant", "tiny", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None,
    )
    try:
        line = proc.stdout.readline()  # printed once healthy
        assert f"at http://127.0.0.1:{port}" in line, proc.stderr.read() if proc.poll() is not None else line
        if sigint == "default":  # with SIGINT ignored, the Ctrl-C below is the whole test
            r = srice(
                "ask",
                "--image",
                str(picture),
                "--question",
                "Is there a square?",
                "--server",
                f"http://127.0.0.1:{port}",
                "--variant",
                "tiny",  # the served model's name comes from the variant (default: toy)
                "--json",
            )
            assert r.returncode == 0, r.stderr
            _check_json(r.stdout)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read()[-3000:]
    time.sleep(0.5)
    r = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True)
    assert r.stdout.split() == [], "vllm serve outlived srice serve"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "/nonexistent.png", "--question", "q"], "image not found: /nonexistent.png"),
        (["--image", "{picture}", "--question", "   "], "question is empty"),
        (["--image", "{picture}", "--question", "q", "--variant", "nope"], "unknown variant 'nope'; known: "),
        (["--image", "{picture}", "--question", "q", "--options", "red"], "at least two distinct options"),
        (
            ["--image", "{picture}", "--question", "q", "--options", "red,Red "],
            "at least two distinct options",
        ),
        (
            [
                "--image",
                "{picture}",
                "--question",
                "q",
                "--tools",
                "yolo",
                "--tool-weights",
                "yolo=missing.pt",
            ],
            "--tool-weights yolo: file not found: missing.pt",
        ),
        (
            ["--image", "{picture}", "--question", "q", "--calib", "/nonexistent"],
            "calibration folder not found",
        ),
    ],
)
def test_user_errors_are_one_line(args, message, picture):
    r = srice("ask", *[a.replace("{picture}", str(picture)) for a in args], "--backend", "transformers")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line, no traceback
    assert r.stderr.startswith("srice: error: ") and message in r.stderr


def test_help_for_every_command():
    from srice.app.cli import COMMANDS, build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert len(commands) == len(COMMANDS) == 11
    for command in ([], *([c] for c in commands)):
        r = srice(*command, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: srice {' '.join(command)}".rstrip()), (
            command
        )
        assert "--help" in r.stdout and not r.stderr, command
    r = srice("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"srice {__import__('srice').__version__}"


PROBE = """
import sys
from srice.app.cli import build_parser
for argv in (["--help"], ["eval", "--help"], ["ask", "--nope"], ["compress", "--method", "x"]):
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pass
heavy = ("numpy", "PIL", "torch", "transformers", "gradio", "httpx", "ultralytics")
print("HEAVY:" + ",".join(sorted(m for m in heavy if m in sys.modules)))
"""


def test_help_and_argument_errors_import_nothing_heavy():
    """What makes `srice --help` answer at once: the parser loads no numeric or model library."""
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "HEAVY:", r.stdout.strip().splitlines()[-1]


def test_the_parser_offers_the_libraries_own_method_lists_and_defaults():
    """The parser's choices are the libraries' own lists, and its defaults the config dataclasses'."""
    from srice.agent.config import AgentConfig
    from srice.app.cli import build_parser
    from srice.calibration.tool_fit import METHODS as calibration
    from srice.compress.api import METHODS as compress
    from srice.eval.ray_eval import RayConfig
    from srice.serving.config import ServingConfig

    def options(command: str) -> dict:
        sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
        return {a.dest: a for a in sub._actions}

    assert tuple(options("calibrate")["method"].choices) == tuple(calibration)
    assert tuple(options("compress")["method"].choices) == tuple(compress)
    for command in ("ask", "eval", "demo", "serve", "mcp"):
        o = options(command)
        assert (
            o["max_tokens"].default == AgentConfig().max_tokens
            and o["timeout"].default == ServingConfig().timeout
        )
        assert (
            o["tool_timeout"].default == AgentConfig().tool_timeout
            and o["top_views"].default == AgentConfig().top_views
        )
    ray = options("eval")
    assert (ray["ray_workers"].default, ray["ray_retries"].default) == (
        RayConfig().workers,
        RayConfig().retries,
    )


def test_demo_script_answers():
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "demos" / "direct_answer.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # the embedded trained toy model answers a colour question with a colour word
    from srice.synth.scene import PALETTE

    answer = r.stdout.splitlines()[0].removeprefix("answer: ").strip()
    assert answer in PALETTE and "logprobs: " in r.stdout, r.stdout


def test_workers_auto_is_one_agent_until_two_measure_a_gain():
    from srice.builder.workers import worker_count

    count, why = worker_count("auto")
    assert count == 1 and "auto" in why and "--workers 2" in why
    assert worker_count("3") == (3, "3 agent worker(s), as asked")
    for bad in ("0", "two"):
        with pytest.raises(SriceError, match="--workers"):
            worker_count(bad)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ray", "--ray-workers", "0"], "--ray-workers must be >= 1"),
        (["--ray", "--ray-retries", "-1"], "--ray-retries must be >= 0"),
        (["--ray", "--shard", "0/2"], "--shard and --ray do not mix"),
        (["--workers", "none"], "--workers is auto or"),
    ],
)
def test_bad_scale_out_options_are_refused_before_any_work(tmp_path, extra, message):
    scene().save(tmp_path / "a.png")
    (tmp_path / "q.jsonl").write_text('{"id": "q", "image": "a.png", "question": "Is there a star?"}\n')
    data, out = str(tmp_path / "q.jsonl"), str(tmp_path / "out")
    r = srice("eval", "--data", data, "--out", out, "--variant", "tiny", *extra, timeout=120)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out" / "records.jsonl").exists()
