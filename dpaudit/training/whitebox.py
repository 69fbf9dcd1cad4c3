"""White-box gradient canaries in training: the DP bugs dpaudit's self-tests inject (``tamper`` hooks), and
``analyse`` with the claimed accountant (Opacus) plugged in for the empirical ε. The observations and their
analysis (bounds, conformance tests) are torch-free, in :mod:`dpaudit.core.whitebox`; their names are re-exported
here for the training code and the benchmarks that import them from this module."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

from dpaudit.core import whitebox as _core
from dpaudit.core.whitebox import (  # noqa: F401  (re-exported: the training-side names of the canaries)
    DIRAC_TIMES_CLIP,
    INDEPENDENCE_TESTS,
    N_SIMULATED,
    GradientCanaries,
    WhiteBoxObservations,
    conformance_tests,
    independence_statistic,
    llr_scores,
    noise_test,
    sigma_interval,
    simulate_claimed,
    synthetic_observations,
)
from dpaudit.errors import DPAuditError
from dpaudit.schema import WhiteBoxAudit


def analyse(w: WhiteBoxObservations, confidence: float = 0.95, seed: int = 0, empirical: bool = True) -> WhiteBoxAudit:
    """:func:`dpaudit.core.whitebox.analyse` with the empirical ε from the run's own (Opacus) accountant."""
    from dpaudit.training.accounting import opacus_epsilon

    return _core.analyse(w, confidence=confidence, seed=seed, empirical=empirical, epsilon_of=opacus_epsilon)


# --------------------------------------------------------------------------- DP bugs for self-tests

@dataclass
class TamperContext:
    """What a ``train_model(after_make_private=f)`` hook that accepts ``ctx`` gets: it may replace ``loader``."""

    optimizer: Any
    loader: Any
    engine: Any
    accountant: Any
    sample_rate: float
    config: Any
    module: Any = None  # the module make_private returned (ghost clipping's norm lives on it)


def call_tamper(fn, optimizer, ctx: TamperContext) -> None:
    """Call ``fn(optimizer)`` as before, or ``fn(optimizer, ctx=ctx)`` when it accepts ``ctx``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_ctx = "ctx" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes_ctx:
        fn(optimizer, ctx=ctx)
    else:
        fn(optimizer)


@dataclass(frozen=True)
class ScaleNoise:
    """DP bug: the optimizer adds ``factor`` times the noise the accountant is told about (the accountant and the
    optimizer's ``noise_multiplier`` still say sigma)."""

    factor: float

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        import types

        from opacus.optimizers.optimizer import (
            _check_processed_flag,
            _generate_noise,
            _mark_as_processed,
        )

        factor = float(self.factor)

        def add_noise(self):
            for p in self.params:
                _check_processed_flag(p.summed_grad)
                noise = _generate_noise(std=factor * self.noise_multiplier * self.max_grad_norm,
                                        reference=p.summed_grad, generator=self.generator,
                                        secure_mode=self.secure_mode)
                p.grad = (p.summed_grad + noise).view_as(p)
                _mark_as_processed(p.summed_grad)
        optimizer.add_noise = types.MethodType(add_noise, optimizer)


@dataclass(frozen=True)
class NoClipping:
    """DP bug: per-example gradients are not clipped (the clipping norm is raised to ``huge``), while the noise
    stays sigma * C as the accountant assumes."""

    huge: float = 1e6

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        c = float(optimizer.max_grad_norm)
        optimizer.max_grad_norm = float(self.huge)
        # Ghost clipping clips in the module (GradSampleModuleFastGradientClipping.max_grad_norm) and the optimizer
        # only scales the noise: raise the module's norm too, or the bug would clip as before.
        module = None if ctx is None else ctx.module
        if module is not None and hasattr(module, "max_grad_norm") and hasattr(module, "get_clipping_coef"):
            module.max_grad_norm = float(self.huge)
        optimizer.noise_multiplier = float(optimizer.noise_multiplier) * c / float(self.huge)
        # the accountant reads noise_multiplier from the optimizer at each step: keep telling it sigma
        sigma = float(optimizer.noise_multiplier) * float(self.huge) / c
        if ctx is not None and ctx.accountant is not None:
            acc, q = ctx.accountant, float(ctx.sample_rate)
            optimizer.attach_step_hook(lambda opt: acc.step(noise_multiplier=sigma,
                                                            sample_rate=q * opt.accumulated_iterations))


@dataclass(frozen=True)
class ShuffledBatches:
    """DP bug: shuffled fixed-size batches (each record exactly once an epoch) instead of Poisson sampling; same
    batch size and steps, and the accountant still assumes Poisson sampling at q."""

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        import torch

        if ctx is None:
            raise DPAuditError("ShuffledBatches needs the data loader: call it with ctx")
        loader = ctx.loader
        n = len(loader.dataset)
        batch = math.ceil(ctx.sample_rate * n)  # ceil(n / batch) = 1/q steps an epoch, as Poisson had
        gen = torch.Generator().manual_seed(int(getattr(ctx.config, "seed", 0)) + 99)
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(loader.dataset, generator=gen),
                                                batch_size=max(1, batch), drop_last=False)
        ctx.loader = torch.utils.data.DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn)


@dataclass(frozen=True)
class SamplerRateTimes:
    """DP bug: the sampler draws records at ``factor`` x q while the accountant is told q (with factor 2: the
    accountant is told half the rate that ran). Same number of steps per epoch."""

    factor: float = 2.0

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        import torch
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        if ctx is None:
            raise DPAuditError("SamplerRateTimes needs the data loader: call it with ctx")
        loader = ctx.loader
        old = loader.batch_sampler
        gen = torch.Generator().manual_seed(int(getattr(ctx.config, "seed", 0)) + 98)
        sampler = UniformWithReplacementSampler(num_samples=old.num_samples,
                                                sample_rate=min(1.0, self.factor * old.sample_rate),
                                                generator=gen, steps=len(old))
        ctx.loader = torch.utils.data.DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn)


@dataclass(frozen=True)
class SameBatchesEachEpoch:
    """DP bug: a Poisson sampler re-seeded at the start of every epoch, so the same batches repeat in every
    epoch (each batch is still a Poisson draw at rate q, as the accountant assumes of one epoch)."""

    seed: int = 97

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        import torch
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        if ctx is None:
            raise DPAuditError("SameBatchesEachEpoch needs the data loader: call it with ctx")
        loader, seed = ctx.loader, int(getattr(ctx.config, "seed", 0)) + int(self.seed)
        old = loader.batch_sampler

        class Reseeded(UniformWithReplacementSampler):
            def __iter__(self):
                self.generator = torch.Generator().manual_seed(seed)  # the bug: the same stream every epoch
                return super().__iter__()

        sampler = Reseeded(num_samples=old.num_samples, sample_rate=old.sample_rate, steps=len(old))
        ctx.loader = torch.utils.data.DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn)


@dataclass(frozen=True)
class NoiseBug:
    """DP bug in the noise, each keeping its standard deviation sigma C per coordinate: ``kind`` "uniform" or
    "rademacher" (not Gaussian), "reused" (one noise vector drawn once and added at every step), "shared" (one
    noise value added to every coordinate of a tensor)."""

    kind: str

    def __call__(self, optimizer, ctx: TamperContext | None = None) -> None:
        import types

        import torch
        from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

        kind = str(self.kind)
        if kind not in ("uniform", "rademacher", "reused", "shared"):
            raise DPAuditError(f"unknown noise bug {kind!r}; choose uniform, rademacher, reused or shared")
        cache: dict[int, torch.Tensor] = {}

        def add_noise(self):
            std = float(self.noise_multiplier * self.max_grad_norm)
            for p in self.params:
                _check_processed_flag(p.summed_grad)
                ref = p.summed_grad
                g = self.generator
                if kind == "uniform":
                    noise = (torch.rand(ref.shape, generator=g, dtype=ref.dtype) * 2 - 1) * (math.sqrt(3.0) * std)
                elif kind == "rademacher":
                    noise = (torch.randint(0, 2, ref.shape, generator=g).to(ref.dtype) * 2 - 1) * std
                elif kind == "shared":
                    noise = torch.normal(0.0, std, (1,), generator=g).to(ref.dtype).expand(ref.shape)
                else:
                    if id(p) not in cache:
                        cache[id(p)] = torch.normal(0.0, std, ref.shape, generator=g).to(ref.dtype)
                    noise = cache[id(p)]
                p.grad = (p.summed_grad + noise.to(ref.device)).view_as(p)
                _mark_as_processed(p.summed_grad)
        optimizer.add_noise = types.MethodType(add_noise, optimizer)
