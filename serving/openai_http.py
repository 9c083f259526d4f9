"""Backend for OpenAI-compatible chat servers (``vllm serve`` in production).

Why its own client instead of the ``openai`` package: we need bounded concurrency across a whole
batch, several server URLs (each retry goes to the next one: failover), and hard time limits, so a
dead server surfaces as a ``ServingError`` instead of a hang.

Retries follow the ``openai`` SDK's rules (its ``_base_client``): a timeout, a dropped or refused
connection, 408, 409, 429 and every 5xx are retried, and a server's ``x-should-retry: true|false``
is obeyed. A ``Retry-After`` (or ``retry-after-ms``) of up to 120 s, in seconds or as an HTTP date, is
waited as given; otherwise the wait is exponential backoff with full jitter, uniform in
``[0, min(max_backoff, backoff * 2**k)]`` before retry k+1 (the SDK takes at most a quarter off its
exponential wait, so clients refused together come back nearly together; full jitter spreads them).
Beyond the SDK, ``total_timeout`` bounds a request's attempts and waits together: a wait that would
pass it is not waited, the request gives up at once.

What a request that used up its retries becomes:

- a failed completion whose reason is the last refusal and ends in ``(transient: gave up after N
  attempts in S s)``: the question's record says why, and a resumed eval redoes it (``is_transient``);
- a ``ServingError`` instead when the server looks down: every request of the ``generate`` call
  ended so, or one could not connect at all. Every later request would fail alike, so the caller
  stops (an eval then resumes where it stopped).

A 401, 403 or 404 (key or model name wrong) is a ``ServingError`` at once; any other 4xx is a fault of
the request itself (an image or text the model rejects): a failed completion at once, never retried,
and not transient.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import io
import itertools
import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

import httpx
from PIL import Image

from srice.errors import ServingError

from .types import Completion, Request, TokenLogprob

JSON = {"content-type": "application/json"}
SYSTEMIC = (401, 403, 404)  # auth or model name wrong: a fault of the setup, not of one request
RETRIED = (408, 409, 429)  # request timeout, conflict (a lock), rate limit; and every 5xx
MAX_RETRY_AFTER = 120.0  # seconds: a longer Retry-After is not waited (the SDK's limit)
TRANSIENT = "(transient: gave up after"  # ends the reason of a request that used up its retries
# a 408/409/429/5xx recorded at once, by srice before it retried them or after the server said
# "x-should-retry: false": it may pass all the same, so a resume redoes those records too
_EARLIER = re.compile(r"rejected this request \((?:408|409|429|5\d\d)\)")


def is_transient(reason: str | None) -> bool:
    """Whether a failure's reason says it may pass (a rate limit, a timeout, a 5xx that outlasted
    the retries), as opposed to a refusal of the request itself: a resumed eval redoes the former."""
    return bool(reason) and (TRANSIENT in reason or _EARLIER.search(reason) is not None)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a server asked the client to wait: ``retry-after-ms``, else ``Retry-After`` as
    seconds or as an HTTP date; None when absent, unreadable or not in the future."""
    for key, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds > 0 else None
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after") or "")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - time.time()
    return seconds if seconds > 0 else None


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**retry)], ``retry``
    counting from 0 for the first retry."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(retry, 60)))


@dataclass(frozen=True)
class _Refused:
    """One attempt that may be retried: its cause (the status, "timeout", "unreachable" for a
    connection refused, "disconnected" for one dropped), the reason, and any wait the server asked."""

    cause: str
    reason: str
    asked: float | None = None


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

    ``timeout`` bounds each attempt; a request makes at most ``retries`` further attempts, each to
    the next URL, after the waits the module docstring describes (``backoff``, ``max_backoff``), and
    takes at most ``total_timeout`` seconds in all. ``retry_stats`` counts the retries and give-ups
    by cause (status code, "timeout", "unreachable", "disconnected") over the backend's life.
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
        max_backoff: float = 8.0,
        total_timeout: float = 600.0,
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
        self.max_backoff = max_backoff
        self.total_timeout = total_timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._random = random.Random()
        self._counts: dict[str, Counter] = {"retried": Counter(), "gave_up": Counter()}
        self._lock = threading.Lock()

    def retry_stats(self) -> dict[str, dict[str, int]]:
        """Retries made and requests given up, by cause, since this backend was made."""
        with self._lock:
            return {kind: dict(sorted(counts.items())) for kind, counts in self._counts.items()}

    def _count(self, kind: str, cause: str) -> None:
        with self._lock:
            self._counts[kind][cause] += 1

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

            async def one(payload: dict) -> tuple[Completion, bool | None]:
                async with gate:
                    return await self._post(client, payload, next(start))

            tasks = [asyncio.create_task(one(p)) for p in payloads]
            try:
                results = await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
        gave_up = [(c, down) for c, down in results if down is not None]
        if gave_up and (len(gave_up) == len(results) or any(down for _, down in gave_up)):
            reason = next((c.error for c, down in gave_up if down), gave_up[0][0].error)
            raise ServingError(reason)
        return [c for c, _ in results]

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

    async def _post(
        self, client: httpx.AsyncClient, payload: dict, index: int
    ) -> tuple[Completion, bool | None]:
        """The request's completion, and for one that used up its retries whether its last attempt
        could not connect at all (None for any other completion)."""
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError) as e:  # an unpaired surrogate in the text, say
            return Completion.failed(
                f"the request cannot be sent as JSON text ({type(e).__name__}: {e})"
            ), None
        began = time.monotonic()
        deadline, note = began + self.total_timeout, ""
        for attempt in range(self.retries + 1):
            url = self.urls[(index + attempt) % len(self.urls)]
            outcome = await self._attempt(client, url, body, deadline)
            if isinstance(outcome, Completion):
                return outcome, None
            if attempt == self.retries:
                break
            asked = outcome.asked
            wait = (
                asked
                if asked is not None
                else backoff_delay(attempt, self.backoff, self.max_backoff, self._random)
            )
            too_long = asked is not None and asked > MAX_RETRY_AFTER
            limit = MAX_RETRY_AFTER if too_long else self.total_timeout
            if too_long or wait >= deadline - time.monotonic():
                what = f"Retry-After {asked:g} s" if asked is not None else f"the next wait, {wait:.3g} s,"
                note = f"; {what} would pass the {limit:g} s limit"
                break
            self._count("retried", outcome.cause)
            await asyncio.sleep(wait)
        self._count("gave_up", outcome.cause)
        spent = time.monotonic() - began
        tries = f"{attempt + 1} attempt" + ("s" if attempt else "")
        reason = f"{outcome.reason}{note} {TRANSIENT} {tries} in {spent:.1f} s)"
        return Completion.failed(reason, url), outcome.cause == "unreachable"

    async def _attempt(self, client: httpx.AsyncClient, url: str, body: bytes, deadline: float):
        """One attempt: a ``Completion`` (the answer, or a refusal that no retry can change) or a
        ``_Refused`` that may pass. A 401/403/404 raises: every request would fail alike."""
        began = time.perf_counter()
        limit = max(min(self.timeout, deadline - time.monotonic()), 0.001)
        try:
            resp = await client.post(f"{url}/v1/chat/completions", content=body, headers=JSON, timeout=limit)
        except httpx.TimeoutException:
            return _Refused("timeout", f"server {url} timed out after {limit:.3g} s")
        except httpx.ConnectError as e:
            return _Refused("unreachable", f"server {url} unreachable: {type(e).__name__}: {e}")
        except httpx.TransportError as e:
            return _Refused("disconnected", f"server {url} dropped the connection: {type(e).__name__}: {e}")
        status = resp.status_code
        if status == 200:
            try:
                reply = resp.json()
            except ValueError:
                return Completion.failed(f"server {url} sent invalid JSON: {resp.text[:200]!r}", url)
            return _parse_choice(reply, time.perf_counter() - began, url)
        if status in SYSTEMIC:  # every request would fail alike: stop, do not record
            raise ServingError(f"server {url} refused the request ({status}): {resp.text[:300]}")
        should = resp.headers.get("x-should-retry")
        if should == "true" or (should != "false" and (status in RETRIED or status >= 500)):
            return _Refused(
                str(status), f"server {url} answered {status}: {resp.text[:300]}", retry_after(resp.headers)
            )
        # this request's content: an image or text the model rejects
        return Completion.failed(f"the model server rejected this request ({status}): {resp.text[:300]}", url)

    def close(self) -> None:
        pass
