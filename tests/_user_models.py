"""Model factories as a user would write them, loaded by tests/test_models.py through spec strings
(``tests/_user_models.py:make_net``). Not collected by pytest (no test_ prefix)."""
from torch import nn


def make_net(input_shape, n_classes):
    """A small DP-compatible CNN (GroupNorm, not BatchNorm) for any C x H x W."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * h * w, n_classes),
    )


class Features(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.norm(self.conv(x))


class BatchNormNet(nn.Module):
    """BatchNorm mixes the records of a batch, which DP-SGD can't account for: Opacus refuses it."""

    def __init__(self, input_shape, n_classes):
        super().__init__()
        c, h, w = input_shape
        self.features = Features(c)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * h * w, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def make_bn_net(input_shape, n_classes):
    return BatchNormNet(input_shape, n_classes)


def make_wrong_width(input_shape, n_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes + 1))


def make_not_a_module(input_shape, n_classes):
    return "a string"


def make_raises(input_shape, n_classes):
    raise ValueError("this factory only builds 32x32 models\nsecond line that must not reach the user")


def make_old_signature(n_classes):
    return nn.Linear(4, n_classes)


NOT_CALLABLE = 3


# Factories that fail in training, not in eval: refused before any training (tests/test_fuzz_cli.py).
def _flat(input_shape, n_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes))


def make_float64(input_shape, n_classes):
    return _flat(input_shape, n_classes).double()


def make_half(input_shape, n_classes):
    return _flat(input_shape, n_classes).half()


def make_frozen(input_shape, n_classes):
    net = _flat(input_shape, n_classes)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class _NoParams(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x):
        return x.flatten(1)[:, :1].repeat(1, self.n_classes)


def make_no_params(input_shape, n_classes):
    return _NoParams(n_classes)


class _TrainShape(nn.Module):
    """One logit short in train() mode only."""

    def __init__(self, input_shape, n_classes):
        super().__init__()
        self.net = _flat(input_shape, n_classes)

    def forward(self, x):
        out = self.net(x)
        return out[:, :-1] if self.training else out


def make_train_shape(input_shape, n_classes):
    return _TrainShape(input_shape, n_classes)


def make_bn1d(input_shape, n_classes):
    """BatchNorm1d: fine on batches of 2 or more, a ValueError on a last batch of 1."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.BatchNorm1d(16), nn.Linear(16, n_classes))


def make_exit(input_shape, n_classes):
    import sys

    sys.exit(0)
