"""One inference pass per model: logits for every record, from which every attack's signal derives.

Signals are matrices indexed [model, record] so that an attack reads the reference models' rows and the
target's row from the same arrays, and no attack runs inference of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp

from .train import to_tensor


def model_logits(module: torch.nn.Module, images: np.ndarray, device: str | torch.device = "cpu",
                 batch: int = 1024) -> np.ndarray:
    """float32 [n, C] logits, in one batched pass under inference mode."""
    module = module.to(device).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out.append(module(to_tensor(images[i:i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)



def model_logits_queries(module: torch.nn.Module, images: np.ndarray,
                         shifts: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
                         device: str | torch.device = "cpu", batch: int = 1024) -> np.ndarray:
    """float32 [n, Q, C] logits of each image shifted by each (dy, dx) in ``shifts`` (query q = shifts[q]).

    A shift moves pixel (r, c) to (r + dy, c + dx); pixels shifted out are lost and the uncovered border
    is 0 in raw pixel space (background), not wrapped round as torch.roll would. Padding the raw images
    before ``to_tensor`` normalises them keeps the fill equal to real background.
    """
    imgs = np.asarray(images)
    if not shifts:
        raise ValueError("shifts must hold at least one (dy, dx)")
    h, w = imgs.shape[-2:]
    p = max(max(abs(int(dy)), abs(int(dx))) for dy, dx in shifts)
    padded = np.pad(imgs, [(0, 0)] * (imgs.ndim - 2) + [(p, p), (p, p)])
    return np.stack([model_logits(module, padded[..., p - dy:p - dy + h, p - dx:p - dx + w], device, batch)
                     for dy, dx in ((int(dy), int(dx)) for dy, dx in shifts)], axis=1)

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
