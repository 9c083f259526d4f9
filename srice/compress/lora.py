"""LoRA on a pruned model's Linears, merged at the end: the usual repair, kept here as SEFT's
baseline (``srice finetune --method lora``). Merging adds a dense low-rank product to each weight,
so the result loses the pruned zeros; the manifest reports how many remain."""

from __future__ import annotations

import math

import torch


class LoRALinear(torch.nn.Module):
    """``base(x) + scale * x A^T B^T`` with ``base`` frozen; B starts at zero, so training starts
    from the pruned model's outputs."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        device = base.weight.device
        self.a = torch.nn.Parameter(torch.empty(rank, base.in_features, device=device))
        torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=device))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    def merged(self) -> torch.nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.b @ self.a) * self.scale
        return self.base


def wrap(model: torch.nn.Module, names: list[str], rank: int, alpha: float) -> list[torch.nn.Parameter]:
    """Put a LoRA adapter on each named Linear of ``model``; returns the adapters' parameters."""
    params = []
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        adapter = LoRALinear(getattr(parent, child), rank, alpha)
        setattr(parent, child, adapter)
        params += [adapter.a, adapter.b]
    return params


def merge(model: torch.nn.Module, names: list[str]) -> None:
    """Fold every adapter back into its Linear (in place)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).merged())
