"""Which agent to build (``AgentSpec``): the model variant and how to reach it, the tools and their
weights, the calibration folder and the agent's settings.

Why a spec: every front end (``srice ask``, ``eval``, ``demo``, ``serve --agent``, ``mcp``) and every
Ray worker builds the same agent from the same choices. The command line makes one spec from its
arguments; the library (``AgentPool``, ``build_agent``) builds from it. It holds only plain values,
so it crosses process boundaries (a Ray worker receives the spec, never the parsed arguments), and it
lives in a light module, so ``--help`` can show its defaults without importing the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from srice.agent.config import AgentConfig
from srice.errors import InputError
from srice.serving.config import ServingConfig


@dataclass(frozen=True)
class AgentSpec:
    variant: str = "toy"  # a name in the variant registry
    serving: ServingConfig = field(default_factory=ServingConfig)
    tools: tuple[str, ...] = ("zoom",)  # tool pathways by name; () answers directly only
    tool_weights: Mapping[str, str] = field(default_factory=dict)  # a tool's model file (else embedded)
    trust_weights: bool = False  # load named YOLO weights without the safe loader
    calib: str | None = None  # calibration folder (default: the variant's own)
    early_exit: bool = False  # skip the tools when the direct answer is sure enough (needs a threshold)
    config: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise InputError("an agent spec needs a variant name")
        tools = (self.tools,) if isinstance(self.tools, str) else tuple(self.tools)
        if len(set(tools)) != len(tools):
            raise InputError(f"a tool is named twice: {list(tools)}")
        object.__setattr__(self, "tools", tools)
        object.__setattr__(self, "tool_weights", dict(self.tool_weights))
