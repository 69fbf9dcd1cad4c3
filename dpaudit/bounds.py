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
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

__all__ = [
    "EpsilonLB",
    "OneRunResult",
    "best_threshold_epsilon_lb",
    "bonferroni_threshold_epsilon_lb",
    "clopper_pearson",
    "epsilon_lb_clopper_pearson",
    "epsilon_lb_one_run",
    "fixed_threshold_epsilon_lb",
    "max_advantage",
    "max_balanced_accuracy",
    "one_run_audit",
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


def _cp_eps_array(tp: np.ndarray, n_pos: int, fp: np.ndarray, n_neg: int, delta: float,
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
    eps, _ = _cp_eps_array(np.array([tp]), n_pos, np.array([fp]), n_neg, d, c)
    return float(eps[0])


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


# --------------------------------------------------------------------------- thresholded attacks

@dataclass(frozen=True)
class EpsilonLB:
    """A Clopper-Pearson epsilon lower bound and how its threshold was chosen.

    ``direction`` says which DP inequality gave the bound: "tpr/fpr" (members too often guessed
    in), "tnr/fnr" (non-members too often guessed out), or "none" when the bound is 0.
    """

    value: float
    method: str
    threshold: float
    threshold_selection: str
    tp: int
    n_pos: int
    fp: int
    n_neg: int
    direction: str
    delta: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(s: np.ndarray, y: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    g = s >= threshold
    return int(np.sum(g & y)), int(y.sum()), int(np.sum(g & ~y)), int((~y).sum())


def _lb_at(s: np.ndarray, y: np.ndarray, threshold: float, delta: float, confidence: float,
           selection: str) -> EpsilonLB:
    tp, n_pos, fp, n_neg = _counts(s, y, threshold)
    eps, which = _cp_eps_array(np.array([tp]), n_pos, np.array([fp]), n_neg, delta, confidence)
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
    eps, _ = _cp_eps_array(tp, pos.size, fp, neg.size, d, c)
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
