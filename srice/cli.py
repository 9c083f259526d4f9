"""The ``srice`` command line. It parses arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack

from srice.errors import SriceError


def _backend_for(args, stack: ExitStack):
    """The serving backend the arguments ask for; starts (and later stops) vllm serve if needed."""
    from srice.serving.variants import get_variant

    variant = get_variant(args.variant)
    if args.backend == "transformers":
        from srice.serving.hf import TransformersBackend

        if variant.is_hub and not args.allow_hub:
            raise SriceError(f"variant {variant.name!r} is a hub model; pass --allow-hub to download it")
        return TransformersBackend(variant.model_path()), variant
    from srice.serving.openai_http import OpenAIBackend

    server = args.server or os.environ.get("SRICE_SERVER")
    if not server:
        launched = stack.enter_context(_start_server(variant, args))
        print(f"vllm serve ready at {launched.url} in {launched.started_seconds:.0f} s", file=sys.stderr)
        server = launched.url
    return OpenAIBackend(server, variant.served_name, timeout=args.timeout), variant


def _start_server(variant, args, host: str = "127.0.0.1", port: int | None = None):
    from srice.serving.launcher import VllmServer, install_signal_handlers

    install_signal_handlers()
    print(f"starting vllm serve for variant {variant.name!r} ...", file=sys.stderr, flush=True)
    return VllmServer(
        variant.model_path(),
        served_name=variant.served_name,
        args=variant.vllm_args,
        executable=args.vllm,
        host=host,
        port=port,
        offline=not variant.is_hub,
        startup_timeout=args.startup_timeout,
    )


def cmd_serve(args) -> int:
    from srice.serving.variants import get_variant

    server = _start_server(get_variant(args.variant), args, host=args.host, port=args.port)
    with server:
        print(
            f"serving {server.served_name} at {server.url} (log: {server.log_path}); Ctrl-C stops it",
            flush=True,
        )
        try:
            while server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        raise SriceError(f"vllm serve exited with code {server.process.returncode}; log: {server.log_path}")


def cmd_ask(args) -> int:
    from srice.images import check_question, load_image
    from srice.prompts import direct_request

    image = load_image(args.image)
    question = check_question(args.question)
    options = [o.strip() for o in args.options.split(",")] if args.options else None
    with ExitStack() as stack:
        backend, variant = _backend_for(args, stack)
        request = direct_request(image, question, options, max_tokens=args.max_tokens)
        completion = backend.generate([request])[0]
    if args.json:
        print(json.dumps(completion_json(completion, variant.name, backend.name), indent=2))
    else:
        print(f"answer: {completion.text}")
        print(f"logprobs: {completion.summary()}")
    return 0


def _tool_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SriceError(f"--option needs KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def cmd_calibrate(args) -> int:
    from tqdm import tqdm

    from srice.coco import load_coco
    from srice.tool_calibration import calibrate, make_calibrator, run_tool
    from srice.tools import get_tool

    calibrator = make_calibrator(args.method, args.alpha, delta=args.delta, iou=args.iou)
    records = load_coco(args.data, args.images, masks=args.method == "mask")
    if not records:
        raise SriceError(f"{args.data} lists no images")
    options = _tool_options(args.option) | ({"weights": args.weights} if args.weights else {})
    tool = get_tool(args.tool, **options)
    with tqdm(
        total=len(records), desc=f"running {args.tool}", unit="img", file=sys.stderr, disable=None
    ) as bar:
        examples, failed = run_tool(
            tool, records, targets=args.targets, batch_size=args.batch_size, progress=bar.update
        )
    for line in failed[:10]:
        print(f"skipped {line}", file=sys.stderr)
    if len(failed) > 10:
        print(f"... and {len(failed) - 10} more images skipped", file=sys.stderr)
    result = calibrate(examples, calibrator, holdout=args.holdout, seed=args.seed)
    result.calibrator.save(args.output)
    report = {
        "tool": args.tool,
        "method": args.method,
        "alpha": args.alpha,
        "calibration_images": result.calibration_images,
        "holdout_images": result.holdout_images,
        "skipped_images": len(failed),
        "params": result.calibrator.params(),
        "holdout": result.holdout,
        "output": str(args.output),
    }
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print(
            f"calibrated {args.tool} ({args.method}, alpha={args.alpha}) "
            f"on {result.calibration_images} images; {len(failed)} skipped"
        )
        print(f"parameters: {json.dumps(report['params'], default=float)}")
        held = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.holdout.items()
        )
        print(f"held-out ({result.holdout_images} images): {held or 'no held-out images'}")
        print(f"saved {args.output}")
    return 0


def completion_json(completion, variant: str, backend: str) -> dict:
    return {
        "answer": completion.text,
        "variant": variant,
        "backend": backend,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "seconds": round(completion.seconds, 4),
        "tokens": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "top_logprobs": [{"token": c.token, "logprob": c.logprob} for c in t.top_logprobs],
            }
            for t in completion.tokens
        ],
    }


def _serving_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="tiny", help="model variant from the registry (default: tiny)")
    p.add_argument("--vllm", help="vllm executable (default: the one env/setup.sh installed)")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for vllm serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srice", description="Reliable tool-using multimodal inference.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run vllm serve for a model variant until interrupted")
    _serving_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ask", help="answer one visual question")
    _serving_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True)
    p.add_argument("--options", help="comma-separated multiple-choice options")
    p.add_argument("--backend", choices=("vllm", "transformers"), default="vllm")
    p.add_argument("--server", help="URL of a running OpenAI-compatible server (default: start vllm serve)")
    p.add_argument(
        "--allow-hub", action="store_true", help="let the transformers backend download hub models"
    )
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request attempt")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_ask)

    from srice.tool_calibration import METHODS

    p = sub.add_parser("calibrate", help="conformally calibrate a vision tool on COCO annotations")
    p.add_argument("--tool", required=True, help="tool name (yolo, owl, sam, ocr, zoom)")
    p.add_argument("--weights", help="tool weights file or folder")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tool constructor option, value parsed as JSON when it can be (repeatable)",
    )
    p.add_argument("--data", required=True, help="COCO-format annotation file")
    p.add_argument("--images", required=True, help="folder the annotation file's file_names are relative to")
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage level (default 0.1)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="sequential",
        help="threshold (recall, CRC), precision (LTT), margins, mask, or sequential "
        "(threshold then margins; default)",
    )
    p.add_argument("--delta", type=float, default=0.1, help="LTT failure probability for --method precision")
    p.add_argument("--iou", type=float, default=0.5, help="IoU that makes a prediction match an object")
    p.add_argument(
        "--targets",
        choices=("image", "all", "none"),
        default="image",
        help="what the tool is asked to find: each image's labels (default), all labels, anything",
    )
    p.add_argument("--holdout", type=float, default=0.3, help="share of images kept to measure coverage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("-o", "--output", required=True, help="calibration JSON file to write")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SriceError as e:
        print(f"srice: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("srice: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
