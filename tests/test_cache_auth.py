"""The model cache's keyed hash (dpaudit.training.cache_auth): a forger who can write the cache but not read the key cannot
make an entry pass, even with every unkeyed hash recomputed (issue 25: the DP slot silently audited non-DP weights).

Real training of two tiny models on 128 embedded MNIST digits (one epoch each, about a second)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import warnings

import numpy as np
import pytest

from dpaudit.training.cache_auth import KEY_ENV, cache_secret, key_path


@pytest.fixture()
def data():
    from dpaudit.training.data import load_dataset

    return load_dataset("mnist-5k")


def _job(data, cache_dir, seed, epsilon=math.inf, key="k"):
    from dpaudit.training.jobs import TrainingJob
    from dpaudit.training.train import TrainConfig

    cfg = TrainConfig(epsilon=epsilon, epochs=1, batch_size=32, seed=seed)
    return TrainingJob(ei=0, k=0, cfg=cfg, train_idx=np.arange(128), canary_idx=None, canary_labels=None,
                       test_idx=np.arange(4000, 4064), pool_idx=np.arange(256), canary_eval_idx=None,
                       key=f"{key}{seed}", cache_dir=str(cache_dir), desc=f"model {seed}", norm=data.normalisation,
                       n_classes=data.n_classes)


def _train(job, data):
    from dpaudit.training.jobs import train_job

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train_job(job, data.images, data.labels)
    return out, " ".join(str(w.message) for w in caught if "not trustworthy" in str(w.message))


@pytest.mark.slow  # trains five tiny models
def test_forged_entry_is_refused_and_retrained(data, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "a-test-secret-of-enough-length")
    cache = tmp_path / "cache"
    a, b = _job(data, cache, 1), _job(data, cache, 2)
    first, _ = _train(a, data)
    _train(b, data)
    again, warned = _train(a, data)
    assert again.cache_hit and not warned
    # The forger swaps in other weights and recomputes every unkeyed hash, as issue 25's probe did.
    pa, pb = cache / "k1.pt", cache / "k2.pt"
    pa.write_bytes(pb.read_bytes())
    meta = json.loads(pa.with_name("k1.pt.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(pa.read_bytes()).hexdigest()
    pa.with_name("k1.pt.json").write_text(json.dumps(meta))
    forged, warned = _train(a, data)
    assert not forged.cache_hit and "keyed hash does not match" in warned
    np.testing.assert_allclose(forged.pool_logits, first.pool_logits, rtol=1e-5, atol=1e-5)
    # Written again with a valid tag: a hit. Under another key, the same entry proves nothing.
    assert _train(a, data)[0].cache_hit
    monkeypatch.setenv(KEY_ENV, "another-secret-of-enough-length")
    other, warned = _train(a, data)
    assert not other.cache_hit and "keyed hash does not match" in warned


@pytest.mark.slow  # over a second on 2 cores: the fast tier stays under a minute
def test_entry_without_a_tag_is_refused(data, tmp_path, monkeypatch):
    """An entry written before keyed hashes existed (or with the tag stripped) is retrained, not trusted."""
    monkeypatch.setenv(KEY_ENV, "a-test-secret-of-enough-length")
    job = _job(data, tmp_path, 3)
    _train(job, data)
    meta_path = tmp_path / "k3.pt.json"
    meta = json.loads(meta_path.read_text())
    del meta["entry_hmac"]
    meta_path.write_text(json.dumps(meta))
    out, warned = _train(job, data)
    assert not out.cache_hit and "keyed hash" in warned


def test_key_file_created_private_once(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    k1 = cache_secret()
    path = key_path()
    assert path == tmp_path / "cfg" / "dpaudit" / "cache.key" and len(k1) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cache_secret() == k1  # kept, not regenerated


def test_short_env_key_refused(monkeypatch):
    from dpaudit.errors import DPAuditError

    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(DPAuditError, match="at least 16 characters"):
        cache_secret()
