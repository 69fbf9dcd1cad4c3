"""Train one model on one index set, with DP-SGD (Opacus) or without, and record what was spent."""
from __future__ import annotations

import hashlib
import json
import math
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import __version__
from .accounting import ACCOUNTANTS, validate_privacy_target
from .data import Normalisation
from .errors import DPAuditError
from .grad_samples import grad_samples_without_copy, without_discarded_param_grads
from .memory import TRIM_EVERY_STEPS, release_freed_memory
from .models import build_model, validate_for_dp

GRAD_SAMPLE_MODES = ("hooks", "functorch", "ghost")
# Normalisation is applied on the way into the model, not stored in the data; MNIST's constants by default.
_MNIST = Normalisation.mnist()


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (with the training indices and the data hash)."""

    model: str = "simple-cnn"
    epsilon: float = math.inf  # target epsilon; inf trains without DP
    delta: float = 1e-5
    epochs: int = 20
    batch_size: int = 128  # expected (Poisson) batch size under DP
    lr: float = 0.02
    momentum: float = 0.9
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "hooks"
    max_physical_batch_size: int = 512  # BatchMemoryManager splits larger logical batches
    seed: int = 0
    device: str = "cpu"

    @property
    def dp(self) -> bool:
        return math.isfinite(self.epsilon)

    def key(self) -> dict:
        """Fields that change the result (device and physical batching don't, up to float noise)."""
        d = asdict(self)
        d.pop("device")
        d.pop("max_physical_batch_size")
        d["epsilon"] = "inf" if not self.dp else self.epsilon
        return d


@dataclass(frozen=True)
class TrainingRecord:
    model: str
    dp: bool
    target_epsilon: float | None
    epsilon: float | None  # spent, from Opacus's accountant
    epsilon_per_epoch: list[float]
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float  # Poisson rate under DP; batch/N otherwise
    steps: int
    max_grad_norm: float | None
    accountant: str | None
    grad_sample_mode: str | None
    poisson_sampling_checked: bool
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    n_train: int
    train_accuracy: float
    test_accuracy: float
    train_loss: float
    seed: int
    wall_s: float  # the training loop only: no calibration, no per-epoch accounting, no evaluation
    device: str
    accounting_s: float = 0.0  # time spent asking the accountant for epsilon after each epoch
    dpaudit_version: str = __version__

    def to_dict(self) -> dict:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingRecord":
        names = {f for f in cls.__dataclass_fields__}
        missing = names - set(d) - {"dpaudit_version", "accounting_s"}
        if missing:
            raise DPAuditError(f"training record lacks {sorted(missing)}; it was not written by dpaudit")
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainedModel:
    module: nn.Module
    record: TrainingRecord
    config: TrainConfig
    cache_hit: bool = field(default=False)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DPAuditError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise DPAuditError(f"--device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)


def to_tensor(images: np.ndarray, norm: Normalisation | None = None) -> torch.Tensor:
    """images [N,C,H,W] -> normalised float32, with ``norm`` (a dataset's ``Dataset.normalisation``);
    without it, MNIST's constants as always (for uint8 [N,1,28,28])."""
    return (norm or _MNIST).apply(images)


def check_config(cfg: TrainConfig, n_train: int) -> None:
    if cfg.epochs < 1:
        raise DPAuditError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 1 or cfg.batch_size > n_train:
        raise DPAuditError(f"--batch-size must be in [1, {n_train}] (the training set size), got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise DPAuditError(f"--lr must be > 0, got {cfg.lr}")
    if cfg.dp or cfg.epsilon != math.inf:
        validate_privacy_target(cfg.epsilon, cfg.delta, n_train)
    if cfg.dp:
        if not cfg.max_grad_norm > 0:
            raise DPAuditError(f"--max-grad-norm must be > 0, got {cfg.max_grad_norm}")
        if cfg.accountant not in ACCOUNTANTS:
            raise DPAuditError(f"--accountant must be one of {', '.join(ACCOUNTANTS)}, got {cfg.accountant!r}")
        if cfg.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise DPAuditError(f"--grad-sample-mode must be one of {', '.join(GRAD_SAMPLE_MODES)}")


def _accuracy_and_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                       batch: int = 1024) -> tuple[float, float]:
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(y), batch):
            xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
            out = model(xb)
            correct += int((out.argmax(1) == yb).sum())
            loss_sum += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
    return correct / max(len(y), 1), loss_sum / max(len(y), 1)


def check_poisson(loader, sample_rate: float) -> None:
    """DP-SGD's accounting assumes each record enters each batch independently with rate q.
    A custom sampler or fixed-size batches would make the reported epsilon wrong, so refuse them."""
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, UniformWithReplacementSampler):
        raise DPAuditError(f"DP training loader is not Poisson-sampled (batch sampler is "
                           f"{type(sampler).__name__}); the accountant's epsilon would not hold")
    if not math.isclose(sampler.sample_rate, sample_rate, rel_tol=1e-9):
        raise DPAuditError(f"DP loader samples at rate {sampler.sample_rate:.6g} but the accountant was told "
                           f"{sample_rate:.6g}; the reported epsilon would not hold")


def train_model(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, *,
                test_images: np.ndarray, test_labels: np.ndarray, n_classes: int = 10,
                progress: bool = True, desc: str = "train",
                after_make_private: Callable[[torch.optim.Optimizer], None] | None = None,
                norm: Normalisation | None = None) -> TrainedModel:
    """Train ``cfg.model`` on (images, labels) and measure it on the test set.

    ``norm`` normalises the images on their way into the model (the dataset's ``normalisation``; MNIST's
    constants when None). The model is built for the images' own shape [C, H, W] and ``n_classes``.

    ``after_make_private`` exists for dpaudit's own self-tests, which need a model whose training
    departs from what its accountant assumes (for example, noise switched off) to prove the
    audit catches it. Never pass it in an audit.
    """
    n = int(labels.shape[0])
    check_config(cfg, n)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    model = build_model(cfg.model, tuple(images.shape[1:]), n_classes).to(device)
    x, y = to_tensor(images, norm), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    dataset = torch.utils.data.TensorDataset(x, y)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    criterion = nn.CrossEntropyLoss()
    engine = None
    if cfg.dp:
        from opacus import PrivacyEngine

        validate_for_dp(model)
        engine = PrivacyEngine(accountant=cfg.accountant, secure_mode=False)
        with _memoised_calibration():
            out = engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, criterion=criterion,
                target_epsilon=cfg.epsilon, target_delta=cfg.delta, epochs=cfg.epochs,
                max_grad_norm=cfg.max_grad_norm, poisson_sampling=True, grad_sample_mode=cfg.grad_sample_mode,
                noise_generator=torch.Generator(device=device).manual_seed(cfg.seed + 1))
        if cfg.grad_sample_mode == "ghost":
            model, optimizer, criterion, loader = out
        else:
            model, optimizer, loader = out
        # Opacus sets q = 1/len(loader) = batch_size/N; the accountant is told the same q.
        sample_rate = 1.0 / len(loader)
        check_poisson(loader, sample_rate)
        if after_make_private is not None:
            after_make_private(optimizer)
    else:
        sample_rate = cfg.batch_size / n

    eps_per_epoch: list[float] = []
    steps = 0
    accounting_s = 0.0
    t0 = time.perf_counter()
    with _dp_speedups(model, cfg):
        bar = _progress(range(cfg.epochs), progress, desc)
        for _epoch in bar:
            model.train()
            if cfg.dp:
                from opacus.utils.batch_memory_manager import BatchMemoryManager

                ctx = BatchMemoryManager(data_loader=loader, max_physical_batch_size=cfg.max_physical_batch_size,
                                         optimizer=optimizer)
            else:
                ctx = nullcontext(loader)
            with ctx as batches:
                for xb, yb in batches:
                    xb, yb = xb.to(device), yb.to(device)
                    optimizer.zero_grad(set_to_none=True)
                    loss = criterion(model(xb), yb)
                    loss.backward()
                    optimizer.step()
                    if not cfg.dp or not getattr(optimizer, "_is_last_step_skipped", False):
                        steps += 1
                        if steps % TRIM_EVERY_STEPS == 0:
                            release_freed_memory()
            if engine is not None:
                ta = time.perf_counter()
                eps_per_epoch.append(_spent_epsilon(engine, cfg.delta))
                accounting_s += time.perf_counter() - ta
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(eps=f"{eps_per_epoch[-1]:.3f}")
    wall = time.perf_counter() - t0 - accounting_s
    release_freed_memory()

    plain = model._module if hasattr(model, "_module") else model
    if cfg.dp:
        hist = engine.accountant.history
        steps = int(sum(h[2] for h in hist))
        noise = float(optimizer.noise_multiplier)
        acc_q = {float(h[1]) for h in hist}
        if len(acc_q) != 1 or not math.isclose(acc_q.pop(), sample_rate, rel_tol=1e-9):
            raise DPAuditError("the accountant recorded a different sample rate than the loader used")
    tr_acc, tr_loss = _accuracy_and_loss(plain, x, y, device)
    te_acc, _ = _accuracy_and_loss(plain, to_tensor(test_images, norm), torch.from_numpy(np.asarray(test_labels, np.int64)),
                                   device)
    record = TrainingRecord(
        model=cfg.model, dp=cfg.dp, target_epsilon=cfg.epsilon if cfg.dp else None,
        epsilon=eps_per_epoch[-1] if cfg.dp else None, epsilon_per_epoch=eps_per_epoch,
        delta=cfg.delta if cfg.dp else None,
        noise_multiplier=noise if cfg.dp else None, sample_rate=sample_rate, steps=steps,
        max_grad_norm=cfg.max_grad_norm if cfg.dp else None, accountant=cfg.accountant if cfg.dp else None,
        grad_sample_mode=cfg.grad_sample_mode if cfg.dp else None, poisson_sampling_checked=cfg.dp,
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum, n_train=n,
        train_accuracy=tr_acc, test_accuracy=te_acc, train_loss=tr_loss, seed=cfg.seed, wall_s=wall,
        device=str(device), accounting_s=accounting_s)
    plain = plain.cpu().eval()
    return TrainedModel(module=plain, record=record, config=cfg)


_SIGMA_CACHE: dict[tuple, float] = {}
_EPSILON_CACHE: dict[tuple, float] = {}


def _spent_epsilon(engine, delta: float) -> float:
    """epsilon spent so far, from the engine's own accountant.

    The accountant's answer is a pure function of its history (sigma, q, steps) and delta, and the K + 1
    models of one epsilon share that history epoch for epoch, so each value is computed once per process:
    PRV takes about half a second an epoch, which on the default audit cost more than the DP steps."""
    acc = engine.accountant
    key = (type(acc).__module__, type(acc).__qualname__, tuple(tuple(h) for h in acc.history), float(delta))
    if key not in _EPSILON_CACHE:
        _EPSILON_CACHE[key] = float(engine.get_epsilon(delta))
    return _EPSILON_CACHE[key]


@contextmanager
def _memoised_calibration():
    """An audit trains K + 1 models per epsilon with the same (epsilon, delta, q, epochs, accountant), and
    make_private_with_epsilon would repeat the same binary search for sigma (seconds with PRV) for each.
    Opacus's search is a pure function of those arguments, so its result is remembered for this process;
    make_private_with_epsilon still does everything else, and epsilon still comes from the accountant."""
    import opacus.privacy_engine as pe

    original = getattr(pe, "get_noise_multiplier", None)
    if original is None:  # another Opacus layout: calibrate every time
        yield
        return

    def cached(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in _SIGMA_CACHE:
            _SIGMA_CACHE[key] = original(**kwargs)
        return _SIGMA_CACHE[key]

    pe.get_noise_multiplier = cached
    try:
        yield
    finally:
        pe.get_noise_multiplier = original


def _dp_speedups(model: nn.Module, cfg: TrainConfig) -> ExitStack:
    """The grad-sample speed-ups that apply to this run; each leaves the privatised gradients bit-for-bit
    unchanged (dpaudit/grad_samples.py says why)."""
    stack = ExitStack()
    if cfg.dp:
        stack.enter_context(grad_samples_without_copy())
        if cfg.grad_sample_mode == "hooks":
            stack.enter_context(without_discarded_param_grads(model))
    return stack


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, unit="epoch", leave=False)


# ---- saving and loading -------------------------------------------------------------------------

def save_model(trained: TrainedModel, path: str | Path, extra: dict | None = None, with_hash: bool = True) -> None:
    """Weights go in ``path`` (plain tensors only), the record and config in ``path`` + ``.json``, with the
    weights' SHA-256 so that a reader can prove the two belong together."""
    import io as _io

    from .io import atomic_write_bytes, atomic_write_json

    path = Path(path)
    buf = _io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in trained.module.state_dict().items()}, buf)
    meta = {"format": "dpaudit.model/1", "config": trained.config.key() | {"device": trained.config.device},
            "record": trained.record.to_dict(), **(extra or {})}
    if with_hash:
        meta["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_name(path.name + ".json"), meta)


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Load a model saved by ``save_model``. Refuses pickles that carry code (``weights_only=True``)."""
    path = Path(path)
    meta_path = path.with_name(path.name + ".json")
    if not path.is_file():
        raise DPAuditError(f"model file {path} not found; train one with `dpaudit train --out DIR`")
    if not meta_path.is_file():
        raise DPAuditError(f"{meta_path} is missing; a dpaudit model is the weights file plus its .json record")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise DPAuditError(f"{meta_path} is not valid JSON ({exc.__class__.__name__}); re-train the model") from None
    if not isinstance(meta, dict) or meta.get("format") != "dpaudit.model/1":
        raise DPAuditError(f"{meta_path} is not a dpaudit model record; it may come from another tool")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("record"), dict):
        raise DPAuditError(f"{meta_path} lacks its config or training record; it is damaged, re-train the model")
    _check_checkpoint_size(path)
    n_classes = meta.get("n_classes", 10)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= MAX_CLASSES:
        raise DPAuditError(f"{meta_path}: n_classes must be a whole number in [2, {MAX_CLASSES}], got {n_classes!r}; "
                           f"the record is damaged or foreign, re-train the model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError for zip corruption, EOFError...
        msg = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
        raise DPAuditError(f"{path} is not a loadable weights file (refused with weights_only=True: {msg}); "
                           f"it is corrupt or carries code; re-train the model") from None
    shape = meta.get("input_shape", [1, 28, 28])
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(isinstance(v, int) and 0 < v <= 4096 for v in shape)):
        raise DPAuditError(f"{meta_path}: input_shape must be a short list of positive whole numbers, got {shape!r}")
    module = build_model(meta["config"].get("model", "simple-cnn"), tuple(shape), n_classes)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DPAuditError(f"{path} holds no state dict of tensors; it was not written by dpaudit")
    try:
        module.load_state_dict(state)
    except RuntimeError:
        raise DPAuditError(f"{path} does not fit the {meta['config'].get('model')} architecture "
                           f"(foreign checkpoint); re-train it with dpaudit") from None
    return module.to(resolve_device(device)).eval(), meta


MAX_CLASSES = 100_000
# A checkpoint is a zip archive; refuse one whose members would unpack to far more than any dpaudit model
# before torch reads it (a 1.5 MB zip bomb otherwise costs gigabytes of memory first).
MAX_CHECKPOINT_BYTES = 2 << 30
MAX_EXPANSION = 50


def _check_checkpoint_size(path: Path) -> None:
    import zipfile

    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            unpacked = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: torch.load with weights_only=True refuses it with its own message
    if unpacked > MAX_CHECKPOINT_BYTES or unpacked > MAX_EXPANSION * max(size, 1 << 20):
        raise DPAuditError(f"{path} would unpack to {unpacked / 2**20:.0f} MiB from {size / 2**20:.1f} MiB; refused as a "
                           f"likely zip bomb; re-train the model")


def cache_key(cfg: TrainConfig, data_sha256: str, train_idx: np.ndarray, extra: str = "") -> str:
    h = hashlib.sha256()
    h.update(json.dumps(cfg.key(), sort_keys=True).encode())
    h.update(data_sha256.encode())
    h.update(np.ascontiguousarray(train_idx, dtype=np.int64).tobytes())
    h.update(extra.encode())
    h.update(f"{__version__}|torch{torch.__version__}".encode())
    return h.hexdigest()[:24]


def with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    return replace(cfg, seed=seed)
