"""Test accuracy of dpaudit's DP models at epsilon = 1, 3 and 8 on full Fashion-MNIST.

Trains on the 60,000 records of the official training part and measures accuracy on the official
10,000 test records, for each model (simple-cnn, tanh-cnn) and each epsilon, with dpaudit's DP recipe:
``train_config(AuditConfig(), eps)`` (DP_RECIPE in dpaudit/pipeline.py: 12 epochs, Poisson batch 256, lr 0.75,
no momentum, clip C = 1, delta 1e-5, PRV accountant) unless --epochs / --batch-size / --lr override it.
One process, models trained one after the other.

    python benchmarks/bench_utility.py --quick            # 10,000 training records, 2 epochs
    python benchmarks/bench_utility.py                    # the full measurement (long on a small CPU)
    python benchmarks/bench_utility.py --models tanh-cnn --epsilons 3 --epochs 10 --non-dp
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace

from _common import (
    fashion_mnist_official,
    fmt_duration,
    git_commit,
    peak_rss,
    print_json_line,
    quiet,
    set_threads,
    table,
)

from dpaudit.config import GRAD_SAMPLE_MODES, AuditConfig
from dpaudit.training.jobs import train_config
from dpaudit.training.train import train_model

QUICK_RECORDS, QUICK_EPOCHS = 10_000, 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="simple-cnn,tanh-cnn", help="comma list of dpaudit models")
    p.add_argument("--epsilons", default="1,3,8", help="comma list of target epsilons")
    p.add_argument("--epochs", type=int, default=None, help="override the DP recipe's epochs (6; --quick 2)")
    p.add_argument("--batch-size", type=int, default=None, help="override the DP recipe's Poisson batch (256)")
    p.add_argument("--lr", type=float, default=None, help="override the DP recipe's learning rate (2.0)")
    p.add_argument("--grad-sample-mode", default=None, choices=GRAD_SAMPLE_MODES,
                   help="Opacus per-sample gradient mode (same privacy, different speed; default: dpaudit's)")
    p.add_argument("--non-dp", action="store_true", help="also train each model without DP (non-DP recipe)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_RECORDS:,} training records and {QUICK_EPOCHS} epochs (unless --epochs)")
    args = p.parse_args(argv)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    threads = set_threads(args.threads)
    quiet()
    commit = git_commit()
    xtr, ytr, xte, yte, prov = fashion_mnist_official()
    if args.quick:
        xtr, ytr = xtr[:QUICK_RECORDS], ytr[:QUICK_RECORDS]
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else None)
    overrides = {k: v for k, v in (("epochs", epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
    if args.grad_sample_mode:
        overrides["grad_sample_mode"] = args.grad_sample_mode
    print(f"bench_utility: commit {commit}, Fashion-MNIST {len(ytr):,} training records (official train part"
          f"{', first ' + format(QUICK_RECORDS, ',') if args.quick else ''}), {len(yte):,} test records "
          f"(official test part); torch threads {threads}; overrides {overrides or 'none'}", flush=True)

    rows, results = [], {}
    t_all = time.perf_counter()
    settings = ([math.inf] if args.non_dp else []) + epsilons
    for model in models:
        results[model] = {}
        for eps in settings:
            cfg = replace(train_config(AuditConfig(model=model, seed=args.seed), eps), **overrides)
            label = "non-dp" if not math.isfinite(eps) else f"{eps:g}"
            t = time.perf_counter()
            try:
                rec = train_model(cfg, xtr, ytr, test_images=xte, test_labels=yte, progress=False).record
            except Exception as exc:  # report and go on with the others
                msg = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                print(f"  {model} ε={label}: FAILED ({msg})", flush=True)
                results[model][label] = {"error": msg}
                rows.append([model, label, "failed", "—", "—", "—", "—", "—", "—"])
                continue
            call_s = time.perf_counter() - t
            r = {"test_accuracy": round(rec.test_accuracy, 4), "train_accuracy": round(rec.train_accuracy, 4),
                 "epsilon_spent": rec.epsilon, "noise_multiplier": rec.noise_multiplier, "epochs": rec.epochs,
                 "batch_size": rec.batch_size, "lr": rec.lr, "steps": rec.steps, "loop_s": round(rec.wall_s, 2),
                 "call_s": round(call_s, 2)}
            results[model][label] = r
            rows.append([model, label, f"{rec.test_accuracy:.4f}", f"{rec.train_accuracy:.4f}",
                         "—" if rec.epsilon is None else f"{rec.epsilon:.3f}",
                         "—" if rec.noise_multiplier is None else f"{rec.noise_multiplier:.3f}",
                         f"{rec.epochs}/{rec.batch_size}/{rec.lr:g}", f"{rec.wall_s:.1f}", f"{call_s:.1f}"])
            print(f"  {model} ε={label}: test acc {rec.test_accuracy:.4f} ({rec.epochs} epochs, {rec.steps} steps, "
                  f"loop {rec.wall_s:.1f} s, call {call_s:.1f} s)", flush=True)
    total = time.perf_counter() - t_all
    print("\n" + table(["model", "ε target", "test acc", "train acc", "ε spent", "σ", "epochs/batch/lr", "loop s",
                        "call s"], rows))
    print(f"\ntotal {fmt_duration(total)}; test accuracy on the official Fashion-MNIST test part "
          f"({len(yte):,} records); δ = 1e-5")
    base = train_config(AuditConfig(), 1.0)
    print_json_line({
        "commit": commit,
        "test_accuracy": {m: {k: v.get("test_accuracy") for k, v in res.items()} for m, res in results.items()},
        "results": results,
        "n_train": int(len(ytr)),
        "n_test": int(len(yte)),
        "dataset_sha256": prov.sha256,
        "recipe": {"epochs": base.epochs, "batch_size": base.batch_size, "lr": base.lr, "momentum": base.momentum,
                   "max_grad_norm": base.max_grad_norm, "delta": base.delta, "accountant": base.accountant,
                   "grad_sample_mode": base.grad_sample_mode},
        "overrides": overrides,
        "total_s": round(total, 1),
        "peak_rss_mb": peak_rss()["max_mb"],
        "threads": threads,
        "cpus": os.cpu_count(),
        "quick": args.quick,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
