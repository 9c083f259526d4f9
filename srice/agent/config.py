"""The agent's settings (``AgentConfig``): a light module, so the command line can show their
defaults in ``--help`` without importing the agent."""

from __future__ import annotations

from dataclasses import dataclass

from srice.errors import InputError


@dataclass(frozen=True)
class AgentConfig:
    alpha: float = 0.1
    max_tokens: int = 16
    temperature: float = 0.0  # of the answers (direct and pathways); region proposals are greedy
    top_logprobs: int = 20  # enough alternatives to see every option letter
    region_max_tokens: int = 48
    view: str = "crop"  # "crop": zoomed union of the regions; "boxes": regions drawn on the image
    crop_size: int = 448  # the crop's longer side, in pixels
    # The served model's per-image pixel budget: no crop is made larger (a larger one is only shrunk
    # again by the model's processor, after costing a resize, a PNG encoding and a transfer). None:
    # ``build_agent`` sets the model processor's ``max_pixels`` where it has one (the toy's: 38 416,
    # a 196 px square; ``srice.builder.agents.view_pixels``), else no cap.
    crop_max_pixels: int | None = None
    crop_context: float = 0.25
    # Seconds a tool may take per image: a batch of n gets n times this. Measured on 2 cores, the toy
    # YOLO takes ~1.4 s per image idle and ~7 s busy; a hung tool costs its batch this long.
    tool_timeout: float = 60.0
    early_exit: float | None = None  # skip tools when the direct US score is <= this (off: None)
    # Also show each of a detector's k likeliest calibrated regions as its own pathway (0: union only).
    # Conformal recall keeps every plausible box, so the union of a weak detector's boxes can cover
    # most of the image: no zoom. Its best box alone is a real zoom, and US selection decides. On
    # the toy bundle (400 questions, synth seed 7) k=1 beat the union alone by 7.5 points; k=2
    # scored 1.5 points below k=1.
    top_views: int = 1
    # Beside those single-region views, a union view whose crop covers more than this share of the
    # image is dropped: it is no zoom, only a second look at the full image, which adds a model call
    # and a chance for a confident wrong answer. On the toy bundle with top_views 1 (recomputed from
    # top_views 2 records): +2.0 points on the split that chose 0.5 (synth seed 11), +1.7 on seed 7.
    union_max_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.view not in ("crop", "boxes"):
            raise InputError(f"view must be 'crop' or 'boxes', got {self.view!r}")
        for name in ("max_tokens", "region_max_tokens", "crop_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("top_logprobs", "top_views", "crop_context"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.temperature <= 2:
            raise InputError(f"temperature must be in [0, 2], got {self.temperature}")
        if not self.tool_timeout > 0:
            raise InputError(f"tool_timeout must be > 0 seconds, got {self.tool_timeout}")
        if self.crop_max_pixels is not None and self.crop_max_pixels < 1:
            raise InputError(f"crop_max_pixels must be >= 1 or None, got {self.crop_max_pixels}")
        if not self.union_max_share > 0:
            raise InputError(f"union_max_share must be > 0, got {self.union_max_share}")
