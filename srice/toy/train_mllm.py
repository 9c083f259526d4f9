"""Training the toy MLLM: a ~5 M-parameter Qwen2-VL that answers synthetic questions on 2 CPU cores.

Why a trained toy at all: random weights can run the pipeline but cannot show that SRICE helps. A
model trained here, on the synthetic world, reads colours and presence of objects it can see, cannot
see 6-12 px objects in the full view at its 49-image-token budget, and reads them from a zoomed crop:
the situation SRICE exists for, on a CPU.

Training is seeded and counted in steps (not minutes), so the same seed gives the same model on the
same library versions; examples come from synthetic images of seed ``1000 + seed``, a range no
evaluation split uses. A background process renders and tokenizes batches while the main process
trains.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srice.agent import prompts
from srice.builtin.tiny_mllm import TinySpec, build_tiny_model
from srice.synth import SynthKnobs, make_image
from srice.toy.data import Example, examples_for_image, stream, targets_of

TOY_KINDS = ("colour", "exists", "colour_mc")  # the shipped bundle's; ``KINDS`` has every kind
TRAIN_SEED_OFFSET = 1000  # training images: synth seed 1000 + model seed


def toy_spec(seed: int) -> TinySpec:
    """Text 256 wide x 4 layers (8 heads of 32, as vLLM's CPU attention needs), vision 128 x 4,
    at most 49 image tokens per image: a 1344 px image is seen at ~196 px (a 6-12 px object becomes
    1-2 px), a 448 px crop at 196 px (the same object at 18-37 px)."""
    return TinySpec(
        seed=seed,
        vocab_size=1024,
        hidden_size=256,
        intermediate_size=768,
        num_layers=4,
        num_heads=8,
        num_kv_heads=4,
        vision_depth=4,
        vision_embed_dim=128,
        vision_heads=4,
        max_image_tokens=49,
        max_position_embeddings=1024,
    )


@dataclass(frozen=True)
class TrainConfig:
    """Four phases: the vision tower alone on dense token labels (``vision_steps``, see
    ``srice.toy.vision``); region examples alone (``region_steps``); crop examples alone, cropped
    tight (``focus_steps``), where the object fills the crop and the answer is plainly in the image;
    then every role with the agent's own crop geometry (``steps``).

    Trained on every role from the start, the model learned the answers' text priors and never
    looked at its images; in the mixed phase alone it never learnt to name the question's shape
    (region accuracy 0.15, chance 1/6), which it learns in ~60 steps on its own."""

    seed: int = 0
    steps: int = 500
    focus_steps: int = 250
    region_steps: int = 80
    vision_steps: int = 150
    vision_batch: int = 32  # views per vision step
    batch_size: int = 16
    lr: float = 1.5e-3
    warmup: int = 50
    weight_decay: float = 0.01
    focus_context: float = 0.1  # crop geometry of the focus phase
    focus_min_side: int = 8
    kinds: tuple[str, ...] = TOY_KINDS
    tiny_fraction: float = 0.5
    mc_fraction: float = 0.3
    miss: float = 0.2  # share of crop examples whose "detector" missed the target
    region_share: float = 0.35  # share of questions that also train the region stage
    # share of text questions' crop examples shown as the OCR pathway shows them (one plate, its text
    # quoted; a third as often for other kinds): 0 keeps the shipped bundle's data stream unchanged
    ocr_views: float = 0.0
    threads: int = 2
    device: str = "cpu"  # cpu or cuda:N (train-toy --device); the saved model is the same either way
    eval_images: int = 150  # held-out synthetic images for the end-of-training report

    @property
    def knobs(self) -> SynthKnobs:
        return SynthKnobs(kinds=self.kinds, tiny_fraction=self.tiny_fraction, mc_fraction=self.mc_fraction)


def tokenizer_corpus(config: TrainConfig, images: int = 400) -> list[str]:
    """Prompts and answers of the task, so the tokenizer learns its words (and each answer is one
    token, which the first-token uncertainty score relies on)."""
    lines = []
    for index in range(images):
        _, _, records = make_image(config.seed + TRAIN_SEED_OFFSET + 10**6, index, config.knobs)
        for r in records:
            question = prompts.question_text(r["question"], r["options"])
            lines += [question, prompts.answer_instruction(r["options"]), prompts.CROP_INTRO]
            lines += [prompts.REGION_INSTRUCTION, r["answer"], json.dumps(targets_of(r))]
    return lines


class Encoder:
    """Turns examples into model inputs the way the serving backends do: the processor's chat
    template with the generation prompt, then the answer and ``<|im_end|>`` as the only labels."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.end = "<|im_end|>"

    def encode(self, example: Example) -> dict:
        parts = [
            {"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in example.content
        ]
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": parts}], add_generation_prompt=True, tokenize=False
        )
        images = [p for p in example.content if not isinstance(p, str)]
        inputs = self.processor(text=[prompt + example.answer + self.end], images=images, return_tensors="pt")
        answer = self.tokenizer(example.answer + self.end, add_special_tokens=False)["input_ids"]
        ids = inputs["input_ids"][0]
        if ids[-len(answer) :].tolist() != answer:  # the answer merged with the prompt's last token
            raise ValueError(f"answer {example.answer!r} does not tokenize apart from its prompt")
        labels = ids.clone()
        labels[: len(ids) - len(answer)] = -100
        return {
            "input_ids": ids,
            "labels": labels,
            "mm_token_type_ids": inputs["mm_token_type_ids"][0],
            "pixel_values": inputs["pixel_values"],
            "image_grid_thw": inputs["image_grid_thw"],
        }

    def collate(self, encoded: Sequence[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        labels = torch.full((len(encoded), width), -100, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        kinds = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            n = len(e["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = e["input_ids"], e["labels"], 1
            kinds[row, :n] = e["mm_token_type_ids"]
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "mm_token_type_ids": kinds,
            "labels": labels,
            "pixel_values": torch.cat([e["pixel_values"] for e in encoded]),
            "image_grid_thw": torch.cat([e["image_grid_thw"] for e in encoded]),
        }


def _batches(model_dir: str, config: TrainConfig, phase: str) -> Iterator[dict]:
    """Shuffled batches from the endless example stream (a small buffer mixes roles and images) of
    one training phase (``TrainConfig``); each phase draws its own images."""
    import random

    import torch
    from transformers import AutoProcessor

    torch.set_num_threads(1)
    encoder = Encoder(AutoProcessor.from_pretrained(model_dir))
    rng = random.Random(config.seed)
    buffer: list[Example] = []
    focus = {"miss": 0.0, "context": config.focus_context, "min_side": config.focus_min_side}
    options, start = {
        "region": ({"roles": ("region",)}, 2 * 10**6),
        "focus": ({"roles": ("crop",), "quote": config.ocr_views} | focus, 10**6),
        "full": ({"miss": config.miss, "region_share": config.region_share, "quote": config.ocr_views}, 0),
    }[phase]
    examples = stream(config.seed + TRAIN_SEED_OFFSET, config.knobs, start=start, **options)
    size = config.batch_size
    for example in examples:
        buffer.append(example)
        if len(buffer) < 8 * size:
            continue
        # One role per batch: a crop example is twice as long as a direct one, and padding a mixed
        # batch to its longest member wasted ~40% of the compute.
        rng.shuffle(buffer)
        buffer.sort(key=lambda e: e.role)
        batches = [buffer[k : k + size] for k in range(0, len(buffer) - size + 1, size)]
        batches = [b for b in batches if len({e.role for e in b}) == 1]
        used = {id(e) for b in batches for e in b}
        buffer = [e for e in buffer if id(e) not in used]
        rng.shuffle(batches)
        for batch in batches:
            yield encoder.collate([encoder.encode(e) for e in batch])


def _loader(model_dir: str, config: TrainConfig, phase: str):
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):
            return _batches(model_dir, config, phase)

    return torch.utils.data.DataLoader(Batches(), batch_size=None, num_workers=1, prefetch_factor=4)


def learning_rate(step: int, steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth, over one phase of ``steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _train_phase(model, optimizer, loader, steps: int, config: TrainConfig, name: str, log) -> list[float]:
    """``steps`` optimizer steps on ``loader``'s batches, with a fresh warm-up and decay."""
    import torch

    losses = []
    began = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, config)
        batch = {k: v.to(config.device) for k, v in next(loader).items()}
        loss = model(**batch).loss  # float32: bf16 autocast measured slower at this size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 99 or step == steps - 1:
            rate = (step + 1) * config.batch_size / (time.perf_counter() - began)
            recent = losses[-100:]
            log(f"{name} step {step + 1}: loss {sum(recent) / len(recent):.3f} ({rate:.1f} examples/s)")
    return losses


def train(out: str | Path, config: TrainConfig = TrainConfig(), log: Callable[[str], None] = print) -> dict:
    """Build, train and save the toy MLLM in ``out``; returns the training report (also in
    ``out/training.json``)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from srice.toy.vision import VisionConfig, pretrain_vision

    out = Path(out)
    began = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    build_tiny_model(toy_spec(config.seed), out, corpus=tokenizer_corpus(config))
    model = AutoModelForImageTextToText.from_pretrained(str(out), dtype=torch.float32).to(config.device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    log(
        f"toy MLLM: {params / 1e6:.2f} M parameters; {config.vision_steps} vision, {config.region_steps} "
        f"region, {config.focus_steps} focus and {config.steps} full steps"
    )
    vision = pretrain_vision(
        model, AutoProcessor.from_pretrained(str(out)), config.seed + TRAIN_SEED_OFFSET + 3 * 10**6,
        config.knobs, VisionConfig(steps=config.vision_steps, batch_size=config.vision_batch), log=log,
    )  # fmt: skip
    trained = time.perf_counter()
    phases = {}
    for name, steps in (
        ("region", config.region_steps),
        ("focus", config.focus_steps),
        ("full", config.steps),
    ):
        if steps:
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            # the phase's iterator (and its worker process) ends with _train_phase
            losses = _train_phase(
                model, optimizer, iter(_loader(str(out), config, name)), steps, config, name, log
            )
            phases[name] = {"steps": steps, "final_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4)}
    train_seconds = time.perf_counter() - trained
    model.eval()
    model.to("cpu", torch.bfloat16).save_pretrained(out)  # half the bytes; backends load it as float32
    report = {
        "config": dataclasses.asdict(config),
        "parameters": params,
        "vision": vision,
        "phases": phases,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
        "held_out": held_out_accuracy(out, config),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def held_out_accuracy(model_dir: Path, config: TrainConfig) -> dict:
    """Greedy accuracy per role and target size on images of a seed training never used, with the
    transformers backend: the quick check that the model reads what it can see (crops of tiny
    objects included) and not what it cannot (tiny objects in the full view)."""
    from srice.serving.hf import TransformersBackend
    from srice.serving.types import Message, Request

    backend = TransformersBackend(model_dir, batch_size=16)
    examples = []
    for index in range(config.eval_images):
        scene, image, records = make_image(config.seed + TRAIN_SEED_OFFSET + 2 * 10**6, index, config.knobs)
        rng = np.random.default_rng(index)
        examples.extend(examples_for_image(scene, image, records, rng, miss=0.0, quote=config.ocr_views))
    requests = [Request((Message("user", e.content),), max_tokens=12, top_logprobs=0) for e in examples]
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e, c in zip(examples, backend.generate(requests)):
        key = f"{e.role}/{'tiny' if e.record['meta']['target_size'] == 'tiny' else 'big'}"
        tally[key][0] += c.text.strip() == e.answer
        tally[key][1] += 1
    return {k: {"accuracy": round(right / n, 4), "n": n} for k, (right, n) in sorted(tally.items())}
