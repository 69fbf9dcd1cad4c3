"""RMIA and LiRA: formulas against hand-computed cases, leave-one-out reference scores that never see their own
row's membership, online variants' preconditions, and the per-record calibration beating a global loss
threshold on synthetic data. No training: fast."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy.special import expit

from dpaudit.attacks.lira import lira_reference_scores, lira_scores, phi_from_logits
from dpaudit.attacks.metrics import auc
from dpaudit.attacks.rmia import (
    A_GRID,
    DEFAULT_OFFLINE_A,
    choose_offline_a,
    rmia_reference_scores,
    rmia_scores,
    true_label_probs,
)

T, F = True, False

# ---- RMIA: hand-computed case, K=2 references, n=3 pool records, nz=4 population records -------------------
P_REFS = np.array([[0.9, 0.4, 0.2],
                   [0.5, 0.8, 0.4]])
REFS_IN = np.array([[T, F, F],   # record 0: IN ref 0, OUT ref 1; record 1: OUT ref 0, IN ref 1;
                    [F, T, F]])  # record 2: OUT of both
P_TARGET = np.array([0.8, 0.6, 0.3])
Z_REFS = np.array([[0.6, 0.2, 0.9, 0.1],
                   [0.2, 0.2, 0.7, 0.3]])
Z_TARGET = np.array([0.5, 0.3, 0.6, 0.1])
# Offline, a = 0.5: Pr(.) = 0.75 * Pr_OUT(.) + 0.25.
#   x0: Pr_OUT = 0.5 (ref 1)          -> Pr = 0.625, LR = 0.8 / 0.625 = 1.28
#   x1: Pr_OUT = 0.4 (ref 0)          -> Pr = 0.55,  LR = 0.6 / 0.55  = 1.0909
#   x2: Pr_OUT = (0.2 + 0.4) / 2 = .3 -> Pr = 0.475, LR = 0.3 / 0.475 = 0.6316
#   z: mean over both refs = [0.4, 0.2, 0.8, 0.2] -> Pr = [0.55, 0.4, 0.85, 0.4]
#      LR(z) = [0.5/0.55, 0.3/0.4, 0.6/0.85, 0.1/0.4] = [0.9091, 0.75, 0.7059, 0.25]


def paper_score(s, nz):
    """The paper's score, the fraction of z beaten: rmia_scores adds a tie-break in [0, 1/nz) to it."""
    return np.floor(np.asarray(s) * nz) / nz


def test_rmia_ties_broken_by_the_likelihood_ratio_keep_every_strict_order():
    rng = np.random.default_rng(0)
    p_refs = rng.uniform(0.05, 1, size=(3, 300))
    refs_in = rng.random((3, 300)) < 0.5
    p_t = rng.uniform(0.05, 1, size=300)
    z_refs, z_t = rng.uniform(0.05, 1, size=(3, 7)), rng.uniform(0.05, 1, size=7)
    for gamma in (1.0, 2.0):
        s = rmia_scores(p_t, p_refs, refs_in, z_t, z_refs, a=0.4, gamma=gamma)
        count = paper_score(s, 7)
        # the paper's order survives: fewer z beaten never scores higher
        assert (np.diff(count[np.argsort(s, kind="stable")]) >= 0).all()
        assert ((s - count) < 1 / 7).all() and ((s - count) >= 0).all()
    # gamma = 1: the score orders records exactly as their likelihood ratio does, with 7 z and no ties
    s = rmia_scores(p_t, p_refs, refs_in, z_t, z_refs, a=0.4)
    pr_out = np.where(~refs_in, p_refs, 0).sum(0) / np.maximum((~refs_in).sum(0), 1)
    pr_x = np.where((~refs_in).sum(0) > 0, pr_out, p_refs.mean(0)) * 0.7 + 0.3
    assert len(np.unique(s)) == 300
    np.testing.assert_array_equal(np.argsort(s), np.argsort(p_t / pr_x))


def test_true_label_probs_with_temperature():
    logits = np.array([[2.0, 0.0], [0.0, 30.0]])
    p1 = true_label_probs(logits, np.array([0, 1]))
    np.testing.assert_allclose(p1, [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(-30))])
    assert p1[1] < 1.0  # stays below 1 in float64 where float32 would round it up
    np.testing.assert_allclose(true_label_probs(logits, np.array([0, 1]), 2.0), [1 / (1 + np.exp(-1)),
                                                                                  1 / (1 + np.exp(-15))])
    with pytest.raises(ValueError):
        true_label_probs(logits, np.array([0, 1]), 0.0)


def test_rmia_offline_hand_computed():
    # gamma = 1: x0 and x1 beat all four z; x2 (0.6316) beats only 0.25
    s = rmia_scores(P_TARGET, P_REFS, REFS_IN, Z_TARGET, Z_REFS, a=0.5, gamma=1.0)
    np.testing.assert_allclose(paper_score(s, 4), [1.0, 1.0, 0.25])
    # the tie between x0 and x1 (both beat every z) is broken by their own LR: 1.28 > 1.0909
    assert s[0] > s[1]
    # gamma = 1.3: LR(z) <= LR(x) / 1.3 -> x0: 0.9846 (all 4), x1: 0.8392 (0.75, 0.7059, 0.25), x2: 0.4858 (0.25)
    s = rmia_scores(P_TARGET, P_REFS, REFS_IN, Z_TARGET, Z_REFS, a=0.5, gamma=1.3)
    np.testing.assert_allclose(paper_score(s, 4), [1.0, 0.75, 0.25])


def test_rmia_offline_record_with_no_out_reference_falls_back_to_all_references():
    refs_in = np.array([[T, F, F],
                        [T, T, F]])  # record 0 is IN for both references
    # x0: mean over all refs (0.9 + 0.5) / 2 = 0.7 -> Pr = 0.75 * 0.7 + 0.25 = 0.775, LR = 0.8 / 0.775 = 1.0323
    # gamma = 1.3: 1.0323 / 1.3 = 0.7940 -> beats 0.75, 0.7059, 0.25; x1, x2 as before
    s = rmia_scores(P_TARGET, P_REFS, refs_in, Z_TARGET, Z_REFS, a=0.5, gamma=1.3)
    np.testing.assert_allclose(paper_score(s, 4), [0.75, 0.75, 0.25])
    # x0 (0.7940) and x1 (0.8392) both lie between the z at 0.75 and 0.9091: placed between them in log LR
    lo, hi = np.log(0.75), np.log(0.9091)
    np.testing.assert_allclose(s, [0.75 + (np.log(0.7940) - lo) / (hi - lo) / 4,
                                   0.75 + (np.log(0.8392) - lo) / (hi - lo) / 4, s[2]], atol=2e-4)


def test_rmia_online_hand_computed():
    refs_in = np.array([[T, F, T],
                        [F, T, F]])  # every record has one IN and one OUT reference
    p_target = np.array([0.9, 0.6, 0.2])
    # Pr(x) = (mean_IN + mean_OUT) / 2: x0 (0.9 + 0.5)/2 = 0.7, x1 (0.8 + 0.4)/2 = 0.6, x2 (0.2 + 0.4)/2 = 0.3
    # LR(x) = [0.9/0.7, 0.6/0.6, 0.2/0.3] = [1.2857, 1.0, 0.6667]
    # Pr(z) = unscaled mean = [0.4, 0.2, 0.8, 0.2]; LR(z) = [1.25, 1.5, 0.75, 0.5]
    # gamma = 1: x0 beats 1.25, 0.75, 0.5; x1 beats 0.75, 0.5; x2 beats 0.5
    s = rmia_scores(p_target, P_REFS, refs_in, Z_TARGET, Z_REFS, a=0.5, online=True)
    np.testing.assert_allclose(paper_score(s, 4), [0.75, 0.5, 0.25])
    # a is ignored online
    np.testing.assert_array_equal(s, rmia_scores(p_target, P_REFS, refs_in, Z_TARGET, Z_REFS, a=0.0, online=True))


def test_rmia_online_needs_in_and_out_references():
    # record 2 is OUT for both references: no IN estimate
    with pytest.raises(ValueError, match="at least one IN and one OUT"):
        rmia_scores(P_TARGET, P_REFS, REFS_IN, Z_TARGET, Z_REFS, a=0.5, online=True)


def test_rmia_reference_scores_hand_computed():
    # Row 0: reference 0 is the target, reference 1 the only reference (refs_in[1] = [F, T, F]); a = 0.5.
    #   x0: OUT ref 1 -> Pr = 0.75*0.5 + 0.25 = 0.625, LR = 0.9/0.625 = 1.44
    #   x1: no OUT ref -> mean over all = 0.8 -> Pr = 0.85, LR = 0.4/0.85 = 0.4706
    #   x2: OUT ref 1 -> Pr = 0.55, LR = 0.2/0.55 = 0.3636
    #   z: Pr = 0.75*[0.2, 0.2, 0.7, 0.3] + 0.25 = [0.4, 0.4, 0.775, 0.475]
    #      LR(z) = [0.6/0.4, 0.2/0.4, 0.9/0.775, 0.1/0.475] = [1.5, 0.5, 1.1613, 0.2105]
    #   gamma = 1: x0 beats 0.5, 1.1613, 0.2105; x1 and x2 beat 0.2105
    s = rmia_reference_scores(P_REFS, REFS_IN, Z_REFS, a=0.5)
    np.testing.assert_allclose(paper_score(s[0], 4), [0.75, 0.25, 0.25])
    # row 1 is reference 1 attacked with reference 0 alone
    np.testing.assert_array_equal(s[1], rmia_scores(P_REFS[1], P_REFS[:1], REFS_IN[:1], Z_REFS[1], Z_REFS[:1], a=0.5))


# ---- LiRA: hand-computed cases ---------------------------------------------------------------------------
PHI_REFS = np.array([[4.0, 0.0, 3.0],
                     [1.0, 2.0, 0.0],
                     [2.0, 1.0, 2.0]])
PHI_IN = np.array([[T, F, T],
                   [F, T, F],
                   [F, F, T]])
PHI_TARGET = np.array([3.0, 0.5, 0.5])
# OUT: x0 {1, 2} mean 1.5, SS 0.5;  x1 {0, 1} mean 0.5, SS 0.5;  x2 {0} mean 0, SS 0
# IN:  x0 {4} mean 4;  x1 {2} mean 2;  x2 {3, 2} mean 2.5, SS 0.5
# pooled OUT variance = (0.5 + 0.5 + 0) / ((2-1) + (2-1) + (1-1)) = 0.5


def test_lira_offline_fixed_variance_hand_computed():
    # sigma = sqrt(0.5) = 0.70711; z = (phi - mu_OUT) / sigma = [1.5, 0, 0.5] / 0.70711 = [2.1213, 0, 0.70711]
    # score = -log P(N(0,1) >= z) = -log([0.016947, 0.5, 0.23975]) = [4.07764, 0.693147, 1.42816]
    s = lira_scores(PHI_TARGET, PHI_REFS, PHI_IN)
    np.testing.assert_allclose(s, [4.077639, 0.693147, 1.428158], atol=1e-5)


def test_lira_online_fixed_variance_hand_computed():
    # one std shared by IN and OUT: pooled variance = (SS_OUT 1.0 + SS_IN 0.5) / (dof_OUT 2 + dof_IN 1) = 0.5,
    # so LLR = [(x - mu_OUT)^2 - (x - mu_IN)^2] / (2 * 0.5):
    #   x0: (3 - 1.5)^2 - (3 - 4)^2 = 2.25 - 1 = 1.25
    #   x1: (0.5 - 0.5)^2 - (0.5 - 2)^2 = -2.25
    #   x2: (0.5 - 0)^2 - (0.5 - 2.5)^2 = 0.25 - 4 = -3.75
    s = lira_scores(PHI_TARGET, PHI_REFS, PHI_IN, online=True)
    np.testing.assert_allclose(s, [1.25, -2.25, -3.75], atol=1e-12)


def test_lira_offline_per_record_variance_hand_computed():
    phi_refs = np.array([[0.0, 1.0],
                         [1.0, 9.0],
                         [2.0, 3.0],
                         [9.0, 5.0]])
    refs_in = np.array([[F, F], [F, T], [F, F], [T, F]])
    # OUT: x0 {0, 1, 2} mean 1, sd (ddof 1) 1;  x1 {1, 3, 5} mean 3, sd 2
    # per record: z = [(2 - 1)/1, (4 - 3)/2] = [1, 0.5] -> -log sf = [1.841022, 1.175912]
    s = lira_scores([2.0, 4.0], phi_refs, refs_in, fixed_variance=False)
    np.testing.assert_allclose(s, [1.841022, 1.175912], atol=1e-5)
    # fixed: pooled variance (SS 2 + 8) / (dof 2 + 2) = 2.5, sigma 1.58114 -> z = [1, 1] / 1.58114 = 0.632456
    # for both -> -log sf(0.632456) = -log(0.263545) = 1.333533
    s = lira_scores([2.0, 4.0], phi_refs, refs_in, fixed_variance=True)
    np.testing.assert_allclose(s, [1.333533, 1.333533], atol=1e-5)


def test_lira_queries_are_fitted_per_query_and_averaged():
    rng = np.random.default_rng(3)
    phi_refs = rng.normal(size=(5, 40, 2))
    phi_refs[..., 1] *= 3.0  # a different spread per query: one std per query must be fitted
    refs_in = rng.random((5, 40)) < 0.5
    target = rng.normal(size=(40, 2))
    for online, fixed in [(False, True), (False, False)]:
        both = lira_scores(target, phi_refs, refs_in, online=online, fixed_variance=fixed)
        each = [lira_scores(target[:, q], phi_refs[..., q], refs_in, online=online, fixed_variance=fixed)
                for q in range(2)]
        np.testing.assert_allclose(both, (each[0] + each[1]) / 2)


def test_lira_no_out_reference_offline_uses_other_records_mean():
    refs_in = PHI_IN.copy()
    refs_in[:, 2] = True  # x2 is IN everywhere
    # OUT means of x0, x1 are 1.5 and 0.5 -> x2's OUT mean = 1.0; pooled variance (0.5 + 0.5) / 2 = 0.5
    s = lira_scores(PHI_TARGET, PHI_REFS, refs_in)
    assert np.all(np.isfinite(s))
    # x2: z = (0.5 - 1.0) / 0.70711 = -0.70711 -> -log sf(-0.70711) = -log(0.76025) = 0.274108
    np.testing.assert_allclose(s[2], 0.274108, atol=1e-5)


def test_lira_online_needs_in_and_out_references():
    refs_in = PHI_IN.copy()
    refs_in[:, 1] = False  # x1 has no IN reference
    with pytest.raises(ValueError, match="at least one IN and one OUT"):
        lira_scores(PHI_TARGET, PHI_REFS, refs_in, online=True)
    with pytest.raises(ValueError, match="at least one IN and one OUT"):
        lira_scores(PHI_TARGET, PHI_REFS, refs_in, online=True, fixed_variance=False)


def test_phi_from_logits_is_stable_and_matches_signals():
    from dpaudit.core.signals import Signals

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=7)
    expect = Signals(logits=logits, labels=labels).logit_confidence
    np.testing.assert_allclose(phi_from_logits(logits, labels), expect, rtol=1e-10, atol=1e-10)
    p = np.exp(logits[0, 0] - logits[0, 0].max())
    p /= p.sum()
    y = labels[0]
    np.testing.assert_allclose(phi_from_logits(logits[0, 0], y), np.log(p[y] / (1 - p[y])), rtol=1e-5)
    # p_y rounds to 1 in float64: log(p / (1 - p)) is inf, phi is 50 - log 2
    assert phi_from_logits(np.array([50.0, 0.0, 0.0]), 0) == pytest.approx(50.0 - np.log(2.0), abs=1e-9)
    # [K, n, Q, C] with labels [n, 1]
    assert phi_from_logits(rng.normal(size=(2, 7, 5, 10)), labels[:, None]).shape == (2, 7, 5)


# ---- leave-one-out and the target's membership ---------------------------------------------------------------

def _balanced_membership(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """Each record IN for exactly half the k models, so online variants are defined for every record."""
    base = np.arange(k)[:, None] < k // 2
    return np.take_along_axis(np.repeat(base, n, axis=1), rng.random((k, n)).argsort(0), axis=0)


@pytest.mark.parametrize("attack", ["rmia", "rmia_online", "lira", "lira_online", "lira_pr"])
def test_reference_scores_row_k_never_depends_on_refs_in_k(attack):
    rng = np.random.default_rng(1)
    k_refs, n, nz = 6, 50, 30
    refs_in = _balanced_membership(rng, k_refs, n)
    p = rng.uniform(0.05, 0.99, size=(k_refs, n))
    z = rng.uniform(0.05, 0.99, size=(k_refs, nz))
    phi = rng.normal(size=(k_refs, n, 2))

    def run(rin):
        if attack.startswith("rmia"):
            return rmia_reference_scores(p, rin, z, a=0.4, online=attack == "rmia_online")
        return lira_reference_scores(phi, rin, online=attack == "lira_online", fixed_variance=attack != "lira_pr")

    base = run(refs_in)
    for k in range(k_refs):
        flipped = refs_in.copy()
        flipped[k] = ~flipped[k]
        again = run(flipped)
        np.testing.assert_array_equal(again[k], base[k])
        # the flip is visible to the other rows, so the check above can fail
        assert not np.array_equal(np.delete(again, k, 0), np.delete(base, k, 0))


def test_target_membership_is_not_an_argument():
    for fn in (rmia_scores, rmia_reference_scores, choose_offline_a, lira_scores, lira_reference_scores):
        params = list(inspect.signature(fn).parameters)
        assert [q for q in params if q.endswith("_in")] == ["refs_in"], (fn.__name__, params)
        assert not any("member" in q for q in params)
    # choose_offline_a sees only reference rows: no target probabilities either
    assert not any("target" in q for q in inspect.signature(choose_offline_a).parameters)


def test_reference_scores_need_two_references():
    with pytest.raises(ValueError, match="at least 2"):
        rmia_reference_scores(P_REFS[:1], REFS_IN[:1], Z_REFS[:1], a=0.5)
    with pytest.raises(ValueError, match="at least 2"):
        lira_reference_scores(PHI_REFS[:1], PHI_IN[:1])


# ---- synthetic data: per-record calibration beats a global loss threshold ------------------------------------

def _synthetic(seed: int, k_refs: int = 4, n: int = 2000, nz: int = 1000, balanced: bool = False):
    """Logit of the true label = per-record difficulty + a membership gain (larger on hard records, as
    real models memorise what they do not generalise to) + per-model noise; row 0 is the target."""
    rng = np.random.default_rng(seed)
    diff = rng.normal(2.0, 2.0, n)
    zdiff = rng.normal(2.0, 2.0, nz)
    member = rng.random((k_refs + 1, n)) < 0.5
    if balanced:
        member[1:] = _balanced_membership(rng, k_refs, n)
    gain = 0.4 + 1.2 * expit(-diff)
    phi = diff + gain * member + rng.normal(0.0, 0.6, (k_refs + 1, n))
    zphi = zdiff + rng.normal(0.0, 0.6, (k_refs + 1, nz))
    return phi, expit(phi), member, zphi, expit(zphi)


def test_rmia_and_lira_beat_the_loss_attack_on_synthetic_data():
    phi, p, member, _, pz = _synthetic(seed=0)
    y = member[0]
    loss_auc = auc(np.log(p[0]), y)  # -loss
    a = choose_offline_a(p[1:], member[1:], pz[1:])
    rmia_auc = auc(rmia_scores(p[0], p[1:], member[1:], pz[0], pz[1:], a=a), y)
    lira_auc = auc(lira_scores(phi[0], phi[1:], member[1:]), y)
    assert 0.55 < loss_auc < 0.65, loss_auc  # difficulty varies far more than the membership gain
    assert rmia_auc > loss_auc + 0.05, (rmia_auc, loss_auc)
    assert lira_auc > loss_auc + 0.05, (lira_auc, loss_auc)

    # online variants, where every record has IN and OUT references
    phi, p, member, _, pz = _synthetic(seed=1, balanced=True)
    y = member[0]
    loss_auc = auc(np.log(p[0]), y)
    assert auc(rmia_scores(p[0], p[1:], member[1:], pz[0], pz[1:], a=0.0, online=True), y) > loss_auc + 0.05
    assert auc(lira_scores(phi[0], phi[1:], member[1:], online=True), y) > loss_auc + 0.05


def test_choose_offline_a_uses_references_only_and_returns_a_grid_value():
    _, p, member, _, pz = _synthetic(seed=2, n=600, nz=300)
    grid = np.linspace(0.0, 1.0, 11)
    a = choose_offline_a(p[1:], member[1:], pz[1:], grid=grid)
    assert a in grid
    # it maximises the mean leave-one-out AUC over the references, ties to the smaller a
    means = [np.mean([auc(s, member[1 + k]) for k, s in enumerate(rmia_reference_scores(
        p[1:], member[1:], pz[1:], a=g))]) for g in grid]
    assert a == grid[int(np.argmax(means))]
    assert choose_offline_a(p[1:], member[1:], pz[1:]) in A_GRID
    # K = 1: nothing to tune on
    assert choose_offline_a(p[1:2], member[1:2], pz[1:2]) == DEFAULT_OFFLINE_A


# ---- shifted queries -----------------------------------------------------------------------------------------

def test_model_logits_queries():
    from dpaudit.training.inference import model_logits, model_logits_queries

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 1, 28, 28), dtype=np.uint8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    q = model_logits_queries(net, images)
    assert q.shape == (5, 5, 10) and q.dtype == np.float32
    np.testing.assert_array_equal(q[:, 0], model_logits(net, images))
    assert not np.allclose(q[:, 1], q[:, 0])

    # identity "model": logits are the normalised pixels, so the argmax is where the one bright pixel went
    one = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    one[0, 0, 5, 7] = 255
    one[1, 0, 0, 27] = 255  # on the border: shifted right it leaves the image (no wrap-around as torch.roll)
    shifts = ((0, 0), (1, 0), (0, -1), (2, 3), (0, 1))
    out = model_logits_queries(torch.nn.Flatten(), one, shifts=shifts, batch=1)
    assert out.shape == (2, 5, 784)
    for j, (dy, dx) in enumerate(shifts):
        assert np.unravel_index(out[0, j].argmax(), (28, 28)) == (5 + dy, 7 + dx)
    assert out[1, 4].max() == out[1, 4].min()  # only background left: the fill is real background
    assert out[1, 4, 0] == out[0, 0, 0]
