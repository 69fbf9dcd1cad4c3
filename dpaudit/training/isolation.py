"""Library calls leave the caller's process as they found it: warning filters, log levels, global RNG
states and torch's thread count are restored on exit (a notebook that calls ``run_audit`` keeps its own
seeds and settings)."""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager


@contextmanager
def preserved_global_state():
    import numpy as np

    absl = logging.getLogger("absl")
    level = absl.level
    np_state = np.random.get_state()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch = None
    if torch is not None:
        torch_state = torch.random.get_rng_state()
        threads = torch.get_num_threads()
    with warnings.catch_warnings():
        try:
            yield
        finally:
            absl.setLevel(level)
            np.random.set_state(np_state)
            if torch is not None:
                torch.random.set_rng_state(torch_state)
                torch.set_num_threads(threads)
