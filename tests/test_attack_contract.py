"""The contract every registered attack must pass (as Opacus's grad samplers or dp_accounting's accountants each
pass one shared test): shapes, determinism, and no tuning that sees the membership of the model it scores."""
import dataclasses

import numpy as np
import pytest

from dpaudit.core.attack_registry import ATTACKS, AttackInput, run_attack
from dpaudit.core.signals import Signals


def _signals(seed=0, k=8, n=240, nz=120, c=5, q=3):
    """K balanced reference models (every record IN for half of them, so online variants run too) and a target
    whose row leaks its membership; per-record difficulty makes the calibrated attacks matter."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    membership = np.zeros((k + 1, n), dtype=bool)
    membership[0, rng.permutation(n)[: n // 2]] = True
    for i in range(n):
        membership[1 + rng.permutation(k)[: k // 2], i] = True
    difficulty = rng.normal(0, 1.5, n)
    logits = rng.normal(size=(k + 1, n, c))
    logits[:, np.arange(n), labels] += difficulty + np.where(membership, 1.5, 0.0)
    queries = logits[:, :, None, :] + rng.normal(0, 0.2, size=(k + 1, n, q, c))
    queries[:, :, 0, :] = logits
    zl = rng.normal(size=(k + 1, nz, c))
    zlab = rng.integers(0, c, nz)
    zl[:, np.arange(nz), zlab] += rng.normal(0, 1.5, nz)
    inp = AttackInput(pool=Signals(logits.astype(np.float32), labels), ref_in=membership[1:],
                      population=Signals(zl.astype(np.float32), zlab), pool_queries=queries.astype(np.float32),
                      options={"shadow_classifier": "logreg"}, seed=0)
    return inp, membership[0]


@pytest.fixture(scope="module")
def signals():
    return _signals()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_shapes_finite_and_deterministic(name, signals):
    inp, _ = signals
    a, b = run_attack(name, inp), run_attack(name, inp)
    assert a.target.shape == (inp.ref_in.shape[1],) and a.reference.shape == inp.ref_in.shape
    assert np.all(np.isfinite(a.target)) and np.all(np.isfinite(a.reference))
    assert np.array_equal(a.target, b.target) and np.array_equal(a.reference, b.reference)
    assert a.description


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_target_membership_is_not_an_input(name, signals):
    """The target's row of the membership matrix is not in AttackInput; the threshold and bounds that the audit
    derives from the scores depend only on the references, so flipping the target's truth only swaps counts."""
    from conftest import small_config
    from dpaudit.pipeline import _evaluate_attack

    inp, target_in = signals
    assert "membership" not in {f.name for f in dataclasses.fields(AttackInput)}
    cfg = small_config()
    a, a_scores = _evaluate_attack(name, inp, target_in, cfg, delta=1e-5, seed=0, confidence=0.95)
    b, b_scores = _evaluate_attack(name, inp, ~target_in, cfg, delta=1e-5, seed=0, confidence=0.95)
    assert np.array_equal(a_scores, b_scores)
    assert a.metrics.threshold == b.metrics.threshold
    assert a.epsilon_lb.threshold == b.epsilon_lb.threshold
    assert a.metrics.counts.tp == b.metrics.counts.fp


@pytest.mark.slow  # re-runs every attack twice more (nested tuning): the full suite, not the fast loop
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_reference_rows_are_out_of_sample(name, signals):
    """Reference k's scores (on which thresholds are chosen) never use reference k's own membership: not in
    fitting and not in tuning, as the target's scores never use the target's."""
    inp, _ = signals
    base = run_attack(name, inp)
    for k in (0, inp.ref_in.shape[0] - 1):  # the first and the last reference (each flip re-runs the attack)
        flipped = inp.ref_in.copy()
        # swap one member and one non-member of reference k: the row stays balanced, so online variants run
        i, j = np.flatnonzero(flipped[k])[0], np.flatnonzero(~flipped[k])[0]
        flipped[k, i], flipped[k, j] = False, True
        out = run_attack(name, dataclasses.replace(inp, ref_in=flipped))
        assert np.allclose(out.reference[k], base.reference[k], rtol=0, atol=1e-12), (name, k)
    # and the contract can fail: another reference's truth does move row k (except for attacks with no fitting)
    if name != "loss":
        moved = inp.ref_in.copy()
        moved[1] = ~moved[1]
        assert not np.array_equal(run_attack(name, dataclasses.replace(inp, ref_in=moved)).reference[0],
                                  base.reference[0])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_beats_chance_on_a_leaking_target(name, signals):
    from dpaudit.attacks.metrics import auc

    inp, target_in = signals
    assert auc(run_attack(name, inp).target, target_in) > 0.6


@pytest.mark.slow  # re-runs every attack (nested tuning): the full suite, not the fast loop
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_reference_rows_leave_their_group_out(name, signals):
    """References drawn together (a pair splitting the pool: each one's membership the complement of the
    other's) are left out together: reference 0's row never uses its partner's membership either, since
    that would reveal its own."""
    inp, _ = signals
    grouped = dataclasses.replace(inp, ref_groups=np.arange(inp.ref_in.shape[0]) // 2)
    base = run_attack(name, grouped)
    moved = grouped.ref_in.copy()
    i, j = np.flatnonzero(moved[1])[0], np.flatnonzero(~moved[1])[0]
    moved[1, i], moved[1, j] = False, True  # the partner's membership changes, balanced
    out = run_attack(name, dataclasses.replace(grouped, ref_in=moved))
    assert np.allclose(out.reference[0], base.reference[0], rtol=0, atol=1e-12), name
    # and without the grouping the same change does reach row 0 (the test can fail), except with no fitting
    if name != "loss":
        plain_base = run_attack(name, inp)
        plain = run_attack(name, dataclasses.replace(inp, ref_in=moved))
        assert not np.array_equal(plain.reference[0], plain_base.reference[0])


def test_infer_groups_finds_pairs_that_split_the_pool():
    from dpaudit.attacks.groups import infer_groups
    from dpaudit.core.splits import make_splits

    sp = make_splits(np.arange(3000) % 10, members=500, n_models=6, n_test=500, seed=1)
    assert list(infer_groups(sp.membership[1:])) == list(sp.ref_groups) == [0, 0, 1, 1, 2]
    few = make_splits(np.arange(3000) % 10, members=500, n_models=3, n_test=500, seed=1)
    assert list(infer_groups(few.membership[1:])) == [0, 1]
