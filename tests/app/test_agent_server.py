"""``srice serve --agent`` as its users reach it: the official ``openai`` SDK (sync, async, streaming,
logprobs) and plain HTTP, against a real agent server in front of a real ``vllm serve`` of the toy."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from srice.serving.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "demos" / "examples" / "tiny_triangle.png"
QUESTION = "What colour is the triangle?"
SRICE = str(Path(sys.executable).with_name("srice"))


def data_url(path: Path = EXAMPLE) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def message(text: str = QUESTION, image: str | None = None) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image or data_url()}},
                                         {"type": "text", "text": text}]}]  # fmt: skip


class AgentServer:
    """``srice serve --agent`` in a subprocess, on a free port, until stopped."""

    def __init__(self, *args: str, env: dict | None = None, ready_timeout: float = 300):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [SRICE, "serve", "--agent", "--port", str(self.port), *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ)
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"srice serve --agent exited: {self.process.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("srice serve --agent did not become ready")

    def client(self, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=options.pop("api_key", "none"), **options)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.stderr.read()


@pytest.fixture(scope="module")
def toy_vllm(toy_server):
    return toy_server


@pytest.fixture(scope="module")
def agent_server(toy_vllm):
    server = AgentServer("--variant", "toy", "--server", toy_vllm.url, "--tools", "yolo,zoom",
                         "--batch-wait-ms", "300", "--workers", "2")  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def in_process(toy_vllm):
    """What the Python API answers on the same server with the same settings."""
    from contextlib import ExitStack

    from srice import ServingConfig, build_agent, open_backend

    with ExitStack() as stack:
        backend, variant = open_backend("toy", ServingConfig(server=toy_vllm.url), stack)
        yield build_agent(backend, variant, ["yolo", "zoom"], log=lambda text: None)


def test_models_and_health(agent_server):
    client = agent_server.client()
    assert [m.id for m in client.models.list().data] == ["srice-toy-agent"]
    health = httpx.get(f"{agent_server.url}/health").json()
    assert health["status"] == "ok"


def test_the_sdk_gets_sriceS_answer_with_usage_and_its_uncertainty(agent_server, in_process):
    reply = agent_server.client().chat.completions.create(model="srice-toy-agent", messages=message(),
                                                          max_tokens=16)  # fmt: skip
    expected = in_process.answer(str(EXAMPLE), QUESTION)
    extra = reply.model_extra["srice"]
    assert reply.choices[0].message.content == expected.answer
    assert extra["pathway"] == expected.pathway and extra["uncertainty"] == expected.uncertainty
    assert extra["model_calls"] == expected.mllm_calls >= 3
    assert reply.usage.prompt_tokens == expected.prompt_tokens > 0
    assert reply.usage.completion_tokens == expected.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    chosen = expected.pathway_trace(expected.pathway)
    assert extra["prediction_set"] == list(chosen.uncertainty.prediction_set)
    assert "trace" not in extra


def test_multiple_choice_as_a_harness_sends_it_answers_with_a_given_letter(agent_server, in_process):
    text = "What colour is the triangle?\nA. red\nB. blue\nC. green\n"
    text += "Answer with the option's letter from the given choices directly."
    reply = agent_server.client().chat.completions.create(
        model="srice-toy-agent", messages=message(text), logprobs=True, top_logprobs=3,
        extra_body={"srice": {"trace": True}},
    )  # fmt: skip
    expected = in_process.answer(str(EXAMPLE), QUESTION, ["red", "blue", "green"])
    extra = reply.model_extra["srice"]
    assert reply.choices[0].message.content == expected.answer in ("A", "B", "C")
    assert extra["options"] == ["red", "blue", "green"] and extra["answer_text"] == expected.answer_text
    assert [p["name"] for p in extra["trace"]] == [p.name for p in expected.trace]
    tokens = reply.choices[0].logprobs.content
    chosen = expected.pathway_trace(expected.pathway)
    assert [t.token for t in tokens] == [t.token for t in chosen.tokens]
    assert all(len(t.top_logprobs) == 3 for t in tokens)


def test_streaming_gives_the_stages_then_the_answer_then_done(agent_server):
    with httpx.stream("POST", f"{agent_server.url}/v1/chat/completions", timeout=120, json={
        "model": "srice-toy-agent", "messages": message(), "stream": True,
        "stream_options": {"include_usage": True},
    }) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    stages = [c["srice"]["stage"] for c in chunks if "stage" in c.get("srice", {})]
    assert stages[0] == "direct answer and region proposal" and "selection" in stages
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] == "stop")
    assert content == final["srice"]["answer_text"] and final["srice"]["pathway"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0

    # the SDK reads the same stream
    client = agent_server.client()
    stream = client.chat.completions.create(model="srice-toy-agent", messages=message(), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == content


def test_concurrent_async_clients_are_answered_in_shared_batches(agent_server, in_process):
    before = _metric(agent_server, "srice_batch_size_count")

    async def ask_all():
        client = openai.AsyncOpenAI(base_url=f"{agent_server.url}/v1", api_key="none")
        questions = [
            QUESTION,
            "Is there a red triangle?",
            "What colour is the star?",
            "Is there a square?",
        ] * 2
        replies = await asyncio.gather(*(
            client.chat.completions.create(model="srice-toy-agent", messages=message(q)) for q in questions
        ))  # fmt: skip
        return questions, replies

    questions, replies = asyncio.run(ask_all())
    batches = _metric(agent_server, "srice_batch_size_count") - before
    assert batches < len(questions)  # micro-batched: fewer agent batches than clients
    expected = in_process.answer_batch([__import__("srice").Item(str(EXAMPLE), q) for q in questions])
    assert [r.choices[0].message.content for r in replies] == [a.answer for a in expected]
    metrics = httpx.get(f"{agent_server.url}/metrics").text
    assert 'srice_requests_total{status="200"}' in metrics and "srice_queue_depth" in metrics
    assert "srice_model_calls_total" in metrics and "srice_pathway_wins_total" in metrics


def _metric(server: AgentServer, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "does not exist"),
        ({"messages": [{"role": "user", "content": "no image here"}]}, openai.BadRequestError,
         "exactly one image"),
        ({"messages": message(image="data:image/png;base64," + base64.b64encode(b"not a png").decode())},
         openai.BadRequestError, "not a readable image"),
        ({"messages": message(image="https://example.com/a.png")}, openai.BadRequestError, "not fetched"),
        ({"messages": message("")}, openai.BadRequestError, "question is empty"),
        ({"extra_body": {"srice": {"tools": ["sam"]}}}, openai.BadRequestError, "not loaded"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_with_its_reason(agent_server, call, error, says):
    arguments = {"model": "srice-toy-agent", "messages": message()} | call
    with pytest.raises(error) as caught:
        agent_server.client(max_retries=0).chat.completions.create(**arguments)
    assert says in caught.value.message


def test_early_exit_per_request_works_or_says_why_not(agent_server):
    from srice.builtin.toy_bundle import TOY_DIR
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    threshold = UncertaintyCalibration.load(TOY_DIR / "calib" / "uncertainty.json").early_exit
    client = agent_server.client(max_retries=0)
    arguments = {
        "model": "srice-toy-agent",
        "messages": message(),
        "extra_body": {"srice": {"early_exit": True}},
    }
    if threshold is None:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**arguments)
        assert "no early-exit threshold" in caught.value.message
    else:
        extra = client.chat.completions.create(**arguments).model_extra["srice"]
        assert extra["early_exit"] == (extra["uncertainty"] <= threshold)


def test_an_api_key_is_required_when_set_and_a_full_queue_answers_429(toy_vllm):
    server = AgentServer("--variant", "toy", "--server", toy_vllm.url, "--tools", "yolo",
                         "--api-key", "s3cret", "--max-batch", "1", "--max-queue", "1",
                         "--batch-wait-ms", "0")  # fmt: skip
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong", max_retries=0).models.list()
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        assert httpx.get(f"{server.url}/health").status_code == 200  # open: a load balancer's probe
        client = server.client(api_key="s3cret", max_retries=0)
        outcomes = []

        def ask():
            try:
                client.chat.completions.create(model="srice-toy-agent", messages=message())
                outcomes.append("ok")
            except openai.RateLimitError as e:
                outcomes.append(f"429: {e.message}")

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert "ok" in outcomes and any(o.startswith("429") and "busy" in o for o in outcomes), outcomes
    finally:
        server.stop()


def test_a_client_that_disconnects_gives_up_its_question(agent_server):
    """Both agent workers busy with a question each; a third question's client leaves while it waits."""
    before = _metric(agent_server, "srice_batch_size_sum")
    slow = [
        threading.Thread(
            target=lambda: agent_server.client().chat.completions.create(
                model="srice-toy-agent", messages=message()
            )
        )  # fmt: skip
        for _ in range(2)
    ]
    for thread in slow:
        thread.start()
        time.sleep(0.8)  # past the batching window: this question's batch is running
    leaving = {"model": "srice-toy-agent", "messages": message("Is there a red star?")}
    with pytest.raises(httpx.TimeoutException):  # leaves while its question waits behind the others
        httpx.post(f"{agent_server.url}/v1/chat/completions", timeout=0.5, json=leaving)
    for thread in slow:
        thread.join(120)
    time.sleep(1.5)
    assert _metric(agent_server, "srice_batch_size_sum") - before == 2


def test_sigterm_drains_the_request_in_flight_and_stops_its_own_vllm():
    server = AgentServer("--variant", "toy", "--tools", "yolo")
    replies = []
    asking = threading.Thread(target=lambda: replies.append(server.client().chat.completions.create(
        model="srice-toy-agent", messages=message())))  # fmt: skip
    asking.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    asking.join(120)
    server.process.wait(60)
    assert replies and replies[0].choices[0].message.content  # answered, not cut off
    log = server.process.stderr.read()
    ready = next(line for line in log.splitlines() if "vllm serve ready at" in line)
    port = ready.split("127.0.0.1:")[1].split()[0].rstrip("/")
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "vllm serve outlived the agent server"


def test_the_model_backend_down_is_a_503(tmp_path):
    from srice.serving.launcher import server_for
    from srice.serving.variants import get_variant

    with server_for(get_variant("toy"), log_path=tmp_path / "toy.log") as vllm:
        server = AgentServer("--variant", "toy", "--server", vllm.url, "--tools", "")
        try:
            vllm.stop()
            assert httpx.get(f"{server.url}/health", timeout=30).status_code == 503
            with pytest.raises(openai.InternalServerError) as caught:
                server.client(max_retries=0, timeout=120).chat.completions.create(
                    model="srice-toy-agent", messages=message())  # fmt: skip
            assert caught.value.status_code == 503 and "unavailable" in caught.value.message
        finally:
            server.stop()


def test_the_image_limit_and_local_paths(toy_vllm, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "small.png")
    server = AgentServer(
        "--variant", "toy", "--server", toy_vllm.url, "--tools", "", "--image-folder", str(tmp_path)
    )  # fmt: skip
    try:
        client = server.client(max_retries=0)
        reply = client.chat.completions.create(model="srice-toy-agent", messages=message(image="small.png"))
        assert reply.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="srice-toy-agent", messages=message(image=str(EXAMPLE)))
        buffer = io.BytesIO()
        Image.new("RGB", (5000, 5000)).save(buffer, "PNG")
        huge = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="srice-toy-agent", messages=message(image=huge))
        assert "too large" in caught.value.message
    finally:
        server.stop()


def test_readme_client_example_runs_as_written(agent_server, in_process):
    """The README's openai SDK block, run as a user would (only the server URL is this test's)."""
    from conftest import run_readme_python

    stdout = run_readme_python(
        "OpenAI-compatible API", "http://127.0.0.1:8001/v1", f"{agent_server.url}/v1", 300
    )
    answer, us = stdout.strip().splitlines()[-1].rsplit(" ", 1)
    expected = in_process.answer(str(EXAMPLE), QUESTION)
    assert answer == expected.answer and float(us) == expected.uncertainty


def test_lmms_eval_on_the_agent_server_gives_what_srice_eval_selects(agent_server, toy_vllm, tmp_path):
    """lmms-eval 0.7.3, a harness nobody here wrote, with ``--model openai`` pointed at the agent
    server, on the task in benchmarks/lmms_eval_task over a synth split: every sample answered, and
    each prediction equal to what ``srice eval`` selects on the same question with the same settings."""
    from srice.builtin.toy_bundle import bundle_kinds

    lmms = ROOT / ".venv-lmms" / "bin" / "python"
    assert lmms.exists(), "env/setup.sh builds .venv-lmms"
    kinds = ",".join(bundle_kinds())
    synth = [
        SRICE,
        "synth",
        "--seed",
        "7",
        "--n",
        "12",
        "--kinds",
        kinds,
        "--out",
        str(tmp_path / "srice-synth"),
    ]
    subprocess.run(synth, check=True, capture_output=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OPENAI_API_KEY="anything", HF_HOME=str(tmp_path / "hf"))  # fmt: skip
    model_args = f"model_version=srice-toy-agent,base_url={agent_server.url}/v1,timeout=600,max_retries=1"
    r = subprocess.run(
        [str(lmms), "-m", "lmms_eval", "eval", "--model", "openai", "--model_args", model_args,
         "--tasks", "srice_synth", "--include_path", str(ROOT / "benchmarks" / "lmms_eval_task"),
         "--batch_size", "1", "--output_path", "out", "--log_samples"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]  # lmms-eval exits 0 even on failures: check its files
    [samples_file] = (tmp_path / "out").rglob("*_samples_srice_synth.jsonl")
    [results_file] = (tmp_path / "out").rglob("*_results.json")
    samples = sorted(
        (json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"]
    )
    assert len(samples) == 12
    assert not [s for s in samples if "LMMS_EVAL_REQUEST_FAILED" in json.dumps(s)], r.stderr[-2000:]
    score = json.loads(results_file.read_text())["results"]["srice_synth"]["exact_match,none"]

    out = tmp_path / "eval"
    subprocess.run([SRICE, "eval", "--variant", "toy", "--server", toy_vllm.url, "--pathways", "yolo,zoom",
                    "--data", str(tmp_path / "srice-synth" / "questions.jsonl"), "--out", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    selected = [rec["answer"] for rec in records]
    predicted = [
        s["filtered_resps"] if isinstance(s["filtered_resps"], str) else s["filtered_resps"][0]
        for s in samples
    ]
    assert predicted == selected
    assert score == pytest.approx(sum(s["exact_match"] for s in samples) / 12)
