"""The serving layer against a real ``vllm serve`` of the tiny model (see conftest.py)."""

import pytest

from conftest import scene
from srice.agent.prompts import direct_request
from srice.serving.openai_http import OpenAIBackend, to_openai_messages

QUESTIONS = ["What colour is the square?", "Is there a circle?", "How many objects are there?"]


def _requests(n: int, max_tokens: int = 8):
    return [
        direct_request(scene(seed=i), QUESTIONS[i % len(QUESTIONS)], max_tokens=max_tokens, top_logprobs=5)
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def http(vllm_server):
    return OpenAIBackend(vllm_server.url, vllm_server.served_name, timeout=60)


def test_chat_with_image_and_top5_logprobs_matches_official_client(http, vllm_server):
    from openai import OpenAI

    request = _requests(1)[0]
    [completion] = http.generate([request])
    assert completion.text and completion.server == vllm_server.url
    assert completion.prompt_tokens > 10  # the image tokens are in the prompt
    assert len(completion.tokens) == 8 and completion.finish_reason == "length"
    for token in completion.tokens:
        assert len(token.top_logprobs) == 5
        assert token.logprob <= 0 and token.logprob == pytest.approx(
            max(t.logprob for t in token.top_logprobs), abs=1e-6
        )  # greedy: the chosen token is the most likely one
    client = OpenAI(base_url=f"{vllm_server.url}/v1", api_key="unused")
    official = client.chat.completions.create(
        model=vllm_server.served_name,
        messages=to_openai_messages(request),
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    assert official.choices[0].message.content == completion.text
    assert [t.token for t in official.choices[0].logprobs.content] == [t.token for t in completion.tokens]


def test_greedy_tokens_and_logprobs_equal_transformers(http, hf_backend, vllm_server):
    from openai import OpenAI

    requests = _requests(4)
    served = http.generate(requests)
    local = hf_backend.generate(requests)
    client = OpenAI(base_url=f"{vllm_server.url}/v1", api_key="unused")
    for request, s, t in zip(requests, served, local):
        assert s.text == t.text
        assert len(s.tokens) == len(t.tokens)
        for a, b in zip(s.tokens, t.tokens):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-2)
            assert [c.logprob for c in a.top_logprobs] == pytest.approx(
                [c.logprob for c in b.top_logprobs], abs=1e-2
            )
        # token ids from the server, to compare greedy choices exactly rather than by text
        ids = (
            client.chat.completions.create(
                model=vllm_server.served_name,
                messages=to_openai_messages(request),
                max_tokens=8,
                temperature=0,
                logprobs=True,
                extra_body={"return_tokens_as_token_ids": True},
            )
            .choices[0]
            .logprobs.content
        )
        assert [int(x.token.removeprefix("token_id:")) for x in ids] == [x.token_id for x in t.tokens]


def test_sixteen_concurrent_requests_complete_and_in_order(vllm_server):
    backend = OpenAIBackend(vllm_server.url, vllm_server.served_name, concurrency=16, timeout=60)
    requests = _requests(16, max_tokens=6)
    together = backend.generate(requests)
    one_by_one = [backend.generate([r])[0] for r in requests]
    assert len(together) == 16
    assert [c.text for c in together] == [c.text for c in one_by_one]
    assert all(len(c.tokens) == 6 and all(len(t.top_logprobs) == 5 for t in c.tokens) for c in together)
    assert len({c.text for c in together}) > 1  # different inputs, so order is actually checked
