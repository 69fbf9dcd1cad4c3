"""Where a DP-SGD step's extra time goes: forward, backward and optimizer step, non-DP vs each Opacus mode.

bench_train.py gives the end-to-end ratio; this script explains it. It times the three phases of one
training step on the same fixed batches (no data loading), then times Opacus's per-layer grad samplers
alone on the step's real activation shapes, and torch's max-pool forward for scale, all in one process.

    python benchmarks/profile_dp_step.py                 # simple-cnn, batch 256, 40 steps per mode
    python benchmarks/profile_dp_step.py --model tanh-cnn --steps 80
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings

import torch
from _common import git_commit, print_json_line, quiet, set_threads, table
from torch import nn

from dpaudit.config import GRAD_SAMPLE_MODES
from dpaudit.training.models import build_model
from dpaudit.training.train import TrainConfig, _dp_speedups

OPACUS_ALONE = "hooks, Opacus alone"


def _clock(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats * 1000


def phase_times(mode: str, model_name: str, x: torch.Tensor, y: torch.Tensor, batch: int, steps: int,
                warmup: int = 5, speedups: bool = True) -> dict[str, float]:
    """Mean milliseconds per step of forward+loss, backward, optimizer step (clip, noise, update).

    ``speedups`` applies dpaudit's grad-sample speed-ups exactly as train_model does; without them the
    step is Opacus as shipped."""
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = build_model(model_name, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = nn.CrossEntropyLoss()
    if mode != "non-dp":
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
        out = PrivacyEngine(accountant="prv").make_private(
            module=model, optimizer=opt, data_loader=loader, criterion=crit, noise_multiplier=1.0,
            max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
        model, opt = out[0], out[1]
        if mode == "ghost":
            crit = out[2]
    acc = {"forward": 0.0, "backward": 0.0, "step": 0.0}
    n_batches = len(y) // batch
    ctx = contextlib.nullcontext()
    if mode != "non-dp" and speedups:
        ctx = _dp_speedups(model, TrainConfig(model=model_name, epsilon=1.0, grad_sample_mode=mode))
    with ctx:
        _steps(model, opt, crit, x, y, batch, n_batches, warmup, steps, acc)
    out = {k: round(v * 1000 / steps, 2) for k, v in acc.items()}
    out["total"] = round(sum(out.values()), 2)
    return out


def _steps(model, opt, crit, x, y, batch, n_batches, warmup, steps, acc):
    for i in range(warmup + steps):
        j = i % n_batches
        xb, yb = x[j * batch:(j + 1) * batch], y[j * batch:(j + 1) * batch]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = crit(model(xb), yb)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            acc["forward"] += t1 - t0
            acc["backward"] += t2 - t1
            acc["step"] += t3 - t2


def grad_sampler_times(model_name: str, batch: int, repeats: int) -> dict[str, float]:
    """Opacus's hooks-mode grad sampler per layer, on the activation shapes of a real forward pass."""
    from opacus.grad_sample.utils import GradSampleModule

    model = build_model(model_name, 10)
    acts: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name, mod in model.named_modules():
        if type(mod) in GradSampleModule.GRAD_SAMPLERS:
            def fwd(m, inp, out, name=name):
                acts[name] = (m, inp[0].detach(), torch.randn_like(out))
            handles.append(mod.register_forward_hook(fwd))
    with torch.no_grad():
        model(torch.randn(batch, 1, 28, 28))
    for h in handles:
        h.remove()
    times = {}
    for name, (mod, a, g) in acts.items():
        sampler = GradSampleModule.GRAD_SAMPLERS[type(mod)]
        times[f"grad_sample:{name}({type(mod).__name__})"] = round(
            _clock(lambda sampler=sampler, mod=mod, a=a, g=g: sampler(mod, [a], g), repeats), 2)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    if pools:
        h = torch.randn(batch, 16, 14, 14)
        times["max_pool2d forward (16x14x14), for scale"] = round(_clock(lambda: pools[0](h), repeats), 2)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="simple-cnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40, help="timed steps per mode (after 5 warm-up steps)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = p.parse_args(argv)
    quiet()
    warnings.filterwarnings("ignore")
    threads = set_threads(args.threads)
    commit = git_commit()
    print(f"profile_dp_step: commit {commit}, model {args.model}, batch {args.batch_size}, "
          f"{args.steps} steps per mode, torch threads {threads}", flush=True)
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * 20
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)

    modes = ("non-dp",) + GRAD_SAMPLE_MODES
    phase_times("non-dp", args.model, x, y, args.batch_size, steps=5)  # untimed: first-call setup of torch's kernels
    phases = {m: phase_times(m, args.model, x, y, args.batch_size, args.steps) for m in modes}
    phases[OPACUS_ALONE] = phase_times("hooks", args.model, x, y, args.batch_size, args.steps, speedups=False)
    base = phases["non-dp"]["total"]
    rows = [[m, f"{v['forward']:.1f}", f"{v['backward']:.1f}", f"{v['step']:.1f}", f"{v['total']:.1f}",
             f"{v['total'] / base:.2f}x"] for m, v in phases.items()]
    print("\nms per step (fixed batches, no data loading)")
    print(table(["mode", "forward", "backward", "step", "total", "vs non-DP"], rows))

    samplers = grad_sampler_times(args.model, args.batch_size, repeats=max(10, args.steps // 2))
    print("\nms per call, alone")
    print(table(["operation", "ms"], [[k, f"{v:.2f}"] for k, v in samplers.items()]))
    extra = phases[OPACUS_ALONE]["total"] - base
    in_samplers = sum(v for k, v in samplers.items() if k.startswith("grad_sample:"))
    print(f"\nOpacus's hooks mode, as shipped, adds {extra:.1f} ms per step; its grad samplers alone account for {in_samplers:.1f} ms, "
          f"the optimizer step (per-sample clipping + noise) for "
          f"{phases[OPACUS_ALONE]['step'] - phases['non-dp']['step']:.1f} ms. dpaudit's hooks mode skips the "
          f"summed weight gradients Opacus discards: its backward takes {phases['hooks']['backward']:.1f} ms "
          f"against non-DP's {phases['non-dp']['backward']:.1f} ms.")
    print_json_line({"commit": commit, "model": args.model, "batch_size": args.batch_size, "threads": threads,
                     "phases_ms": phases, "ratios": {m: round(v["total"] / base, 3) for m, v in phases.items()},
                     "grad_samplers_ms": samplers})
    return 0


if __name__ == "__main__":
    sys.exit(main())
