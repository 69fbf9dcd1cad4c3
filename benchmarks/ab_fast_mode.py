"""A/B of the fast grad-sample mode (or hooks mode's speed-ups): this checkout's against another checkout's, in
one process, interleaved.

A shared host's load moves by more than a change is worth between two runs, so both versions run in the same
process, in rounds of a few steps each (non-DP, this checkout's fast mode, the other's, rotating order), and
every difference is taken within a round. The other checkout's ``dpaudit/training/fast_clipping.py`` and
``grad_samples.py`` are loaded from its files under their own module names (both import only torch and
Opacus); this checkout's are the installed package's. The noise draws, the data and the model's initial weights
are the same for both.

    python benchmarks/ab_fast_mode.py --base /work/main                        # 2 threads, wall clock
    python benchmarks/ab_fast_mode.py --base /work/main --threads 1 --clock cpu --rounds 21 --steps 6
    python benchmarks/ab_fast_mode.py --base /work/main --batch-size 4 --threads 1 --clock cpu  # fixed cost
    python benchmarks/ab_fast_mode.py --base /work/main --mode hooks --threads 1 --clock cpu

Per phase and mode: the median over rounds (ms per step); the DP overhead is the mode's step minus non-DP's in
the same round; "new - base" is the per-round difference of the two fast modes' steps (median and range).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

from _common import git_commit, print_json_line, quiet, set_threads, table
from profile_dp_step import PHASES, Runner, synthetic_batches

from dpaudit.training import fast_clipping
from dpaudit.training.fast_clipping import register


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base_runner(base_fc, base_gs, mode: str, model: str, x, y, batch: int) -> Runner:
    """A Runner of ``mode`` on the base checkout's classes (fast mode) and speed-ups (PrivacyEngine builds what the
    registered look-up names at call time: this checkout's module names are pointed at the base's classes
    meanwhile). Hooks mode is Opacus's own classes in both; only the speed-ups differ."""
    saved = fast_clipping.GradSampleModuleFastClipping, fast_clipping.DPOptimizerFastClipping
    fast_clipping.GradSampleModuleFastClipping = base_fc.GradSampleModuleFastClipping
    fast_clipping.DPOptimizerFastClipping = base_fc.DPOptimizerFastClipping
    try:
        runner = Runner(mode, model, x, y, batch)
    finally:
        fast_clipping.GradSampleModuleFastClipping, fast_clipping.DPOptimizerFastClipping = saved
    if mode == "fast" and type(runner.opt) is not base_fc.DPOptimizerFastClipping:
        raise SystemExit("the base checkout's optimizer was not built; is its fast mode registered as 'fast'?")
    runner.speedups = False  # this checkout's speed-ups off; the base's on, around each block
    block = runner.block

    def base_block(steps: int, clock=time.perf_counter):
        with base_gs.grad_samples_without_copy(), base_gs.without_discarded_param_grads(runner.model):
            return block(steps, clock)

    runner.block = base_block
    return runner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", required=True, help="root of the other checkout (holds dpaudit/training/...)")
    p.add_argument("--mode", choices=("fast", "hooks"), default="fast",
                   help="hooks: Opacus's hooks mode with each checkout's speed-ups (grad_samples.py)")
    p.add_argument("--model", default="simple-cnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="timed steps per mode in each round")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=2, help="torch threads (0 = all cores)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time (with --threads 1, far less disturbed by a neighbour)")
    args = p.parse_args(argv)
    root = Path(args.base) / "dpaudit" / "training"
    if not (root / "fast_clipping.py").is_file() or not (root / "grad_samples.py").is_file():
        raise SystemExit(f"--base {args.base}: no dpaudit/training/fast_clipping.py and grad_samples.py there")
    quiet()
    warnings.filterwarnings("ignore")
    register()
    threads = set_threads(args.threads)
    base_fc = _load(root / "fast_clipping.py", "dpaudit_base_fast_clipping")
    base_gs = _load(root / "grad_samples.py", "dpaudit_base_grad_samples")
    commit = git_commit()
    print(f"ab_fast_mode: this checkout {commit} against {args.base}, mode {args.mode}, model {args.model}, batch {args.batch_size}, "
          f"{args.rounds} rounds of {args.steps} steps (rotating order), {args.clock} clock, torch threads "
          f"{threads}", flush=True)
    x, y = synthetic_batches(args.batch_size)
    new, base = f"{args.mode} (new)", f"{args.mode} (base)"
    runners = {"non-dp": Runner("non-dp", args.model, x, y, args.batch_size),
               new: Runner(args.mode, args.model, x, y, args.batch_size),
               base: _base_runner(base_fc, base_gs, args.mode, args.model, x, y, args.batch_size)}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    for r in runners.values():
        r.block(3)
    names = list(runners)
    rounds = []
    for k in range(args.rounds):
        order = names[k % len(names):] + names[:k % len(names)]
        rounds.append({m: runners[m].block(args.steps, clock) for m in order})
    out = {}
    for m in names:
        out[m] = {ph: round(statistics.median(r[m][ph] for r in rounds), 3) for ph in PHASES + ("total",)}
        out[m]["overhead_ms"] = round(statistics.median(r[m]["total"] - r["non-dp"]["total"] for r in rounds), 3)
        out[m]["ratio"] = round(statistics.median(r[m]["total"] / r["non-dp"]["total"] for r in rounds), 3)
    diff = [r[new]["total"] - r[base]["total"] for r in rounds]
    ratio = statistics.median(r[new]["total"] / r[base]["total"] for r in rounds)
    print(f"\nms per step ({args.clock} clock; median of {args.rounds} rounds)")
    print(table(["mode", "forward", "backward", "step", "total", "DP overhead ms", "vs non-DP"],
                [[m, f"{v['forward']:.2f}", f"{v['backward']:.2f}", f"{v['step']:.2f}", f"{v['total']:.2f}",
                  f"{v['overhead_ms']:+.2f}", f"{v['ratio']:.3f}x"] for m, v in out.items()]))
    print(f"\nnew - base, per round: median {statistics.median(diff):+.2f} ms (range {min(diff):+.2f} to "
          f"{max(diff):+.2f}; {sum(d < 0 for d in diff)} of {len(diff)} rounds faster); new / base {ratio:.3f}")
    print_json_line({"commit": commit, "base": str(args.base), "mode": args.mode, "model": args.model, "batch_size": args.batch_size,
                     "threads": threads, "rounds": args.rounds, "steps_per_round": args.steps, "clock": args.clock,
                     "phases_ms": out, "new_minus_base_ms": {"median": round(statistics.median(diff), 3),
                                                             "min": round(min(diff), 3), "max": round(max(diff), 3)},
                     "new_over_base": round(ratio, 4)})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
