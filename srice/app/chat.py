"""The OpenAI chat-completions format, read into an agent question and written back from its answer.

Why a module of its own: the agent server (``srice serve --agent``) must accept what real clients
send (the ``openai`` SDK, lmms-eval's and VLMEvalKit's OpenAI wrappers) and answer in a shape they
parse, and every refusal must be an OpenAI-style error with a 4xx status and a reason. Keeping the
format here, as plain functions over dicts, lets it be tested without a server.

A request is one user message (a system message may precede it) with text and one image. Multiple
choice is read from the text the way harnesses send it ("A. red" lines after the question) or from
an explicit ``srice.options`` list; the harness's own answer instruction is dropped, since the agent
adds its own. ``srice`` in the body may also carry per-request settings (``tools``, ``top_views``,
``early_exit``, ``trace``).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from srice.agent.prompts import LETTERS
from srice.agent.trace import Answer
from srice.app.image_input import ImageRefused, image_source
from srice.app.server_config import Limits, Settings


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` and an OpenAI-style error object."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param=None, code=None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    image: bytes | Path
    question: str
    options: tuple[str, ...] | None
    settings: Settings
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    trace: bool = False


# The answer instructions harnesses append; the agent adds its own, so these are dropped.
_INSTRUCTIONS = {
    s.casefold()
    for s in (
        "Answer with the option's letter from the given choices directly.",
        "Answer with the option letter from the given choices directly.",
        "Answer the question using a single word or phrase.",
        "Answer the question with a single word or phrase.",
        "Please answer directly with only the letter of the correct option and nothing else.",
        "Please select the correct answer from the options above.",
    )
}
_OPTION = re.compile(r"^\s*\(?([A-Z])[.):]\s+(\S.*)$")
_SRICE_KEYS = {"options", "tools", "top_views", "early_exit", "trace"}


def _without_instructions(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip().casefold() not in _INSTRUCTIONS)


def split_options(text: str) -> tuple[str, tuple[str, ...] | None]:
    """The question and its options from harness-style text: a run of lines "A. ...", "B. ..." (or
    "A) ...", "(A) ...") with letters in order from A. Known answer instructions are dropped."""
    lines = _without_instructions(text).splitlines()
    for start, line in enumerate(lines):
        m = _OPTION.match(line)
        if not m or m.group(1) != "A":
            continue
        options = []
        for follow in lines[start:]:
            m = _OPTION.match(follow)
            if not m or m.group(1) != LETTERS[len(options)]:
                break
            options.append(m.group(2).strip())
        rest = lines[start + len(options) :]
        if len(options) >= 2 and not any(line.strip() for line in rest):
            return "\n".join(lines[:start]).strip(), tuple(options)
    return "\n".join(lines).strip(), None


def parse_chat(
    body, *, model: str, tools: tuple[str, ...], defaults: Settings, limits: Limits
) -> ChatRequest:
    """A validated request, or an ``ApiError`` that says what is wrong with it."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if body.get("model") != model:
        raise ApiError(404, f"model {body.get('model')!r} does not exist; this server serves {model!r}",
                       param="model", code="model_not_found")  # fmt: skip
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    extra = body.get("srice") or {}
    if not isinstance(extra, dict) or set(extra) - _SRICE_KEYS:
        raise ApiError(400, f"srice must be an object with keys among {sorted(_SRICE_KEYS)}", param="srice")
    text, image = _user_turn(body.get("messages"), limits)
    if "options" in extra:
        options = extra["options"]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ApiError(400, "srice.options must be a list of strings", param="srice.options")
        question = _without_instructions(text).strip()
        options = tuple(options)
    else:
        question, options = split_options(text)
    if not question:
        raise ApiError(400, "the question is empty", param="messages")
    if len(question) > limits.max_question_chars:
        raise ApiError(
            400, f"the question is longer than {limits.max_question_chars} characters", param="messages"
        )
    settings = Settings(
        tools=_tools(extra.get("tools"), tools, defaults.tools),
        top_views=_int(extra.get("top_views"), "srice.top_views", defaults.top_views, 0, 8),
        early_exit=_bool(extra.get("early_exit"), "srice.early_exit", defaults.early_exit),
        max_tokens=_int(
            body.get("max_completion_tokens", body.get("max_tokens")),
            "max_tokens",
            defaults.max_tokens,
            1,
            limits.max_tokens,
        ),  # fmt: skip
        temperature=_number(body.get("temperature"), "temperature", defaults.temperature, 0.0, 2.0),
    )
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        image=image,
        question=question,
        options=options,
        settings=settings,
        stream=_bool(body.get("stream"), "stream", False),
        include_usage=_bool(stream_options.get("include_usage"), "stream_options.include_usage", False),
        logprobs=_bool(body.get("logprobs"), "logprobs", False),
        top_logprobs=_int(body.get("top_logprobs"), "top_logprobs", 0, 0, 20),
        trace=_bool(extra.get("trace"), "srice.trace", False),
    )


def _user_turn(messages, limits: Limits) -> tuple[str, bytes | Path]:
    """The one user message's text and image (system messages are allowed before it)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    others = [m for m in messages if not (isinstance(m, dict) and m.get("role") in ("user", "system"))]
    if len(users) != 1 or others:
        raise ApiError(400, "send one user message (with its image), optionally after a system message; "
                       "multi-turn conversations are not supported", param="messages")  # fmt: skip
    content = users[0].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ApiError(400, "message content must be a string or a list of parts", param="messages")
    texts, images = [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise ApiError(400, "image_url must carry a url", param="messages")
            images.append(url)
        else:
            raise ApiError(
                400, f"unsupported content part {kind!r} (text and image_url are)", param="messages"
            )
    if len(images) != 1:
        raise ApiError(400, f"send exactly one image per request, got {len(images)}", param="messages")
    try:
        return "\n".join(texts), image_source(images[0], limits)
    except ImageRefused as e:
        raise ApiError(e.status, e.message, param="messages") from None


def _tools(value, available: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError(400, "srice.tools must be a list of tool names", param="srice.tools")
    names = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ApiError(400, f"tools {unknown} are not loaded on this server (it has {list(available)})",
                       param="srice.tools")  # fmt: skip
    return names


def _int(value, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}", param=name)
    return value


def _number(value, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a number from {low:g} to {high:g}", param=name)
    return float(value)


def _bool(value, name: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false", param=name)
    return value


# -- responses ----------------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-srice-{uuid.uuid4().hex}"


def content_of(answer: Answer) -> str:
    """What the message says: the option letter for multiple choice (what a harness parses), else
    the answer."""
    return answer.answer


def usage(answer: Answer) -> dict:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def srice_summary(answer: Answer, with_trace: bool) -> dict:
    """SRICE's own account: the US and its prediction set, the pathway chosen, model calls, failed
    pathways with their reasons, and (when asked) every pathway's trace."""
    chosen = answer.pathway_trace(answer.pathway)
    u = chosen.uncertainty if chosen else None
    out = {
        "answer_text": answer.answer_text,
        "answer_letter": answer.answer if answer.options else None,
        "options": list(answer.options) if answer.options else None,
        "uncertainty": None if math.isinf(answer.uncertainty) else answer.uncertainty,
        "prediction_set": list(u.prediction_set) if u else [],
        "pathway": answer.pathway,
        "targets": list(answer.targets),
        "model_calls": answer.mllm_calls,
        "early_exit": answer.early_exit,
        "failed_pathways": {
            p.name: {"kind": p.error_kind, "error": p.error} for p in answer.trace if p.error
        },
    }
    if with_trace:
        out["trace"] = [p.to_json() for p in answer.trace]
    return out


def logprobs_json(answer: Answer, top: int) -> dict:
    """The chosen pathway's answer tokens in OpenAI's ``logprobs.content`` shape."""
    chosen = answer.pathway_trace(answer.pathway)
    tokens = chosen.tokens if chosen else ()
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token.encode()),
                "top_logprobs": [
                    {"token": c.token, "logprob": c.logprob, "bytes": list(c.token.encode())}
                    for c in t.top_logprobs[:top]
                ],
            }
            for t in tokens
        ]
    }


def completion_json(answer: Answer, request: ChatRequest, model: str, cid: str) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content_of(answer)},
                "logprobs": logprobs_json(answer, request.top_logprobs) if request.logprobs else None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(answer),
        "srice": srice_summary(answer, request.trace),
    }


def chunk_json(cid: str, model: str, delta: dict, *, finish=None, logprobs=None, srice=None) -> dict:
    out = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }
    if srice is not None:
        out["srice"] = srice
    return out
