"""Tiny random-weight models of other MLLM families than srice's own Qwen2-VL, built offline.

Why: users bring their own MLLM, and the in-process backend must load what transformers loads (issue
#26: a checkpoint whose ``generation_config.eos_token_id`` was an int crashed it). These builds give the
tests real checkpoints of other shapes without a model hub: the real architecture with random weights,
a byte-level BPE tokenizer trained here (as ``tiny_mllm``), a processor and a chat template, all written
by ``save_pretrained`` so that ``AutoModelForImageTextToText`` and ``AutoProcessor`` load the folder as
they would a hub checkpoint.

- ``qwen2_5_vl``: Qwen2.5-VL (windowed-attention vision tower, M-RoPE decoder). Its generation config
  lists two EOS ids and its tokenizer has a pad token, as the hub's Qwen2.5-VL-Instruct models.
- ``llava``: LLaVA-1.5 (a CLIP vision tower, a two-layer projector, a Llama decoder). Its generation
  config names one EOS id as an int, and its tokenizer has a BOS but no pad token, as Llama's.

LLaVA rather than Idefics3: its processor is a fixed resize and crop to one tile (no image splitting),
so a tiny build stays small and fast, and a CLIP tower plus a Llama decoder is the most common
"bring your own MLLM" shape. Builds are cached by a content key, like ``tiny_mllm``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from srice.errors import InputError
from srice.paths import cache_dir

from .tiny_mllm import (
    SPECIAL_TOKENS,
    build_cached,
    qwen_text_config,
    qwen_tokenizer,
    save_qwen,
    train_tokenizer,
)

BUILDER_VERSION = 1
FAMILIES = ("qwen2_5_vl", "llava")

# LLaVA-1.5's conversation shape ("USER: <image>\n... ASSISTANT:"), with no default system message.
LLAVA_TOKENS = ("<s>", "</s>", "<image>")
LLAVA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ message['role'].upper() + ': ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- elif part['type'] in ('image', 'image_url') -%}{{ '<image>\\n' }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


@dataclass(frozen=True)
class FamilySpec:
    """A tiny model of ``family`` (one of ``FAMILIES``). vLLM's CPU attention needs head size >= 32."""

    family: str = "qwen2_5_vl"
    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_depth: int = 2
    vision_embed_dim: int = 64
    vision_heads: int = 2
    image_tokens: int = 16
    """Qwen2.5-VL: the processor's cap per image; LLaVA: the fixed count (a square number)."""
    max_position_embeddings: int = 2048

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise InputError(f"unknown tiny model family {self.family!r}; known: {', '.join(FAMILIES)}")

    def key(self) -> str:
        blob = json.dumps({"v": BUILDER_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def family_model_path(spec: FamilySpec = FamilySpec(), root: Path | None = None) -> Path:
    """The folder of the tiny model for ``spec``, building it on first use."""
    root = Path(root) if root is not None else cache_dir() / "models"
    name = f"tiny-{spec.family.replace('_', '')}-{spec.key()}"
    return build_cached(root / name, lambda out: build_family_model(spec, out))


def build_family_model(spec: FamilySpec, out: Path) -> Path:
    """Write the model, tokenizer, processor and chat template for ``spec`` into ``out``."""
    build = {"qwen2_5_vl": _build_qwen2_5_vl, "llava": _build_llava}[spec.family]
    build(spec, Path(out))
    return Path(out)


def _build_qwen2_5_vl(spec: FamilySpec, out: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = qwen_tokenizer(spec)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=qwen_text_config(spec, max(spec.vocab_size, len(tokenizer)), ids),
        vision_config=dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_embed_dim,
            intermediate_size=2 * spec.vision_embed_dim,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.hidden_size,
            fullatt_block_indexes=[spec.vision_depth - 1],  # the rest use windowed attention
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        torch_dtype="float32",
    )
    save_qwen(Qwen2_5_VLForConditionalGeneration, config, spec.seed, out, Qwen2_5_VLProcessor, tokenizer,
              spec.image_tokens)  # fmt: skip


def _build_llava(spec: FamilySpec, out: Path) -> None:
    import torch
    from transformers import (
        CLIPImageProcessor,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    side = math.isqrt(spec.image_tokens)
    if side * side != spec.image_tokens:
        raise InputError(f"a tiny LLaVA needs a square number of image tokens, got {spec.image_tokens}")
    patch = 14
    named = dict(eos_token="</s>", bos_token="<s>", pad_token=None)  # Llama's: no pad token
    tokenizer = train_tokenizer(spec, LLAVA_TOKENS, LLAVA_TEMPLATE, **named)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_TOKENS}
    config = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=spec.vision_embed_dim,
            intermediate_size=2 * spec.vision_embed_dim,
            projection_dim=spec.vision_embed_dim,
            num_hidden_layers=spec.vision_depth,
            num_attention_heads=spec.vision_heads,
            image_size=side * patch,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=max(spec.vocab_size, len(tokenizer)),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads,
            max_position_embeddings=spec.max_position_embeddings,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=None,
        ),
        image_token_index=ids["<image>"],
        image_seq_length=spec.image_tokens,
        vision_feature_select_strategy="default",  # the CLS token is dropped: side*side tokens
        vision_feature_layer=-2,
    )
    torch.manual_seed(spec.seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], do_sample=False
    )
    model.save_pretrained(out)
    size = side * patch
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size=size),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    processor.save_pretrained(out)
