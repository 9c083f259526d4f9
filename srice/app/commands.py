"""What each ``srice`` command does, given its parsed arguments: build what it needs through the
library (``srice.app.build`` for agents) and print the result. Parsing lives in ``srice.app.cli``."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

from srice.errors import SriceError


def _serving(args):
    """The serving options the arguments give (a running server: --server, else $SRICE_SERVER)."""
    from srice.app.build import ServingConfig

    server = getattr(args, "server", None) or os.environ.get("SRICE_SERVER")
    return ServingConfig(
        backend=getattr(args, "backend", "vllm"), server=server, timeout=getattr(args, "timeout", 120.0),
        allow_hub=getattr(args, "allow_hub", False), vllm=args.vllm, startup_timeout=args.startup_timeout,
    )  # fmt: skip


def _agent(args, backend, variant, tools: str | None = None):
    """The agent the arguments describe (``tools`` overrides --tools/--pathways)."""
    from srice.agent import AgentConfig
    from srice.app.build import build_agent

    config = AgentConfig(
        max_tokens=args.max_tokens, view=args.view, top_views=args.top_views, tool_timeout=args.tool_timeout
    )
    names = _comma_list(args.tools if tools is None else tools)
    return build_agent(
        backend, variant, names, tool_weights=_tool_options(args.tool_weights), calib=args.calib,
        early_exit=args.early_exit, config=config, trust_weights=args.trust_weights,
    )  # fmt: skip


def cmd_serve(args) -> int:
    if args.agent:
        return cmd_serve_agent(args)
    if args.server or args.backend != "vllm":
        raise SriceError("--server and --backend are for srice serve --agent (the agent in front of a model)")
    from srice.app.build import start_server

    server = start_server(args.variant, _serving(args), host=args.host, port=args.port)
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


def cmd_serve_agent(args) -> int:
    """The agent behind an OpenAI-compatible API (``srice.app.server``), on one model backend, with
    the tools loaded once; each distinct per-request setting gets its own (cheap) agent over them."""
    _check_inputs(args)
    import threading

    from srice.agent import Agent
    from srice.app import chat
    from srice.app.build import early_exit_threshold, open_backend
    from srice.app.server import ServerConfig, create_app, serve

    folder = Path(args.image_folder).expanduser() if args.image_folder else None
    if folder is not None and not folder.is_dir():
        raise SriceError(f"--image-folder not found: {args.image_folder}")
    api_key = args.api_key or os.environ.get("SRICE_API_KEY") or None
    with ExitStack() as stack:
        backend, variant = open_backend(args.variant, _serving(args), stack)
        base = _agent(args, backend, variant)
        threshold, why_not = early_exit_threshold(variant, args.calib)
        tools = {t.name: t for t in base.tools}
        agents: dict = {}
        lock = threading.Lock()

        def agent_for(settings: chat.Settings) -> Agent:
            with lock:
                if settings not in agents:
                    exit_at = threshold if settings.early_exit else None
                    config = replace(
                        base.config, top_views=settings.top_views, max_tokens=settings.max_tokens,
                        temperature=settings.temperature, early_exit=exit_at,
                    )  # fmt: skip
                    chosen = [tools[name] for name in settings.tools]
                    agents[settings] = Agent(backend, chosen, base.calibrators, config, base.uncertainty)
                return agents[settings]

        defaults = chat.Settings(
            tuple(tools), args.top_views, args.early_exit, args.max_tokens, base.config.temperature
        )
        config = ServerConfig(
            model=args.served_name or f"{variant.served_name}-agent", tools=tuple(tools), defaults=defaults,
            limits=chat.Limits(image_folder=folder), api_key=api_key, max_batch=args.max_batch,
            batch_wait=args.batch_wait_ms / 1000, max_queue=args.max_queue,
            check_backend=getattr(backend, "check", None), early_exit_unavailable=why_not,
        )  # fmt: skip
        app = create_app(agent_for, config)
        where = f"http://{args.host}:{args.port}/v1"
        print(f"srice agent {config.model!r} at {where} (tools: {', '.join(tools) or 'none'}; model backend "
              f"{backend.name}); Ctrl-C stops it", file=sys.stderr, flush=True)  # fmt: skip
        try:
            serve(app, args.host, args.port)
        except KeyboardInterrupt:
            return 0
    return 0


def cmd_mcp(args) -> int:
    """The MCP server (``srice.app.mcp_server``): tools built now, the model backend on first answer."""
    _check_inputs(args)
    from srice.app.build import build_tools, calibration_folder, load_calibrators, open_backend
    from srice.app.mcp_server import SriceTools, serve
    from srice.serving.variants import get_variant

    variant = get_variant(args.variant)
    names = _comma_list(args.tools)
    built = build_tools(names, _tool_options(args.tool_weights), trust_weights=args.trust_weights)
    calibrators = load_calibrators(calibration_folder(variant, args.calib), names)
    folder = Path(args.image_folder).expanduser().resolve() if args.image_folder else None
    if folder is not None and not folder.is_dir():
        raise SriceError(f"--image-folder not found: {args.image_folder}")
    with ExitStack() as stack:

        def make_agent():
            backend, _ = open_backend(variant, _serving(args), stack, log=lambda text: None)
            return _agent(args, backend, variant)

        serve(SriceTools(make_agent, built, calibrators, folder), args.transport, args.host, args.port)
    return 0


def _comma_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_ask(args) -> int:
    _check_inputs(args)
    from srice.agent import Item
    from srice.agent.answers import check_options
    from srice.app.build import open_backend
    from srice.images import check_question, load_image

    image = load_image(args.image)  # bad input fails here, before a server is started
    question = check_question(args.question)
    options = check_options(_comma_list(args.options))
    with ExitStack() as stack:
        backend, variant = open_backend(args.variant, _serving(args), stack)
        agent = _agent(args, backend, variant)
        [answer] = agent.answer_batch([Item(image, question, options)])
    if answer.error:
        raise SriceError(answer.error)
    if args.json:
        print(json.dumps({"variant": variant.name, "backend": backend.name} | answer.to_json(), indent=2))
        return 0
    print(f"answer: {answer.shown}")
    print(f"uncertainty: {answer.uncertainty:g} (pathway {answer.pathway}; {answer.mllm_calls} model calls)")
    if answer.targets:
        print(f"regions asked for: {', '.join(answer.targets)}")
    for p in answer.trace:
        found = "" if p.calibrated is None else f"{len(p.calibrated['boxes'])} regions"
        us = f"US {p.uncertainty.score:g}/{p.uncertainty.tiebreak:.3f}" if p.uncertainty else ""
        said = f" (reply {p.reply!r} names no option: the most probable one)" if p.mapped else ""
        status = f"failed: {p.error}" if p.error else f"{p.answer!r}{said} {us} {found}"
        mark = "*" if p.name == answer.pathway else " "
        print(f"{mark} {p.name:<10} {status} ({p.tool_seconds + p.model_seconds:.2f} s)")
        if p.tool_text:
            print(f"  {'':<10} text read: {'; '.join(repr(t) for t in p.tool_text)}")
    return 0


def cmd_demo(args) -> int:
    """The Gradio demo on one backend per variant (the first started before the page opens; others,
    offered only when no --server is given, start on first use) and one agent per tool choice."""
    from srice.serving.variants import get_variant, load_variants

    get_variant(args.variant)  # an unknown variant fails before anything starts (or gradio loads)
    _check_inputs(args)
    from srice.app.build import open_backend
    from srice.app.demo import DemoSettings, build_app, cached, launch
    from srice.tools import TOOLS

    serving = _serving(args)
    fixed = serving.backend == "vllm" and bool(serving.server)
    others = [] if fixed else [n for n, v in load_variants().items() if not v.is_hub and n != args.variant]
    default_tools = tuple(_comma_list(args.tools))
    backends = {}
    with ExitStack() as stack:

        def agent_for(variant: str, tools: tuple[str, ...]):
            if variant not in backends:
                backends[variant] = open_backend(variant, serving, stack)
            return _agent(args, *backends[variant], tools=",".join(tools))

        agent_for = cached(agent_for)
        agent_for(args.variant, default_tools)  # server up and tools checked before the page opens
        settings = DemoSettings(
            (args.variant, *others), args.variant, tuple(TOOLS), default_tools, cache_seconds=args.upload_ttl
        )
        app = build_app(agent_for, settings)
        launch(app, args.host, args.port, block=False)
        print(f"srice demo at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        app.block_thread()
    return 0


def _check_inputs(args) -> None:
    """Files and folders named on the command line exist, before any work starts (a server, a model
    load): a typo costs a second, not minutes."""
    from srice.app.build import check_tool_weights

    for attribute, what in (("calib", "calibration folder"), ("images", "images folder")):
        value = getattr(args, attribute, None)
        if value and not Path(value).expanduser().is_dir():
            raise SriceError(f"{what} not found: {value}")
    weights = _tool_options(getattr(args, "tool_weights", []) or [])
    if getattr(args, "weights", None):
        weights[args.tool or "tool"] = args.weights
    check_tool_weights(weights)


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
    _check_inputs(args)
    if args.uncertainty:
        return _calibrate_uncertainty(args)
    if not args.tool or not args.images:
        raise SriceError("calibrating a tool needs --tool and --images (or --uncertainty for the US)")
    from srice.app.progress import Progress
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
        if args.tool == "yolo":
            options["trust_weights"] = args.trust_weights
    tool = get_tool(args.tool, **options)
    if args.weights:
        tool.load()  # the named weights fail here, before any image
    with Progress(len(records), desc=f"running {args.tool}", unit="img") as bar:
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


EXIT_OVER_FAILURE_LIMITS = 3  # the run finished and wrote everything, but too much of it failed


def cmd_eval(args) -> int:
    from srice.app.build import open_backend
    from srice.app.progress import Progress
    from srice.eval import report
    from srice.eval import run as evaluate
    from srice.eval.data import load_items, shard

    _check_inputs(args)
    for name in ("max_tool_failures", "max_failed_items"):
        if not 0 <= getattr(args, name) <= 1:
            raise SriceError(f"--{name.replace('_', '-')} is a share in [0, 1], got {getattr(args, name)}")
    depth = _pipeline_depth(args.pipeline, _serving(args))
    index, count = _parse_shard(args.shard)
    items = load_items(args.data, limit=args.limit)  # raises on duplicate ids: records are keyed by them
    if count > 1:
        items = shard(items, index, count)
    bars = []
    with ExitStack() as stack:

        def resumed(done: int) -> None:
            if done:
                print(f"resuming: {done} of {len(items)} questions already have records", file=sys.stderr)
            bars.append(stack.enter_context(Progress(len(items), done=done)))

        options = dict(
            shard=(index, count), batch_size=args.batch_size, progress=lambda k: bars[0].update(k),
            on_resume=resumed, on_batch=_warn_failures, on_damage=_say_damage, force=args.force,
        )  # fmt: skip
        if args.ray is not None:
            result = _eval_on_ray(args, items, stack, options)
        else:
            backend, variant = open_backend(args.variant, _serving(args), stack)
            agent = _agent(args, backend, variant)
            result = evaluate.run(
                agent, items, args.out, settings=_variant_settings(variant), pipeline=depth, **options
            )
    summary = report.write_reports(args.out)
    print(report.markdown(summary), end="")
    print(f"{result.written} questions in {result.seconds:.1f} s; records: {result.records_path}")
    over = _over_limits(summary["failures"], args.max_tool_failures, args.max_failed_items)
    for line in over:
        print(f"srice: error: {line}; records and summary are written to {args.out}", file=sys.stderr)
    return EXIT_OVER_FAILURE_LIMITS if over else 0


def _pipeline_depth(text: str, serving) -> int:
    """--pipeline: a number, or auto: overlap the model and the tools only when they do not compete
    for this machine's cores (measured on 2 CPU cores: pipelined 0.83x of stage by stage)."""
    from urllib.parse import urlparse

    from srice.serving.launcher import has_gpu

    if text != "auto":
        try:
            depth = int(text)
        except ValueError:
            depth = 0
        if depth < 1:
            raise SriceError(f"--pipeline is auto or the number of batches in flight (>= 1), got {text!r}")
        return depth
    remote = serving.server and urlparse(serving.server).hostname not in ("127.0.0.1", "localhost", "::1")
    return 2 if serving.backend == "vllm" and (remote or has_gpu()) else 1


def _variant_settings(variant) -> dict:
    return {"variant": variant.name, "model_files": variant.fingerprint()}


def _eval_on_ray(args, items, stack, options):
    """``srice eval --ray``: the same records, answered by agent workers on a Ray cluster."""
    from functools import partial

    from srice.app.build import get_variant
    from srice.eval import run as evaluate
    from srice.eval.ray_eval import RayConfig, RayPool

    if options["shard"] != (0, 1):
        raise SriceError("--shard and --ray do not mix: Ray spreads the questions over its workers")
    config = RayConfig(address=args.ray, workers=args.ray_workers, worker_cpus=args.ray_worker_cpus,
                       worker_gpus=args.ray_worker_gpus, retries=args.ray_retries)  # fmt: skip
    variant, serving = get_variant(args.variant), _serving(args)
    own_servers = serving.backend == "vllm" and not serving.server
    say = partial(print, file=sys.stderr, flush=True)
    servers = partial(_node_server, args) if own_servers else None
    pool = stack.enter_context(RayPool(config, partial(_worker_agent, args), servers, say))
    settings = evaluate.data_settings(items, (0, 1)) | pool.settings() | _variant_settings(variant)
    return evaluate.write(items, args.out, pool.answers, settings=settings, **options)


def _worker_agent(args, url: str | None):
    """A Ray worker's agent: the one a plain run builds, on its node's model server ``url``."""
    from dataclasses import replace

    from srice.app.build import open_backend

    serving = _serving(args)
    if url is not None:
        serving = replace(serving, server=url)
    backend, variant = open_backend(args.variant, serving, ExitStack(), log=lambda text: None)
    return _agent(args, backend, variant)


def _node_server(args):
    """The ``vllm serve`` a Ray node runs for its workers (not yet started)."""
    from srice.app.build import start_server

    return start_server(args.variant, _serving(args), log=lambda text: None)


def _say_damage(damaged, quarantine) -> None:
    lines = ", ".join(f"{d.line} ({d.reason})" for d in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
    print(f"warning: moved {len(damaged)} damaged record line(s) to {quarantine}: line {lines}; their "
          "questions are redone", file=sys.stderr, flush=True)  # fmt: skip


def _warn_failures(records: list[dict]) -> None:
    """A live warning on stderr for every tool that failed in a batch, and for failed questions."""
    from srice.eval.report import failures

    found = failures(records)
    for tool, t in found["tools"].items():
        if t["failed"]:
            reason = max(t["reasons"], key=t["reasons"].get)
            print(f"warning: tool {tool} failed on {t['failed']} of {t['questions']} questions of this batch "
                  f"({reason})", file=sys.stderr, flush=True)  # fmt: skip
    rec = found["records"]
    if rec["failed"]:
        reason = max(rec["reasons"], key=rec["reasons"].get)
        print(f"warning: {rec['failed']} of {rec['n']} questions of this batch got no answer ({reason})",
              file=sys.stderr, flush=True)  # fmt: skip


def _over_limits(failures: dict, max_tool: float, max_items: float) -> list[str]:
    """The failure shares over their limits, one line each."""
    out = []
    for tool, t in failures["tools"].items():
        if t["questions"] and t["failed"] / t["questions"] > max_tool:
            out.append(
                f"tool {tool} failed on {t['failed']} of {t['questions']} questions ({t['timed_out']} timed "
                f"out): {t['failed'] / t['questions']:.0%} > --max-tool-failures {max_tool:g}"
            )
    rec = failures["records"]
    if rec["n"] and rec["failed"] / rec["n"] > max_items:
        out.append(
            f"{rec['failed']} of {rec['n']} questions got no answer: "
            f"{rec['failed'] / rec['n']:.0%} > --max-failed-items {max_items:g}"
        )
    return out


def cmd_synth(args) -> int:
    from srice.app.progress import Progress
    from srice.synth import SynthKnobs, generate

    knobs = {k: v for k in ("tiny_fraction", "kinds", "mc_fraction", "min_side", "max_side", "mask_format")
             if (v := getattr(args, k)) is not None}  # fmt: skip
    with Progress(args.n, desc="synth", unit="q") as bar:
        summary = generate(args.out, seed=args.seed, n=args.n, knobs=SynthKnobs(**knobs), progress=bar.update)
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

    steps = TrainConfig.steps if args.steps is None else args.steps
    epochs = YoloConfig.epochs if args.yolo_epochs is None else args.yolo_epochs
    if steps < 1 or epochs < 1:
        raise SriceError("--steps and --yolo-epochs must be at least 1")
    from srice.synth import SynthKnobs

    kinds = SynthKnobs(kinds=None if args.kinds == "all" else args.kinds or TrainConfig.kinds).kinds
    ocr_views = TrainConfig.ocr_views if args.ocr_views is None else args.ocr_views
    if not 0 <= ocr_views <= 1:
        raise SriceError(f"--ocr-views must be in [0, 1], got {ocr_views}")
    out = Path(args.out) if args.out else TOY_DIR
    manifest = train_bundle(
        out,
        seed=args.seed,
        mllm=TrainConfig(steps=steps, kinds=tuple(kinds), ocr_views=ocr_views),
        yolo=YoloConfig(epochs=epochs),
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
    from srice.compress import CompressConfig, compress, register

    config = CompressConfig(
        args.method, args.sparsity, calib=args.calib, calib_n=args.calib_n, nm=args.nm, owl=args.owl,
        owl_m=args.owl_m, owl_lambda=args.owl_lambda, owl_clamp=args.owl_clamp,
        include_vision=args.include_vision,
    )  # fmt: skip
    if args.calib and not Path(args.calib.removeprefix("hf:")).exists():
        raise SriceError(f"calibration data not found: {args.calib}")
    if args.register:
        from srice.serving.variants import load_variants

        if not args.calib:
            raise SriceError(
                f"--register {args.register} fits the new variant's uncertainty calibration on labelled "
                "questions: give them with --calib (srice synth makes some)"
            )
        load_variants()  # a broken registry fails here, before minutes of compression
        if args.method == "w4a16":  # and so does a CPU whose vLLM build cannot serve the result
            from srice.serving.launcher import require_w4a16

            require_w4a16(f"--method w4a16 --register {args.register}")
    result = compress(
        args.model, args.output, config, overwrite=args.overwrite,
        progress=lambda text: print(text, file=sys.stderr, flush=True),
    )  # fmt: skip
    manifest = result.manifest
    registry = None
    if args.register:
        say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
        _, registry = register(result, args.register, calib=args.calib, log=say)
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
    from srice.app.build import open_backend
    from srice.app.progress import Progress
    from srice.calibration.uncertainty import calibrate_uncertainty
    from srice.eval.data import load_items

    questions = load_items(args.data)
    with ExitStack() as stack:
        backend, _ = open_backend(args.variant, _serving(args), stack)
        with Progress(len(questions), desc="direct answers", unit="q") as bar:
            result = calibrate_uncertainty(
                backend, questions, alpha=args.alpha, seed=args.seed, progress=bar.update
            )
    result.save(args.output)
    report = asdict(result) | {"output": str(args.output)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        print(f"{key}: {value}")
    r = result
    if r.early_exit is None:
        print(f"early exit: none at alpha={r.alpha:g}: on {r.n_exit} questions no US threshold kept wrong "
              "early exits at or under alpha (--early-exit with this calibration is an error)")  # fmt: skip
    else:
        print(f"early exit at US <= {r.early_exit:g}: {r.exit_share:.0%} of the questions exit (each skips "
              f"the region proposal and every tool pathway), {r.exit_wrong:.0%} with a wrong answer "
              f"(bound {r.alpha:g})")  # fmt: skip
    return 0
