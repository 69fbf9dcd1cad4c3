"""`dpaudit check`: a privacy-regression gate for CI, evaluated on a saved report.json. It fails closed.

A :class:`Policy` holds absolute limits (attack AUC, TPR at 1% FPR, claimed ε, test accuracy) and which
verdicts fail; :func:`evaluate_policy` turns it, and optionally a baseline report, into a list of
:class:`Rule` results. Rules that always apply, whatever the policy:

* ``evidence_models``: the report audits at least one model.
* ``evidence_present``: each DP model has at least one attack, canary or white-box bound.
* ``bounds_present``: no bound of a DP model is missing (null / NaN).
* ``claim_consistent``: the claim is the accountant's: verdict.claimed_epsilon = training.epsilon, dp flags
  agree, a DP model's ε is finite and > 0, a non-DP model claims nothing.
* ``verdict_recomputed``: the stored status is not softer than the one recomputed from the bounds, the
  measured power (detectable ε) and the claim (a stored "consistent" with a bound above the claim, or with no
  route that could see a leak of twice the claim, fails).
* ``accountant_check``: each DP model's accountant cross-check is present, not flagged, and checks the ε claimed.
* ``confidence_recomputed``: the α-spending record (this run's share, the total with earlier runs on the same
  models, the combined confidence) matches the fixed schedule, and no verdict is held at more than its share.

Before any rule, the report (and a baseline) must prove its numbers: :func:`dpaudit.check.recompute.verify_report`
checks types and ranges, that the models match the configuration, and recomputes the α-spending record, every
bound from its counts (the black-box canaries' under balanced guesses), every ceiling from its sample size, the
attacks' and canaries' detectable ε by their seeded power simulation, conformance from its p-values, each AUC
against its stored ROC curve and the verdict from all of them; where per-record scores were stored beside it, :func:`dpaudit.check.recompute.verify_scores`
recomputes its counts and AUCs from them. A report whose numbers disagree with their evidence is bad input (exit
2), never a pass: an edited report cannot make the gate read a violation, a missing model or a hidden
nonconformance as fine.

Verdict rules use the *effective* status, the worse of stored and recomputed (:func:`dpaudit.schema.
effective_status`): ``forbid_violation`` (on by default), ``forbid_inconclusive`` (off by default) and
``nonconformant`` (fails unless ``allow_nonconformant``).

Exit status of the command: 0 every rule holds, 1 at least one fails, 2 bad input (unreadable, foreign or
malformed report or policy, a baseline whose configuration differs) or an I/O error.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from dpaudit.check.recompute import verify_report, verify_scores
from dpaudit.errors import DPAuditError
from dpaudit.io import jsonable
from dpaudit.report.wording import fmt
from dpaudit.schema import SCHEMA, SEVERITY, ModelAudit, Report, as_report, effective_status, evidence


@dataclass(frozen=True)
class Rule:
    """One evaluated rule: what was measured (observed) against what is allowed (limit)."""
    name: str
    description: str
    model: str | None
    metric: str
    limit: float | str | None
    observed: float | str | None
    passed: bool


BOOL_KEYS = ("forbid_violation", "forbid_inconclusive", "allow_nonconformant", "require_observed_training")


@dataclass
class Policy:
    """Limits a report must meet. None switches a limit off.

    max_auc_non_dp / max_auc_dp: the largest attack AUC allowed (0.5 = chance) over every attack on a non-DP /
    DP model. max_tpr_at_1pct_fpr_*: likewise for the TPR at 1% FPR. max_epsilon: the largest claimed ε of
    each DP model, one number for all or {model name: number}. min_accuracy: the lowest test accuracy of
    every model (fraction). forbid_violation: no model's verdict may be "violation". forbid_inconclusive: no
    DP model's verdict may be "inconclusive" (an audit that could not have detected a violation).
    allow_nonconformant: let a "nonconformant" verdict pass (by default it fails). require_observed_training:
    fail a DP model whose training dpaudit did not observe (--target, --from-signals), whose ε is only the
    user's claim (off by default: such a claim is still tested by the attacks). tolerance: how much (in
    each metric's own unit, absolute) a metric may rise over a baseline report.
    """
    max_auc_non_dp: float | None = None
    max_auc_dp: float | None = None
    max_tpr_at_1pct_fpr_non_dp: float | None = None
    max_tpr_at_1pct_fpr_dp: float | None = None
    max_epsilon: float | dict[str, float] | None = None
    min_accuracy: float | None = None
    forbid_violation: bool = True
    forbid_inconclusive: bool = False
    allow_nonconformant: bool = False
    require_observed_training: bool = False
    tolerance: float = 0.02

    @classmethod
    def from_dict(cls, data: dict, source: str = "policy") -> Policy:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise DPAuditError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        out = {}
        for key, value in data.items():
            if key in BOOL_KEYS:
                if not isinstance(value, bool):
                    raise DPAuditError(f"{source}: {key} must be true or false, got {value!r}")
                out[key] = value
            elif key == "max_epsilon" and isinstance(value, dict):
                out[key] = {str(k): _number(v, f"{source}: max_epsilon.{k}") for k, v in value.items()}
            else:
                out[key] = _number(value, f"{source}: {key}")
        policy = cls(**out)
        policy.validate(source)
        return policy

    @classmethod
    def from_toml(cls, path: str | Path) -> Policy:
        """Read limits from TOML: top-level keys, or a [policy] table (or both). Unknown keys are errors."""
        path = Path(path)
        if not path.is_file():
            raise DPAuditError(f"policy file {path} not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM, as editors on Windows write
        except (OSError, UnicodeDecodeError) as exc:
            raise DPAuditError(f"policy file {path} is not readable ({exc.__class__.__name__})") from None
        except tomllib.TOMLDecodeError as exc:
            raise DPAuditError(f"policy file {path} is not valid TOML ({str(exc).splitlines()[0]})") from None
        table = data.pop("policy", {})
        if not isinstance(table, dict):
            raise DPAuditError(f"{path}: 'policy' must be a table ([policy])")
        both = set(table) & set(data)
        if both:
            raise DPAuditError(f"{path}: {', '.join(sorted(both))} set both at top level and in [policy]")
        return cls.from_dict({**data, **table}, source=str(path))

    def validate(self, source: str = "policy") -> None:
        for name in ("max_auc_non_dp", "max_auc_dp", "max_tpr_at_1pct_fpr_non_dp", "max_tpr_at_1pct_fpr_dp",
                     "min_accuracy"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise DPAuditError(f"{source}: {name} must be between 0 and 1, got {v:g}")
        eps = self.max_epsilon.values() if isinstance(self.max_epsilon, dict) else [self.max_epsilon]
        for v in eps:
            if v is not None and not v > 0:
                raise DPAuditError(f"{source}: max_epsilon must be > 0, got {v:g}")
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise DPAuditError(f"{source}: tolerance must be a finite number >= 0, got {self.tolerance:g}")


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DPAuditError(f"{what} must be a number, got {value!r}")
    if math.isnan(value):
        raise DPAuditError(f"{what} must be a number, got nan")
    return float(value)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _max_metric(model: ModelAudit, getter) -> float | None:
    """Largest value over the model's attacks; NaN if any is NaN (a NaN must fail a limit, not vanish)."""
    vals = [float(getter(a.metrics)) for a in model.attacks]
    if not vals:
        return None
    return math.nan if any(math.isnan(v) for v in vals) else max(vals)


def _auc(model: ModelAudit) -> float | None:
    return _max_metric(model, lambda m: m.auc)


def _tpr1(model: ModelAudit) -> float | None:
    return _max_metric(model, lambda m: m.tpr("0.01"))


def _claimed(model: ModelAudit) -> float:
    """Claimed ε (the accountant's); a model trained without DP claims nothing, which counts as ε = ∞."""
    if not model.dp:
        return math.inf
    v = model.training.epsilon
    if v is None:
        v = model.verdict.claimed_epsilon
    return math.nan if v is None else v


def _empirical(model: ModelAudit) -> float | None:
    """Best ε lower bound: the larger of the stored one and the one recomputed from the evidence."""
    best = evidence(model).best_lb
    stored = model.verdict.empirical_epsilon_lb
    vals = [v for v in (best, stored) if v is not None and not math.isnan(v)]
    return max(vals) if vals else None


def _at_most(name, description, model, metric, observed, limit) -> Rule:
    passed = observed is not None and not math.isnan(observed) and observed <= limit
    return Rule(name, description, model, metric, limit, observed, passed)


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return False
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def _claim_problem(m: ModelAudit) -> str | None:
    tr, v = m.training, m.verdict
    if m.dp != tr.dp:
        return f"dp is {m.dp} but training.dp is {tr.dp}"
    if not m.dp:
        if v.claimed_epsilon is not None:
            return f"a model without DP claims ε {fmt(v.claimed_epsilon, 4)}"
        if v.status != "no DP claim":
            return f"a model without DP has status {v.status!r}"
        return None
    if tr.epsilon is None or not (tr.epsilon > 0 and math.isfinite(tr.epsilon)):
        return f"training.epsilon is {fmt(tr.epsilon, 4)}, not a finite ε > 0"
    if not _close(v.claimed_epsilon, tr.epsilon):
        return f"verdict claims ε {fmt(v.claimed_epsilon, 4)} but the accountant spent {fmt(tr.epsilon, 4)}"
    return None


def _accountant_problem(m: ModelAudit) -> tuple[str, bool]:
    ac = m.accountant_check
    if ac is None and not m.training.observed:
        # Nothing to cross-check: the claim is the user's. `require_observed_training` fails this instead.
        return "skipped: training not observed, the claimed ε is the user's", True
    if ac is None:
        return "missing", False
    if ac.flagged:
        return f"flagged: {ac.note}", False
    if not _close(ac.opacus, m.training.epsilon, rel=1e-6):
        return (f"checked ε {fmt(ac.opacus, 4)}, not the claimed {fmt(m.training.epsilon, 4)}"), False
    if ac.reference == "none":
        return "not cross-checked (dp_accounting not installed)", True
    return f"agrees ({ac.reference}, rel. diff {fmt(ac.relative_difference, 4)})", True


# Configuration that changes the numbers: a baseline must match all of it. Left out on purpose: where the
# data was read from (data_dir, download), how the work was run (jobs, device, executor, cache_dir) and
# grad_sample_mode (same gradients, different speed).
COMPARABLE = {
    "dataset": ("name", "sha256", "n_records", "n_classes"),
    "split": ("seed", "n_test", "pool_size", "members", "n_models", "canaries", "canaries_in", "pool_sha256",
              "target_members_sha256"),
    "config": ("dataset", "members", "n_test", "epsilons", "delta", "model", "epochs", "batch_size", "lr",
               "momentum", "max_grad_norm", "accountant", "shadow_models", "attacks", "shadow_classifier",
               "shadow_per_class", "canaries", "gradient_canaries", "confidence", "n_boot", "seed", "recipes"),
}


def compatibility_problems(report: Report, baseline: Report) -> list[str]:
    """Every field, among those that change the numbers, where the two reports differ."""
    cur, old = report.to_json(), baseline.to_json()
    problems: list[str] = []

    def diff(path: str, a, b) -> None:
        if isinstance(a, dict) and isinstance(b, dict):  # name the leaf: config.recipes.dp.lr, not the block
            for k in sorted(set(a) | set(b)):
                diff(f"{path}.{k}", a.get(k), b.get(k))
        elif a != b:
            problems.append(f"{path} is {json.dumps(a)} here but {json.dumps(b)} in the baseline")

    for section, keys in COMPARABLE.items():
        for k in keys:
            diff(f"{section}.{k}", cur[section].get(k), old[section].get(k))
    return problems


def pair_models(report: Report | dict, baseline: Report | dict) -> list[tuple[ModelAudit, ModelAudit | None]]:
    """(baseline model, current model or None): by name first, then by position for the rest."""
    report, baseline = as_report(report), as_report(baseline)
    current = list(report.models)
    by_name = {m.name: m for m in current}
    used: set[int] = set()
    pairs: list[tuple[ModelAudit, ModelAudit | None]] = []
    pending: list[tuple[int, ModelAudit]] = []
    for old in baseline.models:
        cur = by_name.get(old.name)
        if cur is not None:
            used.add(id(cur))
            pairs.append((old, cur))
        else:
            pairs.append((old, None))
            pending.append((len(pairs) - 1, old))
    for pos, old in pending:
        cur = current[pos] if pos < len(current) else None
        if cur is not None and id(cur) not in used:
            used.add(id(cur))
            pairs[pos] = (old, cur)
    return pairs


def combined_confidence_problem(report: Report) -> tuple[str, bool]:
    """Recompute the report's α-spending from its configuration and re-run index: this run's α is
    α · 2^-(rerun+1) (dpaudit.core.bounds.alpha_share), the total is what earlier runs spent plus it, the combined
    confidence is 1 − total, and no DP verdict is held at less than this run's share split over the DP models.
    Returns (what was found, passed). A report written before the schedule has no record: it passes, saying so."""
    sp = report.alpha_spending
    if sp is None:
        return "not recorded (report predates α-spending: it spent all of α)", True
    alpha = 1.0 - float(report.config.confidence)
    rerun, before = sp.rerun, sp.alpha_spent_before
    if rerun < 0 or before < 0:
        return f"alpha_spending has rerun {rerun} and alpha_spent_before {before:g}", False
    if rerun == 0 and before != 0:
        return f"an original audit (rerun 0) records α {before:g} spent before it", False
    this = alpha * 2.0 ** -(rerun + 1)
    total = before + this
    combined = 1.0 - total
    for key, want in (("alpha_this_run", this), ("alpha_spent_total", total), ("combined_confidence", combined)):
        if not _close(getattr(sp, key), want, rel=1e-9):
            return f"{key} is {getattr(sp, key)!r}, recomputed {want:.6g}", False
    dp = [m for m in report.models if m.dp]
    for m in dp:
        if 1.0 - m.verdict.confidence > this / len(dp) * (1 + 1e-9):
            return (f"{m.name}'s verdict is held at {m.verdict.confidence:.6g}, below 1 − α_run/d = "
                    f"{1 - this / len(dp):.6g}"), False
    return f"{combined:.4g} (run {rerun}: α {this:.4g} of {alpha:.4g})", True


def _always_rules(m: ModelAudit) -> list[Rule]:
    """The rules no policy switches off: evidence, a claim that is the accountant's, a stored verdict the
    numbers agree with, and a clean accountant cross-check."""
    rules = []
    ev = evidence(m)
    if m.dp:
        n = len(m.bound_sources())
        rules.append(Rule("evidence_present", "a DP model has at least one attack, canary or white-box bound",
                          m.name, "pieces of evidence", ">= 1", n, n >= 1))
        rules.append(Rule("bounds_present", "no ε lower bound of a DP model is missing", m.name, "missing bounds",
                          "none", ", ".join(ev.missing) or "none", not ev.missing))
    problem = _claim_problem(m)
    rules.append(Rule("claim_consistent", "the verdict's claim is the accountant's ε", m.name, "claim",
                      "consistent", problem or "consistent", problem is None))
    stored = m.verdict.status
    ok = SEVERITY[stored] >= SEVERITY[ev.status]
    rules.append(Rule("verdict_recomputed", "the stored verdict is not softer than the one its numbers give",
                      m.name, "stored / recomputed status", f"at least {ev.status}", f"{stored} / {ev.status}", ok))
    if m.dp:
        observed, ok = _accountant_problem(m)
        rules.append(Rule("accountant_check", "the accountant cross-check is present, not flagged, and checks the "
                          "claimed ε", m.name, "dp_accounting cross-check", "present and not flagged", observed, ok))
    return rules


def evaluate_policy(report: Report | dict, policy: Policy, baseline: Report | dict | None = None, *,
                    verify: bool = True) -> list[Rule]:
    """Evaluate every rule of `policy`, the always-on rules (module docstring) and the baseline comparison
    on `report`; returns all rules.

    verify: first refuse (DPAuditError) a report or baseline whose numbers disagree with their evidence
    (:func:`dpaudit.check.recompute.verify_report`); False only to evaluate rules on a hand-made document.

    Absolute rules, per model: the largest AUC and the largest TPR at 1% FPR over the model's attacks, with
    separate limits for non-DP and DP models; the claimed ε of each DP model against max_epsilon; the
    effective verdict status against forbid_violation, forbid_inconclusive and allow_nonconformant; the test
    accuracy at least min_accuracy. A model with no attack results fails the attack rules (nothing was
    measured); a NaN fails every limit.

    Baseline (regression) rules. The two reports must audit the same data the same way: any difference in a
    field of :data:`COMPARABLE` (dataset, split, and the configuration that changes the numbers: ε values,
    δ, confidence, members, recipes, attacks, seed, ...) raises DPAuditError naming each field. Each baseline
    model is matched to a current model by name, else by position. For each pair, none of these may rise by
    more than `policy.tolerance` (absolute) over the baseline: the largest attack AUC, the largest TPR at 1%
    FPR, the best empirical ε lower bound and the claimed ε. A baseline model with no counterpart fails.
    """
    schemas = [x.get("schema") if isinstance(x, dict) else SCHEMA for x in (report, baseline)]
    report = as_report(report)
    baseline = as_report(baseline) if baseline is not None else None
    if baseline is not None:
        problems = compatibility_problems(report, baseline)
        if problems:
            raise DPAuditError("baseline is not comparable with this report: " + "; ".join(problems))
    if verify:
        verify_report(report, schemas[0])
        if baseline is not None:
            try:
                verify_report(baseline, schemas[1])
            except DPAuditError as exc:
                raise DPAuditError(f"baseline: {exc}") from None
    rules: list[Rule] = []
    models = report.models
    rules.append(Rule("evidence_models", "the report audits at least one model", None, "models", ">= 1",
                      len(models), len(models) >= 1))
    observed, ok = combined_confidence_problem(report)
    rules.append(Rule("confidence_recomputed", "the α spent on these models, recomputed from the fixed schedule, "
                      "matches the report", None, "combined confidence", "recomputed", observed, ok))
    for m in models:
        name, dp = m.name, m.dp
        kind = "dp" if dp else "non_dp"
        label = "DP" if dp else "non-DP"
        rules += _always_rules(m)
        if dp and policy.require_observed_training:
            rules.append(Rule("require_observed_training", "dpaudit observed the DP model's training", name,
                              "training", "observed", "observed" if m.training.observed else "not observed",
                              m.training.observed))
        lim = policy.max_auc_dp if dp else policy.max_auc_non_dp
        if lim is not None:
            rules.append(_at_most(f"max_auc_{kind}", f"largest attack AUC on a {label} model at most the limit",
                                  name, "max attack AUC", _auc(m), lim))
        lim = policy.max_tpr_at_1pct_fpr_dp if dp else policy.max_tpr_at_1pct_fpr_non_dp
        if lim is not None:
            rules.append(_at_most(f"max_tpr_at_1pct_fpr_{kind}",
                                  f"largest attack TPR at 1% FPR on a {label} model at most the limit",
                                  name, "max TPR@1%FPR", _tpr1(m), lim))
        if dp and policy.max_epsilon is not None:
            lim = (policy.max_epsilon.get(name) if isinstance(policy.max_epsilon, dict) else policy.max_epsilon)
            if lim is not None:
                rules.append(_at_most("max_epsilon", "claimed ε (accountant) at most the limit", name,
                                      "claimed ε", _claimed(m), lim))
        status = effective_status(m)
        if policy.forbid_violation:
            rules.append(Rule("forbid_violation", "no empirical ε lower bound above the claimed ε", name,
                              "verdict status", "not violation", status, status != "violation"))
        if policy.forbid_inconclusive and dp:
            rules.append(Rule("forbid_inconclusive", "the audit had the power to see a leak of 2× the claim "
                              "(detectable ε, measured)", name, "verdict status", "not inconclusive", status,
                              status != "inconclusive"))
        if not policy.allow_nonconformant:
            rules.append(Rule("nonconformant", "the training and data met the assumptions the bounds rely on", name,
                              "verdict status", "not nonconformant", status, status != "nonconformant"))
        if policy.min_accuracy is not None:
            acc = m.training.test_accuracy
            rules.append(Rule("min_accuracy", "test accuracy at least the limit", name, "test accuracy",
                              policy.min_accuracy, acc,
                              acc is not None and not math.isnan(acc) and acc >= policy.min_accuracy))
    if isinstance(policy.max_epsilon, dict):
        present = {m.name for m in models if m.dp}
        for name, lim in policy.max_epsilon.items():
            if name not in present:
                rules.append(Rule("max_epsilon", "policy names a DP model the report does not have", name,
                                  "claimed ε", lim, None, False))

    if baseline is not None:
        tol = policy.tolerance
        for old, cur in pair_models(report, baseline):
            if cur is None:
                rules.append(Rule("baseline_model_present", "every baseline model has a counterpart in the report",
                                  old.name, "counterpart", old.name, None, False))
                continue
            who = cur.name if cur.name == old.name else f"{cur.name} (baseline {old.name})"
            for rname, metric, get in (("baseline_auc", "max attack AUC", _auc),
                                       ("baseline_tpr_at_1pct_fpr", "max TPR@1%FPR", _tpr1),
                                       ("baseline_epsilon_lb", "empirical ε lower bound", _empirical),
                                       ("baseline_claimed_epsilon", "claimed ε", _claimed)):
                o, c = get(old), get(cur)
                if o is None or math.isnan(o):
                    continue  # nothing to regress from
                lim = o + tol
                passed = c is not None and not math.isnan(c) and (c <= lim or (math.isinf(c) and math.isinf(o)))
                rules.append(Rule(rname, f"{metric} at most the baseline's + tolerance {tol:g}", who, metric,
                                  lim, c, passed))
    return rules


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DPAuditError(f"the key {dup[:60]!r} appears twice in one object (a reader would see only one of them)")
    return dict(pairs)


def _no_constants(name):
    raise DPAuditError(f"{name} is not JSON (dpaudit writes null for a value not computed, \"inf\" for infinity)")


def read_report_strict(path: str | Path) -> Report:
    """A report file for the gate: :func:`dpaudit.report.load_report`'s checks, then the raw text once more,
    refusing what a lenient JSON reader hides (a key given twice, NaN or Infinity literals) and any schema
    but the current one (the only one whose numbers can all be recomputed)."""
    from dpaudit.report import load_report

    rep = load_report(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys,
                         parse_constant=_no_constants)
    except DPAuditError as exc:
        raise DPAuditError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DPAuditError(f"{path} is not readable JSON ({exc.__class__.__name__}); re-run the audit") from None
    if doc.get("schema") != SCHEMA:
        raise DPAuditError(f"{path}: schema {doc.get('schema')!r}: dpaudit check verifies {SCHEMA} reports only "
                           f"(older ones lack the ceilings and confidences it recomputes); re-run the audit")
    scores = scores_beside(path)
    if scores:
        try:
            verify_scores(rep, scores)
        except DPAuditError as exc:
            raise DPAuditError(f"{path}: {exc}") from None
    return rep


def scores_beside(path: str | Path) -> dict[tuple[str, str], tuple]:
    """The per-record scores `--save-scores` wrote beside a report (scores/<model>__<attack>.csv), if any."""
    from dpaudit.core.scores import read_scores_csv

    folder = Path(path).parent / "scores"
    out = {}
    if folder.is_dir():
        for f in sorted(folder.glob("*__*.csv")):
            name, _, what = f.stem.partition("__")
            out[(name, what)] = read_scores_csv(f)
    return out


# ---------------------------------------------------------------------------------------------------------
# Renderers


def _cell(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return fmt(x, 4)
    return str(x)


def _limit_cell(r: Rule) -> str:
    if isinstance(r.limit, (int, float)) and not isinstance(r.limit, bool):
        op = ">=" if r.name == "min_accuracy" else "<="
        return f"{op} {_cell(r.limit)}"
    if r.name == "baseline_model_present":
        return "present"
    return _cell(r.limit)


def rules_table(rules: list[Rule]) -> str:
    """Plain-text columns: rule, model, observed, limit, PASS/FAIL, then a one-line total."""
    headers = ["rule", "model", "observed", "limit", "result"]
    rows = [[r.name, r.model or "—", _cell(r.observed), _limit_cell(r), "PASS" if r.passed else "FAIL"]
            for r in rules]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows]
    failed = sum(not r.passed for r in rules)
    out.append("")
    out.append(f"{len(rules) - failed} of {len(rules)} rules pass" + (f"; {failed} FAIL" if failed else ""))
    return "\n".join(out)


def rules_json(rules: list[Rule], report_path: str | None = None, baseline_path: str | None = None) -> str:
    failed = sum(not r.passed for r in rules)
    doc = {"schema": "dpaudit.check/1", "report": report_path, "baseline": baseline_path,
           "passed": failed == 0, "n_rules": len(rules), "n_failed": failed,
           "rules": [asdict(r) for r in rules]}
    return json.dumps(jsonable(doc), indent=2, allow_nan=False)


def rules_junit_xml(rules: list[Rule]) -> str:
    """JUnit XML: one <testcase> per rule in <testsuite name="dpaudit.check">; failures carry a message."""
    failed = sum(not r.passed for r in rules)
    suite = ET.Element("testsuite", name="dpaudit.check", tests=str(len(rules)), failures=str(failed),
                       errors="0", skipped="0")
    for r in rules:
        case = ET.SubElement(suite, "testcase", classname=f"dpaudit.check.{r.name}",
                             name=f"{r.name}[{r.model or '-'}]")
        detail = f"{r.metric}: observed {_cell(r.observed)}, limit {_limit_cell(r)}"
        if r.passed:
            ET.SubElement(case, "system-out").text = detail
        else:
            fail = ET.SubElement(case, "failure", message=f"{r.description}: {detail}", type="PolicyViolation")
            fail.text = f"{r.model}: {r.description}\n{detail}"
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def rules_markdown(rules: list[Rule]) -> str:
    """A PR comment: headline, then a table of every rule."""
    failed = [r for r in rules if not r.passed]
    if failed:
        head = f"### :x: dpaudit check: {len(failed)} of {len(rules)} privacy rules FAIL"
    else:
        head = f"### :white_check_mark: dpaudit check: all {len(rules)} privacy rules pass"
    lines = [head, "", "| rule | model | metric | observed | limit | result |", "|---|---|---|---|---|---|"]
    for r in rules:
        res = "**FAIL**" if not r.passed else "PASS"
        lines.append(f"| {_md(r.name)} | {_md(r.model or '—')} | {_md(r.metric)} | {_md(_cell(r.observed))} | "
                     f"{_md(_limit_cell(r))} | {res} |")
    lines.append("")
    return "\n".join(lines)
