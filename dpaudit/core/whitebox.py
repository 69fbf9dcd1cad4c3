"""White-box audit of DP-SGD with gradient canaries: does the training that ran match what its accountant assumes?

How the canaries run (dpaudit/training/train.py, ``train_model(..., gradient_canaries=GradientCanaries(m))``)
-----------------------------------------------------------------------------------------------------
Each of the ``m`` canaries is included in the training set by an independent fair coin. An included canary is an
extra record of the (enlarged) training set, drawn by the same Opacus Poisson sampler as the real records, at the
rate q = B / N' the accountant is told (N' = real records + included canaries). The model is wrapped with a
dedicated parameter vector w in R^m that never touches the model's outputs: canary j's per-example gradient is
exactly D * e_j on w (D = ``dirac_norm``, well above the clipping norm C, so that clipping must act) and exactly 0
on every real parameter; a real record's gradient on w is exactly 0. Every per-example gradient then goes through
Opacus's DPOptimizer (per-example clipping, Gaussian noise, the accountant's step hook), with dpaudit's hooks-mode
speed-ups on. After each optimizer step that was not skipped, the privatised gradient at w, multiplied back by the
optimizer's averaging factor (``expected_batch_size``), is one row of the observations:

    o[t, j] = C * [canary j drawn at step t] + N(0, sigma^2 C^2)        (gradient units, the units of C)

where sigma is the noise multiplier. The final value of w is the view of someone who only sees the released model.

What this module does with them (pure numpy/scipy; ``analyse``)
----------------------------------------------------------------
(a) epsilon lower bounds from the per-canary log-likelihood-ratio scores, (b) conformance tests with p-values of
what ran against what the accountant was told, (c) an empirical epsilon: the same accountant on the observed
sigma and q. ``tamper`` factories at the end inject the DP bugs dpaudit's self-tests must catch.
"""
from __future__ import annotations

import functools
import math
import zipfile
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from dpaudit.core.bounds import one_run_audit
from dpaudit.core.whitebox_stats import (
    BROKEN,
    bound_routes,
    canary_cp_route,
    coordinate_independence_test,
    draw_dispersion_test,
    epoch_repeat_test,
    noise_gaussian_test,
    noise_step_independence_test,
    noise_tails_test,
    omnibus_test,
    random_half,
    routes_text,
)
from dpaudit.errors import DPAuditError
from dpaudit.schema import WhiteBoxAudit

DIRAC_TIMES_CLIP = 10.0  # canary gradient norm D = 10 C: clipping must act on every canary draw
N_SIMULATED = 20000  # canaries per class simulated from the claimed mechanism for the omnibus test


@dataclass(frozen=True)
class GradientCanaries:
    """M gradient canaries, each included by an independent fair coin drawn from ``seed``.

    ``dirac_norm`` is the norm D of a canary's per-example gradient, as a multiple of the clipping norm C when
    ``relative`` (default 10: clipping must shrink it to C)."""

    m: int
    seed: int = 0
    dirac_norm: float = DIRAC_TIMES_CLIP
    relative: bool = True

    def __post_init__(self):
        if int(self.m) != self.m or self.m < 0:
            raise DPAuditError(f"--gradient-canaries must be a whole number >= 0, got {self.m}")
        if not self.dirac_norm > 0:
            raise DPAuditError(f"the canaries' gradient norm must be > 0, got {self.dirac_norm}")

    def coins(self) -> np.ndarray:
        """Which canaries are included: m independent fair coins (bool[m])."""
        return np.random.default_rng([int(self.seed), 0x6A7C]).random(int(self.m)) < 0.5

    def norm(self, max_grad_norm: float) -> float:
        return float(self.dirac_norm * max_grad_norm if self.relative else self.dirac_norm)


@dataclass(frozen=True)
class WhiteBoxObservations:
    """What one DP training run with gradient canaries exposed, and what its accountant was told.

    ``obs[t, j]``: privatised gradient at canary j's coordinate after the t-th step that was not skipped, in
    gradient units (C * drawn + noise of std sigma * C; see the module docstring). ``epoch_of_step[t]``: the epoch
    of that step. ``final_w``: the canary parameters' final values (w starts at 0). ``noise_multiplier``,
    ``sample_rate``, ``steps_accounted``: the accountant's history (what the claimed epsilon was computed from).
    ``n_param_updates``: the steps at which w actually changed, counted from its values, not from the optimizer.
    """

    obs: np.ndarray
    epoch_of_step: np.ndarray
    coins: np.ndarray
    final_w: np.ndarray
    max_grad_norm: float
    dirac_norm: float
    noise_multiplier: float
    sample_rate: float
    steps_accounted: int
    n_param_updates: int
    lr: float
    momentum: float
    grad_scale: float  # Opacus's averaging factor undone on every observation (its expected batch size)
    delta: float
    claimed_epsilon: float
    accountant: str

    @property
    def m(self) -> int:
        return int(self.coins.size)

    def save(self, path) -> None:
        """Write to ``path`` (.npz, no pickles): a cached model's observations travel beside its weights."""
        import io as _io
        from pathlib import Path

        from dpaudit.io import atomic_write_bytes

        buf = _io.BytesIO()
        arrays = {k: np.asarray(v) for k, v in asdict(self).items()}
        np.savez(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path) -> WhiteBoxObservations:
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise DPAuditError(f"{path} is not a gradient-canary observation file ({exc.__class__.__name__}); "
                               f"re-train the model") from None
        missing = set(cls.__dataclass_fields__) - set(d)
        if missing:
            raise DPAuditError(f"{path} lacks {sorted(missing)}; it was not written by this dpaudit, re-train")
        kw = {}
        for k in cls.__dataclass_fields__:
            v = d[k]
            if v.ndim == 0:
                v = v.item()
            kw[k] = v
        kw["coins"] = np.asarray(kw["coins"], bool)
        return cls(**kw)

    def final_view_scores(self) -> np.ndarray:
        """-w_final in observation units: SGD on a coordinate no other term touches gives w_T = -lr/scale *
        sum_t a_t o_t with a_t = (1 - mu^(T-t+1))/(1 - mu) (a_t = 1 without momentum)."""
        return -np.asarray(self.final_w, np.float64) * self.grad_scale / self.lr

    def step_weights(self) -> np.ndarray:
        t = self.obs.shape[0]
        mu = float(self.momentum)
        if mu == 0:
            return np.ones(t)
        k = np.arange(t, 0, -1)  # step t (0-based) is followed by T - t - 1 more updates
        return (1.0 - mu ** k) / (1.0 - mu)


# --------------------------------------------------------------------------- scores and bounds

def llr_scores(obs: np.ndarray, sigma: float, q: float, clip: float) -> np.ndarray:
    """Per-canary log-likelihood ratio of "included" against "excluded" under the claimed mechanism:
    sum_t log((1 - q) + q exp((2 o_t / C - 1) / (2 sigma^2))). The observations are independent across steps
    (Poisson sampling, fresh noise), so this is the exact LLR of all T observations: by Neyman-Pearson the most
    powerful statistic to threshold."""
    o = np.asarray(obs)
    lq, l1q = math.log(q), math.log1p(-q)

    def block(v):
        a = (2.0 * (np.asarray(v, np.float64) / clip) - 1.0) / (2.0 * sigma * sigma)
        return np.logaddexp(l1q, lq + a).sum(axis=0)  # log((1-q) + q e^a) without overflow for large a

    if o.ndim < 2:
        return block(o)
    # column blocks of about 2M values: the temporaries stay small when m x T is large (m = 10,000 canaries over
    # a Fashion-MNIST run's 3,000 steps are 30M values); each canary's sum runs over its own column as before
    cols = max(1, 2_000_000 // max(o.shape[0], 1))
    out = np.empty(o.shape[1:], np.float64)
    for j in range(0, o.shape[1], cols):
        out[j:j + cols] = block(o[:, j:j + cols])
    return out


def simulate_claimed(n: int, steps: int, sigma: float, q: float, clip: float, seed: int,
                     weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Observations of ``n`` included and ``n`` excluded canaries from the claimed mechanism (seeded), as the
    scores the analysis uses: (llr_in, llr_out), or weighted sums sum_t a_t o_t when ``weights`` is given.
    The LLR scores are memoised (read-only arrays): a pure function of its arguments, and the power simulation
    (dpaudit.core.power) re-runs the analysis, whose omnibus test asks for the same ones, many times."""
    if weights is None:
        return _simulate_claimed_llr(int(n), int(steps), float(sigma), float(q), float(clip), int(seed))
    return _simulate_claimed(n, steps, sigma, q, clip, seed, np.asarray(weights, np.float64))


@functools.lru_cache(maxsize=8)
def _simulate_claimed_llr(n: int, steps: int, sigma: float, q: float, clip: float,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
    s_in, s_out = _simulate_claimed(n, steps, sigma, q, clip, seed, None)
    s_in.flags.writeable = False
    s_out.flags.writeable = False
    return s_in, s_out


def _simulate_claimed(n: int, steps: int, sigma: float, q: float, clip: float, seed: int,
                      weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([int(seed), 0x51A])
    out_scores, in_scores = [], []
    chunk = max(1, 2_000_000 // max(steps, 1))
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        noise_in = rng.standard_normal((steps, k)) * sigma * clip
        noise_out = rng.standard_normal((steps, k)) * sigma * clip
        drawn = rng.random((steps, k)) < q
        o_in = clip * drawn + noise_in
        if weights is None:
            in_scores.append(llr_scores(o_in, sigma, q, clip))
            out_scores.append(llr_scores(noise_out, sigma, q, clip))
        else:
            in_scores.append(weights @ o_in)
            out_scores.append(weights @ noise_out)
    return np.concatenate(in_scores), np.concatenate(out_scores)


def _bounds(scores: np.ndarray, coins: np.ndarray, delta: float, confidence: float, seed: int) -> dict:
    """One-run bound at ``confidence`` and the split-threshold Clopper-Pearson bound at ``confidence`` (the
    final-model view: one score per canary, so no per-step route)."""
    one = one_run_audit(scores, coins, delta, confidence, seed=seed)
    out = {"one_run": one.to_dict(), "one_run_epsilon_lb": one.epsilon_lb}
    if coins.all() or not coins.any():
        out.update(cp_epsilon_lb=0.0, cp=None)
        return out
    cp = canary_cp_route(scores, coins, random_half(coins.size, seed), delta, confidence)
    out.update(cp_epsilon_lb=cp["epsilon_lb"], cp=cp)
    return out


# --------------------------------------------------------------------------- conformance tests

def _two_sided_normal(z: float) -> float:
    return float(2.0 * stats.norm.sf(abs(z))) if math.isfinite(z) else 0.0


def _test(name: str, statistic: float, p: float, alpha_each: float, what: str, **extra) -> dict:
    return {"name": name, "statistic": float(statistic), "p_value": float(p), "passed": bool(p > alpha_each),
            "what": what, **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in extra.items()}}


def noise_test(o_out: np.ndarray, sigma: float, clip: float) -> tuple[float, float, int]:
    """Excluded canaries' coordinates carry noise only: sum o^2 / (sigma C)^2 ~ chi^2_n under the claim.
    Returns (statistic, two-sided p, n)."""
    n = int(o_out.size)
    s = float(np.sum(np.square(o_out, dtype=np.float64)) / (sigma * clip) ** 2)
    p = 2.0 * min(stats.chi2.cdf(s, n), stats.chi2.sf(s, n))
    return s, float(min(p, 1.0)), n


def sigma_interval(o_out: np.ndarray, clip: float, alpha: float) -> tuple[float, float, float]:
    """sigma-hat = sqrt(mean o^2)/C from excluded canaries, with the exact chi-square (1 - alpha) interval."""
    n = int(o_out.size)
    ss = float(np.sum(np.square(o_out, dtype=np.float64))) / clip ** 2
    lo = math.sqrt(ss / stats.chi2.ppf(1 - alpha / 2, n))
    hi = math.sqrt(ss / stats.chi2.ppf(alpha / 2, n))
    return math.sqrt(ss / n), lo, hi


def _epoch_llr(x: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """Per canary-epoch log-likelihood ratio of "drawn exactly once this epoch, at a uniform step" (shuffled
    fixed-size batches) against "drawn independently at each step with rate q" (Poisson), from x = o / C [K, n]."""
    a = (2.0 * x - 1.0) / (2.0 * sigma * sigma)  # log of N(x; 1, sigma) / N(x; 0, sigma)
    k = x.shape[0]
    once = np.logaddexp.reduce(a, axis=0) - math.log(k)
    poisson = np.logaddexp(math.log1p(-q), math.log(q) + a).sum(axis=0)
    return once - poisson


def independence_statistic(o_in: np.ndarray, epoch_of_step: np.ndarray, sigma: float, q: float, clip: float,
                           seed: int = 0, n_sim: int = 200_000, n_sigma: int = 0) -> tuple[float, float]:
    """z-statistic for shuffled fixed-size batches against Poisson sampling, and the z expected under shuffling.

    Poisson sampling draws a record independently at every step; shuffled fixed-size batches draw it exactly once
    an epoch. For each included canary and epoch the statistic is the log-likelihood ratio of the two
    (``_epoch_llr``); their sum is compared with its mean and variance under Poisson sampling, simulated (seeded)
    at sigma and q. Pass the estimates sigma-hat and q-hat so that this test targets dependence across steps
    only, not the noise or the rate: then q-hat must be the mean of these same ``o_in`` / C and ``n_sigma`` the
    number of (independent, excluded-canary) values sigma-hat came from. Plugging estimates in moves the null
    mean by about n mu'(q) (q-hat - q), an error that does not shrink relative to the statistic's spread as m
    grows; it is accounted for by the delta method, with mu'(q) and mu'(sigma) the derivatives of the null mean in
    the data's parameters only (the LLR held at the plug-in values, which score the data and the simulation
    alike), from common-random-number simulations, and the covariance of each unit's LLR with its mean
    observation (q-hat is the mean of those).
    The simulation's own error enters the variance too. Its power grows with the number of included
    canary-epochs and falls fast with sigma: a draw of size C must stand out of noise of std sigma C; the second
    value says what z to expect under shuffling, so a pass at an expected z above -4 or so (claimed epsilon
    around 1, sigma of 4 or more) is weak evidence.
    """
    x = np.asarray(o_in, np.float64) / clip
    epoch_of_step = np.asarray(epoch_of_step)
    q = min(max(float(q), 1e-6), 0.5)
    rng = np.random.default_rng([int(seed), 0x1D])
    n_units = x.shape[1]
    hq, hs = 0.02 * q, 0.02 * sigma  # finite-difference steps for the plug-in derivatives
    sims: dict[int, dict] = {}
    blocks = []
    sizes = [int(np.sum(epoch_of_step == e)) for e in np.unique(epoch_of_step)]
    for e in np.unique(epoch_of_step):
        block = x[epoch_of_step == e]
        k = block.shape[0]
        if k < 2 or n_units == 0:
            continue
        if k not in sims:
            # every epoch of k steps shares this simulation, so its error in the mean is common to all of them:
            # simulate several times as many units as the data hold (within a memory cap)
            units_k = n_units * sum(1 for kk in sizes if kk == k)
            n = int(min(max(1000, n_sim // k, 8 * units_k), max(1000, 4_000_000 // k)))
            u, z = rng.random((k, n)), rng.standard_normal((k, n))
            null = (u < q) + sigma * z
            ln = _epoch_llr(null, sigma, q)
            # How the null mean moves with the data's parameters, the LLR kept at the plug-in values: common
            # random numbers (the same u, z) at q +- h and sigma +- h, scored at q and sigma. The plug-in values
            # score both the data and the simulated null, so their scoring part cancels to first order; only this
            # data part moves the statistic. (Re-scoring at q +- h as well adds a term of mean 0, the score's,
            # whose simulation noise inflated the variance: the z-statistic's sd was 0.82 on exact DP-SGD at
            # sigma 4.5, so the test was too lax there.)
            dq = (_epoch_llr((u < q + hq) + sigma * z, sigma, q).mean()
                  - _epoch_llr((u < q - hq) + sigma * z, sigma, q).mean()) / (2 * hq)
            ds = (_epoch_llr((u < q) + (sigma + hs) * z, sigma, q).mean()
                  - _epoch_llr((u < q) + (sigma - hs) * z, sigma, q).mean()) / (2 * hs)
            once = np.zeros((k, n))
            once[rng.integers(0, k, n), np.arange(n)] = 1.0
            once += sigma * rng.standard_normal((k, n))
            ls = _epoch_llr(once, sigma, q)
            sims[k] = {"n": n, "mu": float(ln.mean()), "l": ln, "xbar": null.mean(axis=0), "dq": float(dq),
                       "ds": float(ds), "shift": float(ls.mean() - ln.mean())}
        blocks.append((k, block))
    if not blocks:
        return 0.0, 0.0
    n_obs = sum(k for k, _ in blocks) * n_units  # q-hat's sample: every observation of these blocks
    d_q = sum(n_units * sims[k]["dq"] for k, _ in blocks)
    d_s = sum(n_units * sims[k]["ds"] for k, _ in blocks)
    total = mean = var = shift = 0.0
    for k, block in blocks:
        sm = sims[k]
        total += float(_epoch_llr(block, sigma, q).sum())
        mean += n_units * sm["mu"]
        # S - d_q q-hat is a sum over independent units of l_u - c x-bar_u (q-hat = sum_u k x-bar_u / n_obs)
        c = d_q * k / n_obs if n_obs else 0.0
        resid = sm["l"] - c * sm["xbar"]
        var += n_units * float(resid.var())
        shift += n_units * sm["shift"]
    for k, sm in sims.items():  # the simulated mean's error, common to every epoch of k steps
        units_k = n_units * sum(1 for kk, _ in blocks if kk == k)
        var += units_k ** 2 * float(sm["l"].var()) / sm["n"]
    if n_sigma:
        var += d_s ** 2 * sigma ** 2 / (2.0 * n_sigma)  # Var(sigma-hat) of a Gaussian scale from n_sigma values
    if var <= 0:
        return 0.0, 0.0
    return (total - mean) / math.sqrt(var), shift / math.sqrt(var)


INDEPENDENCE_TESTS = ("sampling_independence", "noise_step_independence", "noise_coordinate_independence",
                      "draw_coordinate_independence", "epoch_repeat", "draw_dispersion")


def conformance_tests(obs: np.ndarray, coins: np.ndarray, epoch_of_step: np.ndarray, sigma: float, q: float,
                      clip: float, steps_accounted: int, n_param_updates: int,
                      confidence: float = 0.95, seed: int = 0, *, n_simulated: int = N_SIMULATED,
                      n_sim_independence: int = 200_000) -> list[dict]:
    """The conformance tests, each at level (1 - confidence) / n (Bonferroni over the n tests: all pass together
    with probability >= confidence when the training is what the accountant was told). Each part of what the
    accountant assumes has its own test; ``broken`` says in words what a rejection means. See ``analyse`` and
    dpaudit/whitebox_stats.py for each null distribution. ``n_simulated``: canaries per class simulated for the
    omnibus test (0: no omnibus test); ``n_sim_independence``: the sampling-independence test's null simulation
    (``independence_statistic``'s ``n_sim``)."""
    o = np.asarray(obs, np.float64)
    coins = np.asarray(coins, bool)
    o_in, o_out = o[:, coins], o[:, ~coins]
    # in units of C (no second copy at the usual C = 1: m = 10,000 canaries over 3,000 steps are 240 MB a copy)
    x_in, x_out = (o_in, o_out) if clip == 1.0 else (o_in / clip, o_out / clip)
    rows: list[tuple] = []  # (name, statistic, p, what, extra)
    # 1. noise: excluded canaries see noise only
    if o_out.size:
        s, p, n = noise_test(o_out, sigma, clip)
        sig_hat = math.sqrt(s / n) * sigma
        rows.append(("noise_std", sig_hat, p,
                     f"noise std at excluded canaries' coordinates ({sig_hat:.4g} C from {n} values) against "
                     f"the claimed sigma C = {sigma:.4g} C (chi-square, two-sided)", {"claimed": sigma}))
    # 2. inclusion rate x clipped norm: E[o] = q C for an included canary
    if o_in.size:
        n = o_in.size
        mean = float(o_in.mean())
        sd = clip * math.sqrt(q * (1 - q) + sigma * sigma)
        z = (mean - q * clip) / (sd / math.sqrt(n))
        rows.append(("draw_rate", mean / clip, _two_sided_normal(z),
                     f"mean observation of included canaries / C = {mean / clip:.4g} against q = {q:.4g}: "
                     "tests the sampling rate and the clipped norm together (their product)", {"claimed": q}))
    # 3. clipped norm on its own: E[o^2 | in] - E[o^2 | out] = q c^2 and E[o | in] = q c, whatever q and sigma
    if o_in.size and o_out.size:
        a = o_in.ravel() ** 2 - clip * o_in.ravel()
        b = o_out.ravel() ** 2
        diff = float(a.mean() - b.mean())
        se = math.sqrt(a.var() / a.size + b.var() / b.size)
        mean = float(o_in.mean())
        c_hat = (float(np.mean(o_in ** 2)) - float(b.mean())) / mean if mean > 0 else float("inf")
        del a, b  # m x T values each: not kept alive through the tests below
        rows.append(("clipped_norm", c_hat / clip, _two_sided_normal(diff / se) if se > 0 else 0.0,
                     f"a drawn canary's contribution c = (E[o^2|in] - E[o^2|out]) / E[o|in] = {c_hat / clip:.4g} C "
                     "against C; independent of q and sigma (no clipping gives c = D)", {"claimed": 1.0}))
    # 4. sampling independence across steps (Poisson against shuffled fixed-size batches), at the estimated
    # sigma and q so that a wrong noise or rate does not show up here as well
    if o_in.size and o_out.size:
        sig_hat = math.sqrt(float(np.mean(o_out ** 2))) / clip
        q_hat = float(o_in.mean()) / clip
        z, expected = independence_statistic(o_in, np.asarray(epoch_of_step), sig_hat, q_hat, clip, seed=seed,
                                             n_sigma=o_out.size, n_sim=n_sim_independence)
        rows.append(("sampling_independence", z, _two_sided_normal(z),
                     "likelihood ratio of 'each included canary drawn exactly once an epoch' (shuffled "
                     "fixed-size batches) against independent Poisson draws, as a z-score against Poisson; "
                     f"z expected under shuffled batches: {expected:.3g} (power is low when that is below 4)",
                     {"expected_z_if_shuffled": expected}))
    # 5. steps: the steps that changed the canary parameters against the steps the accountant composed
    ok = int(n_param_updates) == int(steps_accounted) == o.shape[0]
    rows.append(("steps", n_param_updates, 1.0 if ok else 0.0,
                 f"{n_param_updates} noisy steps changed the canary parameters, {o.shape[0]} were observed, "
                 f"the accountant composed {steps_accounted}", {"claimed": int(steps_accounted)}))
    # 6-9. the noise's shape and its independence across steps and coordinates (excluded canaries: noise only)
    if o_out.size:
        st, p = noise_gaussian_test(x_out)
        rows.append(("noise_gaussian", st, p, "Kolmogorov-Smirnov distance of the excluded canaries' noise, "
                     "standardised by its own scale, from N(0, 1) (the shape, whatever the scale)", {}))
        st, p = noise_tails_test(x_out)
        rows.append(("noise_tails", st, p, "kurtosis of the excluded canaries' noise against a Gaussian's 3 "
                     "(z-score; below 0: lighter tails, e.g. bounded support)", {}))
        st, p = noise_step_independence_test(x_out)
        rows.append(("noise_step_independence", st, p, "lag-1 autocorrelation of each excluded canary's noise over "
                     "steps, pooled (self-normalised z; 0 for fresh noise)", {}))
        st, p = coordinate_independence_test(x_out)
        rows.append(("noise_coordinate_independence", st, p, "F-test of a noise component common to all excluded "
                     "canaries' coordinates at a step (1 for independent coordinates)", {}))
    # 10-12. the draws' independence across canaries, epochs and steps (included canaries)
    if o_in.size:
        st, p = coordinate_independence_test(x_in, center=True)
        rows.append(("draw_coordinate_independence", st, p, "F-test of a component common to all included "
                     "canaries at a step: draws (or noise) correlated across records (1 if independent)", {}))
        st, p = epoch_repeat_test(x_in, np.asarray(epoch_of_step))
        rows.append(("epoch_repeat", st, p, "covariance of each included canary's observation at the s-th step of "
                     "one epoch with the s-th step of every other epoch (z; 0 if batches are fresh each epoch)", {}))
        st, p = draw_dispersion_test(x_in)
        rows.append(("draw_dispersion", st, p, "dispersion of each included canary's total over the steps (its "
                     "number of draws plus noise) against Binomial(T, q) plus noise (F, 1 under Poisson)", {}))
    # 13. omnibus: score distributions against the claimed mechanism simulated
    if o_in.size and o_out.size and n_simulated > 0:
        sim_in, sim_out = simulate_claimed(n_simulated, o.shape[0], sigma, q, clip, seed + 7)
        sc = llr_scores(o, sigma, q, clip)
        st, p = omnibus_test(sc[coins], sc[~coins], sim_in, sim_out)
        rows.append(("omnibus", st, p, "Kolmogorov-Smirnov distance of the included and the excluded canaries' "
                     f"scores from {n_simulated:,} canaries each simulated from the claimed mechanism", {}))
    alpha_each = (1.0 - confidence) / len(rows)
    return [_test(name, st, p, alpha_each, what, broken=BROKEN[name], **extra) for name, st, p, what, extra in rows]


# --------------------------------------------------------------------------- result

def analyse(w: WhiteBoxObservations, confidence: float = 0.95, seed: int = 0, empirical: bool = True,
            epsilon_of=None) -> WhiteBoxAudit:
    """The white-box audit of one DP training run's canary observations.

    (a) epsilon lower bounds, four routes. ``confidence`` is the confidence of each of TWO shares of alpha
    (as before: a one-run share and a Clopper-Pearson share; a caller that gives the white-box bounds two
    Bonferroni shares at ``confidence`` each keeps its correction). The one-run route takes the first share
    whole; the second is split equally between the Clopper-Pearson, the per-step and the f-DP one-run routes
    (each at 1 - (1 - confidence) / 3, ``whitebox_stats.route_share_confidence``). Every route reports its ceiling
    at its own confidence, so the best of the four holds at 2 confidence - 1 whatever their dependence.

    * one run (Steinke, Nasr & Jagielski 2023, ``one_run_audit``) on the per-canary log-likelihood-ratio scores
      under the claimed sigma and q (``llr_scores``): holds for any (epsilon, delta)-DP training whatever the
      dependence between canaries;
    * Clopper-Pearson over canaries (``whitebox_stats.canary_cp_route``): treats the canaries as independent
      trials of one mechanism, which holds for the training as built here: canary j's observations depend only
      on (i) whether j is drawn at each step, which Poisson sampling decides for each record independently, (ii)
      its own clipped gradient D e_j, clipped to C e_j whatever else is in the batch (clipping is per example),
      and (iii) the noise on coordinate j, independent across coordinates. Real records and other canaries add
      exactly 0 at coordinate j. Its threshold is chosen on a random half of the canaries and counted once on
      the other half, so a leakier run moves the threshold with it (it is not tuned to the claimed mechanism);
    * per-step witness composition (``whitebox_stats.per_step_witness_route``, the argument in its docstring):
      pools the per-step observations, so it sees m x T trials instead of m; valid when a canary's observations
      are independent across steps and canaries, so it counts (``valid``) only when every independence test
      (``INDEPENDENCE_TESTS``) accepts;
    * f-DP one run (Mahloujifar, Melis & Chaudhuri 2025, ``dpaudit.core.fdp_one_run``, the argument in its
      docstring) on the one-run route's guesses, with the (epsilon, delta) trade-off curve: like the one-run route
      it assumes nothing beyond the fair coins, and it has no 2 m delta term, so its ceiling keeps growing with m.

    ``best_route`` names the largest valid bound, ``epsilon_lb_best`` is it. Each route also says how many
    gradient canaries would lift its ceiling above the claimed epsilon (``canaries_needed``). The final-model
    view (final w only: score -w, a monotone statistic) gets the one-run and Clopper-Pearson bounds.

    (b) conformance tests (``conformance_tests``), Bonferroni over all of them at level 1 - confidence; ``failed``
    names the rejected ones, ``broken`` says in words what each rejection means, and ``conformant`` is False when
    any rejects.

    (c) empirical epsilon: the same accountant on sigma-hat (excluded canaries' noise) and q-hat (included canaries'
    mean / C, which assumes the clipped norm is C: the clipped_norm test checks that), over the steps observed;
    the interval combines each estimate's (1 - (1 - confidence)/2) interval (epsilon grows with q and falls with
    sigma).
    """
    coins = np.asarray(w.coins, bool)
    obs = np.asarray(w.obs, np.float64)
    t, m = obs.shape
    if m != coins.size:
        raise DPAuditError(f"{m} canary columns but {coins.size} coins; the observations are damaged")
    sigma, q, clip = float(w.noise_multiplier), float(w.sample_rate), float(w.max_grad_norm)
    notes = []
    if t == 0 or m == 0:
        raise DPAuditError("no gradient-canary observations: train with gradient_canaries and at least one DP step")
    # (b) conformance first: the per-step route counts only when the independence tests accept
    tests = conformance_tests(obs, coins, w.epoch_of_step, sigma, q, clip, w.steps_accounted, w.n_param_updates,
                              confidence, seed)
    failed = [x["name"] for x in tests if not x["passed"]]
    broken = [x["broken"] for x in tests if not x["passed"]]
    independent = not any(n in INDEPENDENCE_TESTS for n in failed)
    # (a) bounds
    scores = llr_scores(obs, sigma, q, clip)
    one = one_run_audit(scores, coins, w.delta, confidence, seed=seed)
    claimed = float(w.claimed_epsilon)
    routes = bound_routes(obs if clip == 1.0 else obs / clip, scores, coins, w.delta, confidence, seed, q=q, independent=independent,
                          claimed=claimed, one_run=one.to_dict())
    bounds = {"one_run": one.to_dict(), "one_run_epsilon_lb": one.epsilon_lb, "cp": routes[1],
              "cp_epsilon_lb": routes[1]["epsilon_lb"], "per_step": routes[2], "routes": routes}
    best = max((r for r in routes if r["valid"]), key=lambda r: r["epsilon_lb"])
    best_route = best["route"] if best["epsilon_lb"] > 0 else "none"
    fbounds = _bounds(w.final_view_scores(), coins, w.delta, confidence, seed)
    # (c) estimates
    alpha = 1.0 - confidence
    o_in, o_out = obs[:, coins], obs[:, ~coins]
    if o_out.size:
        s_hat, s_lo, s_hi = sigma_interval(o_out, clip, alpha / 2)
    else:
        s_hat = s_lo = s_hi = float("nan")
    if o_in.size:
        q_hat = float(o_in.mean()) / clip
        se = float(o_in.std()) / clip / math.sqrt(o_in.size)
        zq = stats.norm.ppf(1 - alpha / 4)
        q_lo, q_hi = max(q_hat - zq * se, 1e-9), min(q_hat + zq * se, 1.0)
    else:
        q_hat = q_lo = q_hi = float("nan")
    emp = emp_ci = None
    # The empirical ε needs the claimed accountant (Opacus, in the training layer): it is passed in as
    # ``epsilon_of(q, sigma, steps, delta, accountant)``, so this module stays torch-free.
    if empirical and epsilon_of is not None and math.isfinite(s_hat) and math.isfinite(q_hat):

        def eps(qq, ss):
            try:
                return epsilon_of(min(max(qq, 1e-9), 1.0), ss, t, w.delta, w.accountant)
            except (ValueError, RuntimeError, OverflowError, ArithmeticError):  # the accountant cannot represent this (q = 1, tiny sigma): report no number
                return float("inf")
        emp = eps(max(q_hat, 1e-9), s_hat)
        emp_ci = (eps(q_lo, s_hi), eps(q_hi, s_lo))
        notes.append("empirical epsilon: the claimed accountant on observed sigma-hat and q-hat")
    return WhiteBoxAudit.from_dict(dict(
        m=m, included=int(coins.sum()), steps=t, confidence=confidence, delta=w.delta,
        claimed_epsilon=claimed, claimed_sigma=sigma, claimed_q=q, max_grad_norm=clip,
        dirac_norm=float(w.dirac_norm),
        epsilon_lb_one_run=routes[0]["epsilon_lb"], epsilon_lb_cp=routes[1]["epsilon_lb"], bounds=bounds,
        final_model_epsilon_lb_one_run=fbounds["one_run_epsilon_lb"], final_model_epsilon_lb_cp=fbounds["cp_epsilon_lb"],
        final_model_bounds=fbounds, tests=tests, conformant=not failed, failed=failed,
        sigma_hat=s_hat, sigma_ci=(s_lo, s_hi), q_hat=q_hat, q_ci=(q_lo, q_hi),
        empirical_epsilon=emp, empirical_epsilon_ci=emp_ci, accountant=w.accountant, notes=notes,
        # what the verdict reads: each route states its own ceiling at its own confidence; the best counted
        # route's bound and the largest counted ceiling
        epsilon_lb=float(best["epsilon_lb"]), ceiling=max(r["ceiling"] for r in routes if r["valid"]),
        ceiling_one_run=routes[0]["ceiling"], ceiling_cp=routes[1]["ceiling"],
        routes=routes, best_route=best_route, epsilon_lb_best=float(best["epsilon_lb"]),
        epsilon_lb_per_step=float(routes[2]["epsilon_lb"]), broken=broken,
        routes_text=routes_text(routes, claimed, m, w.delta)), "white-box analysis")


def synthetic_observations(m: int, steps: int, steps_per_epoch: int, sigma: float, q: float, clip: float = 1.0,
                           seed: int = 0, *, noise_factor: float = 1.0, true_q: float | None = None,
                           contribution: float | None = None, shuffled: bool = False, delta: float = 1e-5,
                           claimed_epsilon: float = float("nan"), accountant: str = "prv",
                           repeat_epochs: bool = False, noise: str = "gaussian", reuse_noise: bool = False,
                           shared_noise: bool = False, dtype=np.float64) -> WhiteBoxObservations:
    """Observations drawn from the exact mechanism (or a bugged one), without training: for tests and planning.
    ``noise_factor`` scales the noise actually added, ``true_q`` the rate actually sampled, ``contribution`` a
    drawn canary's actual contribution (default C), ``shuffled`` draws each included canary exactly once an epoch,
    ``repeat_epochs`` repeats the first epoch's Poisson batches in every epoch, ``noise`` "uniform" or
    "rademacher" adds noise of the right variance but not Gaussian, ``reuse_noise`` adds one noise vector at every
    step, ``shared_noise`` one noise value to every coordinate at a step. ``dtype``: the observations' (float32 is
    what training stores)."""
    rng = np.random.default_rng([int(seed), 0xB0C])
    coins = rng.random(m) < 0.5
    qq = q if true_q is None else true_q
    c = clip if contribution is None else contribution
    if shuffled:
        drawn = np.zeros((steps, m), bool)
        for start in range(0, steps, steps_per_epoch):
            k = min(steps_per_epoch, steps - start)
            drawn[start + rng.integers(0, k, m), np.arange(m)] = True
    elif repeat_epochs:
        first = rng.random((steps_per_epoch, m)) < qq
        drawn = first[np.arange(steps) % steps_per_epoch]
    else:
        drawn = rng.random((steps, m)) < qq
    drawn &= coins
    shape = (1 if reuse_noise else steps, 1 if shared_noise else m)
    if noise == "gaussian":
        z = rng.standard_normal(shape)
    elif noise == "uniform":
        z = rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), shape)
    elif noise == "rademacher":
        z = rng.choice([-1.0, 1.0], shape)
    else:
        raise DPAuditError(f"unknown noise {noise!r}; choose gaussian, uniform or rademacher")
    obs = (c * drawn + np.broadcast_to(z, (steps, m)) * sigma * clip * noise_factor).astype(dtype, copy=False)
    return WhiteBoxObservations(
        obs=obs, epoch_of_step=np.arange(steps) // steps_per_epoch, coins=coins, final_w=-obs.sum(0) / 100.0,
        max_grad_norm=clip, dirac_norm=10 * clip, noise_multiplier=sigma, sample_rate=q, steps_accounted=steps,
        n_param_updates=steps, lr=1.0, momentum=0.0, grad_scale=100.0, delta=delta, claimed_epsilon=claimed_epsilon,
        accountant=accountant)
