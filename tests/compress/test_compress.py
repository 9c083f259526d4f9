"""Compression's pure functions on hand-checked tensors: scores, masks, OWL, SparseGPT, depth, capture."""

import pytest
import torch

from srice.compress import depth, masks, owl_allocation, scores, sparsegpt
from srice.errors import InputError

W = torch.tensor([[1.0, -4.0, 2.0, 0.5], [-3.0, 1.0, 0.25, 2.0]])
NORM = torch.tensor([1.0, 0.1, 2.0, 10.0])


def test_magnitude_and_wanda_scores_match_the_formulas():
    assert torch.equal(scores.magnitude(W), W.abs())
    # |W_ij| * ||X_j||: row 0 -> [1, 0.4, 4, 5]; row 1 -> [3, 0.1, 0.5, 20]
    expected = torch.tensor([[1.0, 0.4, 4.0, 5.0], [3.0, 0.1, 0.5, 20.0]])
    assert torch.allclose(scores.wanda(W, NORM), expected)
    with pytest.raises(ValueError, match="one value per input column"):
        scores.wanda(W, NORM[:3])


def test_masks_on_hand_checked_tensors():
    # magnitude at 50%: row 0 drops 0.5 and 1; row 1 drops 0.25 and 1
    keep = masks.row_mask(scores.magnitude(W), 0.5)
    assert keep.tolist() == [[False, True, True, False], [True, False, False, True]]
    # Wanda at 50% keeps a different set: the -4 weight sits on a quiet input and goes
    keep = masks.row_mask(scores.wanda(W, NORM), 0.5)
    assert keep.tolist() == [[False, False, True, True], [True, False, False, True]]
    pruned = masks.apply_mask(W, keep)
    assert pruned.tolist() == [[0.0, 0.0, 2.0, 0.5], [-3.0, 0.0, 0.0, 2.0]]
    assert pruned.dtype == W.dtype and masks.sparsity_of(pruned) == 0.5
    # 2:4 keeps the two largest of each group of four
    assert masks.nm_mask(scores.wanda(W, NORM), 2, 4).tolist() == keep.tolist()
    assert masks.nm_mask(scores.magnitude(W), 1, 4).tolist() == [
        [False, True, False, False],
        [True, False, False, False],
    ]


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.7, 0.93])
def test_per_row_sparsity_is_exact(sparsity):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 40, generator=g)
    keep = masks.row_mask(scores.wanda(w, torch.rand(40, generator=g)), sparsity)
    pruned_per_row = (~keep).sum(1)
    assert pruned_per_row.tolist() == [int(40 * sparsity)] * 16
    # the pruned entries are exactly each row's lowest scores
    s = scores.wanda(w, torch.ones(40))
    keep = masks.row_mask(s, sparsity)
    if 0 < sparsity:
        assert (
            s[~keep].reshape(16, -1).max(1).values <= s.masked_fill(~keep, float("inf")).min(1).values
        ).all()


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 4)])
def test_nm_groups_are_exact(n, m):
    w = torch.randn(12, 32, generator=torch.Generator().manual_seed(1))
    keep = masks.nm_mask(w.abs(), n, m)
    groups = keep.reshape(12, 32 // m, m)
    assert (groups.sum(-1) == n).all()
    # within every group the kept weights are the largest
    s = w.abs().reshape(12, 32 // m, m)
    kept_min = s.masked_fill(~groups, float("inf")).min(-1).values
    dropped_max = s.masked_fill(groups, float("-inf")).max(-1).values
    assert (kept_min >= dropped_max).all()


def test_bad_sparsity_and_nm_are_input_errors():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(InputError, match=r"sparsity must be in \[0, 1\)"):
            masks.row_mask(W, bad)
    for bad in ("4:4", "0:4", "3:2", "2-4", "a:b"):
        with pytest.raises(InputError):
            masks.parse_nm(bad)
    with pytest.raises(InputError, match="multiple of M"):
        masks.nm_mask(torch.ones(2, 6), 2, 4)
    assert masks.parse_nm("2:4") == (2, 4) and masks.parse_nm(None) is None


def test_outlier_ratio_counts_scores_above_m_times_the_mean():
    # mean of [1]*9 + [91] is 10; with M=5 only 91 exceeds 50
    assert owl_allocation.outlier_ratio([torch.ones(9), torch.tensor([91.0])], m=5) == pytest.approx(0.1)
    assert owl_allocation.outlier_ratio([torch.ones(3, 3)], m=5) == 0.0


def test_owl_allocation_equals_the_reference_code():
    """Hand-computed with the reference rule (luuyin/OWL): ratios [1, 2, 4] % scaled to [0, 2*0.08]
    are [0, 0.0533, 0.16], mean 0.0711; sparsity = 0.5 - (scaled - mean)."""
    out = owl_allocation.allocate([0.01, 0.02, 0.04], 0.5, 0.08)
    assert out == pytest.approx([0.571111, 0.517778, 0.411111], abs=1e-6)
    # one outlier-heavy layer among plain ones sits 2*lambda*(5/6) from S: no band of +-lambda
    heavy = owl_allocation.allocate([0.0, 0.0, 0.0, 0.0, 0.0, 0.3], 0.5, 0.08)
    assert heavy == pytest.approx([0.5 + 0.16 / 6] * 5 + [0.5 - 0.16 * 5 / 6], abs=1e-9)
    # pushed to <= 0, a layer gets the reference's 0.01
    assert owl_allocation.allocate([0.0, 0.0, 0.3], 0.05, 0.08)[2] == 0.01


def test_owl_clamped_variant_keeps_every_layer_within_lambda():
    out = owl_allocation.allocate([0.01, 0.02, 0.04], 0.5, 0.08, clamp=True)
    assert out == pytest.approx([0.564, 0.516, 0.42], abs=1e-6)  # deviations x 0.08 / 0.0889


@pytest.mark.parametrize("target,lam", [(0.5, 0.08), (0.7, 0.08), (0.5, 0.2), (0.05, 0.08)])
def test_owl_ratios_average_to_s_stay_in_band_and_order_inversely(target, lam):
    ratios = [0.010, 0.002, 0.030, 0.011, 0.004, 0.300]  # one outlier-heavy layer stresses the bound
    out = owl_allocation.allocate(ratios, target, lam, clamp=True)
    band = owl_allocation.effective_lambda(target, lam, clamp=True)
    assert sum(out) / len(out) == pytest.approx(target, abs=1e-9)
    assert all(target - band - 1e-9 <= s <= target + band + 1e-9 for s in out)
    assert max(out) - min(out) > band  # the band is used, not collapsed
    by_ratio = sorted(range(len(ratios)), key=lambda i: ratios[i])
    assert [out[i] for i in by_ratio] == sorted(out, reverse=True)  # more outliers, less pruning
    assert all(0 <= s < 1 for s in out)


def test_owl_degenerate_cases():
    assert owl_allocation.allocate([0.2, 0.2, 0.2], 0.6) == [0.6, 0.6, 0.6]
    assert owl_allocation.allocate([0.1, 0.3], 0.5, lam=0.0) == [0.5, 0.5]
    with pytest.raises(InputError):
        owl_allocation.allocate([], 0.5)
    with pytest.raises(InputError):
        owl_allocation.allocate([0.1, 0.2], 1.0)


def _correlated_inputs(cols=64, tokens=512, rank=16, seed=0):
    """Inputs on a low-dimensional subspace plus noise, as LLM activations are: where SparseGPT's
    update has something to exploit."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(tokens, rank, generator=g) @ torch.randn(rank, cols, generator=g)
    return low + 0.3 * torch.randn(tokens, cols, generator=g)


def test_sparsegpt_hits_the_sparsity_and_reconstructs_better_than_wanda():
    x = _correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(3))
    h = x.T @ x
    for s in (0.5, 0.7):
        pruned = sparsegpt.prune(w, h, s, blocksize=32)
        assert masks.sparsity_of(pruned) == pytest.approx(s, abs=1 / 64)
        wanda = masks.apply_mask(w, masks.row_mask(scores.wanda(w, x.norm(dim=0)), s))
        err_sgpt = ((x @ (w - pruned).T) ** 2).sum()
        err_wanda = ((x @ (w - wanda).T) ** 2).sum()
        assert err_sgpt < 0.85 * err_wanda  # the OBS update compensates for removed weights
    nm = sparsegpt.prune(w, h, 0.5, nm=(2, 4))
    assert ((nm != 0).reshape(32, 16, 4).sum(-1) == 2).all()
    assert nm.dtype == w.dtype and not torch.equal(nm[nm != 0], w[nm != 0])  # survivors were updated


def test_block_influence_and_layer_choice():
    h = torch.randn(2, 5, 8)
    assert depth.cosine_distance_sum(h, h)[0] == pytest.approx(0, abs=1e-5)
    total, count = depth.cosine_distance_sum(h, -h)
    assert count == 10 and total / count == pytest.approx(2.0)
    assert depth.layers_to_drop([0.5, 0.1, 0.3, 0.1], 2) == [1, 3]
    assert depth.count_for(0.25, 4) == 1 and depth.count_for(0.01, 4) == 1 and depth.count_for(0.99, 4) == 3
    with pytest.raises(InputError):
        depth.layers_to_drop([0.1, 0.2], 2)


def test_fix_config_slices_per_layer_fields():
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        num_hidden_layers=4,
        layer_types=["full_attention", "full_attention", "sliding_attention", "sliding_attention"],
        max_window_layers=2,
    )
    depth.fix_config(cfg, [0, 2, 3])
    assert cfg.num_hidden_layers == 3 and cfg.max_window_layers == 1
    assert cfg.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]


def test_capture_hooks_sum_the_inputs_of_each_linear():
    from srice.compress import capture

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 4)
            self.b = torch.nn.Linear(4, 2)

        def forward(self, x, use_cache=False):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    net = Net()
    xs = [torch.randn(1, 5, 3), torch.randn(1, 2, 3)]
    stats = capture.linear_stats(net, [{"x": x} for x in xs], {"a": net.a, "b": net.b}, hessian=True)
    x = torch.cat([t.reshape(-1, 3) for t in xs]).double()
    assert stats["a"].tokens == 7
    assert torch.allclose(stats["a"].sq_norm, (x**2).sum(0))
    assert torch.allclose(stats["a"].input_norm, x.norm(dim=0))
    assert torch.allclose(stats["a"].hessian, x.T @ x)
    hidden = torch.relu(net.a(x.float())).double()
    assert torch.allclose(stats["b"].sq_norm, (hidden**2).sum(0), atol=1e-5)
    # stop_after ends each pass after `a`, so `b` is never reached
    with pytest.raises(ValueError, match="never reached"):
        capture.linear_stats(net, [{"x": x} for x in xs], {"b": net.b}, stop_after=net.a)


class _Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, hidden, scale=None, shift=0.0):
        return torch.tanh(self.fc(hidden)) * scale + shift


class _Net(torch.nn.Module):
    """Embedding, three layers called with a per-sample keyword argument and a per-layer one, a head;
    ``meddle`` changes the hidden states between layers (as Qwen3-VL's deepstack does)."""

    def __init__(self, meddle: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Linear(3, 4)
        self.layers = torch.nn.ModuleList(_Layer() for _ in range(3))
        self.head = torch.nn.Linear(4, 2)
        self.register_buffer("offset", torch.ones(4))
        self.meddle = meddle

    def forward(self, x, use_cache=False):
        h = self.embed(x) + self.offset
        scale = x.abs().mean() + 1
        for i, layer in enumerate(self.layers):
            h = layer(h, scale=scale, shift=float(i))
            if self.meddle:
                h = h + 1
        return self.head(h)


def test_layerwise_feeds_each_block_the_previous_blocks_outputs_in_one_pass():
    from srice.compress.capture import Block
    from srice.compress.layerwise import Layerwise

    net = _Net()
    batches = [{"x": torch.randn(1, n, 3, generator=torch.Generator().manual_seed(n))} for n in (2, 5)]
    expected, calls = {}, {"embed": 0}
    for i, layer in enumerate(net.layers):
        layer.register_forward_hook(lambda m, a, out, i=i: expected.setdefault(i, []).append(out))
    with torch.inference_mode():
        for b in batches:
            net(**b)
    net.embed.register_forward_hook(lambda *_: calls.__setitem__("embed", calls["embed"] + 1))
    blocks = [Block(f"layers.{i}", m, False) for i, m in enumerate(net.layers)]
    seen = []

    def step(turn):
        seen.append([torch.equal(a, b) for a, b in zip(turn.forward(), expected[len(seen)])])

    runner = Layerwise(net, batches, blocks)
    runner.run(step)
    assert seen == [[True, True]] * 3  # every block's outputs equal the full model's, bit for bit
    assert calls["embed"] == 2  # one pass over the model's input, not one per block
    assert runner.counts == {"prefix_passes": 1, "block_forwards": 3, "blocks": 3}
    assert "forward" not in net.layers[0].__dict__  # the stand-ins are gone


def test_layerwise_refuses_a_model_that_changes_hidden_states_between_layers():
    from srice.compress.capture import Block
    from srice.compress.layerwise import Layerwise

    net = _Net(meddle=True)
    blocks = [Block(f"layers.{i}", m, False) for i, m in enumerate(net.layers)]
    with pytest.raises(InputError, match="_Net changes the hidden states between its layers"):
        Layerwise(net, [{"x": torch.randn(1, 2, 3)}], blocks).run(lambda turn: None)
    assert all("forward" not in layer.__dict__ for layer in net.layers)


def test_place_moves_everything_but_the_blocks_and_the_head():
    """Only the pieces before the first block go to the device (``meta`` stands in for a GPU here)."""
    from srice.compress.layerwise import place

    net = _Net()
    place(net, "meta", [net.layers, net.head])
    assert net.embed.weight.device.type == "meta" and net.offset.device.type == "meta"
    assert all(p.device.type == "cpu" for p in [*net.layers.parameters(), *net.head.parameters()])
