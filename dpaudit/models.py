"""Model architectures, and the check that Opacus can train them."""
from __future__ import annotations

import torch
from torch import nn

from .errors import DPAuditError


class SimpleCNN(nn.Module):
    """The seed tutorial's CNN (also Opacus's MNIST example): 26,010 parameters."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TanhCNN(SimpleCNN):
    """SimpleCNN with tanh, the tempered sigmoid of Papernot et al. (2021): bounded activations keep
    pre-clipping gradient norms small, which DP-SGD rewards with more accuracy at the same epsilon."""

    def __init__(self, n_classes: int = 10):
        super().__init__(n_classes, activation=nn.Tanh)


MODELS: dict[str, type[nn.Module]] = {"simple-cnn": SimpleCNN, "tanh-cnn": TanhCNN}


def build_model(name: str, n_classes: int = 10) -> nn.Module:
    try:
        return MODELS[name](n_classes)
    except KeyError:
        raise DPAuditError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def validate_for_dp(model: nn.Module) -> None:
    """Raise a one-line error for layers Opacus can't train privately (BatchNorm, ...)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        first = str(errors[0]).splitlines()[0]
        raise DPAuditError(f"model is not DP-compatible ({len(errors)} problem(s), first: {first}); "
                           f"replace the layers, e.g. with opacus.validators.ModuleValidator.fix(model)")
