"""The one-run canary audit on real training: it must find leakage where there is some, find none
beyond the claim where DP holds, and catch a model whose training used far less noise than it claims."""
import math
import types

import pytest

from conftest import small_config
from dpaudit.pipeline import run_audit

pytestmark = pytest.mark.slow

# 400 canaries beside 300 members: enough guesses for a bound near 2 when the canaries are memorised.
CANARY = dict(canaries=400, shadow_models=1, attacks=("loss",), n_boot=100)


def weak_noise(optimizer):
    """A DP bug: the optimizer adds 1% of the noise the accountant was told about."""
    from opacus.optimizers.optimizer import _check_processed_flag, _generate_noise, _mark_as_processed

    def add_noise(self):
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            noise = _generate_noise(std=0.01 * self.noise_multiplier * self.max_grad_norm, reference=p.summed_grad,
                                    generator=self.generator, secure_mode=self.secure_mode)
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)
    optimizer.add_noise = types.MethodType(add_noise, optimizer)


@pytest.mark.parametrize("seed", [3])
def test_non_dp_canaries_give_a_large_bound(seed):
    rep, extras = run_audit(small_config(epsilons=(math.inf,), epochs=80, seed=seed, **CANARY), progress=False)
    c = rep["models"][0]["canary"]
    assert c["m"] == 400 and 150 < c["included"] < 250
    # The audit spends α/2 (re-runs get the rest); each of the verdict's two bounds (loss attack, canaries) is held
    # at 1 − α/4 = 98.75%, so that their best holds at 97.5%.
    v = rep["models"][0]["verdict"]
    assert v["n_bounds"] == 2 and v["per_bound_confidence"] == pytest.approx(0.9875)
    assert c["confidence"] == pytest.approx(0.9875)
    assert c["epsilon_lb"] >= 1.8, c
    assert c["correction"].startswith("balanced guesses") and "bonferroni" in c["correction"]
    assert c["k_plus"] == c["k_minus"] and c["coin_check"]["n"] == 400
    # the references train on canaries too, so there is no canary-free accuracy to compare with: said, not faked
    assert c["test_accuracy_without_canaries"] is None and "not measured" in c["without_canaries_from"]
    idx, truth, scores = extras["scores"][("non-dp", "canary")]
    assert len(idx) == len(truth) == len(scores) == 400


@pytest.mark.parametrize("seed", [3, 11])
def test_dp_canaries_stay_under_the_claim(seed):
    rep, _ = run_audit(small_config(epsilons=(1.0,), seed=seed, **CANARY), progress=False)
    m = rep["models"][0]
    # the references train like the target: as many canaries, so the same N, q, steps and spent ε
    refs, t = m["reference_models"], m["training"]
    assert refs["n_train"] == [t["n_train"]] * refs["k"] and t["n_train"] > 300
    assert refs["sample_rate"] == [t["sample_rate"]] * refs["k"] and refs["steps"] == [t["steps"]] * refs["k"]
    assert refs["epsilon"] == pytest.approx([t["epsilon"]] * refs["k"])
    assert m["canary"]["epsilon_lb"] <= 1.0
    # not refuted; 400 black-box canaries and 300 + 300 records cannot see 2 × a claim of 1: inconclusive
    assert m["verdict"]["status"] == "inconclusive" and m["verdict"]["detectable_epsilon"] > 2.0
    assert m["verdict"]["claimed_epsilon"] <= 1.0


def test_weak_noise_is_a_violation():
    cfg = small_config(epsilons=(1.0,), epochs=60, batch_size=64, lr=0.5, momentum=0.9, seed=3, **CANARY)
    rep, _ = run_audit(cfg, progress=False, tamper=weak_noise)
    m = rep["models"][0]
    assert m["training"]["epsilon"] <= 1.0  # the accountant still claims epsilon = 1
    assert m["canary"]["epsilon_lb"] > 1.0, m["canary"]
    assert m["verdict"]["status"] == "violation"
    assert m["verdict"]["status"] == "violation" and m["verdict"]["text"].startswith("Violation")
