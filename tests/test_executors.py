"""The contract every registered executor must pass (as each Opacus grad sampler or dp_accounting accountant
passes one shared test): the results of ``train_job`` for every job, in the jobs' order, equal to training the
same jobs in this process, whatever order the executor ran them in. A new executor is tested by adding a subclass
of ``ExecutorContract`` that says how to build it."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from conftest import small_config
from dpaudit.core.splits import make_splits
from dpaudit.errors import DPAuditError
from dpaudit.training.data import load_dataset
from dpaudit.training.executors import EXECUTORS, get_executor, register_executor
from dpaudit.training.jobs import init_worker, plan_jobs, train_job

CFG = small_config(members=120, n_test=60, epsilons=(math.inf, 4.0), epochs=1, shadow_models=1, attacks=("loss",),
                   batch_size=32)


@pytest.fixture(scope="module")
def planned():
    data = load_dataset(CFG.dataset)
    splits = make_splits(data.labels, members=CFG.members, n_models=1 + CFG.shadow_models, n_test=CFG.n_test,
                         seed=CFG.seed)
    jobs = plan_jobs(CFG, data, splits)
    init_worker(data.images, data.labels, 1)
    expected = [train_job(j) for j in jobs]  # in this process, in the jobs' order
    return jobs, data, expected


def same_result(a: dict, b: dict) -> None:
    assert (a.k, a.ei) == (b.k, b.ei)
    rec_a = {k: v for k, v in a.record.to_dict().items() if not k.endswith("_s")}
    rec_b = {k: v for k, v in b.record.to_dict().items() if not k.endswith("_s")}
    assert rec_a == rec_b
    np.testing.assert_array_equal(a.pool_logits, b.pool_logits)
    np.testing.assert_array_equal(a.test_logits, b.test_logits)


class ExecutorContract:
    """Subclasses give ``make()``: an executor as ``--executor NAME`` would build it."""

    def make(self):
        raise NotImplementedError

    def test_results_in_the_jobs_order_equal_to_an_in_process_run(self, planned):
        jobs, data, expected = planned
        got = self.make().run(jobs, data.images, data.labels, progress=False, desc="contract")
        assert len(got) == len(jobs)
        for a, b in zip(got, expected, strict=True):
            same_result(a, b)

    def test_no_jobs_is_no_results(self, planned):
        _, data, _ = planned
        assert self.make().run([], data.images, data.labels, progress=False, desc="contract") == []


@pytest.mark.slow
class TestLocalInProcess(ExecutorContract):
    def make(self):
        return get_executor("local", workers=1)


@pytest.mark.slow
class TestLocalPool(ExecutorContract):
    def make(self):
        return get_executor("local", workers=2)


@pytest.mark.slow
@pytest.mark.ray
class TestRay(ExecutorContract):
    @pytest.fixture(autouse=True, scope="class")
    def cluster(self):
        import logging

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dpaudit[ray]')")
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        yield
        if started:
            ray.shutdown()

    def make(self):
        return get_executor("ray")


def test_every_registered_executor_has_a_contract_test():
    tested = {"local", "ray"}
    assert set(EXECUTORS) <= tested, f"add an ExecutorContract subclass for {sorted(set(EXECUTORS) - tested)}"


def test_an_executor_name_is_never_silently_replaced():
    with pytest.raises(DPAuditError, match="built-in"):
        register_executor("local")(type("Mine", (), {}))
    with pytest.raises(DPAuditError, match="unknown executor|unknown --executor"):
        get_executor("no-such-executor")
