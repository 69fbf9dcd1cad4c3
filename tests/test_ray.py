"""``--executor ray`` on a real local Ray cluster: the same report numbers as the local pool, a model cache
written by the tasks that a later run resumes from, and a worker killed mid-run whose task Ray retries.

Nothing is mocked: a real ``ray.init(num_cpus=2)`` (loopback only, no dashboard) for the module, real training.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import small_config

# Read when Ray is imported: keep the test cluster on loopback and quiet.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dpaudit[ray]')")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# jobs=2: both executors train two models side by side with one torch thread each, so that the floating-point
# reductions, hence the models, are bit-identical (thread count is part of a CPU model's numerics).
CFG = {"epsilons": (math.inf,), "epochs": 2, "shadow_models": 2, "attacks": ("loss",), "jobs": 2}
TIMING_FIELDS = {"wall_s", "accounting_s"}


@pytest.fixture(scope="module")
def ray_cluster():
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run():
    """The reference: the same audit on the local process pool."""
    from dpaudit.pipeline import run_audit

    return run_audit(small_config(**CFG), progress=False)


def numbers(report: dict, extras: dict) -> dict:
    """What must not depend on where the models trained: attack metrics and bounds, ε bounds, verdicts,
    training records without their timings, and every record's attack score."""
    out = {}
    for m in report["models"]:
        out[m["name"]] = {
            "training": {k: v for k, v in m["training"].items() if k not in TIMING_FIELDS},
            "reference_models": {k: v for k, v in m["reference_models"].items() if k != "cache_hits"},
            "attacks": m["attacks"], "bounds": m["bounds"], "verdict": m["verdict"], "canary": m["canary"]}
    scores = {k: [np.asarray(a).tolist() for a in v] for k, v in extras["scores"].items()}
    return {"models": out, "scores": scores}


def ray_audit(tmp_path: Path | None = None, **kw):
    from dpaudit.pipeline import run_audit

    cfg = small_config(**CFG, executor="ray", cache_dir=None if tmp_path is None else str(tmp_path))
    return run_audit(cfg, progress=False, **kw)


def test_ray_gives_the_local_numbers_and_a_resumable_cache(ray_cluster, local_run, tmp_path):
    report, extras = ray_audit(tmp_path)
    assert report["platform"]["workers"] == 2
    assert numbers(report, extras) == numbers(*local_run)
    # The tasks wrote every model into the cache themselves (weights and record, 3 models)...
    assert len(list(tmp_path.glob("*.pt"))) == 3 and len(list(tmp_path.glob("*.pt.json"))) == 3
    assert report["models"][0]["reference_models"]["cache_hits"] == 0
    # ...and a second run (one that refuses to train) finds all of them and reports the same numbers.
    again, again_extras = ray_audit(tmp_path, require_cached=True)
    assert again["models"][0]["reference_models"]["cache_hits"] == 3
    assert numbers(again, again_extras) == numbers(*local_run)


def _training_task_pids() -> list[int]:
    """Ray worker processes running a dpaudit training task right now: Ray titles a busy worker
    ``ray::<task name>``."""
    from dpaudit.training.executors.ray_cluster import TASK_NAME

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(f"ray::{TASK_NAME}".encode()):
                pids.append(int(entry))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds Ray's worker processes in /proc")
def test_a_worker_killed_mid_run_is_retried_to_the_same_numbers(ray_cluster, local_run):
    out: dict = {}

    def audit():
        try:
            out["result"] = ray_audit()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    runner = threading.Thread(target=audit)
    runner.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and runner.is_alive() and time.monotonic() < deadline:
        pids = _training_task_pids()
        if pids:
            victim = pids[0]
            os.kill(victim, signal.SIGKILL)
        else:
            time.sleep(0.05)
    runner.join(timeout=300)
    assert victim is not None, "no Ray worker was seen training a model"
    assert not runner.is_alive(), "the audit did not finish after a worker was killed"
    assert "error" not in out, f"the audit failed after a worker was killed: {out.get('error')!r}"
    assert not Path(f"/proc/{victim}").exists() or b"zombie" in Path(f"/proc/{victim}/status").read_bytes().lower()
    assert numbers(*out["result"]) == numbers(*local_run)
