"""The Gradio demo end to end: ``srice demo`` started as a user starts it, against the session's real
``vllm serve`` of the tiny model, driven by gradio_client and by a real headless Chromium.

Nothing is mocked. The tiny model's answers are gibberish, so the tests check what the page must
show whatever the model says: every pathway, its regions and the exact picture the model was shown,
answers and US consistent with the trace, streamed stages, clear messages for bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import run_srice
from srice.agent import Agent, AgentConfig, Item
from srice.builder.toolbox import build_tools
from srice.images import check_question, load_image
from srice.serving.openai_http import OpenAIBackend

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "app" / "browser"
ARTIFACT = ROOT / "test-artifacts" / "demo.png"
EXAMPLES = ROOT / "demos" / "examples"
EXAMPLE = EXAMPLES / "tiny_triangle.png"
QUESTION = "What colour is the triangle?"
TOOLS = ("yolo", "zoom")
STAGES = ("direct answer and region proposal", "tools: yolo, zoom", "tool pathway answers", "selection")


@dataclass
class Demo:
    url: str
    port: int
    variant: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(vllm_server, tiny_variant, tmp_path_factory):
    """``srice demo`` in its own process on a free port, using the session's vllm serve."""
    folder = tmp_path_factory.mktemp("demo")
    port, log = _free_port(), folder / "demo.log"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(folder / "gradio")}
    command = [
        sys.executable, "-m", "srice", "demo", "--variant", tiny_variant.name, "--server", vllm_server.url,
        "--port", str(port), "--tools", ",".join(TOOLS),
    ]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"srice demo exited {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"srice demo did not come up:\n{log.read_text()}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield Demo(url, port, tiny_variant.name, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _client(demo: Demo):
    from gradio_client import Client

    return Client(demo.url, verbose=False)


def _ask(demo: Demo, image, question: str, options: str = "", tools=TOOLS):
    from gradio_client import handle_file

    job = _client(demo).submit(
        handle_file(str(image)) if image else None, question, options, demo.variant, list(tools),
        api_name="/answer",
    )  # fmt: skip
    return job.result(timeout=300), job.outputs()


def _config(demo) -> AgentConfig:
    """The demo agent's settings: the defaults, crops capped at the model's view (``build_agent``)."""
    from srice.builder.agents import view_pixels
    from srice.serving.variants import get_variant

    return AgentConfig(crop_max_pixels=view_pixels(get_variant(demo.variant).model_path()))


def test_gradio_client_end_to_end(demo):
    """One question through the running app: streamed stages, then answer, US, pathway, table,
    and for every tool pathway its calibrated regions and exactly the view the model saw."""
    from srice.agent.trace import PathwayTrace
    from srice.app.demo_page import model_view

    (status, answer, summary, table, gallery, trace), updates = _ask(demo, EXAMPLE, QUESTION)

    statuses = [u[0] for u in updates]
    working = [s for s in statuses if s.startswith("**Working**")]
    assert statuses[-1].startswith("**Done**") and status == statuses[-1]
    for stage in STAGES:  # each stage was on the page while the agent was still working
        assert any(stage in s for s in working), (stage, statuses)
    assert [status.index(stage) for stage in STAGES] == sorted(status.index(stage) for stage in STAGES)

    assert answer and answer == trace["answer"]
    names = [p["name"] for p in trace["trace"]]
    assert names[0] == "direct" and any(n.startswith("yolo") for n in names)
    assert sum(n.startswith("zoom[") for n in names) == 4
    assert trace["pathway"] in names and trace["variant"] == demo.variant and trace["tools"] == list(TOOLS)
    chosen = trace["trace"][names.index(trace["pathway"])]
    assert chosen["answer"] == answer and chosen["uncertainty"]["score"] == trace["uncertainty"]
    assert min(
        (p["uncertainty"]["score"], p["uncertainty"]["tiebreak"]) for p in trace["trace"] if p["uncertainty"]
    ) == (chosen["uncertainty"]["score"], chosen["uncertainty"]["tiebreak"])

    rows = table["data"]
    assert [r[1] for r in rows] == names
    assert [r[1] for r in rows if r[0] == "★"] == [trace["pathway"]]
    for row, p in zip(rows, trace["trace"]):
        assert row[2] == p["answer"]
        assert row[3] == f"{p['uncertainty']['score']:g} ({p['uncertainty']['tiebreak']:.3f})"
    assert f"`{trace['pathway']}`" in summary and f"US): {trace['uncertainty']:g} (" in summary

    shown = [p for p in trace["trace"] if p["name"] != "direct"]
    assert all(p["view_box"] and not p["error"] for p in shown)
    assert len(gallery) == 2 * len(shown)
    image = load_image(EXAMPLE)
    for p, regions, view in zip(shown, gallery[0::2], gallery[1::2]):
        n = len(p["calibrated"]["boxes"])
        assert regions["caption"].endswith(f"{p['name']}: {n} calibrated region{'s' * (n != 1)}")
        assert f"{p['name']}: what the model saw; answer {p['answer']!r}" in view["caption"]
        drawn = Image.open(regions["image"])
        assert max(drawn.size) == 768 and abs(drawn.width / drawn.height - image.width / image.height) < 0.01
        # the page shows exactly the picture the agent sent (test below: model_view is that picture)
        expected = model_view(image, PathwayTrace(p["name"], view_box=tuple(p["view_box"])), _config(demo))
        assert np.array_equal(np.asarray(Image.open(view["image"]).convert("RGB")), np.asarray(expected))


def test_the_view_shown_is_the_view_the_model_was_sent(vllm_server, tiny_variant):
    """``model_view`` rebuilds from the trace the very pixels the agent put in each pathway's request,
    for both visual prompts (zoomed crop, boxes drawn)."""
    from srice.app.demo_page import model_view, pathway_views

    class Recording:
        def __init__(self, backend):
            self.backend, self.name, self.requests = backend, backend.name, []

        def generate(self, requests):
            self.requests.extend(requests)
            return self.backend.generate(requests)

    image = load_image(EXAMPLE)
    for view, names in (("crop", ["yolo", "zoom"]), ("boxes", ["zoom"])):
        backend = Recording(OpenAIBackend(vllm_server.url, tiny_variant.served_name))
        agent = Agent(backend, build_tools(names), config=AgentConfig(view=view))
        [answer] = agent.answer_batch([Item(image, QUESTION)])
        sent = [r.images[1] for r in backend.requests if len(r.images) == 2]  # (full image, view)
        tool_pathways = [p for p in answer.trace if p.name != "direct"]
        assert len(sent) == len(tool_pathways) >= 4
        for p, picture in zip(tool_pathways, sent):
            assert np.array_equal(np.asarray(model_view(image, p, agent.config)), np.asarray(picture)), p.name
        assert [v.trace.name for v in pathway_views(image, answer, agent.config)] == [
            p.name for p in tool_pathways
        ]


def test_bad_input_gets_a_clear_message(demo, tmp_path):
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000), (40, 90, 200)).save(huge)  # 67 KB, 20 megapixels
    cases = [
        (text, QUESTION, "", "not a readable image: notes.png"),
        (huge, QUESTION, "", "image too large: 5000x4000"),
        (EXAMPLE, "   ", "", "question is empty"),
        (EXAMPLE, QUESTION, "red", "at least two distinct options"),
        (EXAMPLE, QUESTION, "red, Red", "at least two distinct options"),
        (None, QUESTION, "", "Upload an image or pick an example"),
    ]
    for image, question, options, message in cases:
        with pytest.raises(AppError) as caught:
            _ask(demo, image, question, options)
        said = str(caught.value)
        assert message in said and "Traceback" not in said and str(tmp_path) not in said, said

    assert "Traceback" not in demo.log.read_text()  # user errors are not bugs: no console noise

    big = tmp_path / "big.png"  # over the 10 MB upload limit: refused before it reaches the app
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    with open(big, "rb") as f:
        refused = httpx.post(f"{demo.url}gradio_api/upload", files={"files": ("big.png", f, "image/png")})
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        _ask(demo, big, QUESTION)


def test_a_path_the_client_did_not_upload_is_refused_in_one_line(demo):
    """gradio refuses a server path named by a client (it was not uploaded); the client gets why, in
    one line, and the console no traceback (it used to get {"error": null} and print one)."""
    before = demo.log.read_text()
    named = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    body = {"data": [named, QUESTION, "", demo.variant, ["zoom"]]}
    event = httpx.post(f"{demo.url}gradio_api/call/answer", json=body).json()["event_id"]
    reply = httpx.get(f"{demo.url}gradio_api/call/answer/{event}", timeout=60).text
    assert "event: error" in reply and "refused: Cannot move /etc/hostname" in reply, reply
    assert "Traceback" not in demo.log.read_text()[len(before) :]


def test_the_upload_cache_is_bounded(vllm_server, tiny_variant, tmp_path):
    """Uploads older than --upload-ttl leave gradio's cache (it once grew by every request)."""
    from gradio_client import Client, handle_file

    port, cache = _free_port(), tmp_path / "gradio"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(cache)}
    command = [sys.executable, "-m", "srice", "demo", "--variant", tiny_variant.name, "--server",
               vllm_server.url, "--port", str(port), "--tools", "", "--upload-ttl", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the demo did not come up"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        client = Client(url, verbose=False)
        for seed in range(3):  # new pictures: a bundled example's cached copy is kept, rightly
            Image.fromarray(np.full((64, 64, 3), 40 * seed, dtype=np.uint8)).save(tmp_path / f"u{seed}.png")
            client.predict(handle_file(str(tmp_path / f"u{seed}.png")), QUESTION, "", tiny_variant.name, [],
                           api_name="/answer")  # fmt: skip
        uploads = [p for p in cache.rglob("u*.png") if p.is_file()]
        assert uploads, "nothing was uploaded"
        deadline = time.monotonic() + 30
        while any(p.exists() for p in uploads) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in uploads), "uploads outlived --upload-ttl"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_demo_checks_its_model_server_before_it_opens():
    r = run_srice("demo", "--variant", "tiny", "--server", "http://127.0.0.1:9", "--tools", "")
    assert (
        r.returncode == 1
        and "srice: error: the model server at http://127.0.0.1:9 does not answer" in r.stderr
    )
    assert "Traceback" not in r.stderr and "srice demo at" not in r.stderr


def test_served_on_localhost_only_with_analytics_off(demo):
    config = httpx.get(f"{demo.url}config").json()
    assert config["analytics_enabled"] is False
    assert config["max_file_size"] == 10 * 1024 * 1024
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == demo.port:  # 0A: LISTEN
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], listening  # 127.0.0.1, nothing else
    assert f"srice demo at http://127.0.0.1:{demo.port}" in demo.log.read_text()


def test_bundled_examples_load():
    rows = json.loads((EXAMPLES / "examples.json").read_text())
    assert len(rows) >= 2
    for row in rows:
        image = load_image(EXAMPLES / row["image"])
        assert min(image.size) >= 64 and (EXAMPLES / row["image"]).stat().st_size < 100_000
        check_question(row["question"])
        options = [o.strip() for o in row["options"].split(",") if o.strip()]
        assert not options or row["answer"] in options


def test_cli_help_and_unknown_variant():
    helped = run_srice("demo", "--help")
    assert helped.returncode == 0
    for flag in ("--variant", "--host", "--port", "--server", "--backend", "--tools", "--calib"):
        assert flag in helped.stdout
    assert "127.0.0.1" in helped.stdout
    wrong = run_srice("demo", "--variant", "no-such-variant")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [wrong.stderr.strip()]  # one line, no traceback
    assert "unknown variant 'no-such-variant'" in wrong.stderr


def _browser_missing() -> str | None:
    if not shutil.which("node"):
        return "node"
    if not Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/app/browser/node_modules/playwright-core"
    return None


def test_real_browser_uploads_asks_and_sees_every_pathway(demo):
    """Headless Chromium: upload, an empty question (message), then ask; the answer and the pathway
    pictures appear, stages stream, nothing leaves the machine. Screenshot: test-artifacts/demo.png."""
    missing = _browser_missing()
    if missing and os.environ.get("SRICE_SKIP_BROWSER") == "1":
        pytest.skip(f"{missing} not installed and SRICE_SKIP_BROWSER=1")
    assert not missing, f"{missing} not found: run bash env/browser.sh (or set SRICE_SKIP_BROWSER=1)"
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.unlink(missing_ok=True)
    result = subprocess.run(
        ["node", "demo_page.js", demo.url, str(EXAMPLE), QUESTION, str(ARTIFACT)],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\ndemo screenshot: {ARTIFACT} (answered in {seen['seconds']:.1f} s)")

    assert seen["answer"].strip()
    assert "question is empty" in seen["empty_question_message"]
    assert any(s.startswith("Working") for s in seen["status_history"]), seen["status_history"]
    assert seen["status_history"][-1].startswith("Done")
    images = seen["pathway_images"]
    # yolo's best region alone (top_views=1; its union spans most of the example, so it is no zoom and
    # not shown) and 4 zoom cells: each with its regions drawn and the view the model saw
    assert len(images) == 10 and all(i["width"] > 0 and i["height"] > 0 for i in images)
    assert [i["alt"] for i in images][0].startswith("yolo[0]")
    views = [i for i in images if "what the model saw" in i["alt"]]
    cap = _config(demo).crop_max_pixels or 448 * 448  # no crop larger than the model's view
    assert len(views) == 5 and all(max(i["width"], i["height"]) <= 448 for i in views)
    assert all(i["width"] * i["height"] <= cap for i in views)
    assert "Chosen pathway" in seen["summary"] and "★" in seen["table"] and seen["answer"] in seen["table"]
    assert seen["external_requests"] == [], seen["external_requests"]
    with Image.open(ARTIFACT) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 1000
