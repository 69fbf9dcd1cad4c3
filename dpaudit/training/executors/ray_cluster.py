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
run on this machine: loopback only, no dashboard, no usage statistics, shut down when the audit ends. A malformed
address, one that does not answer within ``CONNECT_TIMEOUT_S``, or a cluster that refuses to be joined (token
authentication: set ``RAY_AUTH_MODE=token`` and the cluster's token for dpaudit too) is a one-line error within
seconds.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dpaudit.errors import DPAuditError
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


_ADDRESS = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$")
# Seconds to wait for a TCP answer from the cluster's address, and for its GCS once that answers: a wrong address
# fails in seconds, not after minutes of Ray's own retries and log lines. RAY_gcs_server_port_wait_time_s set by
# the user wins.
CONNECT_TIMEOUT_S = 3.0
GCS_WAIT_S = "5"


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto`` and ``local`` (Ray's own words).
    Anything else is a one-line error, before Ray is imported."""
    if address in ("auto", "local"):
        return None
    m = _ADDRESS.match(address.strip())
    port = int(m.group(2)) if m else 0
    if not m or not 0 < port < 65536:
        raise DPAuditError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, ray://head:10001 or auto); "
                           f"give the address `ray start --head` printed")
    return m.group(1).strip("[]"), port


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connection to the address, with a short timeout: Ray itself retries an unreachable address for
    minutes, flooding the terminal."""
    import socket

    hp = parse_address(address)
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=timeout).close()
    except OSError as exc:
        why = exc.strerror or ("timed out" if isinstance(exc, TimeoutError) else exc.__class__.__name__)
        raise DPAuditError(f"cannot reach a Ray cluster at {address} ({why}); start one there with `ray start --head "
                           f"--port={hp[1]}`, or check the address and that the port is open") from None


def connect_error(address: str, exc: BaseException) -> DPAuditError:
    """ray.init's failure to join a cluster that answers on its port, as one line with the likely cause."""
    full = f"{exc} {exc.__cause__ or ''}"
    text = " ".join(str(exc).split())
    if "auth" in full.lower():
        text += "; the cluster refused this client's authentication token"
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token" or "auth" in full.lower():
        return DPAuditError(f"could not join the Ray cluster at {address} ({text[:160]}); a Ray >= 2.5x head started "
                            f"with token authentication (on where a token exists) refuses clients without it: set "
                            f"RAY_AUTH_MODE=token, and the cluster's token (RAY_AUTH_TOKEN, or ~/.ray/auth_token), for "
                            f"dpaudit as well")
    return DPAuditError(f"could not join the Ray cluster at {address} ({text[:200]}); check that its Ray version "
                        f"matches this one ({_ray_version()}) and that it is running")


def _ray_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("ray")
    except md.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def task_error(ray, exc: BaseException, desc: str) -> DPAuditError | None:
    """A failed task as one line naming its model: its own DPAuditError, a full disk, a dead worker."""
    from dpaudit.training.executors.base import job_error

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DPAuditError):
            return DPAuditError(str(cause.args[0]) if cause.args else str(cause))
        return job_error(cause, desc) if cause is not None else None
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return DPAuditError(f"the Ray worker training {desc} died ({exc.__class__.__name__}; likely out of memory, or "
                            f"its node was lost) after every retry; a re-run with --cache-dir resumes from the models "
                            f"that finished")
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return DPAuditError(f"{desc}: Ray's memory monitor killed the task (out of memory); lower --jobs or --members")
    return None


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
        if self.address is not None:
            parse_address(self.address)  # a malformed address fails now, before any data is loaded
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
                check_reachable(self.address)
                os.environ.setdefault("RAY_gcs_server_port_wait_time_s", GCS_WAIT_S)
                os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # not a warning a second while retrying
                try:
                    ray.init(address=self.address, logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise connect_error(self.address, exc) from None
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
        self._descs = {}
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
                self._descs[i] = job.desc
            del images_ref, labels_ref  # the tasks hold them now; freed with the last task
            return self._collect(ray, refs, len(jobs), progress, desc, self._descs)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(ray, refs: dict, n: int, progress: bool, desc: str, descs: dict | None = None) -> list[dict]:
        results: dict[int, dict] = {}
        bar = progress_bar(n, progress, desc)
        pending = list(refs)
        try:
            with sigterm_as_interrupt():
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    for ref in done:
                        # A task that raised re-raises here (as its own exception type, e.g. DPAuditError), with
                        # the remote traceback in its text: one line instead.
                        try:
                            results[refs[ref]] = _copy_arrays(ray.get(ref))
                        except Exception as exc:
                            err = task_error(ray, exc, (descs or {}).get(refs[ref], "a model"))
                            if err is None:
                                raise
                            raise err from None
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
