"""A model server's malformed replies (null messages, NaN logprobs) fail their own request, not the
batch. A scripted loopback server (ours) stands in for the model, since a real one cannot be made to
send these on cue."""

from __future__ import annotations

import http.server
import json
import threading

from conftest import scene

GOOD = "What colour is the square?"


class _Scripted(http.server.ThreadingHTTPServer):
    """An OpenAI-style server that replies as the question asks: a malformed reply on cue."""

    def __init__(self, replies: dict[str, str], default: str):
        self.replies, self.default = replies, default
        super().__init__(("127.0.0.1", 0), _Reply)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Reply(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send(json.dumps({"data": [{"id": "scripted"}]}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        cue = next((k for k in self.server.replies if k in body), None)
        self._send((self.server.replies[cue] if cue else self.server.default).encode())

    def _send(self, payload):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_null_and_nan_replies_fail_their_request_not_the_batch():
    from srice.agent import Agent, Item
    from srice.agent.prompts import direct_request
    from srice.serving.openai_http import OpenAIBackend

    token = {"token": "red", "logprob": -0.1, "top_logprobs": [{"token": "red", "logprob": -0.1}]}
    good = json.dumps({"choices": [{"message": {"content": "red"}, "logprobs": {"content": [token]}}]})
    null = json.dumps({"choices": [{"message": None}]})
    nan = good.replace("-0.1", "NaN")
    server = _Scripted({"NULL-PLEASE": null, "NAN-PLEASE": nan}, good)
    try:
        backend = OpenAIBackend(server.url, "scripted")
        backend.check()
        questions = [GOOD, "NULL-PLEASE?", "NAN-PLEASE?"]
        first, second, third = backend.generate([direct_request(scene(), q) for q in questions])
        assert first.error is None and first.text == "red"
        assert "malformed completion" in second.error and "malformed completion" in third.error
        answers = Agent(backend).answer_batch([Item(scene(seed=i), q) for i, q in enumerate(questions)])
        assert [a.error is None for a in answers] == [True, False, False]
        assert answers[0].answer == "red" and "model: server" in answers[1].error
    finally:
        server.shutdown()
