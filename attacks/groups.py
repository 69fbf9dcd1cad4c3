"""Which reference models may score which: out-of-sample reference scores leave out a reference's whole group.

Reference models trained in pairs that split the pool (see dpaudit.splits) are not independent: one's
membership is the complement of its partner's, so a score for reference k that used its partner's membership
would be using k's own. ``groups[k]`` names reference k's group; scoring k (and tuning for k) uses only
references outside it. ``None`` means every reference is its own group (plain leave-one-out).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["can_cross_fit", "check_groups", "infer_groups", "outside"]


def check_groups(groups: Any, k: int) -> np.ndarray:
    """int [k] group labels; ``None`` gives each reference its own."""
    if groups is None:
        return np.arange(k)
    g = np.asarray(groups)
    if g.shape != (k,) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups must be {k} integer labels, one per reference model, got {g.shape} {g.dtype}")
    return g


def outside(groups: np.ndarray, k: int) -> np.ndarray:
    """bool [K]: the references that may score reference k (those outside its group)."""
    return groups != groups[k]


def can_cross_fit(groups: np.ndarray) -> bool:
    """Whether every reference has at least one reference outside its group to be scored against."""
    return bool(groups.size) and all(outside(groups, k).any() for k in range(groups.size))


def infer_groups(refs_in: Any) -> np.ndarray:
    """Groups for references whose design was not recorded: any two that share no member were drawn together
    (a pair splitting the pool; independent random halves of a realistic pool always overlap), and so are the
    groups that chain through such pairs."""
    rin = np.asarray(refs_in, dtype=bool)
    k = rin.shape[0]
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    overlap = rin.astype(np.int64) @ rin.T.astype(np.int64)
    for i in range(k):
        for j in range(i + 1, k):
            if overlap[i, j] == 0 and rin[i].any() and rin[j].any():
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(k)]
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)
