"""The one way to build an agent, for every front end (CLI, demo, benchmarks, servers):

- ``open_backend(variant, serving, stack)``: the model behind a variant, over HTTP from a running
  server or from a ``vllm serve`` started here (and stopped when ``stack`` closes), or in-process
  with transformers;
- ``build_agent(backend, variant, tools, ...)``: the tools by name, their calibrators and the US
  calibration from the variant's calibration folder (or the one named), and the agent's settings.

``srice ask --tools yolo,sam`` must work out of the box on a machine with no model hub, so a tool
given no weights gets the embedded local model: the shape detector of the trained toy bundle
(``srice.toy``) for ``yolo`` and ``sam``'s boxes when the bundle is there, else the tiny random-weight
builds of ``srice.tools.tiny``. Calibrators are found by tool name in a calibration folder:
``DIR/<tool>.json``; the uncertainty calibration is ``DIR/uncertainty.json``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from srice.agent import Agent, AgentConfig
from srice.errors import InputError, SriceError
from srice.serving.types import Backend
from srice.serving.variants import Variant, get_variant
from srice.tools import TOOLS, get_tool

BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class ServingConfig:
    """How to reach the model: ``server`` (a running OpenAI-compatible server's URL) or a ``vllm
    serve`` started on 127.0.0.1; ``backend="transformers"`` runs the model in this process."""

    backend: str = "vllm"
    server: str | None = None
    timeout: float = 120.0  # seconds per request attempt
    concurrency: int = 32  # requests in flight against the server
    allow_hub: bool = False  # may the transformers backend download a hub model
    vllm: str | None = None  # the vllm executable (default: the one env/setup.sh installed)
    startup_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("timeout", "startup_timeout"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {self.concurrency}")


def _variant(variant: str | Variant) -> Variant:
    return variant if isinstance(variant, Variant) else get_variant(variant)


def open_backend(
    variant: str | Variant,
    serving: ServingConfig,
    stack: ExitStack,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Backend, Variant]:
    """The serving backend for ``variant``; a ``vllm serve`` it starts is stopped when ``stack`` closes."""
    variant = _variant(variant)
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    if serving.backend == "transformers":
        from srice.serving.hf import TransformersBackend

        if variant.is_hub and not serving.allow_hub:
            raise SriceError(f"variant {variant.name!r} is a hub model; pass --allow-hub to download it")
        return TransformersBackend(variant.model_path()), variant
    from srice.serving.openai_http import OpenAIBackend

    url = serving.server
    if not url:
        launched = stack.enter_context(start_server(variant, serving, host=host, port=port, log=say))
        say(f"vllm serve ready at {launched.url} in {launched.started_seconds:.0f} s")
        url = launched.url
    backend = OpenAIBackend(
        url, variant.served_name, timeout=serving.timeout, concurrency=serving.concurrency
    )
    if serving.server:  # a server the user named: it answers, and serves this variant, or we stop now
        try:
            backend.check()
        except SriceError as e:
            raise SriceError(
                f"{e} (variant {variant.name!r}; start it with srice serve --variant {variant.name}, "
                "or drop --server)"
            ) from None
    return backend, variant


def start_server(
    variant: str | Variant,
    serving: ServingConfig,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: Callable[[str], None] | None = None,
):
    """A ``vllm serve`` of ``variant`` (not yet started: use it as a context manager). Signal handlers
    that stop it on SIGINT/SIGTERM are installed from the main thread only (the demo starts other
    variants' servers from worker threads; atexit stops those)."""
    from srice.serving.launcher import install_signal_handlers, server_for

    variant = _variant(variant)
    if threading.current_thread() is threading.main_thread():
        install_signal_handlers()
    (log or (lambda text: print(text, file=sys.stderr, flush=True)))(
        f"starting vllm serve for variant {variant.name!r} ..."
    )
    return server_for(
        variant, executable=serving.vllm, host=host, port=port, startup_timeout=serving.startup_timeout
    )


def build_agent(
    backend: Backend,
    variant: str | Variant,
    tools: Sequence[str] = ("zoom",),
    *,
    tool_weights: Mapping[str, str] | None = None,
    calib: str | Path | None = None,
    early_exit: bool = False,
    config: AgentConfig = AgentConfig(),
    log: Callable[[str], None] | None = None,
    trust_weights: bool = False,
) -> Agent:
    """The SRICE agent over ``backend``: ``tools`` by name (embedded models unless ``tool_weights``
    names a file), their calibrators and the uncertainty calibration from ``calib`` (default: the
    variant's own calibration folder, e.g. the toy model's), early exit only when asked for.

    What is missing is said through ``log`` (default: stderr) every time an agent is built: no
    uncertainty calibration (the US falls back to its uncalibrated rule), a q-hat missing for one
    kind of question, a detector without its calibrator. Early exit without a threshold is an error.
    """
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    variant = _variant(variant)
    names = list(tools)
    built = build_tools(names, tool_weights, trust_weights=trust_weights)
    folder = calibration_folder(variant, calib)
    calibrators = load_calibrators(folder, names)
    where = f"in {folder}" if folder else f"(variant {variant.name!r} names no calibration folder)"
    score = None
    if folder and (Path(folder) / "uncertainty.json").exists():
        from srice.calibration.uncertainty import UncertaintyCalibration

        calibration = UncertaintyCalibration.load(Path(folder) / "uncertainty.json")
        score = calibration.score()
        kinds = [
            k
            for k, q in (("multiple-choice", calibration.qhat_choice), ("open", calibration.qhat_open))
            if q is None
        ]
        if kinds:
            say(f"warning: the uncertainty calibration {where} has no q-hat for {' or '.join(kinds)} "
                "questions: their US is uncalibrated")  # fmt: skip
        if early_exit:
            config = replace(config, early_exit=_exit_threshold(calibration, folder))
    else:
        if early_exit:
            raise SriceError(
                "--early-exit needs --calib DIR with an uncertainty.json (srice calibrate --uncertainty)"
            )
        say(f"warning: no uncertainty calibration {where}: the US is uncalibrated (the fewest top answers "
            f"holding 1 - alpha of the mass); fit one with srice calibrate --uncertainty --variant "
            f"{variant.name} --data QUESTIONS -o DIR/uncertainty.json and pass --calib DIR")  # fmt: skip
    for name in names:
        if name in CALIBRATED_TOOLS and name not in calibrators:
            say(f"warning: no calibrator for tool {name} {where}: its regions are shown uncalibrated "
                f"(srice calibrate --tool {name})")  # fmt: skip
    return Agent(backend, built, calibrators, config, uncertainty=score)


CALIBRATED_TOOLS = ("yolo", "owl", "sam", "ocr")  # tools whose regions have a conformal calibrator


def calibration_folder(variant: str | Variant, calib: str | Path | None = None) -> str | Path | None:
    """The calibration folder an agent uses: the one named, else the variant's own (None: none)."""
    return calib if calib is not None else _variant(variant).calibration_dir()


def early_exit_threshold(
    variant: str | Variant, calib: str | Path | None = None
) -> tuple[float | None, str | None]:
    """The early-exit threshold of the uncertainty calibration ``build_agent`` would use, or None
    and the reason there is none (for servers, where a request may ask for early exit)."""
    folder = calibration_folder(variant, calib)
    if not folder or not (Path(folder) / "uncertainty.json").exists():
        return (
            None,
            "early exit needs an uncertainty calibration (srice calibrate --uncertainty, --calib DIR)",
        )
    from srice.calibration.uncertainty import UncertaintyCalibration

    try:
        return _exit_threshold(UncertaintyCalibration.load(Path(folder) / "uncertainty.json"), folder), None
    except SriceError as e:
        return None, str(e)


def _exit_threshold(calibration, folder) -> float:
    """The early-exit threshold, or an error saying why there is none."""
    if calibration.early_exit is None:
        raise SriceError(
            f"--early-exit: the uncertainty calibration in {folder} has no early-exit threshold: on its "
            f"{calibration.n_exit} questions no US threshold kept wrong early exits at or under "
            f"alpha={calibration.alpha:g}; recalibrate on more questions or with a larger --alpha"
        )
    return calibration.early_exit


def embedded_options(name: str) -> dict:
    """Constructor options that point a tool at its embedded local model."""
    from srice.tools import tiny

    if name == "yolo":
        from srice.toy import has_toy_yolo, toy_yolo_options

        if has_toy_yolo():  # the shape detector trained with the toy model (srice train-toy)
            return toy_yolo_options()
        return {"weights": str(tiny.tiny_yolo()), "max_det": 50}
    if name == "owl":
        return {"weights": str(tiny.tiny_owl()), "max_det": 50}
    if name == "sam":
        # SAM returns one full-size mask per box: 20 boxes of a 1344 px image are already 36 MB
        detector = get_tool("yolo", **embedded_options("yolo"))
        return {"checkpoint": str(tiny.tiny_sam()), "detector": detector, "max_prompts": 20}
    return {}


_ULTRALYTICS_NAME = re.compile(r"^yolo[\w.-]*\.(pt|yaml|yml)$")  # an asset ultralytics knows by name
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # org/name: a hub model, fetched only because it is named


def check_tool_weights(weights: Mapping[str, str]) -> None:
    """An ``InputError`` for a weights file that is not there, before anything is loaded or started.
    A bare ultralytics model name (``yolo11n.pt``) and a hub id for OWL (``org/name``) are names,
    not files: the tool fetches those only because the user named them."""
    for tool, value in weights.items():
        path = Path(str(value)).expanduser()
        if path.exists():
            if tool != "owl" and not path.is_file():
                raise InputError(f"--tool-weights {tool}: not a file: {path}")
            continue
        named = (tool == "yolo" and _ULTRALYTICS_NAME.match(str(value))) or (
            tool == "owl" and _HUB_ID.match(str(value))
        )
        if not named:
            raise InputError(f"--tool-weights {tool}: file not found: {path}")


def build_tools(
    names: Sequence[str], weights: Mapping[str, str] | None = None, *, trust_weights: bool = False
) -> list:
    """Tools by name; ``weights`` maps a name to its model file, else the embedded model is used.
    User weights load safely (no code in them runs) unless ``trust_weights``."""
    weights = dict(weights or {})
    unknown = sorted(set(names) - set(TOOLS)) + sorted(set(weights) - set(names))
    if unknown:
        raise InputError(f"unknown or unused tool(s) {unknown}; valid tools: {', '.join(sorted(TOOLS))}")
    check_tool_weights(weights)
    built = {}
    for name in sorted(names, key=lambda n: n == "sam"):  # sam last: it may take yolo's boxes
        options = embedded_options(name)
        if name == "sam" and "yolo" in built and "yolo" not in weights:
            options["detector"] = built["yolo"]  # the same detector: the agent hands sam its boxes
        if name in weights:
            options["checkpoint" if name == "sam" else "weights"] = weights[name]
            if name == "yolo":
                options["trust_weights"] = trust_weights
        tool = get_tool(name, **options)
        if name in weights:
            tool.load()  # weights the user named are checked now, before any question
        built[name] = tool
    return [built[name] for name in names]


def load_calibrators(folder: str | Path | None, names: Sequence[str]) -> dict:
    """The calibrators found in ``folder`` for the given tool names (missing files: uncalibrated)."""
    if folder is None:
        return {}
    from srice.calibration import load_calibrator

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"calibration folder not found: {folder}")
    return {
        name: load_calibrator(folder / f"{name}.json") for name in names if (folder / f"{name}.json").exists()
    }
