"""Deterministic tiny Qwen2-VL models, built locally because no model hub is reachable here.

The model has the real Qwen2-VL architecture (vision tower, merger, M-RoPE text decoder), a
byte-level BPE tokenizer trained here, the Qwen2-VL special tokens, an image processor and a chat
template, saved in Hugging Face format so that transformers and ``vllm serve`` both load it.
Weights are random; the point is a real model of the real shape that the whole stack can serve.

Builds are cached under a content key (builder version + every size field + seed): asking twice for
the same spec returns the same folder, and the same spec builds the same bytes on any machine with
the same library versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from srice.paths import cache_dir

BUILDER_VERSION = 1

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# One image part becomes <|vision_start|><|image_pad|><|vision_end|>; the processor expands the pad
# to one token per merged patch. No default system message, so callers control the shared prefix.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- elif part['type'] in ('image', 'image_url') -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Words the toy tasks and tests use, so they tokenize into few pieces.
_WORDS = (
    "what which where how many is are there the a an of in on to left right above below colour color "
    "red green blue yellow purple orange black white grey gray pink brown circle square triangle star "
    "shape object text word digit number written answer question image picture yes no option choose "
    "one two three four five six seven eight nine ten zero small large tiny big object objects A B C D "
    "the answer is with a single word or letter describe count regions relevant list look at"
).split()


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny Qwen2-VL. vLLM's CPU attention needs a head size of at least 32."""

    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    """The text decoder: vocabulary (a byte-level BPE trained here), width, FFN width, layers."""
    num_heads: int = 4
    num_kv_heads: int = 2
    """Its attention: query heads and key/value heads (grouped-query attention)."""
    vision_depth: int = 2
    vision_embed_dim: int = 64
    vision_heads: int = 2
    max_image_tokens: int = 64
    max_position_embeddings: int = 2048

    def key(self) -> str:
        blob = json.dumps({"v": BUILDER_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tiny_model_path(spec: TinySpec = TinySpec(), root: Path | None = None) -> Path:
    """The folder of the tiny model for ``spec``, building it on first use."""
    root = Path(root) if root is not None else cache_dir() / "models"
    return build_cached(root / f"tiny-qwen2vl-{spec.key()}", lambda out: build_tiny_model(spec, out))


def build_cached(target: Path, build: Callable[[Path], object], marker: str = "config.json") -> Path:
    """``target`` once it holds ``marker`` (a built model), running ``build(folder)`` on first use. The
    build goes to a staging folder renamed into place, so a crash leaves no half-written model and two
    processes building at once both end with one complete copy (the same spec builds the same bytes).
    Used for the tiny tools' weights too (``tiny_tools``)."""
    target = Path(target)
    if (target / marker).exists():
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first; its copy is identical
            if not (target / marker).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _corpus(seed: int, lines: int = 4000) -> list[str]:
    """Deterministic training text for the tokenizer (stdlib sources vary across Python builds)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 999)))
        out.append(" ".join(words) + rng.choice(("?", ".", "", ":")))
    return out


def train_tokenizer(
    spec, special: Sequence[str], template: str, corpus: Sequence[str] | None = None, **named
):
    """A byte-level BPE of ``spec.vocab_size`` trained on ``corpus`` (default: a generic word list of
    ``spec.seed``) plus the ``special`` tokens; ``named`` gives the eos/pad/bos token strings (None:
    the tokenizer has none). Shared by every tiny family (``tiny_families``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus if corpus is not None else _corpus(spec.seed), trainer=trainer)
    tok.add_special_tokens(list(special))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=spec.max_position_embeddings, chat_template=template, **named
    )


def qwen_tokenizer(spec, corpus: Sequence[str] | None = None):
    """The Qwen chat tokenizer: Qwen's special tokens, EOS ``<|im_end|>``, pad ``<|endoftext|>``."""
    named = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)
    return train_tokenizer(spec, SPECIAL_TOKENS, CHAT_TEMPLATE, corpus, **named)


def qwen_text_config(spec, vocab: int, ids: dict) -> dict:
    """The M-RoPE decoder of a tiny Qwen2-VL or Qwen2.5-VL of ``spec``'s sizes."""
    # M-RoPE splits the head_dim/2 rotary pairs into time, height and width, as Qwen2-VL's 16/24/24
    half = spec.hidden_size // spec.num_heads // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    return dict(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        max_window_layers=spec.num_layers,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def save_qwen(model_class, config, seed: int, out: Path, processor_class, tokenizer, image_tokens: int):
    """Random weights of ``model_class(config)`` (seeded), Qwen's generation config (two EOS ids), and
    a processor capping an image at ``image_tokens`` LLM tokens, saved in ``out``."""
    import torch
    from transformers import GenerationConfig, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    patch = 28  # 14 px patches merged 2x2: one LLM token per 28x28 pixels
    limits = dict(min_pixels=4 * patch * patch, max_pixels=image_tokens * patch * patch)
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(**limits),
        video_processor=Qwen2VLVideoProcessor(**limits),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)


def build_tiny_model(spec: TinySpec, out: Path, corpus: Sequence[str] | None = None) -> Path:
    """Write the model, tokenizer, processor and chat template for ``spec`` into ``out``.

    ``corpus``: text to train the tokenizer on (default: a generic word list); a model trained on one
    task (``srice.toy.train_mllm``) passes that task's prompts and answers, so its answers are single tokens.
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    out = Path(out)
    tokenizer = qwen_tokenizer(spec, corpus)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config=qwen_text_config(spec, max(spec.vocab_size, len(tokenizer)), ids),
        vision_config=dict(
            depth=spec.vision_depth,
            embed_dim=spec.vision_embed_dim,
            hidden_size=spec.hidden_size,
            num_heads=spec.vision_heads,
            mlp_ratio=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        torch_dtype="float32",
    )
    save_qwen(Qwen2VLForConditionalGeneration, config, spec.seed, out, Qwen2VLProcessor, tokenizer,
              spec.max_image_tokens)  # fmt: skip
    return out
