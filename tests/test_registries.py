"""Contract tests every registered model and dataset must pass (as each Opacus grad sampler or dp_accounting
accountant passes one shared test): a new entry is tested by being registered."""
import numpy as np
import pytest

from dpaudit.errors import DPAuditError
from dpaudit.training.data import DATASETS, DEBIAN_FASHION_MNIST, Dataset, load_dataset
from dpaudit.training.models import MODELS, build_model, register_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((3, 16, 16), 4), ((1, 8, 8), 10)])
def test_every_model_maps_records_to_logits_and_trains_under_dp(name, shape, classes):
    import torch

    model = build_model(name, shape, classes, validate_dp=True)  # Opacus's validator accepts it
    out = model(torch.zeros((2, *shape)))
    assert out.shape == (2, classes)
    assert any(p.requires_grad for p in model.parameters())


AVAILABLE = [n for n in sorted(DATASETS) if n != "mnist" and (n != "fashion-mnist" or DEBIAN_FASHION_MNIST.is_dir())]


@pytest.mark.slow  # over half a second on 2 cores: the fast tier stays under a minute
@pytest.mark.parametrize("name", AVAILABLE)
def test_every_dataset_gives_checked_records(name):
    ds = load_dataset(name)
    assert isinstance(ds, Dataset) and len(ds) == ds.provenance.n_records > 100
    assert ds.images.ndim in (2, 4) and ds.images.shape[0] == ds.labels.shape[0]  # feature vectors or images
    assert ds.labels.dtype == np.int64 and ds.labels.min() == 0 and ds.labels.max() == ds.n_classes - 1
    assert len(ds.provenance.sha256) == 64
    x = ds.to_tensor(ds.images[:16])
    assert tuple(x.shape) == (16, *ds.input_shape) and bool(x.isfinite().all())


def test_builtin_names_cannot_be_replaced_and_user_names_only_when_forced():
    with pytest.raises(DPAuditError, match="built-in"):
        register_model("simple-cnn")(lambda s, c: None)
    with pytest.raises(DPAuditError, match="without ':'"):
        register_model("a:b")(lambda s, c: None)
    register_model("contract-test-net")(lambda s, c: build_model("simple-cnn", s, c))
    with pytest.raises(DPAuditError, match="already registered"):
        register_model("contract-test-net")(lambda s, c: build_model("tanh-cnn", s, c))
    register_model("contract-test-net", force=True)(lambda s, c: build_model("tanh-cnn", s, c))  # a notebook re-run
    assert "contract-test-net" in MODELS
    del MODELS["contract-test-net"]
