"""The agent server (``srice serve --agent``): SRICE behind the OpenAI chat-completions API.

Why: the people who would use SRICE already talk to vLLM through this API (evaluation harnesses,
apps, agent frameworks). Served the same way, the agent is one URL change away for all of them, and
srice gets tested by clients nobody here wrote.

- ``POST /v1/chat/completions``: one user message with text and one image (``srice.app.chat`` reads
  it); the reply is SRICE's answer, ``usage`` summed over every model call it made, and a ``srice``
  object (US, prediction set, pathway, model calls, failed pathways, the trace when asked).
  ``stream: true`` sends the stages as they run (in the chunks' ``srice`` field), then the answer.
- ``GET /v1/models``, ``GET /health`` (is the model backend up), ``GET /metrics`` (Prometheus,
  ``srice.app.server_metrics``).
- Questions are micro-batched across clients (``srice.app.batching``); a full queue answers 429.
- Safe by default: the CLI binds 127.0.0.1; ``--api-key`` makes every ``/v1`` and ``/metrics``
  request carry ``Authorization: Bearer KEY``; request bodies, image bytes and pixels are bounded.
  Bad input is a 4xx OpenAI-style error; a model backend that is down is a 503.

The handlers are plain module functions; what they share is one ``AgentService`` in ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from srice.agent import Answer, Item
from srice.app import chat
from srice.app.batching import Job, MicroBatcher, QueueFull, Runner
from srice.app.server_config import ServerConfig
from srice.app.server_metrics import Metrics
from srice.errors import InputError, ServingError, SriceError
from srice.images import load_image


class AgentService:
    """What the handlers share: the config, ``answer(settings, items, on_stage)`` (an agent for the
    settings answering the batch: in this process, or by an agent worker), the micro-batcher and the
    metrics."""

    def __init__(self, answer: Runner, config: ServerConfig):
        self.config = config
        self.metrics = Metrics(lambda: self.batcher.depth)
        self.batcher = MicroBatcher(
            answer,
            config.batching,
            on_batch=lambda size, seconds: self.metrics.batch_size.observe(size),
        )

    def authorized(self, request: Request) -> bool:
        if self.config.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.config.api_key}".encode())

    def outcome(self, job: Job) -> Answer:
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
        self.metrics.answered(answer, time.monotonic() - job.enqueued)
        return answer


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: AgentService = app.state.service
    service.batcher.start()
    try:
        yield
    finally:  # uvicorn has drained the requests in flight by now
        await run_in_threadpool(service.batcher.stop)


router = APIRouter()


def create_app(answer: Runner, config: ServerConfig) -> FastAPI:
    """The ASGI app; ``answer(settings, items, on_stage)`` answers a batch of questions that share
    their settings (``srice.app.batching.Runner``)."""
    app = FastAPI(title="srice agent", lifespan=_lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = AgentService(answer, config)
    app.include_router(router)
    return app


def _error(e: chat.ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _unauthorized() -> JSONResponse:
    return _error(
        chat.ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key")
    )


@router.get("/health")
async def health(request: Request) -> Response:
    service: AgentService = request.app.state.service
    if service.config.check_backend is not None:
        try:
            await run_in_threadpool(service.config.check_backend)
        except SriceError as e:
            return JSONResponse({"status": "unavailable", "reason": str(e)}, status_code=503)
    return JSONResponse({"status": "ok", "queue_depth": service.batcher.depth})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    service: AgentService = request.app.state.service
    if not service.authorized(request):
        return _unauthorized()
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def models(request: Request) -> Response:
    service: AgentService = request.app.state.service
    if not service.authorized(request):
        return _unauthorized()
    card = {"id": service.config.model, "object": "model", "created": 0, "owned_by": "srice"}
    return JSONResponse({"object": "list", "data": [card]})


@router.post("/v1/chat/completions")
async def completions(request: Request) -> Response:
    service: AgentService = request.app.state.service
    response = await _completions(service, request)
    service.metrics.requests.labels(str(response.status_code)).inc()
    return response


async def _completions(service: AgentService, request: Request) -> Response:
    if not service.authorized(request):
        return _unauthorized()
    try:
        parsed, image = await _parse(service.config, request)
    except chat.ApiError as e:
        return _error(e)
    loop = asyncio.get_running_loop()
    stages: asyncio.Queue[str] = asyncio.Queue()
    job = Job(
        Item(image, parsed.question, parsed.options), parsed.settings, loop, loop.create_future(),
        on_stage=stages.put_nowait if parsed.stream else None,
    )  # fmt: skip
    try:
        service.batcher.submit(job)
    except QueueFull as e:
        return _error(chat.ApiError(429, f"the server is busy ({e}); retry later", type="rate_limit_error"))
    cid = chat.completion_id()
    if parsed.stream:
        return StreamingResponse(_stream(service, job, stages, parsed, cid), media_type="text/event-stream")
    answer = await _wait(service, job, request)
    if isinstance(answer, Response):
        return answer
    return JSONResponse(chat.completion_json(answer, parsed, service.config.model, cid))


async def _parse(config: ServerConfig, request: Request) -> tuple[chat.ChatRequest, object]:
    """The request read and checked and its image decoded, or the ``ApiError`` that refuses it."""
    try:
        body = json.loads(await _read_body(request, config.max_body_bytes))
    except (ValueError, UnicodeDecodeError):
        raise chat.ApiError(400, "the request body is not valid JSON") from None
    parsed = chat.parse_chat(
        body, model=config.model, tools=config.tools, defaults=config.defaults, limits=config.limits
    )
    if parsed.settings.early_exit and config.early_exit_unavailable:
        raise chat.ApiError(400, config.early_exit_unavailable, param="srice.early_exit")
    try:
        image = await run_in_threadpool(load_image, parsed.image, max_pixels=config.limits.max_pixels)
    except InputError as e:
        raise chat.ApiError(400, str(e), param="messages") from None
    return parsed, image


async def _wait(service: AgentService, job: Job, request: Request) -> Answer | Response:
    """The job's answer, or the error response; a client that leaves gives up its question."""
    try:
        while True:
            done, _ = await asyncio.wait({job.future}, timeout=0.25)
            if done:
                return service.outcome(job)
            if await request.is_disconnected():
                job.cancelled.set()
                return Response(status_code=499)
    except chat.ApiError as e:
        return _error(e)
    except asyncio.CancelledError:
        job.cancelled.set()
        raise


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def _stream(service: AgentService, job: Job, stages: asyncio.Queue, parsed: chat.ChatRequest, cid: str):
    model = service.config.model
    try:
        yield _sse(chat.chunk_json(cid, model, {"role": "assistant", "content": ""}))
        while not job.future.done() or not stages.empty():
            try:
                text = await asyncio.wait_for(stages.get(), timeout=0.25)
            except TimeoutError:
                continue
            yield _sse(chat.chunk_json(cid, model, {}, srice={"stage": text}))
        try:
            answer = service.outcome(job)
        except chat.ApiError as e:
            yield _sse(e.body())
        else:
            for chunk in _answer_chunks(answer, parsed, cid, model):
                yield _sse(chunk)
        yield "data: [DONE]\n\n"
    finally:  # the client left before the answer: its question is dropped if not yet started
        if not job.future.done():
            job.cancelled.set()


def _answer_chunks(answer: Answer, parsed: chat.ChatRequest, cid: str, model: str) -> list[dict]:
    """The stream's last chunks: the answer (with logprobs when asked), the finish with SRICE's
    summary, and the usage when asked."""
    logprobs = chat.logprobs_json(answer, parsed.top_logprobs) if parsed.logprobs else None
    chunks = [
        chat.chunk_json(cid, model, {"content": chat.content_of(answer)}, logprobs=logprobs),
        chat.chunk_json(cid, model, {}, finish="stop", srice=chat.srice_summary(answer, parsed.trace)),
    ]
    if parsed.include_usage:
        chunks.append(chat.chunk_json(cid, model, {}) | {"choices": [], "usage": chat.usage(answer)})
    return chunks


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


def serve_http(app: FastAPI, host: str, port: int, *, drain_seconds: float = 60.0) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM; requests in flight get ``drain_seconds`` to
    finish. Uvicorn then re-raises the signal, so the caller's handlers (stopping vllm serve) run."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=drain_seconds
        )
    )
    server.run()
