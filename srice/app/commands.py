"""What the commands that answer questions do, given their parsed arguments: ``ask``, ``serve``
(the model, or with ``--agent`` the agent behind the OpenAI API), ``mcp``, ``demo`` and ``eval``.
Each makes one ``AgentSpec`` from its arguments (``srice.app.args``), gets its agents from an
``AgentPool`` (``srice.builder``) and prints the result. Parsing lives in ``srice.app.cli``; the
commands that make files (synth, calibrate, compress, train-toy) in ``srice.app.artifact_commands``."""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from functools import partial

from srice.app.args import agent_spec, check_inputs, chosen_variant, comma_list, image_folder, serving_config
from srice.errors import SriceError

say = partial(print, file=sys.stderr, flush=True)


def cmd_serve(args) -> int:
    if args.agent:
        return cmd_serve_agent(args)
    if args.server or args.backend != "vllm":
        raise SriceError("--server and --backend are for srice serve --agent (the agent in front of a model)")
    from srice.serving.backends import start_server

    server = start_server(chosen_variant(args), serving_config(args), host=args.host, port=args.port)
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
    """The agent behind an OpenAI-compatible API (``srice.app.server``): one model backend, the tools
    loaded once, and an agent per distinct per-request setting from the pool."""
    check_inputs(args)
    import os

    from srice.app.server import create_app, serve_http
    from srice.app.server_config import BatchingConfig, Limits, ServerConfig, Settings
    from srice.builder.agents import early_exit_threshold
    from srice.builder.pool import AgentPool
    from srice.builder.workers import LocalWorkers, worker_count

    folder = image_folder(args)
    spec = agent_spec(args)
    count, why = worker_count(args.workers)
    with AgentPool(spec) as pool, ExitStack() as stack:
        pool.agent()  # the model server up, the tools and calibrations checked, before the first request
        backend, variant = pool.backend()
        _, why_not = early_exit_threshold(variant, spec.calib)
        c = spec.config
        config = ServerConfig(
            model=args.served_name or f"{variant.served_name}-agent", tools=spec.tools,
            defaults=Settings(spec.tools, c.top_views, spec.early_exit, c.max_tokens, c.temperature),
            limits=Limits(image_folder=folder),
            api_key=args.api_key or os.environ.get("SRICE_API_KEY") or None,
            batching=BatchingConfig(args.max_batch, args.batch_wait_ms / 1000, args.max_queue, count),
            check_backend=getattr(backend, "check", None), early_exit_unavailable=why_not,
        )  # fmt: skip
        if count == 1:

            def answer(s: Settings, items, on_stage):
                return pool.agent(**agent_choices(s)).answer_batch(items, on_stage=on_stage)
        else:
            url = None if spec.serving.server else backend.urls[0]
            workers = stack.enter_context(LocalWorkers(spec, count, url, log=say))
            workers.start()  # every worker's agent built before the first request

            def answer(s: Settings, items, on_stage):
                return workers.answer_items(tuple(agent_choices(s).items()), items, on_stage)

        where = f"http://{args.host}:{args.port}/v1"
        say(f"srice agent {config.model!r} at {where} (tools: {', '.join(spec.tools) or 'none'}; model "
            f"backend {backend.name}; {why}); Ctrl-C stops it")  # fmt: skip
        try:
            serve_http(create_app(answer, config), args.host, args.port)
        except KeyboardInterrupt:
            return 0
    return 0


def agent_choices(s) -> dict:
    """``AgentPool.agent``'s arguments for a request's ``Settings``."""
    return dict(tools=s.tools, early_exit=s.early_exit, top_views=s.top_views, max_tokens=s.max_tokens,
                temperature=s.temperature)  # fmt: skip


def cmd_mcp(args) -> int:
    """The MCP server (``srice.app.mcp_server``): tools built on first use, the model on first answer."""
    check_inputs(args)
    from srice.app.mcp_server import SriceTools, serve_mcp
    from srice.builder.pool import AgentPool

    folder = image_folder(args)
    with AgentPool(agent_spec(args)) as pool:
        serve_mcp(SriceTools(pool, folder), args.transport, args.host, args.port)
    return 0


def cmd_ask(args) -> int:
    check_inputs(args)
    from srice.agent import Item
    from srice.agent.answers import check_options
    from srice.builder.pool import AgentPool
    from srice.images import check_question, load_image

    image = load_image(args.image)  # bad input fails here, before a server is started
    question = check_question(args.question)
    options = check_options(comma_list(args.options))
    with AgentPool(agent_spec(args)) as pool:
        agent = pool.agent()
        [answer] = agent.answer_batch([Item(image, question, options)])
        backend, variant = pool.backend()
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
        if p.search and p.view_box:  # the zoom tree: how deep it went, and the window it answered on
            depth = max(n["depth"] for n in p.search if n["chosen"])
            scored = sum(n["score"] is not None for n in p.search)
            found = f"zoomed to {list(p.view_box)} at depth {depth}, {scored} views scored"
        us = f"US {p.uncertainty.score:g}/{p.uncertainty.tiebreak:.3f}" if p.uncertainty else ""
        said = f" (reply {p.reply!r} names no option: the most probable one)" if p.mapped else ""
        status = f"failed: {p.error}" if p.error else f"{p.answer!r}{said} {us} {found}"
        mark = "*" if p.name == answer.pathway else " "
        print(f"{mark} {p.name:<10} {status} ({p.tool_seconds + p.model_seconds:.2f} s)")
        if p.tool_text:
            print(f"  {'':<10} text read: {'; '.join(repr(t) for t in p.tool_text)}")
    return 0


def cmd_demo(args) -> int:
    """The Gradio demo: the agents of one pool, a backend per variant (the first started before the
    page opens; others, offered only when no --server is given, start on first use)."""
    from srice.serving.variants import load_variants

    spec = agent_spec(args)
    first = spec.variant_entry().name  # an unknown variant fails before anything starts (or gradio loads)
    check_inputs(args)
    from srice.app.demo import DemoSettings, build_app, launch
    from srice.builder.pool import AgentPool
    from srice.tools import TOOLS

    fixed = spec.serving.backend == "vllm" and bool(spec.serving.server)
    others = [] if fixed else [n for n, v in load_variants().items() if not v.is_hub and n != first]
    with AgentPool(spec, offered=tuple(TOOLS)) as pool:

        def agent_for(variant: str, tools: tuple[str, ...]):
            return pool.agent(variant=variant, tools=tools)

        pool.agent()  # server up and tools checked before the page opens
        settings = DemoSettings(
            (first, *others), first, tuple(TOOLS), spec.tools, cache_seconds=args.upload_ttl
        )
        app = build_app(agent_for, settings)
        launch(app, args.host, args.port, block=False)
        say(f"srice demo at http://{args.host}:{args.port} (Ctrl-C stops it)")
        app.block_thread()
    return 0


def cmd_eval(args) -> int:
    from srice.app.progress import Progress
    from srice.builder.workers import worker_count
    from srice.eval import report
    from srice.eval.data import load_items, shard
    from srice.eval.policy import EXIT_OVER_FAILURE_LIMITS, FailureLimits, batch_warnings, parse_shard
    from srice.eval.ray_eval import RayConfig

    check_inputs(args)
    limits = FailureLimits(args.max_tool_failures, args.max_failed_items)
    spec = agent_spec(args)
    workers = worker_count(args.workers)
    index, count = parse_shard(args.shard)
    ray = None
    if args.ray is not None:
        ray = RayConfig(
            args.ray, args.ray_workers, args.ray_worker_cpus, args.ray_worker_gpus, args.ray_retries
        )
    items = load_items(args.data, limit=args.limit)  # raises on duplicate ids: records are keyed by them
    if count > 1:
        items = shard(items, index, count)
    with ExitStack() as stack:
        bars = []

        def resumed(done: int) -> None:
            if ray is None:  # said once the folder is this run's (a refused second run says only why)
                say(workers[1])
            if done:
                say(f"resuming: {done} of {len(items)} questions already have records")
            bars.append(stack.enter_context(Progress(len(items), done=done)))

        def warn(records: list[dict]) -> None:
            for line in batch_warnings(report.failures(records)):
                say(line)

        options = dict(
            shard=(index, count), batch_size=args.batch_size, progress=lambda k: bars[0].update(k),
            on_resume=resumed, on_batch=warn, on_damage=_say_damage, on_redo=_say_redo, force=args.force,
        )  # fmt: skip
        result = _evaluate(spec, items, args.out, ray, workers, options)
    summary = report.write_reports(args.out)
    print(report.markdown(summary), end="")
    print(f"{result.written} questions in {result.seconds:.1f} s; records: {result.records_path}")
    over = limits.broken(summary["failures"])
    for line in over:
        print(f"srice: error: {line}; records and summary are written to {args.out}", file=sys.stderr)
    return EXIT_OVER_FAILURE_LIMITS if over else 0


def _evaluate(spec, items, out, ray, workers: tuple[int, str], options: dict):
    """The records, answered here (one agent, or ``workers``: agent workers and why) or on Ray."""
    if ray is not None:
        from srice.eval.ray_eval import run_on_ray

        return run_on_ray(spec, ray, items, out, variant=spec.variant_entry(), log=say, **options)
    from srice.builder.pool import AgentPool
    from srice.eval import run as evaluate

    count, _ = workers
    with AgentPool(spec) as pool:
        if count == 1:
            return evaluate.run(pool.agent(), items, out, variant=pool.backend()[1], **options)
        backend, variant = pool.backend()  # a vllm serve started once, for every worker
        url = None if spec.serving.server else backend.urls[0]
        return evaluate.run_on_workers(spec, count, items, out, url=url, variant=variant, log=say, **options)


def _say_redo(redone: list[dict]) -> None:
    from srice.eval.records import transient_reason

    reasons = sorted({transient_reason(r) or "" for r in redone})
    listed = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
    say(f"redoing {len(redone)} question(s) whose model call failed for a passing reason ({listed}); "
        "their old records are kept in the .redone.jsonl beside the records")  # fmt: skip


def _say_damage(damaged, quarantine) -> None:
    lines = ", ".join(f"{d.line} ({d.reason})" for d in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
    say(f"warning: moved {len(damaged)} damaged record line(s) to {quarantine}: line {lines}; their "
        "questions are redone")  # fmt: skip
