"""Model registry and spec strings, the built-in CNNs on any input shape, and the one-line checks a user's
factory meets before training. Forward passes only: no training here."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dpaudit.errors import DPAuditError
from dpaudit.training.models import (
    MODELS,
    build_model,
    model_source_sha256,
    register_model,
    resolve_model,
    validate_for_dp,
)

USER_MODELS = Path(__file__).with_name("_user_models.py")
REPO = Path(__file__).resolve().parents[1]


class OldSimpleCNN(nn.Module):
    """dpaudit's SimpleCNN as it was before it took any input shape (commit 5cc077f), kept verbatim."""

    def __init__(self, n_classes: int = 10, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 8, stride=2, padding=3),
            activation(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(16, 32, 4, stride=2),
            activation(),
            nn.MaxPool2d(2, 1),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 32),
            activation(),
            nn.Linear(32, n_classes),
        )

    def forward(self, x):
        return self.net(x)


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("name,activation", [("simple-cnn", nn.ReLU), ("tanh-cnn", nn.Tanh)])
@pytest.mark.parametrize("seed", [0, 1234])
def test_builtin_cnn_on_28x28_is_unchanged(name, activation, seed):
    torch.manual_seed(seed)
    old = OldSimpleCNN(10, activation)
    after_old = torch.rand(3)
    torch.manual_seed(seed)
    new = build_model(name, (1, 28, 28), 10)
    after_new = torch.rand(3)
    assert new.training  # build_model leaves the model in training mode, as a fresh nn.Module is
    assert sum(p.numel() for p in new.parameters()) == 26010
    old_sd, new_sd = old.state_dict(), new.state_dict()
    assert list(old_sd) == list(new_sd)  # same names, same order: old checkpoints still load
    for k in old_sd:
        assert torch.equal(old_sd[k], new_sd[k]), k
    # the dry forward pass consumed no random numbers, so training after it starts from the same RNG state
    assert torch.equal(after_old, after_new)
    x = torch.randn(5, 1, 28, 28)
    assert torch.equal(old.eval()(x), new.eval()(x))


def test_old_build_model_signature_still_means_mnist_shape():
    torch.manual_seed(0)
    m = build_model("simple-cnn", 10)
    assert sum(p.numel() for p in m.parameters()) == 26010
    assert build_model("simple-cnn", 7)(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (3, 32, 32), (1, 9, 13), (4, 14, 40)])
def test_simple_cnn_takes_any_shape_from_8x8(shape):
    model = build_model("simple-cnn", shape, 5, validate_dp=True)
    assert model(torch.randn(3, *shape)).shape == (3, 5)
    assert model.net[0].in_channels == shape[0]


def test_simple_cnn_refuses_tiny_images():
    with pytest.raises(DPAuditError, match="at least 8x8") as e:
        build_model("simple-cnn", (1, 7, 28), 10)
    _one_line(e)


def test_file_spec_loads_a_user_factory(monkeypatch):
    spec = f"{USER_MODELS}:make_net"
    model = build_model(spec, (3, 16, 16), 4, validate_dp=True)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    # the relative form a user types from the repository root
    monkeypatch.chdir(REPO)
    factory = resolve_model("tests/_user_models.py:make_net")
    assert factory is resolve_model(spec)  # the file is imported once
    assert factory.__module__ in sys.modules  # classes defined there pickle by reference
    assert len(model_source_sha256(spec)) == 64 and model_source_sha256("simple-cnn") is None


def test_dotted_spec_imports_a_module(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_dotted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_MODELS.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("userpkg_dotted.nets:make_net", (1, 8, 8), 10)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_dotted_spec_falls_back_to_the_current_folder(tmp_path, monkeypatch):
    # What the `dpaudit` console script meets: the user's module sits in the current folder, which is not
    # on sys.path.
    (tmp_path / "mynets_cwd.py").write_text(USER_MODELS.read_text())
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(REPO))])
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path) not in sys.path
    assert callable(resolve_model("mynets_cwd:make_net"))
    monkeypatch.delitem(sys.modules, "mynets_cwd")


@pytest.mark.parametrize("spec,msg", [
    ("no_such_module_xyz:make_net", "must be importable"),
    ("no-such-model", "unknown model 'no-such-model'; choose one of simple-cnn, tanh-cnn"),
    ("missing/file.py:make_net", "not found"),
    (f"{USER_MODELS}:no_such_factory", "has no attribute 'no_such_factory'"),
    (f"{USER_MODELS}:NOT_CALLABLE", "not a callable factory"),
    (f"{USER_MODELS}:", "must be package.module:factory"),
])
def test_bad_specs_are_one_line_errors(spec, msg):
    with pytest.raises(DPAuditError, match=msg) as e:
        resolve_model(spec)
    _one_line(e)


def test_a_broken_user_file_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise RuntimeError('no GPU here\\nsecond line')\n")
    with pytest.raises(DPAuditError, match="importing .*broken.py raised RuntimeError: no GPU here") as e:
        resolve_model(f"{bad}:make_net")
    _one_line(e)


@pytest.mark.parametrize("factory,msg", [
    ("make_raises", r"raised ValueError .*only builds 32x32 models; fix it \(it is called as factory\(input_shape"),
    ("make_old_signature", "raised TypeError"),
    ("make_not_a_module", "returned a str, not a torch.nn.Module"),
    ("make_wrong_width", r"to shape \[2, 11\], not \[2, 10\]"),
])
def test_bad_factories_are_one_line_errors(factory, msg):
    with pytest.raises(DPAuditError, match=msg) as e:
        build_model(f"{USER_MODELS}:{factory}", (1, 8, 8), 10)
    _one_line(e)


def test_model_that_fails_on_the_input_shape_is_named():
    # simple-cnn's head is built for 28x28; a 16x16 batch through a 28x28 model must fail with the shape
    model_28 = build_model("simple-cnn")
    with pytest.raises(DPAuditError, match=r"fails on a batch of shape \[2, 1, 16, 16\]") as e:
        build_model(lambda shape, k: model_28, (1, 16, 16), 10)
    _one_line(e)


def test_batchnorm_is_refused_with_the_layer_named():
    with pytest.raises(DPAuditError) as e:
        build_model(f"{USER_MODELS}:make_bn_net", (1, 8, 8), 10, validate_dp=True)
    msg = _one_line(e)
    assert "'features.norm' (BatchNorm2d)" in msg
    assert "GroupNorm" in msg and "ModuleValidator.fix" in msg
    # without the DP check the same model builds (non-DP training can use it), and the fix works
    from opacus.validators import ModuleValidator

    model = build_model(f"{USER_MODELS}:make_bn_net", (1, 8, 8), 10)
    fixed = ModuleValidator.fix(model)
    validate_for_dp(fixed)
    assert isinstance(fixed.features.norm, nn.GroupNorm)


def test_validation_ignores_eval_mode_and_restores_it():
    model = build_model("simple-cnn").eval()
    validate_for_dp(model)  # Opacus alone would complain "Model needs to be in training mode"
    assert not model.training


def test_register_model_and_build_by_name():
    @register_model("tiny-test-net")
    def tiny(input_shape, n_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), n_classes))

    try:
        assert MODELS["tiny-test-net"] is tiny
        assert build_model("tiny-test-net", (2, 5, 5), 3)(torch.zeros(4, 2, 5, 5)).shape == (4, 3)
        with pytest.raises(DPAuditError, match="already registered"):
            register_model("tiny-test-net")(tiny)  # a silent replacement would change what a report means
        register_model("tiny-test-net", force=True)(tiny)  # a notebook re-running its cell says so
    finally:
        MODELS.pop("tiny-test-net")


@pytest.mark.parametrize("name,msg", [("simple-cnn", "is a built-in"), ("pkg:fn", "without ':'"), ("", "non-empty")])
def test_register_model_refuses_bad_names(name, msg):
    with pytest.raises(DPAuditError, match=msg):
        register_model(name)


def test_lazy_layers_are_materialised_by_the_shape_check(tmp_path):
    src = tmp_path / "lazy.py"
    src.write_text(textwrap.dedent("""
        from torch import nn

        def make_net(input_shape, n_classes):
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(n_classes))
    """))
    model = build_model(f"{src}:make_net", (3, 8, 8), 6, validate_dp=True)
    assert model[1].weight.shape == (6, 192)


def test_example_model_and_data_from_the_repository_root(tmp_path, monkeypatch):
    from dpaudit.training.data import load_dataset

    monkeypatch.chdir(REPO)
    example = "examples/own_model.py"
    ds = load_dataset("sklearn-digits")
    model = build_model(f"{example}:make_net", ds.input_shape, ds.n_classes, validate_dp=True)
    assert model(ds.to_tensor(ds.images[:3])).shape == (3, 10)
    # the npz export is the same data: same records, same digest, same normalisation
    path = resolve_model(f"{example}:export_npz")(tmp_path / "digits.npz")
    again = load_dataset(f"npz:{path}")
    assert again.provenance.sha256 == ds.provenance.sha256 and again.normalisation == ds.normalisation
    assert again.input_shape == (1, 8, 8) and again.n_classes == 10
