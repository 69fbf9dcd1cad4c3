"""Gradient canaries in dpaudit's own training loop under Opacus's ghost clipping (issue 23, item 2).

The canary loss term goes through Opacus's ghost criterion wrapper (``make_private(criterion=CanaryLoss())``
returns ``DPLossFastGradientClipping``, whose ``backward`` is the two-pass ghost backward), and the observation is
the privatised gradient at the canary coordinates, as in hooks mode. Real Opacus, real digits (300 records)."""
import math
from dataclasses import replace

import numpy as np
import pytest

from dpaudit.training.data import load_dataset
from dpaudit.training.train import TrainConfig, train_model
from dpaudit.training.whitebox import GradientCanaries, NoClipping, ScaleNoise, analyse

# as tests/test_whitebox.py: epsilon 8 over 6 epochs (sigma ~0.8), ~250 included canaries; a ghost run takes ~1.5 s
CFG = TrainConfig(epsilon=8.0, delta=1e-4, epochs=6, batch_size=64, lr=0.5, momentum=0.0, accountant="rdp", seed=1,
                  grad_sample_mode="ghost")
M = 500


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-5k")
    idx = np.random.default_rng(0).permutation(len(ds))
    return ds, idx[:300], idx[300:500]


def _train(digits, cfg=CFG, tamper=None, canary_seed=2):
    ds, tr, te = digits
    return train_model(cfg, ds.images[tr], ds.labels[tr], test_images=ds.images[te], test_labels=ds.labels[te],
                       progress=False, gradient_canaries=GradientCanaries(M, seed=canary_seed),
                       after_make_private=tamper)


def test_config_accepts_ghost_with_gradient_canaries():
    from dpaudit.config import AuditConfig

    AuditConfig(grad_sample_mode="ghost", gradient_canaries=100, epsilons=(math.inf, 2.0)).validate()


@pytest.mark.slow  # over a second on 2 cores: the fast tier stays under a minute
@pytest.mark.parametrize("physical", [None, 16])
def test_ghost_observes_what_hooks_observes(digits, physical):
    """Same seed, same Poisson draws and the same noise stream (both DP optimizers draw N(0, sigma^2 C^2) from the
    same generator, parameter by parameter in the same order): ghost's privatised gradient at the canary
    coordinates equals hooks' to float32 rounding, and so do the accountant's figures; also with physical batches
    of 16 under logical ones of 64 (BatchMemoryManager: ghost accumulates the clipped sums in summed_grad)."""
    cfg = replace(CFG, epochs=2, max_physical_batch_size=physical or CFG.max_physical_batch_size)
    runs = {mode: _train(digits, replace(cfg, grad_sample_mode=mode)) for mode in ("hooks", "ghost")}
    h, g = runs["hooks"].whitebox, runs["ghost"].whitebox
    assert h.obs.shape == g.obs.shape and h.obs.shape[0] == runs["ghost"].record.steps > 0
    # a drawn canary contributes C = 1 to its coordinate: a tolerance far below that, and below the noise's sigma C
    np.testing.assert_allclose(g.obs, h.obs, rtol=0, atol=1e-5)
    assert np.abs(h.obs).max() > 1.0  # the observations are not trivially zero
    np.testing.assert_allclose(g.final_w, h.final_w, rtol=0, atol=1e-5)
    assert (g.noise_multiplier, g.sample_rate, g.steps_accounted, g.n_param_updates, g.grad_scale) == \
        (h.noise_multiplier, h.sample_rate, h.steps_accounted, h.n_param_updates, h.grad_scale)
    assert runs["ghost"].record.grad_sample_mode == "ghost"


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3)])  # 4 s each: slow tier
def test_correct_ghost_dp_is_conformant(digits, seed):
    tm = _train(digits, replace(CFG, seed=seed), canary_seed=seed + 1)
    r = analyse(tm.whitebox, seed=seed)
    assert r.conformant and r.failed == (), r.tests
    assert tm.whitebox.steps_accounted == tm.whitebox.obs.shape[0] > 0


@pytest.mark.slow  # over a second on 2 cores: the fast tier stays under a minute
@pytest.mark.parametrize("bug,name", [(ScaleNoise(0.5), "noise_std"), (NoClipping(), "clipped_norm")])
def test_ghost_bugs_are_caught(digits, bug, name):
    """ScaleNoise replaces the DP optimizer's add_noise (ghost's optimizer adds noise to the clipped sum as hooks'
    does); NoClipping raises the clipping norm on the ghost module too, where ghost clipping reads it."""
    r = analyse(_train(digits, tamper=bug).whitebox)
    assert not r.conformant and name in r.failed, r.tests


@pytest.mark.slow
def test_audit_cli_with_ghost_mode_and_gradient_canaries(tmp_path):
    """`dpaudit audit --grad-sample-mode ghost --gradient-canaries N`, once refused, runs and reads conformant."""
    import json

    from click.testing import CliRunner

    from dpaudit.cli import main

    out = tmp_path / "audit"
    args = ["audit", "--members", "300", "--n-test", "300", "--epsilons", "6", "--delta", "1e-4", "--epochs", "6",
            "--shadow-models", "2", "--bootstrap", "200", "--jobs", "1", "--seed", "4", "--quiet", "--attacks", "loss",
            "--grad-sample-mode", "ghost", "--gradient-canaries", "400", "--format", "json", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "report.json").read_text())["models"][0]
    assert m["training"]["grad_sample_mode"] == "ghost"
    assert m["whitebox"]["conformant"] is True and m["whitebox"]["failed"] == []
