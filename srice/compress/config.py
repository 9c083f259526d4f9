"""What ``srice compress`` and ``srice finetune`` do (``CompressConfig``, ``FinetuneConfig``): the method
and its settings, checked on creation. A light module, so the command line can offer the methods and
show the defaults without torch."""

from __future__ import annotations

import math
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
CRITERIA = ("sensitivity", "magnitude")  # SEFT's drop rules: |w dL/dw| or |w|
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


FINETUNE_METHODS = {
    "seft": "sparsity evolution fine-tuning: train the remaining weights, move connections, keep the zeros",
    "dense": "dense fine-tuning of the pruned layers, then re-pruned by magnitude to their zeros",
    "lora": "LoRA on the pruned layers, merged (the zeros are lost)",
}


@dataclass(frozen=True)
class FinetuneConfig:
    """What ``finetune`` does; checked on creation."""

    method: str = "seft"
    steps: int = 200
    lr: float = 5e-4
    batch_size: int = 8
    interval: int = 20  # SEFT: steps between topology updates
    fraction: float = 0.1  # SEFT: share of a layer's active weights moved at the first update
    stop: float = 0.75  # SEFT: no topology updates after this share of the steps
    criterion: str = "sensitivity"  # SEFT's drop rule: sensitivity |w dL/dw| or magnitude |w|
    rank: int = 8  # LoRA
    alpha: float = 16.0  # LoRA
    seed: int = 0
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.method not in FINETUNE_METHODS:
            known = ", ".join(FINETUNE_METHODS)
            raise InputError(f"unknown fine-tuning method {self.method!r}; known: {known}")
        if self.criterion not in CRITERIA:
            raise InputError(f"unknown growth criterion {self.criterion!r}; known: {', '.join(CRITERIA)}")
        for name in ("steps", "batch_size", "interval", "rank", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.fraction <= 1 or not 0 <= self.stop <= 1:
            raise InputError(f"fraction and stop must be in [0, 1], got {self.fraction}, {self.stop}")
