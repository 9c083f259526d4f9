"""In-process transformers backend: same requests, same completions, no server.

For CPU development, tests and tiny models. Logprobs are the raw (pre-temperature) log-softmax of
the logits, as vLLM reports them by default, so the two backends can be compared token by token.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from srice.devices import default_dtype, resolve_device
from srice.errors import InputError, ServingError

from .types import Completion, Request, TokenLogprob
from .variants import HUB_ID


def _hf_messages(request: Request) -> list[dict]:
    out = []
    for m in request.messages:
        parts = [
            {"type": "text", "text": p} if isinstance(p, str) else {"type": "image", "image": p}
            for p in m.content
        ]
        out.append({"role": m.role, "content": parts})
    return out


def _token_text(tokenizer, token_id: int) -> str:
    # A lone piece of a multi-byte character decodes to U+FFFD; vLLM reports those as "" too.
    return tokenizer.decode([token_id]).rstrip("\ufffd")


def _compressed_tensors(model: str | Path) -> bool:
    """Whether a local checkpoint is quantized in the compressed-tensors format (srice compress
    --method w4a16|fp8)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    quantization = json.loads(config.read_text()).get("quantization_config") or {}
    return quantization.get("quant_method") == "compressed-tensors" and bool(quantization.get("format"))


def _load(model: str | Path, dtype, device: str):
    """The processor and the model at ``model`` (a folder, or a hub id when the user names one), or
    one ``InputError``/``ServingError`` line that names it: transformers' own loaders raise anything
    (OSError, ValueError, KeyError, JSON errors) with pages of traceback, and a user's checkpoint that
    does not load is a user-facing failure, not a bug in srice."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    where = str(model)
    if not Path(where).expanduser().exists() and not HUB_ID.match(where):
        raise InputError(f"model folder not found: {where}")
    try:
        processor = AutoProcessor.from_pretrained(where)
        load = {}
        if device == "cpu" and _compressed_tensors(where):  # packed weights have no CPU kernels here
            from transformers import CompressedTensorsConfig

            load["quantization_config"] = CompressedTensorsConfig(dequantize=True)
        loaded = AutoModelForImageTextToText.from_pretrained(where, dtype=dtype, **load)
        loaded.to(device).eval()
    except Exception as e:  # noqa: BLE001 - third-party loaders: any exception means "does not load"
        reason = next(iter(str(e).strip().splitlines()), "")
        raise ServingError(
            f"transformers cannot load the model at {where}: {type(e).__name__}: {reason}"
        ) from e
    if getattr(processor, "tokenizer", None) is None:
        raise ServingError(
            f"the model at {where} has no multimodal processor with a tokenizer (AutoProcessor gave "
            f"{type(processor).__name__}): save one with the processor's save_pretrained"
        )
    return processor, loaded


def stop_ids(generation_config, tokenizer) -> frozenset[int]:
    """The token ids that end a completion: the generation config's ``eos_token_id`` (an int, a list or
    None, as checkpoints write it) together with the tokenizer's EOS. vLLM stops on both, so the two
    backends stop at the same token. Empty when neither names one: then every completion runs to its
    max_tokens and ends with finish_reason "length"."""
    named = getattr(generation_config, "eos_token_id", None)
    ids = [named] if isinstance(named, int) else list(named or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return frozenset(int(i) for i in ids)


def _ensure_pad(tokenizer, eos: frozenset[int]) -> int:
    """The pad id for left-padded batches. A tokenizer without one (Llama's have none) pads with its
    EOS, else with an EOS the generation config names, else with token 0: padded positions are masked
    out of attention, so any id of the vocabulary pads correctly, while adding a pad token would grow
    the vocabulary past the model's embeddings."""
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos, default=0)
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(fallback)
    return tokenizer.pad_token_id


class TransformersBackend:
    """Batched greedy or sampled generation with ``AutoModelForImageTextToText``."""

    def __init__(
        self, model: str | Path, *, batch_size: int = 8, dtype: str | None = None, device: str = "auto"
    ):
        """``device``: auto (CUDA when present), cpu, cuda or cuda:N (``srice.devices``); ``dtype``:
        default bfloat16 on a GPU, float32 on the CPU."""
        import torch

        device = resolve_device(device)
        dtype = dtype or default_dtype(device)
        processor, loaded = _load(model, getattr(torch, dtype), device)
        self._setup(str(model), processor, loaded, device, dtype, batch_size)

    @classmethod
    def from_loaded(cls, name: str, processor, model, *, batch_size: int = 8) -> TransformersBackend:
        """A backend over a model already in memory (on its device, in its dtype): for a benchmark
        that builds a large random-weight model where it runs, without writing it to disk first."""
        backend = cls.__new__(cls)
        parameter = next(model.parameters())
        dtype = str(parameter.dtype).removeprefix("torch.")
        backend._setup(name, processor, model.eval(), str(parameter.device), dtype, batch_size)
        return backend

    def _setup(self, name: str, processor, model, device: str, dtype: str, batch_size: int) -> None:
        import torch

        self.torch = torch
        self.name = self.identity = f"transformers:{name}"
        self.processor, self.model = processor, model
        self.device, self.dtype = device, dtype
        self.batch_size = batch_size
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        self.eos = stop_ids(self.model.generation_config, tokenizer)
        self.pad = _ensure_pad(tokenizer, self.eos)
        if not self.eos:
            warnings.warn(
                f"{name}: neither its generation config nor its tokenizer names an EOS token; every "
                "completion runs to max_tokens (finish_reason 'length')",
                stacklevel=3,
            )
        self._lock = threading.Lock()  # generate is not re-entrant on one model

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[float, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.temperature, []).append(i)
        with self._lock:
            for indices in groups.values():
                for k in range(0, len(indices), self.batch_size):
                    chunk = indices[k : k + self.batch_size]
                    for i, c in zip(chunk, self._isolated([requests[i] for i in chunk])):
                        out[i] = c
        return out  # type: ignore[return-value]

    def _isolated(self, batch: list[Request]) -> list[Completion]:
        """The batch, or, when it fails, each request alone: one bad request (an image the processor
        rejects, say) fails by itself. The model's code is third-party: any exception is a failure."""
        try:
            return self._generate_batch(batch)
        except Exception as e:  # noqa: BLE001
            if len(batch) == 1:
                return [Completion.failed(f"the model rejected this request ({type(e).__name__}: {e})")]
            return [self._isolated([request])[0] for request in batch]

    def _generate_batch(self, batch: list[Request]) -> list[Completion]:
        torch = self.torch
        began = time.perf_counter()
        inputs = self.processor.apply_chat_template(
            [_hf_messages(r) for r in batch],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            processor_kwargs={"return_tensors": "pt", "padding": True},
        ).to(self.device)
        temperature = batch[0].temperature
        sampling = (
            {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        )
        with torch.inference_mode():
            result = self.model.generate(
                **inputs,
                max_new_tokens=max(r.max_tokens for r in batch),
                output_logits=True,
                return_dict_in_generate=True,
                top_k=None,
                top_p=None,
                eos_token_id=sorted(self.eos) or None,  # as stop_ids, not only the generation config's
                pad_token_id=self.pad,
                **sampling,
            )
        prompt_len = inputs["input_ids"].shape[1]
        logprobs = torch.log_softmax(torch.stack(result.logits, dim=1).float(), dim=-1)
        seconds = (time.perf_counter() - began) / len(batch)
        tok = self.processor.tokenizer
        completions = []
        for row, request in enumerate(batch):
            ids = result.sequences[row, prompt_len:].tolist()[: request.max_tokens]
            tokens, kept = [], []
            for step, tid in enumerate(ids):
                lp = logprobs[row, step]
                top = ()
                if request.top_logprobs:
                    values, top_ids = lp.topk(request.top_logprobs)
                    top = tuple(
                        TokenLogprob(_token_text(tok, int(t)), float(v), token_id=int(t))
                        for v, t in zip(values, top_ids)
                    )
                tokens.append(TokenLogprob(_token_text(tok, tid), float(lp[tid]), top, token_id=tid))
                kept.append(tid)
                if tid in self.eos:
                    break
            finish = "stop" if kept and kept[-1] in self.eos else "length"
            completions.append(
                Completion(
                    text=tok.decode(kept, skip_special_tokens=True),
                    tokens=tuple(tokens),
                    finish_reason=finish,
                    seconds=seconds,
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    completion_tokens=len(kept),
                    model=str(self.name),
                )
            )
        return completions

    def close(self) -> None:
        pass
