"""Membership-inference attacks as plug-ins.

An attack is a function registered by name (``--attacks NAME``). It receives the signal matrices of one
privacy setting, [model, record] with row 0 the target and rows 1..K the reference models, plus the
reference models' membership, and returns:

* ``target``: one score per pool record for the target (higher = more likely a member);
* ``reference``: [K, n] scores for every reference model, each computed WITHOUT that reference's own
  membership (leave-one-out / cross-fitting), so that thresholds chosen on them behave as on the target.

The target's membership is not in ``AttackInput`` at all: no attack can fit, tune or threshold on it.
Every registered attack must pass tests/test_attack_contract.py (shapes, determinism, target truth absent,
reference rows out-of-sample). The pure algorithms live in the top-level ``attacks/`` folder (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import DPAuditError
from .signals import Signals


@dataclass(frozen=True)
class AttackInput:
    pool: Signals  # logits [K+1, n, C] on the pool records; row 0 the target
    ref_in: np.ndarray  # bool [K, n]: which pool records each reference model trained on
    population: Signals | None = None  # [K+1, nz] on records no model trained on (the test split)
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
    summary: str = ""


ATTACKS: dict[str, Attack] = {}


def register_attack(name: str, *, min_references: int = 1, needs_population: bool = False, summary: str = ""):
    """Decorator: ``@register_attack("mine", min_references=2)`` over ``fn(AttackInput) -> AttackScores``."""
    def deco(fn):
        ATTACKS[name] = Attack(name, fn, min_references, needs_population, summary or (fn.__doc__ or "").split("\n")[0])
        return fn
    return deco


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise DPAuditError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKS[name]


def check_attacks(names, shadow_models: int) -> None:
    """Before any training: every attack exists and has the reference models it needs."""
    for n in names:
        a = get_attack(n)
        if shadow_models < a.min_references:
            raise DPAuditError(f"the {n} attack needs --shadow-models >= {a.min_references} "
                               f"(its reference scores are cross-fitted), got {shadow_models}")


def run_attack(name: str, inp: AttackInput) -> AttackScores:
    out = get_attack(name).fn(inp)
    k, n = inp.ref_in.shape
    if out.target.shape != (n,) or out.reference.shape != (k, n):
        raise RuntimeError(f"attack {name} returned shapes {out.target.shape} and {out.reference.shape}, "
                           f"expected ({n},) and ({k}, {n})")
    return out


# ---- built-in attacks ----------------------------------------------------------------------------

@register_attack("loss", summary="negative loss under the model (Yeom et al. 2018)")
def _loss(inp: AttackInput) -> AttackScores:
    from attacks.loss_threshold import scores_from_losses

    scores = scores_from_losses(inp.pool.losses)
    # Per-model loss needs no fitting, so reference rows are out-of-sample as they are.
    return AttackScores(scores[0], scores[1:], "negative cross-entropy loss under the model (Yeom et al. 2018)")


@register_attack("shadow", min_references=2, summary="shadow-model classifier (Shokri et al. 2017)")
def _shadow(inp: AttackInput) -> AttackScores:
    from attacks.shadow import ShadowAttack, cross_fit_reference_scores

    probs = inp.pool.probs
    clf = inp.options.get("shadow_classifier", "gbm")
    per_class = bool(inp.options.get("shadow_per_class", False))
    kw = dict(classifier=clf, per_class=per_class, seed=inp.seed)
    attack = ShadowAttack(**kw).fit(probs[1:], inp.pool.labels, inp.ref_in)
    target = attack.score(probs[0], inp.pool.labels)
    ref = cross_fit_reference_scores(probs[1:], inp.pool.labels, inp.ref_in, **kw)
    how = "per-class" if per_class else "global"
    return AttackScores(target, ref, f"{clf} attack classifier ({how}) on sorted top-3 probabilities + "
                        f"true-label probability, trained on {inp.ref_in.shape[0]} reference models (Shokri et al. 2017)")
