"""Seeded index sets: a test set, a population pool, which pool records each model trains on, and canaries.

The order of draws is fixed (test, then pool, then canaries from what is left, then one permutation of the
pool per model, then the canaries' labels and coins) so that enabling canaries or adding reference models never
changes the target's members, and pairing the references changed nothing the target draws.

Reference models come in pairs that split the pool between them (LiRA's and RMIA's code train each record IN
exactly half of the reference models): with the pool twice the target's training set, each pool record is IN
for exactly one model of every pair, so K = 4 references already give every record two IN and two OUT models,
which the online attacks need, and every reference trains on exactly the target's number of pool records.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpaudit.errors import DPAuditError


@dataclass(frozen=True)
class Splits:
    seed: int
    test_idx: np.ndarray  # dataset indices used only to measure accuracy
    pool_idx: np.ndarray  # dataset indices of the population pool
    membership: np.ndarray  # bool [n_models, pool_size]; row 0 is the target, rows 1.. the references
    canary_idx: np.ndarray  # dataset indices of canary images (empty without canaries)
    canary_labels: np.ndarray  # the wrong labels the canaries carry
    canary_in: np.ndarray  # bool [m]: which canaries the target trains on
    # bool [K, m]: which canaries each reference model trains on; each takes as many as the target, so that it
    # trains on the target's training-set size (the same q and steps under DP). None: no canaries.
    ref_canary_in: np.ndarray | None = None

    @property
    def n_models(self) -> int:
        return int(self.membership.shape[0])

    @property
    def ref_groups(self) -> np.ndarray:
        """Which references were drawn together (attacks.groups): scoring one leaves its group out."""
        return reference_groups(self.n_models - 1)

    @property
    def members(self) -> int:
        return int(self.membership[0].sum())

    def train_indices(self, model: int) -> np.ndarray:
        """Dataset indices model ``model`` trains on (canaries excluded)."""
        return self.pool_idx[self.membership[model]]

    def canaries_of(self, model: int) -> np.ndarray:
        """bool [m]: which canaries model ``model`` (0 the target) trains on."""
        if model == 0:
            return self.canary_in
        if self.ref_canary_in is None:
            return np.zeros(self.canary_idx.size, dtype=bool)
        return self.ref_canary_in[model - 1]

    def summary(self) -> dict:
        return {"seed": self.seed, "n_test": int(self.test_idx.size), "pool_size": int(self.pool_idx.size),
                "members": self.members, "n_models": self.n_models, "canaries": int(self.canary_idx.size),
                "canaries_in": int(self.canary_in.sum()),
                "pool_sha256": index_hash(self.pool_idx), "target_members_sha256": index_hash(self.train_indices(0))}


def index_hash(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def make_splits(labels: np.ndarray, *, members: int, n_models: int, n_test: int, canaries: int = 0,
                pool_size: int | None = None, seed: int = 0) -> Splits:
    """Each of ``n_models`` models trains on a seeded random subset of ``members`` pool records.

    ``pool_size`` defaults to ``2 * members`` so that the target has as many non-members as members.
    """
    n = int(labels.shape[0])
    pool_size = 2 * members if pool_size is None else pool_size
    if members < 1:
        raise DPAuditError(f"--members must be at least 1, got {members}")
    if n_models < 1:
        raise DPAuditError("an audit needs at least the target model")
    if members > pool_size // 2:
        raise DPAuditError(f"--members {members} is more than half the pool ({pool_size}); "
                           f"the target needs as many non-members as members")
    need = n_test + pool_size + canaries
    if need > n:
        raise DPAuditError(f"the dataset has {n} records but the audit needs {need} "
                           f"({n_test} test + {pool_size} pool + {canaries} canaries); lower --members or --canaries")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    test_idx = np.sort(perm[:n_test])
    pool_idx = np.sort(perm[n_test:n_test + pool_size])
    canary_idx = np.sort(perm[n_test + pool_size:n_test + pool_size + canaries])
    perms = [rng.permutation(pool_size) for _ in range(n_models)]
    membership = np.zeros((n_models, pool_size), dtype=bool)
    membership[0, perms[0][:members]] = True
    _pair_references(membership, perms, members)
    n_classes = int(labels.max()) + 1
    # A wrong label (never the true one) makes a canary easy to memorise and hard to generalise to. The labels
    # and coins follow the models' permutations in the one stream, so the number of reference models changes
    # them (not their validity: each coin is still fair and independent). Kept so, so that audits keep their
    # canaries from one version to the next; a stream of their own is the change to make with a new baseline.
    canary_labels = (labels[canary_idx] + rng.integers(1, n_classes, size=canaries)) % n_classes
    canary_in = rng.random(canaries) < 0.5
    # References draw after the target's coins, so they never change which canaries the target trains on.
    n_in = int(canary_in.sum())
    ref_canary_in = np.zeros((n_models - 1, canaries), dtype=bool)
    for k in range(n_models - 1):
        ref_canary_in[k, rng.permutation(canaries)[:n_in]] = True
    return Splits(seed=seed, test_idx=test_idx, pool_idx=pool_idx, membership=membership,
                  canary_idx=canary_idx, canary_labels=canary_labels.astype(np.int64), canary_in=canary_in,
                  ref_canary_in=ref_canary_in if canaries else None)


# Pairs need at least two of them: a reference's out-of-sample scores leave its partner out too (its membership
# is the complement of the reference's own), and something must be left to score it against.
MIN_PAIRED = 4


def reference_groups(n_refs: int) -> np.ndarray:
    """Group label of each reference model (attacks.groups): pairs (0, 0, 1, 1, ...) from ``MIN_PAIRED`` references
    on, an odd last one alone; each on its own below that."""
    if n_refs < MIN_PAIRED:
        return np.arange(n_refs)
    return np.arange(n_refs) // 2


def _pair_references(membership: np.ndarray, perms: list[np.ndarray], members: int) -> None:
    """Rows 1.. of ``membership``: references 2j+1 and 2j+2 take the first and second ``members`` records of
    one permutation (row 2j+1's), so a pair never shares a record and, with the pool twice ``members``, covers
    it; an odd last reference, or every reference when there are fewer than ``MIN_PAIRED``, takes a random half
    alone. The second of a pair's permutations is drawn and not used, so the draws after it do not depend on
    the pairing."""
    groups = reference_groups(membership.shape[0] - 1)
    for k in range(1, membership.shape[0]):
        paired = int((groups == groups[k - 1]).sum()) == 2
        if paired and k % 2 == 0:
            membership[k, perms[k - 1][members:2 * members]] = True
        else:
            membership[k, perms[k][:members]] = True


def splits_for_target(labels: np.ndarray, members: np.ndarray, *, n_models: int, n_test: int,
                      seed: int = 0) -> Splits:
    """Splits around a target trained elsewhere on the dataset records ``members``.

    The pool is those members plus as many non-members, drawn (seeded) from the records the target did not
    train on, after a test split also drawn from them; reference models (rows 1..) train on random halves
    of the pool in complementary pairs, the target's own training-set size. Assumes, as the user states, that the target trained
    on exactly ``members`` and on nothing else of this dataset."""
    n = int(labels.shape[0])
    m = int(members.size)
    rest = np.setdiff1d(np.arange(n), members)
    if rest.size < n_test + m:
        raise DPAuditError(f"the dataset has {rest.size} records outside the target's {m} members, but the audit "
                           f"needs {n_test + m} ({n_test} test + {m} non-members); lower --n-test or give more data")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rest)
    test_idx = np.sort(perm[:n_test])
    pool_idx = np.sort(np.concatenate([members, perm[n_test:n_test + m]]))
    membership = np.zeros((n_models, pool_idx.size), dtype=bool)
    membership[0] = np.isin(pool_idx, members)
    # one permutation per model, as make_splits draws them (row 0's unused: the target's members are given)
    _pair_references(membership, [rng.permutation(pool_idx.size) for _ in range(n_models)], m)
    empty = np.zeros(0, dtype=np.int64)
    return Splits(seed=seed, test_idx=test_idx, pool_idx=pool_idx, membership=membership, canary_idx=empty,
                  canary_labels=empty, canary_in=np.zeros(0, dtype=bool))
