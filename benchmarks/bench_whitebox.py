"""Does the white-box gradient-canary audit catch DP-SGD that adds less noise than its accountant claims?

Trains the default DP recipe (dpaudit.recipes.DP_RECIPE: 12 epochs, Poisson batches of 256, lr 0.75) on 1,750
members of the embedded digits (mnist-5k) with M = 1000 gradient canaries, at claimed epsilon 1 and 8, with the
optimizer's noise scaled by 1.0 (correct DP), 0.9 and 0.5 (bugs: the accountant still claims the original epsilon),
over several seeds. A case counts as detected when the conformance tests reject (verdict nonconformant).
Prints one row per (epsilon, noise) case, the detection rate at x0.9 and x0.5 and the false-alarm rate at x1.0,
then ONE JSON line.

    python benchmarks/bench_whitebox.py                 # 10 seeds per case (60 trainings)
    python benchmarks/bench_whitebox.py --seeds 20
    python benchmarks/bench_whitebox.py --quick         # 300 members, 2 epochs, M = 200, 1 seed: a smoke run
    python benchmarks/bench_whitebox.py --grad-sample-mode fast   # the same audit of dpaudit's fast mode
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import fmt_duration, git_commit, print_json_line, quiet, set_threads, table

from dpaudit.accounting import dp_accounting_epsilon
from dpaudit.data import load_dataset
from dpaudit.recipes import DP_RECIPE
from dpaudit.train import TrainConfig, train_model
from dpaudit.whitebox import GradientCanaries, ScaleNoise, analyse

FACTORS = (1.0, 0.9, 0.5)


def run_one(ds, eps: float, factor: float, seed: int, members: int, m: int, epochs: int, n_test: int,
            mode: str = "hooks") -> dict:
    """One training at claimed ``eps`` whose optimizer adds ``factor`` x the claimed noise, and its analysis."""
    idx = np.random.default_rng([seed, 17]).permutation(len(ds))
    tr, te = idx[:members], idx[members:members + n_test]
    cfg = TrainConfig(epsilon=eps, delta=1e-5, **{**DP_RECIPE, "epochs": epochs}, seed=seed, grad_sample_mode=mode)
    t0 = time.perf_counter()
    tm = train_model(cfg, ds.images[tr], ds.labels[tr], test_images=ds.images[te], test_labels=ds.labels[te],
                     progress=False, gradient_canaries=GradientCanaries(m, seed=seed),
                     after_make_private=None if factor == 1.0 else ScaleNoise(factor))
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    r = analyse(tm.whitebox, confidence=0.95, seed=seed)
    rec = tm.record
    true_eps = dp_accounting_epsilon(rec.sample_rate, rec.noise_multiplier * factor, rec.steps, rec.delta, "pld")
    return {"epsilon": eps, "factor": factor, "seed": seed, "claimed_epsilon": rec.epsilon, "true_epsilon": true_eps,
            "detected": not r.conformant, "failed": r.failed, "sigma": rec.noise_multiplier, "sigma_hat": r.sigma_hat,
            "q": rec.sample_rate, "q_hat": r.q_hat, "empirical_epsilon": r.empirical_epsilon,
            "empirical_epsilon_ci": r.empirical_epsilon_ci, "eps_lb_one_run": r.epsilon_lb_one_run,
            "eps_lb_cp": r.epsilon_lb_cp, "final_eps_lb_one_run": r.final_model_epsilon_lb_one_run,
            "final_eps_lb_cp": r.final_model_epsilon_lb_cp, "test_accuracy": rec.test_accuracy,
            "train_s": train_s, "analyse_s": time.perf_counter() - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="seeds per (epsilon, noise) case (default 10)")
    ap.add_argument("--quick", action="store_true", help="300 members, 2 epochs, M = 200, 1 seed: a smoke run")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--grad-sample-mode", default="hooks", help="the DP-SGD mode audited (hooks, functorch, fast)")
    ap.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                    help="noise factors to run (1 = correct DP); e.g. --factors 1 --seeds 20 for false alarms only")
    args = ap.parse_args()
    quiet()
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    threads = set_threads(args.threads)
    members, m, epochs, n_test, seeds = 1750, 1000, DP_RECIPE["epochs"], 1000, args.seeds
    if args.quick:
        members, m, epochs, n_test, seeds = 300, 200, 2, 300, 1
    factors = tuple(float(f) for f in args.factors.split(",") if f.strip())
    ds = load_dataset("mnist-5k")
    t0 = time.perf_counter()
    runs = []
    for eps in (1.0, 8.0):
        for factor in factors:
            for seed in range(seeds):
                r = run_one(ds, eps, factor, seed, members, m, epochs, n_test, args.grad_sample_mode)
                runs.append(r)
                print(f"eps {eps:g} noise x{factor:g} seed {seed}: {'DETECTED' if r['detected'] else 'passed'} "
                      f"{r['failed']} sigma_hat/sigma {r['sigma_hat'] / r['sigma']:.3f} "
                      f"emp eps {r['empirical_epsilon']:.3g} lb {r['eps_lb_one_run']:.2f}/{r['eps_lb_cp']:.2f} "
                      f"({r['train_s']:.0f}s + {r['analyse_s']:.1f}s)", flush=True)
    rows, cases = [], []
    for eps in (1.0, 8.0):
        for factor in factors:
            rs = [r for r in runs if r["epsilon"] == eps and r["factor"] == factor]
            det = sum(r["detected"] for r in rs) / len(rs)

            def med(k, rs=rs):
                return float(np.median([r[k] for r in rs]))
            case = {"epsilon": eps, "factor": factor, "seeds": len(rs), "detection_rate": det,
                    "claimed_epsilon": med("claimed_epsilon"), "true_epsilon": med("true_epsilon"),
                    "empirical_epsilon": med("empirical_epsilon"), "sigma_ratio": med("sigma_hat") / med("sigma"),
                    "eps_lb_one_run": med("eps_lb_one_run"), "eps_lb_cp": med("eps_lb_cp"),
                    "final_eps_lb_cp": med("final_eps_lb_cp"), "test_accuracy": med("test_accuracy"),
                    "failed_tests": sorted({n for r in rs for n in r["failed"]})}
            cases.append(case)
            label = "false alarms" if factor == 1.0 else "detected"
            rows.append([f"{eps:g}", f"x{factor:g}", f"{case['claimed_epsilon']:.2f}", f"{case['true_epsilon']:.3g}",
                         f"{case['empirical_epsilon']:.3g}", f"{case['sigma_ratio']:.3f}",
                         f"{case['eps_lb_one_run']:.2f} / {case['eps_lb_cp']:.2f}",
                         f"{label} {sum(r['detected'] for r in rs)}/{len(rs)} ({100 * det:.0f}%)",
                         ", ".join(case["failed_tests"]) or "—"])
    wall = time.perf_counter() - t0
    print()
    print(table(["claimed eps", "noise", "eps (accountant)", "true eps (PLD)", "empirical eps", "sigma_hat/sigma",
                 "eps lb one-run / CP", "verdict nonconformant", "tests failed"], rows))
    fa = [r for r in runs if r["factor"] == 1.0]
    bug = [r for r in runs if r["factor"] != 1.0]
    false_alarm = sum(r["detected"] for r in fa) / len(fa) if fa else float("nan")
    detection = sum(r["detected"] for r in bug) / len(bug) if bug else float("nan")
    print(f"\nfalse-alarm rate at x1.0: {100 * false_alarm:.1f}% of {len(fa)} (target <= 5%); detection at x0.9 and "
          f"x0.5: {100 * detection:.1f}% of {len(bug)} (target >= 95%); {fmt_duration(wall)} on {threads} threads")
    print_json_line({"benchmark": "whitebox", "commit": git_commit(), "quick": args.quick,
                     "grad_sample_mode": args.grad_sample_mode, "members": members,
                     "gradient_canaries": m, "epochs": epochs, "seeds": seeds, "threads": threads,
                     "false_alarm_rate": false_alarm, "detection_rate": detection, "cases": cases,
                     "wall_s": round(wall, 1), "runs": runs if args.quick else len(runs)})


if __name__ == "__main__":
    main()
