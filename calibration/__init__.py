"""Conformal calibrators for tool outputs and uncertainty thresholds (arrives with the tools issue)."""
