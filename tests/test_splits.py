import numpy as np
import pytest

from dpaudit.errors import DPAuditError
from dpaudit.splits import make_splits

LABELS = np.arange(5000) % 10


def test_membership_matrix_and_disjointness():
    sp = make_splits(LABELS, members=500, n_models=5, n_test=1000, canaries=200, seed=1)
    assert sp.membership.shape == (5, 1000)
    assert (sp.membership.sum(1) == 500).all()
    sets = [set(sp.test_idx), set(sp.pool_idx), set(sp.canary_idx)]
    assert sum(map(len, sets)) == len(set().union(*sets)) == 2200
    for k in range(5):
        assert set(sp.train_indices(k)) == set(sp.pool_idx[sp.membership[k]])
    # canaries carry a wrong label, never their own
    assert (sp.canary_labels != LABELS[sp.canary_idx]).all()
    assert 60 < sp.canary_in.sum() < 140


def test_seeded_and_canaries_do_not_move_the_target():
    a = make_splits(LABELS, members=500, n_models=3, n_test=1000, seed=4)
    b = make_splits(LABELS, members=500, n_models=3, n_test=1000, seed=4, canaries=300)
    c = make_splits(LABELS, members=500, n_models=3, n_test=1000, seed=5)
    assert (a.pool_idx == b.pool_idx).all() and (a.test_idx == b.test_idx).all()
    assert not np.array_equal(a.pool_idx, c.pool_idx)
    assert a.summary()["target_members_sha256"] == make_splits(
        LABELS, members=500, n_models=3, n_test=1000, seed=4).summary()["target_members_sha256"]


@pytest.mark.parametrize("kw,msg", [
    (dict(members=600, pool_size=1000), "more than half the pool"),
    (dict(members=3000), "needs"),
    (dict(members=0), "at least 1"),
])
def test_bad_split_requests(kw, msg):
    with pytest.raises(DPAuditError, match=msg):
        make_splits(LABELS, n_models=2, n_test=1000, **kw)
