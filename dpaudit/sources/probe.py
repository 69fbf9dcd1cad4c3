"""A white-box probe for your own Opacus training script: gradient canaries in a few lines, and a report.

Usage (the lines marked ``# +`` are all that is added to an ordinary Opacus script)::

    import dpaudit                                                               # +
    probe = dpaudit.WhiteBoxProbe(canaries=1000, delta=1e-5)                     # +
    model, optimizer, criterion, loader = probe.wrap(model, optimizer, criterion, loader)   # +
    model, optimizer, loader = engine.make_private_with_epsilon(module=model, optimizer=optimizer,
                                                               data_loader=loader, ...)
    probe.attach(engine, optimizer, loader)                                      # +
    ... the training loop, unchanged ...
    probe.write_report("reports/my-run", test_accuracy=acc)                      # +

What the probe adds, and what it changes
----------------------------------------
``wrap`` (before ``make_private[_with_epsilon]``) adds M gradient canaries in three places:

* the data: each canary is included by an independent fair coin (``dpaudit.training.whitebox.GradientCanaries``); an
  included one is an extra record of the dataset, so Opacus's Poisson sampler draws it like any record, at
  the rate q = B / N' it tells the accountant (N' = real records + included canaries). Its input is flagged
  (NaN everywhere but the first entry, which holds the canary's index; -123457 for integer inputs), its
  target is a copy of the first record's;
* the model: a dedicated parameter vector w in R^M (a bias-free ``nn.Linear(M, 1)``, so that Opacus's stock
  grad and norm samplers handle it in every mode) that never touches the model's outputs. Flagged rows
  reach your model as zeros;
* the loss: for a canary row the loss term is z @ w with z = D e_j (D = 10 C), so canary j's per-example
  gradient is exactly D e_j on w and exactly 0 on your parameters (``torch.where`` passes exact zeros to the
  branch not taken); a real record's gradient on w is exactly 0.

Training on the real records changes only as the extra records imply: N (hence q = B / N' and the
expected batch size, hence Opacus's calibrated σ), the Poisson draws (the sampler draws N' coins a step)
and the noise stream (the DP optimizer also draws noise for w). With M = 0 nothing changes: the same seed
gives the same real-parameter trajectory, bit for bit (tests/test_probe.py).

What is observed
----------------
After every optimizer step that updates the parameters (a pre-hook on your own optimizer, which Opacus's
DPOptimizer calls only for steps it does not skip: BatchMemoryManager's and virtual steps' partial batches
are skipped), the privatised gradient at w, multiplied back by the DP optimizer's averaging factor
(expected batch size x accumulated iterations) and expressed in units of the first step's clipping norm C,
is one row of the observations: o[t, j] = C [canary j drawn at step t] + N(0, σ² C²) when the training is
what the accountant assumes. ``dpaudit.training.whitebox.analyse`` tests that, bounds ε, and estimates σ and q.

The claim under test is your script's own: σ, q and the steps from your engine's accountant history, ε
from ``accountant.get_epsilon(delta)`` at ``write_report``, the accountant's mechanism (rdp, prv or gdp).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dpaudit.core.whitebox import GradientCanaries, WhiteBoxObservations
from dpaudit.errors import DPAuditError

__all__ = ["WhiteBoxProbe", "load_observations", "report_from_observations", "save_observations"]

INT_FLAG = -123457  # marks the canary rows of integer inputs (token ids are never negative)
OBS_FILE = "observations.npz"


class _Channel:
    """What the model's forward tells the criterion about the batch it just ran: (output, canary mask, s)."""

    def __init__(self):
        self.pending = None
        self.dirac = None  # D, set by attach once the clipping norm is known

    def take(self, output: torch.Tensor):
        p, self.pending = self.pending, None
        if p is None:
            return None
        out, mask, s = p
        if out is output or (isinstance(output, torch.Tensor) and output.dim() > 0
                             and output.shape[0] == mask.shape[0]):
            return mask, s
        return None


class ProbedModule(nn.Module):
    """Your model plus the canaries' parameter vector w (``canary.weight``, [1, M]), which never touches its
    outputs. ``forward(x, ...)`` returns ``base(x, ...)`` with the flagged canary rows of x replaced by zeros,
    and leaves z @ w for the probe's criterion."""

    def __init__(self, base: nn.Module, m: int, channel: _Channel):
        super().__init__()
        self.base = base
        with torch.random.fork_rng(devices=[]):  # Linear's own initialisation must not move the user's RNG
            self.canary = nn.Linear(m, 1, bias=False)
        nn.init.zeros_(self.canary.weight)
        try:
            ref = next(base.parameters())
            self.canary.to(ref.device)
        except StopIteration:
            pass
        self._channel = channel
        self._m = int(m)

    def forward(self, x, *args, **kwargs):
        w = self.canary.weight
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x[0].numel() < 2:
            raise DPAuditError("WhiteBoxProbe needs the model's first input to be a batch tensor [B, ...] with at "
                               "least 2 values per record")
        flat = x.reshape(x.shape[0], -1)
        mask = torch.isnan(flat[:, 1]) if x.is_floating_point() else flat[:, 1] == INT_FLAG
        z = torch.zeros(x.shape[0], self._m, dtype=w.dtype, device=w.device)
        if bool(mask.any()):
            if self._channel.dirac is None:
                raise DPAuditError("canary records reached the model before probe.attach(engine, optimizer): "
                                   "call it right after make_private")
            code = flat[mask, 0].double()
            ids = code.round().long()
            if not bool(((code == ids.double()) & (ids >= 0) & (ids < self._m)).all()):
                raise DPAuditError("canary inputs were changed on their way to the model (a transform in the "
                                   "training loop?); move input transforms into the dataset")
            rows = mask.nonzero(as_tuple=True)[0]
            z[rows.to(w.device), ids.to(w.device)] = float(self._channel.dirac)
            x = x.masked_fill(mask.view(-1, *([1] * (x.dim() - 1))), 0)
        out = self.base(x, *args, **kwargs)
        s = self.canary(z)[:, 0]
        self._channel.pending = (out, mask.to(s.device), s)
        return out


class ProbedLoss(nn.Module):
    """Your criterion, with each canary row's loss replaced by z @ w (exactly D e_j on w, 0 elsewhere).

    ``reduction`` mirrors your criterion's and may be set (Opacus's ghost-clipping wrapper sets "none")."""

    def __init__(self, criterion, channel: _Channel):
        super().__init__()
        if not hasattr(criterion, "reduction"):
            raise DPAuditError("WhiteBoxProbe needs a torch.nn loss (an object with a `reduction` attribute) as "
                               "the criterion, such as nn.CrossEntropyLoss()")
        self.criterion = criterion
        self.reduction = criterion.reduction
        self._channel = channel

    def forward(self, output, target, *args, **kwargs):
        hit = self._channel.take(output)
        old = self.criterion.reduction
        self.criterion.reduction = "none" if hit is not None else self.reduction
        try:
            per = self.criterion(output, target, *args, **kwargs)
        finally:
            self.criterion.reduction = old
        if hit is None:
            return per
        mask, s = hit
        shape = (-1,) + (1,) * (per.dim() - 1)
        per = torch.where(mask.view(shape), s.to(per.dtype).view(shape).expand_as(per), per)
        if self.reduction == "mean":
            return per.mean()
        if self.reduction == "sum":
            return per.sum()
        return per


class _ProbeDataset(torch.utils.data.Dataset):
    """The user's records followed by the included canaries' flagged records."""

    def __init__(self, base, canary_ids: np.ndarray, template):
        self.base = base
        self.n = len(base)
        self.ids = np.asarray(canary_ids, np.int64)
        x0, y0 = template
        # copies: a view of a TensorDataset's tensor would pin (and, to workers, pickle) the whole tensor
        self.x0 = x0.detach().clone()
        self.y0 = y0.detach().clone() if isinstance(y0, torch.Tensor) else y0

    def __len__(self):
        return self.n + int(self.ids.size)

    def __getitem__(self, i):
        if i < self.n:
            return self.base[i]
        j = int(self.ids[i - self.n])
        if self.x0.is_floating_point():
            x = torch.full_like(self.x0, float("nan"))
        else:
            x = torch.full_like(self.x0, INT_FLAG)
        x.view(-1)[0] = j
        y = self.y0.clone() if isinstance(self.y0, torch.Tensor) else self.y0
        return x, y


def _rebuild_loader(loader, dataset):
    """The user's DataLoader over the enlarged dataset, with the same batching, sampler kind and workers."""
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

    if loader.batch_size is None:
        raise DPAuditError("WhiteBoxProbe.wrap needs a DataLoader built with batch_size= (Opacus reads the "
                           "sampling rate from it), not one with its own batch_sampler")
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler):
        if sampler.replacement:
            raise DPAuditError("a RandomSampler with replacement is not supported; use shuffle=True")
        new_sampler = RandomSampler(dataset, generator=sampler.generator)
    elif isinstance(sampler, SequentialSampler):
        new_sampler = SequentialSampler(dataset)
    else:
        raise DPAuditError(f"WhiteBoxProbe.wrap supports shuffle=True or False loaders, not a "
                           f"{type(sampler).__name__}; make_private replaces the sampler by Poisson sampling anyway")
    kw = dict(batch_size=loader.batch_size, sampler=new_sampler, num_workers=loader.num_workers,
              collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
              timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator)
    if loader.num_workers > 0:
        kw.update(multiprocessing_context=loader.multiprocessing_context, prefetch_factor=loader.prefetch_factor,
                  persistent_workers=loader.persistent_workers)
    return DataLoader(dataset, **kw)


def _grad_sample_mode(module: nn.Module) -> str:
    """hooks, functorch or ghost, read from the Opacus wrapper whose hooks sit on ``module``."""
    try:
        from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
    except ImportError:
        return "unknown"
    for hook in list(module._forward_hooks.values()) + list(module._forward_pre_hooks.values()):
        owner = getattr(hook, "__self__", None)
        if owner is None and hasattr(hook, "func"):  # functools.partial
            owner = getattr(hook.func, "__self__", None)
        if isinstance(owner, GradSampleModuleFastGradientClipping):
            return "ghost" if getattr(owner, "use_ghost_clipping", True) else "fast-gradient-clipping"
        if isinstance(owner, GradSampleModule):
            return "functorch" if getattr(owner, "force_functorch", False) else "hooks"
    return "unknown"


class WhiteBoxProbe:
    """White-box gradient canaries for a training script of your own (see the module docstring).

    ``canaries``: M, the number of canaries (each included by a fair coin drawn from ``seed``). ``delta``: the
    δ your script states ε for (``get_epsilon(delta)``); it can also be given to ``write_report``.
    ``dirac_norm``: a canary's gradient norm D as a multiple of the clipping norm (default 10: clipping must
    act). ``name``: the model's name in the report.

    >>> probe = WhiteBoxProbe(canaries=8, seed=1, delta=1e-5)
    >>> probe.m, int(probe.coins.sum()) == probe.included
    (8, True)
    """

    def __init__(self, canaries: int = 1000, *, seed: int = 0, delta: float | None = None,
                 dirac_norm: float = 10.0, name: str = "model"):
        self.spec = GradientCanaries(m=int(canaries) if isinstance(canaries, (int, np.integer)) else canaries,
                                     seed=int(seed), dirac_norm=float(dirac_norm))
        if delta is not None and not 0 < float(delta) < 1:
            raise DPAuditError(f"delta must be in (0, 1), got {delta}")
        self.delta = None if delta is None else float(delta)
        self.name = str(name)
        self.coins = self.spec.coins()
        self._channel = _Channel()
        self._module = None
        self._optimizer = None
        self._dataset = None
        self._dp = None
        self._engine = None
        self._rows: list[torch.Tensor] = []
        self._clips: list[float] = []
        self._updates = None
        self._before = None
        self._loader_info: dict = {}
        self._t0 = self._t1 = None
        self._hooks = []

    @property
    def m(self) -> int:
        return int(self.spec.m)

    @property
    def included(self) -> int:
        return int(self.coins.sum())

    @property
    def model(self) -> nn.Module | None:
        """Your own module, without the canary vector: the model to evaluate, save and ship."""
        return None if self._module is None else self._module.base

    # ------------------------------------------------------------------------------------------ set up

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer, criterion, data_loader):
        """Add the canaries to the model, the optimizer (w in its own parameter group, no weight decay), the
        criterion and the data; call before ``make_private[_with_epsilon]``. Returns the four objects to use in
        their place: (model, optimizer, criterion, data_loader); the optimizer is the same object."""
        if self._module is not None:
            raise DPAuditError("this WhiteBoxProbe already wraps a model; make one probe per training run")
        if not isinstance(model, nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
            raise DPAuditError("probe.wrap(model, optimizer, criterion, data_loader) takes your nn.Module and "
                               "torch optimizer, before make_private")
        if hasattr(optimizer, "original_optimizer"):
            raise DPAuditError("probe.wrap must come before make_private: pass your own optimizer, not the "
                               "DPOptimizer")
        if not isinstance(data_loader, torch.utils.data.DataLoader):
            raise DPAuditError("probe.wrap needs a torch DataLoader")
        base_ds = data_loader.dataset
        if len(base_ds) == 0:
            raise DPAuditError("the training dataset is empty")
        first = base_ds[0]
        if not (isinstance(first, (tuple, list)) and len(first) == 2 and isinstance(first[0], torch.Tensor)):
            raise DPAuditError("WhiteBoxProbe needs dataset records of the form (input tensor, target)")
        x0, y0 = first
        if x0.numel() < 2:
            raise DPAuditError("WhiteBoxProbe needs at least 2 input values per record")
        if not (x0.is_floating_point() or x0.dtype in (torch.int32, torch.int64)):
            raise DPAuditError(f"WhiteBoxProbe supports float, int32 or int64 inputs, got {x0.dtype}")
        if x0.is_floating_point() and self.m > 2 ** 24:
            raise DPAuditError("at most 2^24 canaries (their index travels in a float)")
        self._dataset = _ProbeDataset(base_ds, np.flatnonzero(self.coins), (x0, y0))
        loader = _rebuild_loader(data_loader, self._dataset)
        self._module = ProbedModule(model, self.m, self._channel)
        w = self._module.canary.weight
        group0 = optimizer.param_groups[0]
        group = {"params": [w]}
        for key, value in (("lr", group0.get("lr")), ("weight_decay", 0.0), ("momentum", group0.get("momentum")),
                           ("dampening", 0.0), ("nesterov", False)):
            if key in optimizer.defaults and value is not None:
                group[key] = value
        optimizer.add_param_group(group)
        self._optimizer = optimizer
        self._hooks.append(optimizer.register_step_pre_hook(self._pre_step))
        self._hooks.append(optimizer.register_step_post_hook(self._post_step))
        self._n_real = len(base_ds)
        self._base_name = type(model).__name__
        return self._module, optimizer, ProbedLoss(criterion, self._channel), loader

    def attach(self, privacy_engine, optimizer, data_loader=None) -> None:
        """Read the DP side from what ``make_private`` returned: the engine (its accountant is the claim), the
        DPOptimizer (clipping norm, averaging factor) and, optionally, the data loader (whether it samples by
        Poisson, and its number of batches per epoch)."""
        if self._module is None:
            raise DPAuditError("call probe.wrap(model, optimizer, criterion, loader) before make_private, then "
                               "probe.attach")
        if getattr(optimizer, "original_optimizer", None) is not self._optimizer:
            raise DPAuditError("probe.attach needs the optimizer make_private returned for the optimizer given to "
                               "probe.wrap")
        accountant = getattr(privacy_engine, "accountant", None)
        if accountant is None or not hasattr(accountant, "history"):
            raise DPAuditError("probe.attach needs the PrivacyEngine that ran make_private")
        c = optimizer.max_grad_norm
        if isinstance(c, (list, tuple)):
            raise DPAuditError("per-layer clipping (a list of max_grad_norm) is not supported by the probe")
        self._dp, self._engine, self._c0 = optimizer, privacy_engine, float(c)
        self._channel.dirac = self.spec.norm(self._c0)
        info = {"mode": _grad_sample_mode(self._module.canary)}
        if data_loader is not None:
            from opacus.utils.uniform_sampler import UniformWithReplacementSampler

            if data_loader.dataset is not self._dataset:
                raise DPAuditError("probe.attach: this data loader does not hold the probe's records; pass the "
                                   "loader make_private returned")
            sampler = data_loader.batch_sampler
            info.update(poisson=isinstance(sampler, UniformWithReplacementSampler),
                        sampler=type(sampler).__name__, batches_per_epoch=len(data_loader),
                        sampler_rate=float(getattr(sampler, "sample_rate", float("nan"))))
        self._loader_info = info

    # ------------------------------------------------------------------------------------------ observe

    def _pre_step(self, opt, args, kwargs) -> None:
        if self._dp is None:
            raise DPAuditError("the optimizer stepped before probe.attach(engine, optimizer): call it right after "
                               "make_private")
        w = self._module.canary.weight
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self._before = w.detach().clone()
        dp = self._dp
        scale = 1.0
        if getattr(dp, "loss_reduction", "mean") == "mean":
            try:
                acc = int(dp.accumulated_iterations)
            except (ValueError, TypeError, AttributeError):
                acc = 1
            scale = float(dp.expected_batch_size) * acc
        c_t = float(dp.max_grad_norm)
        g = w.grad
        if g is None:  # no gradient at all reached w: record zeros, which the tests then reject
            g = torch.zeros_like(w)
        self._rows.append(g.detach()[0] * (scale * self._c0 / c_t))
        self._clips.append(c_t)

    def _post_step(self, opt, args, kwargs) -> None:
        w = self._module.canary.weight.detach()
        changed = (w != self._before).any()
        self._updates = changed.long() if self._updates is None else self._updates + changed.long()
        self._t1 = time.perf_counter()

    # ------------------------------------------------------------------------------------------ report

    def observations(self, delta: float | None = None) -> WhiteBoxObservations:
        """What the run exposed and what its accountant was told (``dpaudit.training.whitebox.WhiteBoxObservations``)."""
        delta = self._delta(delta)
        if self._dp is None:
            raise DPAuditError("probe.attach(engine, optimizer) was never called: nothing was observed")
        if self.m == 0:
            raise DPAuditError("a probe with 0 canaries observes nothing; give canaries >= 1 for a report")
        if not self._rows:
            raise DPAuditError("no optimizer step ran after probe.attach: train first, then write the report")
        hist = list(self._engine.accountant.history)
        sigmas = {float(h[0]) for h in hist}
        rates = {float(h[1]) for h in hist}
        if len(sigmas) != 1 or len(rates) != 1:
            raise DPAuditError(f"the accountant composed {len(sigmas)} noise multipliers and {len(rates)} sampling "
                               "rates; the probe's analysis needs one of each (no noise or rate schedules)")
        sigma, q = sigmas.pop(), rates.pop()
        steps = int(sum(int(h[2]) for h in hist))
        obs = torch.stack(self._rows).to("cpu", torch.float32).numpy()  # the gradients' own precision, half the memory
        per_epoch = int(self._loader_info.get("batches_per_epoch") or max(1, round(1.0 / q)))
        group = self._optimizer.param_groups[-1]
        sgd = isinstance(self._optimizer, torch.optim.SGD)
        lr = float(group.get("lr", 1.0))
        momentum = float(group.get("momentum", 0.0)) if sgd else 0.0
        final_w = self._module.canary.weight.detach()[0].to("cpu", torch.float64).numpy().copy()
        scale = float(self._dp.expected_batch_size) if getattr(self._dp, "loss_reduction", "mean") == "mean" else 1.0
        if not sgd:
            # the final-model view assumes SGD; for other optimizers give it the SGD trajectory of the same
            # observations (it is shown for information only, never part of the verdict)
            final_w = -lr / scale * obs.sum(axis=0, dtype=np.float64)
        eps = float(self._engine.accountant.get_epsilon(delta=delta))
        return WhiteBoxObservations(
            obs=obs, epoch_of_step=np.arange(obs.shape[0]) // per_epoch, coins=self.coins.copy(), final_w=final_w,
            max_grad_norm=self._c0, dirac_norm=float(self._channel.dirac), noise_multiplier=sigma, sample_rate=q,
            steps_accounted=steps, n_param_updates=int(self._updates.item()) if self._updates is not None else 0,
            lr=lr, momentum=momentum, grad_scale=scale, delta=delta, claimed_epsilon=eps,
            accountant=str(self._engine.accountant.mechanism()))

    def meta(self, test_accuracy: float | None = None) -> dict:
        """What the report says about the run beyond the observations (JSON types)."""
        info = dict(self._loader_info)
        return {"name": self.name, "model": self._base_name, "n_train": int(self._n_real), "seed": int(self.spec.seed),
                "grad_sample_mode": info.pop("mode", "unknown"), "loader": info,
                "clip_changed": len(set(self._clips)) > 1,
                "device": str(self._module.canary.weight.device),
                "wall_s": (self._t1 - self._t0) if self._t0 is not None and self._t1 is not None else None,
                "test_accuracy": None if test_accuracy is None else float(test_accuracy)}

    def report(self, *, delta: float | None = None, test_accuracy: float | None = None,
               confidence: float = 0.95, command: str | None = None) -> dict:
        """The report document (``dpaudit.report`` schema) of the run so far."""
        obs = self.observations(delta)
        return report_from_observations(obs, meta=self.meta(test_accuracy), confidence=confidence, command=command)

    def write_report(self, out, *, delta: float | None = None, test_accuracy: float | None = None,
                     confidence: float = 0.95, force: bool | None = None, formats=("json", "md", "html")) -> dict:
        """Write report.json, report.md (with its figures), report.html and observations.npz into ``out``, a
        folder written atomically and replaced as a whole. By default (``force`` None) ``out`` must be new,
        empty, or hold an earlier probe report only (a re-run of the same script replaces it); ``force=True``
        replaces any folder, ``force=False`` only a new or empty one. Returns the report document."""
        from dpaudit.io import check_out_folder
        from dpaudit.report import render, write_outputs

        if force is None:
            force = _holds_probe_report_only(Path(out))
        check_out_folder(out, force)
        obs = self.observations(delta)
        meta = self.meta(test_accuracy)
        doc = report_from_observations(obs, meta=meta, confidence=confidence, command=_command())
        files: dict[str, bytes] = {}
        for f in ["json"] + [f for f in formats if f != "json"]:
            files.update(render(doc, f))
        files[OBS_FILE] = observations_bytes(obs, meta)
        write_outputs(out, files, force=force)
        return doc

    def _delta(self, delta):
        d = delta if delta is not None else self.delta
        if d is None:
            raise DPAuditError("give delta (the δ your script reports ε for): WhiteBoxProbe(..., delta=1e-5)")
        if not 0 < float(d) < 1:
            raise DPAuditError(f"delta must be in (0, 1), got {d}")
        return float(d)

    def close(self) -> None:
        """Remove the optimizer hooks (training with the same optimizer afterwards is no longer observed)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []


PROBE_FILES = {"report.json", "report.md", "report.html", OBS_FILE, "roc.png", "epsilon_vs_success.png",
               "epsilon_per_epoch.png", "whitebox.png"}


def _holds_probe_report_only(out: Path) -> bool:
    """True when ``out`` is a folder holding an earlier probe report and nothing else."""
    if not out.is_dir():
        return False
    names = {p.name for p in out.iterdir()}
    return {"report.json", OBS_FILE} <= names and names <= PROBE_FILES


def _command() -> str | None:
    import shlex
    import sys

    return "python " + " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else None


# ---------------------------------------------------------------------------------------------- files

def observations_bytes(obs: WhiteBoxObservations, meta: dict | None = None) -> bytes:
    """The observations as .npz bytes (``WhiteBoxObservations.load`` reads them), with the probe's notes on
    the run as one JSON string (no pickles)."""
    import io

    buf = io.BytesIO()
    arrays = {k: np.asarray(v) for k, v in asdict(obs).items()}
    arrays["probe_meta"] = np.asarray(json.dumps(meta or {}))
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def save_observations(path, obs: WhiteBoxObservations, meta: dict | None = None) -> None:
    from dpaudit.io import atomic_write_bytes

    atomic_write_bytes(Path(path), observations_bytes(obs, meta))


def load_observations(path) -> tuple[WhiteBoxObservations, dict]:
    """(observations, probe notes) from a probe's observations.npz or a dpaudit cache's .whitebox.npz."""
    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"{path} not found; give the observations.npz a WhiteBoxProbe wrote")
    obs = WhiteBoxObservations.load(path)
    meta: dict = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if "probe_meta" in z.files:
                meta = json.loads(str(z["probe_meta"]))
    except (OSError, ValueError) as exc:
        raise DPAuditError(f"{path}: its probe notes are unreadable ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise DPAuditError(f"{path}: its probe notes are not a JSON object")
    if obs.obs.ndim != 2 or obs.obs.shape[1] != obs.coins.size:
        raise DPAuditError(f"{path}: observations of shape {obs.obs.shape} do not fit {obs.coins.size} canaries")
    return obs, meta


# ---------------------------------------------------------------------------------------------- report

def _structural_tests(meta: dict, q: float) -> list[dict]:
    """Facts read from the objects themselves, not from statistics (p = 0 when one fails, 1 when it holds)."""
    out = []
    loader = meta.get("loader") or {}
    if "poisson" in loader:
        ok = bool(loader["poisson"])
        rate = loader.get("sampler_rate")
        if ok and rate is not None and not math.isnan(rate):
            ok = math.isclose(rate, q, rel_tol=1e-9)
        out.append({"name": "poisson_sampler", "statistic": 1.0 if ok else 0.0, "p_value": 1.0 if ok else 0.0,
                    "passed": ok, "claimed": q,
                    "what": f"structural check, no statistics: the training loader's batch sampler is "
                            f"{loader.get('sampler')} at rate {rate if rate is not None else float('nan'):.6g}; the "
                            f"accountant assumes Poisson sampling at q = {q:.6g}"})
    return out


def report_from_observations(obs: WhiteBoxObservations, *, meta: dict | None = None, confidence: float = 0.95,
                             command: str | None = None) -> dict:
    """The white-box report (``dpaudit.report`` schema, validated) of one DP run's canary observations.

    The verdict's evidence is the white-box canaries alone: three Bonferroni shares at 1 - (1 - confidence)/3 each,
    as in ``dpaudit audit --gradient-canaries`` without attacks: the one-run bound; the other bound routes
    (Clopper-Pearson, per-step and f-DP one-run, splitting their share three ways, ``dpaudit.core.whitebox.analyse``);
    and the conformance tests as one family."""
    from dpaudit.config import AuditConfig
    from dpaudit.core.bounds import (
        alpha_share,
        decide_verdict,
        evidence_confidences,
        max_advantage,
        max_balanced_accuracy,
        whitebox_need,
    )
    from dpaudit.core.plan import report_document
    from dpaudit.schema import WhiteBoxTest, from_plain
    from dpaudit.training.accounting import cross_check
    from dpaudit.training.whitebox import analyse

    meta = dict(meta or {})
    if not 0.5 <= confidence < 1:
        raise DPAuditError(f"confidence must be in [0.5, 1), got {confidence}")
    routes = 3
    # The verdict holds at this run's share of α (the original audit spends α/2: dpaudit.core.plan.run_confidence),
    # as an audit's does, so that its alpha_spending record is true.
    confidence_run = 1.0 - (1.0 - confidence) * alpha_share(0)
    _, per_route = evidence_confidences(confidence_run, 0, routes)
    seed = int(meta.get("seed", 0) or 0)
    t0 = time.perf_counter()
    res = analyse(obs, confidence=per_route, seed=seed)
    q, sigma, delta = float(obs.sample_rate), float(obs.noise_multiplier), float(obs.delta)
    structural = tuple(from_plain(WhiteBoxTest, t, f"structural test {t['name']}") for t in _structural_tests(meta, q))
    if structural:
        failed = res.failed + tuple(t.name for t in structural if not t.passed)
        res = replace(res, tests=res.tests + structural, failed=failed, conformant=not failed)
    if meta.get("clip_changed"):
        res = replace(res, notes=res.notes + (
            "the clipping norm changed during training; observations are in units of the first step's C",))
    m, n_in = res.m, res.included
    claimed = float(obs.claimed_epsilon)
    if not (claimed > 0 and math.isfinite(claimed)):
        raise DPAuditError(f"the accountant's ε is {claimed}; the probe audits a finite ε > 0")
    # Measured power, as for an audit's white-box canaries (dpaudit.core.power): the claimed run with less noise
    from dpaudit.core.power import whitebox_detectable
    from dpaudit.training.accounting import opacus_epsilon

    steps_c, q_c, acc = res.steps, res.claimed_q, res.accountant
    wb = res.with_power(whitebox_detectable(
        obs, confidence=per_route, seed=seed, analysis_seed=seed,
        epsilon_of_sigma=lambda s_: opacus_epsilon(q_c, s_, steps_c, delta, acc)))
    bounds = [(f"white-box canaries ({r.label})", r.epsilon_lb, r.ceiling) for r in wb.counted_routes()]
    v = decide_verdict(claimed, bounds, [] if wb.conformant else list(wb.failed), delta=delta,
                       confidence=per_route, n_canaries=m, canary_confidence=per_route, whitebox_need=whitebox_need(wb),
                       detectable=[("white-box canaries", wb.detectable_epsilon)]
                       if wb.detectable_epsilon is not None else None)
    from dpaudit.core.plan import make_verdict
    from dpaudit.core.power import POWER_METHOD

    verdict = make_verdict(v, confidence=confidence_run, per_bound_confidence=per_route, canary_confidence=None,
                           n_bounds=routes, family_confidence=confidence_run,
                           correction=f"Bonferroni: {routes} white-box shares at {per_route:.4g} each (the one-run bound; "
                                      f"the other bound routes, splitting theirs; the conformance tests), so this "
                                      f"verdict holds at {confidence_run:.4g}", power_method=POWER_METHOD)
    steps = int(obs.steps_accounted)
    per_epoch = int(np.bincount(np.asarray(obs.epoch_of_step, np.int64)).max()) if obs.obs.shape[0] else steps
    epochs = int(np.asarray(obs.epoch_of_step).max()) + 1 if obs.obs.shape[0] else 0
    eps_epoch = _epsilon_per_epoch(obs, per_epoch, epochs)
    # dp_accounting's PLD is the reference for the numerical accountants (PRV, and GDP, which approximates
    # the same privacy-loss distribution); RDP for RDP.
    ref = "rdp" if obs.accountant == "rdp" else "prv"
    check = replace(cross_check(claimed, ref, q, sigma, steps, delta), accountant=str(obs.accountant))
    # Named as dpaudit audit names a model of this claim, so that `dpaudit check` matches it to config.epsilons.
    from dpaudit.config import model_name
    from dpaudit.schema import Bounds, GradientCanaryRecord, ModelAudit, ReferenceModels, TrainingRecord
    from dpaudit.version import __version__

    name = model_name(claimed)
    n_train = int(meta.get("n_train") or 0)
    batch = float(obs.grad_scale) if obs.grad_scale else q * n_train
    record = TrainingRecord(
        model=str(meta.get("model") or "user model"), dp=True, target_epsilon=claimed, epsilon=claimed,
        epsilon_per_epoch=tuple(eps_epoch), delta=delta, noise_multiplier=sigma, sample_rate=q, steps=steps,
        max_grad_norm=float(obs.max_grad_norm), accountant=str(obs.accountant),
        grad_sample_mode=meta.get("grad_sample_mode"),
        poisson_sampling_checked=bool((meta.get("loader") or {}).get("poisson", False)),
        epochs=epochs, batch_size=int(round(batch)), lr=float(obs.lr), momentum=float(obs.momentum),
        n_train=n_train, train_accuracy=None, test_accuracy=meta.get("test_accuracy"), train_loss=None,
        seed=None, wall_s=meta.get("wall_s"), device=meta.get("device"), accounting_s=None,
        dpaudit_version=__version__, observed=True,
        gradient_canaries=GradientCanaryRecord(m=m, included=n_in, dirac_norm=float(obs.dirac_norm)))
    model = ModelAudit(
        name=name, dp=True, target_epsilon=claimed, training=record,
        reference_models=ReferenceModels(k=0, test_accuracy=(), epsilon=(), seeds=(), cache_hits=0),
        accountant_check=check,
        bounds=Bounds(max_balanced_accuracy=max_balanced_accuracy(claimed, delta),
                      max_advantage=max_advantage(claimed, delta), delta=delta),
        attacks=(), canary=None, whitebox=wb, verdict=verdict)
    cfg = AuditConfig(dataset=f"user:{meta.get('model') or 'script'}", members=max(n_train, 1), n_test=0,
                      epsilons=(claimed,), delta=delta, model=str(meta.get("model") or "user model"), epochs=epochs,
                      batch_size=int(round(batch)), lr=float(obs.lr), momentum=float(obs.momentum),
                      max_grad_norm=float(obs.max_grad_norm), accountant=str(obs.accountant),
                      grad_sample_mode=str(meta.get("grad_sample_mode") or "unknown"), shadow_models=0, attacks=(),
                      canaries=0, gradient_canaries=m, confidence=confidence, seed=seed,
                      device=str(meta.get("device") or "cpu"))
    tag = hashlib.sha256(json.dumps({"n": n_train, "m": m, "seed": seed, "model": record.model},
                                    sort_keys=True).encode()).hexdigest()
    dataset = {"name": cfg.dataset, "source": "the user's training script (records not read by dpaudit)",
               "n_records": n_train, "n_classes": 0, "sha256": tag}
    split = {"seed": seed, "n_test": 0, "pool_size": n_train, "members": n_train, "n_models": 1, "canaries": 0,
             "canaries_in": 0, "pool_sha256": tag, "target_members_sha256": tag}
    report = report_document(
        cfg, command=command, workers=None, device=str(meta.get("device") or "cpu"), dataset=dataset, split=split,
        models=[model], phases={"analysis": time.perf_counter() - t0}, worker_s={}, observed=True,
        threshold_text=("No attack thresholds: the evidence is white-box gradient canaries only. The Clopper-Pearson "
                        "route chooses its threshold on a random half of the canaries and the per-step route on a "
                        "random quarter (seeded), and each counts outcomes on the rest only; the one-run and f-DP "
                        "one-run bounds take their guesses from a Bonferroni-corrected set of fixed counts."))
    return report.to_json()


def _epsilon_per_epoch(obs: WhiteBoxObservations, per_epoch: int, epochs: int) -> list[float]:
    """ε after each epoch: the run's own accountant on its (σ, q) for the steps of that many epochs."""
    from dpaudit.training.accounting import opacus_epsilon

    out = []
    for e in range(1, epochs + 1):
        steps = min(e * per_epoch, int(obs.steps_accounted))
        try:
            out.append(opacus_epsilon(float(obs.sample_rate), float(obs.noise_multiplier), steps, float(obs.delta),
                                      str(obs.accountant)))
        except (ValueError, RuntimeError, OverflowError, ArithmeticError):
            out.append(float("nan"))
    if out:
        out[-1] = float(obs.claimed_epsilon)  # the last is the script's own, as it printed it
    return out
