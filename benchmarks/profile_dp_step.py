"""Where a DP-SGD step's extra time goes: forward, backward and optimizer step, non-DP vs each grad-sample mode.

bench_train.py gives the end-to-end ratio; this script explains it. It times the three phases of one
training step on the same fixed batches (no data loading) for non-DP and every mode dpaudit offers (Opacus's
hooks, functorch and ghost, dpaudit's fast), then times each layer's per-example work alone on the step's real
activation shapes, and torch's max-pool forward for scale, all in one process.

The modes are timed in rounds: each round runs a block of steps of every mode in turn (the order rotates), so a
neighbour's load on a shared machine falls on all of them alike. Each mode's step time is the median over
rounds, and each ratio is the median of the per-round ratios to non-DP of the same round (``--keep fastest``:
the fastest round instead). The DP overhead is the mode's step time minus non-DP's, in milliseconds.

    python benchmarks/profile_dp_step.py                 # simple-cnn, batch 256, 5 rounds of 10 steps per mode
    python benchmarks/profile_dp_step.py --model tanh-cnn --rounds 9 --steps 20
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings

import torch
from _common import git_commit, print_json_line, quiet, set_threads, table
from torch import nn

from dpaudit.config import GRAD_SAMPLE_MODES
from dpaudit.training import fast_clipping
from dpaudit.training.fast_clipping import register
from dpaudit.training.models import build_model
from dpaudit.training.train import TrainConfig, _dp_speedups

OPACUS_ALONE = "hooks, Opacus alone"
PHASES = ("forward", "backward", "step")


def _clock(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median milliseconds of one call, after 3 untimed calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times) * 1000


class Runner:
    """One mode's model, optimizer and loss on the shared batches; ``block`` times ``steps`` steps of it."""

    def __init__(self, mode: str, model_name: str, x: torch.Tensor, y: torch.Tensor, batch: int,
                 speedups: bool = True, ghost_factor: float | None = None):
        from opacus import PrivacyEngine

        torch.manual_seed(0)
        self.mode, self.x, self.y, self.batch, self.ghost_factor = mode, x, y, batch, ghost_factor
        self.model = build_model(model_name, 10)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.crit = nn.CrossEntropyLoss()
        self.i = 0
        if mode != "non-dp":
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
            out = PrivacyEngine(accountant="prv").make_private(
                module=self.model, optimizer=self.opt, data_loader=loader, criterion=self.crit, noise_multiplier=1.0,
                max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
            self.model, self.opt = out[0], out[1]
            if mode == "ghost":
                self.crit = out[2]
        # dpaudit's speed-ups exactly as train_model applies them; without them the step is Opacus as shipped.
        # Entered around each block, since grad_samples_without_copy patches Opacus for every model at once.
        self.speedups = mode != "non-dp" and speedups
        self.cfg = TrainConfig(model=model_name, epsilon=1.0, grad_sample_mode=mode if mode != OPACUS_ALONE else "hooks")

    def block(self, steps: int, clock=time.perf_counter) -> dict[str, float]:
        acc = dict.fromkeys(PHASES, 0.0)
        n_batches = len(self.y) // self.batch
        ctx = _dp_speedups(self.model, self.cfg) if self.speedups else contextlib.nullcontext()
        factor = fast_clipping.MEMORY_PASS_MACS
        if self.ghost_factor is not None:
            fast_clipping.MEMORY_PASS_MACS = self.ghost_factor
        with ctx, _restore_factor(factor):
            for _ in range(steps):
                j = self.i % n_batches
                self.i += 1
                xb, yb = self.x[j * self.batch:(j + 1) * self.batch], self.y[j * self.batch:(j + 1) * self.batch]
                t0 = clock()
                self.opt.zero_grad(set_to_none=True)
                loss = self.crit(self.model(xb), yb)
                t1 = clock()
                loss.backward()
                t2 = clock()
                self.opt.step()
                t3 = clock()
                acc["forward"] += t1 - t0
                acc["backward"] += t2 - t1
                acc["step"] += t3 - t2
        out = {k: v * 1000 / steps for k, v in acc.items()}
        out["total"] = sum(out.values())
        return out


@contextlib.contextmanager
def _restore_factor(factor: float):
    try:
        yield
    finally:
        fast_clipping.MEMORY_PASS_MACS = factor


def grad_sampler_times(model_name: str, batch: int, repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Per layer, on the activation shapes of a real forward pass: Opacus's hooks-mode grad sampler (per-example
    gradients), and the fast mode's book-keeping (ghost norm or per-example gradients) plus its clipped sum."""
    from opacus.grad_sample.utils import GradSampleModule

    from dpaudit.training.fast_clipping import PerExample, fast_entries

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
    c = torch.rand(batch)
    for name, (mod, a, g) in acts.items():
        sampler = GradSampleModule.GRAD_SAMPLERS[type(mod)]
        label = f"{name}({type(mod).__name__})"
        times[f"grad_sample:{label}"] = round(
            _clock(lambda sampler=sampler, mod=mod, a=a, g=g: sampler(mod, [a], g), repeats, clock), 2)
        entries = fast_entries(mod, a, g)
        if entries is None:
            continue
        how = "per-example" if isinstance(entries.get(mod.weight), PerExample) else "ghost norm"
        times[f"fast norms ({how}):{label}"] = round(
            _clock(lambda mod=mod, a=a, g=g: [e.norm() for e in fast_entries(mod, a, g).values()], repeats, clock), 2)
        times[f"fast clipped sum:{label}"] = round(
            _clock(lambda entries=entries: [e.clipped_sum(c) for e in entries.values()], repeats, clock), 2)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    if pools:
        h = torch.randn(batch, 16, 14, 14)
        times["max_pool2d forward (16x14x14), for scale"] = round(_clock(lambda: pools[0](h), repeats, clock), 2)
    return times


def synthetic_batches(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """20 batches of seeded MNIST-shaped inputs and labels: the step's cost, not the data's, is measured."""
    g = torch.Generator().manual_seed(0)
    n = batch_size * 20
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="simple-cnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode in each round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; every mode runs one block of steps in each")
    p.add_argument("--keep", choices=("median", "fastest"), default="median",
                   help="summarise the rounds by their median, or keep the fastest round")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--ghost-factors", default="",
                   help="comma list: also time the fast mode with these values of MEMORY_PASS_MACS (the factor of "
                        "dpaudit.training.fast_clipping.use_ghost_norm), e.g. 8,30 to time SimpleCNN's conv2 with per-example "
                        "gradients and with a ghost norm")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (what a user waits); cpu: this process's CPU time, which a neighbour's "
                        "load on a shared machine disturbs far less (use it with --threads 1)")
    args = p.parse_args(argv)
    quiet()
    warnings.filterwarnings("ignore")
    register()
    threads = set_threads(args.threads)
    commit = git_commit()
    print(f"profile_dp_step: commit {commit}, model {args.model}, batch {args.batch_size}, {args.rounds} rounds of "
          f"{args.steps} steps per mode (rotating order), {args.keep} of the rounds, {args.clock} clock, torch threads "
          f"{threads}", flush=True)
    x, y = synthetic_batches(args.batch_size)

    modes = ("non-dp",) + GRAD_SAMPLE_MODES
    runners = {m: Runner(m, args.model, x, y, args.batch_size) for m in modes}
    runners[OPACUS_ALONE] = Runner("hooks", args.model, x, y, args.batch_size, speedups=False)
    for factor in [float(v) for v in args.ghost_factors.split(",") if v.strip()]:
        runners[f"fast, factor {factor:g}"] = Runner("fast", args.model, x, y, args.batch_size, ghost_factor=factor)
    names = list(runners)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    for r in runners.values():  # untimed: first-call setup of torch's kernels and of each mode's hooks
        r.block(3)
    rounds: list[dict[str, dict[str, float]]] = []
    for k in range(args.rounds):
        order = names[k % len(names):] + names[:k % len(names)]
        rounds.append({m: runners[m].block(args.steps, clock) for m in order})
    base_name = "non-dp"

    def summary(m: str) -> dict[str, float]:
        if args.keep == "fastest":
            best = min(rounds, key=lambda r: r[m]["total"])
            out = dict(best[m])
            out["ratio"] = best[m]["total"] / best[base_name]["total"]
            out["non_dp_same_round"] = best[base_name]["total"]
        else:
            out = {ph: statistics.median(r[m][ph] for r in rounds) for ph in PHASES + ("total",)}
            out["ratio"] = statistics.median(r[m]["total"] / r[base_name]["total"] for r in rounds)
            out["non_dp_same_round"] = statistics.median(r[base_name]["total"] for r in rounds)
        out["overhead_ms"] = statistics.median(r[m]["total"] - r[base_name]["total"] for r in rounds) \
            if args.keep == "median" else out["total"] - out["non_dp_same_round"]
        out["ratio_range"] = [min(r[m]["total"] / r[base_name]["total"] for r in rounds),
                              max(r[m]["total"] / r[base_name]["total"] for r in rounds)]
        return {k: (round(v, 3) if isinstance(v, float) else [round(u, 3) for u in v]) for k, v in out.items()}

    phases = {m: summary(m) for m in names}
    rows = [[m, f"{v['forward']:.1f}", f"{v['backward']:.1f}", f"{v['step']:.1f}", f"{v['total']:.1f}",
             f"{v['non_dp_same_round']:.1f}", f"{v['overhead_ms']:+.1f}", f"{v['ratio']:.2f}x",
             f"{v['ratio_range'][0]:.2f}-{v['ratio_range'][1]:.2f}"] for m, v in phases.items()]
    print(f"\nms per step ({args.clock} clock; fixed batches, no data loading; {args.keep} of {args.rounds} rounds)")
    print(table(["mode", "forward", "backward", "step", "total", "non-DP (same rounds)", "DP overhead ms",
                 "vs non-DP", "ratio range"], rows))

    samplers = grad_sampler_times(args.model, args.batch_size, repeats=max(10, 2 * args.steps), clock=clock)
    print(f"\nms per call, alone ({args.clock} clock, median)")
    print(table(["operation", "ms"], [[k, f"{v:.2f}"] for k, v in samplers.items()]))
    extra = phases[OPACUS_ALONE]["overhead_ms"]
    in_samplers = sum(v for k, v in samplers.items() if k.startswith("grad_sample:"))
    in_fast = sum(v for k, v in samplers.items() if k.startswith("fast "))
    print(f"\nOpacus's hooks mode, as shipped, adds {extra:.1f} ms per step; its grad samplers alone account for "
          f"{in_samplers:.1f} ms. dpaudit's hooks mode adds {phases['hooks']['overhead_ms']:.1f} ms; the fast mode "
          f"adds {phases['fast']['overhead_ms']:.1f} ms, its per-layer norms and clipped sums alone take "
          f"{in_fast:.1f} ms (the clipped sums replace the weight gradients a non-DP backward computes).")
    print_json_line({"commit": commit, "model": args.model, "batch_size": args.batch_size, "threads": threads,
                     "rounds": args.rounds, "steps_per_round": args.steps, "keep": args.keep, "clock": args.clock,
                     "phases_ms": phases, "ratios": {m: v["ratio"] for m, v in phases.items()},
                     "overhead_ms": {m: v["overhead_ms"] for m, v in phases.items()},
                     "non_dp_ms": phases["non-dp"]["total"], "grad_samplers_ms": samplers})
    return 0


if __name__ == "__main__":
    sys.exit(main())
