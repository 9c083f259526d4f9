"""The data that crosses the serving boundary: chat requests in, completions with logprobs out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

Part = str | Image.Image  # a text span or an RGB image, in the order the model should see them


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: tuple[Part, ...]


@dataclass(frozen=True)
class Request:
    messages: tuple[Message, ...]
    max_tokens: int = 16
    temperature: float = 0.0
    top_logprobs: int = 5

    @property
    def images(self) -> list[Image.Image]:
        return [p for m in self.messages for p in m.content if isinstance(p, Image.Image)]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top_logprobs: tuple[TokenLogprob, ...] = ()
    token_id: int | None = None  # known to in-process backends; HTTP servers send text only


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: tuple[TokenLogprob, ...]
    finish_reason: str
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0  # generated tokens (known even when no logprobs were asked for)
    model: str = ""
    server: str = ""
    error: str | None = None  # this request alone failed (the server rejected it, the reply was malformed)

    @classmethod
    def failed(cls, reason: str, server: str = "") -> Completion:
        """A request that got no completion, for a reason that concerns it alone."""
        return cls("", (), "error", 0.0, server=server, error=reason)

    def summary(self) -> str:
        """One line: token count, mean logprob and the first token's top alternatives."""
        if not self.tokens:
            return "no tokens"
        mean = sum(t.logprob for t in self.tokens) / len(self.tokens)
        first = ", ".join(f"{t.token!r} {t.logprob:.3f}" for t in self.tokens[0].top_logprobs)
        return f"{len(self.tokens)} tokens, mean logprob {mean:.3f}; first token top: {first}"


class Backend(Protocol):
    """Anything that turns a batch of requests into completions, in order. A request the model
    rejects, or whose reply is malformed, gets a ``Completion.failed`` in its place; a backend that
    is down (unreachable, repeated 5xx, timeouts, a wrong model name) raises ``ServingError``."""

    name: str

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def close(self) -> None: ...
