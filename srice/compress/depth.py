"""Depth pruning: remove whole decoder layers whose output barely differs from their input.

Block influence (ShortGPT, Men et al., 2024): BI_l = 1 - mean over tokens of cos(h_in, h_out). A layer
with low BI mostly passes the residual stream through, so dropping it costs little, and unlike
unstructured sparsity it makes serving faster on any kernel. The result must be a standard
checkpoint: layers are renumbered (attention ``layer_idx`` drives the KV cache) and the config's
``num_hidden_layers``, ``layer_types`` and ``max_window_layers`` are sliced to match, or
transformers and vLLM reject it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from srice.errors import InputError


def cosine_distance_sum(h_in: torch.Tensor, h_out: torch.Tensor) -> tuple[float, int]:
    """Sum over tokens of 1 - cos(h_in, h_out), and the token count (for accumulating over batches)."""
    a = h_in.detach().float().reshape(-1, h_in.shape[-1])
    b = h_out.detach().float().reshape(-1, h_out.shape[-1])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8)
    return float((1 - cos).sum()), a.shape[0]


def layers_to_drop(influence: Sequence[float], n: int) -> list[int]:
    """Indices of the ``n`` least influential layers (ties: the later layer goes first), sorted."""
    if not 0 <= n < len(influence):
        raise InputError(f"can remove 0..{len(influence) - 1} of {len(influence)} layers, not {n}")
    order = sorted(range(len(influence)), key=lambda i: (influence[i], -i))
    return sorted(order[:n])


def count_for(sparsity: float, layers: int) -> int:
    """Layers to remove for a depth 'sparsity' (share of layers): round(S * L), at least 1 when S > 0,
    at most L - 1."""
    n = round(sparsity * layers)
    if sparsity > 0:
        n = max(n, 1)
    return min(n, layers - 1)


def fix_config(text_config, keep: Sequence[int]) -> dict:
    """Slice the per-layer config fields to the kept layers; returns what changed (for the manifest)."""
    old = int(text_config.num_hidden_layers)
    changes = {"num_hidden_layers": [old, len(keep)]}
    text_config.num_hidden_layers = len(keep)
    types = getattr(text_config, "layer_types", None)
    if types is not None:
        text_config.layer_types = [types[i] for i in keep]
        changes["layer_types"] = [list(types), list(text_config.layer_types)]
    window = getattr(text_config, "max_window_layers", None)
    if window is not None:
        # layers below max_window_layers use full attention; keep each kept layer's attention kind
        text_config.max_window_layers = sum(1 for i in keep if i < window)
        changes["max_window_layers"] = [window, text_config.max_window_layers]
    return changes


def drop_layers(layers: torch.nn.ModuleList, drop: Sequence[int]) -> list[int]:
    """Remove ``drop`` from ``layers`` in place and renumber ``layer_idx`` attributes; returns the kept
    original indices."""
    drop = set(drop)
    keep = [i for i in range(len(layers)) if i not in drop]
    kept = [layers[i] for i in keep]
    for new, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
    while len(layers):
        del layers[len(layers) - 1]
    for layer in kept:
        layers.append(layer)
    return keep
