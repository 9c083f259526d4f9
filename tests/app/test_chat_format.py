"""Reading OpenAI chat requests into agent questions, and micro-batching them: no server needed."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import pytest

from srice.agent import Answer, Item
from srice.app import chat
from srice.app.batching import Job, MicroBatcher, QueueFull
from srice.app.server_config import BatchingConfig, Limits, Settings

DEFAULTS = Settings(tools=("yolo",), top_views=1, early_exit=False, max_tokens=16, temperature=0.0)
PNG = base64.b64encode(b"\x89PNG not really").decode()


def body(text="What colour is the star?", *, image=f"data:image/png;base64,{PNG}", **extra):
    content = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    return {"model": "srice-toy-agent", "messages": [{"role": "user", "content": content}], **extra}


def parse(b, limits=Limits()):
    return chat.parse_chat(
        b, model="srice-toy-agent", tools=("yolo", "zoom"), defaults=DEFAULTS, limits=limits
    )


@pytest.mark.parametrize(
    ("text", "question", "options"),
    [
        # lmms-eval / VLMEvalKit style: options as lines after the question, then the instruction
        ("What colour is the star?\nA. red\nB. blue\nC. green\nAnswer with the option's letter from the "
         "given choices directly.", "What colour is the star?", ("red", "blue", "green")),
        ("What colour?\n(A) red\n(B) blue", "What colour?", ("red", "blue")),
        ("What colour?\nA) red\nB) blue\n", "What colour?", ("red", "blue")),
        # open questions keep their text; the harness's instruction goes (the agent adds its own)
        ("What is written on the sign?\nAnswer the question using a single word or phrase.",
         "What is written on the sign?", None),
        # not options: letters out of order, a single option, or text after the list
        ("Which?\nB. red\nA. blue", "Which?\nB. red\nA. blue", None),
        ("Grade A. excellent\nor not?", "Grade A. excellent\nor not?", None),
        ("Which?\nA. red\nB. blue\nExplain why.", "Which?\nA. red\nB. blue\nExplain why.", None),
    ],
)  # fmt: skip
def test_multiple_choice_is_read_the_way_harnesses_send_it(text, question, options):
    assert chat.split_options(text) == (question, options)


def test_a_valid_request_gives_the_question_image_and_settings():
    r = parse(body(max_tokens=8, temperature=0.0, logprobs=True, top_logprobs=3, srice={"tools": ["zoom"]}))
    assert r.question == "What colour is the star?" and r.options is None
    assert r.image == base64.b64decode(PNG)
    assert r.settings == Settings(("zoom",), 1, False, 8, 0.0)
    assert r.logprobs and r.top_logprobs == 3 and not r.stream
    explicit = parse(body("Which colour?", srice={"options": ["red", "blue"]}))
    assert explicit.options == ("red", "blue") and explicit.question == "Which colour?"
    plain = parse({"model": "srice-toy-agent", "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": [{"type": "image_url", "image_url": f"data:image/png;base64,{PNG}"},
                                     {"type": "text", "text": "Is there a star?"}]}]})  # fmt: skip
    assert plain.question == "Is there a star?"


@pytest.mark.parametrize(
    ("request_body", "status", "says"),
    [
        ("not an object", 400, "JSON object"),
        (body() | {"model": "gpt-4o"}, 404, "does not exist"),
        (body(image=None), 400, "exactly one image"),
        (body() | {"messages": [body()["messages"][0]] * 2}, 400, "one user message"),
        (body() | {"messages": [{"role": "assistant", "content": "hi"}, body()["messages"][0]]}, 400,
         "multi-turn"),
        (body(image="https://example.com/a.png"), 400, "not fetched"),
        (body(image="/etc/passwd"), 400, "local image paths are not allowed"),
        (body(image="data:image/png;base64,@@@"), 400, "base64"),
        (body(image="data:image/png,rawbytes"), 400, "base64"),
        (body(""), 400, "question is empty"),
        (body(n=2), 400, "n=1"),
        (body(max_tokens=0), 400, "max_tokens"),
        (body(max_tokens=10**6), 400, "max_tokens"),
        (body(temperature=5), 400, "temperature"),
        (body(stream="yes"), 400, "stream"),
        (body(srice={"tools": ["sam"]}), 400, "not loaded"),
        (body(srice={"unknown": 1}), 400, "srice must be"),
        (body(srice={"options": "red,blue"}), 400, "srice.options"),
        (body() | {"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, "unsupported"),
    ],
)  # fmt: skip
def test_bad_requests_are_openai_style_errors_with_a_reason(request_body, status, says):
    with pytest.raises(chat.ApiError) as caught:
        parse(request_body)
    assert caught.value.status == status and says in caught.value.message
    error = caught.value.body()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] == caught.value.message


def test_image_bytes_and_local_paths_are_bounded(tmp_path):
    big = base64.b64encode(b"x" * 2000).decode()
    with pytest.raises(chat.ApiError) as caught:
        parse(body(image=f"data:image/png;base64,{big}"), Limits(max_image_bytes=1000))
    assert caught.value.status == 413
    (tmp_path / "ok.png").write_bytes(b"x")
    limits = Limits(image_folder=tmp_path)
    assert parse(body(image="ok.png"), limits).image == tmp_path / "ok.png"
    assert parse(body(image=f"file://{tmp_path}/ok.png"), limits).image == tmp_path / "ok.png"
    for outside in ("../escape.png", "/etc/passwd", f"{tmp_path}/../x.png"):
        with pytest.raises(chat.ApiError) as caught:
            parse(body(image=outside), limits)
        assert caught.value.status == 403


def test_the_completion_carries_the_answer_usage_and_sriceS_account():
    from srice.agent.trace import PathwayTrace
    from srice.agent.uncertainty import Uncertainty
    from srice.serving.types import TokenLogprob

    u = Uncertainty(score=2.0, tiebreak=0.3, prediction_set=("B", "A"), candidates=(), method="lac")
    token = TokenLogprob("B", -0.1, (TokenLogprob("B", -0.1), TokenLogprob("A", -2.5)))
    answer = Answer("Which?", ("red", "blue"), answer="B", uncertainty=2.0, pathway="yolo[0]",
                    trace=[PathwayTrace("direct"), PathwayTrace("yolo[0]", uncertainty=u, tokens=(token,)),
                           PathwayTrace("zoom", error="tool timed out", error_kind="timeout")],
                    mllm_calls=4, prompt_tokens=400, completion_tokens=6)  # fmt: skip
    request = chat.ChatRequest(b"", "Which?", ("red", "blue"), DEFAULTS, logprobs=True, top_logprobs=1)
    out = chat.completion_json(answer, request, "srice-toy-agent", "chatcmpl-1")
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "B"}
    assert out["usage"] == {"prompt_tokens": 400, "completion_tokens": 6, "total_tokens": 406}
    s = out["srice"]
    assert s["answer_text"] == "blue" and s["prediction_set"] == ["B", "A"] and s["model_calls"] == 4
    assert (
        s["failed_pathways"] == {"zoom": {"kind": "timeout", "error": "tool timed out"}} and "trace" not in s
    )
    [lp] = out["choices"][0]["logprobs"]["content"]
    assert lp["token"] == "B" and [t["token"] for t in lp["top_logprobs"]] == ["B"]


# -- micro-batching -------------------------------------------------------------------------------


def _answer(item: Item) -> Answer:
    return Answer(item.question, None, answer=item.question.upper())


def test_questions_that_arrive_together_share_one_batch_and_full_queues_refuse():
    batches, release = [], threading.Event()

    def run(settings, items, stage):
        stage("direct answer")
        release.wait(5)
        batches.append((settings, [i.question for i in items]))
        return [_answer(i) for i in items]

    async def main():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(run, BatchingConfig(max_batch=4, wait=0.2, max_queue=5))
        batcher.start()
        stages = []
        jobs = [Job(Item(b"", f"q{k}"), "s", loop, loop.create_future(), stages.append) for k in range(4)]
        jobs.append(Job(Item(b"", "other"), "t", loop, loop.create_future()))
        for job in jobs:
            batcher.submit(job)
        await asyncio.sleep(0.5)  # the first batch (4 equal settings) is running, "other" waits
        more = [Job(Item(b"", f"w{k}"), "s", loop, loop.create_future()) for k in range(5)]
        with pytest.raises(QueueFull):
            for job in more:
                batcher.submit(job)
        release.set()
        answers = await asyncio.gather(*(j.future for j in jobs))
        await asyncio.sleep(0.3)
        batcher.stop()
        return answers, stages

    answers, stages = asyncio.run(main())
    assert [a.answer for a in answers] == ["Q0", "Q1", "Q2", "Q3", "OTHER"]
    assert batches[0] == ("s", ["q0", "q1", "q2", "q3"])  # one batch across four clients
    assert ("t", ["other"]) in batches  # other settings never share a batch
    assert stages.count("direct answer") == 4  # every client of the batch hears its stages


def test_a_client_that_left_before_its_batch_is_not_answered():
    ran = []

    def run(settings, items, stage):
        ran.extend(i.question for i in items)
        time.sleep(0.3)
        return [_answer(i) for i in items]

    async def main():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(run, BatchingConfig(max_batch=1, wait=0.0, max_queue=8))
        batcher.start()
        first = Job(Item(b"", "first"), "s", loop, loop.create_future())
        gone = Job(Item(b"", "gone"), "s", loop, loop.create_future())
        batcher.submit(first)
        batcher.submit(gone)
        gone.cancelled.set()
        await first.future
        await asyncio.sleep(0.5)
        batcher.stop()

    asyncio.run(main())
    assert ran == ["first"]


def test_a_failing_batch_fails_each_of_its_questions():
    from srice.errors import ServingError

    def run(settings, items, stage):
        raise ServingError("server http://127.0.0.1:1 unreachable")

    async def main():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(run, BatchingConfig(max_batch=4, wait=0.05))
        batcher.start()
        jobs = [Job(Item(b"", f"q{k}"), "s", loop, loop.create_future()) for k in range(3)]
        for job in jobs:
            batcher.submit(job)
        results = await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)
        batcher.stop()
        return results

    assert all(isinstance(r, ServingError) for r in asyncio.run(main()))
