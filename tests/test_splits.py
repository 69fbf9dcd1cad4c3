import numpy as np
import pytest

from dpaudit.core.splits import make_splits
from dpaudit.errors import DPAuditError

LABELS = np.arange(5000) % 10
EXPECTED_COINS = [True, False, True, False, True, False, False, False]


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


def test_references_come_in_pairs_that_split_the_pool():
    sp = make_splits(LABELS, members=500, n_models=7, n_test=1000, seed=2)
    refs = sp.membership[1:]
    assert (refs.sum(1) == 500).all()  # every reference trains on the target's number of pool records
    for j in (0, 2, 4):
        assert not (refs[j] & refs[j + 1]).any() and (refs[j] | refs[j + 1]).all()
    # so every pool record is IN exactly half of the references: online attacks work from K = 4
    assert (refs.sum(0) == 3).all()
    assert list(sp.ref_groups) == [0, 0, 1, 1, 2, 2]
    # an odd last reference draws a random half alone
    odd = make_splits(LABELS, members=500, n_models=6, n_test=1000, seed=2)
    assert odd.membership[5].sum() == 500 and (odd.membership[1] ^ odd.membership[2]).all()
    assert list(odd.ref_groups) == [0, 0, 1, 1, 2]
    # below four references there is no pair to leave out with each one: independent random halves
    few = make_splits(LABELS, members=500, n_models=4, n_test=1000, seed=2)
    assert list(few.ref_groups) == [0, 1, 2] and (few.membership[1] & few.membership[2]).any()


def test_pairing_and_reference_canaries_leave_the_target_alone():
    # the target's members and canary coins are drawn before any reference's canaries, whatever K is
    sp = make_splits(LABELS, members=500, n_models=5, n_test=1000, canaries=200, seed=7)
    for n_models in (2, 3, 9):
        more = make_splits(LABELS, members=500, n_models=n_models, n_test=1000, canaries=200, seed=7)
        assert (sp.membership[0] == more.membership[0]).all()
    # pairing draws exactly what independent halves drew, so the target's canaries are those of earlier versions
    # at the same K (pinned: the reference audit's canaries depend on it)
    assert int(sp.canary_in.sum()) == 100 and sp.canary_in[:8].tolist() == EXPECTED_COINS


def test_references_train_on_as_many_canaries_as_the_target():
    sp = make_splits(LABELS, members=500, n_models=5, n_test=1000, canaries=200, seed=3)
    n_in = int(sp.canary_in.sum())
    assert sp.ref_canary_in.shape == (4, 200)
    assert (sp.ref_canary_in.sum(1) == n_in).all()
    assert (sp.canaries_of(0) == sp.canary_in).all() and (sp.canaries_of(2) == sp.ref_canary_in[1]).all()
    # each reference draws its own canaries
    assert len({r.tobytes() for r in sp.ref_canary_in}) == 4
    assert make_splits(LABELS, members=500, n_models=3, n_test=1000, seed=3).ref_canary_in is None
