"""LiRA (Carlini, Chien, Nasr, Song, Terzis & Tramèr, S&P 2022, "Membership Inference Attacks From First
Principles"): per record, fit Gaussians to the logit-scaled confidence φ of reference models that did
(IN) and did not (OUT) train on it, then test the target's φ against them.

φ = log p_y − log Σ_{y'≠y} p_y' is close to Gaussian across models for a fixed record, which a raw
probability or loss is not. Per-record means remove each record's intrinsic difficulty.

Inputs are φ values only, never models: this module needs no torch. Conventions: ``phi_refs[k, i]`` and
``refs_in[k, i]`` are reference model k's φ on pool record i and whether k trained on it; the target's
membership is never an argument. Higher score = more likely member. An optional last axis Q holds several
queries per record (e.g. shifted images); Gaussians are fitted per query and the per-query scores
averaged, as the paper's code does.

Each Gaussian's centre is the references' mean φ (``centre="mean"``) or their median (``centre="median"``, as TF
Privacy's LiRA): with few references one overfitted or diverged reference moves a mean, not a median. The spread
is the within-record one about the means either way. Which centre serves a target is for the caller to choose on
the reference models (dpaudit's registry does, leave-group-out), never on the target.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm

from .groups import can_cross_fit, check_groups, outside

__all__ = ["CENTRES", "lira_reference_scores", "lira_scores", "phi_from_logits"]

CENTRES = ("mean", "median")

# A std of 0 (identical reference φ) would make every score ±inf; this floor keeps scores finite and
# is far below the spread of φ between independently trained models.
_MIN_STD = 1e-6


def phi_from_logits(logits: Any, labels: Any) -> np.ndarray:
    """Logit-scaled confidence φ = log p_y − logsumexp_{y'≠y} log p_y', float64 of shape logits.shape[:-1].

    Computed from log-softmax with a log-sum-exp over the other classes, so it stays finite where
    log(p / (1 − p)) would round 1 − p to 0. ``labels`` (integer class indices) must broadcast to
    ``logits.shape[:-1]``: for logits [K, n, Q, C] pass ``labels[:, None]`` ([n, 1]).
    """
    lg = np.asarray(logits, dtype=np.float64)
    if lg.ndim < 1 or lg.shape[-1] < 2:
        raise ValueError(f"logits must have a class axis of at least 2 classes last, got shape {lg.shape}")
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {lab.dtype}")
    try:
        lab = np.broadcast_to(lab, lg.shape[:-1])[..., None]
    except ValueError:
        raise ValueError(f"labels {lab.shape} do not broadcast to logits.shape[:-1] = {lg.shape[:-1]}") from None
    if lab.size and (lab.min() < 0 or lab.max() >= lg.shape[-1]):
        raise ValueError(f"labels must be in [0, {lg.shape[-1]})")
    lp = log_softmax(lg, axis=-1)
    true = np.take_along_axis(lp, lab, axis=-1)[..., 0]
    others = lp.copy()
    np.put_along_axis(others, lab, -np.inf, axis=-1)
    return true - logsumexp(others, axis=-1)


def _as_queries(phi_target: Any, phi_refs: Any, refs_in: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phi_target [n, Q], phi_refs [K, n, Q], refs_in [K, n]) with shapes checked."""
    pt = np.asarray(phi_target, dtype=np.float64)
    pr = np.asarray(phi_refs, dtype=np.float64)
    rin = np.asarray(refs_in)
    if pt.ndim not in (1, 2) or pr.ndim != pt.ndim + 1:
        raise ValueError(f"phi_target must be [n] or [n, Q] and phi_refs [K, n] or [K, n, Q]; got {pt.shape} "
                         f"and {pr.shape}")
    if pt.ndim == 1:
        pt, pr = pt[:, None], pr[..., None]
    if pr.shape[1:] != pt.shape:
        raise ValueError(f"phi_refs {pr.shape} does not match phi_target {pt.shape}")
    if rin.dtype != bool or rin.shape != pr.shape[:2]:
        raise ValueError(f"refs_in must be bool [K, n] = {list(pr.shape[:2])}, got {rin.dtype} {rin.shape}")
    if pr.shape[0] < 1:
        raise ValueError("LiRA needs at least one reference model")
    if not (np.all(np.isfinite(pt)) and np.all(np.isfinite(pr))):
        raise ValueError("phi values must be finite (compute them with phi_from_logits)")
    return pt, pr, rin


def _group(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record and query, over the references selected by mask [K, n]: count [n], mean [n, Q] (NaN
    where the count is 0) and sum of squared deviations [n, Q]."""
    m = mask.sum(0)
    w = mask[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(w, phi, 0.0).sum(0) / m[:, None]
    ss = np.where(w, (phi - np.nan_to_num(mean)) ** 2, 0.0).sum(0)
    return m, mean, ss


def _centre(group: tuple[np.ndarray, np.ndarray, np.ndarray], phi: np.ndarray, mask: np.ndarray,
            centre: str) -> np.ndarray:
    """[n, Q]: the group's mean, or the median of φ over the references selected by ``mask`` [K, n] (NaN where
    none is)."""
    if centre == "mean":
        return group[1]
    if centre != "median":
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: records without such a reference
        return np.nanmedian(np.where(mask[..., None], phi, np.nan), axis=0)


def _fill_mean(mean: np.ndarray, m: np.ndarray, kind: str) -> np.ndarray:
    # A record with no reference of this kind takes the mean of the other records' means, per query
    # (TF Privacy's advanced_mia does the same): its score then only says whether its φ is high overall.
    if not (m > 0).any():
        raise ValueError(f"no record has an {kind} reference model; LiRA cannot fit the {kind} distribution")
    return np.where((m > 0)[:, None], mean, mean[m > 0].mean(0))


def _pooled_std(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], phi: np.ndarray,
                masks: list[np.ndarray]) -> np.ndarray:
    """One std per query [Q]: the within-record spread, pooled over records (and groups), i.e. each
    record's deviations from its own mean with one degree of freedom spent per record mean."""
    ss = sum(g[2].sum(0) for g in groups)
    dof = sum(np.maximum(g[0] - 1, 0).sum() for g in groups)
    if dof > 0:
        std = np.sqrt(ss / dof)
    else:
        # every record has at most one reference of each kind: no within-record spread to measure; the
        # spread across records over-estimates it, which only makes the test more conservative
        sel = np.any(np.stack(masks), axis=0)
        std = phi[sel].std(0) if sel.sum() > 1 else np.ones(phi.shape[-1])
    return np.maximum(std, _MIN_STD)


def _record_std(group: tuple[np.ndarray, np.ndarray, np.ndarray], fallback: np.ndarray) -> np.ndarray:
    """Per record and query [n, Q] (unbiased, ddof=1); records with fewer than 2 references of the kind use
    the pooled std."""
    m, _, ss = group
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(ss / (m - 1)[:, None])
    return np.maximum(np.where((m >= 2)[:, None], std, fallback[None, :]), _MIN_STD)


def lira_scores(phi_target: Any, phi_refs: Any, refs_in: Any, *, online: bool = False,
                fixed_variance: bool = True, centre: str = "mean") -> np.ndarray:
    """LiRA score of every pool record under the target model, float64 [n].

    ``phi_target`` [n] or [n, Q]; ``phi_refs`` [K, n] or [K, n, Q]; ``refs_in`` [K, n] bool.

    - Per record and query, the mean of φ over the OUT references (and, online, over the IN ones).
    - ``fixed_variance=True`` (the paper's choice with few references): one std per query, the
      within-record spread pooled over all records (online: over IN and OUT deviations together, so both
      Gaussians share it, as in the paper's code). Otherwise a std per record and query (ddof=1), falling
      back to the pooled std for records with fewer than 2 references of that kind.
    - Offline: one-sided test against the OUT Gaussian; the score is −log P(Φ_OUT >= φ_target), the
      negative log p-value (higher φ → member). Online: log N(φ; μ_IN, σ_IN) − log N(φ; μ_OUT, σ_OUT).
      Either way the per-query values are averaged over the Q queries.
    - ``centre``: "mean" (above) or "median" of the references' φ as each Gaussian's centre; the spread is
      the same either way.
    - A record with no OUT reference (offline) takes the mean of the other records' OUT centres, per query.
      Online raises ValueError unless every record has at least one IN and one OUT reference (with K
      references on independent random halves, a record lacks one with probability 2^(1−K)).
    """
    pt, pr, rin = _as_queries(phi_target, phi_refs, refs_in)
    out = _group(pr, ~rin)
    if not online:
        mu_out = _fill_mean(_centre(out, pr, ~rin, centre), out[0], "OUT")
        sd = _pooled_std([out], pr, [~rin])
        sd_out = sd[None, :] if fixed_variance else _record_std(out, sd)
        return (-norm.logsf((pt - mu_out) / sd_out)).mean(1)
    inn = _group(pr, rin)
    bad = (inn[0] == 0) | (out[0] == 0)
    if bad.any():
        raise ValueError(f"online LiRA needs every record to have at least one IN and one OUT reference model; "
                         f"{int(bad.sum())} of {bad.size} records lack one (use offline LiRA, or more references)")
    if fixed_variance:
        sd_in = sd_out = _pooled_std([inn, out], pr, [rin, ~rin])[None, :]
    else:
        sd_in = _record_std(inn, _pooled_std([inn], pr, [rin]))
        sd_out = _record_std(out, _pooled_std([out], pr, [~rin]))
    llr = (norm.logpdf(pt, _centre(inn, pr, rin, centre), sd_in)
           - norm.logpdf(pt, _centre(out, pr, ~rin, centre), sd_out))
    return llr.mean(1)


def lira_reference_scores(phi_refs: Any, refs_in: Any, *, online: bool = False,
                          fixed_variance: bool = True, groups: Any = None, centre: str = "mean") -> np.ndarray:
    """Out-of-sample LiRA scores for every reference model, float64 [K, n].

    Row k scores reference k as if it were the target, with Gaussians fitted on the references outside k's
    group only (``groups``, see attacks.groups; None: the other K−1, leave-one-out), so ``refs_in[k]`` never
    enters row k, not even through a partner's complementary membership. Needs K >= 2.
    """
    pr = np.asarray(phi_refs, dtype=np.float64)
    rin = np.asarray(refs_in)
    if pr.ndim not in (2, 3) or rin.shape != pr.shape[:2]:
        raise ValueError(f"phi_refs must be [K, n] or [K, n, Q] and refs_in [K, n]; got {pr.shape} and {rin.shape}")
    k_refs = pr.shape[0]
    if k_refs < 2:
        raise ValueError(f"leave-one-out reference scores need at least 2 reference models, got {k_refs}")
    g = check_groups(groups, k_refs)
    if not can_cross_fit(g):
        raise ValueError("every reference model needs another one outside its group to be scored against")
    out = np.empty(pr.shape[:2], dtype=np.float64)
    for k in range(k_refs):
        rest = outside(g, k)
        out[k] = lira_scores(pr[k], pr[rest], rin[rest], online=online, fixed_variance=fixed_variance,
                             centre=centre)
    return out
