"""A compressed checkpoint as a model variant, served like its base and carrying its calibrations.

Compression changes the MLLM, so the uncertainty score's q-hats fitted to the base no longer hold;
the tools are unchanged, so their conformal calibrators carry over. ``register`` therefore copies the
base variant's tool calibrators into ``OUT/calib/`` and fits the new model's uncertainty calibration
there (the direct pathway once over labelled questions, in-process), so the variant is calibrated
from its first use. Without questions it registers uncalibrated, and every use says so on stderr.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from srice.compress.api import CompressResult
from srice.errors import CalibrationError

ALPHA = 0.1


def register(
    result: CompressResult,
    name: str,
    *,
    calib: str | Path | None = None,
    alpha: float = ALPHA,
    registry: Path | None = None,
    log: Callable[[str], None] | None = None,
):
    """Register the compressed checkpoint as variant ``name``; returns (variant, registry file).

    It inherits the base variant's vLLM arguments (the ``tiny`` ones when the base was a plain
    folder); W4A16 switches a float32 dtype to bfloat16, since vLLM's CPU W4A16 kernel
    (``cpu_gemm_wna16``) is not implemented for float32. ``calib``: labelled questions (any format
    ``srice eval`` reads) to fit the uncertainty calibration on.
    """
    from srice.serving.launcher import require_w4a16
    from srice.serving.variants import Variant, get_variant, register_variant

    say = log or (lambda text: None)
    method = result.manifest["method"]
    if method == "w4a16":
        require_w4a16(f"registering the W4A16 checkpoint as variant {name!r}")
    base_name = result.manifest.get("base_variant") or "tiny"
    base = get_variant(base_name)
    args = list(base.vllm_args)
    if method == "w4a16" and "--dtype" in args:
        i = args.index("--dtype")
        if i + 1 < len(args) and args[i + 1] in ("float32", "float"):
            args[i + 1] = "bfloat16"
    folder = Path(result.out_dir).resolve() / "calib"
    carried = _carry_tool_calibrators(base.calibration_dir(), folder)
    if carried:
        say(f"tool calibrators carried over from {base_name}: {', '.join(carried)}")
    if calib is not None:
        us = fit_uncertainty(result.out_dir, calib, alpha)
        us.save(folder / "uncertainty.json")
        say(f"uncertainty calibration fitted on {us.n_choice + us.n_open + us.n_exit} questions of {calib}")
    sparsity = result.manifest["parameters"]["sparsity"]
    extra = {"compression": {"method": method, "base_variant": base_name}}
    if folder.is_dir() and any(folder.iterdir()):
        extra["calib"] = str(folder)
    variant = Variant(
        name=name,
        model=str(Path(result.out_dir).resolve()),
        served_name=name,
        vllm_args=tuple(args),
        description=f"{method} of {base_name} (sparsity {sparsity:g})",
        extra=extra,
    )
    return variant, register_variant(variant, registry)


def _carry_tool_calibrators(source: str | None, folder: Path) -> list[str]:
    """Copy ``<tool>.json`` calibrators (not the uncertainty calibration) of the base variant."""
    if not source or not Path(source).is_dir():
        return []
    carried = []
    for path in sorted(Path(source).glob("*.json")):
        if path.name != "uncertainty.json":
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, folder / path.name)
            carried.append(path.stem)
    return carried


def fit_uncertainty(model: str | Path, calib: str | Path, alpha: float = ALPHA):
    """The uncertainty calibration of the checkpoint at ``model`` on the questions in ``calib``; a
    ``CalibrationError`` when they are too few to fit any q-hat at ``alpha``."""
    from srice.eval.data import load_items
    from srice.eval.uncertainty_fit import calibrate_uncertainty
    from srice.serving.hf import TransformersBackend

    items = load_items(calib)
    us = calibrate_uncertainty(TransformersBackend(model, batch_size=16), items, alpha=alpha)
    if us.qhat_choice is None and us.qhat_open is None:
        raise CalibrationError(
            f"the {len(items)} questions of {calib} are too few to calibrate the uncertainty score at "
            f"alpha={alpha:g}: each half needs at least {round(1 / alpha) - 1} multiple-choice or open "
            "questions; give more with --calib"
        )
    return us
