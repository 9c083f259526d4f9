"""The ``srice`` command line: one parser per command, and the one entry point. Defaults come from the
library's config dataclasses (light modules: ``--help`` imports nothing heavy). What each command does
is in ``srice.app.commands`` and ``srice.app.artifact_commands``."""

from __future__ import annotations

import argparse
import os
import sys

from srice import __version__
from srice.app import artifact_commands, commands
from srice.app.args import add_agent, add_device, add_serving, add_trust, add_workers
from srice.app.server_config import BatchingConfig
from srice.calibration.fit_config import METHODS as CALIBRATION_METHODS
from srice.calibration.fit_config import TARGETS, ToolFitConfig
from srice.compress.config import METHODS as COMPRESS_METHODS
from srice.compress.config import CompressConfig
from srice.errors import SriceError
from srice.eval.policy import DEFAULT_BATCH_SIZE, FailureLimits
from srice.eval.ray_eval import RayConfig


def _serve(sub) -> None:
    p = sub.add_parser("serve", help="run vllm serve for a model variant until interrupted; with --agent, "
                       "the SRICE agent behind an OpenAI-compatible API")  # fmt: skip
    add_serving(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--agent", action="store_true",
        help="serve the SRICE agent (POST /v1/chat/completions, /v1/models, /health, /metrics) in front "
        "of the model: a vllm serve started on a free port, or --server URL",
    )  # fmt: skip
    add_agent(p)
    add_workers(p)
    p.add_argument("--served-name", help="the agent's model name (default: the variant's + '-agent')")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY (default: $SRICE_API_KEY, else none)")
    p.add_argument(
        "--max-batch", type=int, default=BatchingConfig.max_batch, help="questions answered together at most"
    )
    p.add_argument(
        "--batch-wait-ms", type=float, default=BatchingConfig.wait * 1000,
        help="how long the first waiting question waits for others to join its batch (default %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--max-queue", type=int, default=BatchingConfig.max_queue,
        help="questions waiting at most; more get 429",
    )  # fmt: skip
    p.add_argument(
        "--image-folder",
        help="let requests name local image files inside this folder (default: data: URLs only)",
    )  # fmt: skip
    p.set_defaults(func=commands.cmd_serve)


def _mcp(sub) -> None:
    p = sub.add_parser(
        "mcp", help="the calibrated tools (detect, read_text) and the SRICE answer as MCP tools"
    )
    add_serving(p)
    add_agent(p, tools=("yolo", "zoom"))
    p.add_argument(
        "--transport", choices=("stdio", "streamable-http"), default="stdio",
        help="stdio (default: an MCP client launches this command) or streamable HTTP on --host:--port",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="bind address for streamable-http (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--image-folder", help="let tools read image files inside this folder (default: data: URLs)"
    )
    p.set_defaults(func=commands.cmd_mcp)


def _ask(sub) -> None:
    p = sub.add_parser("ask", help="answer one visual question with the SRICE agent")
    add_serving(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True)
    p.add_argument("--options", help="comma-separated multiple-choice options")
    add_agent(p)
    p.add_argument("--json", action="store_true", help="print the answer and its trace as JSON")
    p.set_defaults(func=commands.cmd_ask)


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="the Gradio VQA demo: answer, uncertainty and every pathway's regions")
    add_serving(p)
    add_agent(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--upload-ttl", type=int, default=1800, metavar="SECONDS",
        help="uploads older than this are deleted from gradio's cache (default 1800)",
    )  # fmt: skip
    p.set_defaults(func=commands.cmd_demo)


def _eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate the agent on a VQA benchmark: resumable records and a summary")
    add_serving(p)
    add_agent(p, "--pathways")
    p.add_argument(
        "--data", required=True, help="questions.jsonl, a VLMEvalKit .tsv, a .parquet, or hf:FOLDER[:split]"
    )
    p.add_argument(
        "--out", required=True, help="output folder (records, summary, predictions); reused to resume"
    )
    p.add_argument("--limit", type=int, help="first N questions only")
    p.add_argument("--shard", help="i/n: this machine's share of the questions")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    add_workers(p)
    _ray_args(p)
    limits = FailureLimits()
    for name, what in (
        ("max_tool_failures", "a tool failed on more than this share of the questions it ran on"),
        ("max_failed_items", "more than this share of the questions got no answer at all"),
    ):
        flag, default = f"--{name.replace('_', '-')}", getattr(limits, name)
        text = f"exit with status 3 (after writing everything) when {what} (default %(default)g)"
        p.add_argument(flag, type=float, default=default, metavar="SHARE", help=text)
    p.add_argument(
        "--force", action="store_true",
        help="resume even when the settings differ from those the records in --out were made with",
    )  # fmt: skip
    p.set_defaults(func=commands.cmd_eval)


def _ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray", nargs="?", const=RayConfig.address, metavar="ADDRESS",
        help="answer on a Ray cluster: 'auto' (the cluster this machine is in), HOST:PORT, or nothing "
        "for a local cluster of this machine; records are written here, once, as without Ray",
    )  # fmt: skip
    for name, kind, what in (
        ("workers", int, "agent workers"),
        ("worker_cpus", float, "CPUs per worker"),
        ("worker_gpus", float, "GPUs per worker, for tools on GPU (a fraction shares one)"),
        ("retries", int, "times Ray runs a batch again on a replaced worker when its worker dies"),
    ):
        flag, default = f"--ray-{name.replace('_', '-')}", getattr(RayConfig, name)
        p.add_argument(flag, type=kind, default=default, metavar="N", help=f"{what} (default %(default)s)")


def _train_toy(sub) -> None:
    p = sub.add_parser(
        "train-toy",
        help="train and calibrate the embedded toy MLLM and shape detector on the synthetic world",
    )  # fmt: skip
    p.add_argument("--out", help="bundle folder (default: the packaged one, srice/assets/toy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="MLLM training steps (default: the recipe's, TrainConfig.steps)")
    p.add_argument(
        "--yolo-epochs", type=int, help="detector training epochs (default: the recipe's, YoloConfig.epochs)"
    )
    p.add_argument(
        "--kinds", help="question kinds the MLLM learns, comma-separated or 'all' (default: the recipe's)"
    )
    p.add_argument(
        "--ocr-views", type=float,
        help="share of text questions' crop examples shown as the OCR pathway shows them (default 0)",
    )  # fmt: skip
    p.add_argument("--resume", help="staging folder of a run that stopped: keep the stages it finished")
    add_device(p, "where the MLLM and the detector train")
    p.add_argument("--json", action="store_true", help="print the manifest")
    p.set_defaults(func=artifact_commands.cmd_train_toy)


def _synth(sub) -> None:
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
    p.set_defaults(func=artifact_commands.cmd_synth)


def _calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="conformal calibration of a vision tool (COCO data) or of the uncertainty score"
    )
    p.add_argument(
        "--uncertainty", action="store_true",
        help="calibrate the uncertainty score (LAC q-hat, early exit) on --data questions.jsonl",
    )  # fmt: skip
    add_serving(p)
    p.add_argument("--tool", help="tool name (yolo, owl, sam, ocr, zoom)")
    p.add_argument("--weights", help="tool weights file or folder")
    add_trust(p)
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="tool constructor option, value parsed as JSON when it can be (repeatable)",
    )  # fmt: skip
    p.add_argument("--data", help="COCO-format annotation file, or questions.jsonl with --uncertainty")
    p.add_argument(
        "--synth", type=int, metavar="N",
        help="with --uncertainty: calibrate on N fresh synthetic questions instead of --data",
    )  # fmt: skip
    p.add_argument("--images", help="folder the annotation file's file_names are relative to")
    fit = ToolFitConfig()
    p.add_argument("--alpha", type=float, default=fit.alpha, help="miscoverage level (default %(default)g)")
    p.add_argument(
        "--method", choices=CALIBRATION_METHODS, default=fit.method,
        help="threshold (recall, CRC), precision (LTT), margins, mask, or sequential (threshold then "
        "margins; default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--delta", type=float, default=fit.delta, help="LTT failure probability for --method precision"
    )
    p.add_argument("--iou", type=float, default=fit.iou, help="IoU that makes a prediction match an object")
    p.add_argument(
        "--targets", choices=TARGETS, default=fit.targets,
        help="what the tool is asked to find: each image's labels (default), all labels, anything",
    )  # fmt: skip
    p.add_argument(
        "--holdout", type=float, default=fit.holdout, help="share of images kept to measure coverage"
    )
    p.add_argument("--seed", type=int, default=fit.seed)
    p.add_argument("--batch-size", type=int, default=fit.batch_size)
    p.add_argument("-o", "--output", required=True, help="calibration JSON file to write")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=artifact_commands.cmd_calibrate)


def _compress(sub) -> None:
    p = sub.add_parser(
        "compress", help="prune or quantize a model variant into a new checkpoint and register it"
    )
    p.add_argument("--model", required=True, help="model folder or registered variant name")
    p.add_argument("--method", required=True, choices=tuple(COMPRESS_METHODS), help="compression method")
    p.add_argument(
        "--sparsity", type=float,
        help="share of weights to remove per layer (depth: share of layers), in [0, 1); default 0.5",
    )  # fmt: skip
    p.add_argument("--calib", help="calibration questions (questions.jsonl, .tsv, ...: image + question)")
    p.add_argument(
        "--calib-n", type=int, default=CompressConfig.calib_n,
        help="calibration samples (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--nm", help="N:M structured sparsity, keep N of every M weights (e.g. 2:4)")
    p.add_argument("--owl", action="store_true", help="OWL outlier-weighted per-layer sparsity")
    p.add_argument(
        "--owl-m", type=float, default=CompressConfig.owl_m,
        help="OWL outlier threshold M (default %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--owl-lambda", type=float, default=CompressConfig.owl_lambda, help="OWL lambda (default %(default)g)"
    )
    p.add_argument(
        "--owl-clamp", action="store_true",
        help="keep every layer within S +- lambda (srice's earlier rule; default: the reference OWL rule)",
    )  # fmt: skip
    p.add_argument("--include-vision", action="store_true", help="prune/quantize the vision tower too")
    p.add_argument("-o", "--output", required=True, help="folder to write the checkpoint and manifest.json")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--register", metavar="NAME", help="register the result as variant NAME")
    add_device(p, "where the calibration forward passes and the pruning math run")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=artifact_commands.cmd_compress)


def _finetune(sub) -> None:
    from srice.compress.config import CRITERIA, FINETUNE_METHODS, FinetuneConfig

    d = FinetuneConfig()
    p = sub.add_parser(
        "finetune", help="recover a pruned variant's accuracy, keeping its sparsity (SEFT), and register it"
    )
    p.add_argument("--model", required=True, help="pruned model folder or registered variant name")
    p.add_argument("--method", default=d.method, choices=tuple(FINETUNE_METHODS), help="default %(default)s")
    p.add_argument("--data", required=True, help="labelled questions to train on (questions.jsonl, ...)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)g)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    p.add_argument(
        "--interval",
        type=int,
        default=d.interval,
        help="SEFT: steps between drop-and-grow (default %(default)s)",
    )
    p.add_argument(
        "--fraction", type=float, default=d.fraction,
        help="SEFT: share of each layer's weights moved at the first drop-and-grow, decaying to 0 "
        "(default %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--stop", type=float, default=d.stop,
        help="SEFT: no drop-and-grow after this share of the steps (default %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--criterion", default=d.criterion, choices=CRITERIA,
        help="SEFT: which active weights are dropped, |w dL/dw| or |w| (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--rank", type=int, default=d.rank, help="LoRA rank (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("-o", "--output", required=True, help="folder to write the checkpoint and manifest.json")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument(
        "--register", metavar="NAME",
        help="register the result as variant NAME, its uncertainty calibration fitted on --calib",
    )  # fmt: skip
    p.add_argument(
        "--calib", help="labelled questions to fit the registered variant's uncertainty calibration"
    )
    add_device(p, "where the training runs")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=artifact_commands.cmd_finetune)


def _variants(sub) -> None:
    p = sub.add_parser("variants", help="list, add or remove model variants in your registry")
    actions = p.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="every variant: packaged and yours, and malformed entries")
    listed.add_argument("--json", action="store_true")
    add = actions.add_parser("add", help="add (or replace) a variant in your registry ($SRICE_VARIANTS)")
    add.add_argument("name")
    add.add_argument("--model", required=True, help="a model folder, or a hub id (org/name)")
    add.add_argument("--served-name", help="the name vllm serve gives it (default: the variant's)")
    add.add_argument("--calib", help="its calibration folder (uncertainty.json, <tool>.json)")
    add.add_argument(
        "--vllm-arg", action="append", default=[], metavar="ARG",
        help="an argument for vllm serve, repeatable (e.g. --vllm-arg=--max-model-len --vllm-arg=8192)",
    )  # fmt: skip
    remove = actions.add_parser("remove", help="remove a variant from your registry")
    remove.add_argument("name")
    p.set_defaults(func=artifact_commands.cmd_variants)


COMMANDS = (
    _serve, _mcp, _ask, _demo, _eval, _train_toy, _synth, _calibrate, _compress, _finetune, _variants
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srice", description="Reliable tool-using multimodal inference.")
    parser.add_argument("--version", action="version", version=f"srice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except SriceError as e:
        print(f"srice: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("srice: interrupted", file=sys.stderr)
        code = 130
    return _leave(code) if argv is None else code


def _leave(code: int) -> int:
    """Exit now when a tool that overran its limit still runs in its (daemon) thread: waiting would
    hold the command for as long as the tool runs, and native code torn down under a running thread
    can abort the interpreter. Records are on disk and servers are stopped by then."""
    import threading

    if any(t.name.startswith("srice-tool-") and t.is_alive() for t in threading.enumerate()):
        launcher = sys.modules.get("srice.serving.launcher")
        if launcher is not None:
            launcher.stop_all()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
