"""What `dpaudit check` recomputes instead of trusting: a report's every verdict-relevant number from its evidence.

A report is a file anyone can edit. :func:`verify_report` refuses it (one-line :class:`~dpaudit.errors.DPAuditError`,
exit 2 in the CLI) unless

* **types and ranges** hold: rates, AUCs, p-values and balanced accuracies in [0, 1], advantages in [-1, 1],
  confidences in (0, 1), δ in [0, 1), ε and ceilings >= 0, counts whole numbers >= 0 and no more than their totals;
  the white-box block (typed by :class:`dpaudit.schema.WhiteBoxAudit`, checked here in its JSON form, key by key, for
  the layout of this version) has exactly the keys and types :mod:`dpaudit.core.whitebox` writes (a ``"passed": "false"``
  string, a ``tests`` object or an ``epsilon_lb`` of ``"50"`` is refused, not read as something else);
* **the models match the configuration**: one model per ``config.epsilons`` entry, in order, named, flagged DP and
  claiming the ε it lists; each with the configured attacks, canaries, references, and a white-box block on every DP
  model when gradient canaries were asked for; a report that says dpaudit observed the training has every model's
  training observed (and an unobserved record holds none of the numbers only an observed training has);
* **the α-spending record is recomputed** from config.confidence and the re-run index on the fixed schedule
  (:func:`check_alpha_spending`: this run spends α/2^(rerun+1), earlier runs at least the schedule's share), and
  it sets the confidence every bound below is recomputed at;
* **every bound is recomputed from its counts**: each attack's Clopper-Pearson bound from tp/n_pos/fp/n_neg, the
  black-box canaries' one-run bound from (m, r, v) under balanced guesses (k in and k out over
  :func:`~dpaudit.core.bounds.balanced_candidates`, its correction text, and its coin check from m and the number
  included), the white-box canaries' one-run bound (top-k guesses) and Clopper-Pearson bound from theirs, each at
  the confidence the configuration gives it (the Bonferroni plan of :func:`dpaudit.core.plan.bound_confidence`,
  recomputed here by :func:`plan_confidences`); the white-box bounds that reach the verdict are the entries of
  :data:`WHITEBOX_ROUTES`, so a new route is added in one place;
* **every ceiling is recomputed from its sample size** (:func:`~dpaudit.core.bounds.ceiling_clopper_pearson`,
  :func:`~dpaudit.core.bounds.ceiling_one_run_balanced` for the black-box canaries,
  :func:`~dpaudit.core.bounds.ceiling_one_run` for the white-box ones);
* **measured power is recomputed where it is cheap**: each attack's and the black-box canaries' detectable ε are
  re-simulated (:mod:`dpaudit.core.power`, seeded by config.seed, memoised; tens of milliseconds); the white-box
  route's needs the accountant (Opacus), so its type, its range (null, "inf", or above the claim) and its noise
  factor (in (0, 1) exactly when it is finite) are checked instead;
* **conformance is recomputed from its p-values**: each test passes iff p > (1 − confidence)/5, ``conformant`` and
  ``failed`` follow, and the verdict's ``rejected_conformance`` names the failed tests;
* **each AUC lies inside what its stored ROC curve allows**: the stored points are actual ROC points (a log-spaced
  subset), and the curve between two of them is monotone, so the area lies between the lower and the upper step sum
  over the stored points; the TPR at each FPR level likewise, and it equals its recorded counts;
* **the verdict is recomputed** (:func:`~dpaudit.core.bounds.decide_verdict`) from the recomputed bounds, ceilings and
  detectable ε: its claim, best bound, ratio, ceiling, ``could_detect``, detectable ε and its source, the power
  multiple (``consistent`` needs detectable ε <= POWER_MULTIPLE × claim) and the power method must agree, and the
  stored status may be harsher than the recomputed one (fail closed), never softer; where they are the same, its
  text and next step are the recomputed ones.

Limits (what is *not* recomputed, because the report does not hold what it would take): the counts themselves (they
come from per-record scores the report does not store; where ``--save-scores`` wrote them beside it,
:func:`verify_scores` recomputes the counts, AUCs, TPRs and canary guesses from them), the white-box p-values (they
come from the gradient observations in the model cache), the white-box route's detectable ε (its simulation needs
the accountant), the accountant's ε (that needs Opacus; the stored
cross-check must agree with itself and is checked by the ``accountant_check`` rule), the AUC's bootstrap interval,
and whether an "unobserved" report really came from ``--target`` / ``--from-signals`` (the
``require_observed_training`` policy fails it when that matters). So an edit that changes evidence *and* everything
derived from it consistently is not caught: this makes a report agree with itself, it cannot sign it.

Pure: numpy and scipy through :mod:`dpaudit.core.bounds` and :mod:`dpaudit.core.power`, no torch, no file access.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from dpaudit.core import bounds as _b
from dpaudit.core.bounds import (
    ALPHA_SCHEDULE,
    POWER_MULTIPLE,
    alpha_share,
    alpha_spent,
    balanced_candidates,
    decide_verdict,
    fair_coin_check,
    max_advantage,
    max_balanced_accuracy,
    whitebox_need,
)
from dpaudit.core.fdp_one_run import ceiling_fdp_one_run, epsilon_lb_fdp_one_run
from dpaudit.core.plan import bound_confidence, run_confidence
from dpaudit.core.power import POWER_METHOD, binomial_ci, detectable_epsilon_cp, detectable_epsilon_one_run
from dpaudit.core.whitebox_stats import (
    BROKEN,
    FDP_LABEL,
    PER_STEP_SELECTION,
    ceiling_per_step,
    cp_rate_bounds,
    route_share_confidence,
    routes_text,
    witness_epsilon,
)
from dpaudit.errors import DPAuditError
from dpaudit.schema import SCHEMA, SEVERITY, ModelAudit, Report

# The bounds are pure functions of a few numbers: memoised, a gate (or a test table) that checks many reports of one
# audit computes each once.
ceiling_clopper_pearson = lru_cache(maxsize=4096)(_b.ceiling_clopper_pearson)
epsilon_lb_clopper_pearson = lru_cache(maxsize=4096)(_b.epsilon_lb_clopper_pearson)
epsilon_lb_one_run = lru_cache(maxsize=4096)(_b.epsilon_lb_one_run)


@lru_cache(maxsize=4096)
def ceiling_one_run(m: int, delta: float, confidence: float, n_in: int) -> float:
    return _b.ceiling_one_run(m, delta, confidence, n_in=n_in)


@lru_cache(maxsize=4096)
def ceiling_one_run_balanced(m: int, delta: float, confidence: float, n_in: int) -> float:
    return _b.ceiling_one_run_balanced(m, delta, confidence, n_in=n_in)


@lru_cache(maxsize=256)
def _coin_check(m: int, members: int) -> dict:
    # fair_coin_check reads only the number of canaries and of members among them
    return fair_coin_check([True] * members + [False] * (m - members))

__all__ = ["verify_report", "verify_scores", "auc_bracket", "plan_confidences", "run_confidence", "check_alpha_spending",
           "WHITEBOX_TESTS", "WHITEBOX_ROUTES", "WHITEBOX_ROUTE_COUNT", "WhiteBoxRoute"]

# Relative and absolute slack when comparing a stored number with its recomputation: the same code on another
# machine or scipy build differs in the last digits, never by more.
REL, ABS = 1e-6, 1e-8
# The five conformance tests of dpaudit.training.whitebox.conformance_tests, and the extra keys each may carry.
WHITEBOX_TESTS = ("noise_std", "draw_rate", "clipped_norm", "sampling_independence", "steps")
# The conformance tests of the full analysis (dpaudit.core.whitebox.conformance_tests, one per assumption of the
# accountant), each with the words it states beside a rejection; a block whose tests state them is of that analysis,
# and must hold all of them.
WHITEBOX_ALL_TESTS = tuple(BROKEN)
_TEST_EXTRAS = {"claimed", "expected_z_if_shuffled"}
# Structural checks a probe report adds (dpaudit.sources.probe: facts read from the training's objects, no
# statistics): p-value and statistic 1 when the fact holds, 0 when it does not; the claimed value they check.
WHITEBOX_STRUCTURAL_TESTS = {"poisson_sampler": "claimed_q"}
# Fields only an observed training fills (dpaudit.sources.external.unobserved_record leaves them null).
_OBSERVED_ONLY = ("noise_multiplier", "sample_rate", "steps", "accountant", "grad_sample_mode", "epochs",
                  "batch_size", "lr", "momentum", "seed", "wall_s", "accounting_s", "max_grad_norm")


def _bad(msg: str) -> DPAuditError:
    return DPAuditError(f"{msg}; the report was edited or damaged: re-run the audit")


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "null"  # NaN is written as null
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return repr(x)[:40]
    return f"{float(x):.6g}"


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return False
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= ABS + REL * max(abs(a), abs(b))


def _agree(where: str, stored, recomputed, how: str) -> None:
    if not _close(stored, recomputed):
        raise _bad(f"{where} is {_num(stored)} but {how} gives {_num(recomputed)}")


def _in(where: str, v, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False,
        allow_nan: bool = False) -> None:
    """v within [lo, hi] (an end open where asked); a NaN only where the schema lets a value be uncomputed."""
    if v is None:
        return
    v = float(v)
    if math.isnan(v):
        if allow_nan:
            return
        raise _bad(f"{where} is null (not computed) but a report always computes it")
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise _bad(f"{where} is {_num(v)}, outside {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")


def _prob(where, v, **kw):
    _in(where, v, 0.0, 1.0, **kw)


def _conf(where, v):
    _in(where, v, 0.0, 1.0, lo_open=True, hi_open=True)


def _eps(where, v, **kw):
    _in(where, v, 0.0, math.inf, **kw)


# ------------------------------------------------------------------------------------- plan of confidences


def plan_confidences(config, dp: bool, rerun: int = 0) -> dict:
    """The confidence of each bound of one model, as :func:`dpaudit.core.plan.bound_confidence` plans it from the
    configuration and the run's place on the α-spending schedule alone (before any data): run (all of this run's
    verdicts together), per_model (the verdict's), attack (each attack's bound and ceiling), canary (each canary
    route's), n_bounds and n_attacks. White-box canaries take one route per bound of :data:`WHITEBOX_ROUTES` and
    one for their conformance tests.

    >>> from types import SimpleNamespace as NS
    >>> p = plan_confidences(NS(canaries=500, gradient_canaries=1000, attacks=("a",) * 5,
    ...                         epsilons=(math.inf, 8.0, 1.0), confidence=0.95), dp=True)
    >>> round(p["run"], 6), round(p["per_model"], 6), round(p["attack"], 6), round(p["canary"], 7), p["n_bounds"]
    (0.975, 0.9875, 0.99875, 0.9984375, 9)
    """
    # The plan itself, from the report's configuration: a number recomputed by the code that made it, so that
    # the gate and the audit cannot drift apart (tests/test_check.py pins its white-box share count to
    # WHITEBOX_ROUTE_COUNT, the routes this module checks).
    plan = bound_confidence(config, dp=dp, rerun=rerun)
    return {"run": run_confidence(config, rerun), "per_model": plan.per_model, "attack": plan.attack,
            "canary": plan.canary, "n_bounds": plan.n_bounds, "n_attacks": plan.n_attacks}


def check_alpha_spending(rep: Report) -> int:
    """Every number of ``alpha_spending`` (typed by :class:`dpaudit.schema.AlphaSpending`) recomputed from config.confidence and the re-run
    index on the fixed schedule; returns the re-run index (which sets every bound's confidence). Earlier runs
    cannot have spent less than the schedule gave them (``alpha_spent_before`` >= α(1 − 2^-rerun))."""
    sp = rep.alpha_spending
    if sp is None:
        raise _bad("alpha_spending is missing (every report of this dpaudit records the α it spent)")
    if sp.schedule != ALPHA_SCHEDULE:
        raise _bad(f"alpha_spending.schedule is {sp.schedule[:60]!r}, not the fixed schedule dpaudit spends α on")
    rerun = sp.rerun
    if rerun < 0:
        raise _bad(f"alpha_spending.rerun is {rerun}; runs are numbered from 0 (the original audit)")
    alpha = 1.0 - rep.config.confidence
    _agree("alpha_spending.alpha", sp.alpha, alpha, "1 − config.confidence")
    _agree("alpha_spending.alpha_this_run", sp.alpha_this_run, alpha * alpha_share(rerun),
           f"the schedule's share of run {rerun} (α/2^{rerun + 1})")
    before = sp.alpha_spent_before
    least = alpha_spent(alpha, rerun - 1) if rerun > 0 else 0.0
    if rerun == 0:
        _agree("alpha_spending.alpha_spent_before", before, 0.0, "an original audit (rerun 0)")
    elif not (least * (1 - REL) - ABS <= before <= 1.0):
        raise _bad(f"alpha_spending.alpha_spent_before is {_num(before)} but the {rerun} run(s) before this one spent "
                   f"at least {least:.6g} on the schedule")
    _agree("alpha_spending.alpha_spent_total", sp.alpha_spent_total, before + alpha * alpha_share(rerun),
           "alpha_spent_before + alpha_this_run")
    _agree("alpha_spending.combined_confidence", sp.combined_confidence, 1.0 - (before + alpha * alpha_share(rerun)),
           "1 − alpha_spent_total")
    return rerun


# ------------------------------------------------------------------------------------------------ AUC / ROC


def auc_bracket(fpr, tpr) -> tuple[float, float]:
    """The least and the most area any monotone ROC curve through the stored points can have.

    The stored points are actual points of the full ROC (a subset), and a ROC is non-decreasing, so between two
    stored points the curve lies in their box: the area is at least the lower step sum and at most the upper one.
    On an un-subsampled curve the trapezoid (the exact AUC) lies between them too.

    >>> auc_bracket([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])
    (0.5, 1.0)
    """
    lo = hi = 0.0
    for i in range(len(fpr) - 1):
        w = fpr[i + 1] - fpr[i]
        lo += w * tpr[i]
        hi += w * tpr[i + 1]
    return lo, hi


def _check_roc(where: str, mt) -> None:
    f, t = mt.roc_fpr, mt.roc_tpr
    if len(f) != len(t) or len(f) < 2:
        raise _bad(f"{where}.roc_fpr and roc_tpr must be two lists of equal length >= 2, got {len(f)} and {len(t)}")
    for name, xs in (("roc_fpr", f), ("roc_tpr", t)):
        for i, x in enumerate(xs):
            _prob(f"{where}.{name}[{i}]", x)
        if any(b < a for a, b in zip(xs, xs[1:])):
            raise _bad(f"{where}.{name} decreases somewhere; a ROC curve never does")
    if (f[0], t[0]) != (0.0, 0.0) or (f[-1], t[-1]) != (1.0, 1.0):
        raise _bad(f"{where}: the ROC curve must run from (0, 0) to (1, 1)")
    lo, hi = auc_bracket(f, t)
    auc = mt.auc
    if not (lo - ABS <= auc <= hi + ABS):
        raise _bad(f"{where}.auc is {_num(auc)} but its stored ROC curve allows only [{lo:.6g}, {hi:.6g}]")
    for level, v in mt.tpr_at_fpr.items():
        x = float(level)
        below = [tt for ff, tt in zip(f, t) if ff <= x]
        above = [tt for ff, tt in zip(f, t) if ff > x]
        least, most = max(below), (min(above) if above else 1.0)
        if not (least - ABS <= v <= most + ABS):
            raise _bad(f"{where}.tpr_at_fpr.{level} is {_num(v)} but its stored ROC curve allows only "
                       f"[{least:.6g}, {most:.6g}]")


def _check_metrics(where: str, mt, n_pos: int, n_neg: int) -> None:
    _prob(f"{where}.auc", mt.auc)
    for name in ("auc_ci", "balanced_accuracy_ci"):
        ci = getattr(mt, name)
        for i, x in enumerate(ci):
            _prob(f"{where}.{name}[{i}]", x, allow_nan=True)
    for i, x in enumerate(mt.advantage_ci):
        _in(f"{where}.advantage_ci[{i}]", x, -1.0, 1.0, allow_nan=True)
    for name in ("auc_ci", "advantage_ci", "balanced_accuracy_ci"):
        a, b = getattr(mt, name)
        if not (math.isnan(a) or math.isnan(b)) and a > b:
            raise _bad(f"{where}.{name} runs backwards ({_num(a)} > {_num(b)})")
    _prob(f"{where}.balanced_accuracy", mt.balanced_accuracy)
    _in(f"{where}.advantage", mt.advantage, -1.0, 1.0)
    for level, v in mt.tpr_at_fpr.items():
        _prob(f"{where}.tpr_at_fpr.{level}", v)
    if (mt.n_members, mt.n_nonmembers) != (n_pos, n_neg):
        raise _bad(f"{where} counts {mt.n_members} members and {mt.n_nonmembers} non-members, but the split has "
                   f"{n_pos} and {n_neg}")
    c = mt.counts
    cw = f"{where}.counts"
    if (c.n_pos, c.n_neg) != (n_pos, n_neg) or c.tp + c.fn != n_pos or c.fp + c.tn != n_neg:
        raise _bad(f"{cw}: tp + fn = {c.tp + c.fn} and fp + tn = {c.fp + c.tn} must be the {n_pos} members and "
                   f"{n_neg} non-members (n_pos {c.n_pos}, n_neg {c.n_neg})")
    tpr, fpr = c.tp / n_pos, c.fp / n_neg
    _agree(f"{cw}.tpr", c.tpr, tpr, "tp / n_pos")
    _agree(f"{cw}.fpr", c.fpr, fpr, "fp / n_neg")
    _agree(f"{cw}.advantage", c.advantage, tpr - fpr, "tpr − fpr")
    _agree(f"{cw}.balanced_accuracy", c.balanced_accuracy, (tpr + 1 - fpr) / 2, "(tpr + 1 − fpr) / 2")
    _agree(f"{where}.advantage", mt.advantage, tpr - fpr, "its counts")
    _agree(f"{where}.balanced_accuracy", mt.balanced_accuracy, (tpr + 1 - fpr) / 2, "its counts")
    _conf(f"{where}.bootstrap.level", mt.bootstrap.level)
    for level, rc in (mt.tpr_at_fpr_counts or {}).items():
        rw = f"{where}.tpr_at_fpr_counts.{level}"
        if level not in mt.tpr_at_fpr:
            raise _bad(f"{rw} has no tpr_at_fpr.{level} beside it")
        if (rc.n_pos, rc.n_neg) != (n_pos, n_neg) or rc.tp > n_pos or rc.fp > n_neg:
            raise _bad(f"{rw}: tp {rc.tp} of {rc.n_pos} and fp {rc.fp} of {rc.n_neg} do not fit the {n_pos} members "
                       f"and {n_neg} non-members")
        _agree(f"{where}.tpr_at_fpr.{level}", mt.tpr_at_fpr[level], rc.tp / n_pos, "its counts (tp / n_pos)")
        if rc.fp > float(level) * n_neg + 1e-9:
            raise _bad(f"{rw}: fp {rc.fp} of {n_neg} is an FPR above {level}")
    _check_roc(where, mt)


# --------------------------------------------------------------------------------------------------- bounds


def _cp_value(where: str, b, delta: float, confidence: float, n_pos: int, n_neg: int) -> float:
    """Recompute a Clopper-Pearson bound block (EpsilonBound or the white-box ``cp`` dict) and return it."""
    g = (lambda k: b[k]) if isinstance(b, dict) else (lambda k: getattr(b, k))
    if (g("n_pos"), g("n_neg")) != (n_pos, n_neg):
        raise _bad(f"{where} bounds ε on {g('n_pos')} members and {g('n_neg')} non-members, but there are {n_pos} "
                   f"and {n_neg}")
    if not (0 <= g("tp") <= n_pos and 0 <= g("fp") <= n_neg):
        raise _bad(f"{where}: tp {g('tp')} of {n_pos} and fp {g('fp')} of {n_neg} are not counts of those records")
    _agree(f"{where}.delta", g("delta"), delta, "the configuration")
    _agree(f"{where}.confidence", g("confidence"), confidence, "the configuration's Bonferroni plan")
    if g("method") != "clopper_pearson":
        raise _bad(f"{where}.method is {g('method')!r}, not 'clopper_pearson'")
    value = epsilon_lb_clopper_pearson(g("tp"), n_pos, g("fp"), n_neg, delta, confidence)
    _agree(f"{where}.value", g("value"), value,
           f"Clopper-Pearson on its counts (tp {g('tp')} of {n_pos}, fp {g('fp')} of {n_neg}) at {confidence:.6g}")
    if g("direction") not in (("none",) if value <= 0 else ("tpr/fpr", "tnr/fnr")):
        raise _bad(f"{where}.direction is {g('direction')!r} for a bound of {_num(value)}")
    return value


def _default_candidates(m: int) -> list[int]:
    # dpaudit.core.bounds' default k_plus candidates (m//50, m//20, m//10, m//5, m//2, at least 1), deduplicated
    out: list[int] = []
    for d in (50, 20, 10, 5, 2):
        k = max(1, m // d)
        if k <= m and k not in out:
            out.append(k)
    return out


def _one_run_value(where: str, g, m: int, n_in: int, delta: float, confidence: float, *,
                   balanced: bool = False) -> float:
    """Recompute a one-run bound from (m, r, v) at ``confidence`` over its candidates (Bonferroni).

    ``balanced``: the black-box canaries' rule (:func:`~dpaudit.core.bounds.one_run_audit_balanced`): k "in" and k
    "out" guesses, r = 2k, at most min(k, n_in) + min(k, m − n_in) of them correct; otherwise the white-box
    canaries' top-k guesses (:func:`~dpaudit.core.bounds.one_run_audit`, k_minus 0)."""
    if g("m") != m:
        raise _bad(f"{where}.m is {g('m')} but there are {m} canaries")
    cands = list(g("candidates_tried"))
    want = balanced_candidates(m) if balanced else _default_candidates(m)
    kp, km = g("k_plus"), g("k_minus")
    if cands != want or (km != kp if balanced else km != 0):
        raise _bad(f"{where} tried k_plus {cands} (k_minus {km}), not the audit's fixed candidates {want}"
                   + (" with as many guesses out as in" if balanced else ""))
    r, v = g("r"), g("v")
    if kp not in cands or r != kp + km:
        raise _bad(f"{where}: r = {r} guesses is not one of its candidates {cands}"
                   + (" (k in and k out)" if balanced else ""))
    most = min(kp, n_in) + (min(km, m - n_in) if balanced else 0)
    if not 0 <= v <= most:
        raise _bad(f"{where}: v = {v} correct guesses of {r} is impossible with {n_in} of {m} canaries included")
    _agree(f"{where}.delta", g("delta"), delta, "the configuration")
    _agree(f"{where}.confidence", g("confidence"), confidence, "the configuration's Bonferroni plan")
    if balanced:
        expected = (f"balanced guesses (k in, k out); bonferroni over {len(cands)} candidates" if len(cands) > 1
                    else "balanced guesses (k in, k out), fixed k")
    else:
        expected = f"bonferroni over {len(cands)} candidates" if len(cands) > 1 else "fixed k"
    if g("correction") != expected:
        raise _bad(f"{where}.correction is {str(g('correction'))[:80]!r}, not {expected!r}")
    c_each = 1.0 - (1.0 - confidence) / len(cands)
    return epsilon_lb_one_run(m, r, v, delta, c_each)


# ----------------------------------------------------------------------------------------- white-box block


def _typed(where: str, v: Any, kind: str, *, nullable: bool = False):
    """Check a key's type strictly, in a block's JSON form (the white-box block as the schema read it, its raw
    bounds records, the coin check), so that the one-line error names the key."""
    if v is None and nullable:
        return None
    ok = {"int": isinstance(v, int) and not isinstance(v, bool),
          "num": (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in ("inf", "-inf"),
          "bool": isinstance(v, bool), "str": isinstance(v, str), "list": isinstance(v, list),
          "dict": isinstance(v, dict)}[kind]
    if not ok:
        want = {"int": "an integer", "num": "a number", "bool": "true or false", "str": "a string",
                "list": "a list", "dict": "an object"}[kind]
        raise _bad(f"{where} must be {want}{' or null' if nullable else ''}, got {_num(v)}")
    return float(v) if kind == "num" else v


def _keys(where: str, d: dict, required: set[str], optional: set[str] = frozenset()) -> None:
    unknown = sorted(set(d) - required - optional)
    if unknown:
        raise _bad(f"{where}.{str(unknown[0])[:60]!r} is not a key dpaudit writes (unknown key)")
    missing = sorted(required - set(d))
    if missing:
        raise _bad(f"{where}.{missing[0]} missing")


_ONE_RUN_KEYS = {"epsilon_lb": "num", "m": "int", "r": "int", "v": "int", "k_plus": "int", "k_minus": "int",
                 "candidates_tried": "list", "correction": "str", "delta": "num", "confidence": "num"}
_CP_KEYS = {"value": "num", "method": "str", "threshold": "num", "threshold_selection": "str", "tp": "int",
            "n_pos": "int", "fp": "int", "n_neg": "int", "direction": "str", "delta": "num", "confidence": "num"}


@dataclass(frozen=True)
class WhiteBoxRoute:
    """One bound of the white-box block that reaches the verdict: its evidence name, the block's keys of its bound
    and ceiling, any further keys it writes (with their types), and how both are recomputed:
    ``recompute(where, block, views, ctx) -> (bound, ceiling)``, ``block`` the strictly typed block, ``views`` the
    recomputed bounds sub-blocks ({"bounds": {...}, "final_model_bounds": {...}}, each {"one_run": ε, "cp": ε}),
    ``ctx`` {m, n_in, delta, confidence, claimed}. A new route is one more entry of :data:`WHITEBOX_ROUTES`: the
    keys, the verdict's evidence and the confidence plan (one route each, plus the conformance tests) follow."""
    source: str
    bound_key: str
    ceiling_key: str
    recompute: Callable[[str, dict, dict, dict], tuple[float, float]]
    keys: dict[str, str] = field(default_factory=dict)


def _route_one_run(where: str, d: dict, views: dict, ctx: dict) -> tuple[float, float]:
    return views["bounds"]["one_run"], ceiling_one_run(ctx["m"], ctx["delta"], ctx["confidence"], n_in=ctx["n_in"])


def _route_cp(where: str, d: dict, views: dict, ctx: dict) -> tuple[float, float]:
    m, n_in = ctx["m"], ctx["n_in"]
    ceil = ceiling_clopper_pearson(n_in, m - n_in, ctx["delta"], ctx["confidence"]) if 0 < n_in < m else 0.0
    return views["bounds"]["cp"], ceil


# The white-box bounds a verdict reads, in the order the pipeline lists them (dpaudit.pipeline._verdict).
WHITEBOX_ROUTES: tuple[WhiteBoxRoute, ...] = (
    WhiteBoxRoute("white-box canaries (one run)", "epsilon_lb_one_run", "ceiling_one_run", _route_one_run),
    WhiteBoxRoute("white-box canaries (Clopper-Pearson)", "epsilon_lb_cp", "ceiling_cp", _route_cp),
)
# Confidence routes white-box canaries take in the plan: one per bound, one for the conformance family.
WHITEBOX_ROUTE_COUNT = len(WHITEBOX_ROUTES) + 1
# The white-box route's measured power, one figure for all its bounds and tests (as dpaudit.pipeline._verdict).
WHITEBOX_POWER_SOURCE = "white-box canaries"

_WB_KEYS = {"m": "int", "included": "int", "steps": "int", "confidence": "num", "delta": "num",
            "claimed_epsilon": "num", "claimed_sigma": "num", "claimed_q": "num", "max_grad_norm": "num",
            "dirac_norm": "num", "bounds": "dict",
            "final_model_epsilon_lb_one_run": "num", "final_model_epsilon_lb_cp": "num", "final_model_bounds": "dict",
            "tests": "list", "conformant": "bool", "failed": "list", "sigma_hat": "num?", "sigma_ci": "list",
            "q_hat": "num?", "q_ci": "list", "empirical_epsilon": "num?", "empirical_epsilon_ci": "list?",
            "accountant": "str", "notes": "list", "epsilon_lb": "num", "ceiling": "num",
            **{k: "num" for r in WHITEBOX_ROUTES for k in (r.bound_key, r.ceiling_key)},
            **{k: t for r in WHITEBOX_ROUTES for k, t in r.keys.items()}}
# Written wherever the route's power was measured (dpaudit.core.power.whitebox_detectable: an audit's white-box
# canaries and a probe report); a block written before power was measured leaves them out.
_WB_OPTIONAL = {"detectable_epsilon": "num?", "detectable_noise_factor": "num?", "detectable_power": "dict",
                # the full analysis's route list and what follows from it (checked by _check_route_list)
                "best_route": "str", "epsilon_lb_best": "num", "epsilon_lb_per_step": "num", "broken": "list",
                "routes": "list", "routes_text": "str"}


def _typed_block(where: str, d: Any, spec: dict[str, str], optional: dict[str, str] | None = None) -> dict:
    optional = optional or {}
    _typed(where, d, "dict")
    _keys(where, d, set(spec), set(optional))
    out = {}
    for k, kind in {**spec, **{k: t for k, t in optional.items() if k in d}}.items():
        out[k] = _typed(f"{where}.{k}", d[k], kind.rstrip("?"), nullable=kind.endswith("?"))
    return out


def _wb_bounds(where: str, b: Any, m: int, n_in: int, delta: float, confidence: float) -> dict[str, float]:
    """One view's bounds block ({one_run, one_run_epsilon_lb, cp_epsilon_lb, cp}): its {"one_run": ε, "cp": ε}
    bounds, recomputed."""
    _typed(where, b, "dict")
    _keys(where, b, {"one_run", "one_run_epsilon_lb", "cp_epsilon_lb", "cp"}, {"per_step", "routes"})
    one = _typed_block(f"{where}.one_run", b["one_run"], _ONE_RUN_KEYS)
    for i, k in enumerate(one["candidates_tried"]):
        _typed(f"{where}.one_run.candidates_tried[{i}]", k, "int")
    one_v = _one_run_value(f"{where}.one_run", one.__getitem__, m, n_in, delta, confidence)
    _agree(f"{where}.one_run.epsilon_lb", one["epsilon_lb"], one_v, "the one-run test on its (m, r, v)")
    _agree(f"{where}.one_run_epsilon_lb", _typed(f"{where}.one_run_epsilon_lb", b["one_run_epsilon_lb"], "num"),
           one_v, "its one_run block")
    if 0 < n_in < m and isinstance(b["cp"], dict) and "route" in b["cp"]:
        # the split-threshold route (dpaudit.core.whitebox_stats.canary_cp_route), at this view's confidence
        # (the block's own view lists it among its routes, at a third of the second share: bounds.routes checks it)
        listed = "valid" in b["cp"]
        cp_v, _ = _split_cp_route(f"{where}.cp", b["cp"], m, delta,
                                  route_share_confidence(confidence) if listed else confidence, listed=listed)
    elif 0 < n_in < m:
        cp = _typed_block(f"{where}.cp", b["cp"], _CP_KEYS)
        cp_v = _cp_value(f"{where}.cp", cp, delta, confidence, n_in, m - n_in)
    else:
        if b["cp"] is not None:
            raise _bad(f"{where}.cp must be null when every canary or none was included")
        cp_v = 0.0
    _agree(f"{where}.cp_epsilon_lb", _typed(f"{where}.cp_epsilon_lb", b["cp_epsilon_lb"], "num"), cp_v,
           "its cp block")
    return {"one_run": one_v, "cp": cp_v}


# The split-threshold routes of the full analysis (dpaudit.core.whitebox_stats): the share of canaries that choose
# each threshold, and the tests whose acceptance the per-step route needs (its independence argument).
_CP_SELECTION, _PER_STEP_SELECTION = 0.5, PER_STEP_SELECTION
_INDEPENDENCE_TESTS = ("sampling_independence", "noise_step_independence", "noise_coordinate_independence",
                       "draw_coordinate_independence", "epoch_repeat", "draw_dispersion")
_ROUTE_KEYS = {"route": "str", "label": "str", "confidence": "num", "assumption": "str", "epsilon_lb": "num",
               "ceiling": "num"}
_SPLIT_KEYS = {**_ROUTE_KEYS, "threshold_selection": "str", "n_pos": "int", "n_neg": "int", "threshold": "num?",
               "tp": "int", "fp": "int"}
_LISTED = {"valid": "bool", "canaries_needed": "int?"}


def cp_eps_of_rates(tpr_lb, fpr_ub, delta: float) -> np.ndarray:
    """ε of a (TPR lower, FPR upper) pair, both DP inequalities, floored at 0 (whitebox_stats' Clopper-Pearson ε,
    written here from its formula so that the gate recomputes rather than repeats it).

    >>> round(float(cp_eps_of_rates(np.array([0.5]), np.array([0.1]), 0.0)[0]), 4) == round(math.log(5), 4)
    True
    """
    a_ok = (tpr_lb - delta > 0) & (fpr_ub > 0)
    b_ok = (1 - fpr_ub - delta > 0) & (1 - tpr_lb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(a_ok, np.log(np.maximum(tpr_lb - delta, 1e-300)) - np.log(np.maximum(fpr_ub, 1e-300)), 0.0)
        b = np.where(b_ok, np.log(np.maximum(1 - fpr_ub - delta, 1e-300)) - np.log(np.maximum(1 - tpr_lb, 1e-300)),
                     0.0)
    return np.maximum(np.maximum(a, b), 0.0)


def _cp_counts_eps(tp: int, n_pos: int, fp: int, n_neg: int, delta: float, confidence: float, steps: int = 0) -> float:
    lo, hi = cp_rate_bounds(tp, n_pos, fp, n_neg, confidence)
    lo, hi = np.atleast_1d(lo), np.atleast_1d(hi)
    return float((witness_epsilon(steps, lo, hi, delta) if steps else cp_eps_of_rates(lo, hi, delta))[0])


def _split_counts(where: str, r: dict, n_counted: int) -> None:
    if r["n_pos"] + r["n_neg"] != n_counted or not (0 <= r["tp"] <= r["n_pos"] and 0 <= r["fp"] <= r["n_neg"]):
        raise _bad(f"{where}: tp {r['tp']} of {r['n_pos']} and fp {r['fp']} of {r['n_neg']} are not counts of the "
                   f"{n_counted} values its threshold was not chosen on")


def _split_cp_route(where: str, r: Any, m: int, delta: float, confidence: float, *, listed: bool
                    ) -> tuple[float, float]:
    """The Clopper-Pearson route over canaries, threshold chosen on a random half and counted on the other:
    its bound and ceiling recomputed from its counts at ``confidence``. Returns (bound, ceiling)."""
    d = _typed_block(where, r, {**_SPLIT_KEYS, **(_LISTED if listed else {})})
    if d["route"] != "clopper_pearson":
        raise _bad(f"{where}.route is {d['route'][:40]!r}, not 'clopper_pearson'")
    _agree(f"{where}.confidence", d["confidence"], confidence, "the route's share of the plan")
    _split_counts(where, d, m - int(m * _CP_SELECTION))
    n_pos, n_neg = d["n_pos"], d["n_neg"]
    if n_pos and n_neg and d["threshold"] is not None:
        value = _cp_counts_eps(d["tp"], n_pos, d["fp"], n_neg, delta, confidence)
        ceil = _cp_counts_eps(n_pos, n_pos, 0, n_neg, delta, confidence)
    else:
        value = ceil = 0.0
    _agree(f"{where}.epsilon_lb", d["epsilon_lb"], value, f"Clopper-Pearson on its counts at {confidence:.6g}")
    _agree(f"{where}.ceiling", d["ceiling"], ceil, f"a perfect separation of its {n_pos} + {n_neg} canaries")
    return value, ceil


def _per_step_route(where: str, r: Any, m: int, steps: int, q: float, delta: float, confidence: float
                    ) -> tuple[float, float]:
    """The per-step witness route: bound recomputed from its counts (witness composition over ``steps``), its
    ceiling at least the noise-free run's at the claimed q and at most that at q = 1 (its observed draw rate, which
    may lift it, is not in the report)."""
    d = _typed_block(where, r, {**_SPLIT_KEYS, **_LISTED, "steps": "int", "tpr_lb": "num", "fpr_ub": "num"},
                     {"why_not_counted": "str"})
    if d["route"] != "per_step":
        raise _bad(f"{where}.route is {d['route'][:40]!r}, not 'per_step'")
    _agree(f"{where}.confidence", d["confidence"], confidence, "the route's share of the plan")
    if d["steps"] != steps:
        raise _bad(f"{where}.steps is {d['steps']} but the canaries were observed over {steps} steps")
    _split_counts(where, d, (m - int(m * _PER_STEP_SELECTION)) * steps)
    n_pos, n_neg = d["n_pos"], d["n_neg"]
    if not (n_pos and n_neg and d["threshold"] is not None):
        _agree(f"{where}.epsilon_lb", d["epsilon_lb"], 0.0, "a route with nothing to count")
        return 0.0, float(d["ceiling"])
    lo, hi = cp_rate_bounds(d["tp"], n_pos, d["fp"], n_neg, confidence)
    _agree(f"{where}.tpr_lb", d["tpr_lb"], float(lo), "Clopper-Pearson on its counts")
    _agree(f"{where}.fpr_ub", d["fpr_ub"], float(hi), "Clopper-Pearson on its counts")
    value = _cp_counts_eps(d["tp"], n_pos, d["fp"], n_neg, delta, confidence, steps=steps)
    _agree(f"{where}.epsilon_lb", d["epsilon_lb"], value, f"witness composition of its counts over {steps} steps")
    least = max(ceiling_per_step(n_pos, n_neg, steps, q, delta, confidence), value)
    most = max(ceiling_per_step(n_pos, n_neg, steps, 1.0, delta, confidence), value)
    if not (least * (1 - REL) - ABS <= d["ceiling"] <= most * (1 + REL) + ABS):
        raise _bad(f"{where}.ceiling is {_num(d['ceiling'])} but a noise-free run on its counts allows only "
                   f"[{least:.6g}, {most:.6g}]")
    return value, float(d["ceiling"])


def _listed_one_run(where: str, r: Any, ctx: dict) -> tuple[float, float]:
    one = _typed_block(where, r, {**_ROUTE_KEYS, **_LISTED})
    m, n_in = ctx["m"], ctx["n_in"]
    _agree(f"{where}.confidence", one["confidence"], ctx["confidence"], "the block's confidence")
    _agree(f"{where}.epsilon_lb", one["epsilon_lb"], ctx["one_run"], "its one_run block")
    ceil = ceiling_one_run(m, ctx["delta"], ctx["confidence"], n_in=n_in)
    _agree(f"{where}.ceiling", one["ceiling"], ceil, f"a perfect attack on {m} canaries ({n_in} in)")
    return ctx["one_run"], ceil


def _listed_cp(where: str, r: Any, ctx: dict) -> tuple[float, float]:
    return _split_cp_route(where, r, ctx["m"], ctx["delta"], ctx["share"], listed=True)


def _listed_per_step(where: str, r: Any, ctx: dict) -> tuple[float, float]:
    return _per_step_route(where, r, ctx["m"], ctx["steps"], ctx["q"], ctx["delta"], ctx["share"])


_FDP_KEYS = {**_ROUTE_KEYS, **_LISTED, "guess_selection": "str", "k": "int", "correct": "int",
             "candidates_tried": "list"}


def _listed_fdp(where: str, r: Any, ctx: dict) -> tuple[float, float]:
    """The f-DP one-run route (dpaudit.core.fdp_one_run): its bound recomputed from its (m, k, correct) at its
    candidate's Bonferroni share of the route's, and its ceiling (every guess right) from m and the number in. The
    guess counts must be the fixed ones (m/50 .. m/2), so the Bonferroni split is the one the audit used."""
    d = _typed_block(where, r, _FDP_KEYS)
    m, n_in, share = ctx["m"], ctx["n_in"], ctx["share"]
    if d["route"] != "fdp_one_run":
        raise _bad(f"{where}.route is {d['route'][:40]!r}, not 'fdp_one_run'")
    _agree(f"{where}.confidence", d["confidence"], share, "the route's share of the plan")
    fixed = list(dict.fromkeys(max(1, m // q) for q in (50, 20, 10, 5, 2)))
    if d["candidates_tried"] != fixed:
        raise _bad(f"{where}.candidates_tried is {d['candidates_tried']!r}, not the fixed guess counts {fixed!r}")
    if d["k"] not in fixed or not 0 <= d["correct"] <= min(d["k"], n_in):
        raise _bad(f"{where}: {d['correct']} correct of {d['k']} guesses is not a count of a fixed guess count on "
                   f"{m} canaries ({n_in} in)")
    value = epsilon_lb_fdp_one_run(m, d["k"], d["correct"], ctx["delta"], 1.0 - (1.0 - share) / len(fixed))
    _agree(f"{where}.epsilon_lb", d["epsilon_lb"], value, f"the f-DP one-run test on its ({m}, {d['k']}, "
                                                          f"{d['correct']})")
    ceil = max(ceiling_fdp_one_run(m, ctx["delta"], share, n_in=n_in), value)
    _agree(f"{where}.ceiling", d["ceiling"], ceil, f"every guess right on {m} canaries ({n_in} in)")
    return value, ceil


@dataclass(frozen=True)
class ListedRoute:
    """One entry of the full analysis's route list (dpaudit.core.whitebox_stats.bound_routes): its name and label,
    how its bound and ceiling are recomputed (``recompute(where, entry, ctx) -> (bound, ceiling)``; ctx holds m,
    n_in, steps, q, delta, confidence (the first share), share (each third of the second share) and one_run (the
    recomputed one-run bound)), and when it counts (``counts(failed tests) -> bool``). A new route (f-DP, say) is
    one more entry of :data:`WHITEBOX_ROUTE_LIST`; the verdict's evidence follows from the table."""
    route: str
    label: str
    recompute: Callable[[str, Any, dict], tuple[float, float]]
    counts: Callable[[list[str]], bool] = lambda failed: True  # noqa: E731


WHITEBOX_ROUTE_LIST: tuple[ListedRoute, ...] = (
    ListedRoute("one_run", "one run (Steinke, Nasr & Jagielski 2023)", _listed_one_run),
    ListedRoute("clopper_pearson", "Clopper-Pearson over canaries", _listed_cp),
    # valid only when every independence test accepts: its argument needs independent steps and canaries
    ListedRoute("per_step", "per-step witness composition", _listed_per_step,
                lambda failed: not any(n in _INDEPENDENCE_TESTS for n in failed)),
    ListedRoute("fdp_one_run", FDP_LABEL, _listed_fdp),
)


def _check_route_list(where: str, wb: dict, d: dict, one_v: float, failed: list[str]
                      ) -> list[tuple[str, float, float]]:
    """The full analysis's route list (bounds.routes, one entry per :data:`WHITEBOX_ROUTE_LIST` route, in order),
    each recomputed at its share (one run at the block's confidence, the others at a third of the other share each),
    each counted exactly when its rule says, and the best counted route, the per-step bound, the rejections' words
    and the routes' sentence that follow. Returns the verdict's white-box evidence: (source, bound, ceiling) of
    every counted route."""
    b = wb["bounds"]
    rw = f"{where}.bounds.routes"
    routes = _typed(rw, b.get("routes"), "list")
    names = [r.get("route") if isinstance(r, dict) else None for r in routes]
    if names != [r.route for r in WHITEBOX_ROUTE_LIST]:
        if names == [r.route for r in WHITEBOX_ROUTE_LIST if r.route != "fdp_one_run"]:
            # not damage: the layout of the dpaudit before the f-DP route, whose shares differed too
            raise DPAuditError(f"{rw} lists the three white-box routes of an earlier dpaudit (before the f-DP "
                               f"route); re-run the audit with this version to check it")
        raise _bad(f"{rw} must list the routes {', '.join(r.route for r in WHITEBOX_ROUTE_LIST)}, in that order")
    conf = d["confidence"]
    ctx = {"m": d["m"], "n_in": d["included"], "steps": d["steps"], "q": d["claimed_q"], "delta": d["delta"],
           "confidence": conf, "share": route_share_confidence(conf), "one_run": one_v}
    evidence, values = [], {}
    for i, spec in enumerate(WHITEBOX_ROUTE_LIST):
        r = routes[i]
        value, ceil = spec.recompute(f"{rw}[{i}]", r, ctx)
        if r["label"] != spec.label:
            raise _bad(f"{rw}[{i}].label is {str(r['label'])[:40]!r}, not {spec.label!r}")
        if r["valid"] != spec.counts(failed):
            raise _bad(f"{rw}[{i}].valid is {str(r['valid']).lower()} but its tests say it "
                       f"{'counts' if spec.counts(failed) else 'does not count'}")
        values[spec.route] = (value, ceil)
        if r["valid"]:
            evidence.append((f"white-box canaries ({spec.label})", value, ceil))
    for k, i in (("cp", 1), ("per_step", 2)):
        if b.get(k) != routes[i]:
            raise _bad(f"{where}.bounds.{k} is not its route's entry bounds.routes[{i}]")
    for k in ("best_route", "epsilon_lb_best", "epsilon_lb_per_step", "broken", "routes", "routes_text"):
        if k not in wb:
            raise _bad(f"{where}.{k} missing")
    if wb["routes"] != routes:
        raise _bad(f"{where}.routes is not bounds.routes")
    best = max((r for r in routes if r["valid"]), key=lambda r: r["epsilon_lb"])
    want = best["route"] if best["epsilon_lb"] > 0 else "none"
    if wb["best_route"] != want:
        raise _bad(f"{where}.best_route is {str(wb['best_route'])[:40]!r} but the largest counted bound is {want!r}")
    _agree(f"{where}.epsilon_lb_best", _typed(f"{where}.epsilon_lb_best", wb["epsilon_lb_best"], "num"),
           best["epsilon_lb"], "the largest counted route")
    _agree(f"{where}.epsilon_lb_per_step", _typed(f"{where}.epsilon_lb_per_step", wb["epsilon_lb_per_step"], "num"),
           values["per_step"][0], "its per-step route")
    # what the block's top level and the verdict read (set by dpaudit.core.whitebox.analyse)
    for key, route, j in (("epsilon_lb_one_run", "one_run", 0), ("epsilon_lb_cp", "clopper_pearson", 0),
                          ("ceiling_one_run", "one_run", 1), ("ceiling_cp", "clopper_pearson", 1)):
        _agree(f"{where}.{key}", d[key], values[route][j], f"its {route} route")
    _agree(f"{where}.epsilon_lb", d["epsilon_lb"], best["epsilon_lb"], "its best counted route (epsilon_lb_best)")
    _agree(f"{where}.ceiling", d["ceiling"], max(c for _, _, c in evidence), "the largest ceiling of its counted routes")
    if wb["broken"] != [BROKEN[n] for n in failed if n in BROKEN]:
        raise _bad(f"{where}.broken does not say what its rejected tests {failed!r} mean")
    text = routes_text(routes, float(d["claimed_epsilon"]), d["m"], d["delta"])
    if wb["routes_text"] != text:
        raise _bad(f"{where}.routes_text is {str(wb['routes_text'])[:60]!r}… but its routes read {text[:60]!r}…")
    return evidence


def _check_detectable(where: str, det, claimed: float | None) -> None:
    """A stored detectable ε that is not re-simulated here: null (not measured), "inf" (not detectable), or the
    smallest true ε refuted with probability >= 80%, which the bisection only ever finds above the claim."""
    if det is None:
        return
    det = float(det)
    if claimed is None:
        raise _bad(f"{where} is {_num(det)} on a model that claims no ε (there is no claim to refute)")
    if math.isnan(det) or not (math.isinf(det) or det >= claimed * (1 - REL) - ABS) or det <= 0:
        raise _bad(f"{where} is {_num(det)}, but a detectable ε is a true ε above the claimed {claimed:.6g} "
                   f"(or inf: not detectable)")


_WB_POWER_KEYS = {"n_sims": "int", "seed": "int", "analysis_seed": "int", "grid": "num", "power": "num",
                  "points": "list", "n_tests": "int", "null_detected": "bool", "rate": "num?", "rate_ci": "list?"}


def _check_wb_power(where: str, p: Any, factor: float | None) -> None:
    """The white-box power simulation's record (dpaudit.core.power.whitebox_detectable): every factor's counts
    in range, and the reported factor's rate and exact interval recomputed from its counts. The simulation itself
    (whole analyses of simulated runs, the accountant at σ × f) is not re-run here."""
    d = _typed_block(where, p, _WB_POWER_KEYS)
    n = d["n_sims"]
    if n < 1 or not 0 < d["power"] < 1:
        raise _bad(f"{where}: n_sims {n} and power {_num(d['power'])} are not a simulation's")
    pts = []
    for i, x in enumerate(d["points"]):
        pt = _typed_block(f"{where}.points[{i}]", x, {"noise_factor": "num", "detected": "int", "n": "int"})
        if not (0 < pt["noise_factor"] < 1 and 0 <= pt["detected"] <= pt["n"] <= n):
            raise _bad(f"{where}.points[{i}] is not a factor in (0, 1) with 0 <= detected <= n <= n_sims")
        pts.append(pt)
    if factor is None:
        if d["rate"] is not None or d["rate_ci"] is not None:
            raise _bad(f"{where}.rate is {_num(d['rate'])} but no factor was detected")
        return
    hit = [pt for pt in pts if _close(pt["noise_factor"], factor)]
    if not hit or hit[0]["n"] != n or hit[0]["detected"] < d["power"] * n - 1e-9:
        raise _bad(f"{where}: the detectable noise factor {_num(factor)} is not a simulated factor detected in >= "
                   f"{_num(d['power'])} of its {n} runs")
    _agree(f"{where}.rate", d["rate"], hit[0]["detected"] / n, "its detected runs / n_sims")
    lo, hi = binomial_ci(hit[0]["detected"], n)
    ci = d["rate_ci"] or []
    if len(ci) != 2 or not (_close(ci[0], lo) and _close(ci[1], hi)):
        raise _bad(f"{where}.rate_ci is not the exact 95% interval of {hit[0]['detected']} in {n}")


def _check_whitebox(where: str, wb: Any, m_cfg: int, delta: float, confidence: float, claimed: float | None,
                    training_gc: Any) -> tuple[list[tuple[str, float, float]], list[str], float | None]:
    """Strict types of the white-box block, its bounds and ceilings recomputed, conformance recomputed from the
    p-values, its measured power validated. Returns ([(evidence, bound, ceiling)] for each of
    :data:`WHITEBOX_ROUTES`, failed tests, detectable ε or None)."""
    d = _typed_block(where, wb, _WB_KEYS, _WB_OPTIONAL)
    m, n_in = d["m"], d["included"]
    if m != m_cfg:
        raise _bad(f"{where}.m is {m} but config.gradient_canaries is {m_cfg}")
    if not 0 <= n_in <= m:
        raise _bad(f"{where}.included is {n_in}, not between 0 and m = {m}")
    if training_gc is None:
        raise _bad(f"{where.replace('.whitebox', '.training.gradient_canaries')} is null but the model has a white-box "
                   f"block (the training record states the canaries it carried)")
    if (training_gc.m, training_gc.included) != (m, n_in) or not _close(training_gc.dirac_norm, d["dirac_norm"]):
        raise _bad(f"{where}: m, included and dirac_norm differ from the training record's gradient_canaries")
    _agree(f"{where}.delta", d["delta"], delta, "the configuration")
    _agree(f"{where}.confidence", d["confidence"], confidence, "the configuration's Bonferroni plan")
    _agree(f"{where}.claimed_epsilon", d["claimed_epsilon"], claimed, "the training record's ε")
    _conf(f"{where}.confidence", d["confidence"])
    views = {k: _wb_bounds(f"{where}.{k}", wb[k], m, n_in, delta, confidence)
             for k in ("bounds", "final_model_bounds")}
    for k in ("one_run", "cp"):
        _agree(f"{where}.final_model_epsilon_lb_{k}", d[f"final_model_epsilon_lb_{k}"], views["final_model_bounds"][k],
               "its bounds block")
    listed = "routes" in wb or "routes" in wb["bounds"]  # the full analysis: its route list decides (below)
    ctx = {"m": m, "n_in": n_in, "delta": delta, "confidence": confidence, "claimed": claimed}
    routes = []
    for r in () if listed else WHITEBOX_ROUTES:
        value, ceil = r.recompute(where, d, views, ctx)
        _agree(f"{where}.{r.bound_key}", d[r.bound_key], value, "its bounds block")
        _agree(f"{where}.{r.ceiling_key}", d[r.ceiling_key], ceil, f"a perfect attack on {m} canaries ({n_in} in)")
        routes.append((r.source, value, ceil))
    if not listed:
        _agree(f"{where}.epsilon_lb", d["epsilon_lb"], max(v for _, v, _ in routes), "the larger of its two bounds"
               if len(routes) == 2 else "the largest of its bounds")
        _agree(f"{where}.ceiling", d["ceiling"], max(c for _, _, c in routes), "the larger of its two ceilings"
               if len(routes) == 2 else "the largest of its ceilings")
    # measured power: re-simulating it needs the accountant (Opacus), so its type, range and form are checked
    det = d.get("detectable_epsilon")
    _check_detectable(f"{where}.detectable_epsilon", det, claimed)
    f = d.get("detectable_noise_factor")
    if (det is None or math.isinf(det)) and f is not None:
        raise _bad(f"{where}.detectable_noise_factor is {_num(f)} but its detectable ε is {_num(det)}")
    if det is not None and math.isfinite(det) and not (f is not None and 0 < f < 1):
        raise _bad(f"{where}.detectable_noise_factor is {_num(f)}; a detectable ε of {_num(det)} comes from the "
                   f"claimed noise scaled by a factor in (0, 1)")
    if "detectable_power" in d:
        _check_wb_power(f"{where}.detectable_power", d["detectable_power"], f)
    # conformance, from the p-values: Bonferroni over the statistical tests (the structural checks a probe adds
    # hold or fail outright, p 1 or 0, and take no share)
    for i, t in enumerate(d["tests"]):
        _typed(f"{where}.tests[{i}]", t, "dict")
    full = any("broken" in t for t in d["tests"])  # the full analysis states what each rejection means
    n_stat = sum(1 for t in d["tests"] if t.get("name") not in WHITEBOX_STRUCTURAL_TESTS)
    alpha_each = (1.0 - confidence) / max(n_stat, 1)
    known = (WHITEBOX_ALL_TESTS if full else WHITEBOX_TESTS) + tuple(WHITEBOX_STRUCTURAL_TESTS)
    names = []
    failed = []
    for i, t in enumerate(d["tests"]):
        tw = f"{where}.tests[{i}]"
        _keys(tw, t, {"name", "statistic", "p_value", "passed", "what"}
              | ({"broken"} if full and t.get("name") not in WHITEBOX_STRUCTURAL_TESTS else set()), _TEST_EXTRAS)
        name = _typed(f"{tw}.name", t["name"], "str")
        if name not in known or name in names:
            raise _bad(f"{tw}.name {name[:40]!r} is not one of the conformance tests "
                       f"{', '.join(WHITEBOX_ALL_TESTS if full else WHITEBOX_TESTS)} or the structural checks "
                       f"{', '.join(WHITEBOX_STRUCTURAL_TESTS)} (or repeats one)")
        names.append(name)
        _typed(f"{tw}.statistic", t["statistic"], "num")
        _typed(f"{tw}.what", t["what"], "str")
        if full and name in BROKEN and t["broken"] != BROKEN[name]:
            raise _bad(f"{tw}.broken is {str(t['broken'])[:60]!r}, not what a rejection of {name} means")
        for k in _TEST_EXTRAS & set(t):
            _typed(f"{tw}.{k}", t[k], "num")
        p = _typed(f"{tw}.p_value", t["p_value"], "num")
        _prob(f"{tw}.p_value", p)
        passed = _typed(f"{tw}.passed", t["passed"], "bool")
        if name in WHITEBOX_STRUCTURAL_TESTS:
            key = WHITEBOX_STRUCTURAL_TESTS[name]
            if p not in (0.0, 1.0) or float(t["statistic"]) != p or "claimed" not in t:
                raise _bad(f"{tw}: a structural check has p-value and statistic 1 (holds) or 0 (fails) and names "
                           f"what it checks, got p {_num(p)}, statistic {_num(t['statistic'])}")
            _agree(f"{tw}.claimed", t["claimed"], d[key], f"the block's {key}")
        if passed != (p > alpha_each):
            raise _bad(f"{tw}.passed is {str(passed).lower()} but its p-value {_num(p)} "
                       f"{'exceeds' if p > alpha_each else 'is at most'} the level (1 − {confidence:.6g}) / "
                       f"{n_stat} = {alpha_each:.3g}")
        if not passed:
            failed.append(name)
    expected = set(WHITEBOX_ALL_TESTS if full else WHITEBOX_TESTS) if 0 < n_in < m else {"steps"}
    if not expected <= set(names):
        raise _bad(f"{where}.tests lacks {', '.join(sorted(expected - set(names)))}")
    if d["conformant"] != (not failed):
        raise _bad(f"{where}.conformant is {str(d['conformant']).lower()} but its tests' p-values "
                   f"{'reject ' + ', '.join(failed) if failed else 'reject none'}")
    if d["failed"] != failed:
        raise _bad(f"{where}.failed is {d['failed']!r:.80} but its tests' p-values reject {failed!r}")
    for k in ("sigma_ci", "q_ci") + (("empirical_epsilon_ci",) if d["empirical_epsilon_ci"] is not None else ()):
        if len(d[k]) != 2:
            raise _bad(f"{where}.{k} must be a list of 2")
        for j, x in enumerate(d[k]):
            _typed(f"{where}.{k}[{j}]", x, "num", nullable=True)
    for j, x in enumerate(d["notes"]):
        _typed(f"{where}.notes[{j}]", x, "str")
    for k in ("claimed_sigma", "claimed_q", "max_grad_norm", "dirac_norm", "epsilon_lb", "ceiling"):
        _in(f"{where}.{k}", d[k], 0.0, math.inf)
    _prob(f"{where}.claimed_q", d["claimed_q"])
    if listed:
        routes = _check_route_list(where, wb, d, views["bounds"]["one_run"], failed)
    return routes, failed, det


# -------------------------------------------------------------------------------------------------- a model


def _model_name(eps: float) -> str:
    return "non-dp" if not math.isfinite(eps) else f"dp-eps{eps:g}"  # dpaudit.config.model_name


def _check_training(where: str, m: ModelAudit, cfg, observed_report: bool) -> None:
    tr = m.training
    if tr.dp != m.dp:
        raise _bad(f"{where}.dp is {str(m.dp).lower()} but training.dp is {str(tr.dp).lower()}")
    for k in ("target_epsilon", "epsilon"):
        _eps(f"{where}.training.{k}", getattr(tr, k), allow_nan=False)
    for i, e in enumerate(tr.epsilon_per_epoch):
        _eps(f"{where}.training.epsilon_per_epoch[{i}]", e)
    for k in ("train_accuracy", "test_accuracy"):
        _prob(f"{where}.training.{k}", getattr(tr, k), allow_nan=True)
    for k in ("delta",):
        _in(f"{where}.training.{k}", getattr(tr, k), 0.0, 1.0, hi_open=True)
    _prob(f"{where}.training.sample_rate", tr.sample_rate)
    for k in ("noise_multiplier", "max_grad_norm", "train_loss", "wall_s", "accounting_s", "lr", "momentum"):
        _eps(f"{where}.training.{k}", getattr(tr, k), allow_nan=True)
    if observed_report and not tr.observed:
        raise _bad(f"{where}.training.observed is false in a report whose training dpaudit observed "
                   f"(observed_training true)")
    if not observed_report and tr.observed:
        raise _bad(f"{where}.training.observed is true in a report that says dpaudit observed no training")
    if not tr.observed:
        held = [k for k in _OBSERVED_ONLY if getattr(tr, k) is not None] + (["epsilon_per_epoch"]
                                                                              if tr.epsilon_per_epoch else [])
        if held or tr.poisson_sampling_checked or tr.gradient_canaries is not None:
            what = ", ".join(held) or "poisson_sampling_checked / gradient_canaries"
            raise _bad(f"{where}.training.observed is false, yet it records {what}, which only an observed "
                       f"training has")
        if m.accountant_check is not None:
            raise _bad(f"{where} has an accountant cross-check of a training dpaudit did not observe")
    if m.dp:
        if tr.observed:
            _agree(f"{where}.training.delta", tr.delta, cfg.delta, "config.delta")
            _agree(f"{where}.training.max_grad_norm", tr.max_grad_norm, cfg.max_grad_norm, "config.max_grad_norm")
            if tr.epsilon_per_epoch:
                _agree(f"{where}.training.epsilon", tr.epsilon, tr.epsilon_per_epoch[-1],
                       "its last epoch (epsilon_per_epoch)")
            for k in ("noise_multiplier", "sample_rate", "steps"):
                if getattr(tr, k) is None or (isinstance(getattr(tr, k), float) and math.isnan(getattr(tr, k))):
                    raise _bad(f"{where}.training.{k} is null in an observed DP training")
    else:
        for k in ("target_epsilon", "epsilon", "noise_multiplier"):
            v = getattr(tr, k)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                raise _bad(f"{where}.training.{k} is {_num(v)} in a model trained without DP")
        if tr.epsilon_per_epoch:
            raise _bad(f"{where}.training.epsilon_per_epoch is not empty in a model trained without DP")
    ac = m.accountant_check
    if ac is not None:
        if not m.dp:
            raise _bad(f"{where} has an accountant cross-check but was trained without DP")
        for k in ("opacus", "dp_accounting_pld", "dp_accounting_rdp"):
            _eps(f"{where}.accountant_check.{k}", getattr(ac, k), allow_nan=True)
        _eps(f"{where}.accountant_check.relative_difference", ac.relative_difference, allow_nan=True)
        if ac.reference not in ("pld", "rdp", "none"):
            raise _bad(f"{where}.accountant_check.reference is {ac.reference!r}, not pld, rdp or none")
        ref = {"pld": ac.dp_accounting_pld, "rdp": ac.dp_accounting_rdp}.get(ac.reference)
        if ref is not None and not math.isnan(ref) and ac.opacus > 0:
            _agree(f"{where}.accountant_check.relative_difference", ac.relative_difference,
                   abs(ac.opacus - ref) / ref if ref else math.inf, f"opacus against dp_accounting {ac.reference}")


def _check_model(i: int, m: ModelAudit, eps: float, rep: Report, rerun: int = 0) -> None:
    cfg, split = rep.config, rep.split
    where = f"models[{i}]"
    dp = math.isfinite(eps)
    if m.name != _model_name(eps) or m.dp != dp:
        raise _bad(f"{where} is {m.name!r} ({'DP' if m.dp else 'no DP'}) but config.epsilons[{i}] = {_num(eps)} "
                   f"asks for {_model_name(eps)!r}")
    if dp and not _close(m.target_epsilon, eps):
        raise _bad(f"{where}.target_epsilon is {_num(m.target_epsilon)} but config.epsilons[{i}] is {_num(eps)}")
    if not dp and m.target_epsilon is not None:
        raise _bad(f"{where}.target_epsilon is {_num(m.target_epsilon)} in a model trained without DP")
    if dp and not _close(m.training.target_epsilon, eps):
        raise _bad(f"{where}.training.target_epsilon is {_num(m.training.target_epsilon)} but config.epsilons[{i}] "
                   f"is {_num(eps)}")
    _check_training(where, m, cfg, rep.observed_training)
    plan = plan_confidences(cfg, dp, rerun)
    # what the claim allows (the power simulations refute this claim)
    claimed = m.training.epsilon if dp else None
    if dp and (claimed is None or not (claimed > 0 and math.isfinite(claimed))):
        raise _bad(f"{where}.training.epsilon is {_num(claimed)}, not the finite ε > 0 of a DP training")
    power: list[tuple[str, float | None]] = []
    delta = cfg.delta
    n_pos, n_neg = split.members, split.pool_size - split.members
    if (cfg.attacks or m.canary is not None) and (n_pos < 1 or n_neg < 1):  # a probe report has neither
        raise _bad(f"split: {n_pos} members and {n_neg} non-members; a report needs at least one of each")
    # references
    rm = m.reference_models
    if rm.k != cfg.shadow_models:
        raise _bad(f"{where}.reference_models.k is {rm.k} but config.shadow_models is {cfg.shadow_models}")
    lists = [len(rm.test_accuracy), len(rm.epsilon), len(rm.seeds)] + [len(x) for x in
                                                                      (rm.n_train, rm.sample_rate, rm.steps) if x]
    if any(n not in (0, rm.k) for n in lists) or len(set(lists)) > 1:
        raise _bad(f"{where}.reference_models lists {lists} values for {rm.k} reference models")
    if rm.cache_hits > 1 + rm.k:
        raise _bad(f"{where}.reference_models.cache_hits is {rm.cache_hits}, more than its {1 + rm.k} models")
    for j, x in enumerate(rm.test_accuracy):
        _prob(f"{where}.reference_models.test_accuracy[{j}]", x, allow_nan=True)
    # attacks
    names = [a.attack for a in m.attacks]
    if names != list(cfg.attacks):
        raise _bad(f"{where} has the attacks {names} but config.attacks is {list(cfg.attacks)}")
    bounds: list[tuple[str, float, float]] = []
    for j, a in enumerate(m.attacks):
        aw = f"{where}.attacks[{j}]"
        _check_metrics(f"{aw}.metrics", a.metrics, n_pos, n_neg)
        value = _cp_value(f"{aw}.epsilon_lb", a.epsilon_lb, delta, plan["attack"], n_pos, n_neg)
        ceil = ceiling_clopper_pearson(n_pos, n_neg, delta, plan["attack"])
        _agree(f"{aw}.ceiling", a.ceiling, ceil, f"a perfect attack on {n_pos} members and {n_neg} non-members")
        det = detectable_epsilon_cp(claimed, n_pos, n_neg, delta, plan["attack"], cfg.seed) if dp else None
        _agree(f"{aw}.detectable_epsilon", a.detectable_epsilon, det,
               f"the power simulation at its sample sizes and confidence (seed {cfg.seed})" if dp else
               "a model without a claim (nothing to refute)")
        bounds.append((f"{a.attack} attack", value, ceil))
        power.append((f"{a.attack} attack", det))
    # canaries
    if (m.canary is not None) != (cfg.canaries > 0):
        raise _bad(f"{where}.canary is {'present' if m.canary is not None else 'null'} but config.canaries is "
                   f"{cfg.canaries}")
    if m.canary is not None:
        c = m.canary
        cw = f"{where}.canary"
        if c.m != cfg.canaries or split.canaries != cfg.canaries or c.included != split.canaries_in:
            raise _bad(f"{cw}: {c.included} of {c.m} canaries included, but the split drew {split.canaries_in} of "
                       f"{split.canaries} (config.canaries {cfg.canaries})")
        if c.m < 2:
            raise _bad(f"{cw}.m is {c.m}; balanced one-run guesses need at least 2 canaries")
        value = _one_run_value(cw, lambda k: getattr(c, k), c.m, c.included, delta, plan["canary"], balanced=True)
        _agree(f"{cw}.epsilon_lb", c.epsilon_lb, value, f"the one-run test on its (m, r, v) = ({c.m}, {c.r}, {c.v})")
        ceil = ceiling_one_run_balanced(c.m, delta, plan["canary"], n_in=c.included)
        _agree(f"{cw}.ceiling", c.ceiling, ceil, f"a perfect attack on {c.m} canaries (balanced guesses)")
        for k in ("test_accuracy_with_canaries", "test_accuracy_without_canaries"):
            _prob(f"{cw}.{k}", getattr(c, k), allow_nan=True)
        _check_coin(f"{cw}.coin_check", c.coin_check, c.m, c.included)
        det = detectable_epsilon_one_run(claimed, c.m, c.included, delta, plan["canary"], cfg.seed) if dp else None
        _agree(f"{cw}.detectable_epsilon", c.detectable_epsilon, det,
               f"the power simulation at its m, canaries in and confidence (seed {cfg.seed})" if dp else
               "a model without a claim (nothing to refute)")
        bounds.append(("canaries (one run)", value, ceil))
        power.append(("canaries (one run)", det))
    # white-box gradient canaries
    rejected: list[str] | None = None
    want_wb = dp and cfg.gradient_canaries > 0
    if (m.whitebox is not None) != want_wb:
        raise _bad(f"{where}.whitebox is {'present' if m.whitebox is not None else 'missing'} but config."
                   f"gradient_canaries is {cfg.gradient_canaries} on a {'DP' if dp else 'non-DP'} model")
    if m.whitebox is not None:
        routes, failed, det = _check_whitebox(f"{where}.whitebox", m.whitebox.to_json(), cfg.gradient_canaries, delta,
                                              plan["canary"], m.training.epsilon, m.training.gradient_canaries)
        bounds += routes
        power.append((WHITEBOX_POWER_SOURCE, det))
        rejected = failed
    elif m.training.gradient_canaries is not None:
        raise _bad(f"{where}.training.gradient_canaries is set but the model has no white-box block")
    _agree(f"{where}.bounds.delta", m.bounds.delta, delta, "config.delta")
    _agree(f"{where}.bounds.max_balanced_accuracy", m.bounds.max_balanced_accuracy,
           max_balanced_accuracy(claimed, delta) if dp else 1.0, "the claimed (ε, δ)")
    _agree(f"{where}.bounds.max_advantage", m.bounds.max_advantage,
           max_advantage(claimed, delta) if dp else 1.0, "the claimed (ε, δ)")
    _check_verdict(where, m, claimed, bounds, rejected, plan, power, rep)


def _check_coin(where: str, cc: Any, m: int, included: int) -> None:
    """The canaries' membership record (:func:`~dpaudit.core.bounds.fair_coin_check`), recomputed from m and the
    number included: every key, the rule, the binomial test's p-value and the ``biased`` flag."""
    if cc is None:
        raise _bad(f"{where} is missing (every canary bound states its membership rule and coin check)")
    want = _coin_check(m, included)
    spec = {k: ("bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "num"
                if isinstance(v, float) else "str") for k, v in want.items()}
    d = _typed_block(where, cc, spec)
    for k, v in want.items():
        if spec[k] == "num":
            _agree(f"{where}.{k}", d[k], v, f"the binomial test of {included} members of {m} against 1/2")
        elif d[k] != v:
            raise _bad(f"{where}.{k} is {str(d[k])[:60]!r} but {included} members of {m} give {str(v)[:60]!r}")


def _check_verdict(where: str, m: ModelAudit, claimed, bounds, rejected, plan, power, rep: Report) -> None:
    v = m.verdict
    vw = f"{where}.verdict"
    got = decide_verdict(claimed, bounds, rejected, n_canaries=m.canary.m if m.canary is not None else None,
                         whitebox_possible=bool(m.training.observed),
                         detectable=[(s, d) for s, d in power if d is not None],
                         whitebox_need=whitebox_need(m.whitebox))
    texts = [got.text]  # the sentence its evidence reads
    _agree(f"{vw}.claimed_epsilon", v.claimed_epsilon, claimed, "the training record's ε")
    _agree(f"{vw}.empirical_epsilon_lb", v.empirical_epsilon_lb, got.empirical_epsilon_lb,
           "the best of its recomputed bounds")
    _agree(f"{vw}.ratio", v.ratio, got.ratio, "best bound / claimed ε")
    _agree(f"{vw}.ceiling", v.ceiling, got.ceiling, "the largest of its recomputed ceilings")
    if v.could_detect is not got.could_detect:
        raise _bad(f"{vw}.could_detect is {_num(v.could_detect)} but its ceiling {got.ceiling:.6g} "
                   f"{'exceeds' if got.could_detect else 'does not exceed'} the claim")
    if v.source != got.source or v.ceiling_source != got.ceiling_source:
        raise _bad(f"{vw}: source {v.source!r:.60} / ceiling_source {str(v.ceiling_source)!r:.60} are not the "
                   f"evidence that gives its bound and ceiling ({got.source!r:.60} / {got.ceiling_source!r:.60})")
    if tuple(v.rejected_conformance) != got.rejected_conformance:
        raise _bad(f"{vw}.rejected_conformance is {list(v.rejected_conformance)!r:.80} but the white-box tests' "
                   f"p-values reject {got.rejected_conformance!r}")
    # measured power: the audit's detectable ε is the smallest over its routes, and "consistent" needs it at most
    # POWER_MULTIPLE × the claim (dpaudit.core.bounds.decide_verdict)
    _agree(f"{vw}.detectable_epsilon", v.detectable_epsilon, got.detectable_epsilon,
           "the smallest of its routes' detectable ε")
    if v.detectable_source != got.detectable_source:
        raise _bad(f"{vw}.detectable_source is {str(v.detectable_source)[:60]!r} but the smallest detectable ε is "
                   f"{str(got.detectable_source)[:60]!r}'s")
    if v.power_multiple is not None or claimed is not None:
        _agree(f"{vw}.power_multiple", v.power_multiple, POWER_MULTIPLE, "the fixed rule (consistent needs the "
               "detectable ε at most this multiple of the claim)")
    if got.detectable_epsilon is not None and v.power_method != POWER_METHOD:
        raise _bad(f"{vw}.power_method is {str(v.power_method)[:60]!r}, not how dpaudit measures power")
    status = str(getattr(got.status, "value", got.status))  # a str enum in dpaudit.core.bounds
    if SEVERITY[v.status] < SEVERITY[status]:
        raise _bad(f"{vw}.status is {v.status!r} but its recomputed evidence says {status!r}")
    # the sentence a reader sees follows from the same numbers; a harsher stored status (fail closed) has its own
    if v.status == status and v.next_step != got.next_step:
        raise _bad(f"{vw}.next_step is {str(v.next_step)[:60]!r} but its evidence gives "
                   f"{str(got.next_step)[:60]!r}")
    if v.status == status and v.text not in texts:
        raise _bad(f"{vw}.text is {str(v.text)[:60]!r}… but its recomputed evidence reads {texts[0][:60]!r}…")
    _agree(f"{vw}.confidence", v.confidence, plan["per_model"], "the configuration's Bonferroni plan")
    _agree(f"{vw}.per_bound_confidence", v.per_bound_confidence,
           plan["attack"] if plan["n_attacks"] else plan["canary"], "the configuration's Bonferroni plan")
    if v.n_bounds != plan["n_bounds"]:
        raise _bad(f"{vw}.n_bounds is {v.n_bounds} but the configuration gives {plan['n_bounds']}")
    want_cc = plan["canary"] if plan["n_bounds"] > plan["n_attacks"] else None
    if v.canary_confidence is not None or want_cc is None:
        _agree(f"{vw}.canary_confidence", v.canary_confidence, want_cc, "the configuration's Bonferroni plan")
    _agree(f"{vw}.family_confidence", v.family_confidence, plan["run"],
           "this run's share of config.confidence (alpha_spending)")


# ------------------------------------------------------------------------------------------------ the report


def _check_config(rep: Report) -> None:
    cfg, split, ds = rep.config, rep.split, rep.dataset
    _conf("config.confidence", cfg.confidence)
    _in("config.delta", cfg.delta, 0.0, 1.0, hi_open=True)
    _in("config.max_grad_norm", cfg.max_grad_norm, 0.0, math.inf, lo_open=True)
    if not cfg.epsilons:
        raise _bad("config.epsilons is empty")
    for i, e in enumerate(cfg.epsilons):
        _in(f"config.epsilons[{i}]", e, 0.0, math.inf, lo_open=True)
    if len(set(cfg.epsilons)) != len(cfg.epsilons):
        raise _bad("config.epsilons repeats a value")
    if len(set(cfg.attacks)) != len(cfg.attacks):
        raise _bad("config.attacks repeats an attack")
    for k in ("lr", "momentum"):
        _eps(f"config.{k}", getattr(cfg, k), allow_nan=True)
    for side in ("non_dp", "dp"):
        r = getattr(cfg.recipes, side)
        _eps(f"config.recipes.{side}.lr", r.lr)
        _eps(f"config.recipes.{side}.momentum", r.momentum)
    if split.members > split.pool_size or split.canaries_in > split.canaries:
        raise _bad(f"split: {split.members} members of a pool of {split.pool_size}, {split.canaries_in} of "
                   f"{split.canaries} canaries in: impossible")
    # A probe's report (a user's own training script, any model: dpaudit.sources.probe) records n_classes 0 and
    # runs no attack; every attack reads class logits, so a report with attacks needs a classifier.
    if ds.n_classes < 2 and (ds.n_classes != 0 or cfg.attacks):
        raise _bad(f"dataset.n_classes is {ds.n_classes}; a classifier needs at least 2")


def _nonnegative_ints(x: Any, path: str) -> None:
    """Every integer in the typed report is a count, a size, an index or a seed: none is negative."""
    import dataclasses

    if dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            _nonnegative_ints(getattr(x, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _nonnegative_ints(v, f"{path}[{i}]")
    elif isinstance(x, dict) and not path.endswith(("whitebox", "details")):
        for k, v in x.items():
            _nonnegative_ints(v, f"{path}.{k}")
    elif isinstance(x, int) and not isinstance(x, bool) and x < 0:
        raise _bad(f"{path} is {x}; counts, sizes and seeds are never negative")


def verify_report(rep: Report, schema: str = SCHEMA) -> None:
    """Refuse ``rep`` (DPAuditError, one line naming the field) unless every verdict-relevant number agrees with
    the evidence it comes from; see the module docstring for what is recomputed. ``schema``: the version the
    file declared (only the current one, whose ceilings are always computed, can be verified).

    Pure and quick (a fraction of a second per DP model, most of it the memoised power re-simulations): no
    training, no file access.
    """
    if schema != SCHEMA:
        raise DPAuditError(f"schema {schema!r}: dpaudit check verifies {SCHEMA} reports only (older ones lack the "
                           f"ceilings and confidences it recomputes); re-run the audit with this dpaudit")
    _nonnegative_ints(rep, "")
    _check_config(rep)
    rerun = check_alpha_spending(rep)
    eps = rep.config.epsilons
    if len(rep.models) != len(eps):
        raise _bad(f"the report has {len(rep.models)} model(s) but config.epsilons lists {len(eps)} "
                   f"({', '.join(_model_name(e) for e in eps)})")
    if rep.split.n_models != 1 + rep.config.shadow_models:
        raise _bad(f"split.n_models is {rep.split.n_models} but config.shadow_models is {rep.config.shadow_models} "
                   f"(plus the target)")
    for i, (m, e) in enumerate(zip(rep.models, eps)):
        _check_model(i, m, e, rep, rerun)


# ------------------------------------------------------------------------------------- per-record scores


def verify_scores(rep: Report, scores: dict[tuple[str, str], tuple[Any, Any]]) -> None:
    """Where the per-record scores are stored beside a report (``--save-scores``: scores/<model>__<attack>.csv),
    recompute from them what :func:`verify_report` has to take as given: each attack's counts at its thresholds,
    its AUC and its TPR at each FPR level, and the canaries' balanced one-run guesses (k in, k out; r, v) and bound.

    ``scores``: {(model name, attack name or "canary"): (is_member bool [n], score float [n])}; entries for a
    model or attack the report does not have are refused (the folder holds another audit's scores)."""
    import numpy as np

    from dpaudit.attacks.metrics import auc, tpr_at_fpr
    from dpaudit.core.bounds import one_run_audit_balanced

    models = {m.name: m for m in rep.models}
    for (name, what), (is_in, s) in scores.items():
        where = f"scores/{name}__{what}.csv"
        m = models.get(name)
        attacks = {a.attack: (i, a) for i, a in enumerate(m.attacks)} if m is not None else {}
        if m is None or (what != "canary" and what not in attacks) or (what == "canary" and m.canary is None):
            raise _bad(f"{where} scores a model or attack this report does not have (another audit's scores?)")
        y, s = np.asarray(is_in, bool), np.asarray(s, np.float64)
        i = rep.models.index(m)
        if what == "canary":
            c = m.canary
            if (y.size, int(y.sum())) != (c.m, c.included):
                raise _bad(f"{where} holds {y.size} canaries, {int(y.sum())} in, but models[{i}].canary has {c.m}, "
                           f"{c.included} in")
            res = one_run_audit_balanced(s, y, c.delta, c.confidence)
            if (res.r, res.v, res.k_plus, res.k_minus) != (c.r, c.v, c.k_plus, c.k_minus):
                raise _bad(f"models[{i}].canary guesses r = {c.r}, v = {c.v} but its stored scores give r = {res.r}, "
                           f"v = {res.v}")
            _agree(f"models[{i}].canary.epsilon_lb", c.epsilon_lb, res.epsilon_lb, f"the one-run audit of {where}")
            continue
        j, a = attacks[what]
        aw = f"models[{i}].attacks[{j}]"
        mt, lb = a.metrics, a.epsilon_lb
        if (int(y.sum()), int((~y).sum())) != (mt.n_members, mt.n_nonmembers):
            raise _bad(f"{where} holds {int(y.sum())} members and {int((~y).sum())} non-members, but {aw} counts "
                       f"{mt.n_members} and {mt.n_nonmembers}")
        for label, thr, tp, fp in ((f"{aw}.metrics.counts", mt.threshold, mt.counts.tp, mt.counts.fp),
                                   (f"{aw}.epsilon_lb", lb.threshold, lb.tp, lb.fp)):
            g = s >= thr
            got = (int(np.sum(g & y)), int(np.sum(g & ~y)))
            if got != (tp, fp):
                raise _bad(f"{label}: tp {tp}, fp {fp} at threshold {thr:.6g}, but its stored scores give tp "
                           f"{got[0]}, fp {got[1]}")
        _agree(f"{aw}.metrics.auc", mt.auc, auc(s, y), f"the scores in {where}")
        for level, v in mt.tpr_at_fpr.items():
            _agree(f"{aw}.metrics.tpr_at_fpr.{level}", v, tpr_at_fpr(s, y, float(level)), f"the scores in {where}")
