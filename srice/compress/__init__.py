"""Compression of the MLLM: pruning (magnitude, Wanda, SparseGPT, OWL allocation, depth) and
quantization (llm-compressor), written as HF checkpoints that the serving layer serves like the base.

The pieces are small on purpose: ``scores`` and ``masks`` are pure tensor functions, ``owl``
allocates per-layer sparsities, ``sparsegpt`` is the OBS-style solver, ``depth`` drops whole
decoder layers, ``capture`` is the only part that runs the model (forward hooks over multimodal
calibration prompts), ``quant`` calls llm-compressor, ``api.compress`` ties them together and
writes the checkpoint and its manifest, and ``register`` makes it a variant with its calibrations.
"""

from srice.compress.api import METHODS, CompressConfig, CompressResult, compress
from srice.compress.register import register

__all__ = ["METHODS", "CompressConfig", "CompressResult", "compress", "register"]
