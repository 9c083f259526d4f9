"""How an agent is put together, for every front end and for library users: ``AgentSpec`` (which
agent: variant, tools, weights, calibration, settings), ``build_agent`` (the one builder),
``AgentPool`` (agents per setting over shared tools and model servers) and the tools' and
calibrators' lookup (``toolbox``). Names are imported on first use: the spec stays light."""

from srice.lazy import lazy_names

_LAZY = {
    "AgentSpec": "spec",
    "AgentPool": "pool",
    **dict.fromkeys(("build_agent", "calibration_folder", "early_exit_threshold"), "agents"),
    **dict.fromkeys(("build_tools", "embedded_options", "load_calibrators", "tool_options"), "toolbox"),
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_names(__name__, _LAZY)
