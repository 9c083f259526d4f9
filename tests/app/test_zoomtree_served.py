"""The zoom tree with the real toy behind a real ``vllm serve``: its search stays within its budget,
records its path, and answers the same through the Python API, ``srice eval`` and the agent server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_agent_server import AgentServer

from conftest import run_srice
from srice.tools.zoomtree import ZoomTreeConfig


@pytest.fixture(scope="module")
def tiny_questions(tmp_path_factory):
    """Open questions about tiny targets, the kinds the toy learned."""
    from srice.builtin.toy_bundle import bundle_kinds
    from srice.synth import SynthKnobs, generate

    folder = tmp_path_factory.mktemp("zoomtree") / "synth"
    generate(folder, seed=5, n=4, knobs=SynthKnobs(kinds=bundle_kinds(), tiny_fraction=1.0, mc_fraction=0.0))
    return folder / "questions.jsonl"


def _path_is_consistent(search: list[dict], view_box) -> list[dict]:
    """The chosen nodes: one per depth from the root, each the child of the one before, the last
    the view shown."""
    chosen = [n for n in search if n["chosen"]]
    assert [n["depth"] for n in chosen] == list(range(len(chosen)))
    for parent, child in zip(chosen, chosen[1:]):
        assert search[child["parent"]] is parent or search[child["parent"]] == parent
    assert tuple(chosen[-1]["box"]) == tuple(view_box)
    return chosen


def test_the_tree_answers_alike_through_the_python_api_srice_eval_and_the_agent_server(
    toy_server, tiny_questions, tmp_path
):
    from srice.agent.loop import Item
    from srice.builder.agents import build_agent
    from srice.eval.data import load_items
    from srice.serving.openai_http import OpenAIBackend

    items = load_items(tiny_questions)
    backend = OpenAIBackend(toy_server.url, toy_server.served_name, timeout=120)
    agent = build_agent(backend, "toy", ["zoomtree"], log=lambda text: None)
    answers = agent.answer_batch([Item(i.image, i.question, i.options, i.id) for i in items])
    budget = ZoomTreeConfig().max_calls
    for a in answers:
        p = a.pathway_trace("zoomtree")
        assert p.ok, p.error
        scored = sum(n["score"] is not None for n in p.search)
        assert 0 < scored <= budget and a.mllm_calls == 2 + scored + 1  # direct, region, search, answer
        _path_is_consistent(p.search, p.view_box)

    out = tmp_path / "run"
    r = run_srice("eval", "--variant", "toy", "--server", toy_server.url, "--data", str(tiny_questions),
                  "--pathways", "zoomtree", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (out / "records.jsonl").read_text().splitlines()
    records = {r["id"]: r for r in map(json.loads, lines)}
    summary = json.loads((out / "summary.json").read_text())
    assert "zoomtree" in json.dumps(summary)  # its own column
    for item, a in zip(items, answers):
        record = records[item.id]
        p = a.pathway_trace("zoomtree")
        assert (record["answer"], record["pathway"]) == (a.answer, a.pathway)
        assert record["mllm_calls"] == a.mllm_calls
        assert record["pathways"]["zoomtree"]["search"] == p.search
        assert record["pathways"]["zoomtree"]["view_box"] == list(p.view_box)

    server = AgentServer("--variant", "toy", "--server", toy_server.url, "--tools", "zoomtree")
    try:
        client = server.client()
        for item, a in zip(items, answers):
            picture = "data:image/png;base64," + base64.b64encode(Path(item.image).read_bytes()).decode()
            content = [{"type": "image_url", "image_url": {"url": picture}},
                       {"type": "text", "text": item.question}]  # fmt: skip
            reply = client.chat.completions.create(
                model="srice-toy-agent", messages=[{"role": "user", "content": content}],
                extra_body={"srice": {"trace": True}},
            )  # fmt: skip
            extra = reply.model_extra["srice"]
            assert reply.choices[0].message.content == a.answer and extra["pathway"] == a.pathway
            [tree] = [p for p in extra["trace"] if p["name"] == "zoomtree"]
            assert tree["search"] == a.pathway_trace("zoomtree").search
    finally:
        server.stop()
