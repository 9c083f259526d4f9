"""The arguments several commands share, with their defaults read from the library's own config
dataclasses (so no default is written twice), and what they become: a ``ServingConfig`` and an
``AgentSpec``. Only light modules are imported here: ``--help`` must answer at once."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from srice.agent.config import AgentConfig
from srice.builder.spec import AgentSpec
from srice.devices import DEVICES
from srice.errors import SriceError
from srice.serving.config import BACKENDS, ServingConfig


def add_device(p: argparse.ArgumentParser, what: str) -> None:
    """``--device``, written once for every command that runs torch (default ``auto``)."""
    help = f"{what}: {DEVICES} (default %(default)s: CUDA when present)"
    p.add_argument("--device", default=AgentSpec.device, help=help)


def add_workers(p: argparse.ArgumentParser) -> None:
    """``--workers``: agents in processes of their own, the way the model and the tools overlap."""
    p.add_argument(
        "--workers", default="auto", metavar="N",
        help="agent worker processes on this machine: while one waits on the model server, another runs "
        "its tools (the records are the same). Default auto: 1, as no gain of 2 has been measured with "
        "the tools as they are (benchmarks/bench_eval_pipeline.py); it says which it chose",
    )  # fmt: skip


def add_serving(p: argparse.ArgumentParser) -> None:
    """Which model, where it and the tools run, and how to reach it."""
    p.add_argument(
        "--model", metavar="PATH|ORG/NAME",
        help="your own model instead of --variant: a folder in Hugging Face format, or a hub id with "
        "--allow-hub",
    )  # fmt: skip
    add_device(p, "where the tools and an in-process model run, and the GPU vllm serve uses")
    p.add_argument(
        "--variant", default=AgentSpec.variant, help="model variant from the registry (default: %(default)s)"
    )
    p.add_argument("--backend", choices=BACKENDS, default=ServingConfig.backend)
    p.add_argument("--server", help="URL of a running OpenAI-compatible server (default: start vllm serve)")
    p.add_argument(
        "--allow-hub", action="store_true", help="let the transformers backend download hub models"
    )
    p.add_argument("--timeout", type=float, default=ServingConfig.timeout, help="seconds per request attempt")
    p.add_argument("--vllm", help="vllm executable (default: the one env/setup.sh installed)")
    p.add_argument(
        "--startup-timeout", type=float, default=ServingConfig.startup_timeout,
        help="seconds to wait for vllm serve (default: %(default)s)",
    )  # fmt: skip


def add_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-weights", action="store_true",
        help="load YOLO weights you named without the safe loader: a .pt is a pickle and a model YAML "
        "may hold code, both run as you load them; only for weights whose author you trust",
    )  # fmt: skip


def add_agent(
    p: argparse.ArgumentParser, flag: str = "--tools", tools: tuple[str, ...] = AgentSpec.tools
) -> None:
    """The agent's tools, their weights and calibration, and its settings."""
    p.add_argument(
        flag, dest="tools", default=",".join(tools),
        help="comma-separated tool pathways (yolo,owl,sam,ocr,zoom,zoomtree; default %(default)s; '' for "
        "direct only)",
    )  # fmt: skip
    p.add_argument(
        "--tool-weights", action="append", default=[], metavar="TOOL=PATH",
        help="a tool's model file (default: the embedded model)",
    )  # fmt: skip
    p.add_argument(
        "--calib",
        help="folder with <tool>.json calibrators and uncertainty.json (default: the variant's own, "
        "e.g. the toy model's)",
    )
    p.add_argument(
        "--early-exit", action="store_true",
        help="skip tools when the direct answer is certain enough (threshold from --calib)",
    )  # fmt: skip
    p.add_argument(
        "--view", choices=("crop", "boxes"), default=AgentConfig.view,
        help="what tool pathways show the model",
    )  # fmt: skip
    p.add_argument(
        "--top-views", type=int, default=AgentConfig.top_views, metavar="K",
        help="also show each detector's K likeliest calibrated regions alone, as pathways TOOL[0..K-1] "
        "(default %(default)s; 0: the union view only)",
    )  # fmt: skip
    add_trust(p)
    p.add_argument(
        "--tool-timeout", type=float, default=AgentConfig.tool_timeout, metavar="SECONDS",
        help="seconds a tool may take per image (a batch of n gets n times this; default %(default)s): a "
        "tool that overruns fails its pathway, counted in the output",
    )  # fmt: skip
    p.add_argument(
        "--max-tokens", type=int, default=AgentConfig.max_tokens,
        help="answer length in tokens (default %(default)s)",
    )  # fmt: skip


def comma_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def key_values(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (``--tool-weights``, ``--option``), values read as JSON where they can be."""
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


def serving_config(args) -> ServingConfig:
    """How to reach the model (a running server: --server, else $SRICE_SERVER). ``--device`` is
    checked against this machine now (one line, exit 1), unless Ray workers elsewhere will run it."""
    if getattr(args, "ray", None) is None:
        from srice.devices import resolve_device

        resolve_device(args.device)
    return ServingConfig(
        backend=args.backend, server=args.server or os.environ.get("SRICE_SERVER"), timeout=args.timeout,
        allow_hub=args.allow_hub, vllm=args.vllm, startup_timeout=args.startup_timeout, device=args.device,
    )  # fmt: skip


def chosen_variant(args):
    """The ``Variant`` the arguments name: ``--model`` made into one, else ``--variant``'s entry."""
    return AgentSpec(variant=args.variant, model=args.model, serving=serving_config(args)).variant_entry()


def agent_spec(args) -> AgentSpec:
    """The agent the arguments describe, built once per command."""
    config = AgentConfig(
        max_tokens=args.max_tokens, view=args.view, top_views=args.top_views, tool_timeout=args.tool_timeout
    )
    return AgentSpec(
        variant=args.variant, model=args.model, serving=serving_config(args),
        tools=tuple(comma_list(args.tools)), tool_weights=key_values(args.tool_weights),
        trust_weights=args.trust_weights, calib=args.calib,
        early_exit=args.early_exit, config=config, device=args.device,
    )  # fmt: skip


def check_inputs(args) -> None:
    """Files and folders named on the command line exist, before any work starts (a server, a model
    load): a typo costs a second, not minutes."""
    from srice.builder.toolbox import check_tool_weights

    for attribute, what in (("calib", "calibration folder"), ("images", "images folder")):
        value = getattr(args, attribute, None)
        if value and not Path(value).expanduser().is_dir():
            raise SriceError(f"{what} not found: {value}")
    weights = key_values(getattr(args, "tool_weights", []) or [])
    if getattr(args, "weights", None):
        weights[args.tool or "tool"] = args.weights
    check_tool_weights(weights)


def image_folder(args) -> Path | None:
    """``--image-folder``: where a server may read local images from (None: data: URLs only)."""
    folder = Path(args.image_folder).expanduser().resolve() if args.image_folder else None
    if folder is not None and not folder.is_dir():
        raise SriceError(f"--image-folder not found: {args.image_folder}")
    return folder
