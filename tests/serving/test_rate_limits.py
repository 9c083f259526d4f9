"""Rate limits and other transient refusals, retried as the ``openai`` SDK retries them.

The server is a loopback ``http.server`` written here: no real vLLM can be made to answer 429 (or
408, 409, a 503 with ``Retry-After``) on cue, and the point of these tests is when and how the client
comes back. Its 200 is a chat completion in vLLM's shape, so the answer the client returns can be told
from any other. Every test keeps the server's timeline (when each request came, what it was answered).
"""

from __future__ import annotations

import email.utils
import http.server
import json
import random
import threading
import time

import pytest

from srice.agent.prompts import direct_request
from srice.errors import ServingError
from srice.serving.openai_http import OpenAIBackend

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "blue"},
        "logprobs": {"content": [{"token": "blue", "logprob": -0.1, "top_logprobs": [
            {"token": "blue", "logprob": -0.1}, {"token": "red", "logprob": -2.4}]}]},
    }],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1},
}  # fmt: skip


class Gate(http.server.ThreadingHTTPServer):
    """Answers POSTs with ``rule(body, n)`` (status, headers), n counting from 1, or the 200 above
    when the rule gives None; ``timeline`` holds (seconds since start, status) per request."""

    def __init__(self, rule):
        self.rule, self.timeline, self.began, self.lock = rule, [], time.monotonic(), threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gaps(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.timeline, self.timeline[1:])]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        with server.lock:
            n = len(server.timeline) + 1
            verdict = server.rule(body, n)
            status, headers = verdict if verdict else (200, {})
            server.timeline.append((round(time.monotonic() - server.began, 3), status))
        payload = json.dumps(ANSWER if status == 200 else {"error": {"message": f"status {status}"}}).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _request(question: str = "What colour is the square?"):
    from conftest import scene

    return direct_request(scene(seed=1), question, max_tokens=4)


def _first(status: int, headers: dict | None = None, times: int = 1):
    return lambda body, n: (status, headers or {}) if n <= times else None


def test_429_with_retry_after_is_waited_for_and_the_answer_is_the_200s():
    """The server asks for 1 s; the client's own backoff would be 0.01 s, so a second request within
    a second means Retry-After was ignored."""
    gate = Gate(_first(429, {"Retry-After": "1"}))
    try:
        backend = OpenAIBackend(gate.url, "m", retries=2, backoff=0.01)
        [completion] = backend.generate([_request()])
    finally:
        gate.shutdown()
    print("timeline (s, status):", gate.timeline)
    assert [status for _, status in gate.timeline] == [429, 200]
    assert 1.0 <= gate.gaps()[0] < 3.0
    assert completion.error is None and completion.text == "blue" and completion.tokens[0].logprob == -0.1
    assert backend.retry_stats() == {"retried": {"429": 1}, "gave_up": {}}


def test_retry_after_as_an_http_date_and_in_milliseconds():
    def dated(body, n):  # whole seconds, written as the 503 is sent: 1.5 to 2.5 s from then
        return (
            (503, {"Retry-After": email.utils.formatdate(time.time() + 2.5, usegmt=True)}) if n == 1 else None
        )

    for rule, low, high in ((dated, 1.2, 4.0), (_first(503, {"retry-after-ms": "600"}), 0.6, 2.5)):
        gate = Gate(rule)
        try:
            [completion] = OpenAIBackend(gate.url, "m", retries=1, backoff=0.01).generate([_request()])
        finally:
            gate.shutdown()
        print("timeline (s, status):", gate.timeline)
        assert completion.text == "blue" and low <= gate.gaps()[0] < high, gate.timeline


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    gate = Gate(_first(status, times=2))
    try:
        backend = OpenAIBackend(gate.url, "m", retries=2, backoff=0.01)
        [completion] = backend.generate([_request()])
    finally:
        gate.shutdown()
    assert [s for _, s in gate.timeline] == [status, status, 200] and completion.text == "blue"
    assert backend.retry_stats()["retried"] == {str(status): 2}


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refusal_of_the_request_itself_is_not_retried_and_is_no_transient_failure(status):
    from srice.serving.openai_http import is_transient

    gate = Gate(lambda body, n: (status, {}) if b"bad" in body else None)
    try:
        backend = OpenAIBackend(gate.url, "m", retries=3, backoff=0.01)
        bad, good = backend.generate([_request("bad question"), _request()])
    finally:
        gate.shutdown()
    assert sorted(s for _, s in gate.timeline) == [200, status]  # one request each, no retry
    assert f"({status})" in bad.error and not is_transient(bad.error) and good.text == "blue"


def test_the_servers_x_should_retry_header_is_obeyed():
    """As in the SDK: ``x-should-retry: false`` stops a retry (a 429 stays a passing failure, which a
    resumed eval redoes), ``true`` makes one of a status that is otherwise final."""
    from srice.serving.openai_http import is_transient

    rules = {b"stop": (429, {"x-should-retry": "false"}), b"again": (400, {"x-should-retry": "true"})}
    seen: dict[bytes, int] = {}

    def rule(body, n):  # each word's first request is refused, its retry (if any) answered
        word = next(w for w in rules if w in body)
        seen[word] = seen.get(word, 0) + 1
        return rules[word] if seen[word] == 1 else None

    gate = Gate(rule)
    try:
        stop, again = OpenAIBackend(gate.url, "m", retries=3, backoff=0.01).generate(
            [_request("stop"), _request("again")]
        )
    finally:
        gate.shutdown()
    assert sorted(s for _, s in gate.timeline) == [200, 400, 429]
    assert "(429)" in stop.error and is_transient(stop.error) and again.text == "blue"


def test_the_reason_reaches_the_completion_only_after_the_retries_are_used_up():
    """One of two requests is refused 429 every time (retry in 0.2 s): it is tried 1 + 2 times,
    0.2 s apart, and only then fails with the last reason, marked transient (a resume redoes it)."""
    from srice.serving.openai_http import is_transient

    gate = Gate(lambda body, n: (429, {"Retry-After": "0.2"}) if b"limited" in body else None)
    try:
        backend = OpenAIBackend(gate.url, "m", retries=2, backoff=0.01)
        limited, fine = backend.generate([_request("limited question"), _request()])
    finally:
        gate.shutdown()
    print("timeline (s, status):", gate.timeline)
    refused = [t for t, s in gate.timeline if s == 429]
    assert len(refused) == 3 and all(b - a >= 0.2 for a, b in zip(refused, refused[1:]))
    assert fine.text == "blue" and fine.error is None
    assert "answered 429" in limited.error and "gave up after 3 attempts" in limited.error
    assert is_transient(limited.error) and limited.text == ""
    assert backend.retry_stats() == {"retried": {"429": 2}, "gave_up": {"429": 1}}


def test_a_batch_refused_throughout_is_a_serving_failure():
    gate = Gate(lambda body, n: (429, {}))
    try:
        with pytest.raises(ServingError, match=r"answered 429.*gave up after 2 attempts"):
            OpenAIBackend(gate.url, "m", retries=1, backoff=0.01).generate([_request(), _request("b")])
    finally:
        gate.shutdown()


def test_the_total_time_limit_bounds_retries_and_waits():
    """A wait the server asks for that would pass the limit is not waited: the request gives up at
    once, saying why, instead of sleeping past its limit."""
    from srice.serving.openai_http import is_transient

    gate = Gate(lambda body, n: (503, {"Retry-After": "30"}) if b"slow" in body else None)
    began = time.monotonic()
    try:
        backend = OpenAIBackend(gate.url, "m", retries=5, backoff=0.01, total_timeout=2.0)
        slow, fine = backend.generate([_request("slow question"), _request()])
    finally:
        gate.shutdown()
    assert time.monotonic() - began < 2.0 and fine.text == "blue"
    assert [s for _, s in gate.timeline].count(503) == 1
    assert "Retry-After 30 s" in slow.error and "2 s limit" in slow.error and is_transient(slow.error)
    # exponential backoff alone also stops at the limit: 10 retries of up to 0.4, 0.8, 1.6 ... s
    gate = Gate(lambda body, n: (503, {}) if b"slow" in body else None)
    began = time.monotonic()
    try:
        backend = OpenAIBackend(gate.url, "m", retries=10, backoff=0.4, total_timeout=1.5)
        slow, fine = backend.generate([_request("slow question"), _request()])
    finally:
        gate.shutdown()
    assert time.monotonic() - began < 3.0 and is_transient(slow.error) and "1.5 s limit" in slow.error


def test_backoff_is_exponential_with_full_jitter():
    """Full jitter: each wait is uniform between 0 and min(cap, base * 2**retry), so clients that
    were refused together do not come back together."""
    from srice.serving.openai_http import backoff_delay

    rng = random.Random(7)
    for retry, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 8.0)):
        waits = [backoff_delay(retry, 0.5, 8.0, rng) for _ in range(2000)]
        assert 0 <= min(waits) < 0.05 * ceiling and 0.95 * ceiling < max(waits) <= ceiling
        assert sum(waits) / len(waits) == pytest.approx(ceiling / 2, rel=0.08)


def test_retry_after_is_read_as_seconds_milliseconds_or_a_date():
    from srice.serving.openai_http import retry_after

    now = time.time()
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": email.utils.formatdate(now + 10, usegmt=True)}) == pytest.approx(
        10, abs=1.5
    )
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    assert retry_after({"retry-after": "nan"}) is None and retry_after({"retry-after": "-3"}) is None
