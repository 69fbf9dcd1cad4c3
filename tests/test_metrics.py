"""Tests for attacks.metrics on hand-made score arrays whose answers are known."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpaudit.attacks import metrics as M

# 4-point example: pairs (member, non-member) = (0.9,0.6) win, (0.9,0.2) win, (0.4,0.6) loss,
# (0.4,0.2) win -> AUC 3/4. ROC points: (0,0), (0,.5), (.5,.5), (.5,1), (1,1).
S4 = np.array([0.9, 0.4, 0.6, 0.2])
Y4 = np.array([1, 1, 0, 0])


def test_auc_perfect_reversed_and_hand_example():
    assert M.auc([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == 1.0
    assert M.auc([0.0, 1.0, 2.0, 3.0], [1, 1, 0, 0]) == 0.0
    assert M.auc(S4, Y4) == pytest.approx(0.75)
    assert M.auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts one half


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=300), 1)  # rounding makes ties
    y = rng.random(300) < 0.4
    assert M.auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_points():
    fpr, tpr, thr = M.roc_curve(S4, Y4)
    assert np.allclose(fpr, [0, 0, 0.5, 0.5, 1])
    assert np.allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert np.isinf(thr[0]) and np.allclose(thr[1:], [0.9, 0.6, 0.4, 0.2])


def test_tpr_at_fpr():
    assert M.tpr_at_fpr(S4, Y4, 0.0) == 0.5
    assert M.tpr_at_fpr(S4, Y4, 0.49) == 0.5
    assert M.tpr_at_fpr(S4, Y4, 0.5) == 1.0
    # the highest-scoring record is a non-member: nothing is found at FPR 0
    assert M.tpr_at_fpr([0.9, 0.5, 0.1], [0, 1, 0], 0.0) == 0.0
    with pytest.raises(ValueError):
        M.tpr_at_fpr(S4, Y4, 1.5)


def test_rates_at_threshold_counts_and_derived():
    c = M.rates_at_threshold(S4, Y4, 0.5)
    assert (c.tp, c.fn, c.fp, c.tn) == (1, 1, 1, 1)
    assert (c.n_pos, c.n_neg) == (2, 2)
    assert c.advantage == 0.0 and c.balanced_accuracy == 0.5
    c = M.rates_at_threshold(S4, Y4, 0.4)  # >= is inclusive: 0.4 is guessed member
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 0, 1, 1)
    assert c.tpr == 1.0 and c.fpr == 0.5
    assert c.advantage == pytest.approx(0.5) and c.balanced_accuracy == pytest.approx(0.75)
    c = M.rates_at_threshold([1, 2, 3, 4, 5], [0, 0, 1, 1, 1], 2.5)
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 0, 0, 2) and c.advantage == 1.0
    assert c.to_dict()["tpr"] == 1.0


def test_best_balanced_threshold():
    # J = tpr - fpr per threshold (descending): .9 -> .5, .6 -> 0, .4 -> .5, .2 -> 0; first max
    assert M.best_balanced_threshold(S4, Y4) == 0.9
    assert M.best_balanced_threshold([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]) == 3.0
    # every record tied: "guess nobody" must come back as a finite threshold above all scores
    t = M.best_balanced_threshold([1.0, 1.0], [0, 1])
    assert math.isfinite(t) and t > 1.0


def test_bootstrap_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(0)

    def sample(n):
        y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        return rng.normal(loc=y * 1.0), y

    s_small, y_small = sample(50)
    s_big, y_big = sample(2000)
    lo_s, hi_s = M.bootstrap_ci(s_small, y_small, M.auc, n_boot=200, seed=1)
    lo_b, hi_b = M.bootstrap_ci(s_big, y_big, M.auc, n_boot=200, seed=1)
    assert lo_s <= M.auc(s_small, y_small) <= hi_s
    assert lo_b <= M.auc(s_big, y_big) <= hi_b
    assert (hi_b - lo_b) < 0.5 * (hi_s - lo_s)
    # same seed, same interval
    assert M.bootstrap_ci(s_small, y_small, M.auc, n_boot=200, seed=1) == (lo_s, hi_s)


def test_bootstrap_skips_degenerate_resamples():
    calls = {"n": 0}

    def sometimes_nan(s, y):
        calls["n"] += 1
        return math.nan if calls["n"] % 2 else float(np.mean(s[y]))

    lo, hi = M.bootstrap_ci(S4, Y4, sometimes_nan, n_boot=50, seed=0)
    assert 0.4 <= lo <= hi <= 0.9
    assert all(math.isnan(v) for v in M.bootstrap_ci(S4, Y4, lambda s, y: math.nan, n_boot=5))


def test_evaluate_fixed_threshold_and_serialisation():
    rng = np.random.default_rng(3)
    n = 3000
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = rng.normal(loc=y * 1.5)
    res = M.evaluate(s, y, threshold=0.75, threshold_source="test", n_boot=100, seed=0)
    c = M.rates_at_threshold(s, y, 0.75)
    assert res.counts == c
    assert res.advantage == pytest.approx(c.tpr - c.fpr)
    assert res.balanced_accuracy == pytest.approx((c.tpr + 1 - c.fpr) / 2)
    assert res.auc == pytest.approx(M.auc(s, y))
    assert res.auc_ci[0] <= res.auc <= res.auc_ci[1]
    assert res.advantage_ci[0] <= res.advantage <= res.advantage_ci[1]
    assert res.balanced_accuracy_ci[0] <= res.balanced_accuracy <= res.balanced_accuracy_ci[1]
    assert set(res.tpr_at_fpr) == {"0.001", "0.01", "0.1"}
    assert res.tpr_at_fpr["0.1"] == pytest.approx(M.tpr_at_fpr(s, y, 0.1))
    assert res.tpr_at_fpr["0.001"] <= res.tpr_at_fpr["0.01"] <= res.tpr_at_fpr["0.1"]
    assert (res.n_members, res.n_nonmembers) == (n, n)
    # ROC: at most ~200 real points, ends kept, low-FPR region kept
    assert len(res.roc_fpr) == len(res.roc_tpr) <= 200
    assert (res.roc_fpr[0], res.roc_tpr[0]) == (0.0, 0.0)
    assert (res.roc_fpr[-1], res.roc_tpr[-1]) == (1.0, 1.0)
    assert len({f for f in res.roc_fpr if f < 0.01}) >= 25  # a uniform subsample keeps ~16
    # every achievable FPR below 0.3% (j non-members guessed in) keeps its exact best TPR
    fpr, tpr, _ = M.roc_curve(s, y)
    kept_f, kept_t = np.array(res.roc_fpr), np.array(res.roc_tpr)
    for j in range(10):
        assert kept_t[kept_f <= j / n].max() == tpr[fpr <= j / n].max()
    assert np.all(np.diff(res.roc_fpr) >= 0)
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["counts"]["tp"] == c.tp
    assert d["bootstrap"] == {"n_boot": 100, "level": 0.95, "seed": 0}
    assert d["threshold_source"] == "test"


def test_evaluate_without_bootstrap_is_json_safe():
    res = M.evaluate(S4, Y4, threshold=0.5, threshold_source="x", n_boot=0)
    assert math.isnan(res.auc_ci[0])
    assert res.to_dict()["auc_ci"] == [None, None]
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize("scores, labels", [
    ([[0.1, 0.2]], [1, 0]),               # 2-D
    ([0.1, 0.2, 0.3], [1, 0]),            # length mismatch
    ([0.1, np.nan], [1, 0]),              # non-finite
    ([0.1, np.inf], [1, 0]),
    ([0.1, 0.2], [1, 2]),                 # not binary
    ([0.1, 0.2], [1, 1]),                 # one class only
    ([0.1, 0.2], [0, 0]),
    (["a", "b"], [1, 0]),                 # not numeric
])
def test_bad_inputs_raise_value_error(scores, labels):
    with pytest.raises(ValueError):
        M.auc(scores, labels)
    with pytest.raises(ValueError):
        M.rates_at_threshold(scores, labels, 0.5)


def test_evaluate_rejects_nonfinite_threshold():
    with pytest.raises(ValueError):
        M.evaluate(S4, Y4, threshold=math.inf, threshold_source="x", n_boot=0)
