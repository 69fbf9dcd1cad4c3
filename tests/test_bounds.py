"""Tests for dpaudit.core.bounds: closed forms, published numeric values, and the rules that keep the
bounds honest (no threshold chosen with the target's truth)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpaudit.core import bounds as B


def test_closed_forms():
    assert B.max_balanced_accuracy(1.0, 1e-5) == pytest.approx(0.731061, abs=1e-6)
    assert B.max_balanced_accuracy(0.0, 0.0) == 0.5
    assert B.max_balanced_accuracy(math.inf, 0.0) == 1.0
    assert B.max_advantage(math.inf, 1e-5) == 1.0
    assert B.max_advantage(0.0, 0.0) == 0.0
    e = math.exp(2.0)
    assert B.max_advantage(2.0, 0.01) == pytest.approx((e - 1 + 0.02) / (e + 1))
    for eps in (0.1, 1.0, 8.0):
        assert B.max_advantage(eps, 1e-5) == pytest.approx(2 * B.max_balanced_accuracy(eps, 1e-5) - 1)
    assert B.max_balanced_accuracy(1000.0, 0.0) == 1.0  # no overflow


@pytest.mark.parametrize("eps, delta", [(-0.1, 0.0), (math.nan, 0.0), (1.0, -1e-5), (1.0, 1.0)])
def test_closed_forms_validate(eps, delta):
    with pytest.raises(ValueError):
        B.max_balanced_accuracy(eps, delta)
    with pytest.raises(ValueError):
        B.max_advantage(eps, delta)


def test_clopper_pearson():
    lo, hi = B.clopper_pearson(5, 10, 0.05)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    assert B.clopper_pearson(0, 10, 0.05)[0] == 0.0
    assert B.clopper_pearson(10, 10, 0.05)[1] == 1.0
    # k = 0: the upper end solves (1 - p)^n = alpha/2
    assert B.clopper_pearson(0, 10, 0.05)[1] == pytest.approx(1 - 0.025 ** 0.1)
    with pytest.raises(ValueError):
        B.clopper_pearson(11, 10, 0.05)


@pytest.mark.parametrize("tp, n_pos, fp, n_neg, delta, expected", [
    (500, 1000, 5, 1000, 0.0, 3.696),
    (1000, 1000, 0, 1000, 0.0, 5.601),
    (250, 500, 25, 500, 1e-5, 1.831),
])
def test_clopper_pearson_epsilon_oracles(tp, n_pos, fp, n_neg, delta, expected):
    assert B.epsilon_lb_clopper_pearson(tp, n_pos, fp, n_neg, delta, 0.95) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("m, r, v, expected", [
    (1000, 600, 600, 5.270),
    (100, 100, 100, 3.490),
    (1000, 200, 180, 1.796),
])
def test_one_run_epsilon_oracles(m, r, v, expected):
    assert B.epsilon_lb_one_run(m, r, v, 1e-5, 0.95) == pytest.approx(expected, abs=0.01)


def test_one_run_p_value_is_the_appendix_formula():
    # loop form of Steinke et al.'s Appendix D, written independently of the vectorised one
    from scipy.stats import binom
    m, r, v, eps, delta = 200, 50, 40, 1.3, 1e-3
    q = 1 / (1 + math.exp(-eps))
    beta = binom.sf(v - 1, r, q)
    alpha = max(sum(binom.pmf(v - j, r, q) for j in range(1, i + 1)) / i for i in range(1, v + 1))
    assert B._p_value_one_run(m, r, v, eps, delta) == pytest.approx(beta + 2 * m * delta * alpha, rel=1e-9)


def test_more_correct_guesses_give_larger_bounds():
    cp = [B.epsilon_lb_clopper_pearson(tp, 1000, 20, 1000, 1e-5) for tp in (100, 200, 400, 800)]
    assert all(a < b for a, b in zip(cp, cp[1:]))
    one = [B.epsilon_lb_one_run(1000, 200, v, 1e-5) for v in (140, 160, 180, 200)]
    assert all(a < b for a, b in zip(one, one[1:]))
    assert B.epsilon_lb_one_run(1000, 200, 100, 1e-5) == 0.0  # chance-level guessing
    assert B.epsilon_lb_clopper_pearson(50, 100, 50, 100, 0.0) == 0.0


def test_more_confidence_gives_smaller_bounds():
    assert (B.epsilon_lb_clopper_pearson(500, 1000, 5, 1000, 0.0, 0.99)
            < B.epsilon_lb_clopper_pearson(500, 1000, 5, 1000, 0.0, 0.95))
    assert B.epsilon_lb_one_run(1000, 200, 180, 1e-5, 0.99) < B.epsilon_lb_one_run(1000, 200, 180, 1e-5, 0.95)


def test_bound_input_validation():
    with pytest.raises(ValueError):
        B.epsilon_lb_clopper_pearson(11, 10, 0, 10, 0.0)
    with pytest.raises(ValueError):
        B.epsilon_lb_clopper_pearson(5, 10, 0, 10, 0.0, confidence=1.0)
    with pytest.raises(ValueError):
        B.epsilon_lb_one_run(10, 20, 5, 0.0)
    with pytest.raises(ValueError):
        B.epsilon_lb_one_run(100, 20, 5, 1.0)


def test_one_run_audit_with_few_canaries():
    # m < 50 used to leave no candidate k (m // 50 == 0); at least one guess is always tried
    res = B.one_run_audit([3.0, 1.0], [True, False], delta=1e-5)
    assert res.candidates_tried[0] == 1 and res.epsilon_lb == 0.0  # two canaries can't reject epsilon = 0


def _canaries(m, seed, separation):
    rng = np.random.default_rng(seed)
    is_in = rng.random(m) < 0.5
    return rng.normal(loc=separation * is_in), is_in


def test_one_run_audit_separated_vs_random():
    s, y = _canaries(1000, 0, separation=20.0)
    res = B.one_run_audit(s, y, delta=1e-5)
    assert res.epsilon_lb > 1.0
    assert res.m == 1000 and res.r == res.k_plus + res.k_minus
    assert res.candidates_tried == (20, 50, 100, 200, 500)
    assert res.correction == "bonferroni over 5 candidates"
    assert res.v == res.r  # perfectly separated: every "in" guess is right
    assert res.epsilon_lb == pytest.approx(B.epsilon_lb_one_run(1000, res.r, res.v, 1e-5, 1 - 0.05 / 5))

    rng = np.random.default_rng(7)
    res = B.one_run_audit(rng.normal(size=1000), rng.random(1000) < 0.5, delta=1e-5)
    assert res.epsilon_lb <= 0.5
    json.dumps(res.to_dict())


def test_one_run_audit_fixed_k_and_k_minus():
    s = np.arange(10.0)
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1], bool)
    res = B.one_run_audit(s, y, delta=0.0, k_candidates=[4], k_minus=3)
    # top 4 (scores 9..6) all in; bottom 3 (0..2) all out
    assert (res.r, res.v, res.k_plus, res.k_minus) == (7, 7, 4, 3)
    assert res.correction == "fixed k"
    assert res.epsilon_lb == pytest.approx(B.epsilon_lb_one_run(10, 7, 7, 0.0))


def test_one_run_audit_ties_do_not_leak_storage_order():
    # constant scores, members stored first: ordering ties by position would "find" them all
    y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    res = B.one_run_audit(np.zeros(1000), y, delta=1e-5)
    assert res.epsilon_lb <= 0.5


def test_fixed_and_bonferroni_threshold_bounds():
    s = np.r_[np.linspace(1, 2, 100), np.linspace(0, 1.5, 100)]
    y = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    fx = B.fixed_threshold_epsilon_lb(s, y, 1.2, delta=0.0)
    tp, fp = int(np.sum(s[y] >= 1.2)), int(np.sum(s[~y] >= 1.2))
    assert (fx.tp, fx.n_pos, fx.fp, fx.n_neg) == (tp, 100, fp, 100)
    assert fx.value == pytest.approx(B.epsilon_lb_clopper_pearson(tp, 100, fp, 100, 0.0))
    assert fx.method == "clopper_pearson" and fx.threshold == 1.2

    bf = B.bonferroni_threshold_epsilon_lb(s, y, delta=0.0, n_thresholds=20)
    assert bf.threshold_selection == "Bonferroni over 20 thresholds"
    assert bf.confidence == 0.95
    # its value is the bound at its threshold at the corrected confidence
    tp, fp = int(np.sum(s[y] >= bf.threshold)), int(np.sum(s[~y] >= bf.threshold))
    assert bf.value == pytest.approx(B.epsilon_lb_clopper_pearson(tp, 100, fp, 100, 0.0, 1 - 0.05 / 20))
    assert bf.value > 0 and bf.direction in ("tpr/fpr", "tnr/fnr")
    json.dumps(bf.to_dict())


def test_best_threshold_never_uses_target_truth():
    rng = np.random.default_rng(11)
    # calibration scores carry no membership information
    cal_s = rng.normal(size=(4, 500))
    cal_in = rng.random((4, 500)) < 0.5
    # target perfectly separated: choosing on the target would give a large bound
    y = rng.random(1000) < 0.5
    s = rng.normal(loc=10.0 * y)
    res = B.best_threshold_epsilon_lb(cal_s, cal_in, s, y, delta=1e-5)
    assert res.threshold_selection == "chosen on reference models' scores; applied once to the target"
    # the target's bound is computed at exactly the calibration-chosen threshold ...
    tp, fp = int(np.sum(s[y] >= res.threshold)), int(np.sum(s[~y] >= res.threshold))
    assert (res.tp, res.fp, res.n_pos, res.n_neg) == (tp, fp, int(y.sum()), int((~y).sum()))
    assert res.value == pytest.approx(B.epsilon_lb_clopper_pearson(tp, int(y.sum()), fp, int((~y).sum()), 1e-5))
    # ... and that threshold does not move when the target's truth (or scores) change
    for seed in (1, 2):
        r2 = np.random.default_rng(seed)
        y2 = r2.random(1000) < 0.5
        assert B.best_threshold_epsilon_lb(cal_s, cal_in, r2.normal(size=1000), y2, 1e-5).threshold == res.threshold
    # the threshold lies within the calibration scores, not tuned to the target's gap
    assert cal_s.min() <= res.threshold <= cal_s.max()


def test_best_threshold_informative_calibration_transfers():
    rng = np.random.default_rng(5)
    cal_in = rng.random((4, 1000)) < 0.5
    cal_s = rng.normal(loc=3.0 * cal_in)
    y = rng.random(1000) < 0.5
    s = rng.normal(loc=3.0 * y)
    res = B.best_threshold_epsilon_lb(cal_s, cal_in, s, y, delta=1e-5)
    assert res.value > 0.5 and res.direction in ("tpr/fpr", "tnr/fnr")
    assert cal_s.min() <= res.threshold <= cal_s.max()
    tp, fp = int(np.sum(s[y] >= res.threshold)), int(np.sum(s[~y] >= res.threshold))
    assert res.value == pytest.approx(B.epsilon_lb_clopper_pearson(tp, int(y.sum()), fp, int((~y).sum()), 1e-5))
    json.dumps(res.to_dict())


# --------------------------------------------------------------------------- detection ceilings

def test_ceiling_clopper_pearson_reference_audit_figure():
    # the reference audit: 1,750 + 1,750 records, 3 bounds per verdict (Bonferroni), delta = 1e-5
    c = 1 - 0.05 / 3
    ceil = B.ceiling_clopper_pearson(1750, 1750, 1e-5, c)
    assert ceil == pytest.approx(5.90, abs=0.01)
    assert ceil == B.epsilon_lb_clopper_pearson(1750, 1750, 0, 1750, 1e-5, c)
    # more records raise it, more confidence lowers it
    assert B.ceiling_clopper_pearson(17500, 17500, 1e-5, c) > ceil + 2.0
    assert B.ceiling_clopper_pearson(1750, 1750, 1e-5, 0.999) < ceil


def test_ceiling_clopper_pearson_is_the_max_over_every_count():
    # exhaustive: no (tp, fp) on 7 members and 11 non-members beats the ceiling, in either DP inequality
    for n_pos, n_neg in ((7, 11), (11, 7)):
        ceil = B.ceiling_clopper_pearson(n_pos, n_neg, 0.01, 0.9)
        tp, fp = np.meshgrid(np.arange(n_pos + 1), np.arange(n_neg + 1))
        eps, _ = B.cp_eps_array(tp.ravel(), n_pos, fp.ravel(), n_neg, 0.01, 0.9)
        assert eps.max() == pytest.approx(ceil) and ceil > 0
    # unequal classes: both inequalities are taken, so the ceiling is symmetric in (n_pos, n_neg)
    assert B.ceiling_clopper_pearson(100, 3000, 1e-5) == pytest.approx(B.ceiling_clopper_pearson(3000, 100, 1e-5))


def test_ceiling_one_run_reference_audit_figure():
    c = 1 - 0.05 / 3
    ceil = B.ceiling_one_run(500, 1e-5, c)
    assert ceil == pytest.approx(3.70, abs=0.01)
    # it is what one_run_audit returns on perfectly separated canaries with half of them in
    y = np.r_[np.ones(250, bool), np.zeros(250, bool)]
    assert B.one_run_audit(y.astype(float), y, 1e-5, c).epsilon_lb == pytest.approx(ceil)
    # fewer canaries in than the largest guess (250): that candidate gets at most n_in right
    assert B.ceiling_one_run(500, 1e-5, c, n_in=100) < ceil
    assert B.ceiling_one_run(500, 1e-5, c, n_in=400) == pytest.approx(ceil)
    # a fixed k is tested without a Bonferroni split, so it can only be higher than the default's k = 250 term
    assert B.ceiling_one_run(500, 1e-5, c, k_candidates=[250]) == pytest.approx(
        B.epsilon_lb_one_run(500, 250, 250, 1e-5, c))
    with pytest.raises(ValueError):
        B.ceiling_one_run(0, 1e-5)
    with pytest.raises(ValueError):
        B.ceiling_one_run(10, 1e-5, n_in=11)


def test_records_and_canaries_needed():
    c = 1 - 0.05 / 3
    n = B.records_needed(8.0, 1e-5, c)
    assert B.ceiling_clopper_pearson(n, n, 1e-5, c) > 8.0 >= B.ceiling_clopper_pearson(n - 1, n - 1, 1e-5, c)
    assert 10_000 < n < 20_000
    m = B.canaries_needed(4.0, 1e-5, c)
    assert B.ceiling_one_run(m, 1e-5, c) > 4.0 >= B.ceiling_one_run(int(m * 0.98), 1e-5, c)
    # the one-run ceiling at delta = 1e-5 peaks below 5 (its 2 m delta term): no m reaches 8
    assert B.canaries_needed(8.0, 1e-5, c) is None
    assert B.ceiling_one_run(50_000, 1e-5, c) < B.ceiling_one_run(2_000, 1e-5, c) < 5.0


# --------------------------------------------------------------------------- reference-model thresholds

GDP_MU_EPS2 = 0.5016  # mu-GDP (members N(mu, 1) vs non-members N(0, 1)) with eps = 2 at delta = 1e-5


def _gaussian_rows(rng, n_models, n=1000, mu=GDP_MU_EPS2):
    y = np.zeros((n_models, n), bool)
    for k in range(n_models):
        y[k, rng.permutation(n)[: n // 2]] = True
    return rng.normal(loc=mu * y), y


def test_gdp_mu_gives_eps_2():
    from scipy import stats

    def delta(eps, mu):  # the Gaussian-DP privacy profile (Dong, Roth & Su 2019)
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)

    assert delta(2.0, GDP_MU_EPS2) == pytest.approx(1e-5, rel=0.01)


def _expected_target_bound():
    """E[Clopper-Pearson bound on a 500 + 500 target | threshold t], exactly: tp and fp are binomial."""
    from scipy import stats

    n, a = 500, 0.025
    c = np.arange(n + 1.0)
    tpr_lb = np.where(c > 0, stats.beta.ppf(a, np.maximum(c, 1), n - c + 1), 0.0)
    fpr_ub = np.where(c < n, stats.beta.ppf(1 - a, c + 1, np.maximum(n - c, 1)), 1.0)
    grid, _ = B._eps_from_rates(tpr_lb[:, None], fpr_ub[None, :], 1e-5)

    def expected(t):
        p_tp = stats.binom.pmf(c, n, stats.norm.sf(t - GDP_MU_EPS2))
        p_fp = stats.binom.pmf(c, n, stats.norm.sf(t))
        return float(p_tp @ grid @ p_fp)
    return expected


@pytest.mark.slow  # over half a second on 2 cores: the fast tier stays under a minute
def test_reference_threshold_keeps_power_as_references_grow():
    # Known eps = 2, m = 1,000 target records (500 in, 500 out), 50 seeds; the same target and the same first
    # K reference rows across K (common random numbers). The old pooled choice tunes the threshold for
    # K x 1,000 records and loses power as K grows; the per-reference choice must not.
    expected = _expected_target_bound()
    best_possible = max(expected(t) for t in np.linspace(-1.5, 3.0, 451))
    old, new, old_e, new_e = {}, {}, {}, {}
    for k_ref in (1, 4, 16):
        o, n, oe, ne = [], [], [], []
        for seed in range(50):
            s, y = _gaussian_rows(np.random.default_rng(seed), 1)
            rs, ri = _gaussian_rows(np.random.default_rng(10_000 + seed), 16)
            a = B.best_threshold_epsilon_lb(rs[:k_ref], ri[:k_ref], s[0], y[0], 1e-5)
            b = B.reference_threshold_epsilon_lb(rs[:k_ref], ri[:k_ref], s[0], y[0], 1e-5)
            o.append(a.value)
            n.append(b.value)
            oe.append(expected(a.threshold))
            ne.append(expected(b.threshold))
        old[k_ref], new[k_ref] = float(np.median(o)), float(np.median(n))
        old_e[k_ref], new_e[k_ref] = float(np.median(oe)), float(np.median(ne))
    assert new[1] == pytest.approx(old[1])  # one reference: both choose on the same 1,000 records
    # the realised target bounds (measured: 0.26, 0.35, 0.31; old 0.26, 0.13, 0.00): K = 4 and 16 beat K = 1;
    # between 4 and 16 the target's own sampling noise (~0.04 on a median of 50) exceeds the difference
    assert new[4] > new[1] + 0.05 and new[16] > new[1] + 0.03 and abs(new[16] - new[4]) < 0.05
    # without that noise, the bound the target can expect at the chosen threshold rises with K towards the
    # best any fixed threshold gets (measured: 0.319, 0.331, 0.341 of 0.344; old 0.319, 0.178, 0.068)
    assert new_e[1] <= new_e[4] <= new_e[16] <= best_possible
    assert new_e[16] > best_possible - 0.01
    assert old_e[16] < old_e[4] < old_e[1] and old[16] < 0.05  # the regression the new choice fixes


def test_reference_threshold_never_uses_target_truth():
    rng = np.random.default_rng(3)
    rs, ri = _gaussian_rows(rng, 4, mu=2.0)
    y = rng.random(1000) < 0.5
    s = rng.normal(loc=2.0 * y)
    res = B.reference_threshold_epsilon_lb(rs, ri, s, y, 1e-5)
    assert res.threshold_selection.startswith("chosen on 4 reference model(s)")
    assert res.value > 1.0 and rs.min() <= res.threshold <= rs.max()
    tp, fp = int(np.sum(s[y] >= res.threshold)), int(np.sum(s[~y] >= res.threshold))
    assert (res.tp, res.fp) == (tp, fp)
    assert res.value == pytest.approx(B.epsilon_lb_clopper_pearson(tp, int(y.sum()), fp, int((~y).sum()), 1e-5))
    for seed in (1, 2):  # the threshold does not move with the target's truth or scores
        r2 = np.random.default_rng(seed)
        y2 = r2.random(1000) < 0.5
        assert B.reference_threshold_epsilon_lb(rs, ri, r2.normal(loc=9.0 * y2), y2, 1e-5).threshold == res.threshold
    # a 1-D reference row is one model; median aggregation is offered; bad input is refused
    one = B.reference_threshold_epsilon_lb(rs[0], ri[0], s, y, 1e-5, aggregate="median")
    assert one.threshold_selection.startswith("chosen on 1 reference model(s): best median")
    with pytest.raises(ValueError):
        B.reference_threshold_epsilon_lb(rs, ri[:, :10], s, y, 1e-5)
    with pytest.raises(ValueError):
        B.reference_threshold_epsilon_lb(rs, ri, s, y, 1e-5, aggregate="max")
    with pytest.raises(ValueError):  # a reference row without non-members
        B.reference_threshold_epsilon_lb(rs, np.ones_like(ri), s, y, 1e-5)


def test_reference_threshold_at_target_size_not_reference_size():
    # references with 4x the target's records: their counts are rescaled to the target's sizes, so the
    # choice matches references of the target's own size drawn from the same distribution
    rng = np.random.default_rng(9)
    big_s, big_y = _gaussian_rows(rng, 8, n=4000, mu=1.5)
    y = rng.random(1000) < 0.5
    s = rng.normal(loc=1.5 * y)
    res = B.reference_threshold_epsilon_lb(big_s, big_y, s, y, 1e-5)
    small = B.reference_threshold_epsilon_lb(big_s[:, :1000], big_y[:, :1000], s, y, 1e-5)
    assert abs(res.threshold - small.threshold) < 0.5
    assert res.value > 0.3


# --------------------------------------------------------------------------- family-wise confidence, verdicts

@pytest.mark.parametrize("n_attacks,routes", [(4, 1), (4, 4), (1, 3), (2, 0), (0, 3), (1, 1)])
def test_evidence_confidences_spend_exactly_alpha(n_attacks, routes):
    attack, canary = B.evidence_confidences(0.95, n_attacks, routes)
    spent = n_attacks * (1 - attack) + routes * (1 - canary)
    assert spent == pytest.approx(0.05)  # Bonferroni: the shares add up to α, never more
    if n_attacks and routes:  # canaries half of α, attacks the other half, fixed before any data
        assert routes * (1 - canary) == pytest.approx(0.025)


def test_evidence_confidences_weights():
    # the reference audit's non-DP model: 4 attacks and the canaries; canaries at 97.5%, each attack at 99.375%
    assert B.evidence_confidences(0.95, 4, 1) == pytest.approx((0.99375, 0.975))
    # as many canary routes as attacks, or one of each: plain Bonferroni
    assert B.evidence_confidences(0.95, 4, 4) == pytest.approx((1 - 0.05 / 8, 1 - 0.05 / 8))
    assert B.evidence_confidences(0.95, 1, 1) == pytest.approx((0.975, 0.975))
    with pytest.raises(ValueError):
        B.evidence_confidences(0.95, -1, 1)


def test_family_confidence():
    assert B.family_confidence(0.95, 1) == 0.95
    assert B.family_confidence(0.95, 2) == pytest.approx(0.975)
    assert B.family_confidence(0.95, 5) == pytest.approx(0.99)
    # d verdicts each wrong with probability 1 - c_d: a union bound gives back the family's 1 - 0.95
    for d in (2, 3, 10):
        assert d * (1 - B.family_confidence(0.9, d)) == pytest.approx(0.1)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            B.family_confidence(0.95, bad)
    with pytest.raises(ValueError):
        B.family_confidence(1.0, 2)


EVIDENCE = [("loss attack", 0.0, 5.9), ("shadow attack", 0.12, 5.9), ("canaries (one run)", 0.0, 3.7)]


def test_verdict_issue_example_is_inconclusive():
    c = 1 - 0.05 / 3
    v = B.decide_verdict(8.0, EVIDENCE, delta=1e-5, confidence=c, n_records=(1750, 1750), n_canaries=500)
    assert v.status == "inconclusive" and v.could_detect is False
    assert v.ceiling == 5.9 and v.ceiling_source == "loss attack, shadow attack"
    assert v.empirical_epsilon_lb == 0.12 and v.source == "shadow attack"
    # power not measured: the text says so, never what a perfect attack "could" prove from the ceiling
    assert "power was not measured" in v.text and "perfect" not in v.text and "5.90" not in v.text
    assert "--gradient-canaries 1000" in v.text and v.next_step in v.text
    # without white-box canaries possible (training not observed), the step is more canaries or records
    v = B.decide_verdict(8.0, EVIDENCE, n_canaries=500, whitebox_possible=False)
    assert "more canaries (now 500)" in v.text
    # at exactly the ceiling nothing could have exceeded the claim either
    assert B.decide_verdict(5.9, EVIDENCE).status == "inconclusive"


POWERED = [("loss attack", 0.0, 5.9, 4.4), ("shadow attack", 0.12, 5.9, 4.1), ("canaries (one run)", 0.0, 3.7, 4.3)]


def test_verdict_consistent_needs_measured_power_within_the_multiple():
    # detectable ε of the audit: the smallest over its routes (4.1, the shadow attack's)
    v = B.decide_verdict(1.0, POWERED)
    assert v.status == "inconclusive" and v.detectable_epsilon == 4.1
    assert v.detectable_source == "shadow attack" and "4.10" in v.text and "above 2× the claim" in v.text
    assert v.could_detect is True  # the ceiling stays a number; it no longer makes a verdict consistent
    # K = 2: consistent exactly when the detectable ε is at most twice the claim
    v = B.decide_verdict(2.05, POWERED)
    assert v.status == "consistent" and "4.10" in v.text and "within 2× the claim" in v.text
    assert v.power_multiple == B.POWER_MULTIPLE == 2.0 and v.next_step is None
    assert B.decide_verdict(2.04, POWERED).status == "inconclusive"
    # the text's numbers are the verdict's numbers
    for claim in (0.5, 1.0, 2.05, 3.0):
        v = B.decide_verdict(claim, POWERED)
        assert f"claimed ε = {claim:g}" in v.text and f"{v.detectable_epsilon:.2f}" in v.text
    # not detectable at all
    v = B.decide_verdict(1.0, [("a", 0.0, 0.9, math.inf)])
    assert v.status == "inconclusive" and "could not have seen a leak" in v.text
    with pytest.raises(ValueError, match="detectable"):
        B.decide_verdict(1.0, [("a", 0.0, 0.9, 0.0)])
    # a route whose power covers several bounds (white-box canaries) states it once, apart from them
    v = B.decide_verdict(1.0, EVIDENCE, detectable=[("white-box canaries", 1.3), ("loss attack", 4.4)])
    assert v.status == "consistent" and v.detectable_source == "white-box canaries"
    assert "(simulated, white-box canaries)" in v.text and "1.30" in v.text


def test_verdict_branches():
    v = B.decide_verdict(1.0, EVIDENCE)
    assert v.status == "inconclusive" and v.could_detect is True
    assert "no bound exceeds the claimed ε = 1" in v.text
    v = B.decide_verdict(0.1, EVIDENCE)
    assert v.status == "violation" and v.ratio == pytest.approx(1.2)
    assert "ε ≥ 0.12 from shadow attack exceeds the claimed ε = 0.1" in v.text
    v = B.decide_verdict(None, EVIDENCE)
    assert v.status == "no DP claim" and v.ratio is None and v.could_detect is False
    # nonconformance wins over a violation and over inconclusive
    for claimed in (0.1, 8.0):
        v = B.decide_verdict(claimed, EVIDENCE, ["noise calibration"])
        assert v.status == "nonconformant" and "noise calibration" in v.text
        assert v.rejected_conformance == ("noise calibration",)
    # no bound above 0
    v = B.decide_verdict(3.0, [("loss attack", 0.0, 5.9, 5.0)])
    assert v.status == "consistent" and v.source.startswith("none") and "no bound above 0" in v.text
    # no evidence at all: nothing could have shown anything
    v = B.decide_verdict(1.0, [])
    assert v.status == "inconclusive" and "no evidence" in v.text
    json.dumps(B.decide_verdict(8.0, EVIDENCE).to_dict())


def test_alpha_schedule_keeps_any_number_of_reruns_within_alpha():
    assert [B.alpha_share(r) for r in range(3)] == [0.5, 0.25, 0.125]
    for r in (0, 1, 5, 20):
        assert B.alpha_spent(0.05, r) == pytest.approx(0.05 * (1 - 2.0 ** -(r + 1)))
        assert B.alpha_spent(0.05, r) < 0.05 and B.combined_confidence(0.95, r) > 0.95
    assert B.combined_confidence(0.95, 0) == pytest.approx(0.975)
    assert B.combined_confidence(0.95, 1) == pytest.approx(0.9625)
    with pytest.raises(ValueError):
        B.alpha_share(-1)


def test_balanced_one_run_matches_one_run_on_fair_coins_and_its_ceiling():
    rng = np.random.default_rng(3)
    y = rng.random(1000) < 0.5
    s = rng.normal(size=1000) + 3.0 * y
    bal = B.one_run_audit_balanced(s, y, 1e-5, 0.95)
    assert bal.k_plus == bal.k_minus and bal.r == 2 * bal.k_plus and bal.epsilon_lb > 2.0
    assert bal.epsilon_lb <= B.ceiling_one_run_balanced(1000, 1e-5, 0.95, n_in=int(y.sum())) + 1e-9
    # a perfect attack reaches the ceiling
    perfect = B.one_run_audit_balanced(y.astype(float), y, 1e-5, 0.95)
    assert perfect.epsilon_lb == pytest.approx(B.ceiling_one_run_balanced(1000, 1e-5, 0.95, n_in=int(y.sum())))
    # the p-value table is the p-value
    p = B.one_run_p_values(1000, 200, 1.5, 1e-5)
    for v in (0, 100, 150, 190):
        assert p[v] == pytest.approx(B._p_value_one_run(1000, 200, v, 1.5, 1e-5), rel=1e-12, abs=1e-15)
    # vectorised Clopper-Pearson is the scalar one
    b = B.epsilon_lb_clopper_pearson_counts(np.array([400, 300]), 500, np.array([20, 200]), 500, 1e-5, 0.95)
    assert b[0] == pytest.approx(B.epsilon_lb_clopper_pearson(400, 500, 20, 500, 1e-5, 0.95))
    assert b[1] == pytest.approx(B.epsilon_lb_clopper_pearson(300, 500, 200, 500, 1e-5, 0.95))


def test_verdict_input_validation():
    with pytest.raises(ValueError, match="exceeds its ceiling"):
        B.decide_verdict(1.0, [("a", 6.0, 5.9)])
    with pytest.raises(ValueError):
        B.decide_verdict(-1.0, EVIDENCE)
    with pytest.raises(ValueError):
        B.decide_verdict(1.0, [("a", float("nan"), 5.9)])
