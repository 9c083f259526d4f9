"""Opening the model behind a variant: over HTTP from a running server or from a ``vllm serve``
started here (stopped when the caller's ``ExitStack`` closes), or in-process with transformers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack

from srice.errors import SriceError
from srice.serving.config import ServingConfig
from srice.serving.types import Backend
from srice.serving.variants import Variant, get_variant


def as_variant(variant: str | Variant) -> Variant:
    return variant if isinstance(variant, Variant) else get_variant(variant)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def open_backend(
    variant: str | Variant,
    serving: ServingConfig,
    stack: ExitStack,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Backend, Variant]:
    """The serving backend for ``variant``; a ``vllm serve`` it starts is stopped when ``stack`` closes."""
    variant = as_variant(variant)
    say = log or _stderr
    if serving.backend == "transformers":
        from srice.serving.hf import TransformersBackend

        if variant.is_hub and not serving.allow_hub:
            raise SriceError(f"variant {variant.name!r} is a hub model; pass --allow-hub to download it")
        return TransformersBackend(variant.model_path(), device=serving.device, dtype=serving.dtype), variant
    from srice.serving.openai_http import OpenAIBackend

    url = serving.server
    if not url:
        launched = stack.enter_context(start_server(variant, serving, host=host, port=port, log=say))
        say(f"vllm serve ready at {launched.url} in {launched.started_seconds:.0f} s")
        url = launched.url
    backend = OpenAIBackend(
        url, variant.served_name, timeout=serving.timeout, concurrency=serving.concurrency
    )
    if serving.server:  # a server the user named: it answers, and serves this variant, or we stop now
        try:
            backend.check()
        except SriceError as e:
            raise SriceError(
                f"{e} (variant {variant.name!r}; start it with srice serve --variant {variant.name}, "
                "or drop --server)"
            ) from None
    return backend, variant


def start_server(
    variant: str | Variant,
    serving: ServingConfig,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: Callable[[str], None] | None = None,
):
    """A ``vllm serve`` of ``variant`` (not yet started: use it as a context manager). Signal handlers
    that stop it on SIGINT/SIGTERM are installed from the main thread only (the demo starts other
    variants' servers from worker threads; atexit stops those)."""
    from srice.serving.launcher import has_gpu, install_signal_handlers, server_for, share_line

    variant = as_variant(variant)
    say = log or _stderr
    if threading.current_thread() is threading.main_thread():
        install_signal_handlers()
    say(f"starting vllm serve for variant {variant.name!r} ...")
    gpu = int(serving.device.partition(":")[2] or 0)  # cuda:N serves on GPU N; auto and cuda on GPU 0
    server = server_for(
        variant,
        executable=serving.vllm,
        host=host,
        port=port,
        startup_timeout=serving.startup_timeout,
        gpu=gpu,
    )
    if has_gpu():
        say(share_line(server))
    return server
