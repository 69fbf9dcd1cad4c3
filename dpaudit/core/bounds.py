"""What a membership attack's success says about epsilon, and what epsilon allows an attack.

Two directions:

* upper limits on attack success under (eps, delta)-DP (``max_balanced_accuracy``,
  ``max_advantage``), to draw beside measured attack metrics;
* empirical lower bounds on epsilon from attack outcomes, valid at a stated confidence:
  Clopper-Pearson on TPR/FPR of a thresholded attack (Jagielski et al. 2020, Nasr et al. 2021),
  and the one-training-run audit of Steinke, Nasr & Jagielski (2023).

Pure numpy/scipy: no torch, no models.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from dpaudit.schema import POWER_MULTIPLE, EpsilonBound, Status, WhiteBoxAudit, verdict_status

__all__ = [
    "ALPHA_SCHEDULE",
    "EpsilonLB",
    "OneRunResult",
    "POWER_MULTIPLE",
    "alpha_share",
    "alpha_spent",
    "balanced_candidates",
    "best_threshold_epsilon_lb",
    "bonferroni_threshold_epsilon_lb",
    "canaries_needed",
    "ceiling_clopper_pearson",
    "ceiling_one_run",
    "ceiling_one_run_balanced",
    "clopper_pearson",
    "combined_confidence",
    "decide_verdict",
    "epsilon_lb_clopper_pearson",
    "epsilon_lb_clopper_pearson_counts",
    "epsilon_lb_one_run",
    "evidence_confidences",
    "fair_coin_check",
    "family_confidence",
    "fixed_threshold_epsilon_lb",
    "max_advantage",
    "max_balanced_accuracy",
    "one_run_audit",
    "one_run_audit_balanced",
    "one_run_p_values",
    "records_needed",
    "reference_threshold_epsilon_lb",
]

N_CALIBRATION_THRESHOLDS = 200


# --------------------------------------------------------------------------- validation helpers

def _check_eps_delta(epsilon: float, delta: float) -> tuple[float, float]:
    eps = float(epsilon)
    d = float(delta)
    if not (eps >= 0):  # also rejects NaN
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if not (0.0 <= d < 1.0):
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    return eps, d


def _check_delta(delta: float) -> float:
    d = float(delta)
    if not (0.0 <= d < 1.0):
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    return d


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return c


def _check_count(name: str, k: Any, n: Any, n_name: str) -> tuple[int, int]:
    if int(k) != k or int(n) != n:
        raise ValueError(f"{name} and {n_name} must be integers, got {k} and {n}")
    k, n = int(k), int(n)
    if n < 1 or not (0 <= k <= n):
        raise ValueError(f"need 0 <= {name} <= {n_name} and {n_name} >= 1, got {name}={k}, {n_name}={n}")
    return k, n


def _check_scores(scores: Any, is_in: Any, *, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    y = np.asarray(is_in)
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and is_in must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if y.dtype != bool:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("is_in must be binary (0/1 or bool)")
        y = y == 1
    if s.size == 0:
        raise ValueError("scores are empty")
    if both_classes and (y.all() or not y.any()):
        raise ValueError(f"need at least one member and one non-member, got {int(y.sum())} of {y.size}")
    return s, y


# --------------------------------------------------------------------------- limits under DP

def max_balanced_accuracy(epsilon: float, delta: float = 0.0) -> float:
    """Highest balanced accuracy any membership test can reach against an (eps, delta)-DP
    mechanism: (e^eps + delta) / (1 + e^eps); 1.0 for eps = inf."""
    eps, d = _check_eps_delta(epsilon, delta)
    if math.isinf(eps):
        return 1.0
    # written with e^-eps so that a large eps does not overflow
    t = math.exp(-eps)
    return min(1.0, (1.0 + d * t) / (1.0 + t))


def max_advantage(epsilon: float, delta: float = 0.0) -> float:
    """Highest TPR - FPR under (eps, delta)-DP: (e^eps - 1 + 2 delta) / (e^eps + 1); 1.0 for
    eps = inf. Equals 2 * max_balanced_accuracy - 1."""
    eps, d = _check_eps_delta(epsilon, delta)
    if math.isinf(eps):
        return 1.0
    t = math.exp(-eps)
    return min(1.0, (1.0 - t + 2.0 * d * t) / (1.0 + t))


# --------------------------------------------------------------------------- Clopper-Pearson

def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) binomial confidence interval for k successes in n trials.

    Each end is a one-sided bound at level alpha/2; for a one-sided bound at level a, pass
    alpha = 2a and use the end you need.
    """
    k, n = _check_count("k", k, n, "n")
    a = float(alpha)
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - a / 2.0, k + 1, n - k))
    return lo, hi


def _eps_from_rates(tpr_lb: np.ndarray, fpr_ub: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """max(ln((TPR - d)/FPR), ln((1 - FPR - d)/(1 - TPR))) floored at 0, elementwise; also which
    of the two DP inequalities gave it (0: TPR/FPR, 1: TNR/FNR)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a_num, a_den = tpr_lb - delta, fpr_ub
        b_num, b_den = 1.0 - fpr_ub - delta, 1.0 - tpr_lb
        # a ratio with a non-positive numerator or denominator gives no evidence: -inf, not NaN
        a = np.where((a_num > 0) & (a_den > 0), np.log(np.where(a_num > 0, a_num, 1.0))
                     - np.log(np.where(a_den > 0, a_den, 1.0)), -np.inf)
        b = np.where((b_num > 0) & (b_den > 0), np.log(np.where(b_num > 0, b_num, 1.0))
                     - np.log(np.where(b_den > 0, b_den, 1.0)), -np.inf)
    best = np.maximum(a, b)
    which = np.where(b > a, 1, 0)
    return np.maximum(best, 0.0), which


def cp_eps_array(tp: np.ndarray, n_pos: int, fp: np.ndarray, n_neg: int, delta: float,
                  confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Clopper-Pearson epsilon lower bound over many (tp, fp) pairs."""
    alpha = 1.0 - confidence
    # alpha is split between the two rates; each gets a ONE-SIDED bound at level alpha/2, so by a
    # union bound both hold together with probability >= confidence
    a = alpha / 2.0
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        tpr_lb = np.where(tp > 0, stats.beta.ppf(a, np.maximum(tp, 1), n_pos - tp + 1), 0.0)
        fpr_ub = np.where(fp < n_neg, stats.beta.ppf(1.0 - a, fp + 1, np.maximum(n_neg - fp, 1)), 1.0)
    return _eps_from_rates(tpr_lb, fpr_ub, delta)


def epsilon_lb_clopper_pearson(tp: int, n_pos: int, fp: int, n_neg: int, delta: float,
                               confidence: float = 0.95) -> float:
    """Lower bound on epsilon, holding with probability >= ``confidence``, from one threshold's
    counts: ``tp`` of ``n_pos`` members and ``fp`` of ``n_neg`` non-members guessed "member".

    alpha = 1 - confidence is split evenly: TPR_lb is a one-sided Clopper-Pearson lower bound at
    level alpha/2 and FPR_ub a one-sided upper bound at alpha/2. Then
    eps_lb = max(ln((TPR_lb - delta) / FPR_ub), ln((1 - FPR_ub - delta) / (1 - TPR_lb))), >= 0.
    The threshold must not have been chosen with these same counts' truth (see
    ``best_threshold_epsilon_lb`` / ``bonferroni_threshold_epsilon_lb``).
    """
    tp, n_pos = _check_count("tp", tp, n_pos, "n_pos")
    fp, n_neg = _check_count("fp", fp, n_neg, "n_neg")
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    eps, _ = cp_eps_array(np.array([tp]), n_pos, np.array([fp]), n_neg, d, c)
    return float(eps[0])


def epsilon_lb_clopper_pearson_counts(tp: Any, n_pos: int, fp: Any, n_neg: int, delta: float,
                                      confidence: float = 0.95) -> np.ndarray:
    """``epsilon_lb_clopper_pearson`` for many (tp, fp) pairs at once (arrays of equal shape): what power
    simulations need, thousands of simulated audits at one sample size.

    >>> b = epsilon_lb_clopper_pearson_counts([500, 250], 500, [0, 250], 500, 1e-5, 0.95)
    >>> bool(b[0] > 4.5), float(b[1])
    (True, 0.0)
    """
    _, n_pos = _check_count("n_pos", n_pos, n_pos, "n_pos")
    _, n_neg = _check_count("n_neg", n_neg, n_neg, "n_neg")
    tp, fp = np.asarray(tp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
    if tp.shape != fp.shape or np.any(tp < 0) or np.any(tp > n_pos) or np.any(fp < 0) or np.any(fp > n_neg):
        raise ValueError("tp and fp must be arrays of equal shape with 0 <= tp <= n_pos and 0 <= fp <= n_neg")
    eps, _ = cp_eps_array(tp, n_pos, fp, n_neg, _check_delta(delta), _check_confidence(confidence))
    return eps


# --------------------------------------------------------------------------- one training run

def _p_value_one_run(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Steinke, Nasr & Jagielski (2023), Appendix D: probability of >= v correct out of r guesses
    on m canaries under the (eps, delta)-DP null hypothesis.

    p = P[B >= v] + 2 m delta * max_{i=1..v} P[v - i <= B < v] / i, with B ~ Binomial(r, q),
    q = e^eps / (1 + e^eps).
    """
    if v == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-eps)) if eps < 700 else 1.0
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta > 0:
        # P[v-i <= B < v] = sum of pmf(v-1), ..., pmf(v-i): a reversed cumulative sum of the pmf,
        # which equals cdf(v-1) - cdf(v-i-1) without the cancellation of subtracting two cdfs
        pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
        window = np.cumsum(pmf) / np.arange(1, v + 1)
        tail += 2.0 * m * delta * float(window.max())
    return min(tail, 1.0)


def epsilon_lb_one_run(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """Largest eps whose one-run p-value is <= 1 - confidence (bisection); 0 if even eps = 0 is
    not rejected. ``m`` canaries, each included independently with probability 1/2; ``r`` guesses
    (the rest abstained); ``v`` of them correct. Steinke, Nasr & Jagielski (2023)."""
    for name, x in (("m", m), ("r", r), ("v", v)):
        if int(x) != x:
            raise ValueError(f"{name} must be an integer, got {x}")
    m, r, v = int(m), int(r), int(v)
    if not (0 <= v <= r <= m) or m < 1:
        raise ValueError(f"need 0 <= v <= r <= m and m >= 1, got m={m}, r={r}, v={v}")
    d = _check_delta(delta)
    alpha = 1.0 - _check_confidence(confidence)
    if r == 0 or _p_value_one_run(m, r, v, 0.0, d) > alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while _p_value_one_run(m, r, v, hi, d) <= alpha:
        lo, hi = hi, 2.0 * hi
        if hi > 1e4:  # cannot happen for finite r, but never loop forever
            return lo
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _p_value_one_run(m, r, v, mid, d) <= alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    return lo


@dataclass(frozen=True)
class OneRunResult:
    """Outcome of ``one_run_audit``: the bound, and the guess that gave it."""

    epsilon_lb: float
    m: int
    r: int
    v: int
    k_plus: int
    k_minus: int
    candidates_tried: tuple[int, ...]
    correction: str
    delta: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates_tried"] = [int(k) for k in self.candidates_tried]
        return d


def _default_candidates(m: int) -> list[int]:
    # At least one guess, so that a handful of canaries still gives a (weak) bound instead of an error.
    return [max(1, m // d) for d in (50, 20, 10, 5, 2)]


def _one_run_candidates(m: int, k_candidates: Sequence[int] | None, k_minus: int) -> list[int]:
    """The k_plus values ``one_run_audit`` tries (and ``ceiling_one_run`` must try the same ones)."""
    if k_minus < 0 or k_minus > m:
        raise ValueError(f"k_minus must be in [0, {m}], got {k_minus}")
    raw = _default_candidates(m) if k_candidates is None else [int(k) for k in k_candidates]
    if any(k < 0 for k in raw):
        raise ValueError(f"k_candidates must be >= 0, got {list(raw)}")
    cands: list[int] = []
    for k in raw:
        if k + k_minus > m or (k == 0 and k_minus == 0) or k in cands:
            continue
        cands.append(k)
    if not cands:
        raise ValueError(f"no usable k_plus candidate for m={m}, k_minus={k_minus} (got {list(raw)})")
    return cands


def one_run_audit(scores: Any, is_in: Any, delta: float, confidence: float = 0.95,
                  k_candidates: Sequence[int] | None = None, k_minus: int = 0, *,
                  seed: int = 0) -> OneRunResult:
    """One-run audit: guess "in" for the ``k_plus`` highest-scoring of the m canaries and "out"
    for the ``k_minus`` lowest, abstain on the rest, and turn the number of correct guesses into
    an epsilon lower bound (``epsilon_lb_one_run``).

    The canaries' inclusion must have been decided by independent fair coins. With several
    ``k_candidates`` each is tested at confidence 1 - (1 - confidence)/N and the best kept
    (Bonferroni), so the result holds at ``confidence`` overall. Default candidates: m//50,
    m//20, m//10, m//5, m//2. Tied scores are ordered by a ``seed``-ed permutation: ordering
    them by position could leak the truth when records are stored members-first.
    """
    s, y = _check_scores(scores, is_in, both_classes=False)
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    m = s.size
    k_minus = int(k_minus)
    cands = _one_run_candidates(m, k_candidates, k_minus)
    n = len(cands)
    c_each = 1.0 - (1.0 - c) / n

    perm = np.random.default_rng(seed).permutation(m)
    order = perm[np.argsort(-s[perm], kind="stable")]  # highest score first
    correct_in = np.cumsum(y[order])  # correct "in" guesses among the top k
    n_out_correct = int((~y[order[m - k_minus:]]).sum()) if k_minus else 0

    best: tuple[float, int, int, int] | None = None
    for k in cands:
        v = (int(correct_in[k - 1]) if k else 0) + n_out_correct
        r = k + k_minus
        eps = epsilon_lb_one_run(m, r, v, d, c_each)
        if best is None or eps > best[0]:
            best = (eps, k, r, v)
    assert best is not None
    eps, k, r, v = best
    return OneRunResult(
        epsilon_lb=float(eps), m=m, r=r, v=v, k_plus=k, k_minus=k_minus,
        candidates_tried=tuple(cands),
        correction=f"bonferroni over {n} candidates" if n > 1 else "fixed k",
        delta=d, confidence=c,
    )


def one_run_p_values(m: int, r: int, eps: float, delta: float) -> np.ndarray:
    """The one-run p-value (``epsilon_lb_one_run``'s test of (eps, delta)-DP) for every number of correct
    guesses v = 0..r at once: entry v is the p-value of v correct out of r guesses on m canaries.

    A power simulation then decides "bound > eps" for thousands of simulated audits by one lookup each (the
    bound exceeds eps exactly when the p-value at eps is at most alpha), instead of one bisection each.

    >>> p = one_run_p_values(1000, 100, 1.0, 1e-5)
    >>> bool(abs(p[80] - _p_value_one_run(1000, 100, 80, 1.0, 1e-5)) < 1e-12), float(p[0])
    (True, 1.0)
    """
    m, r = int(m), int(r)
    if not (0 <= r <= m) or m < 1:
        raise ValueError(f"need 0 <= r <= m and m >= 1, got m={m}, r={r}")
    d = _check_delta(delta)
    q = 1.0 / (1.0 + math.exp(-eps)) if eps < 700 else 1.0
    v = np.arange(r + 1)
    out = stats.binom.sf(v - 1, r, q)
    if d > 0 and r > 0:
        pmf = stats.binom.pmf(np.arange(r + 1), r, q)
        window = np.zeros(r + 1)
        for vv in range(1, r + 1):
            # P[vv-i <= B < vv] / i for i = 1..vv: a reversed cumulative sum of the pmf below vv (as in
            # _p_value_one_run), its maximum over i
            w = np.cumsum(pmf[vv - 1::-1]) / np.arange(1, vv + 1)
            window[vv] = w.max()
        out = out + 2.0 * m * d * window
    out[0] = 1.0
    return np.minimum(out, 1.0)


def balanced_candidates(m: int) -> list[int]:
    """Guesses per side that ``one_run_audit_balanced`` tries on m canaries: k "in" and k "out", so that the
    total guesses 2k are m/50, m/20, m/10, m/5 and m/2, as ``one_run_audit``'s default k_plus values (at least
    one each side, and repeats dropped)."""
    m = int(m)
    if m < 2:
        raise ValueError(f"the balanced one-run audit needs at least 2 canaries, got {m}")
    out: list[int] = []
    for d in (100, 40, 20, 10, 4):
        k = max(1, m // d)
        if 2 * k <= m and k not in out:
            out.append(k)
    return out


def one_run_audit_balanced(scores: Any, is_in: Any, delta: float, confidence: float = 0.95,
                           k_candidates: Sequence[int] | None = None, *, seed: int = 0) -> OneRunResult:
    """The one-run audit under dpaudit's one membership rule: guess "in" for the k highest-scoring canaries
    AND "out" for the k lowest (the same k both sides), abstain on the rest, and test the correct guesses with
    ``epsilon_lb_one_run``. Several k (``balanced_candidates``): Bonferroni, as ``one_run_audit``.

    Why both sides. The one-run test assumes each canary is in with probability 1/2. Top-k guesses alone
    inherit any bias of the coins: with 55% members, pure noise makes 55% of "in" guesses correct and the
    bound rises above 0 without any leak. With k "in" and k "out" guesses the expected number of correct
    guesses under pure noise is k * share + k * (1 - share) = k at ANY member share, and its spread is at most
    the fair-coin one (with independent coins of any bias p the two binomials have variance 2k p(1-p) <= 2k/4;
    conditional on the count it is 2k p(1-p) N/(N-1) with p the share, at most the fair-coin binomial's up to
    that factor N/(N-1)). Under
    (eps, delta)-DP with independent coins of bias p, an "in" guess is right with probability at most
    f(p) = p e^eps / (p e^eps + 1 - p) and an "out" guess with f(1 - p); f is concave, so their mean is at most
    f(1/2) = e^eps / (1 + e^eps), the rate the test assumes (Hoeffding 1956: a sum of Bernoullis with mean rate
    q has binomial(., q) upper tails). So the bound stays valid at the observed member share, and it is
    the same test as ``one_run_audit`` when the coins are fair."""
    s, y = _check_scores(scores, is_in, both_classes=False)
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    m = s.size
    cands = balanced_candidates(m) if k_candidates is None else sorted({int(k) for k in k_candidates})
    if not cands or any(k < 1 or 2 * k > m for k in cands):
        raise ValueError(f"k_candidates must be in [1, {m // 2}] for m={m}, got {k_candidates}")
    n = len(cands)
    c_each = 1.0 - (1.0 - c) / n
    perm = np.random.default_rng(seed).permutation(m)
    order = perm[np.argsort(-s[perm], kind="stable")]  # highest score first
    correct_in = np.cumsum(y[order])
    correct_out = np.cumsum(~y[order[::-1]])  # lowest score first
    best: tuple[float, int, int] | None = None
    for k in cands:
        v = int(correct_in[k - 1]) + int(correct_out[k - 1])
        eps = epsilon_lb_one_run(m, 2 * k, v, d, c_each)
        if best is None or eps > best[0]:
            best = (eps, k, v)
    assert best is not None
    eps, k, v = best
    return OneRunResult(epsilon_lb=float(eps), m=m, r=2 * k, v=v, k_plus=k, k_minus=k, candidates_tried=tuple(cands),
                        correction=(f"balanced guesses (k in, k out); bonferroni over {n} candidates" if n > 1
                                    else "balanced guesses (k in, k out), fixed k"),
                        delta=d, confidence=c)


def ceiling_one_run_balanced(m: int, delta: float, confidence: float = 0.95, n_in: int | None = None,
                             k_candidates: Sequence[int] | None = None) -> float:
    """The largest ``one_run_audit_balanced`` bound (a perfect attack: every member above every non-member),
    with the same candidates; ``n_in`` the number of canaries in (default m // 2)."""
    m = int(m)
    d, c = _check_delta(delta), _check_confidence(confidence)
    n_in = m // 2 if n_in is None else int(n_in)
    if not 0 <= n_in <= m:
        raise ValueError(f"n_in must be in [0, {m}], got {n_in}")
    cands = balanced_candidates(m) if k_candidates is None else sorted({int(k) for k in k_candidates})
    c_each = 1.0 - (1.0 - c) / len(cands)
    return max(epsilon_lb_one_run(m, 2 * k, min(k, n_in) + min(k, m - n_in), d, c_each) for k in cands)


FAIR_COIN_NOTE_P = 1e-3


def fair_coin_check(is_in: Any) -> dict[str, Any]:
    """The one membership check every route that assumes coins applies (``dpaudit epsilon --method one-run``,
    ``--from-signals`` canaries, the audit's own canaries): the member share, and the exact two-sided binomial
    test of the count against 1/2. It does not refuse: the bound these routes report is
    ``one_run_audit_balanced``'s, valid at any member share, so a biased share costs power, never validity.
    ``biased`` says the coins were not fair (p < 0.001), which the report states beside the bound.

    >>> r = fair_coin_check([True] * 80 + [False] * 20)
    >>> r["share"], r["biased"]
    (0.8, True)
    """
    y = np.asarray(is_in, dtype=bool).ravel()
    n, k = int(y.size), int(y.sum())
    if n == 0:
        raise ValueError("no canaries")
    p = float(stats.binomtest(k, n, 0.5, alternative="two-sided").pvalue)
    return {"rule": "balanced one-run guesses (k in, k out): valid at any member share",
            "n": n, "members": k, "share": k / n,
            "test": "exact two-sided binomial test of the member count against 1/2", "p_value": p,
            "biased": bool(p < FAIR_COIN_NOTE_P)}


# --------------------------------------------------------------------------- thresholded attacks

# The bound's type is the report model's own (one definition: dpaudit.schema.EpsilonBound).
EpsilonLB = EpsilonBound


def _counts(s: np.ndarray, y: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    g = s >= threshold
    return int(np.sum(g & y)), int(y.sum()), int(np.sum(g & ~y)), int((~y).sum())


def _lb_at(s: np.ndarray, y: np.ndarray, threshold: float, delta: float, confidence: float,
           selection: str) -> EpsilonLB:
    tp, n_pos, fp, n_neg = _counts(s, y, threshold)
    eps, which = cp_eps_array(np.array([tp]), n_pos, np.array([fp]), n_neg, delta, confidence)
    value = float(eps[0])
    direction = "none" if value <= 0 else ("tnr/fnr" if int(which[0]) == 1 else "tpr/fpr")
    return EpsilonLB(value=value, method="clopper_pearson", threshold=float(threshold),
                     threshold_selection=selection, tp=tp, n_pos=n_pos, fp=fp, n_neg=n_neg,
                     direction=direction, delta=delta, confidence=confidence)


def _quantile_thresholds(s: np.ndarray, n: int) -> np.ndarray:
    # interior quantile levels only: the extremes guess everybody or nobody, which bounds nothing
    levels = np.arange(1, n + 1) / (n + 1)
    return np.quantile(s, levels, method="lower")


def fixed_threshold_epsilon_lb(scores: Any, is_in: Any, threshold: float, delta: float,
                               confidence: float = 0.95) -> EpsilonLB:
    """Clopper-Pearson epsilon lower bound at a threshold fixed before seeing ``is_in``."""
    s, y = _check_scores(scores, is_in)
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold must not be NaN")
    return _lb_at(s, y, t, _check_delta(delta), _check_confidence(confidence), "fixed by caller")


def best_threshold_epsilon_lb(cal_scores: Any, cal_in: Any, scores: Any, is_in: Any, delta: float,
                              confidence: float = 0.95) -> EpsilonLB:
    """Choose the threshold on calibration data, apply it once to the target.

    Candidate thresholds are ~200 quantiles of the calibration (reference models') scores; the
    one with the largest Clopper-Pearson bound on the calibration counts is kept (if every
    candidate gives 0, the calibration's best balanced-accuracy threshold). Only then are the
    target's ``scores``/``is_in`` looked at, once, so no multiple-testing correction is needed.
    ``cal_scores``/``cal_in`` may be [K, n]; they are pooled.
    """
    cs, cy = _check_scores(np.ravel(np.asarray(cal_scores)), np.ravel(np.asarray(cal_in)))
    s, y = _check_scores(scores, is_in)
    d = _check_delta(delta)
    c = _check_confidence(confidence)

    cand = np.unique(np.quantile(cs, np.linspace(0.0, 1.0, N_CALIBRATION_THRESHOLDS), method="lower"))
    pos = np.sort(cs[cy])
    neg = np.sort(cs[~cy])
    tp = pos.size - np.searchsorted(pos, cand, side="left")  # count of member scores >= t
    fp = neg.size - np.searchsorted(neg, cand, side="left")
    eps, _ = cp_eps_array(tp, pos.size, fp, neg.size, d, c)
    if eps.max() > 0:
        threshold = float(cand[int(np.argmax(eps))])
    else:
        # calibration shows no leak at any threshold: fall back to the balanced-accuracy optimum
        j = (tp / pos.size) - (fp / neg.size)
        threshold = float(cand[int(np.argmax(j))])
    return _lb_at(s, y, threshold, d, c, "chosen on reference models' scores; applied once to the target")


def bonferroni_threshold_epsilon_lb(scores: Any, is_in: Any, delta: float, confidence: float = 0.95,
                                    n_thresholds: int = 20) -> EpsilonLB:
    """Clopper-Pearson bound when there is no calibration data: try ``n_thresholds`` thresholds
    (the scores' quantiles at fixed levels i/(N+1), picked without ``is_in``), each at confidence
    1 - (1 - confidence)/N, and keep the largest. The Bonferroni correction pays for the choice."""
    s, y = _check_scores(scores, is_in)
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    n = int(n_thresholds)
    if n < 1:
        raise ValueError(f"n_thresholds must be >= 1, got {n_thresholds}")
    c_each = 1.0 - (1.0 - c) / n
    selection = f"Bonferroni over {n} thresholds"
    best: EpsilonLB | None = None
    for t in _quantile_thresholds(s, n):
        r = _lb_at(s, y, float(t), d, c_each, selection)
        if best is None or r.value > best.value:
            best = r
    assert best is not None
    # report the confidence the bound actually holds at, not the per-threshold one
    return EpsilonLB(**{**asdict(best), "confidence": c})


def _aggregate_reference_bounds(ref_scores: np.ndarray, ref_in: np.ndarray, cand: np.ndarray, n_pos: int,
                                n_neg: int, delta: float, confidence: float,
                                aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate threshold: the aggregate over reference models of each one's Clopper-Pearson bound at the
    target's sample size, and the mean balanced-accuracy advantage (TPR - FPR) for the fallback."""
    k_models = ref_scores.shape[0]
    tp = np.empty((k_models, cand.size))
    fp = np.empty((k_models, cand.size))
    for k in range(k_models):
        pos = np.sort(ref_scores[k, ref_in[k]])
        neg = np.sort(ref_scores[k, ~ref_in[k]])
        # rates on this reference model, counted at the target's sizes: identical to its own counts when the
        # sizes match (as in the audit), a rounding of them otherwise
        tpr = (pos.size - np.searchsorted(pos, cand, side="left")) / pos.size
        fpr = (neg.size - np.searchsorted(neg, cand, side="left")) / neg.size
        tp[k] = np.rint(tpr * n_pos)
        fp[k] = np.rint(fpr * n_neg)
    # every count lies in 0..n, so two tables of n + 1 beta quantiles replace K x C of them
    a = (1.0 - confidence) / 2.0
    t = np.arange(n_pos + 1, dtype=np.float64)
    tpr_lb_table = np.where(t > 0, stats.beta.ppf(a, np.maximum(t, 1), n_pos - t + 1), 0.0)
    f = np.arange(n_neg + 1, dtype=np.float64)
    fpr_ub_table = np.where(f < n_neg, stats.beta.ppf(1.0 - a, f + 1, np.maximum(n_neg - f, 1)), 1.0)
    eps, _ = _eps_from_rates(tpr_lb_table[tp.astype(np.intp)], fpr_ub_table[fp.astype(np.intp)], delta)
    agg = np.median(eps, axis=0) if aggregate == "median" else eps.mean(axis=0)
    advantage = (tp / n_pos - fp / n_neg).mean(axis=0)
    return agg, advantage


def reference_threshold_epsilon_lb(ref_scores: Any, ref_in: Any, scores: Any, is_in: Any, delta: float,
                                   confidence: float = 0.95, aggregate: str = "mean") -> EpsilonLB:
    """The audit's threshold choice: pick the threshold on the reference models at the TARGET's sample size,
    then apply it once to the target.

    For each of ~200 candidate thresholds (quantiles of the pooled reference scores; the target's scores are
    not looked at), the Clopper-Pearson bound is computed on each reference model's own counts, as if it had
    the target's numbers of members and non-members, at ``confidence``; the K per-reference bounds are
    aggregated (``"mean"``, an estimate of the bound the target can expect at that threshold, or
    ``"median"``), and the candidate with the best aggregate is kept. If every candidate aggregates to 0, the
    threshold with the best mean TPR - FPR is kept instead. Only then are the target's ``scores``/``is_in``
    counted, once, so the result holds at ``confidence`` with no multiple-testing correction.

    Why not ``best_threshold_epsilon_lb``: it maximises the bound on the POOLED counts of K models, i.e. at
    K times the target's sample size, where thresholds far in the tail pay off; at the target's size those
    thresholds leave too few guesses, and its bound falls as K grows. Here more reference models only make
    the per-candidate estimate less noisy.

    ``ref_scores``/``ref_in``: [K, n] (a 1-D row is one reference model); each row needs members and
    non-members. ``scores``/``is_in``: the target's [n'].
    """
    rs = np.asarray(ref_scores, dtype=np.float64)
    ri = np.asarray(ref_in)
    if rs.ndim == 1:
        rs, ri = rs[None], ri[None]
    if rs.ndim != 2 or ri.shape != rs.shape:
        raise ValueError(f"ref_scores and ref_in must be [K, n] of equal shape, got {rs.shape} and {ri.shape}")
    rows = [_check_scores(rs[k], ri[k]) for k in range(rs.shape[0])]
    rs = np.stack([r[0] for r in rows])
    ri = np.stack([r[1] for r in rows])
    s, y = _check_scores(scores, is_in)
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    if aggregate not in ("mean", "median"):
        raise ValueError(f"aggregate must be 'mean' or 'median', got {aggregate!r}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())

    cand = np.unique(np.quantile(rs.ravel(), np.linspace(0.0, 1.0, N_CALIBRATION_THRESHOLDS), method="lower"))
    agg, advantage = _aggregate_reference_bounds(rs, ri, cand, n_pos, n_neg, d, c, aggregate)
    j = int(np.argmax(agg)) if agg.max() > 0 else int(np.argmax(advantage))
    how = (f"chosen on {rs.shape[0]} reference model(s): best {aggregate} of per-model Clopper-Pearson bounds "
           "at the target's sample size; applied once to the target")
    return _lb_at(s, y, float(cand[j]), d, c, how)


# --------------------------------------------------------------------------- what an audit can show

def ceiling_clopper_pearson(n_pos: int, n_neg: int, delta: float, confidence: float = 0.95) -> float:
    """Detection ceiling of a thresholded attack: the largest Clopper-Pearson epsilon lower bound that ANY
    attack could reach on ``n_pos`` members and ``n_neg`` non-members at ``confidence``.

    The bound grows with tp and falls with fp, so the perfect attack (tp = n_pos, fp = 0) reaches the
    largest; both DP inequalities (TPR/FPR and TNR/FNR, which swap the roles of n_pos and n_neg) are taken
    and the larger kept. A claimed epsilon at or above this cannot be shown violated by this evidence,
    however strong the attack. Use the confidence the bound itself is computed at (per-bound, after any
    Bonferroni split).
    """
    _, n_pos = _check_count("n_pos", n_pos, n_pos, "n_pos")
    _, n_neg = _check_count("n_neg", n_neg, n_neg, "n_neg")
    eps, _ = cp_eps_array(np.array([n_pos]), n_pos, np.array([0]), n_neg, _check_delta(delta),
                           _check_confidence(confidence))
    return float(eps[0])


def ceiling_one_run(m: int, delta: float, confidence: float = 0.95, k_candidates: Sequence[int] | None = None,
                    *, n_in: int | None = None, k_minus: int = 0) -> float:
    """Detection ceiling of the one-run audit: the largest ``one_run_audit`` bound on ``m`` canaries at
    ``confidence``, reached by a perfect attack.

    A perfect attack ranks every included canary above every excluded one, so each candidate k_plus gets
    v = min(k_plus, n_in) correct "in" guesses (plus min(k_minus, m - n_in) correct "out" ones); the same
    candidates and Bonferroni split as ``one_run_audit`` are used and the best kept. ``n_in``: how many
    canaries were included; pass the observed count when known. Default: floor(m / 2), the expected number
    under fair coins; with the default candidates (at most m // 2 guesses) any n_in >= m // 2 gives the same
    ceiling, so the default never understates it for a draw with at least half the canaries in.
    """
    if int(m) != m or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m}")
    m = int(m)
    d = _check_delta(delta)
    c = _check_confidence(confidence)
    n_in = m // 2 if n_in is None else int(n_in)
    if not 0 <= n_in <= m:
        raise ValueError(f"n_in must be in [0, {m}], got {n_in}")
    k_minus = int(k_minus)
    cands = _one_run_candidates(m, k_candidates, k_minus)
    c_each = 1.0 - (1.0 - c) / len(cands)
    best = 0.0
    for k in cands:
        v = min(k, n_in) + min(k_minus, m - n_in)
        best = max(best, epsilon_lb_one_run(m, k + k_minus, v, d, c_each))
    return best


def records_needed(epsilon: float, delta: float, confidence: float = 0.95, *,
                   max_records: int = 10**9) -> int | None:
    """Smallest n such that a perfect thresholded attack on n members and n non-members could prove
    epsilon' > ``epsilon`` (``ceiling_clopper_pearson(n, n, ...) > epsilon``); None above ``max_records``.

    The ceiling grows like ln(n / ln(2 / alpha)), so each extra unit of epsilon costs ~e times the records."""
    eps = float(epsilon)
    if not eps >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    d, c = _check_delta(delta), _check_confidence(confidence)

    return smallest_passing(lambda n: ceiling_clopper_pearson(n, n, d, c) > eps, max_records)


def smallest_passing(ok: Callable[[int], bool], limit: int, *, start: int = 1, within: int = 0) -> int | None:
    """The smallest n in [start, limit] with ``ok(n)``, for an ``ok`` that is monotone in n (a ceiling that grows
    with the sample): doubling, then bisection to within n // ``within`` (0: exact). None when ``ok(limit)``
    fails.

    >>> smallest_passing(lambda n: n * n >= 50, 1000)
    8
    """
    hi = start
    while not ok(hi):
        if hi >= limit:
            return None
        hi = min(2 * hi, limit)
    lo = hi // 2  # ok(lo) is False (or lo is below start)
    while hi - lo > max(1, hi // within if within else 1):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _one_run_perfect_p_ratio(m: int, eps: float, delta: float, confidence: float) -> float:
    """min over ``one_run_audit``'s default candidates of p-value(eps) / per-candidate alpha, for a perfect
    attack on m fair-coin canaries (n_in = m // 2): <= 1 exactly when the ceiling reaches eps. One p-value per
    candidate instead of ``ceiling_one_run``'s bisections."""
    cands = _one_run_candidates(m, None, 0)
    alpha_each = (1.0 - confidence) / len(cands)
    return min(_p_value_one_run(m, k, min(k, m // 2), eps, delta) for k in cands) / alpha_each


def canaries_needed(epsilon: float, delta: float, confidence: float = 0.95, *,
                    max_canaries: int = 100_000) -> int | None:
    """Smallest m of fair-coin canaries (to within 1 %) such that a perfect attack could prove
    epsilon' >= ``epsilon`` with ``one_run_audit``'s default candidates; None if no m up to ``max_canaries``
    can.

    Unlike the Clopper-Pearson ceiling this one does not grow without limit: the one-run p-value carries a
    2 m delta term, so past m of order (1 - confidence) / delta more canaries lower the ceiling (at
    delta = 1e-5 and confidence 0.983 it peaks near 4.8, around m = 2,000-5,000). The scan walks a geometric
    grid (x1.25) and stops once the perfect attack's p-value at ``epsilon`` has risen three grid points in a
    row (past the peak), then narrows the last step by bisection."""
    eps = float(epsilon)
    if not eps >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    d, c = _check_delta(delta), _check_confidence(confidence)
    prev_m, prev_ratio, rises = 1, math.inf, 0
    m = 2
    while m <= max_canaries:
        ratio = _one_run_perfect_p_ratio(m, eps, d, c)
        if ratio <= 1.0:
            lo, hi = prev_m, m  # reached at hi, not at lo; on this falling stretch of p assume it is monotone
            while hi - lo > max(1, hi // 100):
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if _one_run_perfect_p_ratio(mid, eps, d, c) <= 1.0 else (mid, hi)
            return hi
        # below m = 100 the ratio also rises as candidates become distinct (a finer Bonferroni split): not a peak
        rises = rises + 1 if ratio > prev_ratio and m >= 100 else 0
        if rises >= 3:  # past the peak: the 2 m delta term only grows from here
            return None
        prev_m, prev_ratio = m, ratio
        m = max(m + 1, int(m * 1.25))
    return None


# --------------------------------------------------------------------------- verdicts

def family_confidence(confidence: float, n_models: int) -> float:
    """Per-model confidence so that the verdicts of ``n_models`` models all hold together at ``confidence``
    (Bonferroni): 1 - (1 - confidence) / n_models.

    A report's overall verdict (and a gate that fails if ANY model shows a violation) errs if any one of the
    d models' verdicts errs; with each at 1 - alpha / d the chance that some one errs is at most alpha,
    whatever the dependence between models. n_models = 1 returns ``confidence`` unchanged."""
    c = _check_confidence(confidence)
    if int(n_models) != n_models or n_models < 1:
        raise ValueError(f"n_models must be an integer >= 1, got {n_models}")
    return 1.0 - (1.0 - c) / int(n_models)


NO_CLAIM, NONCONFORMANT, VIOLATION_STATUS = Status.NO_CLAIM, Status.NONCONFORMANT, Status.VIOLATION
INCONCLUSIVE, CONSISTENT_STATUS = Status.INCONCLUSIVE, Status.CONSISTENT


def evidence_confidences(confidence: float, n_attacks: int, canary_routes: int) -> tuple[float, float]:
    """(confidence of each attack's bound, confidence of each canary route's) so that the best of them holds
    at ``confidence``: a weighted Bonferroni split of α = 1 − confidence, with weights fixed before any data.

    Crafted canaries (black-box canaries, white-box gradient canaries and their conformance tests:
    ``canary_routes`` routes to a verdict) exist to prove ε; attacks on natural records mostly measure average
    leakage (AUC) and rarely lead the bounds. So the canary routes share half of α equally and the
    ``n_attacks`` attacks the other half; a group that is absent leaves all of α to the other. P(any bound
    false) ≤ Σ α_i = α whatever their dependence, as with equal shares. With one attack and one canary route,
    or with as many canary routes as attacks, this is plain Bonferroni."""
    c = _check_confidence(confidence)
    if n_attacks < 0 or canary_routes < 0 or int(n_attacks) != n_attacks or int(canary_routes) != canary_routes:
        raise ValueError(f"n_attacks and canary_routes must be integers >= 0, got {n_attacks}, {canary_routes}")
    alpha = 1.0 - c
    if n_attacks and canary_routes:
        return 1.0 - alpha / 2 / n_attacks, 1.0 - alpha / 2 / canary_routes
    return 1.0 - alpha / max(n_attacks, 1), 1.0 - alpha / max(canary_routes, 1)


# A verdict reads "consistent" only when the audit would have refuted, with probability >= POWER, a true ε of
# POWER_MULTIPLE times the claim: a leak at twice the guarantee must not pass unseen. Fixed before any data.
POWER = 0.8

ALPHA_SCHEDULE = ("α-spending fixed in advance: the original audit spends α/2, the r-th `dpaudit attack` re-run on "
                  "the same models α/2^(r+1); any number of re-runs spends α(1 − 2^-(R+1)) < α in all")


def alpha_share(rerun: int) -> float:
    """Fraction of α = 1 − confidence that run ``rerun`` may spend (0: the original audit, r: the r-th
    ``dpaudit attack`` re-run on its models): 2^-(r+1). The shares sum to less than 1 over any number of runs,
    so every verdict ever drawn from one set of models holds together at the configured confidence.

    >>> alpha_share(0), alpha_share(1), alpha_share(5)
    (0.5, 0.25, 0.015625)
    """
    if int(rerun) != rerun or rerun < 0:
        raise ValueError(f"rerun must be an integer >= 0, got {rerun}")
    return 2.0 ** -(int(rerun) + 1)


def alpha_spent(alpha: float, rerun: int) -> float:
    """α spent in all by the original audit and re-runs 1..``rerun``: α (1 − 2^-(rerun+1)).

    >>> round(alpha_spent(0.05, 0), 6), round(alpha_spent(0.05, 5), 6)
    (0.025, 0.049219)
    """
    return float(alpha) * sum(alpha_share(r) for r in range(int(rerun) + 1))


def combined_confidence(confidence: float, rerun: int) -> float:
    """Confidence at which the verdicts of the original audit and its first ``rerun`` re-runs hold together:
    1 − alpha_spent(1 − confidence, rerun), never below ``confidence``."""
    c = _check_confidence(confidence)
    return 1.0 - alpha_spent(1.0 - c, rerun)


def whitebox_need(whitebox: WhiteBoxAudit | None) -> tuple[int, int, str] | None:
    """(gradient canaries needed, canaries now, route label) of the cheapest counted white-box route whose ceiling
    more canaries would lift above the claim (``canaries_needed`` of ``dpaudit.core.whitebox_stats.bound_routes``),
    or None. The one reading of a white-box block's routes for "what would decide", by every stage that words a
    verdict and every check that recomputes one."""
    if whitebox is None or whitebox.routes is None:
        return None
    m = whitebox.m
    valid = whitebox.counted_routes()
    if any(r.canaries_needed is not None and r.canaries_needed <= m for r in valid):
        return None  # a route's ceiling is already above the claim: its power, not the canary count, decides
    need = [(r.canaries_needed, r.label) for r in valid if r.canaries_needed]
    if not need:
        return None
    n, label = min(need)
    return n, m, label


def _next_step(sources: Sequence[str], whitebox_possible: bool, n_canaries: int | None,
               whitebox: tuple[int, int, str] | None = None) -> str:
    """The one step most likely to decide an inconclusive verdict, from the evidence there was."""
    if whitebox is not None:
        n, m, label = whitebox
        return (f"To decide: about {n:,} gradient canaries (now {m:,}) would lift the {label} ceiling above the "
                f"claim; more white-box power also comes from more steps observed.")
    if any("white-box" in s for s in sources):
        return ("To decide: more white-box gradient canaries (--gradient-canaries) or more steps observed; "
                "their power grows with both.")
    if whitebox_possible:
        return ("To decide: run white-box gradient canaries (--gradient-canaries 1000), which test what the training "
                "did and have power near the claim where attacks do not.")
    now = f" (now {n_canaries:,})" if n_canaries else ""
    return (f"To decide: more canaries{now} or more target records; white-box gradient canaries need dpaudit to "
            "observe the training.")


@dataclass(frozen=True)
class Decision:
    """What :func:`decide_verdict` decides from a model's evidence: the status, the best bound and its source,
    the ceiling, the measured power, the one step that would decide, and the sentence built from these numbers.
    ``evidence`` lists each piece ({source, epsilon_lb, ceiling, detectable_epsilon}). The report's
    ``schema.Verdict`` is this with the confidence plan it was made at (``dpaudit.core.plan.make_verdict``)."""

    status: str
    claimed_epsilon: float | None
    empirical_epsilon_lb: float
    source: str
    ratio: float | None
    ceiling: float
    ceiling_source: str
    could_detect: bool
    detectable_epsilon: float | None
    detectable_source: str | None
    power_multiple: float
    next_step: str | None
    evidence: tuple[dict[str, Any], ...]
    rejected_conformance: tuple[str, ...]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_verdict(claimed_epsilon: float | None, bounds: Sequence[tuple], rejected_conformance: Sequence[str] | None = None,
                   *, delta: float | None = None, confidence: float | None = None,
                   n_records: tuple[int, int] | None = None, n_canaries: int | None = None,
                   canary_confidence: float | None = None, whitebox_possible: bool = True,
                   power_multiple: float = POWER_MULTIPLE,
                   detectable: Sequence[tuple[str, float]] | None = None,
                   whitebox_need: tuple[int, int, str] | None = None) -> Decision:
    """A model's verdict from its claimed epsilon and its evidence, with a sentence built from the numbers.

    ``bounds``: one (source, epsilon lower bound, detection ceiling[, detectable epsilon]) per kind of evidence
    (each attack, the canaries, ...), each at that bound's confidence. The detectable epsilon is the smallest
    true ε this evidence refutes (bound > claim) with probability >= 80% (``dpaudit.core.power``, simulated); the
    audit's is the smallest over its evidence (refuting through any one route is refuting). Rules, first
    match wins:

    * no claim (``claimed_epsilon`` None): "no DP claim";
    * any conformance test rejected (``rejected_conformance`` non-empty): "nonconformant";
    * best bound > claimed: "violation";
    * the detectable ε is measured and at most ``power_multiple`` (2) × the claim: "consistent";
    * else "inconclusive": the text gives the detectable ε (or says power was not measured) and one step that
      would decide. The perfect-attack ceiling stays a number (``ceiling``, ``could_detect``); no text promises
      from it.

    ``detectable``: (route, detectable ε) pairs given apart from the bounds, for a route whose power covers
    several of them (white-box canaries: two bounds and the conformance tests); when given, the bounds' own
    fourth elements are not used. ``delta``, ``confidence``, ``n_records`` and ``canary_confidence`` are
    accepted for callers of the earlier rule and not used in the text.
    """
    del delta, confidence, n_records, canary_confidence
    claimed = None if claimed_epsilon is None else float(claimed_epsilon)
    if claimed is not None and not claimed >= 0:
        raise ValueError(f"claimed_epsilon must be >= 0 or None, got {claimed_epsilon}")
    if not power_multiple >= 1:
        raise ValueError(f"power_multiple must be >= 1, got {power_multiple}")
    evidence = []
    for item in bounds:
        source, lb, ceil = item[0], item[1], item[2]
        det = item[3] if len(item) > 3 else None
        lb, ceil = float(lb), float(ceil)
        if not (lb >= 0 and ceil >= 0):
            raise ValueError(f"{source}: bound and ceiling must be >= 0, got {lb} and {ceil}")
        # a bound above its own ceiling means they were computed at different sizes or confidences
        if lb > ceil * (1 + 1e-9) + 1e-12:
            raise ValueError(f"{source}: bound {lb:.6g} exceeds its ceiling {ceil:.6g}; compute both at the "
                             "same sample size and confidence")
        if det is not None:
            det = float(det)
            if not det > 0:  # also NaN
                raise ValueError(f"{source}: detectable epsilon must be > 0 (inf: not detectable), got {det}")
        evidence.append({"source": str(source), "epsilon_lb": lb, "ceiling": ceil, "detectable_epsilon": det})
    rejected = [str(r) for r in (rejected_conformance or [])]

    best, source = max(((e["epsilon_lb"], e["source"]) for e in evidence), default=(0.0, "none"))
    if best <= 0:
        source = "none (no test rejected ε = 0)"
    ceiling = max((e["ceiling"] for e in evidence), default=0.0)
    ceiling_source = ", ".join(e["source"] for e in evidence if e["ceiling"] == ceiling) or "none"
    could_detect = claimed is not None and ceiling > claimed
    if detectable is not None:
        for src, d in detectable:
            if not float(d) > 0:
                raise ValueError(f"{src}: detectable epsilon must be > 0 (inf: not detectable), got {d}")
        dets = [(float(d), str(s)) for s, d in detectable if d is not None]
    else:
        dets = [(e["detectable_epsilon"], e["source"]) for e in evidence if e["detectable_epsilon"] is not None]
    detectable, det_source = min(dets) if dets else (None, None)
    best_txt = f"best ε ≥ {best:.2f} from {source}" if best > 0 else "no bound above 0"
    step = _next_step([e["source"] for e in evidence], whitebox_possible, n_canaries, whitebox_need)

    status = verdict_status(claimed=claimed, best=best, detectable=detectable, nonconformant=bool(rejected),
                            power_multiple=power_multiple)
    if status is NO_CLAIM:
        text = f"No DP claim: trained without DP, so there is no guarantee to check ({best_txt})."
    elif status is NONCONFORMANT:
        text = (f"Nonconformant: the conformance test(s) {', '.join(rejected)} rejected the training's "
                f"implementation, so the claimed ε = {claimed:g} is not supported whatever the attacks show "
                f"({best_txt}).")
    elif status is VIOLATION_STATUS:
        text = (f"Violation: the lower bound ε ≥ {best:.2f} from {source} exceeds the claimed ε = {claimed:g}, "
                "so the model leaks more than its guarantee allows.")
    elif status is CONSISTENT_STATUS:
        text = (f"Consistent: no bound exceeds the claimed ε = {claimed:g} ({best_txt}), and this audit had the "
                f"power to see a leak: it refutes a true ε of {detectable:.2f} or more with probability ≥ "
                f"{POWER:.0%} (simulated, {det_source}), within {power_multiple:g}× the claim.")
    else:
        if not evidence:
            text = (f"Inconclusive: no evidence was collected, so nothing could have shown the claimed "
                    f"ε = {claimed:g} violated. {step}")
        elif detectable is None:
            text = (f"Inconclusive: no bound exceeds the claimed ε = {claimed:g} ({best_txt}), but this evidence's "
                    f"power was not measured, so passing says nothing. {step}")
        elif math.isinf(detectable):
            text = (f"Inconclusive: no bound exceeds the claimed ε = {claimed:g} ({best_txt}), but no true ε this "
                    f"audit simulated is refuted with probability ≥ {POWER:.0%}: it could not have seen a leak. {step}")
        else:
            text = (f"Inconclusive: no bound exceeds the claimed ε = {claimed:g} ({best_txt}), but this audit "
                    f"refutes with probability ≥ {POWER:.0%} only a true ε of {detectable:.2f} or more (simulated, "
                    f"{det_source}), above {power_multiple:g}× the claim: a smaller leak could pass unseen. {step}")
    return Decision(status=status, claimed_epsilon=claimed, empirical_epsilon_lb=best, source=source,
                    ratio=best / claimed if claimed else None, ceiling=ceiling, ceiling_source=ceiling_source,
                    could_detect=bool(could_detect), detectable_epsilon=detectable, detectable_source=det_source,
                    power_multiple=float(power_multiple), next_step=step if status == INCONCLUSIVE else None,
                    evidence=tuple(evidence), rejected_conformance=tuple(rejected), text=text)
