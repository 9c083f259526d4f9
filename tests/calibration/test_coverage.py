"""Coverage of every calibrator over 200 seeds, against the bounds their theory gives.

For each seed a calibrator is fitted on fresh synthetic calibration data (n images, or the matched
pairs/instances in them) and measured on one large test pool generated once with another seed. The
mean over seeds estimates E[coverage], the quantity the guarantees bound. The slack is computed, not
chosen: Z standard errors of that mean, combining the across-seed spread (sd / sqrt(seeds)) with the
pool's own sampling error at a typical parameter (sd of the per-unit metric / sqrt(pool size)),
because one pool is shared by all seeds and its error does not average out.

At n = 100 the finite-sample corrections (1/(n+1) ~ 0.01) are about the size of the slack, so the
recall and margin tests also run at small n (10 images; 12 images ~ 23 pairs), where a calibrator
that dropped the correction fails (checked by mutating the code while writing these tests).

The test measures coverage with its own vectorised code (pool matched once), independent of the
calibrators' ``evaluate``; a separate test checks that ``evaluate`` agrees.

Bounds used (n = calibration units of that seed, averaged over seeds where n varies):
* recall threshold (CRC, B = 1): 1 - alpha <= E[recall] <= 1 - alpha + 2/(n+1). The upper bound is
  CRC's for losses without simultaneous jumps: thresholds sit at continuous scores, so one step of
  the threshold changes one image's loss, by at most B. (The simulated tool's own misses are far
  below alpha, so CRC's assumption that keeping everything meets the level holds up to rare sets,
  which are counted.)
* box margins, max (split conformal): 1 - alpha <= P(contain) <= 1 - alpha + 1/(n+1) (continuous
  scores, and q > 0 in every seed so the never-shrink rule is inactive, which the test checks).
* box margins, Bonferroni: >= 1 - alpha only, and more conservative than max (paired over seeds).
* precision (LTT): the fraction of seeds whose test precision is below 1 - alpha is <= delta, with a
  binomial standard-error slack for the finite number of seeds.
* mask dilation (CRC on an integer radius): >= 1 - alpha. The radius is discrete, so CRC's
  continuous upper bound does not apply; two bounds that do (derivation in
  ``_mask_upper_bounds``): one radius less would not reach the target,
  E[recall(r - 1)] <= 1 - alpha + 1/(n+1), and E[recall(r)] <= 1 - alpha + 2/(n+1) + E[n/(n+1) D],
  D the largest one-step drop of the calibration risk between r and the radius CRC would pick with
  a budget smaller by 1/(n+1).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from srice.calibration import (
    BoxMarginCalibrator,
    MaskCalibrator,
    SequentialCalibrator,
    ThresholdCalibrator,
    match,
    synthetic_examples,
)

SEEDS = 200
N_IMAGES = 100
ALPHA = 0.1
DELTA = 0.1
POOL = 10_000
Z = 3.0

MASK_KW = dict(image_size=(64, 48), size_range=(10.0, 40.0), objects=1.5, with_masks=True)
MASK_IMAGES = 70
MASK_POOL = 3_000


@dataclass
class Prepared:
    """One data set flattened for vectorised measurement (the test's own code)."""

    n_images: int
    img: np.ndarray  # per prediction: image index
    score: np.ndarray  # per prediction
    tp: np.ndarray  # per prediction: matched
    n_truth: np.ndarray  # per image
    pair_pred: np.ndarray  # per matched pair: clamped predicted box
    pair_truth: np.ndarray  # per matched pair: clamped true box
    pair_size: np.ndarray  # per matched pair: (width, height)
    pair_score: np.ndarray  # per matched pair: the prediction's score


def _clamp(boxes, size):
    out = np.array(boxes, dtype=float).reshape(-1, 4)
    size = np.asarray(size, dtype=float).reshape(-1, 2)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, size[:, :1])
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, size[:, 1:])
    return out


def prepare(examples) -> Prepared:
    img, score, tp, n_truth, pp, pt, ps, psc = [], [], [], [], [], [], [], []
    for i, ex in enumerate(examples):
        m = match(ex.pred, ex.truth)
        img.append(np.full(len(ex.pred), i))
        score.append(ex.pred.scores)
        tp.append(m.true_positive(len(ex.pred)))
        n_truth.append(len(ex.truth))
        pp.append(_clamp(ex.pred.boxes, ex.pred.image_size)[m.pred_index])
        pt.append(_clamp(ex.truth.boxes, ex.truth.image_size)[m.truth_index])
        ps.append(np.tile(ex.pred.image_size, (len(m), 1)))
        psc.append(ex.pred.scores[m.pred_index])
    cat = np.concatenate
    return Prepared(
        len(examples), cat(img), cat(score), cat(tp), np.array(n_truth), cat(pp), cat(pt), cat(ps), cat(psc)
    )


def recall_losses(d: Prepared, threshold: float) -> np.ndarray:
    found = np.bincount(d.img[d.tp & (d.score >= threshold)], minlength=d.n_images)
    return np.where(d.n_truth > 0, 1.0 - found / np.maximum(d.n_truth, 1), 0.0)


def contained(d: Prepared, margins, kind: str, keep=None) -> np.ndarray:
    p, g, size = d.pair_pred, d.pair_truth, d.pair_size
    if keep is not None:
        p, g, size = p[keep], g[keep], size[keep]
    w, h = np.maximum(p[:, 2] - p[:, 0], 1.0), np.maximum(p[:, 3] - p[:, 1], 1.0)
    m = np.maximum(np.asarray(margins, dtype=float), 0.0)
    step = np.stack([m[0] * w, m[1] * h, m[2] * w, m[3] * h], 1) if kind == "multiplicative" else m[None]
    out = _clamp(p + step * np.array([-1, -1, 1, 1]), size)
    eps = 1e-9 * (1 + np.abs(g))
    return np.all(
        np.stack([out[:, 0] <= g[:, 0] + eps[:, 0], out[:, 1] <= g[:, 1] + eps[:, 1],
                  out[:, 2] >= g[:, 2] - eps[:, 2], out[:, 3] >= g[:, 3] - eps[:, 3]], 1),
        axis=1,
    )  # fmt: skip


def slack(values, pool_unit_values) -> float:
    """Z standard errors of the across-seed mean, including the shared pool's sampling error."""
    se_seeds = np.std(values, ddof=1) / math.sqrt(len(values))
    se_pool = np.std(pool_unit_values, ddof=1) / math.sqrt(len(pool_unit_values))
    return Z * math.hypot(se_seeds, se_pool)


@functools.cache
def calibration_sets():
    return [synthetic_examples(N_IMAGES, seed=10_000 + s) for s in range(SEEDS)]


@functools.cache
def pool() -> Prepared:
    return prepare(synthetic_examples(POOL, seed=7))


def report(name, **values):
    print(
        f"\n[{name}] "
        + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    )


@pytest.mark.parametrize("n, alpha", [(N_IMAGES, ALPHA), (10, 0.3)])
def test_recall_threshold_coverage(n, alpha):
    """n = 10 as well, over 2000 sets: there CRC's +1/(n+1) correction (0.09) exceeds the slack, so
    the naive rule (empirical risk <= alpha) fails this test (checked by mutation while writing it).

    A tiny calibration set can be unlucky enough that even keeping every prediction misses the target;
    the calibrator then keeps everything (and warns). Such sets stay in the mean (they only lower it,
    so the lower-bound check stays honest) and must be rare.
    """
    d = pool()
    covs, thresholds, unattainable = [], [], 0
    # disjoint chunks of the per-seed sets: 200 sets of 100 images, or 2000 independent sets of 10
    chunks = [examples[i : i + n] for examples in calibration_sets() for i in range(0, N_IMAGES, n)]
    for examples in chunks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = ThresholdCalibrator(alpha, mode="recall").conformalize(examples)
        unattainable += not c.params["attainable"]
        thresholds.append(c.threshold)
        covs.append(1.0 - recall_losses(d, c.threshold).mean())
    covs = np.array(covs)
    s = slack(covs, recall_losses(d, float(np.median(thresholds))))
    lower, upper = 1 - alpha, 1 - alpha + 2 / (n + 1)
    report("recall CRC", mean=covs.mean(), lower=lower, upper=upper, slack=s, sets=len(chunks), n=n,
           alpha=alpha, unattainable_sets=unattainable)  # fmt: skip
    assert unattainable <= len(chunks) // 100
    assert lower - s <= covs.mean() <= upper + s


def test_recall_threshold_equals_brute_force_crc():
    """The vectorised search equals trying every distinct score, on the calibration data itself."""
    for examples in calibration_sets()[:5]:
        c = ThresholdCalibrator(ALPHA).conformalize(examples)
        d = prepare(examples)
        n = d.n_images
        candidates = np.concatenate([[np.inf], np.sort(np.unique(d.score))[::-1], [-np.inf]])
        ok = [(n / (n + 1)) * recall_losses(d, t).mean() + 1 / (n + 1) <= ALPHA + 1e-12 for t in candidates]
        best = candidates[int(np.argmax(ok))]  # the largest qualifying threshold
        # every threshold in (next lower score, best] is equivalent; the calibrator picks a score
        assert np.array_equal(recall_losses(d, best), recall_losses(d, c.threshold))
        assert c.threshold <= best


def test_precision_ltt_coverage():
    d = pool()
    precision, kept, attainable = [], [], []
    for examples in calibration_sets():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = ThresholdCalibrator(ALPHA, mode="precision", delta=DELTA).conformalize(examples)
        keep = d.score >= c.threshold
        precision.append(d.tp[keep].mean() if keep.any() else 1.0)  # keeping nothing is vacuously precise
        kept.append(keep.mean())
        attainable.append(c.params["attainable"])
    precision = np.array(precision)
    failures = float(np.mean(precision < 1 - ALPHA))
    s = Z * math.sqrt(DELTA * (1 - DELTA) / SEEDS)
    report(
        "precision LTT",
        failure_rate=failures,
        delta=DELTA,
        slack=s,
        mean_precision=precision.mean(),
        mean_kept_fraction=float(np.mean(kept)),
        certified_fraction=float(np.mean(attainable)),
        seeds=SEEDS,
        n=N_IMAGES,
    )
    assert failures <= DELTA + s
    # and it is not vacuous: most calibration sets certify a threshold, and most predictions survive it
    assert np.mean(attainable) > 0.5 and np.mean(kept) > 0.3


MARGIN_VARIANTS = [("additive", "max"), ("multiplicative", "max"), ("additive", "bonferroni")]


@functools.cache
def margin_results(images: int):
    d = pool()
    out = {v: ([], [], []) for v in MARGIN_VARIANTS}
    for examples in calibration_sets():
        for kind, combine in MARGIN_VARIANTS if images == N_IMAGES else MARGIN_VARIANTS[:2]:
            c = BoxMarginCalibrator(ALPHA, kind=kind, combine=combine).conformalize(examples[:images])
            cov, ns, qs = out[(kind, combine)]
            ok = contained(d, c.margins, kind)
            cov.append(ok.mean())
            ns.append(c.n)
            qs.append(min(c.params["quantiles"]))
    return {v: tuple(np.array(a) for a in out[v]) for v in MARGIN_VARIANTS}


@pytest.mark.parametrize("images", [N_IMAGES, 12])
@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_box_margin_max_coverage(kind, images):
    """12 images (about 23 pairs) as well: there a wrong quantile rank would move coverage by ~0.04."""
    covs, ns, qs = margin_results(images)[(kind, "max")]
    assert qs.min() > 0  # the never-shrink rule is inactive, so the upper bound applies
    ok = contained(pool(), np.full(4, np.median(qs)), kind)
    s = slack(covs, ok.astype(float))
    lower, upper = 1 - ALPHA, 1 - ALPHA + float(np.mean(1 / (ns + 1)))
    report(
        f"margins {kind} max",
        mean=covs.mean(),
        lower=lower,
        upper=upper,
        slack=s,
        seeds=SEEDS,
        mean_n=float(ns.mean()),
        min_n=int(ns.min()),
    )
    assert lower - s <= covs.mean() <= upper + s


def test_box_margin_bonferroni_is_valid_and_more_conservative():
    covs, ns, qs = margin_results(N_IMAGES)[("additive", "bonferroni")]
    base, _, _ = margin_results(N_IMAGES)[("additive", "max")]
    s = slack(covs, contained(pool(), np.full(4, np.median(qs)), "additive").astype(float))
    diff = covs - base  # paired: same calibration data and pool, so the pool error cancels
    s_diff = Z * np.std(diff, ddof=1) / math.sqrt(SEEDS)
    report(
        "margins additive bonferroni",
        mean=covs.mean(),
        lower=1 - ALPHA,
        slack=s,
        mean_gain_over_max=diff.mean(),
        slack_gain=s_diff,
        seeds=SEEDS,
        mean_n=float(ns.mean()),
    )
    assert covs.mean() >= 1 - ALPHA - s
    assert diff.mean() > s_diff


def test_sequential_coverage_of_each_step():
    d = pool()
    recall, contain, n_thr, n_mar, thresholds, margins = [], [], [], [], [], []
    unattainable = 0
    for seed, examples in enumerate(calibration_sets()):
        c = SequentialCalibrator(ThresholdCalibrator(ALPHA), BoxMarginCalibrator(ALPHA), seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n = 50 per half: the recall target is out of reach now and then
            c.conformalize(examples)
        unattainable += not c.threshold.params["attainable"]
        t = c.threshold.threshold
        recall.append(1.0 - recall_losses(d, t).mean())
        contain.append(contained(d, c.margins.margins, "additive", keep=d.pair_score >= t).mean())
        n_thr.append(c.threshold.n)
        n_mar.append(c.margins.n)
        thresholds.append(t)
        margins.append(c.margins.margins[0])
    recall, contain, n_thr, n_mar = map(np.array, (recall, contain, n_thr, n_mar))
    t_med = float(np.median(thresholds))
    s_r = slack(recall, recall_losses(d, t_med))
    keep = d.pair_score >= t_med
    s_c = slack(contain, contained(d, np.full(4, np.median(margins)), "additive", keep=keep).astype(float))
    upper_r = 1 - ALPHA + float(np.mean(2 / (n_thr + 1)))
    upper_c = 1 - ALPHA + float(np.mean(1 / (n_mar + 1)))
    report(
        "sequential",
        recall=recall.mean(),
        recall_upper=upper_r,
        slack_recall=s_r,
        containment=contain.mean(),
        containment_upper=upper_c,
        slack_containment=s_c,
        seeds=SEEDS,
        n_threshold=float(n_thr.mean()),
        n_margins=float(n_mar.mean()),
        unattainable_seeds=unattainable,
    )
    assert unattainable <= SEEDS // 20  # the fallback (keep all) must stay rare, or the bound means little
    assert 1 - ALPHA - s_r <= recall.mean() <= upper_r + s_r
    assert 1 - ALPHA - s_c <= contain.mean() <= upper_c + s_c


# --- masks -----------------------------------------------------------------------------------------


def mask_curves(examples, radius: int) -> np.ndarray:
    """The test's own L_i(r), r = 0..radius, for every matched instance (EDT, sorted distances)."""
    grid = np.arange(radius + 1)
    rows = []
    for ex in examples:
        for p, t in match(ex.pred, ex.truth).pairs:
            pm, tm = ex.pred.masks[p], ex.truth.masks[t]
            if not tm.any():
                rows.append(np.zeros(radius + 1))
                continue
            dist = ndimage.distance_transform_edt(~pm)[tm] if pm.any() else np.full(tm.sum(), np.inf)
            rows.append(1.0 - np.searchsorted(np.sort(dist), grid, side="right") / len(dist))
    return np.array(rows).reshape(-1, radius + 1)


def _mask_upper_bounds(curves: np.ndarray, r_hat: int) -> float:
    """(n/(n+1)) D for one seed, with the derivation of both mask upper bounds.

    R(r) is the mean loss of the n calibration units, R'(r) the mean over those and the test unit,
    losses in [0, 1] and non-increasing in r, R(-1) = R'(-1) = 1 by convention. Let r'' = min{r :
    R'(r) <= alpha - 1/(n+1)}. Every r < r_hat fails CRC's rule (n R(r) + 1)/(n+1) <= alpha, and
    R'(r) >= n R(r)/(n+1), so R'(r) > alpha - 1/(n+1) there: r'' >= r_hat. Also (n R(r) + 2)/(n+1)
    <= alpha implies R'(r) <= alpha - 1/(n+1), so r'' <= r2 := min{r : (n R(r) + 2)/(n+1) <= alpha}.
    r'' is a symmetric function of the n + 1 units, so E L_test(r'') = E R'(r''); the loss is
    non-increasing, so E L_test(r_hat) >= E R'(r''). And R'(r'') >= R'(r''-1) - (drop at r'') >
    alpha - 1/(n+1) - (n J(r'') + 1)/(n+1), with J(r) = R(r-1) - R(r) and r'' in [r_hat, r2]:
    E L_test(r_hat) >= alpha - 2/(n+1) - E[n/(n+1) D], D = max J over [r_hat, r2].
    For one radius less: r_hat - 1 <= r'' - 1 (or the largest radius when no r qualifies), where R'
    exceeds alpha - 1/(n+1), so E L_test(r_hat - 1) >= alpha - 1/(n+1).
    """
    n = len(curves)
    risk = curves.mean(axis=0)
    ok2 = n * risk + 2 <= ALPHA * (n + 1) + 1e-12
    if not ok2.any():
        return 1.0
    r2 = int(np.argmax(ok2))
    jumps = np.concatenate([[1.0], risk[:-1]]) - risk
    return n / (n + 1) * float(jumps[r_hat : r2 + 1].max())


def test_mask_dilation_coverage():
    radius = math.ceil(math.hypot(*MASK_KW["image_size"]))
    pool_curves = mask_curves(synthetic_examples(MASK_POOL, seed=8, **MASK_KW), radius)
    covs, covs_less, ns, d_terms, radii = [], [], [], [], []
    for s in range(SEEDS):
        examples = synthetic_examples(MASK_IMAGES, seed=20_000 + s, **MASK_KW)
        c = MaskCalibrator(ALPHA).conformalize(examples)
        own = mask_curves(examples, radius)
        n = len(own)
        ok = own.sum(axis=0) + 1 <= ALPHA * (n + 1) + 1e-12
        assert c.n == n and c.radius == int(np.argmax(ok))  # CRC on the test's own curves agrees
        r = c.radius
        radii.append(r)
        ns.append(n)
        covs.append(1.0 - pool_curves[:, r].mean())
        covs_less.append(1.0 - pool_curves[:, r - 1].mean() if r > 0 else 0.0)
        d_terms.append(_mask_upper_bounds(own, r))
    covs, covs_less, ns, d_terms = map(np.array, (covs, covs_less, ns, d_terms))
    r_med = int(np.median(radii))
    s = slack(covs, 1.0 - pool_curves[:, r_med])
    s_less = slack(covs_less, 1.0 - pool_curves[:, max(r_med - 1, 0)])
    lower = 1 - ALPHA
    upper_less = 1 - ALPHA + float(np.mean(1 / (ns + 1)))
    upper = 1 - ALPHA + float(np.mean(2 / (ns + 1))) + float(d_terms.mean())
    s_upper = s + Z * np.std(d_terms, ddof=1) / math.sqrt(SEEDS)
    report(
        "masks CRC",
        mean=covs.mean(),
        lower=lower,
        upper=upper,
        slack=s,
        mean_one_radius_less=covs_less.mean(),
        upper_one_radius_less=upper_less,
        seeds=SEEDS,
        mean_n=float(ns.mean()),
        radii=sorted(set(radii)),
    )
    assert covs.mean() >= lower - s
    assert covs.mean() <= upper + s_upper
    assert covs_less.mean() <= upper_less + s_less


def test_evaluate_agrees_with_the_vectorised_measurement():
    held_out = synthetic_examples(400, seed=99)
    d = prepare(held_out)
    examples = calibration_sets()[0]
    c = ThresholdCalibrator(ALPHA).conformalize(examples)
    assert c.evaluate(held_out)["coverage"] == pytest.approx(1 - recall_losses(d, c.threshold).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = (ThresholdCalibrator(ALPHA, mode="precision").conformalize(e) for e in calibration_sets())
        p = next(fit for fit in fits if fit.params["attainable"])
    assert p.evaluate(held_out)["coverage"] == pytest.approx(d.tp[d.score >= p.threshold].mean())
    for kind in ("additive", "multiplicative"):
        m = BoxMarginCalibrator(ALPHA, kind=kind).conformalize(examples)
        result = m.evaluate(held_out)
        assert result["coverage"] == pytest.approx(contained(d, m.margins, kind).mean())
        assert result["n"] == len(d.pair_pred)
    mask_examples = synthetic_examples(MASK_IMAGES, seed=5, **MASK_KW)
    mask_held_out = synthetic_examples(200, seed=6, **MASK_KW)
    k = MaskCalibrator(ALPHA).conformalize(mask_examples)
    curves = mask_curves(mask_held_out, k.radius)
    assert k.evaluate(mask_held_out)["coverage"] == pytest.approx(1 - curves[:, k.radius].mean())
    # and apply really produces what evaluate measured: dilated masks' recall of the true masks
    recalls = []
    for ex in mask_held_out:
        out = k.apply(ex.pred)
        for p, t in match(ex.pred, ex.truth).pairs:
            tm = ex.truth.masks[t]
            recalls.append((out.masks[p] & tm).sum() / tm.sum())
    assert np.mean(recalls) == pytest.approx(1 - curves[:, k.radius].mean())
