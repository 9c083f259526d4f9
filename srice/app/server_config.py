"""The agent server's settings, each checked once, here: what a request may carry (``Limits``), the
per-request agent settings (``Settings``), how questions are batched across clients
(``BatchingConfig``) and the server as a whole (``ServerConfig``). A light module: the command line
reads these defaults for ``--help``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from srice.errors import InputError


@dataclass(frozen=True)
class Limits:
    """What one request may carry. ``image_folder``: local image paths are read only from inside it
    (None: only ``data:`` URLs)."""

    max_image_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_question_chars: int = 4000
    max_tokens: int = 256
    image_folder: Path | None = None

    def __post_init__(self) -> None:
        for name in ("max_image_bytes", "max_pixels", "max_question_chars", "max_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Settings:
    """Per-request agent settings; requests with equal settings can share one batch."""

    tools: tuple[str, ...]
    top_views: int
    early_exit: bool
    max_tokens: int
    temperature: float


@dataclass(frozen=True)
class BatchingConfig:
    """Micro-batching across clients: at most ``max_batch`` questions answered together, the first
    waiting ``wait`` seconds for others to join, at most ``max_queue`` waiting (more get 429), and
    ``at_once`` batches answered at the same time (one per agent worker)."""

    max_batch: int = 16
    wait: float = 0.01
    max_queue: int = 64
    at_once: int = 1

    def __post_init__(self) -> None:
        if self.at_once < 1:
            raise InputError(f"batches answered at once must be >= 1, got {self.at_once}")
        if self.max_batch < 1 or self.max_queue < 1:
            raise InputError(f"max_batch and max_queue must be >= 1, got {self.max_batch}, {self.max_queue}")
        if not 0 <= self.wait <= 5:
            raise InputError(f"the batch wait must be 0-5 seconds, got {self.wait}")


@dataclass(frozen=True)
class ServerConfig:
    """The server's name for the agent, its defaults and its limits."""

    model: str  # what /v1/models lists and requests must name, e.g. "srice-toy-agent"
    tools: tuple[str, ...]  # tools loaded; a request may use any subset
    defaults: Settings
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    max_body_bytes: int = 16 * 1024 * 1024
    check_backend: Callable[[], None] | None = None  # raises ServingError when the model is down
    early_exit_unavailable: str | None = None  # why a request cannot ask for early exit, if it cannot

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise InputError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("an api key must not be empty")
