"""The Gradio VQA demo (``srice demo``): the answer, how sure the model is, and what every pathway saw.

The page shows the method, not just an answer box: the stages stream as they run; then the selected
answer with its uncertainty score (US) and pathway, and for every pathway the tool's calibrated
regions drawn on the image, the zoomed view the model was shown, its answer and its US.

The app knows nothing about servers or argparse: it gets an ``agent_for(variant, tools)`` callable
(the CLI's ``AgentPool``, which builds each agent once and starts a variant's ``vllm serve`` on first
use) and a ``DemoSettings``. Offline by construction: analytics off, no share link, local fonts, files
served only from gradio's upload cache and the bundled examples.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from srice.agent import Agent, Item
from srice.agent.answers import check_options
from srice.app.demo_page import TABLE_HEADERS, gallery_items, pathway_rows, pathway_views, summary_markdown
from srice.errors import InputError, SriceError
from srice.images import check_question, load_image

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "demos" / "examples"
MAX_FILE_SIZE = "10mb"  # uploads above this are refused by gradio before they reach us
MAX_PIXELS = 4096 * 4096  # decoded size limit; the model sees a few hundred pixels a side anyway

AgentFor = Callable[[str, tuple[str, ...]], Agent]


@dataclass(frozen=True)
class DemoSettings:
    variants: tuple[str, ...]  # what the variant menu offers; the first run may start vllm serve
    variant: str  # preselected
    tools: tuple[str, ...]  # what the tool boxes offer
    default_tools: tuple[str, ...]
    examples_dir: Path | None = EXAMPLES_DIR
    max_pixels: int = MAX_PIXELS
    title: str = "srice: seeing and reasoning with confidence"
    cache_seconds: int = 1800  # uploads older than this leave gradio's cache (checked as often)


# -- running one question, with stage progress ------------------------------------------------------


@dataclass
class Stages:
    """The stages seen so far, for the status box."""

    began: float = field(default_factory=time.monotonic)
    stages: list[tuple[str, float]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.stages.append((text, time.monotonic()))

    def markdown(self, done: bool = False) -> str:
        now = time.monotonic()
        lines = []
        for i, (text, start) in enumerate(self.stages):
            end = self.stages[i + 1][1] if i + 1 < len(self.stages) else now
            mark = "✓" if done or i + 1 < len(self.stages) else "…"
            lines.append(f"{i + 1}. {mark} {text} ({end - start:.1f} s)")
        head = f"**Done** in {now - self.began:.1f} s" if done else f"**Working** ({now - self.began:.1f} s)"
        return "\n".join([head, "", *lines])


def run_streaming(
    agent_for: AgentFor, variant: str, tools: tuple[str, ...], item: Item, tick: float = 1.0
) -> Iterator:
    """Yields ``("stage", text)`` as the agent moves on (``("tick", None)`` every ``tick`` seconds
    without news, so clocks on the page keep going), then ``("done", (agent, answer))`` or
    ``("error", exception)``: the agent runs in a thread so the page can update meanwhile."""
    events: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            events.put(
                ("stage", f"preparing model variant {variant!r} and tools {', '.join(tools) or 'none'}")
            )
            agent = agent_for(variant, tools)
            [answer] = agent.answer_batch([item], on_stage=lambda text: events.put(("stage", text)))
            events.put(("done", (agent, answer)))
        except BaseException as e:  # handed to the page's thread, which re-raises what is not ours
            events.put(("error", e))

    threading.Thread(target=work, name="srice-demo-agent", daemon=True).start()
    while True:
        try:
            kind, value = events.get(timeout=tick)
        except queue.Empty:
            kind, value = "tick", None
        yield kind, value
        if kind not in ("stage", "tick"):
            return


def _shown(message: str, title: str, log: bool = False) -> gr.Error:
    """An error for the page: one line there, no traceback in the console (user errors are not
    bugs); failures of the model or tools also get one line on stderr for whoever runs the demo."""
    if log:
        print(f"srice demo: {title.lower()}: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, title=title, print_exception=False)


def read_inputs(image: dict | str | None, question: str, options: str, settings: DemoSettings):
    """The checked image, question and options, or a ``gr.Error`` saying what is wrong."""
    if not image:
        raise _shown("Upload an image or pick an example first.", "No image")
    path = Path(image["path"] if isinstance(image, dict) else image)
    try:
        picture = load_image(path, max_pixels=settings.max_pixels)
        question = check_question(question or "")
    except InputError as e:
        raise _shown(str(e).replace(str(path), path.name), "Bad input") from None
    try:
        choices = check_options([o for o in (options or "").split(",") if o.strip()])
    except InputError as e:
        raise _shown(f"{e}; give them comma-separated, or none for an open question", "Bad input") from None
    return picture, question, choices


def answer_page(
    agent_for: AgentFor, settings: DemoSettings, image, question, options, variant, tools
) -> Iterator[tuple]:
    """The page's outputs while one question runs: the status box alone as stages go by (the other
    outputs unchanged), then everything. Bad input and failures become one-line page errors."""
    picture, question, choices = read_inputs(image, question, options, settings)
    if variant not in settings.variants:
        raise _shown(f"unknown variant {variant!r}; offered: {', '.join(settings.variants)}", "Bad input")
    tools = tuple(t for t in settings.tools if t in (tools or ()))
    progress = Stages()
    unchanged = (gr.skip(),) * 5
    yield progress.markdown(), "", "", None, [], None
    for kind, value in run_streaming(agent_for, variant, tools, Item(picture, question, choices)):
        if kind == "stage":
            progress.add(value)
        if kind in ("stage", "tick"):
            yield progress.markdown(), *unchanged
            continue
        if kind == "error":
            if isinstance(value, SriceError):
                raise _shown(f"{type(value).__name__}: {value}", "Failed", log=True) from None
            raise value
        agent, answer = value
        if answer.error:
            raise _shown(answer.error, "No answer", log=True)
        progress.add("drawing the regions and views")
        yield progress.markdown(), *unchanged
        views = pathway_views(picture, answer, agent.config)
        yield (
            progress.markdown(done=True),
            answer.shown,
            summary_markdown(answer),
            pathway_rows(answer),
            gallery_items(views, answer.pathway),
            {"variant": variant, "tools": list(tools)} | answer.to_json(),
        )


def _refuse_paths_in_one_line() -> None:
    """gradio refuses a file path that a client names without uploading it (rightly), but as an
    InvalidPathError that it prints as a traceback and sends to the client as ``{"error": null}``;
    raised as a ``gr.Error`` instead it is one line for the client and none in the console."""
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError

    check = getattr(processing_utils, "_check_allowed", None)
    if check is None or getattr(check, "srice", False):
        return

    def checked(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except InvalidPathError as e:
            raise gr.Error(f"refused: {e}", title="Bad input", print_exception=False) from None

    checked.srice = True
    processing_utils._check_allowed = checked


def build_app(agent_for: AgentFor, settings: DemoSettings) -> gr.Blocks:
    """The page. ``agent_for(variant, tools)`` should build each agent once; it may start a model
    server."""
    unknown = set(settings.default_tools) - set(settings.tools)
    if settings.variant not in settings.variants or unknown:
        raise InputError(f"default variant/tools {settings.variant!r}/{sorted(unknown)} are not offered")
    _refuse_paths_in_one_line()
    age = settings.cache_seconds
    with gr.Blocks(title="srice demo", analytics_enabled=False, delete_cache=(age, age)) as app:
        gr.Markdown(f"## {settings.title}\n{_INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=320, elem_id="image",
                )  # fmt: skip
                question = gr.Textbox(label="Question", placeholder="What colour is the triangle?",
                                      elem_id="question")  # fmt: skip
                options = gr.Textbox(
                    label="Options (optional, comma-separated: multiple choice)",
                    placeholder="red, green, blue",
                    elem_id="options",
                )
                with gr.Row():
                    variant = gr.Dropdown(
                        list(settings.variants), value=settings.variant, label="Model variant",
                        interactive=len(settings.variants) > 1, elem_id="variant",
                    )  # fmt: skip
                    tools = gr.CheckboxGroup(
                        list(settings.tools), value=list(settings.default_tools), label="Tool pathways",
                        elem_id="tools",
                    )  # fmt: skip
                submit = gr.Button("Answer", variant="primary", elem_id="submit")
                examples = load_examples(settings.examples_dir)
                if examples:
                    gr.Examples(examples, inputs=[image, question, options], label="Examples")
            with gr.Column(scale=1):
                status = gr.Markdown("Ask a question to start.", elem_id="status")
                answer_box = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                summary = gr.Markdown(elem_id="summary")
        table = gr.Dataframe(
            headers=TABLE_HEADERS, label="Every pathway (★ = chosen; US: smaller is more certain)",
            interactive=False, wrap=True, elem_id="pathway-table",
        )  # fmt: skip
        gallery = gr.Gallery(
            label="Tool pathways: the calibrated regions on the image | the view the model saw",
            columns=4, height="fit-content", format="png", object_fit="contain", elem_id="pathways",
        )  # fmt: skip
        with gr.Accordion("Full trace (JSON)", open=False):
            trace = gr.JSON(elem_id="trace")

        outputs = [status, answer_box, summary, table, gallery, trace]

        def respond(image_value, question_text, options_text, variant_name, tool_names):
            yield from answer_page(
                agent_for, settings, image_value, question_text, options_text, variant_name, tool_names
            )

        inputs = [image, question, options, variant, tools]
        # preprocess=False: the image arrives as gradio's file record (already checked to be in its
        # upload cache) and is decoded by srice.images, which gives clear errors for non-images.
        # The button's event is the named API endpoint /answer (gradio_client, scripts).
        events = dict(preprocess=False, show_progress="minimal")
        submit.click(respond, inputs, outputs, api_name="answer", **events)
        question.submit(respond, inputs, outputs, api_name=False, **events)
    return app


_INTRO = (
    "The model answers on the full image (the **direct** pathway), says which regions it needs, and "
    "each **tool** finds them. The tool's regions are **calibrated** with conformal prediction, the "
    "model is shown a zoomed view of them, and the answer with the lowest **uncertainty score (US)**: "
    "the size of a conformal prediction set over the answer's first-token probabilities, wins."
)


def load_examples(folder: Path | None) -> list[list[str]]:
    """``[image path, question, options]`` rows from ``folder/examples.json`` (none if absent)."""
    if folder is None or not (folder / "examples.json").exists():
        return []
    rows = json.loads((folder / "examples.json").read_text())
    return [[str(folder / r["image"]), r["question"], r.get("options", "")] for r in rows]


def launch(
    app: gr.Blocks,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    block: bool = True,
    examples_dir=EXAMPLES_DIR,
):
    """Serve the page on ``host:port``: no share link, no analytics, uploads capped at
    ``MAX_FILE_SIZE``, one question at a time (the model server batches within a question)."""
    app.queue(default_concurrency_limit=1, max_size=32)
    try:
        return app.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=MAX_FILE_SIZE,
            allowed_paths=[str(examples_dir)] if examples_dir and Path(examples_dir).is_dir() else None,
            prevent_thread_lock=not block,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            show_error=False,
            quiet=True,
            footer_links=["api"],
        )
    except OSError as e:
        reason = str(e).split(". ")[0]  # gradio's advice names its own env vars, not our options
        raise SriceError(f"cannot serve the demo on {host}:{port} ({reason}); try another --port") from None
