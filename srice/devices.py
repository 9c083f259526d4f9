"""Where models and tools run: ``auto`` (CUDA when this process sees a GPU, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``.

Why one place: the user says ``--device`` once, and the tools, the in-process model and the model
server must all hear the same thing, with one clear error where the machine cannot do it (not a CUDA
traceback in the middle of a batch). ``auto`` is resolved in the process that runs the model: a Ray
worker with a GPU puts its tools on that GPU, one without stays on its CPU.
"""

from __future__ import annotations

import re

from srice.errors import InputError

DEVICES = "auto, cpu, cuda or cuda:N"
_SYNTAX = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(device: str) -> str:
    """The device string if it is one srice understands (no torch needed: the command line checks
    it before anything starts)."""
    if not isinstance(device, str) or not _SYNTAX.match(device):
        raise InputError(f"--device must be {DEVICES}, got {device!r}")
    return device


def resolve_device(device: str = "auto") -> str:
    """``cpu`` or ``cuda:N`` for ``device``, checked against this machine: ``auto`` is CUDA when
    torch sees a GPU; asking for CUDA where there is none, or for a GPU index it does not have, is
    one ``InputError`` line."""
    check_device(device)
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        raise InputError(
            f"--device {device}: CUDA is not available on this machine (torch {torch.__version__} sees no "
            "GPU); use --device cpu or auto"
        )
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:  # count >= 1 here
        raise InputError(
            f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return f"cuda:{index}"


def default_dtype(device: str) -> str:
    """The dtype a model runs in on ``device`` (resolved) unless told otherwise: bfloat16 on a GPU,
    float32 on the CPU (where srice's toy and tests compare logprobs with vLLM's float32)."""
    return "bfloat16" if device.startswith("cuda") else "float32"
