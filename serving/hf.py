"""In-process transformers backend: same requests, same completions, no server.

For CPU development, tests and tiny models. Logprobs are the raw (pre-temperature) log-softmax of
the logits, as vLLM reports them by default, so the two backends can be compared token by token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .types import Completion, Request, TokenLogprob


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


class TransformersBackend:
    """Batched greedy or sampled generation with ``AutoModelForImageTextToText``."""

    def __init__(
        self, model: str | Path, *, batch_size: int = 8, dtype: str = "float32", device: str = "cpu"
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.name = self.identity = f"transformers:{model}"
        self.processor = AutoProcessor.from_pretrained(str(model))
        self.processor.tokenizer.padding_side = "left"
        load = {}
        if device == "cpu" and _compressed_tensors(model):  # packed weights have no CPU kernels here
            from transformers import CompressedTensorsConfig

            load["quantization_config"] = CompressedTensorsConfig(dequantize=True)
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(model), dtype=getattr(torch, dtype), **load
        )
        self.model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.eos = set(self.model.generation_config.eos_token_id or [])
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
