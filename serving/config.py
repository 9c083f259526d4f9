"""How to reach the model (``ServingConfig``): a light module, so the command line can show its
defaults in ``--help`` without importing a backend."""

from __future__ import annotations

from dataclasses import dataclass

from srice.devices import check_device
from srice.errors import InputError

BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class ServingConfig:
    """How to reach the model: ``server`` (a running OpenAI-compatible server's URL) or a ``vllm
    serve`` started on 127.0.0.1; ``backend="transformers"`` runs the model in this process."""

    backend: str = "vllm"
    server: str | None = None
    timeout: float = 120.0  # seconds per request attempt
    concurrency: int = 32  # requests in flight against the server
    allow_hub: bool = False  # may the transformers backend download a hub model
    vllm: str | None = None  # the vllm executable (default: the one env/setup.sh installed)
    startup_timeout: float = 300.0
    device: str = "auto"  # the in-process model's device; for vllm serve, cuda:N picks its GPU
    dtype: str | None = None  # the in-process model's dtype (default: bfloat16 on a GPU, else float32)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("timeout", "startup_timeout"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        check_device(self.device)
        if self.concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {self.concurrency}")
