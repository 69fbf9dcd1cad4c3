"""Every per-example gradient mode dpaudit offers must clip exactly as Opacus's reference `hooks` mode does:
a faster mode is only allowed if it trains the same private model."""
import pytest
import torch

from dpaudit.training.models import build_model


def _clipped_update(mode: str, x, y, max_grad_norm=0.05):
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = build_model("simple-cnn")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(y))
    crit = torch.nn.CrossEntropyLoss()
    out = PrivacyEngine().make_private(module=model, optimizer=opt, data_loader=loader, criterion=crit,
                                       noise_multiplier=0.0, max_grad_norm=max_grad_norm, poisson_sampling=False,
                                       grad_sample_mode=mode)
    model, opt = out[0], out[1]
    crit = out[2] if mode == "ghost" else crit
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    loss = crit(model(x), y)
    loss.backward()
    opt.step()
    return [b - p.detach() for b, p in zip(before, model.parameters())]


@pytest.mark.parametrize("mode", ["functorch", "ghost"])
def test_mode_clips_like_hooks(mode):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    ref = _clipped_update("hooks", x, y)
    got = _clipped_update(mode, x, y)
    # a small clip norm makes every example's gradient clipped, so an error in clipping would show
    for r, o in zip(ref, got):
        assert torch.allclose(r, o, rtol=1e-4, atol=1e-6), (mode, (r - o).abs().max())
    assert sum(float(r.abs().sum()) for r in ref) > 0
