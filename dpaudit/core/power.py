"""What an audit could have seen: the detectable ε of each route, by seeded simulation.

A bound that does not exceed the claim says nothing by itself: the audit may simply have been too small to see a
leak. So every DP verdict states the **detectable ε**: the smallest true ε that this audit, at its own sample
sizes, per-bound confidences and statistics, refutes (bound > claimed ε) with probability >= 80%, estimated on
``N_SIMS`` seeded simulated audits at each true ε of a geometric bisection (the white-box route: ``WB_N_SIMS``
whole simulated analyses per noise factor on a grid, as each costs a fraction of a second). ``consistent`` needs it to be at most
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
  with the noise scaled by a factor f < 1, at the audited run's own canaries, coins, steps and epochs
  (:func:`simulated_observations`), each simulated run put through the audit's own analysis
  (``dpaudit.core.whitebox.analyse``: every conformance test and bound route, at the audit's confidence and
  analysis seed) and decided as the verdict decides (:func:`whitebox_detected`: nonconformant, or the best valid
  bound above the claim); :func:`whitebox_detectable` searches f on a grid anchored where the noise-scale test
  alone has the power, and states the rate at the f it reports with its exact 95% interval. The true ε of the
  scaled mechanism comes from the caller's accountant.

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

__all__ = ["EPS_MAX", "N_SIMS", "POWER", "POWER_METHOD", "WB_GRID", "WB_N_SIMS", "binomial_ci", "cp_simulator",
           "detectable_effect", "detectable_epsilon", "detectable_epsilon_cp", "detectable_epsilon_one_run",
           "gdp_epsilon", "gdp_mu", "simulated_observations", "whitebox_detectable", "whitebox_detected",
           "whitebox_simulator"]

N_SIMS = 200  # simulated audits per true ε: the power estimate's standard error is about 0.03 at 80%
EPS_MAX = 30.0  # no true ε above this is simulated: "not detectable" beyond it
REL_TOL = 0.03  # the bisection stops when the bracket is within 3%; the upper end (power reached) is returned
WB_N_SIMS = 30  # simulated audits per noise factor: each is a whole white-box analysis (~0.15-0.2 s at M = 1,000)
WB_GRID = 1.5  # noise-reduction grid: 1 - f = g0 x 1.5^k (about 1% in ε where the noise-scale test decides)
WB_PILOT_POWER = 0.9  # g0: where the noise-scale test alone has this power (the grid's anchor, k = 0)
WB_MAX_POINTS = 6  # noise factors simulated at most (the search stops there: its cost is bounded)
WB_G_MAX = 0.95  # the most noise removed: f >= 0.05

POWER_METHOD = (
    f"detectable ε: the smallest true ε this audit refutes (bound > claimed ε) with probability ≥ {POWER:.0%}, "
    f"estimated on seeded simulated audits at the audit's own sample sizes, per-bound confidences and statistics. "
    f"Attacks and black-box canaries: members' scores N(μ, 1) against non-members' N(0, 1) (μ-Gaussian DP; its "
    f"(ε, δ) curve gives the true ε at the audit's δ), {N_SIMS} simulated audits per true ε, geometric bisection "
    f"to {REL_TOL:.0%}. White-box gradient canaries: the claimed DP-SGD mechanism with less noise (σ × f) at the "
    f"run's own canaries, coins, steps, epochs, q and C, each simulated run put through the audit's own white-box "
    f"analysis (every conformance test and bound route; refuted: nonconformant or best valid bound > claim), "
    f"{WB_N_SIMS} simulated audits per f on a grid 1 − f = g₀ × {WB_GRID:g}^k; the f closest to 1 whose rate "
    f"is ≥ {POWER:.0%}, its true ε from the claimed accountant. The audit's detectable ε is the smallest over its "
    "routes.")


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

def simulated_observations(template, factor: float, index: int, seed: int = 0):
    """Run ``index`` of the power simulation: ``template`` (the audited run's WhiteBoxObservations) with its
    observations replaced by the CLAIMED mechanism's, except that the noise is ``factor`` times the claimed
    σ C. Everything else is the audited run's: the m canaries and their coins (which are in), the steps the
    accountant composed and their epochs, q, C, δ, the claimed ε, lr, momentum and scale (for the final-model
    view). Common random numbers: run ``index`` draws the same sampling and the same standard noise at every
    factor, so the estimated detection rate moves only with the factor."""
    import dataclasses

    coins = np.asarray(template.coins, bool)
    steps = int(template.steps_accounted)
    eos = np.asarray(template.epoch_of_step, np.int64)
    if eos.size != steps:  # the observed run lost or added steps: the claimed run has the accounted ones
        per = int(np.bincount(eos).max()) if eos.size else max(steps, 1)
        eos = np.arange(steps) // max(per, 1)
    rng = np.random.default_rng([int(seed), 0x5EB, int(index)])
    q, sigma, clip = float(template.sample_rate), float(template.noise_multiplier), float(template.max_grad_norm)
    drawn = (rng.random((steps, coins.size)) < q) & coins
    z = rng.standard_normal((steps, coins.size))
    obs = clip * drawn + z * (sigma * float(factor) * clip)
    w = dataclasses.replace(template, obs=obs, epoch_of_step=eos, n_param_updates=steps, final_w=np.zeros(0))
    final_w = -(float(template.lr) / float(template.grad_scale)) * (w.step_weights() @ obs)
    return dataclasses.replace(w, final_w=final_w)


def whitebox_detected(result) -> bool:
    """The audit's decision on one white-box analysis (``dpaudit.core.whitebox.analyse``'s result): the claim is
    refuted when the run is nonconformant or the best valid bound route exceeds the claimed ε (the verdict
    rule, ``dpaudit.schema.verdict_status``, on the white-box evidence alone)."""
    return (not result.conformant) or result.epsilon_lb_best > result.claimed_epsilon


def whitebox_simulator(template, *, confidence: float, analysis_seed: int, seed: int = 0) -> Callable:
    """``decide(factor, index) -> bool``: whether the audit's white-box analysis, run exactly as the audit ran it
    (``dpaudit.core.whitebox.analyse`` at ``confidence`` and ``analysis_seed``: all conformance tests, every
    bound route, the same random halves), refutes the claim on :func:`simulated_observations` run ``index`` at
    noise factor ``factor``. Only the empirical ε is skipped (no decision reads it)."""
    from dpaudit.core.whitebox import analyse

    def decide(factor: float, index: int) -> bool:
        w = simulated_observations(template, factor, index, seed)
        return whitebox_detected(analyse(w, confidence=confidence, seed=analysis_seed, empirical=False))
    return decide


def _noise_test_pilot(n_values: int, alpha_each: float, power: float) -> float:
    """1 - f at which the chi-square noise-scale test alone (sum o^2 / (σC)^2 ~ f^2 χ²_n, two-sided at
    ``alpha_each``) rejects with probability ``power``: where the grid starts (the whole analysis rejects at least
    as often). Only a starting point: every figure stated is simulated."""
    if n_values < 1:
        return 0.05
    crit = stats.chi2.ppf(alpha_each / 2, n_values)
    # P(f^2 χ²_n <= crit) = power  <=>  f^2 = crit / χ²_n's power-quantile
    f = math.sqrt(crit / stats.chi2.ppf(power, n_values))
    return float(min(max(1.0 - f, 1e-4), WB_G_MAX))


def binomial_ci(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``level`` interval for a rate of ``hits`` in ``n``.

    >>> lo, hi = binomial_ci(24, 30)
    >>> round(lo, 3), round(hi, 3)
    (0.614, 0.923)
    """
    a = 1.0 - level
    lo = 0.0 if hits == 0 else float(stats.beta.ppf(a / 2, hits, n - hits + 1))
    hi = 1.0 if hits == n else float(stats.beta.ppf(1 - a / 2, hits + 1, n - hits))
    return lo, hi


def grid_search(decide: Callable[[float, int], bool], g0: float, *, n_sims: int, power: float = POWER,
                grid: float = WB_GRID, max_points: int = WB_MAX_POINTS,
                g_max: float = WB_G_MAX) -> tuple[int | None, dict[int, list[bool]]]:
    """The white-box power search (see :func:`whitebox_detectable`) over noise factors f = 1 - g0 x ``grid``^k:
    ``decide(f, i)`` is simulated run i's decision at f. Returns (the k of the factor closest to 1 whose
    estimated rate is >= ``power``, None if none up to ``g_max``; every k simulated -> its decisions). A factor
    is abandoned as soon as it can no longer reach ``power`` x ``n_sims`` detections (or stops once it has); the
    returned one is completed to all ``n_sims`` runs.

    >>> k, runs = grid_search(lambda f, i: f < 0.9, 0.05, n_sims=10)   # detected below f = 0.9
    >>> k, round(1 - 0.05 * 1.5 ** k, 4), {j: (sum(r), len(r)) for j, r in sorted(runs.items())}
    (2, 0.8875, {0: (0, 3), 1: (0, 3), 2: (10, 10), 3: (8, 8)})
    """
    need = math.ceil(power * n_sims - 1e-9)
    runs: dict[int, list[bool]] = {}

    def g_of(k: int) -> float:
        return g0 * grid ** k

    def ok(k: int, complete: bool = False) -> bool:
        r = runs.setdefault(k, [])
        while len(r) < n_sims:
            hits = sum(r)
            if not complete and (hits >= need or len(r) - hits > n_sims - need):
                break  # decided: it reaches power x n_sims detections, or it no longer can
            r.append(bool(decide(1.0 - g_of(k), len(r))))
        return sum(r) >= need

    best = lo = None  # best: the weakest factor known to reach power; lo: the strongest known to fall short
    if ok(0):
        best, k = 0, -1
        while len(runs) < max_points and ok(k):
            best, k = k, k - 1
    else:
        lo, step = 0, 1
        while len(runs) < max_points and g_of(lo + step) <= g_max:
            if ok(lo + step):
                best = lo + step
                break
            lo, step = lo + step, step * 2
        k_max = int(math.floor(math.log(g_max / g0) / math.log(grid) + 1e-9))
        if best is None and len(runs) < max_points and k_max > lo and ok(k_max):
            best = k_max
        while best is not None and best - lo > 1 and len(runs) < max_points:
            mid = (lo + best) // 2
            if ok(mid):
                best = mid
            else:
                lo = mid
    if best is not None:
        ok(best, complete=True)  # the reported factor's rate from all n_sims runs
    return best, runs


def whitebox_detectable(template, *, confidence: float, epsilon_of_sigma: Callable[[float], float],
                        analysis_seed: int = 0, seed: int = 0, n_sims: int = WB_N_SIMS, power: float = POWER,
                        grid: float = WB_GRID, max_points: int = WB_MAX_POINTS) -> dict:
    """The white-box route's detectable noise factor f and its true ε, by simulating the audit itself.

    Each simulated audit is the audited run's shapes (``template``: its canaries, coins, steps, epochs, q, C)
    with the claimed DP-SGD mechanism's observations at noise σ × f, analysed by the audit's own ``analyse``
    (:func:`whitebox_simulator`); detected = nonconformant or best valid bound > claim. ``n_sims`` runs per
    factor, common random numbers (seeded by ``seed``; run i is the same draws at every factor).

    The factors searched are 1 - f = g0 x ``grid``^k, g0 where the noise-scale test alone has 90% power (only
    a starting point: the whole analysis rejects at least as often). From k = 0 the search walks toward the
    claimed noise (k = -1, -2, ...) while the estimated rate stays >= ``power``, or, if k = 0 falls short, toward
    less noise (k doubling, then bisecting); the rate is taken to grow as noise falls, and at most ``max_points``
    factors are simulated. A factor that falls short is abandoned as soon as it cannot reach ``power`` x
    ``n_sims`` detections; the factor reported has all ``n_sims`` runs. The result: the factor closest to 1 on
    that grid whose estimated rate is >= ``power``, that rate with its exact 95% interval, every factor
    simulated, and ``epsilon_of_sigma(σ × f)`` (the claimed accountant at the claimed q and steps); None and
    inf when none up to ``WB_G_MAX`` less noise was."""
    sigma, claim = float(template.noise_multiplier), float(template.claimed_epsilon)
    if not math.isfinite(claim):
        return {"detectable_noise_factor": None, "detectable_epsilon": None}
    from dpaudit.core.whitebox import analyse

    decide = whitebox_simulator(template, confidence=confidence, analysis_seed=analysis_seed, seed=seed)
    coins = np.asarray(template.coins, bool)
    # one run at the claimed noise: how many conformance tests share α (the pilot's level), and a null check
    null = analyse(simulated_observations(template, 1.0, n_sims, seed), confidence=confidence, seed=analysis_seed,
                   empirical=False)
    n_tests = max(len(null.tests), 1)
    g0 = _noise_test_pilot(int(template.steps_accounted) * int((~coins).sum()), (1.0 - confidence) / n_tests,
                           WB_PILOT_POWER)
    best, runs = grid_search(decide, g0, n_sims=n_sims, power=power, grid=grid, max_points=max_points)

    def g_of(k: int) -> float:
        return g0 * grid ** k

    points = [{"noise_factor": 1.0 - g_of(k), "detected": int(sum(runs[k])), "n": len(runs[k])}
              for k in sorted(runs, reverse=True)]
    method = {"n_sims": int(n_sims), "seed": int(seed), "analysis_seed": int(analysis_seed), "grid": float(grid),
              "power": float(power), "points": points, "n_tests": int(n_tests),
              "null_detected": bool(whitebox_detected(null))}
    if best is None:
        return {"detectable_noise_factor": None, "detectable_epsilon": math.inf,
                "detectable_power": {**method, "rate": None, "rate_ci": None}}
    f = 1.0 - g_of(best)
    hits = int(sum(runs[best]))
    lo_ci, hi_ci = binomial_ci(hits, n_sims)
    return {"detectable_noise_factor": f, "detectable_epsilon": float(epsilon_of_sigma(sigma * f)),
            "detectable_power": {**method, "rate": hits / n_sims, "rate_ci": [lo_ci, hi_ci]}}
