"""What ``srice compress`` does (``CompressConfig``): the method and its settings, checked on creation.
A light module, so the command line can offer the methods and show the defaults without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srice.errors import InputError

METHODS = {
    "magnitude": "unstructured |W| per output row (no data needed)",
    "wanda": "|W| x ||X||_2 per output row (Sun et al.)",
    "sparsegpt": "OBS-style prune and update (Frantar & Alistarh), native",
    "llmc-wanda": "llm-compressor's Wanda with explicit per-layer sparsities",
    "llmc-sparsegpt": "llm-compressor's SparseGPT with explicit per-layer sparsities",
    "depth": "remove the decoder layers with the lowest block influence",
    "w4a16": "GPTQ 4-bit weights, 16-bit activations (llm-compressor, compressed-tensors)",
    "fp8": "FP8 weights and dynamic FP8 activations (llm-compressor, compressed-tensors)",
}
PRUNING = ("magnitude", "wanda", "sparsegpt", "llmc-wanda", "llmc-sparsegpt")
NEEDS_DATA = ("wanda", "sparsegpt", "llmc-wanda", "llmc-sparsegpt", "depth", "w4a16")


def check_args(method: str, sparsity: float | None, nm: str | tuple | None, owl_on: bool) -> tuple:
    from srice.compress import masks

    if method not in METHODS:
        raise InputError(f"unknown compression method {method!r}; known: {', '.join(METHODS)}")
    nm = masks.parse_nm(nm) if isinstance(nm, str) or nm is None else masks.parse_nm(f"{nm[0]}:{nm[1]}")
    if nm and method not in PRUNING:
        raise InputError(f"N:M applies to pruning methods ({', '.join(PRUNING)}), not {method}")
    if nm and owl_on:
        raise InputError("N:M fixes every layer's sparsity at 1 - N/M; it cannot be combined with OWL")
    if owl_on and method not in PRUNING:
        raise InputError(f"OWL allocates sparsity for {', '.join(PRUNING)}, not {method}")
    if nm:
        implied = 1 - nm[0] / nm[1]
        if sparsity is not None and abs(sparsity - implied) > 1e-9:
            raise InputError(f"N:M {nm[0]}:{nm[1]} means sparsity {implied:g}, not {sparsity:g}")
        sparsity = implied
    sparsity = masks.check_sparsity(0.5 if sparsity is None else sparsity)
    if method == "depth" and sparsity == 0:
        raise InputError("depth pruning needs sparsity > 0 (the share of layers to remove)")
    return sparsity, nm


@dataclass(frozen=True)
class CompressConfig:
    """What ``compress`` does: the method and its settings, checked (and N:M resolved) on creation."""

    method: str
    sparsity: float | None = None  # share of weights per layer (depth: of layers); None: 0.5 or N:M's
    calib: str | Path | None = None  # calibration questions (any format srice eval reads)
    calib_n: int = 32
    nm: str | tuple[int, int] | None = None  # "2:4": keep N of every M weights
    owl: bool = False  # OWL's outlier-weighted per-layer sparsity
    owl_m: float = 5.0
    owl_lambda: float = 0.08
    owl_clamp: bool = False  # srice's earlier variant: every layer within S +- lambda (not the reference)
    include_vision: bool = False

    def __post_init__(self) -> None:
        sparsity, nm = check_args(self.method, self.sparsity, self.nm, self.owl)
        object.__setattr__(self, "sparsity", sparsity)
        object.__setattr__(self, "nm", nm)
        if self.needs_data and not self.calib:
            raise InputError(
                f"method {self.method}{' with OWL' if self.owl else ''} needs calibration data (--calib)"
            )
        if self.calib_n < 1:
            raise InputError(f"calib_n must be >= 1, got {self.calib_n}")

    @property
    def needs_data(self) -> bool:
        return self.method in NEEDS_DATA or (self.owl and self.method != "magnitude")
