"""Real DP-SGD training on a few hundred embedded digits, checked against an independent accountant."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dpaudit.errors import DPAuditError
from dpaudit.training.accounting import dp_accounting_epsilon, opacus_epsilon
from dpaudit.training.data import load_dataset
from dpaudit.training.models import validate_for_dp
from dpaudit.training.train import TrainConfig, check_poisson, load_model, save_model, train_model


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-5k")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ds))
    return ds, idx[:400], idx[400:700]


@pytest.mark.slow
@pytest.mark.parametrize("accountant,reference", [("prv", "pld"), ("rdp", "rdp")])
def test_dp_epsilon_hits_target_and_matches_dp_accounting(digits, accountant, reference):
    ds, tr, te = digits
    cfg = TrainConfig(epsilon=2.0, delta=1e-4, epochs=3, batch_size=64, lr=1.0, momentum=0.0,
                      accountant=accountant, seed=1)
    rec = train_model(cfg, ds.images[tr], ds.labels[tr], test_images=ds.images[te], test_labels=ds.labels[te],
                      progress=False).record
    assert rec.dp and rec.accountant == accountant and rec.poisson_sampling_checked
    assert 0.9 * 2.0 <= rec.epsilon <= 2.0
    assert len(rec.epsilon_per_epoch) == 3 and list(rec.epsilon_per_epoch) == sorted(rec.epsilon_per_epoch)
    # Opacus's Poisson rate is 1/len(loader) = 1/ceil(400/64); one epoch is that many expected steps
    assert rec.sample_rate == pytest.approx(1 / math.ceil(400 / 64))
    assert rec.steps == 3 * math.ceil(400 / 64)
    ref = dp_accounting_epsilon(rec.sample_rate, rec.noise_multiplier, rec.steps, rec.delta, reference)
    assert abs(rec.epsilon - ref) <= max(0.02 * ref, 0.02), (rec.epsilon, ref)


@pytest.mark.slow
def test_calibration_is_opacus_search_remembered(digits):
    """Models sharing (eps, delta, q, epochs, accountant) reuse Opacus's sigma; nothing else changes."""
    from opacus.accountants.utils import get_noise_multiplier

    from dpaudit.training import train as train_mod

    ds, tr, te = digits
    train_mod._SIGMA_CACHE.clear()
    train_mod._EPSILON_CACHE.clear()
    recs = [train_model(TrainConfig(epsilon=3.0, delta=1e-4, epochs=1, batch_size=64, lr=1.0, momentum=0.0,
                                    seed=s), ds.images[tr], ds.labels[tr], test_images=ds.images[te],
                        test_labels=ds.labels[te], progress=False).record for s in (0, 1)]
    assert len(train_mod._SIGMA_CACHE) == 1
    direct = get_noise_multiplier(target_epsilon=3.0, target_delta=1e-4, sample_rate=recs[0].sample_rate,
                                  epochs=1, accountant="prv")
    assert recs[0].noise_multiplier == recs[1].noise_multiplier == pytest.approx(direct, rel=1e-12)
    assert all(0.9 * 3.0 <= r.epsilon <= 3.0 for r in recs)
    import opacus.privacy_engine as pe

    assert pe.get_noise_multiplier is get_noise_multiplier  # restored after training


@pytest.mark.slow
def test_epsilon_per_epoch_is_the_accountants(digits):
    """The remembered epsilon after each epoch equals a fresh Opacus accountant given the same history."""
    from opacus.accountants import create_accountant

    from dpaudit.training import train as train_mod

    ds, tr, te = digits
    train_mod._EPSILON_CACHE.clear()
    cfg = TrainConfig(epsilon=3.0, delta=1e-4, epochs=2, batch_size=64, lr=1.0, momentum=0.0, accountant="prv")
    recs = [train_model(replace(cfg, seed=s), ds.images[tr], ds.labels[tr], test_images=ds.images[te],
                        test_labels=ds.labels[te], progress=False).record for s in (0, 1)]
    assert len(train_mod._EPSILON_CACHE) == 2  # one value per epoch, shared by both models
    assert recs[0].epsilon_per_epoch == recs[1].epsilon_per_epoch
    for epoch, eps in enumerate(recs[0].epsilon_per_epoch, start=1):
        fresh = create_accountant("prv")
        fresh.history = [(recs[0].noise_multiplier, recs[0].sample_rate, epoch * recs[0].steps // 2)]
        assert eps == fresh.get_epsilon(1e-4)


@pytest.mark.slow
def test_non_dp_training_fits(digits):
    ds, tr, te = digits
    rec = train_model(TrainConfig(epochs=30, batch_size=32, seed=0), ds.images[tr], ds.labels[tr], test_images=ds.images[te],
                      test_labels=ds.labels[te], progress=False).record
    assert not rec.dp and rec.epsilon is None and rec.noise_multiplier is None
    assert rec.train_accuracy > 0.9 and rec.test_accuracy > 0.7


@pytest.mark.parametrize("n,batch,sigma,steps,delta,expected", [
    (60_000, 150, 1.3, 6_000, 1e-5, 0.7242234),
    (100_000, 100, 1.0, 30_000, 1e-7, 1.4154989),
])
def test_opacus_rdp_oracles(n, batch, sigma, steps, delta, expected):
    assert opacus_epsilon(batch / n, sigma, steps, delta, "rdp") == pytest.approx(expected, rel=1e-3)


def test_fixed_size_batches_are_refused():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(10, 1)), batch_size=2)
    with pytest.raises(DPAuditError, match="not Poisson"):
        check_poisson(loader, 0.2)


def test_unsupported_layer_names_the_fix():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    with pytest.raises(DPAuditError, match="ModuleValidator.fix"):
        validate_for_dp(model)


@pytest.mark.parametrize("eps,delta,msg", [(0.0, 1e-5, "epsilon must be > 0"), (-1, 1e-5, "epsilon must be > 0"),
                                           (1.0, 0.01, "below 1/N"), (1.0, 0.0, "delta")])
def test_bad_privacy_targets(digits, eps, delta, msg):
    ds, tr, te = digits
    with pytest.raises(DPAuditError, match=msg):
        train_model(TrainConfig(epsilon=eps, delta=delta), ds.images[tr], ds.labels[tr],
                    test_images=ds.images[te], test_labels=ds.labels[te], progress=False)


def test_save_load_and_hostile_checkpoints(digits, tmp_path):
    ds, tr, te = digits
    trained = train_model(TrainConfig(epochs=1), ds.images[tr], ds.labels[tr], test_images=ds.images[te],
                          test_labels=ds.labels[te], progress=False)
    path = tmp_path / "m" / "model.pt"
    save_model(trained, path)
    module, meta = load_model(path)
    x = torch.zeros(2, 1, 28, 28)
    assert torch.allclose(module(x), trained.module(x))
    assert meta["record"]["n_train"] == 400

    (tmp_path / "corrupt.pt").write_bytes(b"not a zip file at all")
    (tmp_path / "corrupt.pt.json").write_text((path.parent / "model.pt.json").read_text())
    with pytest.raises(DPAuditError, match="weights_only"):
        load_model(tmp_path / "corrupt.pt")

    class Evil:
        def __reduce__(self):
            return (exec, ("open('/tmp/dpaudit_pwned','w').write('x')",))
    torch.save({"w": Evil()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    (tmp_path / "evil.pt.json").write_text((path.parent / "model.pt.json").read_text())
    with pytest.raises(DPAuditError, match="carries code|weights_only"):
        load_model(tmp_path / "evil.pt")
    import os
    assert not os.path.exists("/tmp/dpaudit_pwned")

    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "foreign.pt")
    (tmp_path / "foreign.pt.json").write_text((path.parent / "model.pt.json").read_text())
    with pytest.raises(DPAuditError, match="foreign"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(DPAuditError, match="not found"):
        load_model(tmp_path / "missing.pt")
    # right format tag, but the record is gone: a clear error, not a KeyError
    (tmp_path / "gutted.pt").write_bytes(path.read_bytes())
    (tmp_path / "gutted.pt.json").write_text('{"format": "dpaudit.model/1", "config": []}')
    with pytest.raises(DPAuditError, match="lacks its config"):
        load_model(tmp_path / "gutted.pt")
