"""What m white-box gradient canaries cost at Fashion-MNIST scale: DP-SGD step time, the training-set size, and
the time and memory of the analysis (``dpaudit.training.whitebox.analyse``).

Training: Fashion-MNIST's official 60,000 training records, the default DP recipe (Poisson batches of 256, 12
epochs, plain SGD), claimed epsilon 8, Opacus hooks mode on the CPU, with m = 0 (no canaries), 1,000 and 10,000
gradient canaries. Each run trains ``--steps`` real DP-SGD steps (a benchmark-only hook stops the Poisson sampler
after that many batches: same rate, same batch size) and times every step from one batch request to the next; a
run's step time is the median over its steps after the first two. After one warm-up run, runs go in rotating
order, ``--rounds`` rounds; each m keeps its fastest round, and the ratios to m = 0 are the medians of the
per-round ratios. The time an epoch
takes is the step time times the steps an epoch holds, which grows with m: included canaries are records
(N' = 60,000 + included, q = 256 / N').

Analysis: synthetic observations of the exact mechanism shaped like that full run (T = 12 epochs x ceil(N' /
256) steps, q and sigma as the run's), analysed in a fresh process per m: wall time and peak resident memory above
the observations' own, for the bounds and conformance tests alone and then with the empirical epsilon (Opacus's
PRV accountant three times over T steps, which costs the same whatever m).

    python benchmarks/bench_canary_cost.py                       # 15 steps, 3 rounds, analysis at 1,000 and 10,000
    python benchmarks/bench_canary_cost.py --steps 30 --rounds 3 --threads 2
    python benchmarks/bench_canary_cost.py --parts analysis --ms 1000,10000,30000
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import time
import warnings

import numpy as np
from _common import fashion_mnist_official, git_commit, peak_rss, print_json_line, quiet, set_threads, table

from dpaudit.config.recipes import DP_RECIPE

EPS, DELTA = 8.0, 1e-5


class StopAfter:
    """Benchmark-only ``after_make_private`` hook: the same Poisson sampler (rate, generator) stopped after
    ``steps`` batches, each batch request timed (``times``): one step is the interval between two requests."""

    def __init__(self, steps: int):
        self.steps = int(steps)
        self.times: list[float] = []

    def __call__(self, optimizer, ctx=None) -> None:
        import torch
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        old, times = ctx.loader.batch_sampler, self.times

        class Timed(UniformWithReplacementSampler):
            def __iter__(self):
                for b in super().__iter__():
                    times.append(time.perf_counter())
                    yield b
                times.append(time.perf_counter())

        sampler = Timed(num_samples=old.num_samples, sample_rate=old.sample_rate, generator=old.generator,
                        steps=self.steps)
        ctx.loader = torch.utils.data.DataLoader(ctx.loader.dataset, batch_sampler=sampler,
                                                 collate_fn=ctx.loader.collate_fn)


def train_once(m: int, steps: int, data, seed: int) -> dict:
    from dpaudit.training.train import TrainConfig, train_model
    from dpaudit.training.whitebox import GradientCanaries

    xtr, ytr, xte, yte = data
    hook = StopAfter(steps)
    cfg = TrainConfig(epsilon=EPS, delta=DELTA, **{**DP_RECIPE, "epochs": 1}, seed=seed, grad_sample_mode="hooks")
    tm = train_model(cfg, xtr, ytr, test_images=xte, test_labels=yte, progress=False, after_make_private=hook,
                     gradient_canaries=GradientCanaries(m, seed=seed) if m else None)
    dt = np.diff(hook.times)[2:]
    n_in = 0 if not m else tm.record.gradient_canaries.included
    return {"m": m, "included": n_in, "step_s": float(np.median(dt)), "steps_timed": int(dt.size),
            "q": float(tm.record.sample_rate), "obs_shape": None if tm.whitebox is None else list(tm.whitebox.obs.shape),
            "obs_dtype": None if tm.whitebox is None else str(tm.whitebox.obs.dtype)}


def sigma_for(q: float, epochs: int) -> float:
    """The noise multiplier Opacus's make_private_with_epsilon gives the full run (the run's own calibration)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=EPS, target_delta=DELTA, sample_rate=q, epochs=epochs,
                                      accountant="prv"))


def _hwm_mb() -> float:
    """This process's peak resident memory (VmHWM, MB). Not getrusage: a spawned child's ru_maxrss starts at its
    parent's, which here holds Fashion-MNIST and a trained model."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _analyse_child(m: int, steps_per_epoch: int, epochs: int, sigma: float, q: float, conn) -> None:
    import os

    from dpaudit.core.whitebox import synthetic_observations
    from dpaudit.training.whitebox import analyse

    warnings.filterwarnings("ignore")
    w = synthetic_observations(m, epochs * steps_per_epoch, steps_per_epoch, sigma, q, seed=0,
                               claimed_epsilon=EPS, dtype=np.float32)
    with open(f"/proc/{os.getpid()}/statm") as f:
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    t0 = time.perf_counter()
    r = analyse(w, empirical=False)  # bounds and conformance tests: what m changes
    core = time.perf_counter() - t0
    peak_core = _hwm_mb()
    t0 = time.perf_counter()
    analyse(w)  # the same plus the empirical epsilon: Opacus's accountant three times over T steps
    full = time.perf_counter() - t0
    peak = _hwm_mb()
    conn.send({"m": m, "T": int(w.obs.shape[0]), "analyse_core_s": core, "analyse_s": full,
               "obs_mb": w.obs.nbytes / 2**20, "rss_before_mb": before, "peak_rss_core_mb": peak_core,
               "extra_core_mb": peak_core - before, "peak_rss_mb": peak, "extra_mb": peak - before,
               "conformant": r.conformant, "epsilon_lb": r.epsilon_lb, "best_route": r.best_route})


def analyse_cost(m: int, steps_per_epoch: int, epochs: int, sigma: float, q: float) -> dict:
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_analyse_child, args=(m, steps_per_epoch, epochs, sigma, q, b))
    p.start()
    out = a.recv()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train,analysis", help="comma-separated: train, analysis")
    ap.add_argument("--ms", default="0,1000,10000", help="gradient canaries per setting (0: none)")
    ap.add_argument("--steps", type=int, default=15, help="DP-SGD steps per training run (default 15)")
    ap.add_argument("--rounds", type=int, default=3, help="training rounds, rotating order (default 3)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    quiet()
    warnings.filterwarnings("ignore")
    threads = set_threads(args.threads)
    ms = [int(x) for x in args.ms.split(",") if x.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    xtr, ytr, xte, yte, _ = fashion_mnist_official()
    n, b, epochs = len(ytr), int(DP_RECIPE["batch_size"]), int(DP_RECIPE["epochs"])
    from dpaudit.training.whitebox import GradientCanaries

    size = {}
    for m in ms:
        n_in = int(GradientCanaries(m, seed=0).coins().sum()) if m else 0
        spe = math.ceil((n + n_in) / b)  # Opacus: q = 1 / len(loader), len = ceil(N' / B)
        q = 1.0 / spe
        size[m] = {"m": m, "included": n_in, "n_prime": n + n_in, "q": q, "steps_per_epoch": spe,
                   "canary_share_of_batch": n_in / (n + n_in), "sigma_eps8": sigma_for(q, epochs)}
    out: dict = {"size": list(size.values())}
    rows = [[f"{m:,}", f"{s['included']:,}", f"{s['n_prime']:,}", f"{s['q']:.6f}", s["steps_per_epoch"],
             f"{100 * s['canary_share_of_batch']:.1f}%", f"{s['sigma_eps8']:.4f}"] for m, s in size.items()]
    print(table(["m", "included", "N'", "q = 1/ceil(N'/256)", "steps/epoch", "canaries in a batch", "sigma (eps 8)"], rows),
          flush=True)
    t0 = time.perf_counter()
    if "train" in parts:
        data = (xtr, ytr, xte[:500], yte[:500])
        runs: dict[int, list] = {m: [] for m in ms}
        train_once(ms[-1], 3, data, seed=99)  # warm-up: the first run in a process pays for imports and caches
        for r in range(args.rounds):
            order = ms[r % len(ms):] + ms[: r % len(ms)]
            for m in order:
                runs[m].append(train_once(m, args.steps, data, seed=r))
                print(f"round {r}: m = {m:,}: {runs[m][-1]['step_s'] * 1e3:.1f} ms a step", flush=True)
        base = ms[0]
        trows, cases = [], []
        for m in ms:
            step = min(x["step_s"] for x in runs[m])  # the fastest round: the least disturbed by other load
            ratio = statistics.median(runs[m][i]["step_s"] / runs[base][i]["step_s"] for i in range(args.rounds))
            spe = size[m]["steps_per_epoch"]
            epoch_ratio = ratio * spe / size[base]["steps_per_epoch"]
            cases.append({**size[m], "step_s_median": step, "step_ratio": ratio, "epoch_s": step * spe,
                          "epoch_ratio": epoch_ratio, "obs_dtype": runs[m][0]["obs_dtype"],
                          "rounds": [x["step_s"] for x in runs[m]]})
            trows.append([f"{m:,}", f"{1e3 * step:.1f}", f"{ratio:.3f}", f"{step * spe:.1f}", f"{epoch_ratio:.3f}"])
        print(table(["m", "ms a step (fastest round)", f"step / m={base:,} (median)", "s an epoch",
                     f"epoch / m={base:,}"],
                    trows), flush=True)
        out["train"] = {"steps": args.steps, "rounds": args.rounds, "threads": threads, "mode": "hooks",
                        "device": "cpu", "cases": cases}
    if "analysis" in parts:
        arows, acases = [], []
        for m in [x for x in ms if x > 0]:
            s = size[m]
            a = analyse_cost(m, s["steps_per_epoch"], epochs, s["sigma_eps8"], s["q"])
            acases.append(a)
            arows.append([f"{m:,}", a["T"], f"{a['obs_mb']:.0f}", f"{a['analyse_core_s']:.1f}",
                          f"{a['extra_core_mb']:.0f}", f"{a['analyse_s']:.1f}", f"{a['extra_mb']:.0f}"])
            print(arows[-1], flush=True)
        print(table(["m", "T", "observations MB (float32)", "bounds + tests s", "their peak MB above the obs.",
                     "with empirical eps s", "its peak MB above the obs."], arows), flush=True)
        out["analysis"] = acases
    wall = time.perf_counter() - t0
    print_json_line({"benchmark": "canary_cost", "commit": git_commit(), "dataset": "fashion-mnist", "n": n,
                     "epsilon": EPS, "delta": DELTA, "recipe": DP_RECIPE, "threads": threads, "wall_s": round(wall, 1),
                     "peak_rss": peak_rss(), **out})


if __name__ == "__main__":
    main()
