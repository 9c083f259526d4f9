"""llm-compressor: quantization (W4A16 GPTQ, FP8 dynamic) and its Wanda/SparseGPT for comparison.

Saved as compressed-tensors checkpoints, which vLLM loads without any flag. llm-compressor's own
OWL profile fails end to end (its per-layer dict does not match its per-module targets), so OWL
sparsities are computed by ``srice.compress.owl_allocation`` and passed as an explicit per-layer list, whose
order is llm-compressor's target order (module order, the same as ``capture.find_blocks``).

The vision tower is left out (``re:.*visual.*``) unless asked for, and the LM head always is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

SCHEMES = {"w4a16": "W4A16", "fp8": "FP8_DYNAMIC"}


def _quiet():
    """llm-compressor configures loguru when imported and logs every module at INFO: keep errors."""
    import llmcompressor  # noqa: F401  (its import sets up the handlers we replace)

    try:
        from loguru import logger

        logger.remove()
        logger.add(lambda m: None, level="ERROR")
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("llmcompressor").setLevel(logging.ERROR)


def _ignore(include_vision: bool) -> list[str]:
    return ["re:.*lm_head"] + ([] if include_vision else ["re:.*visual.*", "re:.*vision.*"])


def _dataloader(batches: Sequence[dict]):
    from torch.utils.data import DataLoader

    return DataLoader(list(batches), batch_size=None, collate_fn=lambda x: x)


def quantize(model: torch.nn.Module, scheme: str, batches: Sequence[dict], *, include_vision: bool = False):
    """Quantize ``model`` in place; GPTQ (W4A16) uses ``batches`` for its Hessians, FP8 dynamic
    needs no data (weights per channel, activations per token at run time)."""
    _quiet()
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if scheme == "w4a16":
        recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=_ignore(include_vision))
        oneshot(model=model, dataset=_dataloader(batches), recipe=recipe, pipeline="basic",
                num_calibration_samples=len(batches))  # fmt: skip
    elif scheme == "fp8":
        recipe = QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=_ignore(include_vision))
        oneshot(model=model, recipe=recipe)
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    return model


def prune(
    model: torch.nn.Module,
    method: str,
    block_classes: Sequence[str],
    sparsities: Sequence[float],
    batches: Sequence[dict],
    *,
    nm: tuple[int, int] | None = None,
    include_vision: bool = False,
):
    """llm-compressor's Wanda or SparseGPT with one explicit sparsity per block (module order)."""
    _quiet()
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    cls = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[method]
    recipe = cls(
        sparsity=[float(s) for s in sparsities],
        targets=list(block_classes),
        ignore=_ignore(include_vision),
        mask_structure=f"{nm[1] - nm[0]}:{nm[1]}" if nm else "0:0",  # llm-compressor's N is the pruned count
    )
    oneshot(model=model, dataset=_dataloader(batches), recipe=recipe, pipeline="basic",
            num_calibration_samples=len(batches))  # fmt: skip
    return model
