"""Compression of the MLLM: pruning (magnitude, Wanda, SparseGPT, OWL allocation, depth) and
quantization (llm-compressor), written as HF checkpoints that the serving layer serves like the base.

The pieces are small on purpose: ``scores`` and ``masks`` are pure tensor functions, ``owl_allocation``
allocates per-layer sparsities, ``sparsegpt`` is the OBS-style solver, ``depth`` drops whole
decoder layers, ``capture`` is the only part that runs the model (forward hooks over multimodal
calibration prompts), ``quant`` calls llm-compressor, ``api.compress`` ties them together and
writes the checkpoint and its manifest, ``config`` says what to do, and ``register`` makes the result
a variant with its calibrations. Names are imported on first use.
"""

from srice.lazy import lazy_names

_LAZY = {
    **dict.fromkeys(("METHODS", "CompressConfig"), "config"),
    **dict.fromkeys(("CompressResult", "compress"), "api"),
    "register": "register",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
