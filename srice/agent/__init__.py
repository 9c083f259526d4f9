"""The SRICE method: the agent's stages (``loop``), its prompts, target parsing and referring, the
visual prompts, the uncertainty score and the trace it returns.

``Agent``, ``AgentConfig``, ``Item`` and ``Answer`` are imported on first use, so importing one
small module of this package (``srice.agent.prompts``, say) does not load the rest.
"""

from srice.lazy import lazy_names

_LAZY = {"Agent": "loop", "AgentConfig": "config", "Item": "loop", "Answer": "trace"}
__all__ = list(_LAZY)


__getattr__ = lazy_names(__name__, _LAZY)
