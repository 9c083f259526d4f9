"""llm-compressor: quantization (W4A16 GPTQ, FP8 dynamic) and its Wanda/SparseGPT for comparison.

Run as its authors run it: ``oneshot`` chooses its own pipeline, the sequential one for the methods
that calibrate (GPTQ, Wanda, SparseGPT: block by block, each block calibrated on the outputs of the
already-compressed blocks before it, so compression error is carried forward) and the data-free one
for FP8 dynamic (weight scales from the weights, activation scales at run time; the pipeline cannot
change them: the weights come out bit-identical with the basic one).

One correction, measured: llm-compressor 0.14's sequential pipeline traces the model with torch.fx,
and on Qwen2-VL (transformers 5.23) its trace drops the step that puts the vision tower's features in
place of the image tokens (``if pixel_values is not None`` is wrapped and run eagerly, and the
``mm_encoder_outputs`` dict it fills is read by untraced code). The first decoder layer then sees the
plain ``<|image_pad|>`` embedding at every image token: on the tiny Qwen2-VL its inputs there differ
from the model's own by up to 4.2 (and equal the image-free forward's exactly), while text tokens are
bit-identical. So srice feeds the sequential pipeline what the model itself feeds its text decoder
(``decoder_inputs``: image features merged, M-RoPE position ids, attention mask; the logits from them
equal the model's bit for bit). With ``include_vision`` the vision blocks need the images, so the
basic pipeline (one pass over the model as it is, no error carried forward) runs instead, and the
manifest says so. ``pipeline`` ("basic") and ``dense_inputs`` (sequential, fed the uncompressed
blocks' outputs) exist for comparisons; basic against sequential on the toy is in the README.

Saved as compressed-tensors checkpoints, which vLLM loads without any flag. llm-compressor's own
OWL profile fails end to end (its per-layer dict does not match its per-module targets), so OWL
sparsities are computed by ``srice.compress.owl_allocation`` and passed as an explicit per-layer
list, whose order is llm-compressor's target order (module order, the same as ``capture.find_blocks``).

Logs: importing llm-compressor configures loguru, which removes every handler in the process. srice
imports it with ``LLM_COMPRESSOR_LOG_DISABLED=true`` (unless you set ``LLM_COMPRESSOR_LOG_*``
yourself), so other code's handlers stay and llm-compressor's records are disabled, as a library's
should be (``loguru.logger.enable("llmcompressor")`` brings them back); compressed-tensors' records
are disabled while srice calls it and enabled again after.

Device: llm-compressor onloads each block to its "main device" (the first GPU when there is one) and
has no option for another; srice's device is put in its place for the call. The model is given back
undispatched, on the CPU.

The vision tower is left out (``re:.*visual.*``) unless asked for, and the LM head always is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

SCHEMES = {"w4a16": "W4A16", "fp8": "FP8_DYNAMIC"}
_LOG_NAMES = ("llmcompressor", "compressed_tensors")


def _import_quietly() -> None:
    """Import llmcompressor without letting its logger set-up remove other code's loguru handlers."""
    if "llmcompressor" in sys.modules or any(k.startswith("LLM_COMPRESSOR_LOG") for k in os.environ):
        import llmcompressor  # noqa: F401

        return
    os.environ["LLM_COMPRESSOR_LOG_DISABLED"] = "true"
    try:
        import llmcompressor  # noqa: F401
    finally:
        os.environ.pop("LLM_COMPRESSOR_LOG_DISABLED", None)
    from loguru import logger

    try:
        logger.level("METRIC")
    except ValueError:  # its set-up registers this level only when logging is on; its code logs at it
        logger.level("METRIC", no=38)


@contextmanager
def _quiet() -> Iterator[None]:
    """llm-compressor's and compressed-tensors' loguru records off for the duration, handlers untouched."""
    _import_quietly()
    from llmcompressor.logger import LOGGER_CONFIG
    from loguru import logger

    was_on = {"llmcompressor": not LOGGER_CONFIG.disabled, "compressed_tensors": True}
    for name in _LOG_NAMES:
        logger.disable(name)
    try:
        yield
    finally:
        for name in _LOG_NAMES:
            if was_on[name]:
                logger.enable(name)


@contextmanager
def _main_device(device: str) -> Iterator[None]:
    """llm-compressor's pipelines onload to ``device``, then the model is undispatched (on the CPU)."""
    import llmcompressor.pipelines.data_free.pipeline as free
    import llmcompressor.pipelines.sequential.pipeline as sequential
    import llmcompressor.utils.dev as dev

    target = torch.device(device)
    modules = (dev, sequential, free)
    before = [m.get_main_device for m in modules]
    for m in modules:
        m.get_main_device = lambda: target
    try:
        yield
    finally:
        for m, f in zip(modules, before):
            m.get_main_device = f


def _ignore(include_vision: bool) -> list[str]:
    return ["re:.*lm_head"] + ([] if include_vision else ["re:.*visual.*", "re:.*vision.*"])


def _dataloader(batches: Sequence[dict]):
    from torch.utils.data import DataLoader

    return DataLoader(list(batches), batch_size=None, collate_fn=lambda x: x)


class _Stop(Exception):
    pass


def decoder_inputs(model: torch.nn.Module, batches: Sequence[dict], device: str = "cpu") -> list[dict] | None:
    """Per sample, what the model passes its text decoder (``inputs_embeds`` with the image features
    in place, ``position_ids``, ``attention_mask``), as model inputs on the CPU; None where the
    decoder is not called with ``inputs_embeds`` as a keyword."""
    from srice.compress.capture import find_blocks
    from srice.compress.layerwise import place, to_device

    text_name, text_list = find_blocks(model)[:2]
    decoder = model.get_submodule(text_name.rpartition(".")[0])
    seen: list[dict] = []

    def catch(_module, _args, kwargs):
        seen.append(
            {k: kwargs[k] for k in ("inputs_embeds", "position_ids", "attention_mask") if k in kwargs}
        )
        raise _Stop

    handle = decoder.register_forward_pre_hook(catch, with_kwargs=True)
    head = model.get_output_embeddings()
    place(model, device, [text_list] + ([head] if head is not None else []))
    try:
        with torch.inference_mode():
            for batch in batches:
                try:
                    model(**to_device(batch, device), use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
        model.to("cpu")
    if len(seen) != len(batches) or any(s.get("inputs_embeds") is None for s in seen):
        return None
    return [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()} for s in seen]


def _oneshot(
    model, recipe, batches, device: str, pipeline: str | None, dense_inputs: bool, vision: bool
) -> dict:
    """``oneshot`` with llm-compressor's own choice of pipeline (module docstring), unless ``pipeline``;
    returns what ran: the pipeline and the inputs it was fed."""
    from compressed_tensors.offload import remove_dispatch
    from llmcompressor import oneshot
    from llmcompressor.pipelines.registry import CalibrationPipeline

    ran = {"pipeline": pipeline or type(CalibrationPipeline.from_modifiers([recipe])).__name__}
    ran["pipeline"] = ran["pipeline"].removesuffix("Pipeline").lower()
    kwargs: dict = {"propagate_error": not dense_inputs}
    if batches:
        ran["inputs"] = "model inputs (images, text)"
        if ran["pipeline"] == "sequential" and vision:
            ran["pipeline"] = "basic"
            ran["why"] = "include_vision: llm-compressor's sequential trace drops the image features"
        elif ran["pipeline"] == "sequential":
            embedded = decoder_inputs(model, batches, device)
            if embedded is None:
                ran["pipeline"], ran["why"] = "basic", "the text decoder's inputs could not be caught"
            else:
                batches = embedded
                ran["inputs"] = "the text decoder's inputs, image features merged by the model"
        kwargs |= {"dataset": _dataloader(batches), "num_calibration_samples": len(batches)}
        kwargs["pipeline"] = ran["pipeline"]
    if dense_inputs and batches:
        ran["inputs"] += "; each block fed the uncompressed blocks' outputs"
    with _main_device(device):
        try:
            oneshot(model=model, recipe=recipe, **kwargs)
        finally:
            remove_dispatch(model)
    model.to("cpu")
    return ran


def quantize(
    model: torch.nn.Module,
    scheme: str,
    batches: Sequence[dict],
    *,
    include_vision: bool = False,
    device: str = "cpu",
    pipeline: str | None = None,
) -> dict:
    """Quantize ``model`` in place; GPTQ (W4A16) uses ``batches`` for its Hessians, FP8 dynamic needs
    no data (weights per channel, activations per token at run time). Returns what ran (``_oneshot``)."""
    with _quiet():
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

        ignore = _ignore(include_vision)
        if scheme == "w4a16":
            recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=ignore)
        elif scheme == "fp8":
            recipe = QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ignore)
            batches = batches if pipeline else []
        else:
            raise ValueError(f"unknown scheme {scheme!r}")
        return _oneshot(model, recipe, batches, device, pipeline, False, include_vision)


def prune(
    model: torch.nn.Module,
    method: str,
    block_classes: Sequence[str],
    sparsities: Sequence[float],
    batches: Sequence[dict],
    *,
    nm: tuple[int, int] | None = None,
    include_vision: bool = False,
    device: str = "cpu",
    pipeline: str | None = None,
    dense_inputs: bool = False,
) -> dict:
    """llm-compressor's Wanda or SparseGPT with one explicit sparsity per block (module order).
    Returns what ran (``_oneshot``)."""
    with _quiet():
        from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

        cls = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[method]
        recipe = cls(
            sparsity=[float(s) for s in sparsities],
            targets=list(block_classes),
            ignore=_ignore(include_vision),
            mask_structure=f"{nm[1] - nm[0]}:{nm[1]}" if nm else "0:0",  # llm-compressor's N: pruned count
        )
        return _oneshot(model, recipe, batches, device, pipeline, dense_inputs, include_vision)
