"""Model architectures, the registry user code extends, and the checks that Opacus can train a model.

A model factory is ``factory(input_shape: tuple[int, ...], n_classes: int) -> nn.Module``; ``input_shape``
is one record's (C, H, W) for images and (F,) for feature vectors (tabular records). A model spec is either a
name in ``MODELS`` (built-ins ``simple-cnn``, ``tanh-cnn`` and ``mlp``; user code adds more with
``register_model``), ``mlp-W1-W2...`` (the MLP with those hidden widths), or a factory to import:

- ``package.module:factory``: imported with importlib; the module must be importable (installed, on
  PYTHONPATH, or in the current folder, which is tried last);
- ``path/to/file.py:factory``: the file is loaded as a module, wherever it lies.

Registered names exist only in the process that registered them; an import spec also works in the
worker processes an audit trains in, because each worker imports it again.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dpaudit.errors import DPAuditError
from dpaudit.registry import Registry

ModelFactory = Callable[[tuple, int], nn.Module]
MNIST_SHAPE = (1, 28, 28)
# The MLP's hidden widths when none are given (--hidden): two layers of 64 ReLU units.
DEFAULT_HIDDEN = (64, 64)
_MLP_SPEC = re.compile(r"mlp-(\d+(?:-\d+)*)")


def _conv_out(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class SimpleCNN(nn.Module):
    """The seed tutorial's CNN (also Opacus's MNIST example): 26,010 parameters on 1x28x28.

    Any C x H x W with H, W >= 8 works: the first convolution takes C channels, the flatten size is
    computed from H and W, and inputs smaller than 14 on a side get more zero padding in the first
    convolution so that the second pooling still has a 1x1 output. On 1x28x28 the layers, their
    creation order (hence the initial weights for a seed) and the parameter count are as they always were."""

    def __init__(self, n_classes: int = 10, activation: type[nn.Module] = nn.ReLU,
                 input_shape: tuple[int, ...] = MNIST_SHAPE):
        super().__init__()
        c, h, w = _chw(input_shape, "simple-cnn")
        if h < 8 or w < 8:
            raise DPAuditError(f"simple-cnn needs images of at least 8x8, got {h}x{w}; register a model for "
                               f"smaller inputs")
        # Padding 3 as in the original; more where the image is under 14 pixels so every layer stays valid.
        ph, pw = (3 + max(0, -(-(14 - s) // 2)) for s in (h, w))
        padding = ph if ph == pw else (ph, pw)
        sizes = []
        for s, p in ((h, ph), (w, pw)):
            s = _conv_out(s, 8, 2, p)  # conv1
            s = _conv_out(s, 2)  # pool
            s = _conv_out(s, 4, 2)  # conv2
            s = _conv_out(s, 2)  # pool
            sizes.append(s)
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 8, stride=2, padding=padding),
            activation(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(16, 32, 4, stride=2),
            activation(),
            nn.MaxPool2d(2, 1),
            nn.Flatten(),
            nn.Linear(32 * sizes[0] * sizes[1], 32),
            activation(),
            nn.Linear(32, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TanhCNN(SimpleCNN):
    """SimpleCNN with tanh, the tempered sigmoid of Papernot et al. (2021): bounded activations keep
    pre-clipping gradient norms small, which DP-SGD rewards with more accuracy at the same epsilon."""

    def __init__(self, n_classes: int = 10, input_shape: tuple[int, ...] = MNIST_SHAPE):
        super().__init__(n_classes, activation=nn.Tanh, input_shape=input_shape)


def _chw(input_shape, who: str) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DPAuditError(f"{who} takes image records (C, H, W), got input shape {shape}")
    return shape


class MLP(nn.Module):
    """A multi-layer perceptron for feature vectors: Linear -> ReLU per hidden width, then Linear to logits.

    Any input shape works (records are flattened first), but it is meant for tabular records (F,). Only Linear
    and ReLU layers, no BatchNorm or Dropout: Opacus's ModuleValidator accepts it and its stock Linear grad
    sampler computes every per-example gradient."""

    def __init__(self, n_classes: int, input_shape: tuple[int, ...], hidden: tuple[int, ...] = DEFAULT_HIDDEN):
        super().__init__()
        shape = tuple(int(d) for d in input_shape)
        if not shape or min(shape) < 1:
            raise DPAuditError(f"mlp needs a non-empty input shape, got {shape}")
        widths = check_hidden(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = math.prod(shape)
        for w in widths:
            layers += [nn.Linear(n_in, w), nn.ReLU()]
            n_in = w
        layers.append(nn.Linear(n_in, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def check_hidden(hidden, option: str = "--hidden") -> tuple[int, ...]:
    """Hidden widths of the MLP: 0 to 8 whole numbers in [1, 65536] (none: a linear model, logistic regression)."""
    try:
        widths = tuple(int(w) for w in hidden)
    except (TypeError, ValueError):
        raise DPAuditError(f"{option} must be a comma list of whole numbers such as 64,64, got {hidden!r}") from None
    if any(isinstance(w, bool) for w in hidden) or any(int(w) != w for w in hidden):
        raise DPAuditError(f"{option} must be a comma list of whole numbers such as 64,64, got {hidden!r}")
    if len(widths) > 8 or any(not 1 <= w <= 65536 for w in widths):
        raise DPAuditError(f"{option} takes up to 8 widths in [1, 65536], got {','.join(map(str, widths))}")
    return widths


def mlp_spec(hidden: tuple[int, ...] | None) -> str:
    """The model spec of the MLP with these hidden widths: ``mlp`` for the default, else ``mlp-W1-W2...``
    (``mlp-0`` for no hidden layer, a linear model)."""
    if hidden is None or tuple(hidden) == DEFAULT_HIDDEN:
        return "mlp"
    widths = check_hidden(hidden)
    return "mlp-" + ("-".join(map(str, widths)) if widths else "0")


def parse_mlp_spec(spec: str) -> tuple[int, ...] | None:
    """The hidden widths named by ``mlp`` / ``mlp-W1-W2...``, or None if ``spec`` names no MLP."""
    if spec == "mlp":
        return DEFAULT_HIDDEN
    m = _MLP_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        return None
    widths = tuple(int(w) for w in m.group(1).split("-"))
    return () if widths == (0,) else check_hidden(widths, f"model {spec!r}")


def is_builtin_model(spec) -> bool:
    """A built-in architecture (including ``mlp-W1-W2...``): no user code runs to build it."""
    return isinstance(spec, str) and (spec in MODELS.builtin or parse_mlp_spec(spec) is not None)


def default_model(input_shape: tuple[int, ...]) -> str:
    """The architecture an audit uses when none is named: simple-cnn for images (C, H, W), mlp otherwise."""
    return "simple-cnn" if len(tuple(input_shape)) == 3 else "mlp"


# ---- registry -------------------------------------------------------------------------------------

MODELS: Registry = Registry("model", "module:factory")


def register_model(name: str, *, force: bool = False, _builtin: bool = False):
    """Decorator: ``@register_model("my-net")`` on ``factory(input_shape, n_classes) -> nn.Module`` makes
    ``build_model("my-net", ...)`` call it. A taken name is refused unless ``force=True``;
    built-in names are always refused (dpaudit.registry)."""
    return MODELS.register(name, force=force, _builtin=_builtin)


@register_model("simple-cnn", _builtin=True)
def simple_cnn(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return SimpleCNN(n_classes, input_shape=input_shape)


@register_model("tanh-cnn", _builtin=True)
def tanh_cnn(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return TanhCNN(n_classes, input_shape=input_shape)


@register_model("mlp", _builtin=True)
def mlp(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The MLP with the default hidden widths (``DEFAULT_HIDDEN``); ``mlp-W1-W2...`` names others."""
    return MLP(n_classes, input_shape, DEFAULT_HIDDEN)


_FILE_MODULES: dict[Path, object] = {}


def _import_file(path: Path, spec: str):
    path = path.resolve()
    if path in _FILE_MODULES:
        return _FILE_MODULES[path]
    if not path.is_file():
        raise DPAuditError(f"model spec {spec!r}: file {path} not found; give path/to/file.py:factory")
    # A stable, unique module name, registered in sys.modules so classes defined there pickle by reference.
    mod_name = f"_dpaudit_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    ispec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(ispec)
    sys.modules[mod_name] = module
    try:
        ispec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything; one line says what
        del sys.modules[mod_name]
        raise DPAuditError(f"model spec {spec!r}: importing {path} raised {type(exc).__name__}: "
                           f"{_first_line(exc)}; fix that file") from None
    _FILE_MODULES[path] = module
    return module


def _import_dotted(mod_name: str, spec: str):
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        top = mod_name.split(".")[0]
        cwd = os.getcwd()
        # The `dpaudit` console script does not put the current folder on sys.path as `python -m` does;
        # a user's models.py next to their data is the common case, so try there before giving up.
        if exc.name == top and cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
            try:
                return importlib.import_module(mod_name)
            except ModuleNotFoundError:
                sys.path.remove(cwd)
        raise DPAuditError(f"model spec {spec!r}: cannot import module {mod_name!r} ({_first_line(exc)}); the "
                           f"module must be importable (pip install it, add its folder to PYTHONPATH) or "
                           f"give path/to/file.py:factory") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything; one line says what
        raise DPAuditError(f"model spec {spec!r}: importing {mod_name!r} raised {type(exc).__name__}: "
                           f"{_first_line(exc)}; fix that module") from None


def resolve_model(spec: str | ModelFactory) -> ModelFactory:
    """The factory behind ``spec``: a registered name, ``package.module:factory``, ``path/file.py:factory``,
    or a callable (returned as is)."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise DPAuditError(f"model spec must be a name or module:factory, got {spec!r}")
    if spec in MODELS:
        return MODELS[spec]
    widths = parse_mlp_spec(spec)
    if widths is not None:
        return functools.partial(_mlp_with, widths)
    if ":" not in spec:
        raise DPAuditError(f"unknown model {spec!r}; choose one of {', '.join(MODELS)} (mlp-W1-W2...: the mlp with "
                           f"those hidden widths), or give "
                           f"package.module:factory or path/to/file.py:factory")
    mod_part, _, attr = spec.rpartition(":")
    if not mod_part or not attr:
        raise DPAuditError(f"model spec {spec!r} must be package.module:factory or path/to/file.py:factory")
    if mod_part.endswith(".py") or "/" in mod_part or os.sep in mod_part:
        module = _import_file(Path(mod_part), spec)
    else:
        module = _import_dotted(mod_part, spec)
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise DPAuditError(f"model spec {spec!r}: {mod_part} has no attribute {attr!r}; "
                               f"name a function factory(input_shape, n_classes) -> nn.Module")
        factory = getattr(factory, part)
    if not callable(factory):
        raise DPAuditError(f"model spec {spec!r}: {attr} is a {type(factory).__name__}, not a callable factory")
    return factory


def _mlp_with(hidden: tuple[int, ...], input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return MLP(n_classes, input_shape, hidden)


def model_source_sha256(spec: str) -> str | None:
    """sha256 of the file that defines a user factory (for cache keys: an edited factory must not reuse
    models trained with the old one), or None for built-ins."""
    if is_builtin_model(spec):
        return None
    import inspect

    factory = resolve_model(spec)
    try:
        src = inspect.getsourcefile(factory)
    except TypeError:
        src = None
    if not src or not Path(src).is_file():
        return None
    return hashlib.sha256(Path(src).read_bytes()).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else exc.__class__.__name__


def build_model(spec: str | ModelFactory, input_shape: tuple[int, ...] | int = MNIST_SHAPE,
                n_classes: int = 10, *, validate_dp: bool = False) -> nn.Module:
    """Build a model from ``spec`` for records of ``input_shape`` ((C, H, W) or (F,)) and ``n_classes`` classes.

    Checks, each a one-line ``DPAuditError``: the factory runs, returns an ``nn.Module``, and maps a dummy
    batch [2, *input_shape] to [2, n_classes] (in eval mode, without gradients: no weight, buffer or
    random state changes unless the model has lazy layers, which this materialises). With ``validate_dp``,
    also ``validate_for_dp``.

    The older call ``build_model(name, n_classes)`` (an int second argument) means input shape 1x28x28."""
    if isinstance(input_shape, int) and not isinstance(input_shape, bool):
        input_shape, n_classes = MNIST_SHAPE, input_shape  # old signature build_model(name, n_classes)
    input_shape = tuple(int(d) for d in input_shape)
    factory = resolve_model(spec)
    label = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    try:
        model = factory(input_shape, n_classes)
    except DPAuditError:
        raise
    # SystemExit too: a factory calling sys.exit(0) must not end the audit with status 0 and no word
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything; one line says what
        raise DPAuditError(f"model factory {label!r} raised {type(exc).__name__} for input shape {input_shape} "
                           f"and {n_classes} classes: {_first_line(exc)}; fix it (it is called as "
                           f"factory(input_shape, n_classes))") from None
    if not isinstance(model, nn.Module):
        raise DPAuditError(f"model factory {label!r} returned a {type(model).__name__}, not a torch.nn.Module")
    check_output_shape(model, input_shape, n_classes, label)
    check_trainable(model, input_shape, n_classes, label)
    if validate_dp:
        validate_for_dp(model)
    return model


def check_trainable(model: nn.Module, input_shape: tuple[int, ...], n_classes: int, label: str = "model",
                    batch_sizes: tuple[int, ...] = (2,)) -> None:
    """Before any training, what would otherwise fail mid-training with a traceback: the model has float32
    parameters that train (dpaudit feeds float32 images), and a training step (train mode, forward, loss,
    backward) works on a batch of each of ``batch_sizes`` and gives logits [B, n_classes]. The step runs on a
    copy with the random state saved and restored, so the model, its buffers (BatchNorm statistics) and the
    seeded training that follows are unchanged."""
    import copy

    params = list(model.parameters())
    if not params:
        raise DPAuditError(f"{label} has no parameters; there is nothing to train")
    if not any(p.requires_grad for p in params):
        raise DPAuditError(f"{label}: every parameter is frozen (requires_grad=False); there is nothing to train")
    odd = sorted({str(p.dtype).replace("torch.", "") for p in params if p.dtype != torch.float32})
    if odd:
        raise DPAuditError(f"{label} has {', '.join(odd)} parameters; dpaudit trains float32 models on float32 "
                           f"images: return model.float() from your factory")
    device = params[0].device
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        twin = copy.deepcopy(model).train()
        for b in batch_sizes:
            try:
                out = twin(torch.zeros((b, *input_shape), device=device))
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, n_classes):
                    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise DPAuditError(f"{label} in training mode maps a batch [{b}, "
                                       f"{', '.join(map(str, input_shape))}] to {got}, not [{b}, {n_classes}]; it must "
                                       f"give one logit per class in train() mode as well as in eval()")
                nn.functional.cross_entropy(out, torch.zeros(b, dtype=torch.int64, device=device)).backward()
            except DPAuditError:
                raise
            except Exception as exc:  # noqa: BLE001 - user code may raise anything; one line says what
                raise DPAuditError(f"{label} fails a training step on a batch of {b} record(s): {type(exc).__name__}: "
                                   f"{_first_line(exc)}; fix the model (BatchNorm, for one, cannot train on a batch "
                                   f"of 1)") from None


def check_output_shape(model: nn.Module, input_shape: tuple[int, ...], n_classes: int, label: str = "model") -> None:
    """One forward pass on zeros [2, *input_shape]; the output must be logits [2, n_classes]."""
    was_training = model.training
    try:
        param = next(model.parameters(), None)
    except Exception:  # noqa: BLE001 - lazy or exotic parameters: fall back to CPU float32
        param = None
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *input_shape), device=device, dtype=dtype))
    except Exception as exc:  # noqa: BLE001 - user code may raise anything; one line says what
        raise DPAuditError(f"{label} fails on a batch of shape [2, {', '.join(map(str, input_shape))}]: "
                           f"{type(exc).__name__}: {_first_line(exc)}; build it for input shape "
                           f"{input_shape}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise DPAuditError(f"{label} returns a {type(out).__name__}; it must return a logits tensor [B, {n_classes}]")
    if tuple(out.shape) != (2, n_classes):
        raise DPAuditError(f"{label} maps a batch [2, {', '.join(map(str, input_shape))}] to shape "
                           f"{list(out.shape)}, not [2, {n_classes}]; its last layer must give one logit per class")


def validate_for_dp(model: nn.Module) -> None:
    """Raise a one-line error naming the first layer Opacus can't train privately (BatchNorm, ...) and the fix.

    Runs Opacus's ``ModuleValidator`` on each trainable sub-module, so the message can give the layer's
    path in the model (Opacus's own errors don't), with the model in training mode as DP-SGD will be."""
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    was_training = model.training
    model.train()
    try:
        errors = ModuleValidator.validate(model, strict=False)
        if not errors:
            return
        found = []
        for path, sub in trainable_modules(model):
            check = ModuleValidator.VALIDATORS.get(type(sub))
            if check is not None and check(sub):
                found.append((path or "<root>", type(sub).__name__, str(check(sub)[0])))
    finally:
        model.train(was_training)
    if found:
        path, kind, why = found[0]
        fix = ("replace it with nn.GroupNorm, or return opacus.validators.ModuleValidator.fix(model) "
               "from your factory" if "BatchNorm" in kind else
               "replace it, e.g. return opacus.validators.ModuleValidator.fix(model) from your factory")
        more = f" ({len(found) - 1} more layer(s) like it)" if len(found) > 1 else ""
        reason = why.strip().splitlines()[0].split(". ")[0] if why.strip() else "unsupported"
        raise DPAuditError(f"model layer {path!r} ({kind}) can't be trained with DP-SGD ({reason}){more}; {fix}")
    first = str(errors[0]).strip().splitlines()[0] if str(errors[0]).strip() else type(errors[0]).__name__
    raise DPAuditError(f"model is not DP-compatible ({len(errors)} problem(s), first: {first}); "
                       f"replace the layers, e.g. with opacus.validators.ModuleValidator.fix(model)")
