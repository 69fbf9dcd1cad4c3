"""Inference: one batched pass per model gives the logits every attack's signal derives from (torch)."""
from __future__ import annotations

import numpy as np
import torch

from dpaudit.training.train import to_tensor


def model_logits(module: torch.nn.Module, images: np.ndarray, device: str | torch.device = "cpu",
                 batch: int = 1024, norm=None) -> np.ndarray:
    """float32 [n, C] logits, in one batched pass under inference mode; ``norm`` as in training."""
    module = module.to(device).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out.append(module(to_tensor(images[i:i + batch], norm).to(device)).float().cpu().numpy())
    if not out:
        with torch.inference_mode():
            c = module(to_tensor(np.zeros((1, *images.shape[1:]), images.dtype), norm).to(device)).shape[-1]
        return np.zeros((0, c), np.float32)
    return np.concatenate(out)



def model_logits_queries(module: torch.nn.Module, images: np.ndarray,
                         shifts: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
                         device: str | torch.device = "cpu", batch: int = 1024, norm=None) -> np.ndarray:
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
    return np.stack([model_logits(module, padded[..., p - dy:p - dy + h, p - dx:p - dx + w], device, batch, norm)
                     for dy, dx in ((int(dy), int(dx)) for dy, dx in shifts)], axis=1)
