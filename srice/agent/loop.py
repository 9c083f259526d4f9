"""The SRICE agent: direct answer, region proposal, calibrated tool pathways, least-uncertain wins.

``answer_batch`` runs stage by stage across all questions, so each model stage is one batched
``generate`` call (the server keeps them all in flight) and each tool runs once over the whole batch:

1. direct answers (and region proposals, in the same call unless early exit is on; none without a
   tool pathway, which alone would use them);
2. region proposals for the questions that did not exit early (early exit only);
3. every tool over all images with the parsed targets (tools at once), then its calibrator;
4. a guided pathway's search (the zoom tree, ``srice.agent.zoomtree``): one call per level;
5. every pathway's answer, in one call.

A tool or calibrator failure, or a tool that overruns ``tool_timeout`` (seconds per image, times the
batch), marks that pathway failed in the trace (``error_kind`` says what failed) and the others carry
on. An unreadable image fails only its own question. A serving failure propagates: without the
model there is no answer to give, and the caller decides (the evaluator records it per question).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from srice.agent import zoomtree
from srice.agent.answers import check_options, option_letter
from srice.agent.config import AgentConfig
from srice.agent.prompts import direct_request, pathway_request, prompt_text, region_request, zoom_request
from srice.agent.refer import referring_phrases, view_order
from srice.agent.targets import parse_targets
from srice.agent.tool_threads import Timeout, in_daemon_thread, timed_batch, timed_segment
from srice.agent.trace import Answer, PathwayTrace
from srice.agent.uncertainty import SetSizeScore, UncertaintyScore
from srice.agent.visual import crop_regions, crop_window, draw_regions
from srice.errors import InputError, SriceError
from srice.images import check_question, load_image
from srice.serving.types import Backend, Completion
from srice.tools.base import Tool

if TYPE_CHECKING:  # calibrators are handed in; the agent only calls their apply()
    from srice.calibration import Calibrator


@dataclass(frozen=True)
class Item:
    image: str | Path | bytes | Image.Image
    question: str
    options: tuple[str, ...] | None = None
    id: str | None = None


@dataclass
class _Work:
    """One question in flight."""

    item: Item
    answer: Answer
    image: Image.Image | None = None
    pathways: dict[str, PathwayTrace] = field(default_factory=dict)
    views: dict[str, Image.Image] = field(default_factory=dict)  # what each tool pathway shows


@dataclass
class Batch:
    """A batch between the agent's steps: every question, the ones still going on, and where the
    stage descriptions go."""

    work: list[_Work]
    live: list[_Work]
    stage: Callable[[str], None]


class Agent:
    def __init__(
        self,
        backend: Backend,
        tools: Sequence[Tool] = (),
        calibrators: Mapping[str, Calibrator] | None = None,
        config: AgentConfig = AgentConfig(),
        uncertainty: UncertaintyScore | None = None,
    ):
        names = [t.name for t in tools]
        if len(set(names)) != len(names) or "direct" in names or any("[" in n for n in names):
            raise InputError(f"tool names must be unique, not 'direct' and without '[': {names}")
        self.backend = backend
        self.tools = list(tools)
        # guided pathways (the zoom tree) search with the model in ``finish``; the others are called
        self.guided = [t for t in self.tools if getattr(t, "guided", False)]
        self.called = [t for t in self.tools if not getattr(t, "guided", False)]
        self.calibrators = dict(calibrators or {})
        self.config = config
        self.uncertainty = uncertainty or SetSizeScore(alpha=config.alpha)
        self.generate_calls = 0  # batched model calls made, for tests and benchmarks

    def answer(self, image, question: str, options: Sequence[str] | None = None) -> Answer:
        return self.answer_batch([Item(image, question, tuple(options) if options else None)])[0]

    def answer_batch(
        self, items: Sequence[Item], on_stage: Callable[[str], None] | None = None
    ) -> list[Answer]:
        """``on_stage``, if given, is called with a short description as each stage starts (the
        demo streams these; called from this thread, so it must be quick)."""
        batch = self.start(items, on_stage)
        self.use_tools(batch)
        return self.finish(batch)

    # The three steps of ``answer_batch``: ``start`` and ``finish`` use the model, ``use_tools`` only
    # the tools (a benchmark times them apart; agents overlap by running in processes of their own,
    # ``srice.builder.workers``).

    def start(self, items: Sequence[Item], on_stage: Callable[[str], None] | None = None) -> Batch:
        """Read the questions and ask the model for the direct answers and region proposals."""
        stage = on_stage or (lambda text: None)
        loaded: dict = {}  # questions on one image share one loaded copy (tools and crops dedupe by it)
        work = [self._prepare(item, loaded) for item in items]
        batch = Batch(work, [w for w in work if w.image is not None], stage)
        live = batch.live
        if not live:
            return batch
        cfg = self.config
        directs = [self._direct(w) for w in live]
        wants_targets = bool(self.tools)  # with no tool pathway, nothing would use the regions asked for
        together = cfg.early_exit is None and wants_targets
        stage("direct answer and region proposal" if together else "direct answer")
        proposals = [self._proposal(w) for w in live] if together else []
        completions = self._generate(directs + proposals)
        for w, request, completion in zip(live, directs, completions):
            w.pathways["direct"] = self._scored(
                w, PathwayTrace("direct", prompt=prompt_text(request)), completion
            )
        if together:
            for w, completion in zip(live, completions[len(live) :]):
                self._read_targets(w, completion)
        # a question whose direct request the model rejected has no baseline: it fails on its own
        for w in live:
            direct = w.pathways["direct"]
            if direct.error is not None:
                w.answer.error = direct.error
        live = [w for w in live if w.answer.error is None]
        if cfg.early_exit is not None:
            for w in live:
                w.answer.early_exit = w.pathways["direct"].uncertainty.score <= cfg.early_exit
            live = [w for w in live if not w.answer.early_exit]
        if not together and wants_targets and live:
            stage("region proposal")
            for w, completion in zip(live, self._generate([self._proposal(w) for w in live])):
                self._read_targets(w, completion)
        batch.live = live
        return batch

    def use_tools(self, batch: Batch) -> None:
        """Run every tool over the questions that go on to the tools (no model call)."""
        if batch.live and self.called:
            batch.stage(f"tools: {', '.join(t.name for t in self.called)}")
            self._run_tools(batch.live)

    def finish(self, batch: Batch) -> list[Answer]:
        """Search the guided pathways, ask the model through every tool pathway's view not answered
        yet, then keep the least uncertain answer."""
        live = batch.live
        for tool in self.guided if live else ():
            batch.stage(f"{tool.name}: searching {len(live)} image(s)")
            self._search(live, tool)
        if live and self.tools:
            pending = [
                (w, p)
                for w in live
                for p in w.pathways.values()
                if p.name != "direct" and p.error is None and p.uncertainty is None
            ]
            if pending:
                batch.stage(f"tool pathway answers ({len(pending)})")
            requests = [self._pathway(w, p) for w, p in pending]
            for (w, p), completion in zip(pending, self._generate(requests)):
                self._scored(w, p, completion)
        if any(w.image is not None for w in batch.work):
            batch.stage("selection")
        for w in batch.work:
            if w.image is not None and w.answer.error is None:
                self._select(w)
            elif w.pathways:
                w.answer.trace = list(w.pathways.values())
        return [w.answer for w in batch.work]

    # -- stages ---------------------------------------------------------------------------------

    def _prepare(self, item: Item, loaded: dict | None = None) -> _Work:
        """Read one question; ``loaded`` holds the batch's images by source (path, bytes or
        pixels), so the questions on one image get the same image object: each tool then runs once
        per image, not once per question (``srice.tools.base``), and one window is cropped once."""
        options = tuple(item.options) if item.options else None
        w = _Work(item, Answer(question=str(item.question), options=options, item_id=item.id))
        try:
            w.answer.question = check_question(item.question)
            w.answer.options = check_options(options)
            key = _source_key(item.image)
            if loaded is None or key is None or key not in loaded:
                image = load_image(item.image)
                if loaded is not None and key is not None:
                    loaded[key] = image
            w.image = loaded[key] if loaded is not None and key is not None else image
        except InputError as e:
            w.answer.error = str(e)
        return w

    def _direct(self, w: _Work):
        a, cfg = w.answer, self.config
        return direct_request(
            w.image, a.question, a.options, max_tokens=cfg.max_tokens, top_logprobs=cfg.top_logprobs,
            temperature=cfg.temperature,
        )  # fmt: skip

    def _proposal(self, w: _Work):
        return region_request(
            w.image, w.answer.question, w.answer.options, max_tokens=self.config.region_max_tokens
        )

    def _pathway(self, w: _Work, p: PathwayTrace):
        a, cfg = w.answer, self.config
        request = pathway_request(
            w.image, w.views[p.name], a.question, a.options, kind=cfg.view,
            max_tokens=cfg.max_tokens, top_logprobs=cfg.top_logprobs, texts=p.tool_text,
            temperature=cfg.temperature,
        )  # fmt: skip
        p.prompt = prompt_text(request)
        return request

    def _generate(self, requests: list) -> list[Completion]:
        if not requests:
            return []
        self.generate_calls += 1
        return self.backend.generate(requests)

    def _read_targets(self, w: _Work, completion: Completion) -> None:
        """The regions the model asked for; a rejected proposal leaves the whole image, said so."""
        _count(w.answer, completion)
        w.answer.region_reply = completion.text
        w.answer.region_error = completion.error
        w.answer.targets = tuple(parse_targets(completion.text))

    def _scored(self, w: _Work, p: PathwayTrace, completion: Completion, count: bool = True) -> PathwayTrace:
        """The pathway's answer and US. A multiple-choice answer is always one of the given letters:
        the one the reply reads as, else the most probable given option (``mapped``)."""
        if count:
            _count(w.answer, completion)
        if completion.error is not None:
            p.error, p.error_kind = f"model: {completion.error}", "model"
            return p
        options = w.answer.options
        p.reply = p.answer = completion.text.strip()
        p.tokens = completion.tokens
        p.model_seconds = completion.seconds
        p.uncertainty = self.uncertainty(completion, options)
        if options:
            p.answer, p.mapped = option_letter(p.reply, options, p.uncertainty.candidates[0].answer)
        return p

    def _search(self, live: list[_Work], tool) -> None:
        """The zoom tree over every live question at once (``srice.agent.zoomtree``); its final view
        becomes the pathway's. Scored by answering (``score="answer"``), the leaf's answer is the
        pathway's: the same request the answer stage would send."""
        tree, cfg = tool.config, self.config
        view = zoomtree.zoomed(cfg.crop_size, cfg.crop_max_pixels)

        def request(i: int, picture: Image.Image):
            a = live[i].answer
            if tree.score == "yesno":
                return zoom_request(live[i].image, picture, a.question, a.options, a.targets)
            return pathway_request(live[i].image, picture, a.question, a.options, max_tokens=cfg.max_tokens,
                                   top_logprobs=cfg.top_logprobs, temperature=cfg.temperature)  # fmt: skip

        def score(i: int, completion: Completion) -> float:
            if tree.score == "yesno":
                return zoomtree.yes_probability(completion)
            return self.uncertainty(completion, live[i].answer.options).candidates[0].probability

        searches = [zoomtree.start(w.image) for w in live]
        zoomtree.run(searches, tree, request, self._generate, score, view)
        for w, search in zip(live, searches):
            for node in search.nodes:
                if node.completion is not None:
                    _count(w.answer, node.completion)
            p = PathwayTrace(tool.name, targets=w.answer.targets, tool_seconds=search.seconds)
            w.pathways[p.name] = p
            final = search.choose() if search.error is None else None
            p.search = [n.to_json() for n in search.nodes]
            if final is None:
                p.error, p.error_kind = search.error, "model"
                continue
            p.regions = zoomtree.regions(search, w.image.size, chosen=False)
            p.calibrated = zoomtree.regions(search, w.image.size, chosen=True)
            p.view_box = final.box
            w.views[p.name] = view(w.image, final.box)
            if tree.score == "answer" and final.completion is not None:
                self._pathway(w, p)  # the prompt, for the trace
                self._scored(w, p, final.completion, count=False)

    def _run_tools(self, live: list[_Work]) -> None:
        """Each tool once over the whole batch, all tools at once, each in a daemon thread (a hung
        tool is abandoned there: it holds up neither the batch beyond its limit nor the process's
        exit). The limit is ``tool_timeout`` per image, times the batch; failures stay per pathway.
        A tool whose ``detector`` is another of the agent's tools (SAM on YOLO's boxes) waits for
        that tool and ``segment``s what it found, instead of running the detector a second time."""
        images = [w.image for w in live]
        targets = [list(w.answer.targets) for w in live]
        limit = self.config.tool_timeout * len(live)
        jobs, sources = {}, {tool.name: self._source(tool) for tool in self.called}
        for tool in sorted(self.called, key=lambda t: sources[t.name] is not None):  # sources first
            source = sources[tool.name]
            if source is None:
                jobs[tool.name] = in_daemon_thread(timed_batch, tool, images, targets)
            else:
                jobs[tool.name] = in_daemon_thread(timed_segment, tool, images, source, jobs[source.name])
        deadline = time.monotonic() + limit
        crops: dict = {}  # (image, window) -> Crop: a window shown by several pathways is cut once
        for tool in self.called:
            try:
                outputs, seconds = jobs[tool.name].result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                per_image = f"{self.config.tool_timeout:g} s per image x {len(live)}"
                outputs, seconds = [Timeout(f"timed out after {limit:g} s ({per_image})")] * len(live), limit
            for w, output in zip(live, outputs):
                for p in self._pathways(w, tool, output, seconds / len(live), crops):
                    w.pathways[p.name] = p

    def _source(self, tool) -> Tool | None:
        """The agent's own tool whose boxes ``tool`` segments, if it has one."""
        detector = getattr(tool, "detector", None)
        if detector is None or not callable(getattr(tool, "segment", None)):
            return None
        return next((t for t in self.tools if t is detector), None)

    def _pathways(
        self, w: _Work, tool, output, seconds: float, crops: dict | None = None
    ) -> list[PathwayTrace]:
        """Calibrate one tool's output and build its view(s). A tool with ``separate_views`` (the
        zoom grid) gives one pathway per region, named ``tool[i]``: the union of a grid is the whole
        image, while each cell alone is a real zoom. Others give one pathway showing their union and,
        with ``top_views`` k, one ``tool[i]`` for each of their k likeliest referents of the targets
        (i = rank; ``srice.agent.refer``: best score first, or by size where the question says "small");
        beside them the union view is dropped if it is no zoom (``union_max_share``).
        ``crops`` caches the crops made so far by (image, window): identical windows (a detector's
        best box and SAM's on it, questions on one image) are cut and resized once.
        """
        name = tool.name
        p = PathwayTrace(name, targets=w.answer.targets, tool_seconds=seconds)
        if isinstance(output, str):
            p.error, p.error_kind = str(output), "timeout" if isinstance(output, Timeout) else "tool"
            return [p]
        p.regions = output.to_json()
        try:
            calibrator = self.calibrators.get(name)
            regions = calibrator.apply(output) if calibrator is not None else output
        except SriceError as e:
            p.error, p.error_kind = f"{type(e).__name__}: {e}", "calibrator"
            return [p]
        separate = tool.separate_views
        if len(regions) < 2:
            singles = []
        elif separate:
            singles = list(range(len(regions)))
        else:
            phrases = referring_phrases(w.item.question, w.answer.targets)
            singles = [int(i) for i in view_order(regions, phrases)[: self.config.top_views]]
        views = [] if singles and (separate or self._no_zoom(w.image, regions)) else [(p, regions)]
        share = seconds / (len(views) + len(singles))
        p.tool_seconds = share
        views += [
            (
                PathwayTrace(f"{name}[{rank}]", w.answer.targets, p.regions, tool_seconds=share),
                regions.select([i]),
            )
            for rank, i in enumerate(singles)
        ]
        for trace, shown in views:
            trace.calibrated = shown.to_json()
            if tool.reads_text:
                trace.tool_text = tuple(t for t in shown.labels if t.strip())
            try:
                if self.config.view == "crop":
                    crop = self._crop(w.image, shown, {} if crops is None else crops)
                    w.views[trace.name], trace.view_box = crop.image, crop.box
                else:
                    w.views[trace.name] = draw_regions(w.image, shown)
            except SriceError as e:
                trace.error, trace.error_kind = f"{type(e).__name__}: {e}", "view"
        return [trace for trace, _ in views]

    def _crop(self, image: Image.Image, regions, crops: dict):
        """``crop_regions`` of the regions, or the crop already made of the same window."""
        cfg = self.config
        window, n = crop_window(image.size, regions.boxes, context=cfg.crop_context)
        key = (id(image), window, n > 0)
        if key not in crops:
            crops[key] = crop_regions(
                image,
                regions,
                context=cfg.crop_context,
                out_size=cfg.crop_size,
                max_pixels=cfg.crop_max_pixels,
            )
        return crops[key]

    def _no_zoom(self, image: Image.Image, regions) -> bool:
        if self.config.view != "crop":
            return False
        (x1, y1, x2, y2), _ = crop_window(image.size, regions.boxes, context=self.config.crop_context)
        return (x2 - x1) * (y2 - y1) > self.config.union_max_share * image.width * image.height

    def _select(self, w: _Work) -> None:
        """Lowest (US, tie-break) wins; the direct pathway is first and wins exact ties."""
        a = w.answer
        a.trace = list(w.pathways.values())
        best = None
        for p in a.trace:
            if p.ok and (best is None or p.uncertainty.key < best.uncertainty.key):
                best = p
        if best is None:
            a.error = a.error or "no pathway produced an answer"
            return
        a.answer, a.uncertainty, a.pathway = best.answer, best.uncertainty.score, best.name


def _source_key(source) -> tuple | None:
    """What identifies an item's image within a batch: its path, its bytes or its pixels (the agent
    server decodes each request's image apart: equal pictures are different objects)."""
    if isinstance(source, Image.Image):
        digest = hashlib.blake2b(source.tobytes(), digest_size=16).digest()
        return ("pixels", source.mode, source.size, digest)
    if isinstance(source, bytes | bytearray):
        return ("bytes", bytes(source))
    if isinstance(source, str | Path):
        return ("path", str(source))
    return None


def _count(answer: Answer, completion: Completion) -> None:
    """One more model call for ``answer``, and its tokens (an API's ``usage``)."""
    answer.mllm_calls += 1
    answer.prompt_tokens += completion.prompt_tokens
    answer.completion_tokens += completion.completion_tokens
