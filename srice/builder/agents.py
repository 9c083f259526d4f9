"""The one way to build an agent, for every front end (CLI, demo, servers, Ray workers, benchmarks):
``build_agent(backend, variant, tools, ...)`` gives the SRICE agent over a model backend
(``srice.serving.backends.open_backend``) with its tools, their calibrators and the uncertainty
calibration of the variant's calibration folder (or the one named). The uncertainty calibration is
``DIR/uncertainty.json``; tool calibrators are ``DIR/<tool>.json`` (``srice.builder.toolbox``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from srice.agent.config import AgentConfig
from srice.errors import SriceError
from srice.serving.backends import as_variant
from srice.serving.types import Backend
from srice.serving.variants import Variant
from srice.tools.base import Tool

from .toolbox import CALIBRATED_TOOLS, build_tools, load_calibrators


def build_agent(
    backend: Backend,
    variant: str | Variant,
    tools: Sequence[str | Tool] = ("zoom",),
    *,
    tool_weights: Mapping[str, str] | None = None,
    calib: str | Path | None = None,
    early_exit: bool = False,
    config: AgentConfig = AgentConfig(),
    log: Callable[[str], None] | None = None,
    trust_weights: bool = False,
    device: str = "auto",
):
    """The SRICE agent over ``backend``: ``tools`` by name (embedded models unless ``tool_weights``
    names a file; on ``device``: auto, cpu, cuda, cuda:N) or already built (an ``AgentPool`` shares
    its tools between agents), their
    calibrators and the uncertainty calibration from ``calib`` (default: the variant's own
    calibration folder, e.g. the toy model's), early exit only when asked for.

    What is missing is said through ``log`` (default: stderr) every time an agent is built: no
    uncertainty calibration (the US falls back to its uncalibrated rule), a q-hat missing for one
    kind of question, a detector without its calibrator. Early exit without a threshold is an error.
    """
    from srice.agent.loop import Agent
    from srice.agent.uncertainty import SetSizeScore

    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    variant = as_variant(variant)
    named = [t for t in tools if isinstance(t, str)]
    built = iter(build_tools(named, tool_weights, trust_weights=trust_weights, device=device))
    chosen = [next(built) if isinstance(t, str) else t for t in tools]
    names = [t.name for t in chosen]
    folder = calibration_folder(variant, calib)
    calibrators = load_calibrators(folder, names)
    where = f"in {folder}" if folder else f"(variant {variant.name!r} names no calibration folder)"
    calibration = _uncertainty_calibration(folder)
    score = None
    if calibration is not None:
        score = SetSizeScore.calibrated(calibration)
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
            f"holding 1 - alpha of the mass); fit one on synthetic questions with: srice calibrate "
            f"--uncertainty {variant.flag} --synth 300 -o DIR/uncertainty.json, then pass --calib "
            "DIR")  # fmt: skip
    for name in names:
        if name in CALIBRATED_TOOLS and name not in calibrators:
            say(f"warning: no calibrator for tool {name} {where}: its regions are shown uncalibrated "
                f"(srice calibrate --tool {name})")  # fmt: skip
    if config.crop_max_pixels is None and not variant.is_hub:
        config = replace(config, crop_max_pixels=view_pixels(variant.model_path()))
    return Agent(backend, chosen, calibrators, config, uncertainty=score)


def view_pixels(model_folder: str | Path) -> int | None:
    """The most pixels of one image the model in ``model_folder`` sees, where its processor says:
    a Qwen2-VL image processor's ``max_pixels`` (saved as ``size.longest_edge`` by recent
    transformers, a pixel count there, not a side; a larger picture is shrunk to it), else None."""
    import json

    for name in ("preprocessor_config.json", "processor_config.json"):
        path = Path(model_folder) / name
        if path.is_file():
            config = json.loads(path.read_text())
            config = config.get("image_processor", config)
            if "Qwen2VL" not in str(config.get("image_processor_type", "")):
                return None
            budget = config.get("max_pixels") or (config.get("size") or {}).get("longest_edge")
            return int(budget) if budget else None
    return None


def calibration_folder(variant: str | Variant, calib: str | Path | None = None) -> str | Path | None:
    """The calibration folder an agent uses: the one named, else the variant's own (None: none)."""
    return calib if calib is not None else as_variant(variant).calibration_dir()


def _uncertainty_calibration(folder):
    """The folder's ``uncertainty.json``, or None where there is none."""
    if not folder or not (Path(folder) / "uncertainty.json").exists():
        return None
    from srice.calibration.uncertainty_calibration import UncertaintyCalibration

    return UncertaintyCalibration.load(Path(folder) / "uncertainty.json")


def early_exit_threshold(
    variant: str | Variant, calib: str | Path | None = None
) -> tuple[float | None, str | None]:
    """The early-exit threshold of the uncertainty calibration ``build_agent`` would use, or None
    and the reason there is none (for servers, where a request may ask for early exit)."""
    folder = calibration_folder(variant, calib)
    try:
        calibration = _uncertainty_calibration(folder)
        if calibration is None:
            return (
                None,
                "early exit needs an uncertainty calibration (srice calibrate --uncertainty, --calib DIR)",
            )
        return _exit_threshold(calibration, folder), None
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
