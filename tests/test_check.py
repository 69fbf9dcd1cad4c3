"""`dpaudit check`: the CI privacy-regression gate, on real audit reports."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from dpaudit.check import Policy, Rule, evaluate_policy, pair_models, rules_junit_xml, rules_markdown
from dpaudit.cli import main
from dpaudit.errors import DPAuditError
from dpaudit.io import atomic_write_json


def run_check(*args):
    return CliRunner().invoke(main, ["check", *map(str, args)])


def write(tmp_path, name, report):
    path = tmp_path / name
    atomic_write_json(path, report)
    return path


# ------------------------------------------------------------------------------------------- exit codes


def test_passes_on_real_report(small_report_path):
    res = run_check(small_report_path, "--max-auc", 0.99, "--min-accuracy", 0.05)
    assert res.exit_code == 0, res.output
    assert "FAIL" not in res.output
    assert "forbid_violation" in res.output and "max_auc_dp" in res.output


def test_stored_status_is_not_trusted(small_report, tmp_path):
    """A real report whose best bound is raised above the claim but whose status still says "consistent": the
    bound disagrees with its own counts, so the gate refuses the report (exit 2); the rules alone (on a document
    not verified) fail it too."""
    dp = small_report["models"][1]
    assert dp["verdict"]["status"] in ("consistent", "inconclusive")
    dp["attacks"][0]["epsilon_lb"]["value"] = 50.0
    res = run_check(write(tmp_path, "r.json", small_report), "--format", "json")
    assert res.exit_code == 2, res.output
    assert "models[1].attacks[0].epsilon_lb.value is 50 but Clopper-Pearson on its counts" in res.stderr
    failed = {(r.name, r.model) for r in evaluate_policy(small_report, Policy(), verify=False) if not r.passed}
    assert failed == {("verdict_recomputed", "dp-eps2"), ("forbid_violation", "dp-eps2")}


def test_real_report_passes_every_always_on_rule(small_report_path):
    rules = evaluate_policy(json.loads(small_report_path.read_text()), Policy(forbid_violation=False,
                                                                              allow_nonconformant=True))
    names = [r.name for r in rules]
    assert names.count("accountant_check") == 1 and names.count("claim_consistent") == 2
    assert all(r.passed for r in rules), [r for r in rules if not r.passed]


def test_violation_fails(small_report, tmp_path):
    small_report["models"][1]["verdict"]["status"] = "violation"
    res = run_check(write(tmp_path, "r.json", small_report))
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output
    # --allow-violation switches the rule off
    assert run_check(tmp_path / "r.json", "--allow-violation").exit_code == 0


def test_raised_auc_fails(small_report, small_report_path, tmp_path):
    dp = next(m for m in small_report["models"] if m["dp"])
    top = max(a["metrics"]["auc"] for a in dp["attacks"])
    assert run_check(small_report_path, "--max-auc", top - 1e-3).exit_code == 1
    assert run_check(small_report_path, "--max-auc", top + 1e-3).exit_code == 0
    dp["attacks"][0]["metrics"]["auc"] = 0.93  # beyond what its stored ROC curve allows: refused, not measured
    path = write(tmp_path, "r.json", small_report)
    res = run_check(path, "--max-auc", 0.95)
    assert res.exit_code == 2 and "metrics.auc is 0.93 but its stored ROC curve allows only" in res.stderr
    rules = evaluate_policy(small_report, Policy(max_auc_dp=0.8), verify=False)
    assert [r.observed for r in rules if r.name == "max_auc_dp" and not r.passed] == [0.93]


def test_non_dp_limits_from_policy_file(small_report_path, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text("[policy]\nmax_auc_non_dp = 0.01\nmax_tpr_at_1pct_fpr_non_dp = 1.0\n")
    res = run_check(small_report_path, "--policy", pol)
    assert res.exit_code == 1
    assert "max_auc_non_dp" in res.output and "non-dp" in res.output


def test_flags_override_policy_file(small_report_path, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text("max_epsilon = 0.5\nmin_accuracy = 0.0\n")
    assert run_check(small_report_path, "--policy", pol).exit_code == 1
    assert run_check(small_report_path, "--policy", pol, "--max-epsilon", 100).exit_code == 0


def test_max_epsilon_per_model(small_report_path, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text('[policy.max_epsilon]\n"dp-eps2" = 2.5\n')
    assert run_check(small_report_path, "--policy", pol).exit_code == 0
    pol.write_text('[policy.max_epsilon]\n"dp-eps2" = 1.0\n')
    assert run_check(small_report_path, "--policy", pol).exit_code == 1
    pol.write_text('[policy.max_epsilon]\n"dp-eps99" = 100.0\n')  # names a model that is not there
    assert run_check(small_report_path, "--policy", pol).exit_code == 1


def test_missing_file_exits_2(tmp_path):
    res = run_check(tmp_path / "nope.json")
    assert res.exit_code == 2
    assert "not found" in res.output and "Traceback" not in res.output


def test_non_json_exits_2(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("this is not json {")
    res = run_check(p)
    assert res.exit_code == 2 and "not readable JSON" in res.output


def test_foreign_schema_exits_2(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"schema": "someone.else/3", "models": []}))
    res = run_check(p)
    assert res.exit_code == 2 and "not a dpaudit report" in res.output


def test_unknown_policy_key_exits_2(small_report_path, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text("max_auc_dp = 0.6\nmax_acu_non_dp = 0.7\n")
    res = run_check(small_report_path, "--policy", pol)
    assert res.exit_code == 2
    assert "max_acu_non_dp" in res.output and res.output.count("\n") == 1


def test_bad_policy_values_exit_2(small_report_path, tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text("[policy]\nmax_auc_dp = 'high'\n")
    assert run_check(small_report_path, "--policy", pol).exit_code == 2
    pol.write_text("max_auc_dp = [\n")
    assert run_check(small_report_path, "--policy", pol).exit_code == 2
    assert run_check(small_report_path, "--policy", tmp_path / "none.toml").exit_code == 2
    assert run_check(small_report_path, "--max-auc", 1.5).exit_code == 2
    assert run_check(small_report_path, "--format", "yaml").exit_code == 2  # click usage error


def test_example_policy_loads():
    from pathlib import Path

    pol = Policy.from_toml(Path(__file__).resolve().parent.parent / "examples" / "policy.toml")
    assert pol.max_auc_dp == 0.6 and pol.forbid_violation is True and pol.max_epsilon == 8.5
    assert pol.forbid_inconclusive is False and pol.allow_nonconformant is False


# --------------------------------------------------------------------------------------------- baseline


def test_same_report_as_baseline_passes(small_report_path):
    res = run_check(small_report_path, "--baseline", small_report_path)
    assert res.exit_code == 0, res.output
    assert "baseline_claimed_epsilon" in res.output and "baseline_auc" in res.output


def test_other_epsilons_refused_as_baseline(small_report, small_report_path, tmp_path):
    """A baseline of ε = 8 against a report of ε = 2 is not a regression test: refused, naming the field."""
    small_report["config"]["epsilons"] = ["inf", 8.0]
    other = write(tmp_path, "eps8.json", small_report)
    res = run_check(small_report_path, "--baseline", other)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "config.epsilons is [\"inf\", 2.0] here but [\"inf\", 8.0]" in res.stderr


def test_larger_claimed_epsilon_fails_against_baseline(small_report, small_report_path, tmp_path):
    """Same configuration, but the accountant now reports a larger ε (say a changed accountant)."""
    dp = small_report["models"][1]
    eps = dp["training"]["epsilon"] + 0.5
    dp["training"]["epsilon"] = dp["verdict"]["claimed_epsilon"] = dp["accountant_check"]["opacus"] = eps
    path = write(tmp_path, "r.json", small_report)
    baseline = json.loads(small_report_path.read_text())
    failed = {(r.name, r.model) for r in evaluate_policy(small_report, Policy(), baseline, verify=False)
              if not r.passed}
    assert failed == {("baseline_claimed_epsilon", "dp-eps2")}
    # The other way round (smaller ε than the baseline) passes.
    assert all(r.passed for r in evaluate_policy(baseline, Policy(), small_report, verify=False))
    # Through the gate, an ε edited by hand disagrees with the rest of the record: bad input, either way round.
    assert run_check(path, "--baseline", small_report_path).exit_code == 2
    res = run_check(small_report_path, "--baseline", path)
    assert res.exit_code == 2 and res.stderr.startswith("dpaudit: error: baseline: "), res.output


def test_baseline_model_without_counterpart_fails(small_report, small_report_path, tmp_path):
    extra = copy.deepcopy(small_report["models"][1])
    extra["name"] = "dp-eps2-old"
    small_report["models"].append(extra)
    baseline = write(tmp_path, "b.json", small_report)
    failed = [r for r in evaluate_policy(json.loads(small_report_path.read_text()), Policy(), small_report,
                                         verify=False) if not r.passed]
    assert [(r.name, r.model) for r in failed] == [("baseline_model_present", "dp-eps2-old")]
    # A model its configuration does not list makes the baseline bad input for the gate.
    res = run_check(small_report_path, "--baseline", baseline)
    assert res.exit_code == 2 and "config.epsilons lists 2" in res.stderr, res.output


def test_dp_replaced_by_non_dp_at_same_position_fails(small_report, small_audit):
    baseline = small_audit[0]
    cur = small_report
    cur["models"][1] = copy.deepcopy(cur["models"][0])
    cur["models"][1]["name"] = "non-dp-2"
    pairs = pair_models(cur, baseline)
    assert [(o.name, c.name) for o, c in pairs] == [("non-dp", "non-dp"), ("dp-eps2", "non-dp-2")]
    rules = evaluate_policy(cur, Policy(), baseline, verify=False)
    claimed = [r for r in rules if r.name == "baseline_claimed_epsilon" and "non-dp-2" in r.model]
    assert len(claimed) == 1 and not claimed[0].passed and claimed[0].observed == math.inf


def test_tolerance(small_report, small_audit):
    baseline = small_audit[0]
    dp = small_report["models"][1]
    dp["attacks"][0]["metrics"]["auc"] = max(a["metrics"]["auc"] for a in dp["attacks"]) + 0.03
    assert not all(r.passed for r in evaluate_policy(small_report, Policy(tolerance=0.02), baseline, verify=False))
    assert all(r.passed for r in evaluate_policy(small_report, Policy(tolerance=0.05), baseline, verify=False))


@pytest.mark.parametrize("section,key,value", [("dataset", "sha256", "0" * 64), ("dataset", "name", "cifar"),
                                               ("split", "seed", 12345), ("split", "pool_sha256", "ffff"),
                                               ("split", "members", 1)])
def test_incompatible_baseline_exits_2(small_report, small_report_path, tmp_path, section, key, value):
    small_report[section][key] = value
    other = write(tmp_path, "other.json", small_report)
    res = run_check(small_report_path, "--baseline", other)
    assert res.exit_code == 2, res.output
    assert f"{section}.{key}" in res.output and "not comparable" in res.output
    with pytest.raises(DPAuditError, match=f"{section}.{key}"):
        evaluate_policy(small_report, Policy(), json.loads(small_report_path.read_text()))


# -------------------------------------------------------------------------------------------- renderers


def test_unwritable_junit_exits_2_and_writes_nothing(small_report_path, tmp_path):
    (tmp_path / "j.xml").mkdir()
    md = tmp_path / "c.md"
    res = run_check(small_report_path, "--markdown", md, "--junit-xml", tmp_path / "j.xml")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "--junit-xml" in res.stderr
    assert "Traceback" not in res.output and not md.exists()


def test_junit_xml(small_report, tmp_path):
    small_report["models"][1]["verdict"]["status"] = "violation"
    path = write(tmp_path, "r.json", small_report)
    junit = tmp_path / "out" / "junit.xml"
    res = run_check(path, "--max-auc", 0.99, "--junit-xml", junit)
    assert res.exit_code == 1
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("name") == "dpaudit.check"
    cases = suite.findall("testcase")
    rules = evaluate_policy(small_report, Policy(max_auc_dp=0.99))
    assert len(cases) == len(rules) == int(suite.get("tests"))
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 1 == int(suite.get("failures"))
    assert "forbid_violation" in failures[0].get("name") and failures[0].find("failure").get("message")


def test_json_format(small_report_path):
    res = run_check(small_report_path, "--format", "json", "--max-auc", 0.99)
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc["passed"] is True and doc["n_failed"] == 0 and doc["n_rules"] == len(doc["rules"])
    assert {"name", "description", "model", "metric", "limit", "observed", "passed"} <= set(doc["rules"][0])


def test_markdown_written(small_report_path, tmp_path):
    md = tmp_path / "comment.md"
    res = run_check(small_report_path, "--markdown", md, "--max-auc", 0.99)
    assert res.exit_code == 0
    text = md.read_text()
    assert text.startswith("### ") and "all" in text.splitlines()[0] and "| rule |" in text
    failing = rules_markdown([Rule("max_auc_dp", "d", "m|x", "AUC", 0.5, 0.9, False)])
    assert "FAIL" in failing.splitlines()[0] and "m\\|x" in failing


def test_junit_escapes_special_characters():
    xml = rules_junit_xml([Rule("r", 'quote " & <tag>', "m<1>", "metric", 0.5, 0.7, False)])
    root = ET.fromstring(xml.split("\n", 1)[1])
    assert root.find("testcase/failure").get("message").startswith('quote " & <tag>')


@pytest.mark.parametrize("rerun", [0, 1, 3])
@pytest.mark.parametrize("canaries, gradient_canaries, attacks", [(500, 1000, ("loss", "lira")), (0, 1000, ()),
                                                                  (50, 0, ("loss",)), (0, 0, ("loss", "rmia"))])
def test_recomputed_plan_is_the_pipelines(rerun, canaries, gradient_canaries, attacks):
    """The gate's own plan of confidences (dpaudit.check.recompute.plan_confidences, written apart so that it checks
    rather than repeats) agrees with the one the audit computes its bounds at (dpaudit.core.plan.bound_confidence),
    for every mix of evidence and each place on the α-spending schedule; and the white-box routes it counts are
    those of its route table (one confidence share per bound, one for the conformance tests)."""
    from dataclasses import replace

    from dpaudit.check.recompute import WHITEBOX_ROUTE_COUNT, WHITEBOX_ROUTES, plan_confidences, run_confidence
    from dpaudit.config import AuditConfig
    from dpaudit.core.plan import bound_confidence
    from dpaudit.core.plan import run_confidence as pipeline_run_confidence

    assert WHITEBOX_ROUTE_COUNT == len(WHITEBOX_ROUTES) + 1 == 3
    cfg = replace(AuditConfig(), epsilons=(math.inf, 8.0, 1.0), canaries=canaries,
                  gradient_canaries=gradient_canaries, attacks=attacks)
    assert run_confidence(cfg, rerun) == pytest.approx(pipeline_run_confidence(cfg, rerun), rel=1e-12)
    for dp in (True, False):
        mine, theirs = plan_confidences(cfg, dp, rerun), bound_confidence(cfg, dp=dp, rerun=rerun)
        assert mine["per_model"] == pytest.approx(theirs.per_model, rel=1e-12)
        assert mine["attack"] == pytest.approx(theirs.attack, rel=1e-12)
        assert mine["canary"] == pytest.approx(theirs.canary, rel=1e-12)
        assert (mine["n_bounds"], mine["n_attacks"]) == (theirs.n_bounds, theirs.n_attacks)


def test_alpha_spending_of_a_rerun_verifies_and_an_understated_one_does_not():
    """The α-spending record is recomputed from the schedule (dpaudit.core.plan.alpha_spending writes it): a
    re-run's record as the audit writes it passes; one that says the earlier runs spent less than the schedule
    gave them, or that claims a larger combined confidence, is refused."""
    from types import SimpleNamespace as NS

    from dpaudit.check.recompute import check_alpha_spending
    from dpaudit.config import AuditConfig
    from dpaudit.core.plan import alpha_spending

    cfg = AuditConfig()
    for rerun in (0, 1, 4):
        sp = alpha_spending(cfg, rerun)
        assert check_alpha_spending(NS(alpha_spending=sp, config=cfg)) == rerun
    sp = alpha_spending(cfg, 2, spent_before=0.05)  # re-run of a report written before the schedule: all of α spent
    assert check_alpha_spending(NS(alpha_spending=sp, config=cfg)) == 2
    low = alpha_spending(cfg, 2, spent_before=0.01)
    with pytest.raises(DPAuditError, match="alpha_spent_before is 0.01 but the 2 run"):
        check_alpha_spending(NS(alpha_spending=low, config=cfg))
    high = dataclasses.replace(alpha_spending(cfg, 1), combined_confidence=0.99)
    with pytest.raises(DPAuditError, match="alpha_spending.combined_confidence is 0.99"):
        check_alpha_spending(NS(alpha_spending=high, config=cfg))
