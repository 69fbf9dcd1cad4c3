"""Typed signals: the logit matrices every attack reads, from one inference pass per model
(``dpaudit.training.inference``), and what derives from them (losses, probabilities).

Signals are matrices indexed [model, record] so that an attack reads the reference models' rows and the
target's row from the same arrays, and no attack runs inference of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp


@dataclass(frozen=True)
class Signals:
    logits: np.ndarray  # float32 [n_models, n_records, C]
    labels: np.ndarray  # int64 [n_records]

    @property
    def log_probs(self) -> np.ndarray:
        return log_softmax(self.logits.astype(np.float64), axis=-1)

    @property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)

    @property
    def losses(self) -> np.ndarray:
        """Cross-entropy of the true label, [n_models, n_records]."""
        lp = self.log_probs
        return -np.take_along_axis(lp, self.labels[None, :, None], axis=-1)[..., 0]

    @property
    def logit_confidence(self) -> np.ndarray:
        """log p_y - log sum_{y' != y} p_y' (Carlini et al. 2022): near-Gaussian across models, which
        LiRA-style attacks need."""
        lp = self.log_probs
        true = np.take_along_axis(lp, self.labels[None, :, None], axis=-1)[..., 0]
        mask = np.ones_like(lp, dtype=bool)
        np.put_along_axis(mask, self.labels[None, :, None].repeat(lp.shape[0], 0), False, axis=-1)
        rest = logsumexp(np.where(mask, lp, -np.inf), axis=-1)
        return true - rest
