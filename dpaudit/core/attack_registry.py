"""Membership-inference attacks as plug-ins.

An attack is a function registered by name (``--attacks NAME``). It receives the signal matrices of one
privacy setting, [model, record] with row 0 the target and rows 1..K the reference models, plus the
reference models' membership, and returns:

* ``target``: one score per pool record for the target (higher = more likely a member);
* ``reference``: [K, n] scores for every reference model, each computed WITHOUT that reference's own
  membership, nor that of the references in its group (``ref_groups``: a pair's memberships are each other's
  complement), so that thresholds chosen on them behave as on the target.

The target's membership is not in ``AttackInput`` at all: no attack can fit, tune or threshold on it.
Every registered attack must pass tests/test_attack_contract.py (shapes, determinism, target truth absent,
reference rows out-of-sample). The pure algorithms live in the top-level ``attacks/`` folder (no torch).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dpaudit.core.signals import Signals
from dpaudit.errors import DPAuditError
from dpaudit.registry import Registry


@dataclass(frozen=True)
class AttackInput:
    pool: Signals  # logits [K+1, n, C] on the pool records; row 0 the target
    ref_in: np.ndarray  # bool [K, n]: which pool records each reference model trained on
    population: Signals | None = None  # [K+1, nz] on records no model trained on (the test split)
    pool_queries: np.ndarray | None = None  # logits [K+1, n, Q, C] of Q shifted copies of each pool record
    # int [K]: references drawn together (pairs that split the pool); a reference's out-of-sample scores leave
    # its whole group out, since a partner's membership reveals its own. None: each reference on its own.
    ref_groups: np.ndarray | None = None
    options: dict = field(default_factory=dict)  # attack options from the audit config (classifier, ...)
    seed: int = 0  # the audit's seed, for attacks that fit a randomised model


@dataclass(frozen=True)
class AttackScores:
    target: np.ndarray  # float [n]
    reference: np.ndarray  # float [K, n], out-of-sample for each reference row
    description: str
    details: dict = field(default_factory=dict)  # choices the attack made (from references only), for the report


@dataclass(frozen=True)
class Attack:
    name: str
    fn: Callable[[AttackInput], AttackScores]
    min_references: int = 1
    needs_population: bool = False
    needs_queries: bool = False
    summary: str = ""


ATTACKS: Registry = Registry("attack")


def register_attack(name: str, *, min_references: int = 1, needs_population: bool = False,
                    needs_queries: bool = False, summary: str = "", force: bool = False, _builtin: bool = False):
    """Decorator: ``@register_attack("mine", _builtin=True, min_references=2)`` over ``fn(AttackInput) -> AttackScores``.

    ``needs_population``: the attack reads ``AttackInput.population``; ``needs_queries``: it reads
    ``pool_queries`` (the audit then runs the extra inference on shifted copies)."""
    ATTACKS._check_name(name)

    def deco(fn):
        ATTACKS.add(name, Attack(name, fn, min_references, needs_population, needs_queries,
                                 summary or (fn.__doc__ or "").split("\n")[0]), force=force, builtin=_builtin)
        return fn
    return deco


def needs_queries(names) -> bool:
    return any(get_attack(n).needs_queries for n in names)


def get_attack(name: str) -> Attack:
    return ATTACKS.lookup(name)


def check_attacks(names, shadow_models: int) -> None:
    """Before any training: every attack exists and has the reference models it needs."""
    for n in names:
        a = get_attack(n)
        if shadow_models < a.min_references:
            raise DPAuditError(f"the {n} attack needs --shadow-models >= {a.min_references} "
                               f"(its reference scores are cross-fitted), got {shadow_models}; raise it or leave {n} "
                               f"out of --attacks")


def usable_attacks(names, shadow_models: int, population: bool = True, ref_in: np.ndarray | None = None,
                   groups: np.ndarray | None = None) -> tuple[tuple[str, ...], list[str]]:
    """(attacks that can run, one reason per attack left out) with ``shadow_models`` references, where
    ``population`` is False without population records, and where ``ref_in`` is given with that membership of
    the references (the online variants need every record IN and OUT of them). For the DEFAULT attack list
    only: a list the user wrote is checked by ``check_attacks`` and refused instead."""
    from dpaudit.attacks.groups import check_groups

    kept, dropped = [], []
    for n in names:
        a = get_attack(n)
        if shadow_models < a.min_references:
            dropped.append(f"{n} (needs --shadow-models >= {a.min_references})")
        elif a.needs_population and not population:
            dropped.append(f"{n} (needs population records)")
        elif n.endswith("-online") and ref_in is not None and not _online_scorable(
                ref_in, check_groups(groups, ref_in.shape[0])):
            dropped.append(f"{n} (needs every record IN and OUT of the reference models)")
        else:
            kept.append(n)
    return tuple(kept), dropped


def run_attack(name: str, inp: AttackInput) -> AttackScores:
    out = get_attack(name).fn(inp)
    k, n = inp.ref_in.shape
    if out.target.shape != (n,) or out.reference.shape != (k, n):
        raise RuntimeError(f"attack {name} returned shapes {out.target.shape} and {out.reference.shape}, "
                           f"expected ({n},) and ({k}, {n})")
    return out


# ---- built-in attacks ----------------------------------------------------------------------------

@register_attack("loss", _builtin=True, summary="negative loss under the model (Yeom et al. 2018)")
def _loss(inp: AttackInput) -> AttackScores:
    from dpaudit.attacks.loss_threshold import scores_from_losses

    scores = scores_from_losses(inp.pool.losses)
    # Per-model loss needs no fitting, so reference rows are out-of-sample as they are.
    return AttackScores(scores[0], scores[1:], "negative cross-entropy loss under the model (Yeom et al. 2018)")


@register_attack("shadow", _builtin=True, min_references=2, summary="shadow-model classifier (Shokri et al. 2017)")
def _shadow(inp: AttackInput) -> AttackScores:
    from dpaudit.attacks.shadow import ShadowAttack, cross_fit_reference_scores

    probs = inp.pool.probs
    clf = inp.options.get("shadow_classifier", "gbm")
    per_class = bool(inp.options.get("shadow_per_class", False))
    kw = dict(classifier=clf, per_class=per_class, seed=inp.seed)
    attack = ShadowAttack(**kw).fit(probs[1:], inp.pool.labels, inp.ref_in)
    target = attack.score(probs[0], inp.pool.labels)
    ref = cross_fit_reference_scores(probs[1:], inp.pool.labels, inp.ref_in, inp.ref_groups, **kw)
    how = "per-class" if per_class else "global"
    return AttackScores(target, ref, f"{clf} attack classifier ({how}) on sorted top-3 probabilities + "
                        f"true-label probability, trained on {inp.ref_in.shape[0]} reference models (Shokri et al. 2017)")


# RMIA's γ: 1. With ties of the paper's count broken by the record's own likelihood ratio, the score orders
# records by LR(x) whatever γ is, so γ cannot change an AUC and tuning it would buy nothing; γ = 1 makes a
# non-member's score its likelihood ratio's quantile among the population's, on the same scale whatever the
# temperature and a chosen, so thresholds chosen on the reference models' scores transfer to the target's.
RMIA_GAMMA = 1.0


def _mean_reference_auc(reference: np.ndarray, ref_in: np.ndarray) -> float:
    """How well leave-one-out reference scores separate each reference model's members: the yardstick every
    tuning choice of an attack is made with, so that the target never takes part in one."""
    from dpaudit.attacks.metrics import auc

    return float(np.mean([auc(reference[k], ref_in[k]) for k in range(ref_in.shape[0])]))


def _nested(inp: AttackInput, choose, score) -> tuple[np.ndarray, np.ndarray, object]:
    """Scores with tuning that never sees the scored model's membership.

    ``choose(rows)`` picks the attack's settings from the reference rows ``rows`` alone (by their leave-one-out
    AUC); ``score(row, rows, settings)`` scores model ``row`` (0 the target, k a reference, index into the
    signal rows) against the references ``rows``. The target is scored with settings chosen on all K references;
    reference k with settings chosen on the references outside its group only, so that its out-of-sample
    scores (on which the thresholds are chosen) are out-of-sample in the tuning too, as the target's are."""
    groups = _groups(inp)
    every = list(range(1, groups.size + 1))
    chosen = choose(every)
    target = score(0, every, chosen)
    reference = np.empty(inp.ref_in.shape, dtype=np.float64)
    memo: dict[tuple[int, ...], object] = {}  # the two references of a pair share their "others"
    for j in every:
        others = tuple(i for i in every if groups[i - 1] != groups[j - 1])
        if others not in memo:
            memo[others] = choose(list(others))
        reference[j - 1] = score(j, list(others), memo[others])
    return target, reference, chosen


def _groups(inp: AttackInput) -> np.ndarray:
    from dpaudit.attacks.groups import check_groups

    return check_groups(inp.ref_groups, inp.ref_in.shape[0])


def _tunable(groups: np.ndarray, rows: list[int]) -> bool:
    """Whether leave-group-out scores exist within ``rows`` (signal rows, 1-based references) to tune on."""
    from dpaudit.attacks.groups import can_cross_fit

    return len(rows) >= 2 and can_cross_fit(groups[np.asarray(rows) - 1])


def _rmia(inp: AttackInput, online: bool) -> AttackScores:
    from dpaudit.attacks.rmia import (
        DEFAULT_OFFLINE_A,
        TEMPERATURES,
        choose_offline_a,
        rmia_reference_scores,
        rmia_scores,
        true_label_probs,
    )

    if inp.population is None:
        raise DPAuditError("rmia needs population records that no model trained on (the test split)")
    if online:
        _require_in_and_out(inp.ref_in, inp.ref_groups, "rmia-online")
    probs = {t: (true_label_probs(inp.pool.logits, inp.pool.labels, t),
                 true_label_probs(inp.population.logits, inp.population.labels, t)) for t in TEMPERATURES}
    ref_in_all = np.vstack([np.zeros((1, inp.ref_in.shape[1]), bool), inp.ref_in])  # row i of the signals
    groups = _groups(inp)

    def choose(rows):
        # Nothing to tune on (with four references in two pairs, a reference's others are one pair, which cannot
        # be cross-fitted): the paper's plain softmax and ML Privacy Meter's a. Its scores stay on the target's
        # scale (γ = 1: population quantiles), so its thresholds still transfer.
        if not _tunable(groups, rows):
            return 1.0, RMIA_GAMMA, DEFAULT_OFFLINE_A
        g = groups[np.asarray(rows) - 1]
        # Online scoring of these rows needs every record IN and OUT of the references outside each one's group;
        # where they are too few, T is chosen by the offline fit.
        tune_online = online and _online_scorable(ref_in_all[rows], g)
        best = None
        for t, (p, z) in probs.items():
            a = 1.0 if tune_online else choose_offline_a(p[rows], ref_in_all[rows], z[rows], gamma=RMIA_GAMMA,
                                                         groups=g)
            ref = rmia_reference_scores(p[rows], ref_in_all[rows], z[rows], a=a, gamma=RMIA_GAMMA,
                                        online=tune_online, groups=g)
            fit = _mean_reference_auc(ref, ref_in_all[rows])
            if best is None or fit > best[0] + 1e-12:  # ties keep the first: T = 1
                best = (fit, t, RMIA_GAMMA, a)
        return best[1:]

    def score(row, rows, settings):
        t, gamma, a = settings
        p, z = probs[t]
        return rmia_scores(p[row], p[rows], ref_in_all[rows], z[row], z[rows], a=a, gamma=gamma, online=online)

    target, ref, (t, gamma, a) = _nested(inp, choose, score)
    how = "online (IN and OUT references)" if online else f"offline, a = {a:g}"
    return AttackScores(target, ref, f"RMIA {how}, γ = {gamma:g}, softmax temperature {t:g} (chosen on the "
                        f"reference models), against {probs[t][1].shape[1]} population records from the test split "
                        f"that no model trained on (Zarifzadeh et al. 2024)",
                        {"a": None if online else a, "gamma": gamma, "temperature": t, "population": "test split",
                         "population_size": int(probs[t][1].shape[1]),
                         "chosen_on": "reference models (leave-one-out AUC; a pair left out together)"})


def _online_scorable(ref_in: np.ndarray, groups: np.ndarray) -> bool:
    """Whether online scores exist for every row: a model against all these references and each reference
    against those outside its group, each needing every record IN and OUT of at least one of them (also what
    online tuning on these references needs)."""
    def ok(rows: np.ndarray) -> bool:
        ins = ref_in[rows].sum(0)
        return bool(rows.any() and ins.min() >= 1 and (int(rows.sum()) - ins).min() >= 1)

    every = np.ones(groups.size, dtype=bool)
    return ok(every) and all(ok(groups != g) for g in np.unique(groups))


def check_membership(names, ref_in: np.ndarray, groups: np.ndarray | None = None) -> None:
    """After the splits, before any training: the online variants need each record IN and OUT of several
    reference models (the target and each reference are scored against the others, and tuned on those)."""
    for n in names:
        if n.endswith("-online"):
            _require_in_and_out(ref_in, groups, n)


def _require_in_and_out(ref_in: np.ndarray, groups: np.ndarray | None, name: str) -> None:
    from dpaudit.attacks.groups import check_groups

    g = check_groups(groups, ref_in.shape[0])
    if ref_in.shape[0] < 4 or not _online_scorable(ref_in, g):
        raise DPAuditError(f"{name} needs every pool record IN and OUT of the reference models that score each model "
                           f"(a reference's own pair left out); with {ref_in.shape[0]} some are not: use "
                           f"--shadow-models 4 or more, or drop {name} from --attacks")


@register_attack("rmia", _builtin=True, min_references=2, needs_population=True,
                 summary="RMIA, offline (Zarifzadeh et al. 2024)")
def _rmia_offline(inp: AttackInput) -> AttackScores:
    return _rmia(inp, online=False)


@register_attack("rmia-online", _builtin=True, min_references=4, needs_population=True,
                 summary="RMIA, online: needs many reference models")
def _rmia_online(inp: AttackInput) -> AttackScores:
    return _rmia(inp, online=True)


def _lira(inp: AttackInput, online: bool) -> AttackScores:
    from dpaudit.attacks.lira import CENTRES, lira_reference_scores, lira_scores, phi_from_logits

    if online:
        _require_in_and_out(inp.ref_in, inp.ref_groups, "lira-online")
    candidates = {1: phi_from_logits(inp.pool.logits.astype(np.float64), inp.pool.labels)[..., None]}
    if inp.pool_queries is not None:
        candidates[inp.pool_queries.shape[2]] = phi_from_logits(inp.pool_queries.astype(np.float64),
                                                                inp.pool.labels[:, None])
    ref_in_all = np.vstack([np.zeros((1, inp.ref_in.shape[1]), bool), inp.ref_in])
    groups = _groups(inp)

    # Online, each Gaussian's centre is the references' mean or median φ (TF Privacy uses the median, which one
    # overfitted reference cannot drag; with few references the mean wastes less): chosen like the queries.
    # Offline keeps the mean (the default audit's numbers, and one OUT Gaussian has less to gain).
    centres = CENTRES if online else ("mean",)

    # Shifted queries help where the model saw shifted images in training; whether they help here is decided
    # on the reference models (leave-group-out), never on the target.
    def choose(rows):
        # nothing to tune on: the record itself, one query (what a model trained without shifts answers best),
        # and the mean
        if not _tunable(groups, rows) or len(candidates) * len(centres) == 1:
            return 1, "mean"
        g = groups[np.asarray(rows) - 1]
        if online and not _online_scorable(ref_in_all[rows], g):
            return 1, "mean"
        fits = {(q, c): _mean_reference_auc(lira_reference_scores(phi[rows], ref_in_all[rows], online=online,
                                                                  fixed_variance=True, groups=g, centre=c),
                                            ref_in_all[rows])
                for q, phi in candidates.items() for c in centres}
        # ties: fewer queries, then the mean (what dpaudit always did)
        return max(fits, key=lambda qc: (fits[qc], -qc[0], qc[1] == "mean"))

    def score(row, rows, settings):
        q, c = settings
        phi = candidates[q]
        return lira_scores(phi[row], phi[rows], ref_in_all[rows], online=online, fixed_variance=True, centre=c)

    target, ref, (q, centre) = _nested(inp, choose, score)
    how = "online" if online else "offline (one-sided test against the OUT Gaussian)"
    queries = "1 query per record" if q == 1 else f"{q} queries per record (one-pixel shifts)"
    centred = f", {centre} of the references' φ as each Gaussian's centre" if online else ""
    return AttackScores(target, ref, f"LiRA {how}, global variance, {queries}{centred}, chosen on the reference "
                        f"models; logit-scaled confidence (Carlini et al. 2022)",
                        {"queries": q, "queries_offered": sorted(candidates), "fixed_variance": True,
                         "centre": centre, "centres_offered": list(centres),
                         "chosen_on": "reference models (leave-one-out AUC; a pair left out together)"})


@register_attack("lira", _builtin=True, min_references=2, needs_queries=True, summary="LiRA, offline (Carlini et al. 2022)")
def _lira_offline(inp: AttackInput) -> AttackScores:
    return _lira(inp, online=False)


@register_attack("lira-online", _builtin=True, min_references=4, needs_queries=True,
                 summary="LiRA, online: needs many reference models")
def _lira_online(inp: AttackInput) -> AttackScores:
    return _lira(inp, online=True)
