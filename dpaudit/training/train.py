"""Train one model on one index set, with DP-SGD (Opacus) or without, and record what was spent."""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dpaudit.config import ACCOUNTANTS, BUILTIN_MODELS, GRAD_SAMPLE_MODES, AuditConfig
from dpaudit.config.recipes import NON_DP_RECIPE
from dpaudit.errors import DPAuditError
from dpaudit.schema import GradientCanaryRecord, TrainingRecord
from dpaudit.training.accounting import validate_privacy_target
from dpaudit.training.data import Normalisation
from dpaudit.training.grad_samples import grad_samples_without_copy, without_discarded_param_grads
from dpaudit.training.memory import TRIM_EVERY_STEPS, release_freed_memory
from dpaudit.training.models import build_model, check_trainable, validate_for_dp
from dpaudit.version import __version__

if TYPE_CHECKING:
    from dpaudit.core.whitebox import GradientCanaries, WhiteBoxObservations

# Normalisation is applied on the way into the model, not stored in the data; MNIST's constants by default.
_MNIST = Normalisation.mnist()


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (with the training indices and the data hash). Its defaults
    are the audit's (``AuditConfig``) and the non-DP recipe's, read from there: one source for each."""

    model: str = BUILTIN_MODELS[0]
    epsilon: float = math.inf  # target epsilon; inf trains without DP
    delta: float = AuditConfig.delta
    epochs: int = NON_DP_RECIPE["epochs"]
    batch_size: int = NON_DP_RECIPE["batch_size"]  # expected (Poisson) batch size under DP
    lr: float = NON_DP_RECIPE["lr"]
    momentum: float = NON_DP_RECIPE["momentum"]
    max_grad_norm: float = AuditConfig.max_grad_norm
    accountant: str = AuditConfig.accountant
    grad_sample_mode: str = AuditConfig.grad_sample_mode
    max_physical_batch_size: int = 512  # BatchMemoryManager splits larger logical batches
    seed: int = AuditConfig.seed
    device: str = AuditConfig.device

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


@dataclass
class TrainedModel:
    module: nn.Module
    record: TrainingRecord
    config: TrainConfig
    cache_hit: bool = field(default=False)
    whitebox: WhiteBoxObservations | None = None  # gradient-canary observations (dpaudit.training.whitebox)


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


class CanaryModel(nn.Module):
    """``base`` plus the gradient canaries' parameters w in R^m, which never touch ``base``'s outputs.

    ``forward(x, z)`` returns (base(x), z @ w): fed z = D e_j for canary j's record and 0 for a real record,
    canary j's per-example gradient is exactly D e_j on w (the loss term of a canary record is z @ w, its
    classification loss masked out) and exactly 0 on base; a real record's gradient on w is exactly 0.
    w is a bias-free nn.Linear, so Opacus's stock Linear grad sampler computes its per-example gradients."""

    def __init__(self, base: nn.Module, m: int):
        super().__init__()
        self.base = base
        self.canary = nn.Linear(m, 1, bias=False)
        nn.init.zeros_(self.canary.weight)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base(x), self.canary(z)[:, 0]


def canary_loss(logits: torch.Tensor, canary_out: torch.Tensor, y: torch.Tensor, cid: torch.Tensor) -> torch.Tensor:
    """Mean over the (physical) batch of each record's loss: cross-entropy for a real record (cid < 0), the canary
    output z @ w for a canary. ``torch.where`` passes exactly zero gradient to the branch not taken, so canaries
    add nothing to base's per-example gradients and real records nothing to w's. The mean matches Opacus's
    loss_reduction="mean", which multiplies each per-example gradient back by the physical batch size."""
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    return torch.where(cid >= 0, canary_out, ce).mean()


class CanaryLoss(nn.Module):
    """:func:`canary_loss` as a criterion ``(logits, canary_out, y, cid)`` with a ``reduction`` ("mean", "sum" or
    "none": each record's loss), which is what Opacus's ghost clipping needs: ``make_private(criterion=...)`` wraps
    it in ``DPLossFastGradientClipping``, which sets reduction "none" to get each record's loss (the canary's is
    z @ w), then runs the two-pass backward (per-example norms, then the clipped sum) on it."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, canary_out: torch.Tensor, y: torch.Tensor,
                cid: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(logits, y, reduction="none")
        per = torch.where(cid >= 0, canary_out, ce)
        if self.reduction == "mean":
            return per.mean()
        if self.reduction == "sum":
            return per.sum()
        return per


def canary_inputs(cid: torch.Tensor, m: int, norm: float) -> torch.Tensor:
    """z: D e_j for canary j's rows, 0 for real rows ([B, m])."""
    z = torch.zeros(len(cid), m, device=cid.device)
    rows = (cid >= 0).nonzero(as_tuple=True)[0]
    z[rows, cid[rows]] = norm
    return z


def train_model(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, *,
                test_images: np.ndarray, test_labels: np.ndarray, n_classes: int = 10,
                progress: bool = True, desc: str = "train",
                after_make_private: Callable[..., None] | None = None,
                gradient_canaries: GradientCanaries | None = None,
                norm: Normalisation | None = None) -> TrainedModel:
    """Train ``cfg.model`` on (images, labels) and measure it on the test set.

    ``norm`` normalises the images on their way into the model (the dataset's ``normalisation``; MNIST's
    constants when None). The model is built for the images' own shape [C, H, W] and ``n_classes``.

    ``after_make_private`` exists for dpaudit's own self-tests, which need a model whose training
    departs from what its accountant assumes (for example, noise switched off) to prove the
    audit catches it. Never pass it in an audit. It is called as ``f(optimizer)``, or as
    ``f(optimizer, ctx=TamperContext)`` when it accepts ``ctx`` (dpaudit.training.whitebox): then it may also
    replace ``ctx.loader``. It runs after the Poisson-sampling check, as a bug would.

    ``gradient_canaries`` (DP only; dpaudit.training.whitebox.GradientCanaries) adds the white-box canaries: the included
    ones join the training set as extra records drawn by the same Poisson sampler (the accountant's q is
    B / (real + included)), and ``TrainedModel.whitebox`` holds their observations. The returned module is the
    base architecture without the canary parameters. With None or m = 0 nothing changes.
    """
    n = int(labels.shape[0])
    gc = gradient_canaries if gradient_canaries is not None and gradient_canaries.m > 0 else None
    coins = gc.coins() if gc is not None else None
    n_in = int(coins.sum()) if gc is not None else 0
    if gc is not None:
        if not cfg.dp:
            raise DPAuditError("gradient canaries audit DP-SGD; train with a finite epsilon or drop them")
    check_config(cfg, n + n_in)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    model = build_model(cfg.model, tuple(images.shape[1:]), n_classes).to(device)
    if cfg.dp or (n + n_in) % cfg.batch_size == 1:  # Poisson batches can hold 1 record, and so can a last batch
        check_trainable(model, tuple(images.shape[1:]), n_classes, str(cfg.model), batch_sizes=(1,))
    base = model
    x, y = to_tensor(images, norm), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if gc is None:
        dataset = torch.utils.data.TensorDataset(x, y)
    else:
        # Included canaries are extra records: a blank image (never used: its classification loss is masked),
        # label 0, and the canary's index; real records carry index -1.
        cids = np.flatnonzero(coins)
        x_all = torch.cat([x, torch.zeros((n_in,) + tuple(x.shape[1:]), dtype=x.dtype)])
        y_all = torch.cat([y, torch.zeros(n_in, dtype=torch.int64)])
        c_all = torch.cat([torch.full((n,), -1, dtype=torch.int64), torch.from_numpy(cids.astype(np.int64))])
        dataset = torch.utils.data.TensorDataset(x_all, y_all, c_all)
        model = CanaryModel(base, gc.m).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    # Ghost clipping runs its two backward passes from each record's loss, so with canaries its criterion is the
    # canary loss itself (CanaryLoss), wrapped by make_private; the other modes ignore the criterion.
    ghost = cfg.dp and cfg.grad_sample_mode == "ghost"
    criterion = CanaryLoss() if gc is not None and ghost else nn.CrossEntropyLoss()
    engine = None
    if cfg.dp:
        from opacus import PrivacyEngine

        validate_for_dp(model)
        engine = PrivacyEngine(accountant=cfg.accountant, secure_mode=False)
        if cfg.grad_sample_mode == "fast":
            from dpaudit.training.fast_clipping import register

            register()  # adds the mode to Opacus's look-ups (dpaudit/fast_clipping.py)
        with _memoised_calibration():
            out = engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, criterion=criterion,
                target_epsilon=cfg.epsilon, target_delta=cfg.delta, epochs=cfg.epochs,
                max_grad_norm=cfg.max_grad_norm, poisson_sampling=True, grad_sample_mode=cfg.grad_sample_mode,
                noise_generator=torch.Generator(device=device).manual_seed(cfg.seed + 1))
        if ghost:
            model, optimizer, criterion, loader = out
        else:
            model, optimizer, loader = out
        # Opacus sets q = 1/len(loader) = batch_size/N; the accountant is told the same q.
        sample_rate = 1.0 / len(loader)
        check_poisson(loader, sample_rate)
        if after_make_private is not None:
            from dpaudit.training.whitebox import TamperContext, call_tamper

            tctx = TamperContext(optimizer=optimizer, loader=loader, engine=engine, accountant=engine.accountant,
                                 sample_rate=sample_rate, config=cfg, module=model)
            call_tamper(after_make_private, optimizer, tctx)
            loader = tctx.loader
    else:
        sample_rate = cfg.batch_size / n

    w_param = None
    if gc is not None:
        w_param = (model._module if hasattr(model, "_module") else model).canary.weight
        d_norm = gc.norm(cfg.max_grad_norm)
        obs_rows: list[torch.Tensor] = []
        obs_epoch: list[int] = []
        n_updates = 0
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
                if gc is None:
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
                else:
                    for xb, yb, cb in batches:
                        xb, yb, cb = xb.to(device), yb.to(device), cb.to(device)
                        optimizer.zero_grad(set_to_none=True)
                        w_before = w_param.detach().clone()
                        logits, cout = model(xb, canary_inputs(cb, gc.m, d_norm))
                        if ghost:  # DPLossFastGradientClipping: backward() is the two-pass ghost backward
                            loss = criterion(logits, cout, yb, cb)
                        else:
                            loss = canary_loss(logits, cout, yb, cb)
                        loss.backward()
                        optimizer.step()
                        # Steps are counted from w's values (independently of the optimizer's own flags) for the
                        # steps conformance test; the observation is the privatised gradient the step used.
                        if not torch.equal(w_param.detach(), w_before):
                            n_updates += 1
                        if not getattr(optimizer, "_is_last_step_skipped", False):
                            steps += 1
                            if w_param.grad is not None:
                                # float32, the precision the privatised gradient has: half the memory of
                                # float64 (m = 10,000 canaries over a Fashion-MNIST run's 3,000 steps: 120 MB)
                                g = w_param.grad.detach()[0].to("cpu", torch.float32)
                                obs_rows.append(g * _grad_scale(optimizer))
                                obs_epoch.append(_epoch)
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
    if gc is not None:
        plain = plain.base
    if cfg.dp:
        hist = engine.accountant.history
        steps = int(sum(h[2] for h in hist))
        noise = float(optimizer.noise_multiplier)
        acc_sigma = {float(h[0]) for h in hist}
        if len(acc_sigma) == 1:  # what the accountant was told (a self-test bug may alter the optimizer's)
            noise = acc_sigma.pop()
        acc_q = {float(h[1]) for h in hist}
        if len(acc_q) != 1 or not math.isclose(acc_q.pop(), sample_rate, rel_tol=1e-9):
            raise DPAuditError("the accountant recorded a different sample rate than the loader used")
    whitebox = None
    if gc is not None:
        from dpaudit.core.whitebox import WhiteBoxObservations

        t_obs = len(obs_rows)
        whitebox = WhiteBoxObservations(
            obs=(torch.stack(obs_rows).numpy() if t_obs else np.zeros((0, gc.m), np.float32)),
            epoch_of_step=np.asarray(obs_epoch, dtype=np.int64), coins=coins,
            final_w=w_param.detach()[0].to("cpu", torch.float64).numpy().copy(),
            max_grad_norm=float(cfg.max_grad_norm), dirac_norm=d_norm, noise_multiplier=noise,
            sample_rate=sample_rate, steps_accounted=steps, n_param_updates=n_updates, lr=float(cfg.lr),
            momentum=float(cfg.momentum), grad_scale=float(_grad_scale(optimizer, after=False)), delta=cfg.delta,
            claimed_epsilon=float(eps_per_epoch[-1]), accountant=cfg.accountant)
    tr_acc, tr_loss = _accuracy_and_loss(plain, x, y, device)
    te_acc, _ = _accuracy_and_loss(plain, to_tensor(test_images, norm), torch.from_numpy(np.asarray(test_labels, np.int64)),
                                   device)
    record = TrainingRecord(
        model=cfg.model, dp=cfg.dp, target_epsilon=cfg.epsilon if cfg.dp else None,
        epsilon=eps_per_epoch[-1] if cfg.dp else None, epsilon_per_epoch=tuple(eps_per_epoch),
        delta=cfg.delta if cfg.dp else None,
        noise_multiplier=noise if cfg.dp else None, sample_rate=sample_rate, steps=steps,
        max_grad_norm=cfg.max_grad_norm if cfg.dp else None, accountant=cfg.accountant if cfg.dp else None,
        grad_sample_mode=cfg.grad_sample_mode if cfg.dp else None, poisson_sampling_checked=cfg.dp,
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum, n_train=n,
        train_accuracy=tr_acc, test_accuracy=te_acc, train_loss=tr_loss, seed=cfg.seed, wall_s=wall,
        device=str(device), accounting_s=accounting_s, dpaudit_version=__version__,
        gradient_canaries=None if gc is None else GradientCanaryRecord(m=gc.m, included=int(n_in), dirac_norm=float(d_norm)))
    plain = plain.cpu().eval()
    return TrainedModel(module=plain, record=record, config=cfg, whitebox=whitebox)


def _grad_scale(optimizer, after: bool = True) -> float:
    """The factor Opacus's DPOptimizer divided the noisy clipped sum by (loss_reduction="mean"): multiplying an
    observed gradient by it gives sum of clipped per-example gradients + N(0, sigma^2 C^2)."""
    if getattr(optimizer, "loss_reduction", "mean") != "mean":
        return 1.0
    acc = 1
    if after:
        try:
            acc = int(optimizer.accumulated_iterations)
        except (ValueError, TypeError, AttributeError):
            acc = 1
    return float(optimizer.expected_batch_size) * acc


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
    unchanged (dpaudit/training/grad_samples.py says why)."""
    stack = ExitStack()
    if cfg.dp:
        stack.enter_context(grad_samples_without_copy())
        if cfg.grad_sample_mode in ("hooks", "fast"):
            stack.enter_context(without_discarded_param_grads(model))
    return stack


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, unit="epoch", leave=False)


# ---- saving and loading -------------------------------------------------------------------------

def save_model(trained: TrainedModel, path: str | Path, extra: dict | None = None, with_hash: bool = True,
               tag_key: bytes | None = None) -> None:
    """Weights go in ``path`` (plain tensors only), the record and config in ``path`` + ``.json``, with the
    weights' SHA-256 so that a reader can prove the two belong together. ``tag_key``: also a keyed hash of the
    record's hashes (:mod:`dpaudit.training.cache_auth`), which whoever writes the folder cannot forge without the key."""
    import io as _io

    from dpaudit.io import atomic_write_bytes, atomic_write_json

    path = Path(path)
    buf = _io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in trained.module.state_dict().items()}, buf)
    meta = {"format": "dpaudit.model/1", "config": trained.config.key() | {"device": trained.config.device},
            "record": trained.record.to_dict(), **(extra or {})}
    if with_hash:
        meta["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        meta["record_sha256"] = record_sha256(meta["record"])
    if tag_key is not None:
        from dpaudit.training.cache_auth import entry_tag

        meta["entry_hmac"] = entry_tag(tag_key, meta)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_name(path.name + ".json"), meta)


def record_sha256(record: dict) -> str:
    """Hash of a training record's canonical JSON: damage to a cached record (a flipped digit in ε, say) is
    caught. It cannot stop a deliberate edit of both (nothing stored beside the record can): in the model cache
    the keyed hash of :mod:`dpaudit.training.cache_auth` does; the accountant cross-check recomputes ε from σ, q and steps,
    and `dpaudit check` fails a flagged mismatch."""
    from dpaudit.io import dumps

    return hashlib.sha256(json.dumps(json.loads(dumps(record)), sort_keys=True).encode()).hexdigest()


def load_model(path: str | Path, device: str = "cpu", model: str | None = None) -> tuple[nn.Module, dict]:
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
    check_checkpoint_size(path)
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
    # The architecture named in the JSON is only trusted when it is a registered name: a spec such as
    # "pkg.mod:f" or "file.py:f" would import and run code chosen by whoever wrote the file. A user factory is
    # given by the caller (``model``: the --model the user typed), never taken from the record.
    from dpaudit.training.models import MODELS, is_builtin_model

    named = meta["config"].get("model", "simple-cnn")
    if model is None:
        if not isinstance(named, str) or not (named in MODELS or is_builtin_model(named)):
            raise DPAuditError(f"{meta_path} names the architecture {str(named)[:60]!r}, which is not a built-in "
                               f"model; pass --model with your factory to load it (dpaudit never imports code "
                               f"named in a file)")
        model = named
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DPAuditError(f"{path} holds no state dict of tensors; it was not written by dpaudit")
    from dpaudit.limits import check_fits_state

    check_fits_state(model, tuple(shape), n_classes, state, path)  # before building it allocates the record's claim
    module = build_model(model, tuple(shape), n_classes)
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


def check_checkpoint_size(path: Path) -> None:
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
