"""Retry, timeout and rejection behaviour of the HTTP backend.

The failures come from small loopback servers written here (a proxy that answers 503 a set number of
times before forwarding to the real vllm serve, and a socket that never answers): a real vLLM cannot
be made to fail on cue.
"""

import http.server
import socket
import threading
import time

import httpx
import pytest

from conftest import scene
from srice.agent.prompts import direct_request
from srice.errors import ServingError
from srice.serving.openai_http import OpenAIBackend


class FlakyProxy(http.server.ThreadingHTTPServer):
    def __init__(self, upstream: str, failures: int):
        self.upstream, self.failures, self.posts = upstream, failures, 0
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        if self.server.posts <= self.server.failures:
            status, payload = 503, b'{"error": "overloaded"}'
        else:
            r = httpx.post(
                self.server.upstream + self.path,
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            status, payload = r.status_code, r.content
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _request():
    return direct_request(scene(seed=1), "What colour is the square?", max_tokens=4)


def test_retries_5xx_then_succeeds(vllm_server):
    proxy = FlakyProxy(vllm_server.url, failures=2)
    try:
        backend = OpenAIBackend(proxy.url, vllm_server.served_name, retries=2, backoff=0.05, timeout=30)
        [completion] = backend.generate([_request()])
    finally:
        proxy.shutdown()
    assert proxy.posts == 3 and len(completion.tokens) == 4


def test_gives_up_after_retries_and_names_the_server(vllm_server):
    proxy = FlakyProxy(vllm_server.url, failures=10)
    try:
        backend = OpenAIBackend(proxy.url, vllm_server.served_name, retries=2, backoff=0.05, timeout=30)
        with pytest.raises(ServingError, match=rf"server {proxy.url} answered 503.*gave up after 3 attempts"):
            backend.generate([_request()])
    finally:
        proxy.shutdown()
    assert proxy.posts == 3


def test_second_url_takes_over_from_a_dead_one(vllm_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
        backend = OpenAIBackend([dead, vllm_server.url], vllm_server.served_name, retries=1, backoff=0.01)
        completions = backend.generate([_request(), _request()])
    assert [c.server for c in completions] == [vllm_server.url, vllm_server.url]


def test_silent_server_times_out_instead_of_hanging(vllm_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepts connections at the TCP level, never answers
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        backend = OpenAIBackend(url, "m", retries=1, backoff=0.1, timeout=1.0)
        began = time.monotonic()
        with pytest.raises(ServingError, match=rf"server {url} timed out after 1 s"):
            backend.generate([_request()])
    assert time.monotonic() - began < 10


def test_client_errors_are_not_retried(vllm_server):
    proxy = FlakyProxy(vllm_server.url, failures=0)
    try:
        backend = OpenAIBackend(proxy.url, "no-such-model", retries=3, backoff=0.05)
        with pytest.raises(ServingError, match=r"refused the request \(404\)"):  # systemic: stop
            backend.generate([_request()])
    finally:
        proxy.shutdown()
    assert proxy.posts == 1


def test_empty_batch_makes_no_call():
    assert OpenAIBackend("http://127.0.0.1:9", "m").generate([]) == []


def test_generate_works_inside_a_running_event_loop(vllm_server):
    import asyncio

    backend = OpenAIBackend(vllm_server.url, vllm_server.served_name)

    async def caller():
        return backend.generate([_request()])  # sync API from async code (e.g. a Gradio handler)

    assert len(asyncio.run(caller())[0].tokens) == 4
