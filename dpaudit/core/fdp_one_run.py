"""The one-run f-DP audit of Mahloujifar, Melis & Chaudhuri ("Auditing f-Differential Privacy in One Run", ICML
2025, arXiv 2410.22235), with the (epsilon, delta) trade-off curve. Pure numpy/scipy.

The game is the one-run game of Steinke, Nasr & Jagielski (2023): m canaries, each included by an independent fair
coin; after one run an adversary guesses "in" or "out" for k of them and abstains on the rest; c guesses are
right. Steinke et al. bound P[>= c correct] for an (epsilon, delta)-DP run by a binomial tail plus 2 m delta; the
f-DP analysis bounds it through the trade-off curve f of the mechanism, here the (epsilon, delta) curve

    f_{eps,delta}(x) = max(0, 1 - delta - e^eps x, e^-eps (1 - delta - x)),

which every (epsilon, delta)-DP mechanism satisfies (Dong, Roth & Su 2019, Prop. 2.5: (eps, delta)-DP is exactly
f_{eps,delta}-DP). Its "blow-up" fbar(x) = 1 - f(x) = min(1, delta + e^eps x, 1 - e^-eps (1 - delta - x)) is the
largest probability an event can have with the canary in when it has probability x with the canary out (and the
other way round), and fbar^-1(y) = max(0, (y - delta) e^-eps, 1 - delta - e^eps (1 - y)) the least.

Why the recursion bounds P[>= c correct] (the paper's Theorem, "audit_rh_with_cap"; the argument, for k = 2
secrets). Let C be the number of correct guesses and, for each level i,

    r_i = E[C 1{C >= i}] / m,    h_i = E[(k - C) 1{C >= i}] / m

(the correct and the wrong guesses made in outcomes with at least i correct, per canary). (1) Flipping canary j's
coin turns a correct guess on j into a wrong one and lowers C by one, so for the event "the guess on j is x and
the other canaries hold >= i - 1 correct", DP on canary j gives P[j right, C >= i] <= fbar(P[j wrong, C >= i - 1]);
averaging over the coins and over j (fbar is concave: Jensen) gives r_i <= fbar(h_{i-1}), i.e.
h_{i-1} >= fbar^-1(r_i), and h_{i-1} >= h_i. (2) Going down one level adds the outcomes with exactly i - 1
correct, each with i - 1 right and k - i + 1 wrong guesses: r_{i-1} - r_i = (i - 1) / (k - i + 1) (h_{i-1} - h_i).
(3) r_0 + h_0 = k / m. If P[C >= c] >= tau, starting from r_c = tau c / m, h_c = tau (k - c) / m and taking the
least h allowed by (1) at each level while (2) carries r along gives lower bounds on r_0 and h_0; if their sum
exceeds k / m, (3) is contradicted, so P[C >= c] < tau under every (eps, delta)-DP mechanism. ``fdp_rejects`` is
that recursion; tests/test_fdp_one_run.py checks it against the exact worst case (a linear programme over all
(eps, delta)-DP mechanisms) on small m.

Why the bound is valid at confidence 1 - tau. Let eps* be the true epsilon and R the set of counts c whose bound
exceeds eps*. For the smallest c0 in R the recursion rejected at eps_lb(c0) > eps*, and the mechanism is also
(eps_lb(c0), delta)-DP, so P[C >= c0] < tau, and R is inside {C >= c0}: P[bound > eps*] < tau (no monotonicity in
eps of the recursion is needed). Several guess counts k: Bonferroni (``fdp_one_run_audit``), as ``one_run_audit``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dpaudit.core.bounds import smallest_passing

__all__ = [
    "ceiling_fdp_one_run",
    "eps_delta_blow_up",
    "eps_delta_blow_up_inverse",
    "epsilon_lb_fdp_one_run",
    "fdp_canaries_needed",
    "fdp_one_run_audit",
    "fdp_rejects",
]

MAX_EPS = 200.0  # e^eps beyond this overflows nothing in practice, and no audit of m <= 10^9 canaries reaches it


def eps_delta_blow_up(x: float, eps: float, delta: float) -> float:
    """fbar(x) = 1 - f_{eps,delta}(x) = min(1, delta + e^eps x, 1 - e^-eps (1 - delta - x)) for x in [0, 1].

    >>> round(eps_delta_blow_up(0.1, math.log(2), 0.0), 12)
    0.2
    """
    return float(min(1.0, delta + math.exp(eps) * x, 1.0 - math.exp(-eps) * (1.0 - delta - x)))


def eps_delta_blow_up_inverse(y: float, eps: float, delta: float) -> float:
    """fbar^-1(y) = max(0, (y - delta) e^-eps, 1 - delta - e^eps (1 - y)): the least x with fbar(x) >= y.

    >>> e = 1.3
    >>> all(abs(eps_delta_blow_up(eps_delta_blow_up_inverse(y, e, 1e-3), e, 1e-3) - y) < 1e-12
    ...     for y in (0.01, 0.3, 0.9, 0.999))
    True
    """
    return float(max(0.0, (y - delta) * math.exp(-eps), 1.0 - delta - math.exp(eps) * (1.0 - y)))


def _check(m: int, k: int, c: int) -> tuple[int, int, int]:
    for name, x in (("m", m), ("k", k), ("c", c)):
        if int(x) != x:
            raise ValueError(f"{name} must be an integer, got {x}")
    m, k, c = int(m), int(k), int(c)
    if not (0 <= c <= k <= m) or m < 1:
        raise ValueError(f"need 0 <= c <= k <= m and m >= 1, got m={m}, k={k}, c={c}")
    return m, k, c


def fdp_rejects(m: int, k: int, c: int, eps: float, delta: float, tau: float, *,
                inverse: Callable[[float], float] | None = None) -> bool:
    """True when ``c`` correct out of ``k`` guesses on ``m`` fair-coin canaries has probability < ``tau`` under
    every (eps, delta)-DP mechanism (Mahloujifar et al. 2025, Algorithm 3 with the (eps, delta) curve; the argument
    in the module docstring). ``inverse``: another curve's fbar^-1 in place of the (eps, delta) one (then eps and
    delta are unused), for tests that show what a curve family the mechanism does not satisfy would claim.

    Both r and h only grow as the level goes down, so the recursion stops as soon as r + h passes k / m (rejected)
    or h stops moving (nothing changes below: not rejected).

    >>> fdp_rejects(1000, 100, 95, 1.0, 1e-5, 0.05), fdp_rejects(1000, 100, 60, 1.0, 1e-5, 0.05)
    (True, False)
    """
    m, k, c = _check(m, k, c)
    if c == 0 or tau <= 0:
        return False
    e_pos = math.exp(min(eps, MAX_EPS))
    e_neg = 1.0 / e_pos
    target = k / m
    r, h = tau * c / m, tau * (k - c) / m
    one_minus_delta = 1.0 - delta
    for i in range(c - 1, -1, -1):
        if r + h > target:
            return True
        inv = (max((r - delta) * e_neg, one_minus_delta - e_pos * (1.0 - r)) if inverse is None
               else float(inverse(r)))
        if inv <= h:
            break
        r += i / (k - i) * (inv - h)
        h = inv
    return r + h > target


def epsilon_lb_fdp_one_run(m: int, k: int, c: int, delta: float, confidence: float = 0.95) -> float:
    """The largest eps (to 1e-6) at which ``fdp_rejects`` rejects (eps, delta)-DP at level 1 - ``confidence``;
    0 if even eps = 0 is not rejected (bisection from a rejected lower end, so the value returned is rejected).

    >>> round(epsilon_lb_fdp_one_run(1000, 100, 100, 1e-5, 0.95), 2)
    3.49
    """
    m, k, c = _check(m, k, c)
    if not 0.0 <= float(delta) < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tau = 1.0 - float(confidence)
    if not fdp_rejects(m, k, c, 0.0, delta, tau):
        return 0.0
    lo, hi = 0.0, 1.0
    while fdp_rejects(m, k, c, hi, delta, tau):
        lo, hi = hi, 2.0 * hi
        if hi > MAX_EPS:
            return lo
    while hi - lo > 1e-6 * max(1.0, lo):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fdp_rejects(m, k, c, mid, delta, tau) else (lo, mid)
    return lo


def _candidates(m: int, k_candidates: Sequence[int] | None) -> list[int]:
    """The guess counts tried: by default one_run_audit's (m/50, m/20, m/10, m/5, m/2, at least one), fixed before
    any data, so the Bonferroni split is the same whatever the scores."""
    raw = [max(1, m // d) for d in (50, 20, 10, 5, 2)] if k_candidates is None else [int(k) for k in k_candidates]
    out: list[int] = []
    for k in raw:
        if not 1 <= k <= m:
            raise ValueError(f"guess counts must be in [1, {m}], got {k}")
        if k not in out:
            out.append(k)
    if not out:
        raise ValueError("no guess count to try")
    return out


def fdp_one_run_audit(scores: Any, is_in: Any, delta: float, confidence: float = 0.95,
                      k_candidates: Sequence[int] | None = None, *, seed: int = 0) -> dict:
    """The f-DP one-run audit on per-canary ``scores`` (higher = more likely in) of fair-coin canaries ``is_in``:
    guess "in" for the k highest-scoring, abstain on the rest, and bound epsilon by ``epsilon_lb_fdp_one_run``.
    Each guess count of ``k_candidates`` (default: ``one_run_audit``'s) is tested at 1 - (1 - confidence) / N and
    the best kept (Bonferroni), so the result holds at ``confidence``. Ties are broken by a ``seed``-ed permutation,
    as ``one_run_audit`` does, so these are exactly its guesses.

    >>> rng = np.random.default_rng(0)
    >>> y = rng.random(1000) < 0.5
    >>> fdp_one_run_audit(rng.standard_normal(1000), y, 1e-5)["epsilon_lb"]
    0.0
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(is_in, bool)
    if s.ndim != 1 or s.shape != y.shape or s.size == 0:
        raise ValueError(f"scores and is_in must be 1-D of equal, non-zero length, got {s.shape} and {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    m = s.size
    cands = _candidates(m, k_candidates)
    c_each = 1.0 - (1.0 - float(confidence)) / len(cands)
    perm = np.random.default_rng(seed).permutation(m)
    order = perm[np.argsort(-s[perm], kind="stable")]
    correct = np.cumsum(y[order])
    best = (-1.0, 0, 0)
    for k in cands:
        c = int(correct[k - 1])
        eps = epsilon_lb_fdp_one_run(m, k, c, delta, c_each)
        if eps > best[0]:
            best = (eps, k, c)
    return {"epsilon_lb": float(best[0]), "m": m, "k": best[1], "correct": best[2],
            "candidates_tried": [int(k) for k in cands], "confidence": float(confidence), "delta": float(delta)}


def ceiling_fdp_one_run(m: int, delta: float, confidence: float = 0.95, n_in: int | None = None,
                        k_candidates: Sequence[int] | None = None) -> float:
    """The largest ``fdp_one_run_audit`` bound on ``m`` canaries: every guess right that can be (c = min(k, n_in),
    ``n_in`` the canaries in, default m // 2), with the same candidates and Bonferroni split.

    >>> ceiling_fdp_one_run(1000, 1e-5, 0.95) > ceiling_fdp_one_run(100, 1e-5, 0.95)
    True
    """
    m = int(m)
    n_in = m // 2 if n_in is None else int(n_in)
    cands = _candidates(m, k_candidates)
    c_each = 1.0 - (1.0 - float(confidence)) / len(cands)
    return max(epsilon_lb_fdp_one_run(m, k, min(k, n_in), delta, c_each) for k in cands)


def fdp_canaries_needed(epsilon: float, delta: float, confidence: float = 0.95, *,
                        max_canaries: int = 10**6) -> int | None:
    """Smallest m of fair-coin canaries (to within 2 %) whose ``ceiling_fdp_one_run`` exceeds ``epsilon``; None if
    none up to ``max_canaries`` does. One recursion per candidate and m (the rejection at ``epsilon`` itself), on a
    doubling grid then by bisection; the ceiling grows with m (more guesses, no 2 m delta term), so the first m
    that passes is the answer.

    >>> fdp_canaries_needed(2.0, 1e-5, 0.95)
    74
    """
    eps = float(epsilon)
    if not eps >= 0 or not math.isfinite(eps):
        return None
    tau = 1.0 - float(confidence)

    def ok(m: int) -> bool:
        cands = _candidates(m, None)
        return any(fdp_rejects(m, k, min(k, m // 2), eps, delta, tau / len(cands)) for k in cands)

    return smallest_passing(ok, max_canaries, start=4, within=50)
