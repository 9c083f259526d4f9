"""Agents for a front end that answers with more than one setting (``AgentPool``).

The agent server lets a request pick its tools, top views, answer length and early exit; the demo
lets the user pick the variant and the tools; the MCP server runs a tool alone or the whole agent.
Each of them needs many agents that share what is expensive: the tools (whose models load once) and
the model backend of each variant (its ``vllm serve`` started once, on first use). The pool builds
every agent through ``build_agent`` and keeps one per distinct setting. It is a context manager:
the servers it started stop when it closes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace

from srice.devices import resolve_device
from srice.errors import InputError
from srice.serving.backends import open_backend
from srice.serving.types import Backend
from srice.serving.variants import Variant, get_variant

from .agents import build_agent, calibration_folder
from .spec import AgentSpec
from .toolbox import build_tool, check_tools, load_calibrators


class AgentPool:
    """Agents built from ``spec``, one per distinct (variant, tools, early exit, settings).

    ``offered``: the tools a caller may ask for (default: the spec's), each built once on first use
    and shared (``sam`` takes the shared ``yolo`` tool's boxes whichever subset an agent uses).
    ``log`` hears what ``build_agent`` has to say (a missing calibration), each distinct line once.
    """

    def __init__(
        self,
        spec: AgentSpec,
        *,
        offered: Sequence[str] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.spec = spec
        self.offered = tuple(spec.tools if offered is None else offered)
        missing = [t for t in spec.tools if t not in self.offered]
        if missing:
            raise InputError(f"the spec's tools {missing} are not among those offered {list(self.offered)}")
        check_tools(self.offered, spec.tool_weights)
        self._say = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._said: set[str] = set()
        self._stack = ExitStack()
        self._lock = threading.RLock()
        self._backends: dict[str, tuple[Backend, Variant]] = {}
        self._agents: dict[tuple, object] = {}
        self._tools: dict = {}
        self._device: str | None = None
        self._variant: Variant | None = None

    @property
    def device(self) -> str:
        """Where this pool's tools run: the spec's device, resolved in this process (a Ray worker's
        ``auto`` is its own GPU, or its CPU)."""
        if self._device is None:
            self._device = resolve_device(self.spec.device)
        return self._device

    def __enter__(self) -> AgentPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the model servers this pool started."""
        self._stack.close()

    def _log(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self._say(text)

    def tool(self, name: str):
        """An offered tool, built on first use and shared by every agent of the pool (``sam`` takes
        the pool's ``yolo`` boxes where both are offered)."""
        with self._lock:
            if name not in self._tools:
                if name not in self.offered:
                    raise InputError(f"tool {name!r} is not loaded here (loaded: {list(self.offered)})")
                if name == "sam" and "yolo" in self.offered:
                    self.tool("yolo")
                spec = self.spec
                self._tools[name] = build_tool(
                    name, spec.tool_weights, self._tools, trust_weights=spec.trust_weights, device=self.device
                )
            return self._tools[name]

    @property
    def variant(self) -> Variant:
        """The spec's variant (``--variant`` or ``--model``), looked up once."""
        with self._lock:
            if self._variant is None:
                self._variant = self.spec.variant_entry()
            return self._variant

    def _chosen(self, variant: str | None) -> Variant:
        return self.variant if variant in (None, self.variant.name) else get_variant(variant)

    def calibrators(self, variant: str | None = None) -> dict:
        """The offered tools' calibrators from the variant's calibration folder (or the spec's)."""
        return load_calibrators(calibration_folder(self._chosen(variant), self.spec.calib), self.offered)

    def backend(self, variant: str | None = None) -> tuple[Backend, Variant]:
        """The model backend of ``variant`` (a registry name; default: the spec's), opened once."""
        chosen = self._chosen(variant)
        with self._lock:
            if chosen.name not in self._backends:
                self._backends[chosen.name] = open_backend(
                    chosen, self.spec.serving, self._stack, log=self._say
                )
            return self._backends[chosen.name]

    def agent(
        self,
        *,
        variant: str | None = None,
        tools: Sequence[str] | None = None,
        early_exit: bool | None = None,
        **settings,
    ):
        """The agent for these choices (default: the spec's): ``tools`` a subset of the offered ones,
        ``settings`` fields of ``AgentConfig`` to change (``top_views=2``, ``max_tokens=8``)."""
        names = tuple(self.spec.tools if tools is None else tools)
        unknown = [t for t in names if t not in self.offered]
        if unknown:
            raise InputError(f"tools {unknown} are not loaded here (loaded: {list(self.offered)})")
        exit_early = self.spec.early_exit if early_exit is None else early_exit
        config = replace(self.spec.config, **settings)
        key = (self._chosen(variant).name, names, exit_early, config)
        with self._lock:
            if key not in self._agents:
                backend, chosen = self.backend(variant)
                self._agents[key] = build_agent(
                    backend, chosen, [self.tool(t) for t in names], calib=self.spec.calib,
                    early_exit=exit_early, config=config, log=self._log,
                )  # fmt: skip
            return self._agents[key]
