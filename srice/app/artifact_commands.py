"""What the commands that make files do, given their parsed arguments: ``synth`` (a synthetic VQA
set), ``calibrate`` (a tool's calibrator, or the uncertainty score's), ``compress`` (a pruned or
quantized variant) and ``train-toy`` (the embedded toy bundle). Parsing lives in ``srice.app.cli``."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import asdict
from functools import partial
from pathlib import Path

from srice.app.args import check_inputs, key_values, serving_config
from srice.errors import SriceError

say = partial(print, file=sys.stderr, flush=True)


def cmd_calibrate(args) -> int:
    check_inputs(args)
    if args.uncertainty:
        return _calibrate_uncertainty(args)
    if not args.tool or not args.images:
        raise SriceError("calibrating a tool needs --tool and --images (or --uncertainty for the US)")
    from srice.app.progress import Progress
    from srice.builder.toolbox import tool_options
    from srice.calibration.coco import load_coco
    from srice.calibration.fit_config import ToolFitConfig
    from srice.calibration.tool_fit import calibrate, make_calibrator, run_tool
    from srice.tools import get_tool

    fit = ToolFitConfig(args.method, args.alpha, args.delta, args.iou, args.targets, args.holdout, args.seed,
                        args.batch_size)  # fmt: skip
    calibrator = make_calibrator(fit.method, fit.alpha, delta=fit.delta, iou=fit.iou)
    records = load_coco(args.data, args.images, masks=fit.method == "mask")
    if not records:
        raise SriceError(f"{args.data} lists no images")
    options = tool_options(
        args.tool, args.weights, trust_weights=args.trust_weights, extra=key_values(args.option)
    )
    tool = get_tool(args.tool, **options)
    if args.weights:
        tool.load()  # the named weights fail here, before any image
    with Progress(len(records), desc=f"running {args.tool}", unit="img") as bar:
        examples, failed = run_tool(
            tool, records, targets=fit.targets, batch_size=fit.batch_size, progress=bar.update
        )
    for line in failed[:10]:
        say(f"skipped {line}")
    if len(failed) > 10:
        say(f"... and {len(failed) - 10} more images skipped")
    result = calibrate(examples, calibrator, holdout=fit.holdout, seed=fit.seed)
    result.calibrator.save(args.output)
    report = {
        "tool": args.tool, "method": fit.method, "alpha": fit.alpha,
        "calibration_images": result.calibration_images, "holdout_images": result.holdout_images,
        "skipped_images": len(failed),
        "calibration": result.calibrator.record(), "holdout": result.holdout, "output": str(args.output),
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return 0
    print(f"calibrated {args.tool} ({fit.method}, alpha={fit.alpha}) on {result.calibration_images} images; "
          f"{len(failed)} skipped")  # fmt: skip
    print(f"parameters: {json.dumps(report['calibration'], default=float)}")
    held = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.holdout.items()
    )
    print(f"held-out ({result.holdout_images} images): {held or 'no held-out images'}")
    print(f"saved {args.output}")
    return 0


def _calibrate_uncertainty(args) -> int:
    from srice.app.progress import Progress
    from srice.eval.data import load_items
    from srice.eval.uncertainty_fit import calibrate_uncertainty
    from srice.serving.backends import open_backend

    questions = load_items(args.data)
    with ExitStack() as stack:
        backend, _ = open_backend(args.variant, serving_config(args), stack)
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


def cmd_synth(args) -> int:
    from srice.app.progress import Progress
    from srice.synth import SynthKnobs, generate

    knobs = {k: v for k in ("tiny_fraction", "kinds", "mc_fraction", "min_side", "max_side", "mask_format")
             if (v := getattr(args, k)) is not None}  # fmt: skip
    with Progress(args.n, desc="synth", unit="q") as bar:
        summary = generate(args.out, seed=args.seed, n=args.n, knobs=SynthKnobs(**knobs), progress=bar.update)
    if args.json:
        print(json.dumps(asdict(summary), indent=2, default=str))
        return 0
    kinds = ", ".join(f"{k} {v}" for k, v in summary.by_kind.items())
    print(f"wrote {summary.n_questions} questions about {summary.n_images} images ({summary.n_objects} "
          f"objects, tiny-target share {summary.tiny_share:.2f}) to {summary.out_dir}/")  # fmt: skip
    print(f"kinds: {kinds}")
    print(f"files: {summary.questions.name}, {summary.annotations.name}, {summary.scenes.name}, images/")
    return 0


def cmd_train_toy(args) -> int:
    from srice.builtin.toy_bundle import TOY_DIR
    from srice.synth import SynthKnobs
    from srice.toy.bundle import train_bundle
    from srice.toy.train_mllm import TrainConfig
    from srice.toy.train_yolo import YoloConfig

    steps = TrainConfig.steps if args.steps is None else args.steps
    epochs = YoloConfig.epochs if args.yolo_epochs is None else args.yolo_epochs
    if steps < 1 or epochs < 1:
        raise SriceError("--steps and --yolo-epochs must be at least 1")
    kinds = SynthKnobs(kinds=None if args.kinds == "all" else args.kinds or TrainConfig.kinds).kinds
    ocr_views = TrainConfig.ocr_views if args.ocr_views is None else args.ocr_views
    if not 0 <= ocr_views <= 1:
        raise SriceError(f"--ocr-views must be in [0, 1], got {ocr_views}")
    out = Path(args.out) if args.out else TOY_DIR
    manifest = train_bundle(
        out, seed=args.seed, mllm=TrainConfig(steps=steps, kinds=tuple(kinds), ocr_views=ocr_views),
        yolo=YoloConfig(epochs=epochs), resume=args.resume, log=say,
    )  # fmt: skip
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(f"wrote the toy bundle to {out} in {manifest['total_seconds'] / 60:.1f} min "
          f"({manifest['total_bytes'] / 1e6:.1f} MB; manifest.json)")  # fmt: skip
    return 0


def cmd_compress(args) -> int:
    from srice.compress.config import CompressConfig

    config = CompressConfig(
        args.method, args.sparsity, calib=args.calib, calib_n=args.calib_n, nm=args.nm, owl=args.owl,
        owl_m=args.owl_m, owl_lambda=args.owl_lambda, owl_clamp=args.owl_clamp,
        include_vision=args.include_vision,
    )  # fmt: skip
    if args.calib and not Path(args.calib.removeprefix("hf:")).exists():
        raise SriceError(f"calibration data not found: {args.calib}")
    if args.register:
        _check_registrable(args)
    from srice.compress import compress, register

    result = compress(args.model, args.output, config, overwrite=args.overwrite, progress=say)
    manifest = result.manifest
    registry = register(result, args.register, calib=args.calib, log=say)[1] if args.register else None
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


def _check_registrable(args) -> None:
    """``--register NAME`` can work, before minutes of compression: labelled questions to fit the new
    variant's uncertainty calibration, a registry that reads, and a vLLM build that can serve it."""
    from srice.serving.variants import load_variants

    if not args.calib:
        raise SriceError(
            f"--register {args.register} fits the new variant's uncertainty calibration on labelled "
            "questions: give them with --calib (srice synth makes some)"
        )
    load_variants()  # a broken registry fails here
    if args.method == "w4a16":  # and so does a CPU whose vLLM build cannot serve the result
        from srice.serving.launcher import require_w4a16

        require_w4a16(f"--method w4a16 --register {args.register}")
