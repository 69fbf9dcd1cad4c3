"""Loss-threshold attack (Yeom et al., 2018, "Privacy Risk in Machine Learning"): guess "member"
when the target model's loss on a record is low."""
from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import best_balanced_threshold

__all__ = ["calibrate_threshold", "scores_from_losses"]


def scores_from_losses(losses: Any) -> np.ndarray:
    """Attack scores from per-record losses: ``-loss``, so that higher = more likely member."""
    return -np.asarray(losses, dtype=np.float64)


def calibrate_threshold(ref_scores: Any, ref_in: Any) -> float:
    """Threshold on scores, chosen on reference models only.

    ``ref_scores[k, i]`` is the score of record i under reference model k and ``ref_in[k, i]``
    whether record i was in that model's training set. All rows are pooled and the threshold
    maximising balanced accuracy is returned. The target's membership truth is never passed in,
    so the threshold can then be applied to the target without overstating the attack.
    """
    s = np.asarray(ref_scores)
    y = np.asarray(ref_in)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"ref_scores and ref_in must be 2-D [K, n] of equal shape, got {s.shape} and {y.shape}")
    return best_balanced_threshold(s.ravel(), y.ravel())
