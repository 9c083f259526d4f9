"""What the demo page shows for one answer, computed from its trace: each tool pathway's calibrated
regions drawn on the image next to the exact view the model saw, the pathway table, the US and its
prediction set, the most likely answers. Pure functions of the answer: no gradio here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from srice.agent import AgentConfig
from srice.agent.prompts import LETTERS
from srice.agent.trace import Answer, PathwayTrace
from srice.agent.visual import crop_regions, draw_regions
from srice.errors import InputError
from srice.tools.regions import Regions

DISPLAY_SIDE = 768  # longest side of the pictures the page shows (the model's inputs are unchanged)


@dataclass(frozen=True)
class PathwayView:
    """One tool pathway as the page shows it: its regions on the image and the view the model saw."""

    trace: PathwayTrace
    regions_image: Image.Image  # the calibrated regions drawn on the full image
    view_image: Image.Image  # the picture the model was shown after the full image


def regions_from_json(data: dict) -> Regions:
    """``Regions`` back from a trace's ``Regions.to_json()`` (boxes, scores, labels; masks are not in
    traces, so drawn regions show boxes only)."""
    boxes = np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4)
    return Regions(boxes, data["scores"], tuple(data["labels"]), tuple(data["image_size"]), data["tool"])


def model_view(image: Image.Image, trace: PathwayTrace, config: AgentConfig) -> Image.Image:
    """The picture the agent showed the model for this tool pathway, rebuilt from the trace. Crop view:
    exactly that picture, the crop of ``trace.view_box`` through the same ``crop_regions`` (a one-box
    window with no context and no minimum side is that box). Boxes view: the calibrated regions drawn
    on the image, as the agent drew them except for masks (traces keep only their pixel counts)."""
    if config.view == "crop":
        if trace.view_box is None:
            raise InputError(f"pathway {trace.name} has no view box")
        window = Regions(np.asarray([trace.view_box], dtype=np.float64), [1.0], ("view",), image.size)
        crop = crop_regions(
            image,
            window,
            context=0.0,
            min_side=1,
            out_size=config.crop_size,
            max_pixels=config.crop_max_pixels,
        )
        assert crop.box == tuple(trace.view_box), (crop.box, trace.view_box)
        return crop.image
    return draw_regions(image, regions_from_json(trace.calibrated))


def pathway_views(image: Image.Image, answer: Answer, config: AgentConfig) -> list[PathwayView]:
    """Every tool pathway that got as far as a view, in trace order. The direct pathway has no regions
    and no view (the model saw the uploaded image alone); a failed pathway has nothing to show (the
    table gives its error)."""
    out = []
    for p in answer.trace:
        if p.name == "direct" or p.error is not None or p.calibrated is None:
            continue
        if p.view_box is not None or config.view == "boxes":
            drawn = draw_regions(image, regions_from_json(p.calibrated))
            out.append(PathwayView(p, drawn, model_view(image, p, config)))
    return out


def _display(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    if max(image.size) <= side:
        return image
    shown = image.copy()
    shown.thumbnail((side, side), Image.Resampling.LANCZOS)
    return shown


def us_text(trace: PathwayTrace) -> str:
    """``"2 (0.412)"``: the set size, then the tie-break; both lower = more certain."""
    u = trace.uncertainty
    if u is None:
        return "-"
    score = "inf" if math.isinf(u.score) else f"{u.score:g}"
    return f"{score} ({u.tiebreak:.3f})"


def set_text(trace: PathwayTrace, limit: int = 6) -> str:
    """The prediction set, each member quoted (open answers' members are tokens, some blank)."""
    if trace.uncertainty is None:
        return ""
    members = trace.uncertainty.prediction_set
    shown = ", ".join(repr(m) for m in members[:limit])
    return "{" + shown + (f", ... +{len(members) - limit}" if len(members) > limit else "") + "}"


def gallery_items(views: Sequence[PathwayView], chosen: str) -> list[tuple[Image.Image, str]]:
    """Two pictures per tool pathway, side by side: its calibrated regions, and what the model saw."""
    items = []
    for v in views:
        p = v.trace
        star = "★ " if p.name == chosen else ""
        said = f"answer {p.answer!r}, US {us_text(p)}"
        n = len(p.calibrated["boxes"])
        plural = "s" * (n != 1)
        drawn = f"the zoom path, {n} level{plural}" if p.search else f"{n} calibrated region{plural}"
        items.append((_display(v.regions_image), f"{star}{p.name}: {drawn}"))
        items.append((_display(v.view_image), f"{star}{p.name}: what the model saw; {said}"))
    return items


TABLE_HEADERS = [
    "",
    "pathway",
    "answer",
    "US (tie-break)",
    "prediction set",
    "regions",
    "text read",
    "seconds",
    "error",
]


def pathway_answer(p: PathwayTrace, options) -> str:
    """A pathway's answer as a person reads it: "B (green)", and the reply when it named no option."""
    if not options or not p.answer:
        return p.answer
    text = f"{p.answer} ({options[LETTERS.index(p.answer)]})"
    return f"{text}; reply {p.reply!r} named no option" if p.mapped else text


def pathway_rows(answer: Answer) -> list[list]:
    """One row per pathway; ★ marks the selected one; regions read raw -> calibrated."""
    rows = []
    for p in answer.trace:
        u = p.uncertainty
        raw = "" if p.regions is None else str(len(p.regions["boxes"]))
        calibrated = "" if p.calibrated is None else str(len(p.calibrated["boxes"]))
        rows.append([
            "★" if p.name == answer.pathway else "",
            p.name,
            pathway_answer(p, answer.options),
            "" if u is None else us_text(p),
            set_text(p),
            f"{raw} -> {calibrated}" if raw else "",
            "; ".join(p.tool_text),
            round(p.tool_seconds + p.model_seconds, 3),
            p.error or "",
        ])  # fmt: skip
    return rows


def candidates_text(trace: PathwayTrace, options: Sequence[str] | None, limit: int = 4) -> str:
    """The top candidates and their probabilities; option letters are spelled out."""
    out = []
    for c in trace.uncertainty.candidates[:limit]:
        name = repr(c.answer)
        if options and len(c.answer) == 1 and c.answer in LETTERS[: len(options)]:
            name = f"{c.answer} ({options[LETTERS.index(c.answer)]})"
        out.append(f"{name} {c.probability:.2f}")
    return ", ".join(out) or "-"


def summary_markdown(answer: Answer) -> str:
    chosen = answer.pathway_trace(answer.pathway)
    u = chosen.uncertainty
    lines = [
        f"**Uncertainty (US): {us_text(chosen)}**: prediction set {set_text(chosen)} "
        f"({u.method}); smaller is more certain, tie-break in brackets",
        f"**Chosen pathway: `{answer.pathway}`** of {len(answer.trace)}; {answer.mllm_calls} model calls",
        f"**Most likely answers:** {candidates_text(chosen, answer.options)}",
        f"**Regions the model asked for:** {', '.join(answer.targets) or 'none (whole image)'}",
    ]
    if answer.early_exit:
        lines.append("The direct answer was certain enough: tools were skipped (early exit).")
    return "\n\n".join(lines)
