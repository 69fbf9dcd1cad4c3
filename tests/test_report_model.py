"""The typed report model: loading, validation with JSON paths, one spelling of inf/NaN, and renderers whose
sentences follow the numbers. Fast: a synthetic report, no training."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from dpaudit.errors import DPAuditError
from dpaudit.schema import SCHEMA, Report, as_report, effective_status, evidence

REFERENCE = Path(__file__).resolve().parent.parent / "reports" / "reference" / "report.json"
# The reference audit as the first release wrote it (dpaudit.report/1), kept to prove old reports still load.
REFERENCE_V1 = Path(__file__).resolve().parent / "data" / "report_v1.json"


# ------------------------------------------------------------------------------------- a synthetic report


def _attack(name: str, auc: float = 0.52, advantage: float = 0.02, lb: float = 0.0, ceiling: float | None = 3.0,
            counts: bool = False) -> dict:
    m = {
        "auc": auc, "auc_ci": [auc - 0.02, auc + 0.02], "threshold": -0.5,
        "threshold_source": "maximises balanced accuracy on 2 reference models' known members/non-members",
        # the rates are what the counts give (the report model derives them and refuses others)
        "counts": {"tp": 500, "fn": 375, "fp": 480, "tn": 395, "n_pos": 875, "n_neg": 875, "tpr": 500 / 875,
                   "fpr": 480 / 875, "advantage": 500 / 875 - 480 / 875,
                   "balanced_accuracy": (500 / 875 + 1 - 480 / 875) / 2},
        "advantage": advantage, "advantage_ci": [advantage - 0.03, advantage + 0.03],
        "balanced_accuracy": 0.5 + advantage / 2, "balanced_accuracy_ci": [0.49 + advantage / 2, 0.51 + advantage / 2],
        "tpr_at_fpr": {"0.001": 0.031, "0.01": 0.02, "0.1": 0.11},
        "roc_fpr": [0.0, 0.001, 0.01, 0.1, 1.0], "roc_tpr": [0.0, 0.031, 0.02, 0.11, 1.0],
        "n_members": 875, "n_nonmembers": 875, "bootstrap": {"n_boot": 200, "level": 0.95, "seed": 11},
        "tpr_at_fpr_counts": None,
    }
    if counts:
        m["tpr_at_fpr_counts"] = {"0.001": {"tp": 27, "n_pos": 875, "fp": 0, "n_neg": 875},
                                  "0.01": {"tp": 18, "n_pos": 875, "fp": 8, "n_neg": 875},
                                  "0.1": {"tp": 96, "n_pos": 875, "fp": 87, "n_neg": 875}}
    return {"attack": name, "description": f"{name} attack", "metrics": m,
            "epsilon_lb": {"value": lb, "method": "clopper_pearson", "threshold": -0.4,
                           "threshold_selection": "chosen on reference models' scores; applied once to the target",
                           "tp": 400, "n_pos": 875, "fp": 390, "n_neg": 875, "direction": "none", "delta": 1e-5,
                           "confidence": 0.975},
            "ceiling": ceiling, "details": {}, "detectable_epsilon": 1.8}


def _training(dp: bool, eps: float | None) -> dict:
    return {"model": "simple-cnn", "dp": dp, "target_epsilon": eps, "epsilon": eps,
            "epsilon_per_epoch": [eps / 2, eps] if dp else [], "delta": 1e-5 if dp else None,
            "noise_multiplier": 1.1 if dp else None, "sample_rate": 0.125, "steps": 20,
            "max_grad_norm": 1.0 if dp else None, "accountant": "prv" if dp else None,
            "grad_sample_mode": "hooks" if dp else None, "poisson_sampling_checked": dp, "epochs": 2,
            "batch_size": 256, "lr": 0.75, "momentum": 0.0, "n_train": 875, "train_accuracy": 0.8,
            "test_accuracy": 0.75, "train_loss": 0.9, "seed": 123, "wall_s": 1.5, "device": "cpu",
            "accounting_s": 0.1, "dpaudit_version": "0.1.0", "observed": True,
            "gradient_canaries": None}


def _verdict(claimed: float | None, lb: float, status: str, ceiling: float | None = 3.0) -> dict:
    return {"claimed_epsilon": claimed, "empirical_epsilon_lb": lb,
            "source": "none (no test rejected ε = 0)" if lb <= 0 else "loss attack",
            "ratio": None if claimed is None else lb / claimed, "status": status,
            "text": "no DP guarantee to check (trained without DP)" if claimed is None else status,
            "confidence": 0.95, "per_bound_confidence": 0.975, "n_bounds": 2,
            "correction": "Bonferroni: each of 2 bound(s) at 0.975, so the best holds at 0.95",
            "ceiling": ceiling, "could_detect": None if claimed is None or ceiling is None else ceiling > claimed,
            "family_confidence": None, "ceiling_source": None, "rejected_conformance": [],
            "canary_confidence": None, "detectable_epsilon": None if claimed is None else 1.8,
            "detectable_source": None if claimed is None else "loss attack", "power_multiple": 2.0,
            "power_method": None, "next_step": None}


def _model(name: str, eps: float | None, status: str) -> dict:
    dp = eps is not None
    return {
        "name": name, "dp": dp, "target_epsilon": eps, "training": _training(dp, eps),
        "reference_models": {"k": 2, "test_accuracy": [0.76, 0.77], "epsilon": [eps, eps], "seeds": [1, 2],
                             "cache_hits": 0, "n_train": None, "sample_rate": None, "steps": None},
        "accountant_check": None if not dp else {
            "opacus": eps, "accountant": "prv", "dp_accounting_pld": eps * 0.999, "dp_accounting_rdp": eps * 1.1,
            "reference": "pld", "relative_difference": 0.001, "flagged": False,
            "note": "agrees with dp_accounting pld within 2%"},
        "bounds": {"max_balanced_accuracy": 0.7294 if dp else 1.0, "max_advantage": 0.459 if dp else 1.0,
                   "delta": 1e-5},
        "attacks": [_attack("loss"), _attack("shadow", auc=0.51, counts=True)],
        "canary": None,
        "verdict": _verdict(eps, 0.0, status),
        "whitebox": None,
    }


def synthetic_report() -> dict:
    """A small, valid dpaudit.report/2 document: a non-DP model and a DP model with ε = 1, two attacks each."""
    return {
        "schema": SCHEMA, "created_utc": "2026-01-01T00:00:00Z", "command": "pytest synthetic",
        "versions": {"dpaudit": "0.1.0", "python": "3.11.7", "dp-accounting": None},
        "platform": {"machine": "x86_64", "cpus": 2, "workers": 1, "device": "cpu"},
        "config": {"dataset": "mnist-5k", "data_dir": None, "download": False, "members": 875, "n_test": 300,
                   "epsilons": ["inf", 1.0], "delta": 1e-5, "model": "simple-cnn", "epochs": None,
                   "batch_size": None, "lr": None, "momentum": None, "max_grad_norm": 1.0, "accountant": "prv",
                   "grad_sample_mode": "hooks", "shadow_models": 2, "attacks": ["loss", "shadow"],
                   "shadow_classifier": "gbm", "shadow_per_class": False, "canaries": 0, "confidence": 0.95,
                   "n_boot": 200, "seed": 7, "jobs": 1, "device": "cpu", "cache_dir": None,
                   "recipes": {"non_dp": {"epochs": 20, "batch_size": 128, "lr": 0.02, "momentum": 0.9},
                               "dp": {"epochs": 12, "batch_size": 256, "lr": 0.75, "momentum": 0.0}},
                   "executor": "local", "gradient_canaries": 0, "hidden": None, "label_column": None,
                   "categorical": []},
        "dataset": {"name": "mnist-5k", "source": "synthetic", "n_records": 5000, "n_classes": 10,
                    "sha256": "ab" * 32, "n_features": None, "preprocessing": None},
        "split": {"seed": 7, "n_test": 300, "pool_size": 1750, "members": 875, "n_models": 3, "canaries": 0,
                  "canaries_in": 0, "pool_sha256": "cd" * 8, "target_members_sha256": "ef" * 8},
        "threshold_policy": "Every attack threshold is chosen on the reference models.",
        "models": [_model("non-dp", None, "no DP claim"), _model("dp-eps1", 1.0, "consistent")],
        "timing_s": {"data": 0.1, "train": 10.0},
        "worker_s": {"non-dp": 5.0, "dp-eps1": 6.0},
        "family_correction": None,
        "observed_training": True,
        "alpha_spending": None,
    }


def with_change(doc: dict, path: str, value=None, delete: bool = False) -> dict:
    """A deep copy of ``doc`` with ``path`` ("models/1/verdict/status": list indexes as numbers) set to
    ``value``, or deleted."""
    doc = copy.deepcopy(doc)
    *head, last = path.split("/")
    node = doc
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        last = int(last)
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


# --------------------------------------------------------------------------------------------- loading


def test_reference_v1_report_loads_and_upgrades():
    doc = json.loads(REFERENCE_V1.read_text())
    assert doc["schema"] == "dpaudit.report/1"
    rep = Report.from_json(doc)
    assert [m.name for m in rep.models] == ["non-dp", "dp-eps8", "dp-eps1"]
    assert rep.config.epsilons[0] == math.inf and rep.config.executor == "local"
    eps8 = rep.model("dp-eps8")
    assert eps8.verdict.ceiling is None and eps8.verdict.could_detect is None and eps8.attacks[0].ceiling is None
    assert rep.family_correction is None and eps8.whitebox is None
    assert eps8.training.epsilon == pytest.approx(7.999547983928683)
    out = rep.to_json()
    assert out["schema"] == "dpaudit.report/2" and out["config"]["epsilons"][0] == "inf"
    assert set(out["models"][1]["verdict"]) >= {"ceiling", "could_detect", "family_confidence"}
    assert Report.from_json(out) == rep
    json.dumps(out, allow_nan=False)  # strict JSON


def test_synthetic_round_trip_is_exact():
    doc = synthetic_report()
    rep = Report.from_json(doc)
    assert rep.to_json() == doc
    assert Report.from_json(rep.to_json()) == rep
    assert as_report(rep) is rep and as_report(doc) == rep


def test_non_finite_numbers_have_one_spelling():
    doc = with_change(synthetic_report(), "models/1/attacks/0/metrics/auc_ci", [None, None])
    doc = with_change(doc, "models/1/attacks/0/ceiling", "inf")
    rep = Report.from_json(doc)
    ci = rep.models[1].attacks[0].metrics.auc_ci
    assert math.isnan(ci[0]) and math.isnan(ci[1])
    assert rep.models[1].attacks[0].ceiling == math.inf
    out = rep.to_json()
    assert out["models"][1]["attacks"][0]["metrics"]["auc_ci"] == [None, None]
    assert out["models"][1]["attacks"][0]["ceiling"] == "inf"


def test_cleaners_agree():
    import numpy as np

    from attacks.metrics import _plain
    from dpaudit.io import jsonable

    values = {"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1.5, "e": [np.float64(np.inf), np.float64(2.0)],
              "f": (np.int64(3), True, None, "x")}
    assert jsonable(values) == _plain(values) == {"a": "inf", "b": "-inf", "c": None, "d": 1.5, "e": ["inf", 2.0],
                                                  "f": [3, True, None, "x"]}


@pytest.mark.parametrize("path,value,delete,message", [
    ("models/1/verdict/status", None, True, "models[1].verdict.status missing"),
    ("models/0/attacks/1/metrics/auc", "high", False,
     "models[0].attacks[1].metrics.auc must be a number, got the string 'high'"),
    ("models/1/verdict/status", "VIOLATION", False, "models[1].verdict.status must be one of"),
    ("models/1/verdict/surprise", 1, False, "models[1].verdict.surprise is not a field of dpaudit.report/2"),
    ("models/1/verdict/ceiling", None, True, "models[1].verdict.ceiling missing"),
    ("models/1/dp", "yes", False, "models[1].dp must be true or false, got the string 'yes'"),
    ("models/0/training/steps", 2.5, False, "models[0].training.steps must be an integer, got a number"),
    ("models/0/attacks/0/metrics/auc_ci", [0.5], False, "models[0].attacks[0].metrics.auc_ci must be a list of 2"),
    ("models/0/attacks/0/metrics/tpr_at_fpr/0.01", None, True, "models[0].attacks[0].metrics.tpr_at_fpr.0.01 missing"),
    ("models", {}, False, "models must be a list, got an object"),
    ("models/1/name", "non-dp", False, "models[1].name 'non-dp' repeats models[0].name"),
    ("config/epsilons/1", "eight", False, "config.epsilons[1] must be a number, got the string 'eight'"),
    ("models/1/whitebox", {"m": "many"}, False, "models[1].whitebox.m must be an integer, got the string 'many'"),
])
def test_validation_names_the_json_path(path, value, delete, message):
    doc = with_change(synthetic_report(), path, value, delete)
    with pytest.raises(DPAuditError) as err:
        Report.from_json(doc)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text


def test_v1_gets_defaults_for_v2_fields_and_unknown_versions_are_named():
    doc = synthetic_report()
    doc["schema"] = "dpaudit.report/1"
    del doc["family_correction"]
    del doc["models"][1]["verdict"]["ceiling"]
    rep = Report.from_json(doc)
    assert rep.family_correction is None and rep.models[1].verdict.ceiling is None
    doc["schema"] = "dpaudit.report/9"
    with pytest.raises(DPAuditError, match=r"schema 'dpaudit.report/9' is not supported"):
        Report.from_json(doc)
    with pytest.raises(DPAuditError, match="schema missing"):
        Report.from_json({"models": []})


def test_load_report_names_the_file(tmp_path):
    from dpaudit.report import load_report

    p = tmp_path / "r.json"
    p.write_text(json.dumps(with_change(synthetic_report(), "models/0/verdict", None, True)))
    with pytest.raises(DPAuditError, match=r"r\.json: models\[0\]\.verdict missing"):
        load_report(p)


# ------------------------------------------------------------------------------------ derived verdicts


def test_status_is_recomputed_from_the_numbers():
    rep = Report.from_json(synthetic_report())
    dp = rep.model("dp-eps1")
    assert evidence(dp).status == "consistent" and effective_status(dp) == "consistent"
    # A stored "consistent" with a lower bound of 50 against a claim of 1 is a violation.
    doc = with_change(synthetic_report(), "models/1/attacks/0/epsilon_lb/value", 50.0)
    dp = Report.from_json(doc).model("dp-eps1")
    assert evidence(dp).status == "violation" and effective_status(dp) == "violation"
    # Every ceiling at or below the claim: nothing could have been shown.
    doc = with_change(synthetic_report(), "models/1/verdict/ceiling", 0.8)
    for i in (0, 1):
        doc = with_change(doc, f"models/1/attacks/{i}/ceiling", 0.8)
    dp = Report.from_json(doc).model("dp-eps1")
    assert evidence(dp).status == "inconclusive" and effective_status(dp) == "inconclusive"
    # A stored nonconformant is never softened.
    doc = with_change(synthetic_report(), "models/1/verdict/status", "nonconformant")
    assert effective_status(Report.from_json(doc).model("dp-eps1")) == "nonconformant"


# ------------------------------------------------------------------------------------ rendered wording


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """The wording tests read text only; drawing three PNGs per page would cost seconds each on 2 cores.
    tests/test_html.py renders the real figures."""
    import dpaudit.report.html

    monkeypatch.setattr(dpaudit.report.html, "_figures", lambda report: ("", ""))


def _render_all(doc: dict) -> tuple[str, str, str]:
    from dpaudit.report import render_markdown, text_summary
    from dpaudit.report.html import render_html

    return render_markdown(doc), render_html(doc), text_summary(doc)


def test_contradictory_advantage_is_called_out():
    """Advantage 0.700 against the 0.459 that ε = 1 allows must read "above", in every format."""
    doc = synthetic_report()
    for i, auc in ((0, 0.9), (1, 0.6)):
        doc = with_change(doc, f"models/1/attacks/{i}/metrics/auc", auc)
    doc = with_change(doc, "models/1/attacks/0/metrics/auc_ci", [0.88, 0.92])
    doc = with_change(doc, "models/1/attacks/0/metrics/advantage", 0.700)
    doc = with_change(doc, "models/1/attacks/0/metrics/advantage_ci", [0.66, 0.74])
    md, page, text = _render_all(doc)
    assert "Its advantage 0.700 is **above** the 0.459 that ε allows" in md
    assert "Its advantage 0.700 is <strong>above</strong> the 0.459 that ε allows" in page
    assert "Its advantage 0.700 is above the 0.459 that ε allows" in text
    for out in (md, page, text):
        assert "sits under the 0.459" not in out
    # The consistent case still says "under", so the test above can tell the two apart.
    md, page, text = _render_all(synthetic_report())
    for out in (md, page, text):
        assert "sits under the 0.459 that ε allows" in out and "above</strong> the 0.459" not in out


def test_stored_consistent_against_a_large_bound_reads_violation():
    doc = with_change(synthetic_report(), "models/1/attacks/0/epsilon_lb/value", 50.0)
    md, page, text = _render_all(doc)
    assert md.splitlines()[2].startswith("> **VIOLATION**") and "dp-eps1" in md.splitlines()[2]
    assert '<div id="verdict" class="violation"' in page
    assert "the numbers say violation" in text and "above the claimed ε 1.00" in text
    assert "Overall: VIOLATION" in text


def test_inconclusive_and_ceilings_rendered():
    doc = with_change(synthetic_report(), "models/1/verdict/ceiling", 0.8)
    doc = with_change(doc, "models/1/verdict/status", "inconclusive")
    doc = with_change(doc, "models/1/verdict/text", "inconclusive: no evidence could exceed ε = 0.8")
    for i in (0, 1):
        doc = with_change(doc, f"models/1/attacks/{i}/ceiling", 0.8)
    md, page, text = _render_all(doc)
    # every ceiling below the claim: whatever power a route states, it cannot refute the claim
    assert "> **Inconclusive**" in md and "no leak detectable" in md
    assert "**it could not have seen a leak**" in md
    assert '<div id="verdict" class="inconclusive"' in page and '<tr class="inconclusive">' in page
    assert "Overall: Inconclusive" in text
    # the ceiling column beside the bound, in the summary table
    row = next(line for line in md.splitlines() if line.startswith("| dp-eps1 | 1.00") and "| loss |" in line)
    assert "| 0.00 | 0.80 |" in row


def test_nonconformant_rendered():
    doc = with_change(synthetic_report(), "models/1/verdict/status", "nonconformant")
    doc = with_change(doc, "models/1/verdict/text", "nonconformant: membership was not a fair coin")
    md, page, text = _render_all(doc)
    assert "> **Nonconformant**: dp-eps1: nonconformant: membership was not a fair coin" in md
    assert '<div id="verdict" class="nonconformant"' in page
    assert "Overall: Nonconformant" in text


def test_tpr_at_low_fpr_with_counts():
    md, page, text = _render_all(synthetic_report())
    assert "TPR@0.1%FPR" in md and "TPR@1%FPR" in md
    shadow = [line for line in text.splitlines() if line.startswith("dp-eps1") and "shadow" in line][0]
    assert "0.031 (27/875)" in shadow and "0.020 (18/875)" in shadow
    loss = [line for line in text.splitlines() if line.startswith("dp-eps1") and " loss " in line][0]
    assert "0.031 (" not in loss and "0.031" in loss  # no counts recorded: the rate alone
    assert "0.031 (27/875)" in page


def test_a_foreign_whitebox_block_is_refused_in_one_line():
    """The white-box block is typed (schema.WhiteBoxAudit): a block of other keys is not rendered as a table of
    whatever it holds, it is refused where the report is read, naming the first key dpaudit does not write."""
    wb = {"method": "gradient canaries", "m": 100, "epsilon_lb": 0.4, "ceiling": 6.5, "dims": [1, 2]}
    doc = with_change(synthetic_report(), "models/1/whitebox", wb)
    with pytest.raises(DPAuditError, match=r"^models\[1\]\.whitebox\.method is not a field of dpaudit\.report/2"):
        Report.from_json(doc)
    with pytest.raises(DPAuditError, match=r"models\[1\]\.whitebox\.method is not a field"):
        _render_all(doc)


@pytest.mark.parametrize("folder", ["reference", "tutorial"])
def test_the_whitebox_block_round_trips_exactly(folder):
    """Typed and written again, a real white-box block (its routes' and tests' own keys kept in ``details``, the
    keys it leaves out still left out) is the block that was read, key for key and value for value."""
    from dpaudit.schema import WhiteBoxAudit, WhiteBoxRoute, WhiteBoxTest

    doc = json.loads((REFERENCE.parent.parent / folder / "report.json").read_text())
    rep = Report.from_json(doc)
    blocks = [(m, d) for m, d in zip(rep.models, doc["models"]) if d.get("whitebox") is not None]
    assert blocks
    for m, d in blocks:
        w = m.whitebox
        assert isinstance(w, WhiteBoxAudit) and all(isinstance(t, WhiteBoxTest) for t in w.tests)
        assert all(isinstance(r, WhiteBoxRoute) for r in w.routes) and w.detectable_power is not None
        assert w.to_json() == d["whitebox"]
        assert rep.to_json()["models"][rep.models.index(m)]["whitebox"] == d["whitebox"]
        # the routes' own numbers are kept beside the typed ones
        cp = next(r for r in w.routes if r.route == "clopper_pearson")
        assert {"threshold", "tp", "fp", "n_pos", "n_neg"} <= set(cp.details)
        assert ("white-box canaries", w.epsilon_lb, w.ceiling) in m.bound_sources()


def test_renderers_fail_loudly_on_a_missing_field():
    from dpaudit.report.html import render_html

    doc = with_change(synthetic_report(), "models/1/attacks/0/metrics/roc_fpr", None, True)
    with pytest.raises(DPAuditError, match=r"models\[1\]\.attacks\[0\]\.metrics\.roc_fpr missing"):
        render_html(doc)


def test_bootstrap_level_comes_from_the_report():
    doc = synthetic_report()
    for mi in (0, 1):
        for ai in (0, 1):
            doc = with_change(doc, f"models/{mi}/attacks/{ai}/metrics/bootstrap/level", 0.9)
    md, page, _ = _render_all(doc)
    assert "Intervals are 90% bootstrap intervals" in md and "95% bootstrap" not in md
    assert "Intervals are 90% bootstrap intervals" in page


def test_a_report_built_in_memory_is_validated_like_one_read_from_a_file():
    """core.plan.report_document validates the typed report it builds: a plug-in attack's details that are not
    JSON, or a path where a string belongs, are refused in one line, as report.json would be."""
    import dataclasses

    from dpaudit.schema import validate

    rep = Report.from_json(synthetic_report())
    validate(rep)  # a report that loads is valid
    m = rep.models[0]
    bad = dataclasses.replace(rep, models=(dataclasses.replace(
        m, attacks=(dataclasses.replace(m.attacks[0], details={"a": {1, 2}}),)),) + rep.models[1:])
    with pytest.raises(DPAuditError, match=r"models\[0\]\.attacks\[0\]\.details\.a must hold JSON values"):
        validate(bad)
    bad = dataclasses.replace(rep, config=dataclasses.replace(rep.config, cache_dir=Path("/tmp/x")))
    with pytest.raises(DPAuditError, match=r"config\.cache_dir must be a string"):
        validate(bad)


def test_model_cache_records_of_the_previous_layout_load():
    """A cached training record written before ``observed`` and ``gradient_canaries`` existed still loads (an
    observed training, no canaries), so an upgrade does not retrain every cached model."""
    from dpaudit.schema import TrainingRecord

    doc = json.loads(Path("reports/reference/report.json").read_text())["models"][1]["training"]
    for k in ("observed", "gradient_canaries", "accounting_s", "dpaudit_version"):
        doc.pop(k)
    rec = TrainingRecord.from_dict(doc)
    assert rec.observed is True and rec.gradient_canaries is None and rec.epsilon == doc["epsilon"]
    with pytest.raises(DPAuditError, match="training record.steps missing"):
        TrainingRecord.from_dict({k: v for k, v in doc.items() if k != "steps"})


def test_a_whitebox_block_that_detected_nothing_writes_its_null_factor():
    """Power measured and no noise factor detected: the detectable ε is "inf" and the factor is written as null (as
    dpaudit always wrote it), not left out as a block written before power existed leaves it."""
    from dpaudit.schema import WhiteBoxAudit

    doc = json.loads(REFERENCE.read_text())
    d = doc["models"][2]["whitebox"]
    d = {**d, "detectable_noise_factor": None, "detectable_epsilon": "inf",
         "detectable_power": {**d["detectable_power"], "rate": None, "rate_ci": None}}
    w = WhiteBoxAudit.from_dict(d)
    assert w.detectable_epsilon == math.inf and w.detectable_noise_factor is None
    out = w.to_json()
    assert "detectable_noise_factor" in out and out["detectable_noise_factor"] is None and out == d


def test_a_blocks_further_keys_never_shadow_its_fields():
    """REST keys are written beside the typed ones, so one named like a field would hide it or be read back as it:
    refused in one line, in memory (validate) and in a file (a key literally named "details")."""
    from dpaudit.schema import WhiteBoxTest, validate

    t = WhiteBoxTest(name="noise_std", statistic=1.0, p_value=0.5, passed=True, what="w", details={"broken": "x"})
    with pytest.raises(DPAuditError, match=r"details holds 'broken', a field of its own block"):
        validate(t)
    doc = json.loads(REFERENCE.read_text())
    doc["models"][2]["whitebox"]["tests"][0]["details"] = {"a": 1}
    with pytest.raises(DPAuditError, match=r"models\[2\]\.whitebox\.tests\[0\]\.details holds 'details'"):
        Report.from_json(doc)
