"""`dpaudit check`: a privacy-regression gate for CI, evaluated on a saved report.json.

A :class:`Policy` holds absolute limits (attack AUC, TPR at 1% FPR, claimed ε, test accuracy, no verdict
"violation"); :func:`evaluate_policy` turns it, and optionally a baseline report, into a list of
:class:`Rule` results. Exit status of the command: 0 all rules hold, 1 at least one fails, 2 usage error or
unreadable / foreign / incompatible input.
"""
from __future__ import annotations

import json
import math
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import DPAuditError
from .io import _clean
from .report import fmt, num


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


@dataclass
class Policy:
    """Limits a report must meet. None switches a limit off.

    max_auc_non_dp / max_auc_dp: the largest attack AUC allowed (0.5 = chance) over every attack on a non-DP /
    DP model. max_tpr_at_1pct_fpr_*: likewise for the TPR at 1% FPR. max_epsilon: the largest claimed ε of
    each DP model, one number for all or {model name: number}. min_accuracy: the lowest test accuracy of
    every model (fraction). forbid_violation: no model's verdict may be "violation". tolerance: how much
    (in each metric's own unit, absolute) a metric may rise over a baseline report.
    """
    max_auc_non_dp: float | None = None
    max_auc_dp: float | None = None
    max_tpr_at_1pct_fpr_non_dp: float | None = None
    max_tpr_at_1pct_fpr_dp: float | None = None
    max_epsilon: float | dict[str, float] | None = None
    min_accuracy: float | None = None
    forbid_violation: bool = True
    tolerance: float = 0.02

    @classmethod
    def from_dict(cls, data: dict, source: str = "policy") -> "Policy":
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise DPAuditError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        out = {}
        for key, value in data.items():
            if key == "forbid_violation":
                if not isinstance(value, bool):
                    raise DPAuditError(f"{source}: forbid_violation must be true or false, got {value!r}")
                out[key] = value
            elif key == "max_epsilon" and isinstance(value, dict):
                out[key] = {str(k): _number(v, f"{source}: max_epsilon.{k}") for k, v in value.items()}
            else:
                out[key] = _number(value, f"{source}: {key}")
        policy = cls(**out)
        policy.validate(source)
        return policy

    @classmethod
    def from_toml(cls, path: str | Path) -> "Policy":
        """Read limits from TOML: top-level keys, or a [policy] table (or both). Unknown keys are errors."""
        path = Path(path)
        if not path.is_file():
            raise DPAuditError(f"policy file {path} not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise DPAuditError(f"policy file {path} is not readable ({exc.__class__.__name__})") from None
        except tomllib.TOMLDecodeError as exc:
            raise DPAuditError(f"policy file {path} is not valid TOML ({exc})") from None
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
        if not self.tolerance >= 0:
            raise DPAuditError(f"{source}: tolerance must be >= 0, got {self.tolerance:g}")


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DPAuditError(f"{what} must be a number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _max_metric(model: dict, getter) -> float | None:
    vals = [num(getter(a["metrics"])) for a in model.get("attacks") or []]
    vals = [v for v in vals if not math.isnan(v)]
    return max(vals) if vals else None


def _auc(model: dict) -> float | None:
    return _max_metric(model, lambda m: m["auc"])


def _tpr1(model: dict) -> float | None:
    return _max_metric(model, lambda m: m["tpr_at_fpr"]["0.01"])


def _claimed(model: dict) -> float:
    """Claimed ε; a model trained without DP claims nothing, which counts as ε = ∞."""
    if not model.get("dp"):
        return math.inf
    v = model.get("verdict", {}).get("claimed_epsilon")
    if v is None:
        v = model["training"].get("epsilon")
    return math.inf if v is None else num(v)


def _empirical(model: dict) -> float | None:
    v = model.get("verdict", {}).get("empirical_epsilon_lb")
    if v is None:
        return None
    v = num(v)
    return None if math.isnan(v) else v


def _at_most(name, description, model, metric, observed, limit) -> Rule:
    passed = observed is not None and observed <= limit
    return Rule(name, description, model, metric, limit, observed, passed)


def _compatibility_problems(report: dict, baseline: dict) -> list[str]:
    problems = []
    for section, keys in (("dataset", ("name", "sha256")),
                          ("split", ("seed", "pool_sha256", "target_members_sha256", "members"))):
        cur, old = report.get(section) or {}, baseline.get(section) or {}
        for k in keys:
            if cur.get(k) != old.get(k):
                problems.append(f"{section}.{k} is {cur.get(k)!r} here but {old.get(k)!r} in the baseline")
    return problems


def pair_models(report: dict, baseline: dict) -> list[tuple[dict, dict | None]]:
    """(baseline model, current model or None): by name first, then by position for the rest."""
    current = report["models"]
    by_name = {m["name"]: m for m in current}
    used: set[int] = set()
    pairs: list[tuple[dict, dict | None]] = []
    pending: list[tuple[int, dict]] = []
    for old in baseline["models"]:
        cur = by_name.get(old["name"])
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


def evaluate_policy(report: dict, policy: Policy, baseline: dict | None = None) -> list[Rule]:
    """Evaluate every rule of `policy` (and the baseline comparison) on `report`; returns all rules.

    Absolute rules, per model: the largest AUC and the largest TPR at 1% FPR over the model's attacks, with
    separate limits for non-DP and DP models; the claimed ε of each DP model against max_epsilon; the
    verdict status must not be "violation" (forbid_violation); the test accuracy at least min_accuracy.
    A model with no attack results fails the attack rules (nothing was measured).

    Baseline (regression) rules. The two reports must audit the same data the same way: a different dataset
    name or sha256, or a different split (seed, pool_sha256, target_members_sha256, members) raises
    DPAuditError saying what differs. Each baseline model is matched to a current model by name; a baseline
    model whose name is not in the report is paired with the current model at the same position in
    report["models"] (if that model is not already matched). For each pair, none of these may rise by more
    than `policy.tolerance` (absolute, in the metric's own unit) over the baseline: the largest attack AUC,
    the largest TPR at 1% FPR, the best empirical ε lower bound (verdict.empirical_epsilon_lb) and the claimed
    ε. A non-DP model's claimed ε counts as infinite, so replacing a DP model by a non-DP one fails, as does
    a larger ε. A baseline model with no counterpart at all is a failed rule. Models new in the report are
    not compared (the absolute rules still apply to them).
    """
    rules: list[Rule] = []
    models = report["models"]
    for m in models:
        name, dp = m["name"], bool(m.get("dp"))
        kind = "dp" if dp else "non_dp"
        label = "DP" if dp else "non-DP"
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
        if policy.forbid_violation:
            status = m.get("verdict", {}).get("status")
            rules.append(Rule("forbid_violation", "no empirical ε lower bound above the claimed ε", name,
                              "verdict status", "not violation", status, status != "violation"))
        if policy.min_accuracy is not None:
            acc = m["training"].get("test_accuracy")
            acc = None if acc is None else num(acc)
            rules.append(Rule("min_accuracy", "test accuracy at least the limit", name, "test accuracy",
                              policy.min_accuracy, acc, acc is not None and acc >= policy.min_accuracy))
    if isinstance(policy.max_epsilon, dict):
        present = {m["name"] for m in models if m.get("dp")}
        for name, lim in policy.max_epsilon.items():
            if name not in present:
                rules.append(Rule("max_epsilon", "policy names a DP model the report does not have", name,
                                  "claimed ε", lim, None, False))

    if baseline is not None:
        problems = _compatibility_problems(report, baseline)
        if problems:
            raise DPAuditError("baseline is not comparable with this report: " + "; ".join(problems))
        tol = policy.tolerance
        for old, cur in pair_models(report, baseline):
            if cur is None:
                rules.append(Rule("baseline_model_present", "every baseline model has a counterpart in the report",
                                  old["name"], "counterpart", old["name"], None, False))
                continue
            who = cur["name"] if cur["name"] == old["name"] else f"{cur['name']} (baseline {old['name']})"
            for rname, metric, get in (("baseline_auc", "max attack AUC", _auc),
                                       ("baseline_tpr_at_1pct_fpr", "max TPR@1%FPR", _tpr1),
                                       ("baseline_epsilon_lb", "empirical ε lower bound", _empirical),
                                       ("baseline_claimed_epsilon", "claimed ε", _claimed)):
                o, c = get(old), get(cur)
                if o is None:
                    continue  # nothing to regress from
                lim = o + tol
                passed = c is not None and (c <= lim or (math.isinf(c) and math.isinf(o)))
                rules.append(Rule(rname, f"{metric} at most the baseline's + tolerance {tol:g}", who, metric,
                                  lim, c, passed))
    return rules


# ---------------------------------------------------------------------------------------------------------
# Renderers


def _cell(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, float)):
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
    return json.dumps(_clean(doc), indent=2, allow_nan=False)


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
