"""RMIA (Zarifzadeh, Liu, Mahloujifar & Shokri, ICML 2024, "Low-Cost High-Power Membership Inference
Attacks"): compare a record's likelihood ratio Pr(x|θ)/Pr(x) with that of population records z that no
model trained on; the score is the fraction of z that x beats by a factor γ.

Pr(x|θ) is the softmax probability of x's true label under θ. Pr(x) is the same probability averaged over
reference models (models trained on random halves of the pool), which removes each record's intrinsic
difficulty; that per-record calibration is what lets RMIA beat a global loss threshold.

Inputs are probabilities only, never models: this module needs no torch. Conventions: ``p_refs[k, i]`` and
``refs_in[k, i]`` are reference model k's probability on pool record i and whether k trained on it;
the target's membership is never an argument. Higher score = more likely member.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .groups import can_cross_fit, check_groups, outside
from .metrics import auc

__all__ = ["A_GRID", "DEFAULT_OFFLINE_A", "TEMPERATURES", "choose_offline_a", "rmia_reference_scores",
           "rmia_scores", "true_label_probs"]

# ML Privacy Meter's fixed offline_a when it cannot tune it (its get_out_ref_signals default); used when a
# single reference model leaves nothing to tune a on.
DEFAULT_OFFLINE_A = 0.3
# the values of a choose_offline_a tries by default: np.linspace(0, 1, 11), as an immutable tuple (a finer grid
# multiplies the leave-one-out tuning time and moved reference AUCs by less than their noise)
A_GRID = tuple(float(x) for x in np.linspace(0.0, 1.0, 11))
# Softmax temperatures for Pr(x|θ): plain softmax (T = 1, the paper's main choice) and T = 2 (LeakPro's RMIA
# default). A well-fitted model puts most records at p ≈ 1, where Pr(x|θ)/Pr(x) ≈ 1 for all of them; T > 1
# spreads them out again. Which one an audit uses is chosen on the reference models.
TEMPERATURES = (1.0, 2.0)
# log of a probability that underflowed to 0 stays finite, so a ratio is never 0/0
_TINY = np.finfo(np.float64).tiny


def _probs(x: Any, name: str, ndim: int) -> np.ndarray:
    p = np.asarray(x, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError(f"{name} must hold probabilities in [0, 1] (softmax of the true label)")
    return p


def _check(p_target: Any, p_refs: Any, refs_in: Any, z_target: Any, z_refs: Any, a: float, gamma: float,
           online: bool) -> tuple[np.ndarray, ...]:
    pt = _probs(p_target, "p_target", 1)
    pr = _probs(p_refs, "p_refs", 2)
    zt = _probs(z_target, "z_target", 1)
    zr = _probs(z_refs, "z_refs", 2)
    rin = np.asarray(refs_in)
    if rin.dtype != bool:
        raise ValueError(f"refs_in must be a bool array, got dtype {rin.dtype}")
    if pr.shape != rin.shape or pr.shape[1] != pt.shape[0]:
        raise ValueError(f"p_refs {pr.shape} and refs_in {rin.shape} must both be [K, n] with n = len(p_target) "
                         f"= {pt.shape[0]}")
    if pr.shape[0] < 1:
        raise ValueError("RMIA needs at least one reference model")
    if zr.shape != (pr.shape[0], zt.shape[0]) or zt.shape[0] < 1:
        raise ValueError(f"z_refs must be [K, nz] = [{pr.shape[0]}, {zt.shape[0]}] with nz >= 1, got {zr.shape}")
    if not online and not 0.0 <= float(a) <= 1.0:
        raise ValueError(f"offline RMIA needs a in [0, 1], got {a}")
    if not float(gamma) > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return pt, pr, rin, zt, zr


def _pr_x(pr: np.ndarray, rin: np.ndarray, a: float, online: bool) -> np.ndarray:
    """Pr(x) for every pool record, from the references only."""
    n_in = rin.sum(0)
    n_out = rin.shape[0] - n_in
    sum_in = np.where(rin, pr, 0.0).sum(0)
    sum_out = pr.sum(0) - sum_in
    if online:
        bad = (n_in == 0) | (n_out == 0)
        if bad.any():
            raise ValueError(f"online RMIA needs every record to have at least one IN and one OUT reference model; "
                             f"{int(bad.sum())} of {bad.size} records lack one (use offline RMIA, or more references)")
        # the paper's Pr(x): references split half IN, half OUT, so IN and OUT weigh one half each
        return 0.5 * sum_in / n_in + 0.5 * sum_out / n_out
    # Offline: the OUT mean. A record every reference trained on has no OUT estimate; its mean over all
    # (IN) references, scaled like the rest, is the closest estimate that needs no extra assumption.
    pr_out = np.where(n_out > 0, sum_out / np.maximum(n_out, 1), pr.mean(0))
    return _scale(pr_out, a)


def _scale(pr_out: np.ndarray, a: float) -> np.ndarray:
    # the paper's offline approximation: Pr(x) = ½(Pr_OUT + Pr_IN) with Pr_IN ≈ a·Pr_OUT + (1 − a)
    return 0.5 * (1.0 + a) * pr_out + 0.5 * (1.0 - a)


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(p, _TINY))


def true_label_probs(logits: Any, labels: Any, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) at each record's label, float64 [..., n], from logits [..., n, C] and labels [n].

    Computed as exp(log-softmax) in float64, so a probability near 1 keeps its distance from 1."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if z.ndim < 2 or y.shape != z.shape[-2:-1] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"logits [..., n, C] and integer labels [n] must agree, got {z.shape} and {y.shape}")
    z = z / float(temperature)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    idx = np.broadcast_to(y[:, None], z.shape[:-1] + (1,))
    return np.exp(np.take_along_axis(log_p, idx, -1)[..., 0])


def rmia_scores(p_target: Any, p_refs: Any, refs_in: Any, z_target: Any, z_refs: Any, *, a: float,
                gamma: float = 1.0, online: bool = False) -> np.ndarray:
    """RMIA score of every pool record under the target model, float64 [n] in [0, 1 + 1/nz).

    ``p_target`` [n], ``p_refs`` [K, n]: probability of the true label of each pool record under the target
    and under each reference model; ``refs_in`` [K, n] bool: which references trained on which record.
    ``z_target`` [nz], ``z_refs`` [K, nz]: the same for population records that no model trained on.

    Score(x) = fraction of z with LR(x) / LR(z) >= ``gamma``, where LR(.) = Pr(.|θ_target) / Pr(.).

    - Offline (default): Pr(x) = ½(1+a)·Pr_OUT(x) + ½(1−a), Pr_OUT(x) the mean over the references that
      were OUT for x. A record with no OUT reference uses the mean over all references instead, scaled the
      same way (documented fallback; it only happens with few references). ``a`` in [0, 1]: choose it with
      :func:`choose_offline_a`, on the references.
    - Online: Pr(x) = ½·mean_IN(x) + ½·mean_OUT(x); ``a`` is ignored. Raises ValueError unless every record
      has at least one IN and one OUT reference (with K references on independent random halves, a record
      lacks one with probability 2^(1−K)).
    - Every reference is OUT for every z, so Pr(z) is the mean over all references (scaled offline).

    Ratios are compared in log space, so probabilities that underflowed to 0 stay finite. Records that beat
    the same number of z (ties of the paper's count, which a finite population makes common at the top) are
    ordered by their own likelihood ratio: the score is (count + f) / nz with f in [0, 1) increasing in LR(x),
    so every strict order of the paper's score is kept and the low-FPR region is not one block of ties.
    """
    pt, pr, rin, zt, zr = _check(p_target, p_refs, refs_in, z_target, z_refs, a, gamma, online)
    log_lr_x = _log(pt) - _log(_pr_x(pr, rin, a, online))
    pr_z = zr.mean(0) if online else _scale(zr.mean(0), a)
    log_lr_z = np.sort(_log(zt) - _log(pr_z))
    # LR(x)/LR(z) >= γ  <=>  log LR(z) <= log LR(x) − log γ: one sort and a binary search per x instead of an
    # n × nz matrix of ratios
    t = log_lr_x - np.log(gamma)
    count = np.searchsorted(log_lr_z, t, side="right")
    return (count + _within(t, log_lr_z, count)) / log_lr_z.size


def _within(t: np.ndarray, zs: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Where t lies between the z it beats last and the one it does not beat, in [0, 1): linear inside the
    population's range, a logistic squash beyond either end (scale: the population's spread)."""
    lo = zs[np.maximum(count - 1, 0)]
    hi = zs[np.minimum(count, zs.size - 1)]
    scale = max(float(zs[-1] - zs[0]), 1e-12)
    inside = (count > 0) & (count < zs.size) & (hi > lo)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        frac = np.where(inside, (t - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
        below = 2.0 / (1.0 + np.exp(-(t - zs[0]) / scale))  # t < every z: (0, 1)
        above = 2.0 / (1.0 + np.exp(-(t - zs[-1]) / scale)) - 1.0  # t >= every z: [0, 1)
    frac = np.where(count == 0, below, np.where(count == zs.size, above, frac))
    # strictly below 1 with room to spare: count + frac must round below count + 1 for any realistic nz
    return np.clip(frac, 0.0, 1.0 - 1e-9)


def rmia_reference_scores(p_refs: Any, refs_in: Any, z_refs: Any, *, a: float, gamma: float = 1.0,
                          online: bool = False, groups: Any = None) -> np.ndarray:
    """Out-of-sample RMIA scores for every reference model, float64 [K, n].

    Row k scores reference k as if it were the target, against the references outside k's group only
    (``groups``, see attacks.groups; None: the other K−1, leave-one-out), so neither ``refs_in[k]`` nor a
    partner's membership that reveals it enters row k: thresholds or ``a`` chosen on these rows are chosen
    on models whose scores did not see their own membership. Needs K >= 2.
    """
    pr = _probs(p_refs, "p_refs", 2)
    zr = _probs(z_refs, "z_refs", 2)
    rin = np.asarray(refs_in)
    k_refs = pr.shape[0]
    if k_refs < 2:
        raise ValueError(f"leave-one-out reference scores need at least 2 reference models, got {k_refs}")
    if zr.shape[0] != k_refs or rin.shape != pr.shape:
        raise ValueError(f"refs_in must match p_refs {pr.shape} and z_refs have {k_refs} rows; got refs_in "
                         f"{rin.shape}, z_refs {zr.shape}")
    g = check_groups(groups, k_refs)
    if not can_cross_fit(g):
        raise ValueError("every reference model needs another one outside its group to be scored against")
    out = np.empty(pr.shape, dtype=np.float64)
    for k in range(k_refs):
        rest = outside(g, k)
        out[k] = rmia_scores(pr[k], pr[rest], rin[rest], zr[k], zr[rest], a=a, gamma=gamma, online=online)
    return out


def choose_offline_a(p_refs: Any, refs_in: Any, z_refs: Any, *, gamma: float = 1.0,
                     grid: Any = A_GRID, groups: Any = None) -> float:
    """The offline ``a`` in ``grid`` with the highest mean AUC of the leave-one-out reference scores.

    Only reference models enter: each reference is attacked with the others' help and scored against its
    own membership, as ML Privacy Meter tunes a on a paired model (never the target). Ties go to the
    smaller a. With one reference model (K=1), or no reference outside some reference's group (``groups``),
    nothing is left to attack it with, so the fixed ``DEFAULT_OFFLINE_A`` (0.3, ML Privacy Meter's value
    when it cannot tune) is returned; likewise when no reference row has both members and non-members.
    """
    grid = np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or grid.min() < 0 or grid.max() > 1:
        raise ValueError("grid must be a non-empty set of values in [0, 1]")
    rin = np.asarray(refs_in)
    k_refs = np.asarray(p_refs).shape[0]
    if k_refs < 2 or not can_cross_fit(check_groups(groups, k_refs)):
        return DEFAULT_OFFLINE_A
    rows = [k for k in range(rin.shape[0]) if 0 < rin[k].sum() < rin.shape[1]]
    if not rows:
        return DEFAULT_OFFLINE_A
    best_a, best_auc = DEFAULT_OFFLINE_A, -np.inf
    for a in np.sort(grid):
        s = rmia_reference_scores(p_refs, refs_in, z_refs, a=float(a), gamma=gamma, groups=groups)
        mean_auc = float(np.mean([auc(s[k], rin[k]) for k in rows]))
        if mean_auc > best_auc + 1e-12:  # strict: ties keep the smaller a, seen first
            best_a, best_auc = float(a), mean_auc
    return best_a
