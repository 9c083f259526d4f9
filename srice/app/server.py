"""The agent server (``srice serve --agent``): SRICE behind the OpenAI chat-completions API.

Why: the people who would use SRICE already talk to vLLM through this API (evaluation harnesses,
apps, agent frameworks). Served the same way, the agent is one URL change away for all of them, and
srice gets tested by clients nobody here wrote.

- ``POST /v1/chat/completions``: one user message with text and one image (``srice.app.chat`` reads
  it); the reply is SRICE's answer, ``usage`` summed over every model call it made, and a ``srice``
  object (US, prediction set, pathway, model calls, failed pathways, the trace when asked).
  ``stream: true`` sends the stages as they run (in the chunks' ``srice`` field), then the answer.
- ``GET /v1/models``, ``GET /health`` (is the model backend up), ``GET /metrics`` (Prometheus).
- Questions are micro-batched across clients (``srice.app.batching``); a full queue answers 429.
- Safe by default: the CLI binds 127.0.0.1; ``--api-key`` makes every ``/v1`` and ``/metrics``
  request carry ``Authorization: Bearer KEY``; request bodies, image bytes and pixels are bounded.
  Bad input is a 4xx OpenAI-style error; a model backend that is down is a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from srice.agent import Agent, Answer, Item
from srice.app import chat
from srice.app.batching import Job, MicroBatcher, QueueFull
from srice.errors import InputError, ServingError, SriceError
from srice.eval.report import tool_of
from srice.images import load_image

AgentFor = Callable[[chat.Settings], Agent]


@dataclass(frozen=True)
class ServerConfig:
    """The server's name for the agent, its defaults and its limits."""

    model: str  # what /v1/models lists and requests must name, e.g. "srice-toy-agent"
    tools: tuple[str, ...]  # tools loaded; a request may use any subset
    defaults: chat.Settings
    limits: chat.Limits = field(default_factory=chat.Limits)
    api_key: str | None = None
    max_batch: int = 16
    batch_wait: float = 0.01  # seconds the first question of a batch waits for others
    max_queue: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    check_backend: Callable[[], None] | None = None  # raises ServingError when the model is down
    early_exit_unavailable: str | None = None  # why a request cannot ask for early exit, if it cannot

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_body_bytes < 1:
            raise InputError("max_batch, max_queue and max_body_bytes must be >= 1")
        if not 0 <= self.batch_wait <= 5:
            raise InputError(f"batch_wait must be 0-5 seconds, got {self.batch_wait}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("an api key must not be empty")


class Metrics:
    """Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "srice_requests", "Chat completion requests by HTTP status", ["status"], registry=r
        )
        self.latency = Histogram(
            "srice_request_seconds", "Time from request to answer", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
        )  # fmt: skip
        self.model_calls = Counter("srice_model_calls", "Model calls made for answers", registry=r)
        self.wins = Counter(
            "srice_pathway_wins", "Answers by the pathway that gave them", ["pathway"], registry=r
        )
        self.tool_failures = Counter(
            "srice_tool_failures", "Failed tool pathways by tool and kind", ["tool", "kind"], registry=r
        )
        self.batch_size = Histogram(
            "srice_batch_size", "Questions per agent batch", registry=r, buckets=(1, 2, 4, 8, 16, 32, 64)
        )
        self.queue = Gauge("srice_queue_depth", "Questions waiting or being answered", registry=r)
        self.queue.set_function(queue_depth)

    def answered(self, answer: Answer, seconds: float) -> None:
        self.latency.observe(seconds)
        self.model_calls.inc(answer.mllm_calls)
        if answer.pathway:
            self.wins.labels(tool_of(answer.pathway)).inc()
        for p in answer.trace:
            if p.error and p.name != "direct":
                self.tool_failures.labels(tool_of(p.name), p.error_kind or "other").inc()


def _error(e: chat.ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def create_app(agent_for: AgentFor, config: ServerConfig) -> FastAPI:
    """The ASGI app; ``agent_for(settings)`` gives the agent for a request's settings (cached by the
    caller: building one must not reload tools)."""

    def run(settings: chat.Settings, items, on_stage) -> list[Answer]:
        return agent_for(settings).answer_batch(items, on_stage=on_stage)

    batcher: MicroBatcher | None = None

    def depth() -> int:
        return batcher.depth if batcher is not None else 0

    metrics = Metrics(depth)
    batcher = MicroBatcher(
        run, max_batch=config.max_batch, wait=config.batch_wait, max_queue=config.max_queue,
        on_batch=lambda size, seconds: metrics.batch_size.observe(size),
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:  # uvicorn has drained the requests in flight by now
            await run_in_threadpool(batcher.stop)

    app = FastAPI(title="srice agent", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.metrics = batcher, metrics

    def authorized(request: Request) -> bool:
        if config.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode())

    def refuse_unauthorized() -> JSONResponse:
        return _error(chat.ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                    code="invalid_api_key"))  # fmt: skip

    @app.get("/health")
    async def health() -> Response:
        if config.check_backend is not None:
            try:
                await run_in_threadpool(config.check_backend)
            except SriceError as e:
                return JSONResponse({"status": "unavailable", "reason": str(e)}, status_code=503)
        return JSONResponse({"status": "ok", "queue_depth": depth()})

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not authorized(request):
            return refuse_unauthorized()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        if not authorized(request):
            return refuse_unauthorized()
        card = {"id": config.model, "object": "model", "created": 0, "owned_by": "srice"}
        return JSONResponse({"object": "list", "data": [card]})

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        response = await _completions(request)
        metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _completions(request: Request) -> Response:
        if not authorized(request):
            return refuse_unauthorized()
        try:
            body = json.loads(await _read_body(request, config.max_body_bytes))
        except chat.ApiError as e:
            return _error(e)
        except (ValueError, UnicodeDecodeError):
            return _error(chat.ApiError(400, "the request body is not valid JSON"))
        try:
            parsed = chat.parse_chat(
                body, model=config.model, tools=config.tools, defaults=config.defaults, limits=config.limits
            )
            if parsed.settings.early_exit and config.early_exit_unavailable:
                raise chat.ApiError(400, config.early_exit_unavailable, param="srice.early_exit")
            image = await run_in_threadpool(load_image, parsed.image, max_pixels=config.limits.max_pixels)
        except chat.ApiError as e:
            return _error(e)
        except InputError as e:
            return _error(chat.ApiError(400, str(e), param="messages"))
        loop = asyncio.get_running_loop()
        stages: asyncio.Queue[str] = asyncio.Queue()
        job = Job(
            Item(image, parsed.question, parsed.options), parsed.settings, loop, loop.create_future(),
            on_stage=stages.put_nowait if parsed.stream else None,
        )  # fmt: skip
        try:
            batcher.submit(job)
        except QueueFull as e:
            return _error(
                chat.ApiError(429, f"the server is busy ({e}); retry later", type="rate_limit_error")
            )
        cid = chat.completion_id()
        if parsed.stream:
            return StreamingResponse(_stream(job, stages, parsed, cid), media_type="text/event-stream")
        answer = await _wait(job, request)
        if isinstance(answer, Response):
            return answer
        return JSONResponse(chat.completion_json(answer, parsed, config.model, cid))

    async def _wait(job: Job, request: Request) -> Answer | Response:
        """The job's answer, or the error response; a client that leaves gives up its question."""
        try:
            while True:
                done, _ = await asyncio.wait({job.future}, timeout=0.25)
                if done:
                    return _outcome(job)
                if await request.is_disconnected():
                    job.cancelled.set()
                    return Response(status_code=499)
        except chat.ApiError as e:
            return _error(e)
        except asyncio.CancelledError:
            job.cancelled.set()
            raise

    async def _stream(job: Job, stages: asyncio.Queue, parsed: chat.ChatRequest, cid: str):
        model = config.model

        def sse(obj) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        try:
            yield sse(chat.chunk_json(cid, model, {"role": "assistant", "content": ""}))
            while not job.future.done() or not stages.empty():
                try:
                    text = await asyncio.wait_for(stages.get(), timeout=0.25)
                except TimeoutError:
                    continue
                yield sse(chat.chunk_json(cid, model, {}, srice={"stage": text}))
            try:
                answer = _outcome(job)
            except chat.ApiError as e:
                yield sse(e.body())
            else:
                logprobs = chat.logprobs_json(answer, parsed.top_logprobs) if parsed.logprobs else None
                yield sse(
                    chat.chunk_json(cid, model, {"content": chat.content_of(answer)}, logprobs=logprobs)
                )
                yield sse(chat.chunk_json(cid, model, {}, finish="stop",
                                          srice=chat.srice_summary(answer, parsed.trace)))  # fmt: skip
                if parsed.include_usage:
                    final = chat.chunk_json(cid, model, {}) | {"choices": [], "usage": chat.usage(answer)}
                    yield sse(final)
            yield "data: [DONE]\n\n"
        finally:  # the client left before the answer: its question is dropped if not yet started
            if not job.future.done():
                job.cancelled.set()

    def _outcome(job: Job) -> Answer:
        """The finished job's answer, counted in the metrics, or the ``ApiError`` its failure is:
        400 for a question the model rejected, 503 when the model backend is down."""
        try:
            answer = job.future.result()
        except ServingError as e:
            raise chat.ApiError(503, f"the model backend is unavailable: {e}", type="server_error") from None
        except SriceError as e:
            raise chat.ApiError(500, f"{type(e).__name__}: {e}", type="server_error") from None
        if answer.error is not None:
            raise chat.ApiError(400, answer.error, param="messages")
        metrics.answered(answer, time.monotonic() - job.enqueued)
        return answer

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (not read whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise chat.ApiError(413, f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise chat.ApiError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def serve(app: FastAPI, host: str, port: int, *, drain_seconds: float = 60.0) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM; requests in flight get ``drain_seconds`` to
    finish. Uvicorn then re-raises the signal, so the caller's handlers (stopping vllm serve) run."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=drain_seconds
        )
    )
    server.run()
