"""The reference-pool structure: attacks fit on reference rows only, and beat chance where there is a leak."""
import math

import numpy as np
import pytest

from conftest import small_config
from dpaudit.core.attack_registry import AttackInput, run_attack
from dpaudit.core.signals import Signals
from dpaudit.pipeline import _evaluate_attack, run_audit


def _pool(seed=0, k=5, n=400, c=10):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    membership = np.zeros((k, n), dtype=bool)
    for i in range(k):
        membership[i, rng.permutation(n)[: n // 2]] = True
    logits = rng.normal(size=(k, n, c)).astype(np.float32)
    # The target's row (0) encodes its own membership perfectly; reference rows carry none.
    logits[0, np.arange(n), labels] += np.where(membership[0], 8.0, -8.0)
    return Signals(logits=logits, labels=labels), membership


@pytest.mark.parametrize("attack", ["loss", "shadow"])
def test_target_truth_never_enters_fitting(attack):
    sig, membership = _pool()
    cfg = small_config(shadow_classifier="logreg")
    flipped = membership.copy()
    flipped[0] = ~flipped[0]
    inp = AttackInput(pool=sig, ref_in=membership[1:], options={"shadow_classifier": "logreg"}, seed=cfg.seed)
    a, a_scores = _evaluate_attack(attack, inp, membership[0], cfg, delta=1e-5, seed=0, confidence=0.95)
    b, b_scores = _evaluate_attack(attack, inp, flipped[0], cfg, delta=1e-5, seed=0, confidence=0.95)
    # the attack's scores do not depend on the target's membership: it is not among the attack's inputs
    assert np.array_equal(a_scores, b_scores)
    assert np.array_equal(run_attack(attack, inp).reference, run_attack(attack, inp).reference)
    # the threshold comes from the reference rows, so it is the same whichever records the target trained on
    assert a.metrics.threshold == b.metrics.threshold
    assert a.epsilon_lb.threshold == b.epsilon_lb.threshold
    # and the flip only swaps the outcome counts
    assert a.metrics.counts.tp == b.metrics.counts.fp


@pytest.mark.slow
def test_membership_matrix_reaches_training():
    """Each model's record says it trained on exactly its row of the membership matrix."""
    import warnings

    import torch

    from dpaudit.core.splits import make_splits
    from dpaudit.training.data import load_dataset

    cfg = small_config(epsilons=(math.inf,), epochs=1, attacks=("loss",), shadow_models=2)
    # a library call leaves the caller's process as it found it
    np.random.seed(123)
    torch.manual_seed(456)
    torch.set_num_threads(2)
    before = (np.random.get_state()[1].copy(), torch.random.get_rng_state().clone(), torch.get_num_threads(),
              list(warnings.filters))
    rep, extras = run_audit(cfg, progress=False)
    after = (np.random.get_state()[1], torch.random.get_rng_state(), torch.get_num_threads(), list(warnings.filters))
    assert np.array_equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert before[2] == after[2] and before[3] == after[3]
    sp = make_splits(load_dataset().labels, members=cfg.members, n_models=3, n_test=cfg.n_test, seed=cfg.seed)
    assert rep["split"]["target_members_sha256"] == sp.summary()["target_members_sha256"]
    assert rep["models"][0]["training"]["n_train"] == cfg.members
    idx, truth, _ = extras["scores"][("non-dp", "loss")]
    assert np.array_equal(idx, sp.pool_idx) and np.array_equal(truth, sp.membership[0])


@pytest.mark.slow
def test_overfit_model_is_attackable():
    cfg = small_config(members=200, epsilons=(math.inf,), epochs=60, shadow_models=4, n_boot=300, seed=5)
    rep, _ = run_audit(cfg, progress=False)
    m = rep["models"][0]
    assert m["training"]["train_accuracy"] > 0.99
    for a in m["attacks"]:
        assert a["metrics"]["auc_ci"][0] > 0.5, (a["attack"], a["metrics"]["auc"], a["metrics"]["auc_ci"])
