"""Tests for dpaudit.bounds: closed forms, published numeric values, and the rules that keep the
bounds honest (no threshold chosen with the target's truth)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpaudit import bounds as B


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
