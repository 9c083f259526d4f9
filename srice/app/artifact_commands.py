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

from srice.app.args import check_inputs, chosen_variant, key_values, serving_config
from srice.devices import resolve_device
from srice.errors import SriceError

say = partial(print, file=sys.stderr, flush=True)


def cmd_calibrate(args) -> int:
    check_inputs(args)
    device = resolve_device(args.device)  # a device this machine lacks fails before any work
    if (args.data is None) == (args.synth is None) or (args.synth is not None and not args.uncertainty):
        raise SriceError("give --data (or, with --uncertainty, --synth N for synthetic questions), not both")
    if args.synth is not None and args.synth < 2:
        raise SriceError(f"--synth needs at least 2 questions, got {args.synth}")
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
        args.tool,
        args.weights,
        trust_weights=args.trust_weights,
        extra=key_values(args.option),
        device=device,
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

    serving = serving_config(args)
    with ExitStack() as stack:
        questions = load_items(_uncertainty_data(args, stack))
        backend, _ = open_backend(chosen_variant(args), serving, stack)
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


SYNTH_CALIBRATION_SEED = 9000  # --synth: questions from a seed range no training or test split uses


def _uncertainty_data(args, stack: ExitStack) -> Path:
    """The labelled questions to calibrate on: ``--data``, or ``--synth N`` fresh synthetic ones."""
    if args.synth is None:
        return Path(args.data)
    import tempfile

    from srice.synth import generate

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="srice-calib-")))
    say(f"generating {args.synth} synthetic questions (synth seed {SYNTH_CALIBRATION_SEED}) ...")
    return generate(folder, seed=SYNTH_CALIBRATION_SEED, n=args.synth).questions


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

    args.device = resolve_device(args.device)  # a device this machine lacks fails before any work
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
        yolo=YoloConfig(epochs=epochs), resume=args.resume, device=args.device, log=say,
    )  # fmt: skip
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(f"wrote the toy bundle to {out} in {manifest['total_seconds'] / 60:.1f} min "
          f"({manifest['total_bytes'] / 1e6:.1f} MB; manifest.json)")  # fmt: skip
    return 0


def cmd_variants(args) -> int:
    """``srice variants list|add|remove``: the variant registry, without editing its JSON by hand."""
    from srice.serving import variants

    if args.action == "add":
        folder = Path(args.model).expanduser()
        entry = {
            "model": str(folder.resolve()) if folder.is_dir() else args.model,
            "served_name": args.served_name or args.name,
            "vllm_args": args.vllm_arg,
        }
        variant = variants.variant_from_entry(
            args.name, entry | ({"calib": args.calib} if args.calib else {})
        )
        local = args.model.startswith(variants.BUILTIN_PREFIX) or folder.is_dir()
        if not (local or variant.is_hub):
            raise SriceError(f"--model {args.model}: no such folder, and not a hub id (org/name)")
        print(f"added variant {args.name!r} to {variants.register_variant(variant)}")
        return 0
    if args.action == "remove":
        print(f"removed variant {args.name!r} from {variants.remove_variant(args.name)}")
        return 0
    registry, mine = variants.load_registry(), variants.user_variant_names()
    rows = [
        {"name": n, "source": "user" if n in mine else "packaged", "model": v.model,
         "served_name": v.served_name, "calib": v.extra.get("calib")}
        for n, v in sorted(registry.variants.items())
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"variants": rows, "problems": registry.problems}, indent=2))
        return 0
    for r in rows:
        calib = f" (calib {r['calib']})" if r["calib"] else ""
        print(f"{r['name']:<20} {r['source']:<9} {r['model']}{calib}")
    for name, why in registry.problems.items():
        print(f"{name:<20} malformed: {why}")
    return 0


def cmd_compress(args) -> int:
    from srice.compress.config import CompressConfig

    args.device = resolve_device(args.device)  # a device this machine lacks fails before any work
    config = CompressConfig(
        args.method, args.sparsity, calib=args.calib, calib_n=args.calib_n, nm=args.nm, owl=args.owl,
        owl_m=args.owl_m, owl_lambda=args.owl_lambda, owl_clamp=args.owl_clamp,
        include_vision=args.include_vision,
    )  # fmt: skip
    if args.calib and not Path(args.calib.removeprefix("hf:")).exists():
        raise SriceError(f"calibration data not found: {args.calib}")
    if args.register:
        _check_registrable(args)
    from srice.compress.api import compress

    result = compress(
        args.model, args.output, config, overwrite=args.overwrite, progress=say, device=args.device
    )
    manifest = result.manifest
    registry = _register(args, result, say)
    if args.json:
        return 0
    achieved = manifest.get("achieved", {}).get("overall")
    detail = f", achieved sparsity {achieved:.3f}" if achieved is not None else ""
    if "depth" in manifest:
        detail = f", removed layers {manifest['depth']['removed_layers']}"
    print(f"{args.method}: wrote {result.out_dir} in {result.seconds:.1f} s{detail} (manifest.json)")
    if args.register:
        print(f"registered variant {args.register!r} in {registry}; use --variant {args.register}")
    return 0


def _register(args, result, say):
    """Register the compressed or fine-tuned ``result`` where ``--register`` asks (the registry file,
    else None), and with ``--json`` print the report: output, registration and manifest."""
    from srice.compress.register import register

    registry = register(result, args.register, calib=args.calib, log=say)[1] if args.register else None
    if args.json:
        report = {"output": str(result.out_dir), "registered": args.register, "registry": str(registry or "")}
        print(json.dumps(report | result.manifest, indent=2))
    return registry


def cmd_finetune(args) -> int:
    from srice.compress.config import FinetuneConfig

    args.device = resolve_device(args.device)
    config = FinetuneConfig(
        args.method, steps=args.steps, lr=args.lr, batch_size=args.batch_size, interval=args.interval,
        fraction=args.fraction, stop=args.stop, criterion=args.criterion, rank=args.rank, seed=args.seed,
    )  # fmt: skip
    for path in (args.data, args.calib):
        if path and not Path(path.removeprefix("hf:")).exists():
            raise SriceError(f"questions not found: {path}")
    if args.register:
        _check_registrable(args)
    from srice.compress.finetune import finetune

    result = finetune(
        args.model, args.data, args.output, config, device=args.device, overwrite=args.overwrite, progress=say
    )
    manifest = result.manifest
    registry = _register(args, result, say)
    if args.json:
        return 0
    before, after = manifest["sparsity_before"]["overall"], manifest["achieved"]["overall"]
    loss = manifest["loss"]
    print(
        f"{args.method}: wrote {result.out_dir} in {result.seconds:.1f} s, loss {loss['first']:.3f} -> "
        f"{loss['last']:.3f}, sparsity {before:.4f} -> {after:.4f} (manifest.json)"
    )
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
