"""Shared fixtures: one small but real audit, trained once per test session and reused read-only."""
from __future__ import annotations

import copy
import math
import os
import warnings

import pytest

# Two cores: keep BLAS/OpenMP from oversubscribing when sklearn and torch share a process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")


# Two references: too few for the online attacks (which need four), so SMALL names the attacks it runs.
SMALL = dict(members=300, n_test=300, epsilons=(math.inf, 2.0), delta=1e-4, epochs=4, shadow_models=2,
             attacks=("loss", "shadow", "rmia", "lira"),
             n_boot=200, jobs=1, seed=7, gradient_canaries=0)


def small_config(**overrides):
    from dpaudit.pipeline import AuditConfig

    return AuditConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="session")
def small_audit():
    """(report, extras) of a real audit: non-DP and eps=2 targets, 2 reference models each."""
    from dpaudit.pipeline import run_audit

    return run_audit(small_config(), progress=False, command="pytest small_audit")


@pytest.fixture()
def small_report(small_audit):
    """A deep copy each test may alter."""
    return copy.deepcopy(small_audit[0])


@pytest.fixture(scope="session")
def small_report_path(small_audit, tmp_path_factory):
    from dpaudit.io import atomic_write_json

    path = tmp_path_factory.mktemp("small_audit") / "report.json"
    atomic_write_json(path, small_audit[0])
    return path


def pytest_collection_modifyitems(config, items):
    """Tests that need the trained `small_audit` are slow by definition: `pytest -m "not slow"` is the fast loop."""
    slow = pytest.mark.slow
    for item in items:
        if {"small_audit", "small_report", "small_report_path", "eps8_report_path", "nodp_report_path"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
