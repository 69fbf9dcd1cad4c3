"""Metrics for membership inference: ROC, AUC, TPR at low FPR, rates at a threshold, bootstrap CIs.

Convention everywhere: a higher score means "more likely a member", and a record is guessed
"member" when its score is >= the threshold (the same rule as ``sklearn.metrics.roc_curve``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AttackMetrics",
    "Bootstrap",
    "Counts",
    "RateCount",
    "auc",
    "best_balanced_threshold",
    "bootstrap_ci",
    "evaluate",
    "rates_at_threshold",
    "roc_curve",
    "tpr_at_fpr",
]

TPR_AT_FPR_LEVELS: tuple[float, ...] = (0.001, 0.01, 0.1)
ROC_MAX_POINTS = 200

Statistic = Callable[[np.ndarray, np.ndarray], float]


def _validate(scores: Any, is_member: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 scores, bool labels) or raise ValueError with a one-line message."""
    s = np.asarray(scores)
    y = np.asarray(is_member)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and is_member must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores and is_member have different lengths: {s.shape[0]} != {y.shape[0]}")
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("scores must be numeric") from None
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite; found {int(np.sum(~np.isfinite(s)))} NaN/inf values")
    if y.dtype != bool:
        try:
            yf = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("is_member must be binary (0/1 or bool)") from None
        if not np.all((yf == 0) | (yf == 1)):
            raise ValueError(f"is_member must be binary (0/1 or bool); found values {np.unique(y)[:5]}")
        y = yf == 1
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"need at least one member and one non-member, got {n_pos} members of {y.size} records")
    return s, y


def _roc(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # scikit-learn loads here, not at import: the report model (dpaudit.schema) imports these types, and a
    # report renders without it. drop_intermediate=False keeps every distinct threshold, so low-FPR steps stay.
    from sklearn.metrics import roc_curve

    return roc_curve(y, s, drop_intermediate=False)


def _auc_rank(s: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half); same value as roc_auc_score, without its per-call
    overhead, which dominates inside a bootstrap loop."""
    from scipy.stats import rankdata

    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: Any, is_member: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds); thresholds[0] is +inf (nobody guessed member)."""
    s, y = _validate(scores, is_member)
    return _roc(s, y)


def auc(scores: Any, is_member: Any) -> float:
    """Area under the ROC curve (0.5 = chance, 1.0 = perfect separation; ties count one half)."""
    s, y = _validate(scores, is_member)
    return _auc_rank(s, y)


def _tpr_at_fpr_from_roc(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


@dataclass(frozen=True)
class RateCount:
    """The counts behind one TPR at a fixed FPR: tp of n_pos members found, fp of n_neg non-members accused."""

    tp: int
    n_pos: int
    fp: int
    n_neg: int


def _counts_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float, n_pos: int, n_neg: int) -> RateCount:
    """The counts behind ``tpr_at_fpr``: members and non-members guessed "member" at the ROC point it reports.
    A rate at 0.1% FPR rests on a handful of records; the counts say how many."""
    ok = np.flatnonzero(fpr <= max_fpr)
    if ok.size == 0:
        return RateCount(tp=0, n_pos=n_pos, fp=0, n_neg=n_neg)
    i = ok[np.argmax(tpr[ok])]
    return RateCount(tp=int(round(tpr[i] * n_pos)), n_pos=n_pos, fp=int(round(fpr[i] * n_neg)), n_neg=n_neg)


def tpr_at_fpr(scores: Any, is_member: Any, max_fpr: float) -> float:
    """Highest TPR among ROC points whose FPR is <= max_fpr (0.0 if there is none).

    Points are taken as they are, not interpolated: an interpolated TPR would need a randomised
    attack to be achieved.
    """
    if not (0.0 <= float(max_fpr) <= 1.0):
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_curve(scores, is_member)
    return _tpr_at_fpr_from_roc(fpr, tpr, float(max_fpr))


def _nan_div(a: float, b: float) -> float:
    return a / b if b else math.nan


@dataclass(frozen=True)
class Counts:
    """Confusion counts of the rule "member if score >= threshold", with the rates they give. The rates are
    derived fields (``init=False``): made from the four counts, never given, so a report cannot state rates its
    counts do not give."""

    tp: int
    fn: int
    fp: int
    tn: int
    # metadata "derived": how each is made, for the message that refuses a stored report whose rates disagree
    n_pos: int = field(init=False, metadata={"derived": "tp + fn"})
    n_neg: int = field(init=False, metadata={"derived": "fp + tn"})
    tpr: float = field(init=False, metadata={"derived": "tp / n_pos"})
    fpr: float = field(init=False, metadata={"derived": "fp / n_neg"})
    # TPR - FPR (Yeom et al.'s membership advantage)
    advantage: float = field(init=False, metadata={"derived": "tpr − fpr"})
    # accuracy on a 50/50 member/non-member mix, whatever the class sizes
    balanced_accuracy: float = field(init=False, metadata={"derived": "(tpr + 1 − fpr) / 2"})

    def __post_init__(self):
        put = object.__setattr__  # frozen: the derived fields are set once, here
        put(self, "n_pos", self.tp + self.fn)
        put(self, "n_neg", self.fp + self.tn)
        put(self, "tpr", _nan_div(self.tp, self.n_pos))
        put(self, "fpr", _nan_div(self.fp, self.n_neg))
        put(self, "advantage", self.tpr - self.fpr)
        put(self, "balanced_accuracy", (self.tpr + 1.0 - self.fpr) / 2.0)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _counts(s: np.ndarray, y: np.ndarray, threshold: float) -> Counts:
    guess = s >= threshold
    tp = int(np.sum(guess & y))
    fp = int(np.sum(guess & ~y))
    n_pos = int(y.sum())
    return Counts(tp=tp, fn=n_pos - tp, fp=fp, tn=(y.size - n_pos) - fp)


def rates_at_threshold(scores: Any, is_member: Any, threshold: float) -> Counts:
    """Confusion counts when every record with score >= threshold is guessed "member"."""
    s, y = _validate(scores, is_member)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    return _counts(s, y, threshold)


def best_balanced_threshold(scores: Any, is_member: Any) -> float:
    """Threshold that maximises balanced accuracy on these records.

    Use it ONLY on reference/calibration data (shadow or reference models' scores), never on the
    records being evaluated: choosing a threshold on the evaluation records with their truth
    overstates the attack. Ties go to the highest threshold (fewest member guesses), so the
    choice is deterministic. The result is always finite.
    """
    s, y = _validate(scores, is_member)
    fpr, tpr, thr = _roc(s, y)
    i = int(np.argmax(tpr - fpr))  # first maximum = highest threshold among ties
    t = float(thr[i])
    if not math.isfinite(t):
        # the "guess nobody" point: a finite threshold just above the largest score does the same
        t = float(np.nextafter(s.max(), np.inf))
    return t


def bootstrap_ci(scores: Any, is_member: Any, statistic: Statistic, *, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(scores, is_member)``.

    Members and non-members are resampled separately so that every resample keeps the observed
    class sizes (the quantity of interest is conditional on them). Resamples whose statistic is
    not finite, or raises ValueError, are skipped; (nan, nan) if none is left.
    """
    s, y = _validate(scores, is_member)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not (0.0 < float(level) < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")
    return _bootstrap(s, y, [statistic], int(n_boot), float(level), int(seed))[0]


def _bootstrap(s: np.ndarray, y: np.ndarray, statistics: list[Statistic], n_boot: int,
               level: float, seed: int) -> list[tuple[float, float]]:
    """Shared resamples for several statistics (their CIs then come from the same draws)."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y)
    neg = np.flatnonzero(~y)
    values: list[list[float]] = [[] for _ in statistics]
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, size=pos.size, replace=True),
                              rng.choice(neg, size=neg.size, replace=True)])
        sb, yb = s[idx], y[idx]
        for j, stat in enumerate(statistics):
            try:
                v = float(stat(sb, yb))
            except ValueError:
                continue
            if math.isfinite(v):
                values[j].append(v)
    lo_q, hi_q = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0
    out = []
    for vals in values:
        if not vals:
            out.append((math.nan, math.nan))
        else:
            lo, hi = np.quantile(np.asarray(vals), [lo_q, hi_q])
            out.append((float(lo), float(hi)))
    return out


def _downsample_roc(fpr: np.ndarray, tpr: np.ndarray, n_neg: int,
                    max_points: int = ROC_MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_points`` actual ROC points, picked on a log-spaced FPR grid.

    A uniform subsample would keep almost nothing below FPR 1e-2, which is where a privacy
    attack is judged (log-log ROC plots). For each grid value the kept point is the one with the
    highest TPR at FPR <= that value, so the curve is never drawn above what was achieved.
    """
    if fpr.size <= max_points:
        return fpr, tpr
    grid = np.concatenate([[0.0], np.geomspace(1.0 / max(n_neg, 1), 1.0, max_points - 2)])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.concatenate([[0], idx[idx >= 0], [fpr.size - 1]]))
    return fpr[idx], tpr[idx]


def _plain(x: Any) -> Any:
    """Plain Python, JSON-safe. Same rule as ``dpaudit.io.jsonable`` (``attacks`` must not import dpaudit,
    so it is repeated here; a test checks they agree): inf becomes the string "inf" ("-inf"), NaN None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return x


@dataclass(frozen=True)
class Bootstrap:
    n_boot: int
    level: float
    seed: int


@dataclass(frozen=True)
class AttackMetrics:
    """Everything a report needs about one attack on one set of target records: the one type, which the report
    model (``dpaudit.schema``) carries as it is."""

    auc: float
    auc_ci: tuple[float, float]
    threshold: float
    threshold_source: str
    counts: Counts
    advantage: float
    advantage_ci: tuple[float, float]
    balanced_accuracy: float
    balanced_accuracy_ci: tuple[float, float]
    tpr_at_fpr: dict[str, float]  # keys "0.001", "0.01", "0.1": the FPR levels
    roc_fpr: tuple[float, ...]
    roc_tpr: tuple[float, ...]
    n_members: int
    n_nonmembers: int
    bootstrap: Bootstrap
    # The counts behind each tpr_at_fpr entry (optional in every report version: older ones lack them).
    tpr_at_fpr_counts: dict[str, RateCount] | None = field(default=None, metadata={"optional": True})

    def tpr(self, level: str) -> float:
        return self.tpr_at_fpr[level]

    def tpr_count(self, level: str) -> RateCount | None:
        return (self.tpr_at_fpr_counts or {}).get(level)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def evaluate(scores: Any, is_member: Any, *, threshold: float, threshold_source: str,
             n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> AttackMetrics:
    """Evaluate an attack's scores on target records whose membership truth is ``is_member``.

    ``threshold`` must have been chosen without these records' truth (e.g. on reference models);
    advantage and balanced accuracy are reported at that fixed threshold, and their CIs come from
    a stratified bootstrap with the threshold held fixed. ``n_boot=0`` skips the bootstrap
    (CIs are NaN, None in ``to_dict``).
    """
    s, y = _validate(scores, is_member)
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    if int(n_boot) < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not (0.0 < float(level) < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")

    fpr, tpr, _ = _roc(s, y)
    counts = _counts(s, y, threshold)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos

    def adv(sb: np.ndarray, yb: np.ndarray) -> float:
        return _counts(sb, yb, threshold).advantage

    def bal(sb: np.ndarray, yb: np.ndarray) -> float:
        return _counts(sb, yb, threshold).balanced_accuracy

    if int(n_boot) > 0:
        auc_ci, adv_ci, bal_ci = _bootstrap(s, y, [_auc_rank, adv, bal], int(n_boot), float(level),
                                            int(seed))
    else:
        auc_ci = adv_ci = bal_ci = (math.nan, math.nan)

    roc_f, roc_t = _downsample_roc(fpr, tpr, n_neg)
    return AttackMetrics(
        auc=_auc_rank(s, y),
        auc_ci=auc_ci,
        threshold=threshold,
        threshold_source=str(threshold_source),
        counts=counts,
        advantage=counts.advantage,
        advantage_ci=adv_ci,
        balanced_accuracy=counts.balanced_accuracy,
        balanced_accuracy_ci=bal_ci,
        tpr_at_fpr={f"{lv:g}": _tpr_at_fpr_from_roc(fpr, tpr, lv) for lv in TPR_AT_FPR_LEVELS},
        roc_fpr=tuple(float(v) for v in roc_f),
        roc_tpr=tuple(float(v) for v in roc_t),
        n_members=n_pos,
        n_nonmembers=n_neg,
        bootstrap=Bootstrap(n_boot=int(n_boot), level=float(level), seed=int(seed)),
        tpr_at_fpr_counts={f"{lv:g}": _counts_at_fpr(fpr, tpr, lv, n_pos, n_neg) for lv in TPR_AT_FPR_LEVELS},
    )
