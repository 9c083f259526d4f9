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
from srice.devices import check_device
from srice.errors import InputError
from srice.serving.config import ServingConfig


@dataclass(frozen=True)
class AgentSpec:
    variant: str = "toy"  # a name in the variant registry
    model: str | None = None  # or a model folder or hub id, served as a variant made on the fly
    serving: ServingConfig = field(default_factory=ServingConfig)
    tools: tuple[str, ...] = ("zoom",)  # tool pathways by name; () answers directly only
    tool_weights: Mapping[str, str] = field(default_factory=dict)  # a tool's model file (else embedded)
    trust_weights: bool = False  # load named YOLO weights without the safe loader
    calib: str | None = None  # calibration folder (default: the variant's own)
    early_exit: bool = False  # skip the tools when the direct answer is sure enough (needs a threshold)
    config: AgentConfig = field(default_factory=AgentConfig)
    device: str = "auto"  # where the tools run (the model's is serving.device): auto, cpu, cuda, cuda:N

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise InputError("an agent spec needs a variant name")
        tools = (self.tools,) if isinstance(self.tools, str) else tuple(self.tools)
        if len(set(tools)) != len(tools):
            raise InputError(f"a tool is named twice: {list(tools)}")
        object.__setattr__(self, "tools", tools)
        object.__setattr__(self, "tool_weights", dict(self.tool_weights))
        check_device(self.device)

    def variant_entry(self):
        """The ``Variant`` to serve: ``model`` made into one for this machine (``--model``), else the
        registry's ``variant``. A hub id needs ``serving.allow_hub``: only then may srice download."""
        from srice.serving.launcher import has_gpu
        from srice.serving.variants import get_variant, variant_for_model

        if self.model is None:
            return get_variant(self.variant)
        variant = variant_for_model(self.model, gpu=self.serving.backend == "vllm" and has_gpu())
        if variant.is_hub and not self.serving.allow_hub:
            raise InputError(f"--model {self.model} is a hub model: pass --allow-hub to download it")
        return variant
