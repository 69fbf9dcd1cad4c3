"""The full-scale audit on Fashion-MNIST: wall time per phase and peak memory.

30,000 members per model drawn from a 60,000-record pool (2 x members), 9,000 test records and 1,000
canaries: 9,000 + 60,000 + 1,000 = 70,000, all of Fashion-MNIST (official train + test parts; dpaudit
draws its own seeded splits from the union). Non-DP, epsilon 8 and epsilon 1 targets, K = 4 reference
models each, the default attacks (loss, shadow, RMIA offline and online, LiRA; each with its AUC and TPR at 0.1% and 1% FPR, counts
behind them), the one-run canary audit; every report format rendered.

Before it starts it measures a few training steps and prints an estimate of the training time
(the default run can take hours on a small CPU machine).

    python benchmarks/bench_fullscale.py --quick          # 2,000 members, 1 epoch: a smoke run
    python benchmarks/bench_fullscale.py                  # the full audit (long)
    python benchmarks/bench_fullscale.py --members 10000 --epochs 2 --shadow-models 4
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace

from _common import fmt_duration, git_commit, print_json_line, quiet
from bench_audit import audit_figures, model_summary, run_and_render

from dpaudit.config import AuditConfig
from dpaudit.training.jobs import train_config
from dpaudit.training.train import train_model

N_RECORDS = 70_000  # Fashion-MNIST: 60,000 train + 10,000 test


def build_config(args) -> AuditConfig:
    members = args.members if args.members is not None else (2000 if args.quick else 30_000)
    canaries = args.canaries if args.canaries is not None else (500 if args.quick else 1000)
    n_test = args.n_test if args.n_test is not None else (1000 if args.quick else 9000)
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else None)
    cfg = replace(AuditConfig(), dataset="fashion-mnist", members=members, n_test=n_test, canaries=canaries,
                  epochs=epochs)
    if args.shadow_models is not None:
        cfg = replace(cfg, shadow_models=args.shadow_models)
    if args.jobs is not None:
        cfg = replace(cfg, jobs=args.jobs)
    if args.n_boot is not None:
        cfg = replace(cfg, n_boot=args.n_boot)
    return cfg


def check_fit(cfg: AuditConfig) -> str:
    pool = 2 * cfg.members
    need = cfg.n_test + pool + cfg.canaries
    line = (f"split: {cfg.n_test:,} test + {pool:,} pool (2 x {cfg.members:,} members) + {cfg.canaries:,} canaries "
            f"= {need:,} of {N_RECORDS:,} records")
    if need > N_RECORDS:
        raise SystemExit(f"bench_fullscale: {line}: does not fit; lower --members, --n-test or --canaries")
    return line + (" (all of them)" if need == N_RECORDS else f" ({N_RECORDS - need:,} unused)")


def estimate(cfg: AuditConfig, images, labels) -> dict:
    """Time 1 epoch on 2,048 records (non-DP and DP) with the threads each worker will get, one noise
    calibration and one worker start, and scale to the audit: every model of every epsilon shares one pool,
    and each worker calibrates sigma once per epsilon (dpaudit remembers it for that process)."""
    import torch

    n_models = 1 + cfg.shadow_models
    workers = cfg.jobs or max(1, min(os.cpu_count() or 1, n_models * len(cfg.epsilons)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    n = 2048
    x, y = images[:n], labels[:n]
    per_record, calib = {}, None
    try:
        for kind, eps in (("non_dp", math.inf), ("dp", 8.0)):
            tc = replace(train_config(cfg, eps), epochs=1, seed=0)
            t = time.perf_counter()
            rec = train_model(tc, x, y, test_images=x[:64], test_labels=y[:64], progress=False).record
            per_record[kind] = rec.wall_s / n
            if kind == "dp":
                calib = time.perf_counter() - t - rec.wall_s
    finally:
        torch.set_num_threads(prev)
    # The pool's spawned workers each import torch and opacus and receive the images: time one such start.
    startup = 0.0
    if workers > 1:
        import subprocess

        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, opacus, dpaudit.pipeline"], check=False)
        startup = time.perf_counter() - t
    n_train = cfg.members  # the target also trains on about canaries/2 more
    per_eps = {}
    for eps in cfg.epsilons:
        kind = "dp" if math.isfinite(eps) else "non_dp"
        epochs = cfg.recipe(eps)["epochs"]
        calibrations = min(workers, n_models) if kind == "dp" else 0
        per_eps["inf" if kind == "non_dp" else f"{eps:g}"] = \
            (n_models * epochs * n_train * per_record[kind] + calibrations * calib) / workers
    return {"per_record_epoch_s": per_record, "calibration_s": calib, "worker_startup_s": startup,
            "workers": workers, "threads_per_worker": threads,
            "train_s_by_epsilon": per_eps, "train_s": startup + sum(per_eps.values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--members", type=int, default=None, help="members per model (default 30,000; --quick 2,000)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every model (default: dpaudit's recipes, non-DP 20 and DP 12; --quick 1)")
    p.add_argument("--shadow-models", type=int, default=None, help="reference models K per epsilon (default 4)")
    p.add_argument("--canaries", type=int, default=None, help="canaries m (default 1,000; --quick 500)")
    p.add_argument("--n-test", type=int, default=None, help="test records (default 9,000; --quick 1,000)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default 0 = per core)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--no-estimate", action="store_true", help="skip the timing estimate (about 20 s)")
    p.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    p.add_argument("--quick", action="store_true", help="2,000 members, 1,000 test, 500 canaries, 1 epoch")
    args = p.parse_args(argv)

    quiet()
    cfg = build_config(args)
    fit = check_fit(cfg)
    commit = git_commit()
    print(f"bench_fullscale: commit {commit}, cpus {os.cpu_count()}; {fit}", flush=True)
    print(f"config: epsilons {cfg.to_dict()['epsilons']}, K {cfg.shadow_models}, attacks {','.join(cfg.attacks)}, "
          f"recipes {cfg.to_dict()['recipes']}, model {cfg.model}, grad-sample mode {cfg.grad_sample_mode}",
          flush=True)

    t0 = time.perf_counter()
    from dpaudit.training.data import load_dataset

    data = load_dataset("fashion-mnist")
    load_s = time.perf_counter() - t0
    est = None
    if not args.no_estimate or args.estimate_only:
        est = estimate(cfg, data.images, data.labels)
        by = ", ".join(f"ε={k}: {fmt_duration(v)}" for k, v in est["train_s_by_epsilon"].items())
        print(f"estimate: training about {fmt_duration(est['train_s'])} ({by}; {est['workers']} workers x "
              f"{est['threads_per_worker']} threads in one pool; "
              f"{1e3 * est['per_record_epoch_s']['non_dp']:.3f} ms/record non-DP, "
              f"{1e3 * est['per_record_epoch_s']['dp']:.3f} ms/record DP, calibration "
              f"{est['calibration_s']:.1f} s per DP model, worker start {est['worker_startup_s']:.1f} s) "
              f"plus attacks and rendering. Rough: measured on 2,048 records in this process.", flush=True)
        if args.estimate_only:
            print_json_line({"commit": commit, "estimate": est, "config": cfg.to_dict()})
            return 0

    report, phases, wall, rss = run_and_render(cfg, "benchmarks/bench_fullscale.py",
                                               pre_phases={"load": round(load_s, 3)}, dataset=data)
    models = model_summary(report)
    print_json_line(audit_figures(commit, wall, rss, phases, report, models,
                                  estimate_train_s=round(est["train_s"], 1) if est else None, split=report["split"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
