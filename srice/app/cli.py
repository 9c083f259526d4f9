"""The ``srice`` command line. It parses arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

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
    from srice.serving.launcher import install_signal_handlers, server_for

    # signal handlers can only be set from the main thread; srice demo starts other variants'
    # servers from worker threads, and atexit stops those
    if threading.current_thread() is threading.main_thread():
        install_signal_handlers()
    print(f"starting vllm serve for variant {variant.name!r} ...", file=sys.stderr, flush=True)
    return server_for(
        variant, executable=args.vllm, host=host, port=port, startup_timeout=args.startup_timeout
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
            # the launcher's signal handler stops the server (process -> None) before Python's own
            # handler raises KeyboardInterrupt; where SIGINT was ignored at start (a background job)
            # nothing is raised, and the server being gone is the only sign of the Ctrl-C
            while (process := server.process) is not None and process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        if server.process is None:
            return 0
        raise SriceError(f"vllm serve exited with code {server.process.returncode}; log: {server.log_path}")


def _comma_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _agent_for(args, backend):
    """The agent the arguments describe: tools (embedded models unless --tool-weights), calibrators
    and the uncertainty calibration from --calib, early exit only when asked for."""
    from srice.agent import Agent, AgentConfig
    from srice.app.build import build_tools, load_calibrators

    names = _comma_list(args.tools)
    tools = build_tools(names, _tool_options(args.tool_weights))
    calib = args.calib
    if calib is None:  # the calibration that belongs to the variant's model (the toy bundle's)
        from srice.serving.variants import get_variant

        calib = get_variant(args.variant).calibration_dir()
    calibrators = load_calibrators(calib, names)
    score, early_exit = None, None
    if calib and (Path(calib) / "uncertainty.json").exists():
        from srice.calibration.uncertainty import UncertaintyCalibration

        calibration = UncertaintyCalibration.load(Path(calib) / "uncertainty.json")
        score = calibration.score()
        early_exit = calibration.early_exit if args.early_exit else None
    elif args.early_exit:
        raise SriceError(
            "--early-exit needs --calib DIR with an uncertainty.json (srice calibrate --uncertainty)"
        )
    config = AgentConfig(
        max_tokens=args.max_tokens, view=args.view, early_exit=early_exit, top_views=args.top_views
    )
    return Agent(backend, tools, calibrators, config, uncertainty=score)


def cmd_ask(args) -> int:
    from srice.agent import Item
    from srice.images import check_question, load_image

    image = load_image(args.image)  # bad input fails here, before a server is started
    question = check_question(args.question)
    options = tuple(_comma_list(args.options)) or None
    with ExitStack() as stack:
        backend, variant = _backend_for(args, stack)
        agent = _agent_for(args, backend)
        [answer] = agent.answer_batch([Item(image, question, options)])
    if answer.error:
        raise SriceError(answer.error)
    if args.json:
        print(json.dumps({"variant": variant.name, "backend": backend.name} | answer.to_json(), indent=2))
        return 0
    print(f"answer: {answer.answer}")
    print(f"uncertainty: {answer.uncertainty:g} (pathway {answer.pathway}; {answer.mllm_calls} model calls)")
    if answer.targets:
        print(f"regions asked for: {', '.join(answer.targets)}")
    for p in answer.trace:
        found = "" if p.calibrated is None else f"{len(p.calibrated['boxes'])} regions"
        us = f"US {p.uncertainty.score:g}/{p.uncertainty.tiebreak:.3f}" if p.uncertainty else ""
        status = f"failed: {p.error}" if p.error else f"{p.answer!r} {us} {found}"
        mark = "*" if p.name == answer.pathway else " "
        print(f"{mark} {p.name:<10} {status} ({p.tool_seconds + p.model_seconds:.2f} s)")
    return 0


def _with(args, **changes) -> argparse.Namespace:
    return argparse.Namespace(**vars(args) | changes)


def cmd_demo(args) -> int:
    """The Gradio demo on one backend per variant (the first started before the page opens; others,
    offered only when no --server is given, start on first use) and one agent per tool choice."""
    from srice.serving.variants import get_variant, load_variants

    get_variant(args.variant)  # an unknown variant fails before anything starts (or gradio loads)
    from srice.app.demo import DemoSettings, build_app, cached, launch
    from srice.tools import TOOLS

    fixed = args.backend == "vllm" and bool(args.server or os.environ.get("SRICE_SERVER"))
    others = [] if fixed else [n for n, v in load_variants().items() if not v.is_hub and n != args.variant]
    default_tools = tuple(_comma_list(args.tools))
    backends = {}
    with ExitStack() as stack:

        def agent_for(variant: str, tools: tuple[str, ...]):
            if variant not in backends:
                backends[variant], _ = _backend_for(_with(args, variant=variant), stack)
            return _agent_for(_with(args, variant=variant, tools=",".join(tools)), backends[variant])

        agent_for = cached(agent_for)
        agent_for(args.variant, default_tools)  # server up and tools checked before the page opens
        settings = DemoSettings((args.variant, *others), args.variant, tuple(TOOLS), default_tools)
        app = build_app(agent_for, settings)
        launch(app, args.host, args.port, block=False)
        print(f"srice demo at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        app.block_thread()
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
    if args.uncertainty:
        return _calibrate_uncertainty(args)
    if not args.tool or not args.images:
        raise SriceError("calibrating a tool needs --tool and --images (or --uncertainty for the US)")
    from tqdm import tqdm

    from srice.calibration.coco import load_coco
    from srice.calibration.tool_fit import calibrate, make_calibrator, run_tool
    from srice.tools import get_tool

    calibrator = make_calibrator(args.method, args.alpha, delta=args.delta, iou=args.iou)
    records = load_coco(args.data, args.images, masks=args.method == "mask")
    if not records:
        raise SriceError(f"{args.data} lists no images")
    from srice.app.build import embedded_options

    options = embedded_options(args.tool) | _tool_options(args.option)
    if args.weights:
        options["checkpoint" if args.tool == "sam" else "weights"] = args.weights
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
        "calibration": result.calibrator.record(),
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
        print(f"parameters: {json.dumps(report['calibration'], default=float)}")
        held = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.holdout.items()
        )
        print(f"held-out ({result.holdout_images} images): {held or 'no held-out images'}")
        print(f"saved {args.output}")
    return 0


def _parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise SriceError(f"--shard takes i/n, e.g. 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise SriceError(f"--shard {text}: need 0 <= i < n")
    return index, count


def cmd_eval(args) -> int:
    from tqdm import tqdm

    import srice.eval.run as evaluate
    from srice.eval.data import load_items, shard

    index, count = _parse_shard(args.shard)
    items = load_items(args.data, limit=args.limit)  # raises on duplicate ids: records are keyed by them
    if count > 1:
        items = shard(items, index, count)
    bars = []
    with ExitStack() as stack:
        backend, variant = _backend_for(args, stack)
        agent = _agent_for(args, backend)

        def resumed(done: int) -> None:
            if done:
                print(f"resuming: {done} of {len(items)} questions already have records", file=sys.stderr)
            bar = tqdm(total=len(items), initial=done, desc="eval", unit="q", file=sys.stderr, disable=None)
            bars.append(stack.enter_context(bar))

        result = evaluate.run(
            agent, items, args.out, shard=(index, count), batch_size=args.batch_size,
            progress=lambda k: bars[0].update(k), on_resume=resumed,
        )  # fmt: skip
    summary = evaluate.write_reports(args.out)
    print(evaluate.markdown(summary), end="")
    print(f"{result.written} questions in {result.seconds:.1f} s; records: {result.records_path}")
    return 0


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from srice.synth import generate

    knobs = {k: v for k in ("tiny_fraction", "kinds", "mc_fraction", "min_side", "max_side", "mask_format")
             if (v := getattr(args, k)) is not None}  # fmt: skip
    with tqdm(total=args.n, desc="synth", unit="q", file=sys.stderr, disable=None) as bar:
        summary = generate(args.out, seed=args.seed, n=args.n, progress=bar.update, **knobs)
    if args.json:
        print(json.dumps(asdict(summary), indent=2, default=str))
    else:
        kinds = ", ".join(f"{k} {v}" for k, v in summary.by_kind.items())
        print(
            f"wrote {summary.n_questions} questions about {summary.n_images} images ({summary.n_objects} "
            f"objects, tiny-target share {summary.tiny_share:.2f}) to {summary.out_dir}/"
        )
        print(f"kinds: {kinds}")
        print(f"files: {summary.questions.name}, {summary.annotations.name}, {summary.scenes.name}, images/")
    return 0


def cmd_train_toy(args) -> int:
    from srice.toy import TOY_DIR
    from srice.toy.bundle import train_bundle
    from srice.toy.train_mllm import TrainConfig
    from srice.toy.train_yolo import YoloConfig

    if args.steps < 1 or args.yolo_epochs < 1:
        raise SriceError("--steps and --yolo-epochs must be at least 1")
    out = Path(args.out) if args.out else TOY_DIR
    manifest = train_bundle(
        out,
        seed=args.seed,
        mllm=TrainConfig(steps=args.steps),
        yolo=YoloConfig(epochs=args.yolo_epochs),
        resume=args.resume,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(
        f"wrote the toy bundle to {out} in {manifest['total_seconds'] / 60:.1f} min "
        f"({manifest['total_bytes'] / 1e6:.1f} MB; manifest.json)"
    )
    return 0


def cmd_compress(args) -> int:
    from srice.compress import compress
    from srice.compress.api import register

    if args.register:
        from srice.serving.variants import load_variants

        load_variants()  # a broken registry fails here, before minutes of compression
        if args.method == "w4a16":  # and so does a CPU whose vLLM build cannot serve the result
            from srice.serving.launcher import require_w4a16

            require_w4a16(f"--method w4a16 --register {args.register}")
    result = compress(
        args.model, args.output, args.method, args.sparsity, calib=args.calib, calib_n=args.calib_n,
        nm=args.nm, owl=args.owl, owl_m=args.owl_m, owl_lambda=args.owl_lambda,
        include_vision=args.include_vision, overwrite=args.overwrite,
        progress=lambda text: print(text, file=sys.stderr, flush=True),
    )  # fmt: skip
    manifest = result.manifest
    registry = None
    if args.register:
        _, registry = register(result, args.register)
    if args.json:
        report = {"output": str(result.out_dir), "registered": args.register, "registry": str(registry or "")}
        print(json.dumps(report | manifest, indent=2))
        return 0
    achieved = manifest.get("achieved", {}).get("overall")
    detail = f", achieved sparsity {achieved:.3f}" if achieved is not None else ""
    if "depth" in manifest:
        detail = f", removed layers {manifest['depth']['removed_layers']}"
    print(f"{args.method}: wrote {result.out_dir} in {result.seconds:.1f} s{detail} (manifest.json)")
    if args.register:
        print(f"registered variant {args.register!r} in {registry}; use --variant {args.register}")
    return 0


def _calibrate_uncertainty(args) -> int:
    from tqdm import tqdm

    from srice.calibration.uncertainty import calibrate_uncertainty, load_questions

    questions = load_questions(args.data)
    with ExitStack() as stack:
        backend, _ = _backend_for(args, stack)
        with tqdm(
            total=len(questions), desc="direct answers", unit="q", file=sys.stderr, disable=None
        ) as bar:
            result = calibrate_uncertainty(
                backend, questions, alpha=args.alpha, seed=args.seed, progress=bar.update
            )
    result.save(args.output)
    report = asdict(result) | {"output": str(args.output)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def _agent_args(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(
        flag,
        dest="tools",
        default="zoom",
        help="comma-separated tool pathways (yolo,owl,sam,ocr,zoom; default zoom; '' for direct only)",
    )
    p.add_argument(
        "--tool-weights",
        action="append",
        default=[],
        metavar="TOOL=PATH",
        help="a tool's model file (default: the embedded model)",
    )
    p.add_argument(
        "--calib",
        help="folder with <tool>.json calibrators and uncertainty.json (default: the variant's own, "
        "e.g. the toy model's)",
    )
    p.add_argument(
        "--early-exit",
        action="store_true",
        help="skip tools when the direct answer is certain enough (threshold from --calib)",
    )
    p.add_argument(
        "--view", choices=("crop", "boxes"), default="crop", help="what tool pathways show the model"
    )
    p.add_argument(
        "--top-views",
        type=int,
        default=1,
        metavar="K",
        help="also show each detector's K likeliest calibrated regions alone, as pathways TOOL[0..K-1] "
        "(default 1; 0: the union view only)",
    )


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("vllm", "transformers"), default="vllm")
    p.add_argument("--server", help="URL of a running OpenAI-compatible server (default: start vllm serve)")
    p.add_argument(
        "--allow-hub", action="store_true", help="let the transformers backend download hub models"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request attempt")


def _serving_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="toy", help="model variant from the registry (default: toy)")
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

    p = sub.add_parser("ask", help="answer one visual question with the SRICE agent")
    _serving_args(p)
    _backend_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True)
    p.add_argument("--options", help="comma-separated multiple-choice options")
    _agent_args(p, "--tools")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print the answer and its trace as JSON")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("demo", help="the Gradio VQA demo: answer, uncertainty and every pathway's regions")
    _serving_args(p)
    _backend_args(p)
    _agent_args(p, "--tools")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-tokens", type=int, default=16)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("eval", help="evaluate the agent on a VQA benchmark: resumable records and a summary")
    _serving_args(p)
    _backend_args(p)
    _agent_args(p, "--pathways")
    p.add_argument(
        "--data", required=True, help="questions.jsonl, a VLMEvalKit .tsv, a .parquet, or hf:FOLDER[:split]"
    )
    p.add_argument(
        "--out", required=True, help="output folder (records, summary, predictions); reused to resume"
    )
    p.add_argument("--limit", type=int, help="first N questions only")
    p.add_argument("--shard", help="i/n: this machine's share of the questions")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=16)
    p.set_defaults(func=cmd_eval)

    from srice.toy.train_mllm import TrainConfig
    from srice.toy.train_yolo import YoloConfig

    p = sub.add_parser(
        "train-toy",
        help="train and calibrate the embedded toy MLLM and shape detector on the synthetic world (CPU)",
    )
    p.add_argument("--out", help="bundle folder (default: the packaged one, srice/assets/toy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=TrainConfig.steps, help="MLLM training steps")
    p.add_argument("--yolo-epochs", type=int, default=YoloConfig.epochs, help="detector training epochs")
    p.add_argument("--resume", help="staging folder of a run that stopped: keep the stages it finished")
    p.add_argument("--json", action="store_true", help="print the manifest")
    p.set_defaults(func=cmd_train_toy)

    p = sub.add_parser("synth", help="generate the synthetic VQA set (images, questions, COCO annotations)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=200, help="number of questions")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--tiny-fraction", type=float, help="share of question targets that are tiny (default 0.5)"
    )
    p.add_argument("--kinds", help="comma-separated question kinds (default: all)")
    p.add_argument("--mc-fraction", type=float, help="share of multiple-choice questions (default 0.3)")
    p.add_argument("--min-side", type=int, help="smallest image side in pixels (default 672)")
    p.add_argument("--max-side", type=int, help="largest image side in pixels (default 1344)")
    p.add_argument("--mask-format", choices=("rle", "polygon"), help="COCO mask encoding (default rle)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_synth)

    from srice.calibration.tool_fit import METHODS

    p = sub.add_parser(
        "calibrate",
        help="conformal calibration of a vision tool (COCO data) or of the uncertainty score",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="calibrate the uncertainty score (LAC q-hat, early exit) on --data questions.jsonl",
    )
    _serving_args(p)
    _backend_args(p)
    p.add_argument("--tool", help="tool name (yolo, owl, sam, ocr, zoom)")
    p.add_argument("--weights", help="tool weights file or folder")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tool constructor option, value parsed as JSON when it can be (repeatable)",
    )
    p.add_argument(
        "--data", required=True, help="COCO-format annotation file, or questions.jsonl with --uncertainty"
    )
    p.add_argument("--images", help="folder the annotation file's file_names are relative to")
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

    from srice.compress.api import METHODS as COMPRESS_METHODS

    p = sub.add_parser(
        "compress", help="prune or quantize a model variant into a new checkpoint and register it"
    )
    p.add_argument("--model", required=True, help="model folder or registered variant name")
    p.add_argument("--method", required=True, choices=tuple(COMPRESS_METHODS), help="compression method")
    p.add_argument(
        "--sparsity",
        type=float,
        help="share of weights to remove per layer (depth: share of layers), in [0, 1); default 0.5",
    )
    p.add_argument("--calib", help="calibration questions (questions.jsonl, .tsv, ...: image + question)")
    p.add_argument("--calib-n", type=int, default=32, help="calibration samples (default 32)")
    p.add_argument("--nm", help="N:M structured sparsity, keep N of every M weights (e.g. 2:4)")
    p.add_argument("--owl", action="store_true", help="OWL outlier-weighted per-layer sparsity")
    p.add_argument("--owl-m", type=float, default=5.0, help="OWL outlier threshold M (default 5)")
    p.add_argument("--owl-lambda", type=float, default=0.08, help="OWL max deviation lambda (default 0.08)")
    p.add_argument("--include-vision", action="store_true", help="prune/quantize the vision tower too")
    p.add_argument("-o", "--output", required=True, help="folder to write the checkpoint and manifest.json")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--register", metavar="NAME", help="register the result as variant NAME")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_compress)
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
