"""Statistics for white-box gradient canaries: conformance tests of everything DP-SGD's accountant assumes, and
rigorous epsilon lower bounds that use the per-step observations. Pure numpy/scipy (no torch).

The observations (see dpaudit/whitebox.py) are, in units of the clipping norm C,

    x[t, j] = o[t, j] / C = d[t, j] + sigma * z[t, j],   d[t, j] = [canary j drawn at step t] (0 if excluded),

and the accountant assumes: d[t, j] ~ Bernoulli(q) independently over steps, epochs and canaries (Poisson
sampling), z[t, j] ~ N(0, 1) independently over steps and coordinates (fresh Gaussian noise), a drawn canary
contributes exactly C (clipping), and exactly T steps ran. Draws are never seen on their own, only through x, so
each test below is built from the observations with a null distribution derived under the claimed mechanism
(exact where said, otherwise a CLT approximation; tests/test_whitebox.py checks every null by simulation).

Conformance tests (each returns ``(statistic, p_value)``; the caller Bonferroni-splits its share of alpha):

* ``noise_gaussian_test``, ``noise_tails_test``: the excluded canaries' noise has the Gaussian shape;
* ``noise_step_independence_test``: the noise is fresh at every step (lag-1 autocorrelation);
* ``coordinate_independence_test``: the noise (or the draws) at one step are independent across coordinates;
* ``epoch_repeat_test``: the draw pattern of epoch e does not repeat in the other epochs;
* ``draw_dispersion_test``: each canary's number of draws is Binomial(T, q) (no correlation across steps);
* ``omnibus_test``: the canaries' score distributions match the claimed mechanism simulated.

Bound routes (each a dict with ``epsilon_lb``, ``ceiling``, ``confidence``, ``assumption``):

* ``canary_cp_route``: Clopper-Pearson over canaries, threshold chosen on a random half of the canaries;
* ``per_step_witness_route``: per-step witness composition (argument in its docstring);
* ``fdp_one_run_route``: the one-run f-DP audit (Mahloujifar, Melis & Chaudhuri 2025) with the (epsilon, delta)
  trade-off curve, on the one-run route's guesses (argument in dpaudit/core/fdp_one_run.py).

``route_canaries_needed`` says per route how many canaries would lift its ceiling above a claim.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special, stats

from dpaudit.core.bounds import smallest_passing

__all__ = [
    "BROKEN",
    "FDP_LABEL",
    "MECHANISMS",
    "bound_routes",
    "canary_cp_route",
    "ceiling_per_step",
    "coordinate_independence_test",
    "cp_rate_bounds",
    "draw_dispersion_test",
    "epoch_repeat_test",
    "exact_epsilon",
    "fdp_one_run_route",
    "noise_gaussian_test",
    "noise_step_independence_test",
    "noise_tails_test",
    "omnibus_test",
    "per_step_witness_route",
    "random_half",
    "route_share_confidence",
    "SECOND_SHARE_ROUTES",
    "route_canaries_needed",
    "routes_text",
    "simulate_mechanism",
    "witness_epsilon",
]

# What a rejection of each conformance test means, in words a user understands.
BROKEN = {
    "noise_std": "the noise's scale is not the claimed sigma x C",
    "draw_rate": "records are drawn at a rate other than the claimed q (or their clipped norm is not C)",
    "clipped_norm": "a drawn record's contribution is not clipped to C",
    "sampling_independence": "records are drawn in shuffled fixed-size batches (once an epoch), not by Poisson "
                             "sampling",
    "steps": "the number of noisy steps differs from what the accountant composed",
    "noise_gaussian": "the noise is not Gaussian",
    "noise_tails": "the noise's tails are not Gaussian (e.g. bounded-support noise of the right variance)",
    "noise_step_independence": "the noise is not fresh at each step (one noise vector reused or correlated across "
                               "steps)",
    "noise_coordinate_independence": "the noise is not independent across coordinates (one value shared across a "
                                     "tensor)",
    "draw_coordinate_independence": "records are not drawn independently of each other at a step",
    "epoch_repeat": "the same batches repeat across epochs",
    "draw_dispersion": "records' numbers of draws are not Binomial(T, q): draws are correlated across steps",
    "omnibus": "the canaries' score distributions are not the claimed mechanism's",
}


def _two_sided(z: float) -> float:
    return float(2.0 * stats.norm.sf(abs(z))) if math.isfinite(z) else 0.0


def _two_sided_f(f: float, d1: float, d2: float) -> float:
    if not math.isfinite(f):
        return 0.0
    return float(min(1.0, 2.0 * min(stats.f.cdf(f, d1, d2), stats.f.sf(f, d1, d2))))


# --------------------------------------------------------------------------- conformance tests

def noise_gaussian_test(x_out: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov distance of the excluded canaries' noise, standardised by its own scale, from N(0, 1).

    Scale-free, so it tests the shape only (``noise_std`` tests the scale). Estimating the scale from the same
    values can only shrink the distance, so the p-value is conservative (never too small) under Gaussian noise.

    >>> rng = np.random.default_rng(0)
    >>> noise_gaussian_test(rng.standard_normal((50, 200)) * 3)[1] > 0.01
    True
    >>> noise_gaussian_test(rng.uniform(-1, 1, (50, 200)))[1] < 1e-6
    True
    """
    x = np.sort(np.asarray(x_out, np.float64), axis=None)  # one sorted copy, flattened
    n = x.size
    if n < 20:
        return 0.0, 1.0
    s = math.sqrt(float(np.dot(x, x)) / n)
    if s == 0:
        return float("inf"), 0.0
    # scipy's kstest(x / s, "norm") (D = max(D+, D-), exact Kolmogorov p-value) in blocks of 1M values: on m =
    # 10,000 canaries over 3,000 steps it held six 120 MB arrays at once, the analysis's peak memory
    d = 0.0
    for i in range(0, n, 1 << 20):
        c = special.ndtr(x[i:i + (1 << 20)] / s)
        k = np.arange(i, i + c.size, dtype=np.float64)
        d = max(d, float(np.max((k + 1.0) / n - c)), float(np.max(c - k / n)))
    return d, float(np.clip(stats.kstwo.sf(d, n), 0.0, 1.0))


def noise_tails_test(x_out: np.ndarray) -> tuple[float, float]:
    """Anscombe-Glynn kurtosis test of the excluded canaries' noise (z-score; two-sided p).

    Gaussian noise has kurtosis 3; noise of the right variance but bounded support (uniform: 1.8, Rademacher: 1)
    has less, heavy-tailed noise more. Needs at least 20 values."""
    x = np.asarray(x_out, np.float64).ravel()
    if x.size < 20:
        return 0.0, 1.0
    if not np.any(x != x[0]):
        return float("-inf"), 0.0
    r = stats.kurtosistest(x)
    return float(r.statistic), float(r.pvalue)


def noise_step_independence_test(x_out: np.ndarray) -> tuple[float, float]:
    """Lag-1 autocorrelation of the excluded canaries' noise, pooled over canaries, as a self-normalised z.

    Under fresh noise the products p_t = x_t x_{t+1} are martingale differences (E[p_t | x_1..x_t] = 0), so
    sum p / sqrt(sum p^2) is asymptotically N(0, 1) (martingale CLT); one noise vector reused at every step gives
    p_t = n^2 > 0 and z of order sqrt(m T)."""
    x = np.asarray(x_out, np.float64)
    if x.shape[0] < 2 or x.shape[1] == 0:
        return 0.0, 1.0
    p = x[:-1] * x[1:]
    ss = float(np.sum(p * p))
    if ss == 0:
        return 0.0, 1.0
    z = float(p.sum()) / math.sqrt(ss)
    return z, _two_sided(z)


def coordinate_independence_test(x: np.ndarray, center: bool = False) -> tuple[float, float]:
    """F-test for a component common to all coordinates at a step: F = (sum_t S_t^2 / T) / (R / (T (n - 1)))
    with S_t = sum_j x[t, j] / sqrt(n) and R the remaining sum of squares.

    For iid N(0, s^2) values (the excluded canaries' noise), sum_t S_t^2 ~ s^2 chi2_T and R ~ s^2 chi2_{T(n-1)},
    independent (projections on orthogonal subspaces), so F ~ F(T, T(n-1)) exactly; two-sided p. One noise value
    shared across the tensor gives R = 0 (F infinite). With ``center`` (the included canaries: draws plus noise)
    the values are centred on their overall mean first; the test then holds by the CLT on S_t (iid draws across
    canaries) and catches draws correlated across canaries. Centring makes the S_t sum to 0, so the numerator
    has T - 1 degrees of freedom and R keeps T (n - 1): F(T - 1, T (n - 1))."""
    v = np.asarray(x, np.float64)
    t, n = v.shape
    if t == 0 or n < 2:
        return 0.0, 1.0
    if center:
        v = v - v.mean()
    s2 = np.square(v.sum(axis=1)) / n
    total = float(np.sum(v * v))
    resid = total - float(s2.sum())
    d1, d2 = (t - 1 if center else t), t * (n - 1)
    if resid <= 1e-12 * max(total, 1e-300):
        return float("inf"), 0.0
    if d1 == 0:  # one step, centred: nothing left between steps
        return 0.0, 1.0
    f = (float(s2.sum()) / d1) / (resid / d2)
    return f, _two_sided_f(f, d1, d2)


def epoch_repeat_test(x_in: np.ndarray, epoch_of_step: np.ndarray) -> tuple[float, float]:
    """Do the included canaries' draws repeat across epochs? z-score of the covariance between the observation at
    the s-th step of one epoch and at the s-th step of every other epoch, pooled over canaries, slots and pairs
    of epochs.

    With a = x - mean (the draws' rate and the noise both enter only through a), U = sum over (canary, slot,
    epoch pair e < e') of a_e a_e'. Under Poisson sampling and fresh noise the observations are independent, so
    each product has mean 0 and distinct products are uncorrelated; V = sum of the squared products estimates
    Var(U), and U / sqrt(V) is asymptotically N(0, 1) (CLT over the independent (canary, slot) units; centring on
    the estimated mean biases U by a relative O(1 / sqrt(m T)), negligible). The same Poisson batches in every
    epoch make each product's mean q(1 - q) > 0. Power: z ~ sqrt(#pairs) q(1 - q) / (q(1 - q) + sigma^2)."""
    x = np.asarray(x_in, np.float64)
    ep = np.asarray(epoch_of_step)
    if x.shape[1] == 0 or x.shape[0] < 2:
        return 0.0, 1.0
    a = x - x.mean()
    # position of each step within its epoch
    slot = np.zeros(ep.size, int)
    for e in np.unique(ep):
        idx = np.flatnonzero(ep == e)
        slot[idx] = np.arange(idx.size)
    u = v = 0.0
    for s in np.unique(slot):
        rows = a[slot == s]
        if rows.shape[0] < 2:
            continue
        s1 = rows.sum(axis=0)
        sq = rows * rows
        u += float(np.sum(s1 * s1 - sq.sum(axis=0))) / 2.0
        q1 = sq.sum(axis=0)
        v += float(np.sum(q1 * q1 - np.sum(sq * sq, axis=0))) / 2.0
    if v <= 0:
        return 0.0, 1.0
    z = u / math.sqrt(v)
    return z, _two_sided(z)


def draw_dispersion_test(x_in: np.ndarray) -> tuple[float, float]:
    """Each included canary's number of draws against Binomial(T, q): dispersion F-test of the per-canary sums.

    With a = x - mean, X_j = sum_t a[t, j]. Under Poisson sampling X_j is a centred Binomial(T, q) plus
    N(0, T sigma^2), so Var(X_j) = T Var(a) with no cross-step covariance; F = (sum_j X_j^2 / (T (n - 1))) /
    (R / (n (T - 1))), R the within-canary sum of squares, is approximately F(n - 1, n(T - 1)) (exact for
    Gaussian values, by the CLT otherwise; centring on the overall mean makes the X_j sum to 0, hence n - 1).
    Draws correlated across steps (the same batches every epoch: X_j = E K_j with K_j ~ Binomial(T / E, q))
    inflate it; draws more regular than Poisson (once an epoch) deflate it."""
    x = np.asarray(x_in, np.float64)
    t, n = x.shape
    if t < 2 or n < 2:
        return 0.0, 1.0
    a = x - x.mean()
    s2 = np.square(a.sum(axis=0)) / t
    total = float(np.sum(a * a))
    resid = total - float(s2.sum())
    d1, d2 = n - 1, n * (t - 1)
    if resid <= 1e-12 * max(total, 1e-300):
        return float("inf"), 0.0
    f = (float(s2.sum()) / d1) / (resid / d2)
    return f, _two_sided_f(f, d1, d2)


def omnibus_test(scores_in: np.ndarray, scores_out: np.ndarray, sim_in: np.ndarray,
                 sim_out: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov tests of the included and the excluded canaries' scores against the same
    scores of canaries simulated from the claimed mechanism; the smaller p-value, doubled (Bonferroni over the
    two). The statistic is the larger KS distance. Catches any departure that moves a score distribution."""
    ps, ds = [], []
    for obs, sim in ((scores_in, sim_in), (scores_out, sim_out)):
        if np.size(obs) and np.size(sim):
            r = stats.ks_2samp(np.asarray(obs, np.float64), np.asarray(sim, np.float64))
            ps.append(float(r.pvalue))
            ds.append(float(r.statistic))
    if not ps:
        return 0.0, 1.0
    return max(ds), min(1.0, len(ps) * min(ps))


# --------------------------------------------------------------------------- bounds

def random_half(m: int, seed: int, fraction: float = 0.5) -> np.ndarray:
    """A seeded random ``fraction`` (default half) of the m canaries (bool[m]), drawn independently of the coins:
    the part on which thresholds are chosen; the bounds count only the rest."""
    perm = np.random.default_rng([int(seed), 0x4A1F]).permutation(int(m))
    half = np.zeros(int(m), bool)
    half[perm[: int(int(m) * fraction)]] = True
    return half


PER_STEP_SELECTION = 0.25  # share of canaries that choose the per-step threshold: T values each, so a quarter
# is plenty to place it, and the other three quarters give the counts (on synthetic DP-SGD at eps 8 this is a
# few % higher than halves; fixed here, not tuned per run)


def cp_rate_bounds(tp, n_pos: int, fp, n_neg: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(TPR lower, FPR upper) Clopper-Pearson bounds, each one-sided at level (1 - confidence) / 2, so that both
    hold together with probability >= confidence (union bound). Vectorised over tp, fp.

    >>> lo, hi = cp_rate_bounds(50, 100, 5, 100, 0.95)
    >>> bool(0.38 < lo < 0.5 and 0.05 < hi < 0.13)
    True
    """
    a = (1.0 - float(confidence)) / 2.0
    tp = np.asarray(tp, np.float64)
    fp = np.asarray(fp, np.float64)
    with np.errstate(invalid="ignore"):
        lo = np.where(tp > 0, stats.beta.ppf(a, np.maximum(tp, 1), n_pos - tp + 1), 0.0)
        hi = np.where(fp < n_neg, stats.beta.ppf(1.0 - a, fp + 1, np.maximum(n_neg - fp, 1)), 1.0)
    return lo, hi


def _cp_eps(tpr_lb: np.ndarray, fpr_ub: np.ndarray, delta: float) -> np.ndarray:
    """max(ln((TPR - delta) / FPR), ln((1 - FPR - delta) / (1 - TPR))), floored at 0 (both DP inequalities)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((tpr_lb - delta > 0) & (fpr_ub > 0), np.log(np.maximum(tpr_lb - delta, 1e-300))
                     - np.log(np.maximum(fpr_ub, 1e-300)), 0.0)
        b = np.where((1 - fpr_ub - delta > 0) & (1 - tpr_lb > 0), np.log(np.maximum(1 - fpr_ub - delta, 1e-300))
                     - np.log(np.maximum(1 - tpr_lb, 1e-300)), 0.0)
    return np.maximum(np.maximum(a, b), 0.0)


def witness_epsilon(steps: int, a, b, delta: float) -> np.ndarray:
    """The largest epsilon at which T-fold composition of the binary channel Bern(a) against Bern(b) has
    hockey-stick divergence above delta, in either direction (vectorised over a, b):

        sup { eps : sum_k max(0, Bin(T, a)(k) - e^eps Bin(T, b)(k)) > delta }   (and a, b swapped), floored at 0.

    Binomial counts are sufficient for the T Bernoulli outcomes, so this is the divergence of the product
    channel. Only a > b is evidence (a <= b gives 0): the pair (Bern(a), Bern(b)) is then a garbling of any binary
    channel with TPR >= a and FPR <= b. For T = 1 it is the Clopper-Pearson formula max(ln((a - delta) / b), ln((1 - b - delta) / (1 - a))).

    >>> round(float(witness_epsilon(1, 0.5, 0.1, 0.0)[0]), 4) == round(math.log(5), 4)
    True
    >>> bool(witness_epsilon(10, 0.5, 0.1, 1e-5)[0] > witness_epsilon(1, 0.5, 0.1, 1e-5)[0])
    True
    """
    a = np.atleast_1d(np.asarray(a, np.float64))
    b = np.atleast_1d(np.asarray(b, np.float64))
    a, b = np.broadcast_arrays(a, b)
    k = np.arange(int(steps) + 1)
    out = np.zeros(a.shape)
    for p, r in ((a, b), (b, a)):
        pp = np.clip(p, 1e-300, 1 - 1e-16)[:, None]
        rr = np.clip(r, 1e-300, 1 - 1e-16)[:, None]
        lp = stats.binom.logpmf(k[None, :], steps, pp)
        lr = stats.binom.logpmf(k[None, :], steps, rr)
        # exact ends: a rate of exactly 0 or 1 puts all mass on k = 0 or k = T
        lp = np.where((p[:, None] <= 0) & (k[None, :] > 0), -np.inf, lp)
        lr = np.where((r[:, None] <= 0) & (k[None, :] > 0), -np.inf, lr)
        lr = np.where((r[:, None] >= 1) & (k[None, :] < steps), -np.inf, lr)
        pm = np.exp(lp)
        with np.errstate(invalid="ignore"):
            loss = lp - lr  # privacy loss of outcome k; +inf where r puts no mass

        def hs(eps, pm=pm, loss=loss):
            with np.errstate(over="ignore", invalid="ignore"):
                g = np.where(loss > eps[:, None], pm * (1.0 - np.exp(np.minimum(eps[:, None] - loss, 0.0))), 0.0)
            return g.sum(axis=1)

        lo = np.zeros(a.shape)
        ok = hs(lo) > delta
        finite = np.where(np.isfinite(loss), loss, -np.inf).max(axis=1)
        has_inf = np.any(np.isposinf(loss) & (pm > 0), axis=1)
        inf_mass = np.where(np.isposinf(loss), pm, 0.0).sum(axis=1)
        # mass the other side never produces: the divergence never falls below it, so eps is unbounded
        unbounded = ok & has_inf & (inf_mass > delta)
        hi = np.maximum(finite, 0.0) + 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            up = hs(mid) > delta
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        e = np.where(ok, lo, 0.0)
        e = np.where(unbounded, np.inf, e)
        out = np.maximum(out, e)
    # the garbling argument needs the point (b, a) above the diagonal: a <= b shows nothing
    return np.where(a > b, out, 0.0)


def _cand_levels(n: int, n_cand: int) -> np.ndarray:
    # upper-tail quantile levels down to a few points above the sample's top: where the large ratios live
    return np.unique(np.concatenate([np.linspace(0.02, 0.98, 49),
                                     1.0 - np.geomspace(0.5, min(0.5, 3.0 / max(n, 1)), n_cand)]))


def canary_cp_route(scores: np.ndarray, coins: np.ndarray, half: np.ndarray, delta: float, confidence: float,
                    n_candidates: int = 300) -> dict:
    """Clopper-Pearson bound over canaries, its threshold chosen on one half of them.

    The canaries of ``half`` (a random half drawn independently of the coins) choose the threshold: the one whose
    Clopper-Pearson bound, computed on their own counts, is largest. The other half's counts
    at that threshold give the bound, once. Their scores are independent of the first half's given the coins
    (see ``dpaudit.training.whitebox.analyse``), so the threshold is fixed for them and no correction is needed. A leakier
    run moves the first half's rates too, so the threshold follows the leak instead of the claim. Ceiling: the
    bound from a perfect separation of the second half (tp = n_pos, fp = 0)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(coins, bool)
    h = np.asarray(half, bool)
    a_s, a_y, b_s, b_y = s[h], y[h], s[~h], y[~h]
    n_pos, n_neg = int(b_y.sum()), int((~b_y).sum())
    out = {"route": "clopper_pearson", "label": "Clopper-Pearson over canaries", "confidence": float(confidence),
           "assumption": "canaries independent given the coins (true of DP-SGD as built; tested by the "
                         "coordinate-independence tests)",
           "threshold_selection": "chosen on a random half of the canaries, counted on the other half",
           "n_pos": n_pos, "n_neg": n_neg}
    if n_pos == 0 or n_neg == 0 or a_y.all() or not a_y.any():
        return {**out, "epsilon_lb": 0.0, "ceiling": 0.0, "threshold": None, "tp": 0, "fp": 0}
    cand = np.quantile(a_s, _cand_levels(a_s.size, n_candidates))
    pos, neg = np.sort(a_s[a_y]), np.sort(a_s[~a_y])
    tp_a = pos.size - np.searchsorted(pos, cand, side="left")
    fp_a = neg.size - np.searchsorted(neg, cand, side="left")
    # the first half's own bound (its counts, its sizes): small counts in the far tail are penalised as they will
    # be on the second half, so the choice does not chase a lucky tail
    lo, hi = cp_rate_bounds(tp_a, pos.size, fp_a, neg.size, confidence)
    thr = float(cand[int(np.argmax(_cp_eps(lo, hi, delta)))])
    tp, fp = int(np.sum(b_s[b_y] >= thr)), int(np.sum(b_s[~b_y] >= thr))
    lo, hi = cp_rate_bounds(tp, n_pos, fp, n_neg, confidence)
    eps = float(_cp_eps(np.atleast_1d(lo), np.atleast_1d(hi), delta)[0])
    clo, chi = cp_rate_bounds(n_pos, n_pos, 0, n_neg, confidence)
    ceiling = float(_cp_eps(np.atleast_1d(clo), np.atleast_1d(chi), delta)[0])
    return {**out, "epsilon_lb": eps, "ceiling": ceiling, "threshold": thr, "tp": tp, "fp": fp}


def ceiling_per_step(n_pos: int, n_neg: int, steps: int, q: float, delta: float, confidence: float) -> float:
    """Ceiling of the per-step witness route: its bound for a noise-free run at sampling rate ``q`` (an included
    canary's step is above any threshold in (0, C] exactly when it is drawn: tp = q n_pos, fp = 0)."""
    if n_pos == 0 or n_neg == 0:
        return 0.0
    lo, hi = cp_rate_bounds(round(q * n_pos), n_pos, 0, n_neg, confidence)
    return float(witness_epsilon(steps, lo, hi, delta)[0])


def per_step_witness_route(x: np.ndarray, coins: np.ndarray, half: np.ndarray, delta: float, confidence: float,
                           q: float, n_candidates: int = 200) -> dict:
    """Per-step witness composition: an epsilon lower bound from the T per-step observations of every canary.

    The argument. Fix one canary. Under the accountant's assumptions its T observations x_1..x_T are independent
    across steps and identically distributed: x_t ~ P = (1 - q) N(0, sigma^2) + q N(1, sigma^2) if it is
    included, x_t ~ Q = N(0, sigma^2) if not (in units of C), and the whole run is (eps, delta)-DP with respect
    to it only if H_{e^eps}(P^T || Q^T) <= delta and H_{e^eps}(Q^T || P^T) <= delta (hockey-stick divergence of
    the T-step view; a post-processing of the released noisy gradients). Whatever P and Q really are, a
    threshold tau gives a binary channel with TPR = P(x >= tau) and FPR = Q(x >= tau). For any a <= TPR and
    b >= FPR with b <= a, the pair (Bern(a), Bern(b)) is a randomised post-processing of (Bern(TPR), Bern(FPR)),
    hence of (P, Q) (Blackwell order). Applying that post-processing to each step independently keeps the order
    under composition, so H(P^T || Q^T) >= H(Bern(a)^T || Bern(b)^T) = sum_k max(0, Bin(T, a)(k) - e^eps
    Bin(T, b)(k)) (the count k is sufficient). If that exceeds delta the run is not (eps, delta)-DP:
    ``witness_epsilon`` is the largest such eps.

    The estimation. ``half`` (a random part of the canaries, independent of the coins; ``bound_routes`` uses a
    quarter) chooses tau: over quantiles of its per-step values, the tau whose bound computed on its own counts is
    largest. The other canaries'
    n_pos = (their included canaries) x T and n_neg = (their excluded canaries) x T per-step values are then counted
    once at tau; under the assumptions they are independent Bernoulli(TPR) and Bernoulli(FPR) trials, and the
    Clopper-Pearson TPR lower and FPR upper bounds (``cp_rate_bounds``, both together at ``confidence``) give a
    and b. So the bound holds at ``confidence`` provided the observations are independent across steps and
    canaries and identically distributed across steps: the noise-independence, draw-independence, epoch-repeat
    and dispersion tests check this, and the route counts only when all of them accept. Ceiling: the bound of a
    noise-free run at the claimed q, or at the observed draw rate if higher (``ceiling_per_step``); never below
    the bound itself, which a run far from the claim (bounded-support noise, say) can exceed it by."""
    v = np.asarray(x, np.float64)
    y = np.asarray(coins, bool)
    h = np.asarray(half, bool)
    steps = v.shape[0]
    a_in, a_out = v[:, h & y].ravel(), v[:, h & ~y].ravel()
    b_in, b_out = v[:, ~h & y].ravel(), v[:, ~h & ~y].ravel()
    n_pos, n_neg = int(b_in.size), int(b_out.size)
    out = {"route": "per_step", "label": "per-step witness composition", "confidence": float(confidence),
           "assumption": "a canary's observations independent across steps and canaries, identically distributed "
                         "across steps (tested by the independence tests)",
           "threshold_selection": "chosen on a random half of the canaries' per-step values, counted on the other "
                                  "half", "n_pos": n_pos, "n_neg": n_neg, "steps": int(steps)}
    if n_pos == 0 or n_neg == 0 or a_in.size == 0 or a_out.size == 0:
        return {**out, "epsilon_lb": 0.0, "ceiling": 0.0, "threshold": None, "tp": 0, "fp": 0,
                "tpr_lb": 0.0, "fpr_ub": 1.0}
    pool = np.concatenate([a_in, a_out])
    cand = np.quantile(pool, 1.0 - np.geomspace(0.5, min(0.5, 3.0 / pool.size), n_candidates))
    pos, neg = np.sort(a_in), np.sort(a_out)
    tp_a = pos.size - np.searchsorted(pos, cand, side="left")
    fp_a = neg.size - np.searchsorted(neg, cand, side="left")
    lo, hi = cp_rate_bounds(tp_a, pos.size, fp_a, neg.size, confidence)  # the first half's own bound
    thr = float(cand[int(np.argmax(witness_epsilon(steps, lo, hi, delta)))])
    tp, fp = int(np.sum(b_in >= thr)), int(np.sum(b_out >= thr))
    lo, hi = cp_rate_bounds(tp, n_pos, fp, n_neg, confidence)
    eps = float(witness_epsilon(steps, lo, hi, delta)[0])
    # the ceiling at the claimed q, or at the rate the canaries were seen drawn if that is higher (a run that
    # samples more than it claims can show more than a noise-free run at the claimed q)
    q_seen = min(max(float(np.mean(v[:, y])) if y.any() else 0.0, 0.0), 1.0)
    ceiling = max(ceiling_per_step(n_pos, n_neg, steps, q, delta, confidence),
                  ceiling_per_step(n_pos, n_neg, steps, q_seen, delta, confidence), eps)
    return {**out, "epsilon_lb": eps, "ceiling": ceiling,
            "threshold": thr, "tp": tp, "fp": fp, "tpr_lb": float(lo), "fpr_ub": float(hi)}


@functools.lru_cache(maxsize=256)  # pure; every analysis (and each run of the power simulation) asks the same
def route_canaries_needed(route: str, claimed: float, steps: int, q: float, delta: float, confidence: float,
                          max_canaries: int = 10**7) -> int | None:
    """How many gradient canaries (fair coins, half of them counted) would lift ``route``'s ceiling above
    ``claimed`` at this route's ``confidence``; None if no number up to ``max_canaries`` would.

    one_run: ``dpaudit.core.bounds.canaries_needed`` (its 2 m delta term caps it); clopper_pearson: the second half
    must hold ``records_needed`` per class, so m = 4 x that; per_step: smallest m (to within 2 %) whose noise-free
    ceiling (on the counted three quarters) passes the claim; fdp_one_run: ``fdp_canaries_needed`` (every guess
    right, all m canaries counted: its ceiling grows with m, with no 2 m delta term)."""
    from dpaudit.core.bounds import canaries_needed, records_needed
    from dpaudit.core.fdp_one_run import fdp_canaries_needed

    if not math.isfinite(claimed):
        return None
    if route == "one_run":
        return canaries_needed(claimed, delta, confidence, max_canaries=min(max_canaries, 100_000))
    if route == "fdp_one_run":
        return fdp_canaries_needed(claimed, delta, confidence, max_canaries=max_canaries)
    if route == "clopper_pearson":
        n = records_needed(claimed, delta, confidence, max_records=max_canaries // 4 + 1)
        return None if n is None else 4 * n
    if route != "per_step":
        raise ValueError(f"unknown route {route!r}")

    def ok(m: int) -> bool:
        n = int(m * (1 - PER_STEP_SELECTION) / 2) * steps
        return ceiling_per_step(n, n, steps, q, delta, confidence) > claimed

    return smallest_passing(ok, max_canaries, start=4, within=50)


SECOND_SHARE_ROUTES = ("clopper_pearson", "per_step", "fdp_one_run")  # the routes that split the second share


def route_share_confidence(confidence: float) -> float:
    """The confidence of each route that splits the second white-box share of alpha (``SECOND_SHARE_ROUTES``, equal
    parts fixed before any data): 1 - (1 - confidence) / 3.

    >>> round(route_share_confidence(0.95), 6)
    0.983333
    """
    return 1.0 - (1.0 - float(confidence)) / len(SECOND_SHARE_ROUTES)


FDP_LABEL = "f-DP one run (Mahloujifar et al. 2025), (ε, δ) curve"


def fdp_one_run_route(scores: np.ndarray, coins: np.ndarray, delta: float, confidence: float, seed: int = 0) -> dict:
    """The one-run f-DP route (``dpaudit.core.fdp_one_run``, the argument in its docstring): the one-run route's
    guesses ("in" for the k highest scores; the same seeded tie-break), P[>= c correct] bounded through the
    (epsilon, delta) trade-off curve, which every (epsilon, delta)-DP run satisfies. No assumption beyond the fair
    coins. The guess count is not tuned on the scores: Bonferroni over ``one_run_audit``'s fixed candidates
    (m/50 .. m/2). Ceiling: every guess right (``ceiling_fdp_one_run``, at the observed number included)."""
    from dpaudit.core.fdp_one_run import ceiling_fdp_one_run, fdp_one_run_audit

    y = np.asarray(coins, bool)
    res = fdp_one_run_audit(scores, y, delta, confidence, seed=seed)
    return {"route": "fdp_one_run", "label": FDP_LABEL, "confidence": float(confidence),
            "assumption": "none beyond fair-coin inclusion ((ε, δ)-DP is exactly f-DP with the (ε, δ) trade-off "
                          "curve)",
            "guess_selection": "Bonferroni over the fixed guess counts m/50, m/20, m/10, m/5, m/2",
            "epsilon_lb": res["epsilon_lb"], "k": res["k"], "correct": res["correct"],
            "candidates_tried": res["candidates_tried"],
            "ceiling": max(ceiling_fdp_one_run(y.size, delta, confidence, n_in=int(y.sum())), res["epsilon_lb"])}


def bound_routes(x: np.ndarray, scores: np.ndarray, coins: np.ndarray, delta: float, confidence: float,
                 seed: int = 0, *, q: float, independent: bool = True, claimed: float = float("nan"),
                 one_run: dict | None = None) -> list[dict]:
    """The four bound routes on per-step observations ``x`` [T, m] (units of C) and per-canary ``scores``:
    one run at ``confidence`` (one share of alpha), and Clopper-Pearson over canaries, per-step witness
    composition and the f-DP one-run route at ``route_share_confidence(confidence)`` each (the other share, split
    in three). Each has its ceiling at its own confidence, ``valid`` (the per-step route only when ``independent``:
    every independence test accepted) and ``canaries_needed`` to pass ``claimed``. ``q``: the claimed sampling
    rate (the per-step ceiling's). The order is fixed: one_run, clopper_pearson, per_step, fdp_one_run."""
    from dpaudit.core.bounds import ceiling_one_run, one_run_audit

    y = np.asarray(coins, bool)
    m, n_in = y.size, int(y.sum())
    steps = np.asarray(x).shape[0]
    if one_run is None:
        one_run = one_run_audit(scores, y, delta, confidence, seed=seed).to_dict()
    share = route_share_confidence(confidence)
    one = {"route": "one_run", "label": "one run (Steinke, Nasr & Jagielski 2023)", "confidence": confidence,
           "assumption": "none beyond fair-coin inclusion", "epsilon_lb": float(one_run["epsilon_lb"]),
           "ceiling": ceiling_one_run(m, delta, confidence, n_in=n_in), "valid": True}
    cp = canary_cp_route(scores, y, random_half(m, seed), delta, share)
    ps = per_step_witness_route(x, y, random_half(m, seed, PER_STEP_SELECTION), delta, share, q)
    fdp = fdp_one_run_route(scores, y, delta, share, seed)
    cp["valid"] = fdp["valid"] = True
    ps["valid"] = bool(independent)
    if not independent:
        ps["why_not_counted"] = "an independence test rejected, so the per-step argument does not hold"
    out = [one, cp, ps, fdp]
    for r in out:
        r["canaries_needed"] = route_canaries_needed(r["route"], claimed, steps, q, delta, r["confidence"])
    return out


# --------------------------------------------------------------------------- mechanisms with exact epsilon

MECHANISMS = ("randomized_response", "gaussian", "laplace", "subsampled_gaussian")


def simulate_mechanism(name: str, m: int, steps: int, seed: int, param: float, q: float = 1.0) -> tuple:
    """Per-step observations [steps, m] of m fair-coin canaries through a mechanism whose epsilon is known exactly,
    for soundness checks: (x, coins). An included canary's step is drawn from P, an excluded one's from Q:

    * randomized_response: P = Bern(p), Q = Bern(1 - p), p = ``param``;
    * gaussian: P = N(1, s^2), Q = N(0, s^2), s = ``param``;
    * laplace: P = Laplace(1, b), Q = Laplace(0, b), b = ``param``;
    * subsampled_gaussian: P = (1 - q) N(0, s^2) + q N(1, s^2), Q = N(0, s^2) (DP-SGD's view of one record)."""
    rng = np.random.default_rng([int(seed), 0x50D])
    coins = rng.random(m) < 0.5
    c = coins[None, :]
    if name == "randomized_response":
        u = rng.random((steps, m))
        x = np.where(c, u < param, u >= param).astype(np.float64)
    elif name == "gaussian":
        x = c * 1.0 + param * rng.standard_normal((steps, m))
    elif name == "laplace":
        x = c * 1.0 + rng.laplace(0.0, param, (steps, m))
    elif name == "subsampled_gaussian":
        x = (c & (rng.random((steps, m)) < q)) * 1.0 + param * rng.standard_normal((steps, m))
    else:
        raise ValueError(f"unknown mechanism {name!r}; choose one of {MECHANISMS}")
    return x, coins


def exact_epsilon(name: str, steps: int, delta: float, param: float, q: float = 1.0) -> float:
    """The epsilon at ``delta`` of ``steps``-fold composition of ``simulate_mechanism(name)`` (both directions):
    exact for randomized response (binomial hockey-stick, computed directly) and the Gaussian (Balle & Wang 2018,
    mu = sqrt(T) / s); dp_accounting's PLD (a tight upper estimate, so a sound bound must stay below it) for the
    Laplace and the Poisson-subsampled Gaussian."""
    if name == "randomized_response":
        k = np.arange(steps + 1)
        pa, pb = stats.binom.pmf(k, steps, param), stats.binom.pmf(k, steps, 1 - param)

        def d(e):
            return float(np.sum(np.maximum(0.0, pa - math.exp(e) * pb)))
    elif name == "gaussian":
        mu = math.sqrt(steps) / param

        def d(e):
            return float(stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2))
    elif name in ("laplace", "subsampled_gaussian"):
        import dp_accounting

        ev = (dp_accounting.LaplaceDpEvent(param) if name == "laplace" else
              dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(param)))
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
        acc.compose(dp_accounting.SelfComposedDpEvent(ev, steps))
        return float(acc.get_epsilon(delta))
    else:
        raise ValueError(f"unknown mechanism {name!r}; choose one of {MECHANISMS}")
    if d(0.0) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while d(hi) > delta:
        lo, hi = hi, 2 * hi
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if d(mid) > delta else (lo, mid)
    return hi


def routes_text(routes: list[dict], claimed: float, m: int, delta: float) -> str:
    """What each white-box route shows against ``claimed``, and how many gradient canaries would lift its ceiling
    above it, in one sentence built only from the routes' numbers.

    >>> r = [{"route": "one_run", "label": "one run", "epsilon_lb": 1.9, "ceiling": 4.6, "canaries_needed": None, "valid": True},
    ...      {"route": "per_step", "label": "per-step witness composition", "epsilon_lb": 3.4, "ceiling": 160.0, "canaries_needed": 9,
    ...       "valid": True}]
    >>> print(routes_text(r, 8.0, 1000, 1e-5))
    White-box routes against the claimed ε = 8 (1,000 gradient canaries): one run ε ≥ 1.90 (ceiling 4.60; no number of canaries lifts it above 8 at δ = 1e-05: its 2mδ term); per-step witness composition ε ≥ 3.40 (ceiling 160.00, already above the claim from about 9 canaries).
    """
    if not math.isfinite(claimed):
        return ""
    parts = []
    for r in routes:
        need = r.get("canaries_needed")
        lb = f"{r['label']} ε ≥ {r['epsilon_lb']:.2f}" + ("" if r.get("valid", True) else
                                                          " (not counted: an independence test rejected)")
        if r["ceiling"] > claimed:
            more = f"ceiling {r['ceiling']:.2f}, already above the claim" + (
                f" from about {need:,} canaries" if need is not None else "")
        elif need is None:
            more = (f"ceiling {r['ceiling']:.2f}; no number of canaries lifts it above {claimed:g} at δ = {delta:g}"
                    + (": its 2mδ term" if r.get("route") == "one_run" else ""))
        else:
            more = f"ceiling {r['ceiling']:.2f}; about {need:,} canaries would lift it above {claimed:g}"
        parts.append(f"{lb} ({more})")
    return (f"White-box routes against the claimed ε = {claimed:g} ({m:,} gradient canaries): " + "; ".join(parts)
            + ".")
