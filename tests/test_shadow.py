"""Tests for the shadow-model and loss-threshold attacks (attacks.shadow, attacks.loss_threshold)."""
from __future__ import annotations

import numpy as np
import pytest

from dpaudit.attacks import loss_threshold as LT
from dpaudit.attacks.metrics import auc
from dpaudit.attacks.shadow import ShadowAttack, cross_fit_reference_scores, shadow_features


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin on a busy CI box (17 s instead of 0.2 s for a
    1,200-row fit); on data this small one thread is also the fastest."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def test_shadow_features_by_hand():
    probs = np.array([
        [0.10, 0.60, 0.20, 0.10],
        [0.25, 0.25, 0.40, 0.10],
        [0.70, 0.10, 0.15, 0.05],
    ])
    labels = np.array([1, 3, 0])
    expected = np.array([
        [0.60, 0.20, 0.10, 0.60],
        [0.40, 0.25, 0.25, 0.10],
        [0.70, 0.15, 0.10, 0.70],
    ])
    np.testing.assert_allclose(shadow_features(probs, labels, top_k=3), expected)
    np.testing.assert_allclose(shadow_features(probs, labels, top_k=1), expected[:, [0, 3]])


def test_shadow_features_pads_when_fewer_classes_than_top_k():
    f = shadow_features(np.array([[0.3, 0.7]]), np.array([0]), top_k=3)
    np.testing.assert_allclose(f, [[0.7, 0.3, 0.0, 0.3]])


@pytest.mark.parametrize("probs, labels", [
    (np.ones((3, 2)) / 2, np.array([0, 1])),          # length mismatch
    (np.ones((3, 2)) / 2, np.array([0, 1, 2])),       # label out of range
    (np.ones(3), np.array([0, 1, 2])),                # 1-D probs
    (np.ones((2, 2)) / 2, np.array(["a", "b"])),      # labels not class indices
    (np.ones((2, 2)) / 2, np.array([0.5, 1.0])),
])
def test_shadow_features_bad_inputs(probs, labels):
    with pytest.raises(ValueError):
        shadow_features(probs, labels)


def _pool(k, n, c, rng, in_frac=0.5):
    """Synthetic model outputs: members get a higher true-label probability."""
    labels = rng.integers(0, c, size=n)
    is_in = rng.random((k, n)) < in_frac
    probs = np.empty((k, n, c))
    for j in range(k):
        p_true = np.where(is_in[j], rng.beta(8, 2, size=n), rng.beta(4, 4, size=n))
        rest = rng.dirichlet(np.ones(c - 1), size=n) * (1 - p_true)[:, None]
        for i in range(n):
            others = [x for x in range(c) if x != labels[i]]
            probs[j, i, others] = rest[i]
            probs[j, i, labels[i]] = p_true[i]
    return probs, labels, is_in


@pytest.mark.parametrize("classifier", ["gbm", "logreg", "mlp"])
def test_shadow_attack_beats_chance(classifier):
    rng = np.random.default_rng(0)
    probs, labels, is_in = _pool(5, 300, 4, rng)
    attack = ShadowAttack(classifier=classifier, seed=0).fit(probs[:4], labels, is_in[:4])
    s = attack.score(probs[4], labels)
    assert s.shape == (300,) and np.all((s >= 0) & (s <= 1))
    assert auc(s, is_in[4]) > 0.6


def test_shadow_attack_per_class_and_fallback():
    rng = np.random.default_rng(1)
    probs, labels, is_in = _pool(5, 300, 4, rng)
    is_in[:, labels == 0] = True  # class 0 carries a single membership label in every reference
    # logreg keeps this quick; the per-class logic does not depend on the classifier
    attack = ShadowAttack(classifier="logreg", per_class=True, seed=0).fit(probs[:4], labels, is_in[:4])
    assert set(attack.class_models_) == {1, 2, 3}
    s = attack.score(probs[4], labels)
    m = labels != 0
    assert auc(s[m], is_in[4][m]) > 0.6
    # class 0 is scored by the global model
    np.testing.assert_allclose(
        s[~m], attack.global_model_.predict_proba(shadow_features(probs[4][~m], labels[~m]))[:, 1])


def test_shadow_attack_is_seeded_and_validates():
    rng = np.random.default_rng(2)
    probs, labels, is_in = _pool(3, 200, 3, rng)
    a = ShadowAttack("mlp", seed=3).fit(probs[:2], labels, is_in[:2]).score(probs[2], labels)
    b = ShadowAttack("mlp", seed=3).fit(probs[:2], labels, is_in[:2]).score(probs[2], labels)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        ShadowAttack(classifier="svm")
    with pytest.raises(ValueError):
        ShadowAttack().fit(probs[:2], labels, np.ones((2, 200), bool))  # one membership label
    with pytest.raises(ValueError):
        ShadowAttack().fit(probs[:2], labels, is_in[:1])  # shape mismatch
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        ShadowAttack().score(probs[2], labels)


def test_cross_fit_reference_scores():
    rng = np.random.default_rng(4)
    probs, labels, is_in = _pool(3, 200, 4, rng)
    out = cross_fit_reference_scores(probs, labels, is_in, classifier="logreg", seed=0)
    assert out.shape == (3, 200)
    # row 0 is the out-of-sample score of an attack fitted on references 1 and 2
    row0 = ShadowAttack("logreg", seed=0).fit(probs[1:], labels, is_in[1:]).score(probs[0], labels)
    np.testing.assert_allclose(out[0], row0)
    assert auc(out.ravel(), is_in.ravel()) > 0.6
    with pytest.raises(ValueError):
        cross_fit_reference_scores(probs[:1], labels, is_in[:1])


def test_loss_threshold_scores_and_calibration_by_hand():
    np.testing.assert_array_equal(LT.scores_from_losses([0.1, 2.0]), [-0.1, -2.0])
    # pooled members: -0.1, -0.2, -1.6; non-members: -0.3, -1.5, -2.0
    # TPR - FPR by threshold (descending): -0.1: 1/3, -0.2: 2/3, -0.3: 1/3, -1.5: 0, -1.6: 1/3,
    # -2.0: 0  ->  the best threshold is -0.2
    ref_scores = np.array([[-0.1, -2.0, -1.6], [-1.5, -0.2, -0.3]])
    ref_in = np.array([[True, False, True], [False, True, False]])
    assert LT.calibrate_threshold(ref_scores, ref_in) == -0.2
    with pytest.raises(ValueError):
        LT.calibrate_threshold(ref_scores.ravel(), ref_in.ravel())
