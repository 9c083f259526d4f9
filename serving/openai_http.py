"""Backend for OpenAI-compatible chat servers (``vllm serve`` in production).

Why its own client instead of the ``openai`` package: we need bounded concurrency across a whole
batch, several server URLs, retries only where a retry can help (connection errors, 5xx), and a hard
per-attempt timeout so a dead server surfaces as a ``ServingError`` instead of a hang.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import itertools
import json
import math
import time
from collections.abc import Sequence

import httpx
from PIL import Image

from srice.errors import ServingError

from .types import Completion, Request, TokenLogprob

JSON = {"content-type": "application/json"}
SYSTEMIC = (401, 403, 404)  # auth or model name wrong: a fault of the setup, not of one request


def image_data_url(image: Image.Image) -> str:
    """PNG (lossless) so the server sees exactly the pixels an in-process backend would."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(request: Request, encode=image_data_url) -> list[dict]:
    messages = []
    for m in request.messages:
        parts = []
        for p in m.content:
            if isinstance(p, str):
                parts.append({"type": "text", "text": p})
            else:
                parts.append({"type": "image_url", "image_url": {"url": encode(p)}})
        messages.append({"role": m.role, "content": parts})
    return messages


def _logprob(value) -> float:
    number = float(value)
    if not (math.isfinite(number) or number == -math.inf) or number > 0:
        raise ValueError(f"logprob {value!r} is not a log-probability")
    return number


def _parse_choice(body: dict, seconds: float, server: str) -> Completion:
    """The completion in a chat reply; a malformed reply (no message, a NaN logprob, ...) fails this
    request alone, with its reason."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"content is {type(text).__name__}, not text")
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = tuple(
            TokenLogprob(
                str(t["token"]),
                _logprob(t["logprob"]),
                tuple(
                    TokenLogprob(str(c["token"]), _logprob(c["logprob"])) for c in t.get("top_logprobs") or ()
                ),
            )
            for t in content
        )
        return Completion(
            text=text,
            tokens=tokens,
            finish_reason=choice.get("finish_reason") or "",
            seconds=seconds,
            prompt_tokens=int((body.get("usage") or {}).get("prompt_tokens") or 0),
            completion_tokens=int((body.get("usage") or {}).get("completion_tokens") or len(tokens)),
            model=body.get("model", ""),
            server=server,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        return Completion.failed(
            f"server {server} sent a malformed completion ({type(e).__name__}: {e})", server
        )


def run_sync(coro):
    """Run ``coro`` to completion from sync code, even when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAIBackend:
    """Chat completions with logprobs against one or more OpenAI-compatible servers.

    ``timeout`` bounds each attempt; a request gives up after ``retries`` further attempts, moving
    to the next URL each time, so the worst case is about ``(retries + 1) * timeout`` plus backoff.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        model: str,
        *,
        concurrency: int = 32,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        api_key: str | None = None,
    ):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("OpenAIBackend needs at least one server URL")
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in urls]
        self.model = model
        self.name = f"openai:{model}@{','.join(self.urls)}"
        self.identity = f"openai:{model}"  # what a run's records depend on (the server's URL may change)
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def check(self, timeout: float = 10.0) -> None:
        """A ``ServingError`` unless every server answers and serves this backend's model: a wrong URL
        or model name is one clear line at start-up, not a failure at the first question."""
        for url in self.urls:
            try:
                resp = httpx.get(f"{url}/v1/models", headers=self.headers, timeout=timeout)
            except httpx.HTTPError as e:
                raise ServingError(
                    f"the model server at {url} does not answer ({type(e).__name__}: {e})"
                ) from None
            if resp.status_code != 200:
                raise ServingError(
                    f"the model server at {url} answered {resp.status_code} to /v1/models: {resp.text[:200]}"
                )
            try:
                served = [m["id"] for m in resp.json()["data"]]
            except (ValueError, KeyError, TypeError):
                raise ServingError(f"the server at {url} is no OpenAI-compatible model server") from None
            if self.model not in served:
                raise ServingError(
                    f"the server at {url} serves {', '.join(served) or 'nothing'}, not {self.model!r}"
                )

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return run_sync(self.agenerate(requests))

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        if not requests:
            return []
        encoded: dict[int, str] = {}  # one PNG encoding per image object, shared across pathways

        def encode(image: Image.Image) -> str:
            if id(image) not in encoded:
                encoded[id(image)] = image_data_url(image)
            return encoded[id(image)]

        payloads = [self._payload(r, encode) for r in requests]
        gate = asyncio.Semaphore(self.concurrency)
        start = itertools.count()
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=self.headers) as client:

            async def one(payload: dict) -> Completion:
                async with gate:
                    return await self._post(client, payload, next(start))

            tasks = [asyncio.create_task(one(p)) for p in payloads]
            try:
                return await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

    def _payload(self, request: Request, encode) -> dict:
        payload = {
            "model": self.model,
            "messages": to_openai_messages(request, encode),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.top_logprobs:
            payload |= {"logprobs": True, "top_logprobs": request.top_logprobs}
        return payload

    async def _post(self, client: httpx.AsyncClient, payload: dict, index: int) -> Completion:
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError) as e:  # an unpaired surrogate in the text, say
            return Completion.failed(f"the request cannot be sent as JSON text ({type(e).__name__}: {e})")
        last = ""
        for attempt in range(self.retries + 1):
            url = self.urls[(index + attempt) % len(self.urls)]
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            began = time.perf_counter()
            try:
                resp = await client.post(f"{url}/v1/chat/completions", content=body, headers=JSON)
            except httpx.TimeoutException:
                last = f"server {url} timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as e:
                last = f"server {url} unreachable: {type(e).__name__}: {e}"
                continue
            if resp.status_code >= 500:
                last = f"server {url} answered {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code in SYSTEMIC:  # every request would fail alike: stop, do not record
                raise ServingError(
                    f"server {url} refused the request ({resp.status_code}): {resp.text[:300]}"
                )
            if resp.status_code != 200:  # this request's content: an image or text the model rejects
                return Completion.failed(
                    f"the model server rejected this request ({resp.status_code}): {resp.text[:300]}", url
                )
            try:
                reply = resp.json()
            except ValueError:
                return Completion.failed(f"server {url} sent invalid JSON: {resp.text[:200]!r}", url)
            return _parse_choice(reply, time.perf_counter() - began, url)
        raise ServingError(f"{last} (gave up after {self.retries + 1} attempts)")

    def close(self) -> None:
        pass
