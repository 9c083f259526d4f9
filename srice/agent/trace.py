"""What the agent returns: the answer, and a trace of every pathway it tried, JSON-ready."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from srice.agent.prompts import LETTERS
from srice.agent.uncertainty import Uncertainty
from srice.serving.types import TokenLogprob


def tool_of(pathway: str) -> str:
    """The tool behind a pathway name: ``yolo`` for the union view ``yolo`` and for its single-region
    views ``yolo[0]``, ``yolo[1]``, ... (names as traces and records give them)."""
    return pathway.split("[", 1)[0]


@dataclass
class PathwayTrace:
    """One pathway: the direct answer, or one tool's calibrated regions shown to the model."""

    name: str  # "direct" or the tool's name
    targets: tuple[str, ...] = ()
    regions: dict | None = None  # Regions.to_json() of the raw tool output
    calibrated: dict | None = None  # ... after the tool's calibrator
    view_box: tuple[int, int, int, int] | None = None  # the zoomed window, original pixels
    search: list[dict] | None = None  # the zoom tree's nodes: box, depth, parent, score, chosen
    tool_text: tuple[str, ...] = ()  # text the tool read in the shown regions (OCR), given to the model
    prompt: str = ""
    answer: str = ""  # for multiple choice always one of the option letters
    reply: str = ""  # the model's text, as it came
    mapped: bool = False  # multiple choice: the reply named no given option; answer = the most probable
    uncertainty: Uncertainty | None = None
    tool_seconds: float = 0.0
    model_seconds: float = 0.0
    error: str | None = None
    error_kind: str | None = None  # "timeout", "tool", "calibrator", "view", "model" (what failed)
    tokens: tuple[TokenLogprob, ...] = field(default=(), repr=False)  # the answer's logprobs

    @property
    def ok(self) -> bool:
        return self.error is None and self.uncertainty is not None

    @property
    def tool(self) -> str:
        """The tool behind this pathway (``direct`` for the direct answer)."""
        return tool_of(self.name)

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("tokens")  # only the selected pathway's tokens are reported, at the top level
        out["uncertainty"] = _uncertainty_json(self.uncertainty)
        out["seconds"] = round(self.tool_seconds + self.model_seconds, 4)
        return out


@dataclass
class Answer:
    """The selected answer; ``trace`` holds every pathway, selected or not, failed or not."""

    question: str
    options: tuple[str, ...] | None
    answer: str = ""
    uncertainty: float = math.inf
    pathway: str = ""
    region_reply: str = ""
    region_error: str | None = None  # the model rejected the region proposal: tools saw the whole image
    targets: tuple[str, ...] = ()
    trace: list[PathwayTrace] = field(default_factory=list)
    mllm_calls: int = 0
    prompt_tokens: int = 0  # summed over every model call made for this answer
    completion_tokens: int = 0
    early_exit: bool = False
    error: str | None = None  # set when the question could not be answered at all (e.g. bad image)
    item_id: str | None = None

    def pathway_trace(self, name: str) -> PathwayTrace | None:
        return next((p for p in self.trace if p.name == name), None)

    @property
    def answer_text(self) -> str:
        """The answer in words: the chosen option's text for multiple choice (``answer`` is its letter)."""
        if self.options and self.answer in LETTERS[: len(self.options)]:
            return self.options[LETTERS.index(self.answer)]
        return self.answer

    @property
    def shown(self) -> str:
        """What a person reads: ``"C (blue)"`` for multiple choice, else the answer."""
        return f"{self.answer} ({self.answer_text})" if self.options and self.answer else self.answer

    def to_json(self) -> dict:
        return {
            "id": self.item_id,
            "question": self.question,
            "options": list(self.options) if self.options else None,
            "answer": self.answer_text,
            "answer_letter": self.answer if self.options else None,
            "uncertainty": None if math.isinf(self.uncertainty) else self.uncertainty,
            "pathway": self.pathway,
            "region_reply": self.region_reply,
            "region_error": self.region_error,
            "targets": list(self.targets),
            "mllm_calls": self.mllm_calls,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "early_exit": self.early_exit,
            "error": self.error,
            "tokens": tokens_json(chosen.tokens) if (chosen := self.pathway_trace(self.pathway)) else [],
            "trace": [p.to_json() for p in self.trace],
        }


def tokens_json(tokens: tuple[TokenLogprob, ...]) -> list[dict]:
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "top_logprobs": [{"token": c.token, "logprob": c.logprob} for c in t.top_logprobs],
        }
        for t in tokens
    ]


def _uncertainty_json(u: Uncertainty | None) -> dict | None:
    if u is None:
        return None
    return {
        "score": None if math.isinf(u.score) else u.score,
        "tiebreak": u.tiebreak,
        "prediction_set": list(u.prediction_set),
        "candidates": [
            {"answer": c.answer, "probability": round(c.probability, 6)} for c in u.candidates[:10]
        ],
        "method": u.method,
    }
