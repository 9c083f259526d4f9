"""srice on a GPU: is it the same agent, and what does the GPU buy? One script, at most ~5 minutes on
one GPU (an H100/H200); on a machine without CUDA it runs the CPU half and says so.

The model runs in this process (transformers; vLLM's CUDA wheel is too large for the GPU machines this
was written for), the tools are the embedded ones (the toy's YOLO, SAM on its boxes), and the
questions are a fresh synthetic split (seed 7). It prints:

1. CUDA against CPU on the same questions, model and tools both in float32 on each device: answers,
   pathways and US per question, which must be equal;
2. the tools' seconds per image on each device;
3. the agent's stage split (direct answers and region proposals, tools, pathway answers) per device;
4. the same split on CUDA for a 2 B-parameter Qwen2-VL-shaped model with random weights in bfloat16
   (the shape of Qwen2-VL-2B: 28 layers of 1536, vision 32 x 1280), built on the GPU, never saved.

    .venv/bin/python benchmarks/bench_gpu.py [--n 48] [--batch 16] [--big-n 16] [--no-big] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("yolo", "sam", "zoom")


def questions(n: int, seed: int):
    from srice.eval.data import load_items
    from srice.synth import SynthKnobs, generate

    folder = Path(tempfile.mkdtemp(prefix="srice-bench-gpu-"))
    kinds = ("colour", "exists", "colour_mc")
    generate(folder, seed=seed, n=n, knobs=SynthKnobs(kinds=kinds))
    return [i for i in load_items(folder / "questions.jsonl")][:n]


def toy_agent(device: str, dtype: str = "float32"):
    from srice.builder.agents import build_agent
    from srice.serving.hf import TransformersBackend
    from srice.serving.variants import get_variant

    variant = get_variant("toy")
    backend = TransformersBackend(variant.model_path(), device=device, dtype=dtype, batch_size=16)
    return build_agent(backend, variant, TOOLS, device=device, log=lambda text: None)


def stage_split(agent, items, batch: int) -> dict:
    """Seconds in each of the agent's steps over ``items``, and the answers (as ``answer_batch``)."""
    from srice.agent import Item

    seconds = {"model: direct + regions": 0.0, "tools": 0.0, "model: pathways": 0.0}
    answers = []
    for k in range(0, len(items), batch):
        chunk = [Item(i.image, i.question, i.options, i.id) for i in items[k : k + batch]]
        t0 = time.perf_counter()
        started = agent.start(chunk)
        t1 = time.perf_counter()
        agent.use_tools(started)
        t2 = time.perf_counter()
        answers += agent.finish(started)
        t3 = time.perf_counter()
        for key, dt in zip(seconds, (t1 - t0, t2 - t1, t3 - t2)):
            seconds[key] += dt
    total = sum(seconds.values())
    return {"seconds": {k: round(v, 3) for k, v in seconds.items()}, "total": round(total, 3),
            "questions_per_second": round(len(items) / total, 3), "answers": answers}  # fmt: skip


def tools_per_image(device: str, images) -> dict:
    """Seconds per image of each embedded tool on ``device`` (a first call warms it up)."""
    from srice.builder.toolbox import build_tools

    out = {}
    for tool in build_tools(["yolo", "sam"], device=device):
        tool.batch(images[:1], [()])
        began = time.perf_counter()
        for image in images:
            tool.batch([image], [()])
        out[tool.name] = round((time.perf_counter() - began) / len(images), 4)
    return out


def same_answers(a: list, b: list) -> dict:
    """Per question: the same answer, pathway and US (to 6 digits) on both devices?"""
    rows = [(x.answer == y.answer, x.pathway == y.pathway, round(x.uncertainty, 6) == round(y.uncertainty, 6))
            for x, y in zip(a, b, strict=True)]  # fmt: skip
    return {"n": len(rows), "answers": sum(r[0] for r in rows), "pathways": sum(r[1] for r in rows),
            "uncertainty": sum(r[2] for r in rows)}  # fmt: skip


def big_model_split(items, batch: int) -> dict:
    """The stage split of a 2 B-parameter Qwen2-VL-shaped model (random weights, bf16) on CUDA."""
    import torch
    from transformers import AutoConfig, AutoProcessor, Qwen2VLForConditionalGeneration

    from srice.builder.agents import build_agent
    from srice.builtin.tiny_mllm import TinySpec, tiny_model_path
    from srice.serving.hf import TransformersBackend
    from srice.serving.variants import get_variant

    folder = tiny_model_path(TinySpec(max_image_tokens=256))  # its tokenizer, processor and template
    config = AutoConfig.from_pretrained(folder)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = 1536, 8960, 28
    text.num_attention_heads, text.num_key_value_heads, text.max_window_layers = 12, 2, 28
    text.layer_types = ["full_attention"] * 28
    text.vocab_size = 151936
    text.rope_parameters = dict(text.rope_parameters, mrope_section=[16, 24, 24])  # head_dim 128
    vision = config.vision_config
    vision.depth, vision.embed_dim, vision.num_heads, vision.mlp_ratio, vision.hidden_size = (
        32,
        1280,
        16,
        4,
        1536,
    )
    with torch.device("cuda"):
        torch.manual_seed(0)
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    backend = TransformersBackend.from_loaded(
        "qwen2-vl-2b-shaped", AutoProcessor.from_pretrained(folder), model
    )
    agent = build_agent(backend, get_variant("tiny"), TOOLS, device="cuda", log=lambda text: None)
    split = stage_split(agent, items, batch)
    split.pop("answers")
    return {"parameters": parameters, **split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="questions (default 48)")
    parser.add_argument("--seed", type=int, default=7, help="synth seed of the questions")
    parser.add_argument("--batch", type=int, default=16, help="questions per agent batch")
    parser.add_argument("--big-n", type=int, default=16, help="questions for the 2 B-parameter model")
    parser.add_argument("--no-big", action="store_true", help="skip the 2 B-parameter model")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    from srice.images import load_image

    items = questions(args.n, args.seed)
    images = [load_image(i.image) for i in items[: min(len(items), 8)]]
    devices = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    name = torch.cuda.get_device_name(0) if len(devices) > 1 else "none"
    print(
        f"# bench_gpu: {len(items)} questions (synth seed {args.seed}), tools {','.join(TOOLS)}, GPU: {name}"
    )
    result: dict = {"gpu": name, "questions": len(items), "devices": {}}
    answers = {}
    for device in devices:
        split = stage_split(toy_agent(device), items, args.batch)
        answers[device] = split.pop("answers")
        result["devices"][device] = {
            "stages": split,
            "tools_seconds_per_image": tools_per_image(device, images),
        }
    print("\n| device | direct+regions s | tools s | pathways s | q/s | yolo s/img | sam s/img |")
    print("|---|---|---|---|---|---|---|")
    for device, r in result["devices"].items():
        s, t = r["stages"]["seconds"], r["tools_seconds_per_image"]
        print(f"| {device} | {' | '.join(f'{v:.2f}' for v in s.values())} | "
              f"{r['stages']['questions_per_second']:.2f} | {t['yolo']:.3f} | {t['sam']:.3f} |")  # fmt: skip
    if len(devices) > 1:
        result["cuda_vs_cpu_equal"] = same_answers(answers["cpu"], answers["cuda:0"])
        print(f"\nCUDA vs CPU, equal out of {len(items)}: {json.dumps(result['cuda_vs_cpu_equal'])}")
        if not args.no_big:
            result["big_model_cuda"] = big_model_split(items[: args.big_n], args.batch)
            print(f"2 B-parameter model on CUDA (bf16): {json.dumps(result['big_model_cuda'])}")
    else:
        print("\nno CUDA device here: no CUDA rows, no CUDA-vs-CPU comparison, no 2 B-parameter model")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
