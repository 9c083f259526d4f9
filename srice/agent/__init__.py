"""The SRICE method: the agent's stages (``loop``), its prompts, target parsing and referring, the
visual prompts, the uncertainty score and the trace it returns.

``Agent``, ``AgentConfig``, ``Item`` and ``Answer`` are imported on first use, so importing one
small module of this package (``srice.agent.prompts``, say) does not load the rest.
"""

_LAZY = {"Agent": "loop", "AgentConfig": "loop", "Item": "loop", "Answer": "trace"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
