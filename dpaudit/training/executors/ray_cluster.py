"""``--executor ray``: one Ray task per model, on a local Ray or on a Ray cluster (``pip install 'dpaudit[ray]'``).

How it uses Ray:

- The dataset goes into the object store once (``ray.put`` of the images and of the labels); every task gets
  the two ObjectRefs and reads the arrays in place (zero-copy on the node), never a per-job copy.
- One task per model, ``num_cpus=1`` (each model trains on one torch thread, as in the local pool, so results do
  not depend on how many train at once) and ``num_gpus=1`` when the model trains on CUDA, so Ray's scheduler, not
  dpaudit, decides where and how many models train at once.
- Results stream back as tasks finish (``ray.wait``) and move the progress bar.
- ``max_retries``: a task whose worker process dies (killed, out of memory, node lost) is run again. Training is
  deterministic given the model's seed, so a retried model is the same model.
- SIGINT/SIGTERM cancel every outstanding task (``ray.cancel(force=True)`` kills the worker running it) and shut
  down a Ray that this executor started; a Ray the caller started (``ray.init`` before the audit) is left alone.
- Tasks read and write the model cache (``--cache-dir``) themselves, so a model that finished before an
  interruption is not trained again on the next run.

On a multi-node cluster::

    ray start --head --port=6379                      # on the head node
    ray start --address=HEAD_IP:6379                  # on every other node
    dpaudit audit --executor ray --ray-address HEAD_IP:6379 --cache-dir /shared/dpaudit-cache ...

- ``--cache-dir`` must be on storage every node mounts at the same path (NFS, a cluster file system): tasks
  write their models there from whichever node ran them, and a resumed audit looks for them there.
- The dataset is loaded by the driver (the machine running ``dpaudit audit``) and travels to the tasks through
  the object store, so its source (``--data-dir``) must be readable there; mounting it at the same path on
  every node as well costs nothing and keeps ``dpaudit train``/``check`` runnable anywhere.
- dpaudit must be importable on every node: install the same version there (``pip install 'dpaudit[ray]'``),
  or, when running from a source checkout, have that checkout at the same path on every node (shared
  storage): tasks are given ``PYTHONPATH=<the driver's checkout>`` in their ``runtime_env``.

The address is ``--ray-address``, else the ``RAY_ADDRESS`` environment variable, else a Ray started for the
run on this machine: loopback only, no dashboard, no usage statistics, shut down when the audit ends.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dpaudit.training.executors.base import (
    THREADS_PER_MODEL,
    longest_first,
    progress_bar,
    register_executor,
    sigterm_as_interrupt,
)

if importlib.util.find_spec("ray") is None:  # get_executor turns this into "pip install 'dpaudit[ray]'"
    raise ImportError("No module named 'ray'")

# The task's name is also its worker's process title while it runs (``ray::dpaudit_train_job``).
TASK_NAME = "dpaudit_train_job"
_TASK = None


def dpaudit_train_job(job, images: np.ndarray, labels: np.ndarray, threads: int):
    """One Ray task: train (or load from the cache) one model. Ray has already resolved the two ObjectRefs
    into read-only arrays mapped from the node's object store."""
    import torch

    from dpaudit.training.jobs import train_job

    torch.set_num_threads(threads)
    return train_job(job, images, labels)


def _train_task():
    """The ``@ray.remote`` version of ``dpaudit_train_job``, made on first use: importing this module (which
    workers do, to find the function) must not need a running Ray."""
    global _TASK
    if _TASK is None:
        import ray

        _TASK = ray.remote(dpaudit_train_job)
    return _TASK


def source_root() -> str | None:
    """The folder holding the imported dpaudit package when it runs from a source checkout (not installed in
    site-packages): Ray workers need it on their path to import this very dpaudit."""
    root = Path(__file__).resolve().parent.parent
    return None if root.name in ("site-packages", "dist-packages") else str(root)


def task_runtime_env() -> dict:
    """``runtime_env`` of every task: prepend the driver's dpaudit checkout to the workers' PYTHONPATH.

    Why not ``working_dir``/``py_modules``: they zip and upload the code on every run, and the model cache
    has to be shared storage anyway; a path is free, and ``${PYTHONPATH}`` keeps whatever the node had."""
    root = source_root()
    return {} if root is None else {"env_vars": {"PYTHONPATH": f"{root}:${{PYTHONPATH}}"}}


def _copy_arrays(result):
    """Own copies of the logits: arrays returned by ``ray.get`` may be read-only views into the object store,
    which the report code must be free to modify and which vanish if this executor shuts Ray down."""
    from dataclasses import fields, replace

    return replace(result, **{f.name: np.array(v) for f in fields(result)
                              if isinstance(v := getattr(result, f.name), np.ndarray)})


@register_executor("ray", _builtin=True)
class RayExecutor:
    """Training jobs as Ray tasks (see the module docstring).

    ``address``: a Ray cluster (``HOST:PORT``, ``ray://…``, ``auto``); default ``RAY_ADDRESS``, else a local Ray
    with ``os.cpu_count()`` CPUs started for the run. ``workers``: models that train side by side on one
    machine's cores, which sets each task's ``num_cpus`` (0: one per core). ``max_retries``: re-runs of a task
    whose worker process died."""

    def __init__(self, address: str | None = None, workers: int = 0, device: str = "cpu", max_retries: int = 3,
                 **_):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        cores = os.cpu_count() or 1
        self.workers = max(1, workers or cores)
        self.cpus_per_task = max(1, cores // self.workers)
        self.device = device
        self.max_retries = max_retries
        self.timing: dict[str, float] = {}  # seconds of the last run's Ray start-up and dataset upload

    # ---- Ray's lifetime -------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Connect to (or start) Ray unless the caller already did. Returns whether this call did."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        local = self.address is None
        if local and "ray" not in sys.modules:
            # Read when Ray is imported: a Ray started here binds loopback addresses only (Ray's own switch,
            # named after the platforms where it is the default). Never for a cluster: its nodes must reach us.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        if ray.is_initialized():
            return False
        import logging

        # ray.init replaces this process's SIGTERM handler for good; the audit keeps the caller's.
        main = threading.current_thread() is threading.main_thread()
        old_term = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if local:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=self.address, logging_level=logging.WARNING)
        finally:
            if main:
                signal.signal(signal.SIGTERM, old_term)
        return True

    # ---- the jobs -------------------------------------------------------------------------------

    def _num_cpus(self, ray) -> int:
        # One core per model, like the local pool (dpaudit.training.executors.local.THREADS_PER_MODEL): results do not depend
        # on how many run at once, and Ray packs as many models per node as it has cores.
        return THREADS_PER_MODEL

    def _num_gpus(self, ray, device: str) -> int:
        if device == "cuda":
            return 1
        # "auto" trains on a GPU when the worker sees one, and Ray shows a task a GPU only if it asked for one.
        return 1 if device == "auto" and ray.cluster_resources().get("GPU", 0) > 0 else 0

    def run(self, jobs, images, labels, *, progress, desc):
        t = time.perf_counter()
        started = self._connect()
        import ray

        self.timing = {"connect_s": time.perf_counter() - t}

        refs: dict = {}
        try:
            order = longest_first(jobs)
            task = _train_task()
            cpus = self._num_cpus(ray)
            env = task_runtime_env()
            t = time.perf_counter()
            images_ref, labels_ref = ray.put(images), ray.put(labels)  # once, shared by every task
            self.timing["put_s"] = time.perf_counter() - t
            for i in order:
                job = jobs[i]
                if job.cache_dir:
                    # Tasks run in other working directories (and on other machines): give them the path itself.
                    job = replace(job, cache_dir=str(Path(job.cache_dir).resolve()))
                opts = {"num_cpus": cpus, "num_gpus": self._num_gpus(ray, job.cfg.device),
                        "max_retries": self.max_retries, "retry_exceptions": False}
                if env:
                    opts["runtime_env"] = env
                refs[task.options(**opts).remote(job, images_ref, labels_ref, THREADS_PER_MODEL)] = i
            del images_ref, labels_ref  # the tasks hold them now; freed with the last task
            return self._collect(ray, refs, len(jobs), progress, desc)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(ray, refs: dict, n: int, progress: bool, desc: str) -> list:
        results: dict[int, dict] = {}
        bar = progress_bar(n, progress, desc)
        pending = list(refs)
        try:
            with sigterm_as_interrupt():
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    for ref in done:
                        # A task that raised re-raises here (as its own exception type, e.g. DPAuditError).
                        results[refs[ref]] = _copy_arrays(ray.get(ref))
                        bar.update()
        except BaseException:
            # Ctrl-C, SIGTERM or a failed model: stop every outstanding task now (force kills the worker
            # process mid-training; cancelled tasks are not retried) rather than letting them run on.
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        return [results[i] for i in range(n)]
