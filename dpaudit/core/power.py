"""What an audit could have seen: the detectable ε of each route, by seeded simulation.

A bound that does not exceed the claim says nothing by itself: the audit may simply have been too small to see a
leak. So every DP verdict states the **detectable ε**: the smallest true ε that this audit, at its own sample
sizes, per-bound confidences and statistics, refutes (bound > claimed ε) with probability >= 80%, estimated on
``N_SIMS`` seeded simulated audits at each true ε of a geometric bisection. ``consistent`` needs it to be at most
``bounds.POWER_MULTIPLE`` (2) times the claim.

Each route plugs in as a simulator ``simulate(effect, rng, n) -> bool[n]`` (refuted or not) or ``-> float[n]``
(the simulated bounds, compared with the claim), and :func:`detectable_epsilon` / :func:`detectable_effect` bisect
over it. The routes here, each with its stated leakage model:

* attacks (Clopper-Pearson at a threshold fixed in advance): :func:`cp_simulator`. Members' attack scores
  N(μ, 1), non-members' N(0, 1): μ-Gaussian DP, whose (ε, δ) curve gives the true ε at the audit's δ
  (Dong, Roth & Su 2019; :func:`gdp_epsilon`). The threshold is the one that maximises the bound at the
  model's expected counts (the limit of the audit's choice on many reference models).
* black-box canaries (one run, balanced guesses): :func:`one_run_simulator`, the same Gaussian model on the
  canaries' scores, at the audit's m and its observed number of canaries in (the count is held fixed).
* white-box gradient canaries: :func:`whitebox_simulator`, the claimed DP-SGD mechanism (σ, q, steps, clip)
  with the noise scaled by a factor < 1, scored as ``dpaudit.training.whitebox.analyse`` scores it (log-likelihood
  ratios at the claimed σ and q; one-run and Clopper-Pearson bounds; the noise conformance test), and the
  true ε of the scaled mechanism from the caller's accountant.

Pure numpy/scipy; no torch (the white-box route's accountant is passed in).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize, stats

from dpaudit.core.bounds import (
    POWER,
    balanced_candidates,
    epsilon_lb_clopper_pearson_counts,
    one_run_p_values,
)

__all__ = ["EPS_MAX", "N_SIMS", "POWER", "POWER_METHOD", "cp_simulator", "detectable_effect",
           "detectable_epsilon", "detectable_epsilon_cp", "detectable_epsilon_one_run", "gdp_epsilon", "gdp_mu",
           "whitebox_detectable", "whitebox_simulator"]

N_SIMS = 200  # simulated audits per true ε: the power estimate's standard error is about 0.03 at 80%
EPS_MAX = 30.0  # no true ε above this is simulated: "not detectable" beyond it
REL_TOL = 0.03  # the bisection stops when the bracket is within 3%; the upper end (power reached) is returned

POWER_METHOD = (
    f"detectable ε: the smallest true ε this audit refutes (bound > claimed ε) with probability ≥ {POWER:.0%}, "
    f"estimated on {N_SIMS} seeded simulated audits per true ε (geometric bisection to {REL_TOL:.0%}) at the "
    "audit's own sample sizes, per-bound confidences and statistics. Leakage models: attacks and black-box canaries, "
    "members' scores N(μ, 1) against non-members' N(0, 1) (μ-Gaussian DP; its (ε, δ) curve gives the true ε at "
    "the audit's δ); white-box gradient canaries, the claimed DP-SGD mechanism with less noise (σ × f), scored as "
    "the audit scores it, its true ε from the accountant. The audit's detectable ε is the smallest over its routes.")


# --------------------------------------------------------------------------- the Gaussian leakage model

def _gdp_delta(eps: float, mu: float) -> float:
    return float(stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2))


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε of a μ-Gaussian-DP mechanism at ``delta`` (Dong, Roth & Su 2019): the ε where its privacy profile
    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) equals ``delta``.

    >>> round(gdp_epsilon(1.0, 1e-5), 2), round(gdp_epsilon(2.0, 1e-5), 2)
    (4.38, 10.0)
    """
    mu, delta = float(mu), float(delta)
    if not (mu > 0 and 0 < delta < 1):
        raise ValueError(f"need mu > 0 and 0 < delta < 1, got {mu}, {delta}")
    if _gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while _gdp_delta(hi, mu) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: _gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10))


@functools.lru_cache(maxsize=4096)
def gdp_mu(epsilon: float, delta: float) -> float:
    """The μ whose μ-GDP mechanism has exactly ``epsilon`` at ``delta`` (inverse of :func:`gdp_epsilon`).

    >>> round(gdp_mu(4.377178, 1e-5), 4)
    1.0
    """
    eps, delta = float(epsilon), float(delta)
    if not (eps >= 0 and 0 < delta < 1):
        raise ValueError(f"need epsilon >= 0 and 0 < delta < 1, got {epsilon}, {delta}")
    lo = 1e-9
    if _gdp_delta(eps, lo) >= delta:
        return lo
    hi = 1.0
    while _gdp_delta(eps, hi) < delta:
        hi *= 2
    return float(optimize.brentq(lambda m: _gdp_delta(eps, m) - delta, lo, hi, xtol=1e-12))


# --------------------------------------------------------------------------- the bisection

def _rate(simulate: Callable, x: float, claim: float, n_sims: int, seed: int) -> float:
    # the same seed at every x (common random numbers): the estimated power curve is then close to monotone
    out = np.asarray(simulate(x, np.random.default_rng([int(seed), 0x9E3]), n_sims))
    refuted = out if out.dtype == bool else out > claim
    return float(np.mean(refuted))


def detectable_effect(simulate: Callable[[float, np.random.Generator, int], Any], weak: float, strong: float, *,
                      claim: float, power: float = POWER, n_sims: int = N_SIMS, seed: int = 0,
                      rel_tol: float = REL_TOL) -> float | None:
    """The effect closest to ``weak`` (no leak beyond the claim) at which ``simulate`` refutes the claim with
    estimated probability >= ``power``; None if not even ``strong`` does. Effects are positive and the power is
    taken to grow from ``weak`` to ``strong`` (either order: ε grows, a noise factor shrinks); geometric
    bisection, returning the strong end of the final bracket (where power was reached)."""
    if not (weak > 0 and strong > 0):
        raise ValueError(f"effects must be > 0, got {weak} and {strong}")
    if _rate(simulate, strong, claim, n_sims, seed) < power:
        return None
    lo, hi = weak, strong  # lo: power not (known to be) reached; hi: reached
    # walk from the weak end in factors of 2 first, so that a detectable effect near the claim costs few steps
    step = 2.0 if strong > weak else 0.5
    x = weak * step
    while (x < strong) if strong > weak else (x > strong):
        if _rate(simulate, x, claim, n_sims, seed) >= power:
            hi = x
            break
        lo = x
        x *= step
    while max(lo, hi) / min(lo, hi) > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        if _rate(simulate, mid, claim, n_sims, seed) >= power:
            hi = mid
        else:
            lo = mid
    return float(hi)


def detectable_epsilon(simulate: Callable[[float, np.random.Generator, int], Any], claim: float, *,
                       power: float = POWER, n_sims: int = N_SIMS, seed: int = 0, eps_max: float = EPS_MAX,
                       rel_tol: float = REL_TOL) -> float:
    """Smallest true ε (above ``claim``) that ``simulate(true_eps, rng, n)`` refutes with probability >=
    ``power``; ``inf`` if none up to ``eps_max`` is. ``simulate`` returns n booleans (refuted) or n simulated
    bounds (refuted: bound > claim).

    >>> sim = lambda eps, rng, n: eps + rng.standard_normal(n) - 1.0   # a bound of eps - 1 +- 1
    >>> 2.75 < detectable_epsilon(sim, 1.0, n_sims=4000) < 3.0
    True
    """
    claim = float(claim)
    if not claim >= 0:
        raise ValueError(f"claim must be >= 0, got {claim}")
    weak = max(claim, 1e-3)
    if weak >= eps_max:
        return math.inf
    x = detectable_effect(simulate, weak, eps_max, claim=claim, power=power, n_sims=n_sims, seed=seed,
                          rel_tol=rel_tol)
    return math.inf if x is None else x


# --------------------------------------------------------------------------- attacks: Clopper-Pearson

def _model_threshold(mu: float, n_pos: int, n_neg: int, delta: float, confidence: float) -> float:
    """The threshold with the largest Clopper-Pearson bound at the Gaussian model's expected counts."""
    t = np.linspace(-1.0, mu + 6.0, 400)
    tp = np.rint(stats.norm.sf(t - mu) * n_pos)
    fp = np.rint(stats.norm.sf(t) * n_neg)
    eps = epsilon_lb_clopper_pearson_counts(tp, n_pos, fp, n_neg, delta, confidence)
    return float(t[int(np.argmax(eps))])


def cp_simulator(n_pos: int, n_neg: int, delta: float, confidence: float) -> Callable:
    """Simulated Clopper-Pearson bounds of an attack on ``n_pos`` members and ``n_neg`` non-members whose scores
    are N(μ, 1) and N(0, 1), μ the Gaussian-DP μ of the true ε at ``delta``."""
    def simulate(eps: float, rng: np.random.Generator, n: int) -> np.ndarray:
        mu = gdp_mu(eps, delta)
        t = _model_threshold(mu, n_pos, n_neg, delta, confidence)
        tp = rng.binomial(n_pos, stats.norm.sf(t - mu), n)
        fp = rng.binomial(n_neg, stats.norm.sf(t), n)
        return epsilon_lb_clopper_pearson_counts(tp, n_pos, fp, n_neg, delta, confidence)
    return simulate


@functools.lru_cache(maxsize=256)
def detectable_epsilon_cp(claim: float, n_pos: int, n_neg: int, delta: float, confidence: float,
                          seed: int = 0) -> float:
    """Detectable ε of an attack's Clopper-Pearson bound at these counts (cached per counts and confidence)."""
    return detectable_epsilon(cp_simulator(n_pos, n_neg, delta, confidence), claim, seed=seed)


# --------------------------------------------------------------------------- black-box canaries: one run

def one_run_simulator(m: int, n_in: int, delta: float, confidence: float, claim: float) -> Callable:
    """Whether ``one_run_audit_balanced`` on m canaries (n_in of them in, held fixed) refutes ``claim``, with
    canary scores N(μ, 1) in and N(0, 1) out: the same candidates and Bonferroni split, decided exactly by the
    one-run p-value at the claim (the bound exceeds the claim exactly when that p-value is at most α)."""
    cands = balanced_candidates(m)
    a_each = (1.0 - confidence) / len(cands)
    pv = {k: one_run_p_values(m, 2 * k, claim, delta) for k in cands}
    y = np.zeros(m, bool)
    y[:n_in] = True

    def simulate(eps: float, rng: np.random.Generator, n: int) -> np.ndarray:
        mu = gdp_mu(eps, delta)
        s = rng.standard_normal((n, m)) + mu * y
        yo = y[np.argsort(-s, axis=1)]
        c_in = np.cumsum(yo, axis=1)
        c_out = np.cumsum(~yo[:, ::-1], axis=1)
        refuted = np.zeros(n, bool)
        for k in cands:
            refuted |= pv[k][c_in[:, k - 1] + c_out[:, k - 1]] <= a_each
        return refuted
    return simulate


@functools.lru_cache(maxsize=256)
def detectable_epsilon_one_run(claim: float, m: int, n_in: int, delta: float, confidence: float,
                               seed: int = 0) -> float:
    """Detectable ε of the balanced one-run canary bound (cached per counts and confidence)."""
    return detectable_epsilon(one_run_simulator(m, n_in, delta, confidence, claim), claim, seed=seed)


# --------------------------------------------------------------------------- white-box gradient canaries

def whitebox_simulator(*, m: int, n_in: int, steps: int, sigma: float, q: float, clip: float, delta: float,
                       confidence: float, claim: float, n_pool: int = 2000, seed: int = 0) -> Callable:
    """Whether the white-box route refutes the claim when the training adds ``factor`` times the claimed noise:
    the one-run bound (top-k, as ``whitebox.analyse``) or the Clopper-Pearson bound at its threshold fixed from
    the claimed mechanism exceeds ``claim``, or the noise conformance test (chi-square at level α/5) rejects.
    Canary scores are drawn from pools of ``n_pool`` simulated included and excluded canaries at each factor
    (resampled per audit): the log-likelihood ratios at the CLAIMED σ and q, as the audit scores them."""
    from dpaudit.core.whitebox import fixed_threshold, llr_scores, simulate_claimed

    sim_in, sim_out = simulate_claimed(n_pool * 2, steps, sigma, q, clip, seed)
    thr = fixed_threshold(sim_in, sim_out, m // 2, m - m // 2, delta, confidence)
    cands = sorted({max(1, m // d) for d in (50, 20, 10, 5, 2)})  # one_run_audit's default candidates
    a_each = (1.0 - confidence) / len(cands)
    pv = {k: one_run_p_values(m, k, claim, delta) for k in cands}
    n_out = m - n_in
    a_conf = (1.0 - confidence) / 5

    def simulate(factor: float, rng: np.random.Generator, n: int) -> np.ndarray:
        r2 = np.random.default_rng([int(seed), 0xF00, int(round(factor * 1e6))])
        drawn = r2.random((steps, n_pool)) < q
        pool_in = llr_scores(clip * drawn + r2.standard_normal((steps, n_pool)) * sigma * factor * clip, sigma, q, clip)
        pool_out = llr_scores(r2.standard_normal((steps, n_pool)) * sigma * factor * clip, sigma, q, clip)
        s_in = pool_in[rng.integers(0, n_pool, (n, n_in))]
        s_out = pool_out[rng.integers(0, n_pool, (n, n_out))]
        s = np.concatenate([s_in, s_out], axis=1)
        y = np.zeros(m, bool)
        y[:n_in] = True
        yo = y[np.argsort(-s, axis=1)]
        c_in = np.cumsum(yo, axis=1)
        refuted = np.zeros(n, bool)
        for k in cands:
            refuted |= pv[k][c_in[:, k - 1]] <= a_each
        if 0 < n_in < m:
            tp, fp = (s_in >= thr).sum(1), (s_out >= thr).sum(1)
            refuted |= epsilon_lb_clopper_pearson_counts(tp, n_in, fp, n_out, delta, confidence) > claim
        if n_out:
            # sum of squares of the excluded canaries' observations / (σC)² is factor² χ²(steps · n_out)
            k = steps * n_out
            chi = rng.chisquare(k, n) * factor ** 2
            p = 2.0 * np.minimum(stats.chi2.cdf(chi, k), stats.chi2.sf(chi, k))
            refuted |= p <= a_conf
        return refuted
    return simulate


def whitebox_detectable(*, m: int, n_in: int, steps: int, sigma: float, q: float, clip: float, delta: float,
                        confidence: float, claim: float, epsilon_of_sigma: Callable[[float], float],
                        seed: int = 0, n_sims: int = N_SIMS) -> dict:
    """The white-box route's detectable noise factor f (the largest σ × f it refutes with probability >= 80%)
    and its true ε, ``epsilon_of_sigma(σ × f)`` (the claimed accountant at the claimed q and steps)."""
    sim = whitebox_simulator(m=m, n_in=n_in, steps=steps, sigma=sigma, q=q, clip=clip, delta=delta,
                             confidence=confidence, claim=claim, seed=seed)
    f = detectable_effect(sim, 0.999, 0.05, claim=claim, n_sims=n_sims, seed=seed)
    if f is None:
        return {"detectable_noise_factor": None, "detectable_epsilon": math.inf}
    return {"detectable_noise_factor": f, "detectable_epsilon": float(epsilon_of_sigma(sigma * f))}
