"""Seeded index sets: a test set, a population pool, which pool records each model trains on, and canaries.

The order of draws is fixed (test, then pool, then canaries from what is left) so that enabling canaries
or adding reference models never changes the target's members.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DPAuditError


@dataclass(frozen=True)
class Splits:
    seed: int
    test_idx: np.ndarray  # dataset indices used only to measure accuracy
    pool_idx: np.ndarray  # dataset indices of the population pool
    membership: np.ndarray  # bool [n_models, pool_size]; row 0 is the target, rows 1.. the references
    canary_idx: np.ndarray  # dataset indices of canary images (empty without canaries)
    canary_labels: np.ndarray  # the wrong labels the canaries carry
    canary_in: np.ndarray  # bool [m]: which canaries the target trains on

    @property
    def n_models(self) -> int:
        return int(self.membership.shape[0])

    @property
    def members(self) -> int:
        return int(self.membership[0].sum())

    def train_indices(self, model: int) -> np.ndarray:
        """Dataset indices model ``model`` trains on (canaries excluded)."""
        return self.pool_idx[self.membership[model]]

    def summary(self) -> dict:
        return {"seed": self.seed, "n_test": int(self.test_idx.size), "pool_size": int(self.pool_idx.size),
                "members": self.members, "n_models": self.n_models, "canaries": int(self.canary_idx.size),
                "canaries_in": int(self.canary_in.sum()),
                "pool_sha256": _hash(self.pool_idx), "target_members_sha256": _hash(self.train_indices(0))}


def _hash(a: np.ndarray) -> str:
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
    membership = np.zeros((n_models, pool_size), dtype=bool)
    for k in range(n_models):
        membership[k, rng.permutation(pool_size)[:members]] = True
    n_classes = int(labels.max()) + 1
    # A wrong label (never the true one) makes a canary easy to memorise and hard to generalise to.
    canary_labels = (labels[canary_idx] + rng.integers(1, n_classes, size=canaries)) % n_classes
    canary_in = rng.random(canaries) < 0.5
    return Splits(seed=seed, test_idx=test_idx, pool_idx=pool_idx, membership=membership,
                  canary_idx=canary_idx, canary_labels=canary_labels.astype(np.int64), canary_in=canary_in)


def splits_for_target(labels: np.ndarray, members: np.ndarray, *, n_models: int, n_test: int,
                      seed: int = 0) -> Splits:
    """Splits around a target trained elsewhere on the dataset records ``members``.

    The pool is those members plus as many non-members, drawn (seeded) from the records the target did not
    train on, after a test split also drawn from them; reference models (rows 1..) train on random halves
    of the pool, the target's own training-set size. Assumes, as the user states, that the target trained
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
    for k in range(1, n_models):
        membership[k, rng.permutation(pool_idx.size)[:m]] = True
    empty = np.zeros(0, dtype=np.int64)
    return Splits(seed=seed, test_idx=test_idx, pool_idx=pool_idx, membership=membership, canary_idx=empty,
                  canary_labels=empty, canary_in=np.zeros(0, dtype=bool))
