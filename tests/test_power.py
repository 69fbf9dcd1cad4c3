"""Measured power: the detectable ε of each route is what the route really achieves, verdicts follow it, and the
texts state the numbers the report holds."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from dpaudit.core import bounds as B
from dpaudit.core import power as P

DELTA = 1e-5


def test_gdp_relation_matches_the_issues_figures():
    # the issue's leak table: μ 0.75, 1 and 2 are true ε 3.15, 4.38 and 10.0 at δ = 1e-5
    for mu, eps in ((0.75, 3.15), (1.0, 4.38), (2.0, 10.0)):
        assert P.gdp_epsilon(mu, DELTA) == pytest.approx(eps, abs=0.005)
        assert P.gdp_mu(P.gdp_epsilon(mu, DELTA), DELTA) == pytest.approx(mu, rel=1e-6)
    # more leakage, more ε
    assert P.gdp_epsilon(0.5, DELTA) < P.gdp_epsilon(0.6, DELTA)


def test_bisection_finds_an_analytic_threshold_and_reports_inf_beyond_reach():
    # refuted iff eps + N(0, 1) > 3: power 80% at eps = 3 + z_0.8 = 3.84
    sim = lambda eps, rng, n: eps + rng.standard_normal(n) > 3.0  # noqa: E731
    assert P.detectable_epsilon(sim, 1.0, n_sims=4000) == pytest.approx(3.0 + 0.8416, abs=0.12)
    never = lambda eps, rng, n: np.zeros(n, bool)  # noqa: E731
    assert P.detectable_epsilon(never, 1.0) == math.inf


def _power_at(sim, eps, n, seed):
    return float(np.mean(sim(eps, np.random.default_rng([seed, 99]), n)))


def test_stated_power_holds_on_fresh_simulations_cp_and_one_run():
    # The detectable ε is bisected with one seed; on other seeds the power at it is ~80%, and at 70% of it
    # clearly less: the figure is neither inflated nor deflated.
    cp = P.cp_simulator(1000, 1000, DELTA, 0.9875)
    det = P.detectable_epsilon_cp(1.0, 1000, 1000, DELTA, 0.9875)
    refuted = lambda eps, rng, n: cp(eps, rng, n) > 1.0  # noqa: E731
    assert _power_at(refuted, det, 2000, 1) == pytest.approx(0.8, abs=0.05)
    assert _power_at(refuted, 0.7 * det, 2000, 1) < 0.6
    one = P.one_run_simulator(1000, 500, DELTA, 0.9875, 1.0)
    det1 = P.detectable_epsilon_one_run(1.0, 1000, 500, DELTA, 0.9875)
    assert _power_at(one, det1, 1000, 2) == pytest.approx(0.8, abs=0.06)
    assert _power_at(one, 0.7 * det1, 1000, 2) < 0.6
    # a larger audit detects a smaller ε; a biased share (800 of 1,000 in) costs the balanced test power
    assert P.detectable_epsilon_cp(1.0, 3000, 3000, DELTA, 0.9875) < det
    assert P.detectable_epsilon_one_run(1.0, 1000, 800, DELTA, 0.9875) > det1


def test_one_run_simulator_decides_exactly_as_the_bound():
    # the simulator's "refuted" is the real bound's "bound > claim", on the same scores
    m, n_in, conf, claim = 400, 200, 0.975, 1.0
    mu = P.gdp_mu(4.0, DELTA)
    y = np.zeros(m, bool)
    y[:n_in] = True
    sim = P.one_run_simulator(m, n_in, DELTA, conf, claim)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        refuted = bool(sim(4.0, rng, 1)[0])
        s = np.random.default_rng(seed).standard_normal((1, m))[0] + mu * y  # the same draw
        bound = B.one_run_audit_balanced(s, y, DELTA, conf).epsilon_lb
        assert refuted == (bound > claim), (seed, bound)


def test_cp_simulator_bound_is_the_fixed_threshold_bound():
    # the simulated bound is the Clopper-Pearson bound of the real function at the model's threshold
    rng = np.random.default_rng(5)
    mu = P.gdp_mu(5.0, DELTA)
    t = P._model_threshold(mu, 500, 500, DELTA, 0.99)
    y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    s = rng.standard_normal(1000) + mu * y
    lb = B.fixed_threshold_epsilon_lb(s, y, t, DELTA, 0.99)
    vec = B.epsilon_lb_clopper_pearson_counts(np.array([lb.tp]), 500, np.array([lb.fp]), 500, DELTA, 0.99)
    assert vec[0] == pytest.approx(lb.value)


def _wb_template(m=200, steps=40, spe=10, sigma=1.2, q=0.05, claim=1.0, seed=0):
    from dpaudit.core.whitebox import synthetic_observations

    return synthetic_observations(m, steps, spe, sigma, q, seed=seed, claimed_epsilon=claim)


@pytest.mark.slow  # six white-box analyses (~0.2 s each)
def test_whitebox_simulated_decision_is_the_audits_verdict():
    # the power simulation's decision on a simulated run is exactly what the audit decides on those observations:
    # analyse's result read by the verdict rule (nonconformant, or a valid white-box bound above the claim)
    from dpaudit.core.whitebox import analyse
    from dpaudit.schema import Status, verdict_status

    seen = set()
    for claim, factor in ((50.0, 1.0), (0.02, 1.0), (50.0, 0.6)):
        tpl = _wb_template(sigma=0.6, q=0.2, claim=claim)
        decide = P.whitebox_simulator(tpl, confidence=0.95, analysis_seed=11, seed=3)
        for i in range(1):
            w = P.simulated_observations(tpl, factor, i, seed=3)
            r = analyse(w, confidence=0.95, seed=11, empirical=False)
            best = max(x.epsilon_lb for x in r.routes if x.valid)
            status = verdict_status(claimed=claim, best=best, detectable=None, nonconformant=not r.conformant)
            refuted = status in (Status.VIOLATION, Status.NONCONFORMANT)
            assert decide(factor, i) == P.whitebox_detected(r) == refuted, (claim, factor, i, status)
            seen.add(status)
    # every branch of the rule was exercised: not refuted, refuted by a bound, refuted by conformance
    assert {Status.VIOLATION, Status.NONCONFORMANT} <= seen and (seen - {Status.VIOLATION, Status.NONCONFORMANT})


def test_whitebox_simulated_observations_are_the_claimed_mechanism_at_the_runs_shapes():
    tpl = _wb_template(m=1000, steps=60, spe=12, sigma=1.5, q=0.1)
    a = P.simulated_observations(tpl, 0.8, 5, seed=2)
    b = P.simulated_observations(tpl, 0.9, 5, seed=2)
    c = P.simulated_observations(tpl, 0.8, 6, seed=2)
    # the run's own canaries, coins, steps and epochs
    assert a.obs.shape == tpl.obs.shape and np.array_equal(a.coins, tpl.coins)
    assert np.array_equal(a.epoch_of_step, tpl.epoch_of_step) and a.n_param_updates == a.steps_accounted == 60
    assert (a.noise_multiplier, a.sample_rate, a.claimed_epsilon) == (1.5, 0.1, 1.0)
    # excluded canaries: noise of std f σ C only; included: mean q C (bounds at 5 standard errors)
    out = a.obs[:, ~a.coins]
    assert np.std(out) == pytest.approx(0.8 * 1.5, rel=0.02) and abs(np.mean(out)) < 0.035
    assert np.mean(a.obs[:, a.coins]) == pytest.approx(0.1, abs=0.045)
    # common random numbers: the same run at two factors differs only by the noise's scale; another run differs
    drawn = np.rint(a.obs - (a.obs - b.obs) / (0.8 - 0.9) * 0.8)  # obs = drawn + f z  ->  drawn
    assert set(np.unique(drawn)) <= {0.0, 1.0} and not np.any(drawn[:, ~a.coins])
    assert not np.allclose(a.obs, c.obs)
    # the final-model view is the SGD sum of the observations
    assert np.allclose(a.final_view_scores(), a.step_weights() @ a.obs)


def test_whitebox_power_grid_search_finds_the_weakest_detected_factor():
    # a known detection curve (every run detected below f = f_true, none above) through the real search, from
    # either side of the anchor: the factor returned is the grid point closest to 1 below f_true
    for f_true, g0 in ((0.9, 0.05), (0.97, 0.05), (0.99, 0.05), (0.7, 0.05)):
        k, runs = P.grid_search(lambda f, i, t=f_true: f < t, g0, n_sims=10)
        assert 1 - g0 * P.WB_GRID ** k < f_true <= 1 - g0 * P.WB_GRID ** (k - 1), (f_true, k, runs)
        assert (k - 1) in runs and sum(runs[k - 1]) == 0  # the next factor toward the claimed noise was tried
        assert len(runs[k]) == 10 and sum(runs[k]) == 10  # the reported one has all its runs
        # a factor that cannot reach 80% is abandoned early: 3 misses of 10 decide it
        assert all(len(r) == 3 for r in runs.values() if sum(r) == 0)
    # an anchor far from the curve: the search stops after WB_MAX_POINTS factors, on the safe side (a factor
    # that was detected, further from 1 than the curve's)
    k, runs = P.grid_search(lambda f, i: f < 0.999, 0.2, n_sims=10)
    assert len(runs) == P.WB_MAX_POINTS and 1 - 0.2 * P.WB_GRID ** k < 0.999 and sum(runs[k]) == 10
    # no factor up to 95% less noise detected: None
    k, runs = P.grid_search(lambda f, i: False, 0.01, n_sims=10)
    assert k is None and len(runs) <= P.WB_MAX_POINTS
    # a rate of 70% is not 80%: a factor detected in 7 of 10 runs is never reported
    k, runs = P.grid_search(lambda f, i: i % 10 < 7 if f > 0.8 else True, 0.05, n_sims=10)
    assert 1 - 0.05 * P.WB_GRID ** k <= 0.8


@pytest.mark.slow  # white-box analyses of simulated runs: several seconds
def test_whitebox_route_detects_less_noise_and_the_rate_holds_on_fresh_runs():
    # the audit's own analysis on simulated runs: it catches σ × f for f a little below 1, and the ε of that
    # mechanism (a stand-in accountant, monotone in σ) is what is stated
    from dpaudit.core.whitebox import analyse

    tpl = _wb_template(m=300, steps=60, spe=20, sigma=1.2, q=0.05)
    out = P.whitebox_detectable(tpl, confidence=0.99, analysis_seed=7, seed=1, n_sims=20,
                                epsilon_of_sigma=lambda s: 1.2 / s)
    f, pw = out["detectable_noise_factor"], out["detectable_power"]
    assert 0.8 < f < 1.0 and out["detectable_epsilon"] == pytest.approx(1.2 / (1.2 * f))
    assert pw["rate"] >= 0.8 and pw["rate_ci"][0] <= pw["rate"] <= pw["rate_ci"][1] and not pw["null_detected"]
    # the next grid factor toward the claimed noise fell short (the f stated is the weakest the grid reached)
    weaker = [x for x in pw["points"] if x["noise_factor"] > f]
    assert weaker and all(x["detected"] < 0.8 * x["n"] for x in weaker)
    # checked on fresh runs (another seed): analyse at σ × f refutes in most; at the claimed noise in almost none
    hits = sum(P.whitebox_detected(analyse(P.simulated_observations(tpl, f, i, seed=99), confidence=0.99, seed=7,
                                           empirical=False)) for i in range(20))
    null = sum(P.whitebox_detected(analyse(P.simulated_observations(tpl, 1.0, i, seed=99), confidence=0.99, seed=7,
                                           empirical=False)) for i in range(20))
    assert hits >= 13 and null <= 2
    # more excluded canaries, more power: a factor closer to 1 is detected
    big = P.whitebox_detectable(_wb_template(m=1200, steps=60, spe=20, sigma=1.2, q=0.05), confidence=0.99,
                                analysis_seed=7, seed=1, n_sims=20, epsilon_of_sigma=lambda s: 1.2 / s)
    assert f < big["detectable_noise_factor"] < 1.0


def _signals(rng, mu, m=600, n_pool=800, refs=2):
    mem = np.zeros((refs + 1, n_pool), bool)
    for i in range(refs + 1):
        mem[i, rng.permutation(n_pool)[: n_pool // 2]] = True
    z = 3.0 + rng.standard_normal((refs + 1, n_pool)) + mu * mem
    cin = rng.random(m) < 0.5
    return {"logits": np.stack([z, np.zeros_like(z)], -1).astype(np.float32), "labels": np.zeros(n_pool, np.int64),
            "membership": mem.astype(np.uint8), "canary_scores": rng.standard_normal(m) + mu * cin,
            "canary_in": cin.astype(np.uint8)}


def _audit(tmp_path, arrays, claim):
    from dpaudit.pipeline import AuditConfig, audit_signals
    from dpaudit.sources.external import signals_npz

    path = tmp_path / "s.npz"
    path.write_bytes(signals_npz(arrays))
    cfg = replace(AuditConfig(), attacks=("loss",), delta=DELTA, n_boot=100)
    return audit_signals(path, cfg, claim)[0]


@pytest.fixture(scope="module")
def null_reports(tmp_path_factory):
    """--from-signals reports of one null signals file (no leak), at claims 1 and 3: computed once."""
    tmp = tmp_path_factory.mktemp("signals")
    arrays = _signals(np.random.default_rng(0), 0.0)
    return {claim: _audit(tmp, arrays, claim) for claim in (1.0, 3.0)}


@pytest.mark.slow  # whole --from-signals audits / white-box analyses: several seconds
def test_from_signals_verdicts_follow_measured_power(tmp_path, null_reports):
    from dpaudit.schema import Report, evidence

    # no leak: not refuted, but the audit cannot see 2x the claim, so inconclusive with the detectable ε stated
    rep = json.loads(json.dumps(null_reports[1.0]))
    v = rep["models"][0]["verdict"]
    assert v["status"] == "inconclusive" and v["detectable_epsilon"] > 2.0
    assert f"{v['detectable_epsilon']:.2f}" in v["text"] and "perfect" not in v["text"]
    det = min(float(rep["models"][0]["attacks"][0]["detectable_epsilon"]),
              float(rep["models"][0]["canary"]["detectable_epsilon"]))
    assert v["detectable_epsilon"] == pytest.approx(det)
    # a looser claim is harder to refute near this audit's ceiling: its detectable ε grows faster than the claim,
    # so black-box evidence of this size never reads consistent (white-box canaries can: test_bounds, README)
    rep2 = null_reports[3.0]
    v2 = rep2["models"][0]["verdict"]
    assert v2["status"] == "inconclusive" and v2["detectable_epsilon"] > 2 * v["detectable_epsilon"]
    # a strong leak is a violation
    rep3 = _audit(tmp_path, _signals(np.random.default_rng(0), 3.0), 1.0)
    assert rep3["models"][0]["verdict"]["status"] == "violation"
    # the recomputed status agrees, and an edited detectable ε cannot make a verdict consistent alone:
    # the stored status "inconclusive" is never softened
    r = Report.from_json(rep)
    assert evidence(r.models[0]).status == "inconclusive"
    rep["models"][0]["canary"]["detectable_epsilon"] = 1.5
    r = Report.from_json(rep)
    from dpaudit.schema import effective_status

    assert evidence(r.models[0]).status == "consistent" and effective_status(r.models[0]) == "inconclusive"
    # the coin rule's record is in the canary block
    assert rep2["models"][0]["canary"]["coin_check"]["rule"].startswith("balanced")


@pytest.mark.slow  # whole --from-signals audits / white-box analyses: several seconds
def test_texts_state_the_numbers_they_rest_on(null_reports):
    from dpaudit.report import render_markdown, wording
    from dpaudit.schema import Report

    for claim, edit in ((1.0, None), (3.0, None), (1.0, 1.9)):
        doc = json.loads(json.dumps(null_reports[claim]))
        if edit is not None:  # the consistent wording, on numbers that support it
            doc["models"][0]["canary"]["detectable_epsilon"] = edit
            doc["models"][0]["verdict"].update(status="consistent", detectable_epsilon=edit)
        r = Report.from_json(doc)
        m = r.models[0]
        det = m.verdict.detectable_epsilon
        row = wording.first_screen_rows(r)[0]
        assert row["detectable"].startswith(wording.fmt(det, 2)) and row["status"] == m.verdict.status
        assert (row["status"] == "consistent") == (det <= 2 * claim)
        sentence = wording.detectable_sentence(m)
        assert wording.fmt(det, 2) in sentence
        assert ("within 2× the claim" in sentence) == (det <= 2 * claim)
        assert ("could pass unseen" in sentence) == (det > 2 * claim)
        reading = " ".join(wording.reading(r))
        assert sentence in reading and "could have been detected" not in reading
        banner = wording.banner(r)
        if m.verdict.status == "inconclusive":
            assert f"detects ε ≥ {wording.fmt(det, 2)}" in banner
        md = render_markdown(r)
        assert md.index(row["step"]) < md.index("## Privacy verdicts")  # the first screen comes first
        cc = r.alpha_spending.combined_confidence
        assert f"{cc:.4g}" in wording.combined_confidence_note(r)


@pytest.mark.slow  # whole --from-signals audits / white-box analyses: several seconds
def test_check_recomputes_the_combined_confidence(null_reports):
    from dpaudit.check import Policy, evaluate_policy
    from dpaudit.schema import Report

    rep = null_reports[1.0]
    from dpaudit.errors import DPAuditError

    rules = {x.name: x for x in evaluate_policy(Report.from_json(rep), Policy())}
    assert rules["confidence_recomputed"].passed and "0.975" in rules["confidence_recomputed"].observed
    for edit in (lambda d: d["alpha_spending"].update(combined_confidence=0.99),  # more than was spent allows
                 lambda d: d["models"][0]["verdict"].update(confidence=0.96)):  # more α than this run's share
        bad = json.loads(json.dumps(rep))
        edit(bad)
        # the rule fails on the document alone, and the gate's verification refuses the report as bad input first
        rules = {x.name: x for x in evaluate_policy(Report.from_json(bad), Policy(), verify=False)}
        assert not rules["confidence_recomputed"].passed
        with pytest.raises(DPAuditError):
            evaluate_policy(Report.from_json(bad), Policy())


def test_alpha_ledger_records_every_run(tmp_path):
    from dpaudit.config import AuditConfig
    from dpaudit.core.plan import alpha_spending
    from dpaudit.pipeline import ledger_runs, record_run

    cfg = AuditConfig()
    record_run(tmp_path, "k", alpha_spending(cfg, 0), "a")
    record_run(tmp_path, "k", alpha_spending(cfg, 1), "b")
    runs = ledger_runs(tmp_path, "k")
    assert [r["rerun"] for r in runs] == [0, 1] and runs[1]["alpha_spent_total"] == pytest.approx(0.0375)
    assert ledger_runs(tmp_path, "other") == []
    sp = alpha_spending(cfg, 5)
    assert sp.combined_confidence == pytest.approx(B.combined_confidence(0.95, 5)) and sp.combined_confidence > 0.95


def test_schema_and_bounds_agree_on_the_multiple():
    from dpaudit.schema import POWER_MULTIPLE

    assert POWER_MULTIPLE == B.POWER_MULTIPLE


def test_whitebox_power_text_states_its_factor():
    from dpaudit.report.wording import whitebox_power
    from dpaudit.schema import PowerPoint, WhiteBoxPower

    t = whitebox_power(0.9, 1.23)
    assert "σ × 0.900" in t and "10.0% less" in t and "1.23" in t
    # with the simulation's record: the rate, its interval, the number of simulated audits and the seed
    pw = WhiteBoxPower(n_sims=30, seed=5, analysis_seed=1, grid=1.5, power=0.8, n_tests=13, null_detected=False,
                       points=(PowerPoint(noise_factor=0.9, detected=27, n=30),), rate=0.9,
                       rate_ci=P.binomial_ci(27, 30))
    t = whitebox_power(0.9, 1.23, pw)
    assert "σ × 0.900" in t and "1.23" in t and "90% of 30 simulated audits" in t and "seed 5" in t
    assert "(95% CI 73–98%" in t and "13 conformance tests" in t
    assert whitebox_power(None, math.inf).startswith("no noise")
    assert whitebox_power(None, None) == "power not measured"
