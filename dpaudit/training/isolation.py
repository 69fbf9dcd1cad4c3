"""Library calls leave the caller's process as they found it: warning filters, log levels, global RNG
states and torch's thread count are restored on exit (a notebook that calls ``run_audit`` keeps its own
seeds and settings).

Inside the call every native thread pool (OpenMP, BLAS) is pinned to one thread with threadpoolctl, and put
back after. Torch's threads were already pinned per model, but scikit-learn's gradient boosting (the shadow
attack) then ran OpenMP threads against them: an outputs-only audit of 5 models x 200 records took 2.7x as long
as with one thread (227 s against 83 s on a loaded 2-core host). Parallelism comes from training several
models at once, never from threads inside one step."""
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
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(limits=1):
        try:
            yield
        finally:
            absl.setLevel(level)
            np.random.set_state(np_state)
            if torch is not None:
                torch.random.set_rng_state(torch_state)
                torch.set_num_threads(threads)
