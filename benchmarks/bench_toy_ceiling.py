"""SRICE's ceiling on the toy: the tool pathway given a perfect detector (the true target box).

``bench_toy_accuracy.py`` measures SRICE with the trained toy detector. This one replaces the
detector by the synthetic world's ground truth, so it separates the two halves of the method:
- is the model's answer right when the view is right (crop vs direct accuracy)?
- does min-US selection pick that view, although the model is confidently wrong about tiny targets
  in the full view (SRICE vs direct vs the oracle-best of the two)?
Both pathways are asked through ``vllm serve`` with the agent's own prompts and crop geometry, and
scored with the bundle's uncertainty calibration, as ``srice eval`` would.

    .venv/bin/python benchmarks/bench_toy_ceiling.py [--n 300] [--seed 7] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from srice.builtin.toy_bundle import TOY_DIR, bundle_kinds


def true_box_request(item, image, config):
    """The agent's tool-pathway request with a perfect detector: the crop of the item's true target
    box (``meta["target_box"]``, from ``srice synth``), in the agent's crop geometry."""
    from srice.agent.prompts import pathway_request
    from srice.agent.visual import crop_regions
    from srice.tools.regions import Regions

    truth = Regions([item.meta["target_box"]], [1.0], ("target",), image.size)
    view = crop_regions(image, truth, context=config.crop_context, out_size=config.crop_size).image
    return pathway_request(
        image,
        view,
        item.question,
        item.options,
        max_tokens=config.max_tokens,
        top_logprobs=config.top_logprobs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="test questions")
    parser.add_argument("--seed", type=int, default=7, help="test split seed (training uses 1000+)")
    parser.add_argument(
        "--bundle", default=str(TOY_DIR), help="toy bundle folder (default: the packaged one)"
    )
    parser.add_argument("--data", help="an existing srice synth folder (default: a fresh split)")
    args = parser.parse_args()

    from srice.agent import AgentConfig
    from srice.agent.prompts import direct_request
    from srice.agent.uncertainty import SetSizeScore
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration
    from srice.eval.data import load_items
    from srice.eval.metrics import score
    from srice.eval.report import interval
    from srice.images import load_image
    from srice.serving.backends import open_backend
    from srice.serving.config import ServingConfig
    from srice.serving.variants import Variant, get_variant

    bundle = Path(args.bundle).resolve()
    data = Path(args.data or tempfile.mkdtemp(prefix="srice-ceiling-"))
    if not (data / "questions.jsonl").exists():
        srice = str(Path(sys.executable).with_name("srice"))
        kinds = ",".join(bundle_kinds(bundle))  # what the toy was trained on
        command = [
            srice,
            "synth",
            "--seed",
            str(args.seed),
            "--n",
            str(args.n),
            "--kinds",
            kinds,
            "--out",
            str(data),
        ]
        subprocess.run(command, check=True, capture_output=True)
    items = [i for i in load_items(data / "questions.jsonl", limit=args.n) if i.meta.get("target_box")]
    config = AgentConfig()
    us = SetSizeScore.calibrated(UncertaintyCalibration.load(bundle / "calib" / "uncertainty.json"))
    requests = []
    for i in items:
        image = load_image(i.image)
        ask = {"max_tokens": config.max_tokens, "top_logprobs": config.top_logprobs}
        requests += [direct_request(image, i.question, i.options, **ask), true_box_request(i, image, config)]
    tiny = get_variant("tiny")
    variant = Variant("toy-ceiling", str(bundle / "mllm"), "srice-toy-ceiling", tiny.vllm_args)
    with ExitStack() as stack:
        backend, _ = open_backend(variant, ServingConfig(concurrency=16), stack)
        completions = backend.generate(requests)

    rows = collections.defaultdict(list)  # slice -> (direct, crop, srice, oracle, crop chosen)
    for k, item in enumerate(items):
        direct, crop = completions[2 * k], completions[2 * k + 1]
        chose_crop = us(crop, item.options).key < us(direct, item.options).key  # ties go direct
        d, c = score(item, direct.text), score(item, crop.text)
        for key in ("overall", f"kind={item.kind}", f"target_size={item.meta.get('target_size')}",
                    f"{item.kind}/{item.meta.get('target_size')}"):  # fmt: skip
            rows[key].append((d, c, c if chose_crop else d, max(d, c), float(chose_crop)))

    print(f"# toy bundle {bundle}, true target box as the tool pathway; {len(items)} questions of {data}\n")
    print("| slice | n | direct | crop (true box) | srice | oracle | crop chosen |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (k != "overall", k)):
        columns = list(zip(*rows[key]))
        means = " | ".join(f"{sum(c) / len(c):.3f}" for c in columns)
        print(f"| {key} | {len(rows[key])} | {means} |")
    overall = rows["overall"]
    gains = {
        "srice_minus_direct": interval((r[2] - r[0] for r in overall), difference=True),
        "oracle_minus_srice": interval((r[3] - r[2] for r in overall), difference=True),
    }
    for name, v in gains.items():
        print(f"- {name}: {v['mean']:+.3f} (95% CI {v['low']:+.3f} to {v['high']:+.3f}, n={v['n']})")
    print(json.dumps(gains))


if __name__ == "__main__":
    main()
