"""dpaudit's speed-ups to Opacus's hooks mode must not change a privatised gradient by a bit."""
import contextlib

import numpy as np
import opacus.grad_sample.grad_sample_module as gsm
import pytest
import torch
from opacus import GradSampleModule
from torch import nn

import dpaudit.training.train as T
from dpaudit.training.data import load_dataset
from dpaudit.training.grad_samples import grad_samples_without_copy, without_discarded_param_grads
from dpaudit.training.models import build_model
from dpaudit.training.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-5k")
    idx = np.random.default_rng(0).permutation(len(ds))
    return ds, idx[:400], idx[400:700]


def _no_speedups(model, cfg):
    return contextlib.ExitStack()


@pytest.mark.slow
@pytest.mark.parametrize("model,physical", [("simple-cnn", 512), ("tanh-cnn", 24)])
def test_speedups_train_the_same_model(digits, monkeypatch, model, physical):
    """Poisson batches of about 64, split into physical batches of 24 in the second case, so that Opacus
    accumulates per-example gradients over several backward passes before one step."""
    ds, tr, te = digits
    cfg = TrainConfig(model=model, epsilon=4.0, delta=1e-4, epochs=2, batch_size=64, lr=0.5, momentum=0.0, seed=5,
                      max_physical_batch_size=physical)
    kw = dict(test_images=ds.images[te], test_labels=ds.labels[te], progress=False)
    fast = train_model(cfg, ds.images[tr], ds.labels[tr], **kw)
    monkeypatch.setattr(T, "_dp_speedups", _no_speedups)
    plain = train_model(cfg, ds.images[tr], ds.labels[tr], **kw)
    a, b = fast.module.state_dict(), plain.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fast.record.epsilon_per_epoch == plain.record.epsilon_per_epoch
    assert fast.record.steps == plain.record.steps
    # the speed-up is undone: the returned model is an ordinary module again
    assert not any("forward" in m.__dict__ for m in fast.module.modules())


def _grads(model, x, y):
    gsm_model = GradSampleModule(model)
    gsm_model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(gsm_model(x), y).backward()
    out = {n: (p.grad_sample.clone(), None if p.grad is None else p.grad.clone())
           for n, p in gsm_model.named_parameters()}
    gsm_model._close()
    return out


def test_per_example_gradients_equal_and_summed_gradients_skipped():
    torch.manual_seed(0)
    model = build_model("simple-cnn")
    x, y = torch.randn(17, 1, 28, 28), torch.randint(0, 10, (17,))
    ref = _grads(model, x, y)
    with without_discarded_param_grads(model) as switched:
        assert switched == 4  # two convolutions, two linear layers
        fast = _grads(model, x, y)
    assert ref.keys() == fast.keys()
    for name in ref:
        assert torch.equal(ref[name][0], fast[name][0]), name
        assert ref[name][1] is not None and fast[name][1] is None, name  # the discarded sum is not computed
    assert not any("forward" in m.__dict__ for m in model.modules())
    # outside the context autograd computes p.grad again
    nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_gradients_unchanged_where_the_input_needs_them():
    """A layer whose input needs a gradient (every layer but the first) passes on exactly the same one."""
    torch.manual_seed(1)
    conv, lin = nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.Linear(7, 4)
    for layer, shape in ((conv, (6, 3, 9, 9)), (lin, (6, 7))):
        x = torch.randn(shape, requires_grad=True)
        g = torch.randn_like(layer(x))
        (ref,) = torch.autograd.grad(layer(x), x, g)
        with without_discarded_param_grads(layer):
            (fast,) = torch.autograd.grad(layer(x), x, g)
        assert torch.equal(ref, fast)


def test_other_layers_are_left_alone():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Conv2d(2, 2, 3, padding_mode="reflect"),
                          MyConv(2, 2, 3), nn.GroupNorm(1, 2))
    with without_discarded_param_grads(model) as switched:
        assert switched == 0


def test_grad_samples_without_copy_accumulates_like_opacus():
    """A layer called twice in one forward adds its per-example gradients, as Opacus does, without writing
    into the tensor autograd handed over."""
    g1, g2 = torch.randn(4, 3), torch.randn(4, 3)
    ref, p = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    gsm.create_or_accumulate_grad_sample(param=ref, grad_sample=g1, max_batch_len=4)
    gsm.create_or_accumulate_grad_sample(param=ref, grad_sample=g2, max_batch_len=4)
    g1_before = g1.clone()
    with grad_samples_without_copy():
        gsm.create_or_accumulate_grad_sample(param=p, grad_sample=g1, max_batch_len=4)
        gsm.create_or_accumulate_grad_sample(param=p, grad_sample=g2, max_batch_len=4)
        short = torch.nn.Parameter(torch.zeros(3))  # fewer rows than the batch: Opacus's own padding path
        gsm.create_or_accumulate_grad_sample(param=short, grad_sample=g1[:2], max_batch_len=4)
    assert torch.equal(p._current_grad_sample, ref._current_grad_sample)
    assert torch.equal(g1, g1_before)
    assert short._current_grad_sample.shape == (4, 3) and torch.equal(short._current_grad_sample[2:], torch.zeros(2, 3))
    assert gsm.create_or_accumulate_grad_sample.__name__ == "create_or_accumulate_grad_sample"  # restored
