"""Compression of the MLLM: pruning (magnitude, Wanda, SparseGPT, OWL allocation, depth) and
quantization (llm-compressor), written as HF checkpoints that the serving layer serves like the base.

The pieces are small on purpose: ``scores`` and ``masks`` are pure tensor functions, ``owl_allocation``
allocates per-layer sparsities, ``sparsegpt`` is the OBS-style solver, ``depth`` drops whole
decoder layers, ``capture`` builds the multimodal calibration prompts and the statistics hooks,
``layerwise`` runs the model block by block (one pass, on the device), ``pruning`` prunes with them,
``quant`` calls llm-compressor, ``api.compress`` ties them together and
writes the checkpoint and its manifest, ``config`` says what to do, and ``register`` makes the result
a variant with its calibrations. Names are imported on first use.
"""

from srice.lazy import lazy_names

_LAZY = {
    **dict.fromkeys(("METHODS", "CompressConfig"), "config"),
    **dict.fromkeys(("CompressResult", "compress"), "api"),
}  # register(): srice.compress.register.register (a lazy name may not shadow its own submodule)
__all__ = sorted(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
