"""Executors: where an audit's training jobs run.

An executor takes the list of jobs (``dpaudit.training.jobs.plan_jobs``) and the dataset, runs
``dpaudit.training.jobs.train_job`` on every job, and returns the results in the jobs' order. Each executor is
registered by name (``--executor NAME``); every registered executor must pass the contract test in
tests/test_executors.py: same results as the in-process run, in the jobs' order, dataset shipped once.

Executors stream results as they finish (the progress bar moves per model), and on SIGINT/SIGTERM stop
their workers before returning: an interrupted audit leaves no process behind, and what finished is in
the model cache (``--cache-dir``), so a re-run resumes from there.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from dpaudit.errors import DPAuditError
from dpaudit.registry import Registry


class Executor(Protocol):
    name: str

    def run(self, jobs: list, images: np.ndarray, labels: np.ndarray, *, progress: bool,
            desc: str) -> list:
        """Results of ``train_job`` for every job, in the jobs' order."""


# Every model trains on one torch thread, whatever --jobs is: torch's parallel reductions sum in an order
# that depends on the thread count, so a per-worker share of the cores made thresholds differ in the 8th digit
# between --jobs values. Parallelism comes from training several models at once.
THREADS_PER_MODEL = 1

EXECUTORS: Registry = Registry("executor")


def register_executor(name: str, *, force: bool = False, _builtin: bool = False):
    """Class decorator: ``@register_executor("mine")`` makes ``--executor mine`` build ``cls(**options)``. Every
    registered executor must pass tests/test_executors.py (``ExecutorContract``)."""
    EXECUTORS._check_name(name)

    def deco(cls):
        cls.name = name
        return EXECUTORS.add(name, cls, force=force, builtin=_builtin)
    return deco


def longest_first(jobs: list) -> list[int]:
    """Longest jobs first so that a pool drains evenly (no core idle while the last big model trains)."""
    from dpaudit.training.jobs import job_cost

    return sorted(range(len(jobs)), key=lambda i: -job_cost(jobs[i]))


@contextmanager
def sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C in the main process, so that the same clean-up (stop the workers, write
    nothing half-done) runs for both. Restores the previous handler on exit."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def progress_bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="model", disable=not progress)


def job_error(exc: BaseException, desc: str) -> DPAuditError | None:
    """A job's failure that is the machine's, not a bug: one line naming the model and what to do, or None
    (the exception stays as it is). A full disk or an unwritable --cache-dir is an OSError from the writes."""
    if isinstance(exc, DPAuditError):
        return None
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "DefaultCPUAllocator" in str(exc):
        return DPAuditError(f"{desc}: out of memory while training; lower --jobs, --members or --gradient-canaries "
                            f"(a re-run with --cache-dir resumes from the models that finished)")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return DPAuditError(f"{desc}: could not write{where}: {exc.strerror or exc.__class__.__name__}; free space or "
                            f"choose another --cache-dir (a re-run with --cache-dir resumes from the models that "
                            f"finished)")
    return None
