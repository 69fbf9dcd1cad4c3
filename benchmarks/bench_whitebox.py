"""White-box gradient canaries: does the audit catch DP-SGD that breaks what its accountant assumes, and how close
do its rigorous bounds come to the claim?

Parts (each prints a table; the run ends with ONE JSON line):

* ``detection`` (synthetic observations of the default recipe's run: 12 epochs of 9 Poisson steps, q = 1/9,
  sigma calibrated by the PRV accountant to the claimed epsilon at delta 1e-5, M gradient canaries): for each
  DP bug, the share of seeds in which the verdict is not "consistent with the claim" (nonconformant, or a bound
  above the claim), at claimed epsilon 1 and 8, beside the true epsilon of what ran; false alarms over the
  correct runs; for the repeated-batches bug at epsilon 1, the smallest M that reaches 95%;
* ``null`` (only when asked): exact DP-SGD observations, ``--null-seeds`` per claim: the share flagged nonconformant
  (Clopper-Pearson interval) and each conformance test's rejection rate at its Bonferroni share, 0.05 and 0.2;
* ``bounds``: the best rigorous white-box bound at M = 1,000 and 10,000 against the claim, per route;
* ``monotone``: the median best bound as the noise goes x1.0 -> x0.9 -> x0.5 (it must not fall);
* ``soundness``: each bound route on mechanisms with exact epsilon (randomized response, Gaussian, Laplace,
  subsampled Gaussian over T steps): the share of seeds in which it exceeds the truth (target <= 5%);
* ``train`` (only with --train): the same bugs injected into real Opacus training (``after_make_private`` hooks in
  dpaudit.training.whitebox), default recipe on 1,750 digits (``--train-scale default``) or the tests' small run (300
  records, 6 epochs, batches of 64, M = 500; ``--train-scale small``).

    python benchmarks/bench_whitebox.py                       # synthetic parts, 10 seeds (40 correct runs)
    python benchmarks/bench_whitebox.py --quick               # smoke: 3 seeds, fewer soundness seeds
    python benchmarks/bench_whitebox.py --parts soundness --soundness-seeds 200
    python benchmarks/bench_whitebox.py --parts null --null-seeds 600 --threads 1
    python benchmarks/bench_whitebox.py --parts train --train --train-scale small --train-seeds 3
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from _common import fmt_duration, git_commit, print_json_line, quiet, set_threads, table
from scipy import stats

from dpaudit.core.whitebox_stats import bound_routes, exact_epsilon, simulate_mechanism
from dpaudit.training.accounting import dp_accounting_epsilon, opacus_epsilon
from dpaudit.training.whitebox import (
    GradientCanaries,
    NoClipping,
    NoiseBug,
    SameBatchesEachEpoch,
    SamplerRateTimes,
    ScaleNoise,
    ShuffledBatches,
    analyse,
    conformance_tests,
    llr_scores,
    synthetic_observations,
)

DELTA = 1e-5
EPOCHS, SPE = 12, 9  # the default recipe: 12 epochs, 1/q = 9 Poisson steps an epoch
Q = 1.0 / SPE
T = EPOCHS * SPE

# name: (synthetic_observations kwargs, training hook, true epsilon of what ran as a function of (q, sigma))
BUGS = {
    "same batches every epoch": ({"repeat_epochs": True}, SameBatchesEachEpoch(),
                                 lambda q, s: dp_accounting_epsilon(q, s / math.sqrt(EPOCHS), SPE, DELTA)),
    "uniform noise (right variance)": ({"noise": "uniform"}, NoiseBug("uniform"), lambda q, s: math.inf),
    "Rademacher noise (right variance)": ({"noise": "rademacher"}, NoiseBug("rademacher"), lambda q, s: math.inf),
    "one noise vector reused each step": ({"reuse_noise": True}, NoiseBug("reused"), lambda q, s: math.inf),
    "one noise value per tensor": ({"shared_noise": True}, NoiseBug("shared"), lambda q, s: math.inf),
    "noise x0.9": ({"noise_factor": 0.9}, ScaleNoise(0.9), lambda q, s: dp_accounting_epsilon(q, 0.9 * s, T, DELTA)),
    "no clipping (D = 10 C)": ({"contribution": 10.0}, NoClipping(), lambda q, s: math.inf),
    "shuffled batches": ({"shuffled": True}, ShuffledBatches(), lambda q, s: float("nan")),
    "q told 1/2": ({"true_q": 2 * Q}, SamplerRateTimes(2.0), lambda q, s: dp_accounting_epsilon(2 * q, s, T, DELTA)),
}


def calibrate_sigma(eps: float, q: float = Q, steps: int = T) -> float:
    lo, hi = 0.3, 50.0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if opacus_epsilon(q, mid, steps, DELTA, "prv") > eps else (lo, mid)
    return hi


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Clopper-Pearson interval of a rate."""
    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def verdict_flags(w, seed: int, claimed: float) -> tuple[bool, list, float, str]:
    r = analyse(w, seed=seed, empirical=False)
    return (not r.conformant) or r.epsilon_lb > claimed, r.failed, r.epsilon_lb, r.best_route


def part_detection(sigmas: dict, m: int, seeds: int, correct_seeds: int, out: dict) -> None:
    rows, cases = [], []
    for eps, sigma in sigmas.items():
        for name, (kw, _hook, true_fn) in [("correct DP", ({}, None, lambda q, s, e=eps: e)), *BUGS.items()]:
            n = correct_seeds if name == "correct DP" else seeds
            det, failed = 0, {}
            for s in range(n):
                w = synthetic_observations(m, T, SPE, sigma, Q, seed=s, claimed_epsilon=eps, **kw)
                d, f, _, _ = verdict_flags(w, s, eps)
                det += d
                for x in f:
                    failed[x] = failed.get(x, 0) + 1
            true_eps = true_fn(Q, sigma)
            lo, hi = wilson(det, n)
            top = sorted(failed.items(), key=lambda kv: -kv[1])[:3]
            cases.append({"epsilon": eps, "bug": name, "seeds": n, "detected": det, "rate": det / n,
                          "rate_ci": [lo, hi], "true_epsilon": true_eps, "failed_tests": failed})
            rows.append([f"{eps:g}", name, f"{true_eps:.3g}",
                         f"{'false alarms' if name == 'correct DP' else 'detected'} {det}/{n} ({100 * det / n:.0f}%, "
                         f"CI {100 * lo:.0f}-{100 * hi:.0f}%)", ", ".join(f"{k} {v}" for k, v in top) or "—"])
            print(rows[-1], flush=True)
    print()
    print(table(["claimed eps", "bug", "true eps of what ran", "verdict not 'consistent'", "tests that rejected"],
                rows))
    out["detection"] = cases


def part_null(sigmas: dict, m: int, seeds: int, out: dict) -> None:
    """Exact DP-SGD observations (no bug): the share of seeds flagged nonconformant (any test at its Bonferroni
    share), and each test's rejection rate at its share, at 0.05 and at 0.2 with a KS test of its p-values against
    Uniform(0, 1) (a calibrated test rejects at about each level; ``steps`` is exact: p is 1)."""
    rows, cases = [], []
    for eps, sigma in sigmas.items():
        ps: dict[str, list] = {}
        for s in range(seeds):
            w = synthetic_observations(m, T, SPE, sigma, Q, seed=s, claimed_epsilon=eps)
            for t in conformance_tests(w.obs, w.coins, w.epoch_of_step, sigma, Q, 1.0, T, T, 0.95, s):
                ps.setdefault(t["name"], []).append(t["p_value"])
        share = 0.05 / len(ps)
        p = {k: np.asarray(v) for k, v in ps.items()}
        flagged = int((np.array(list(p.values())) <= share).any(axis=0).sum())
        lo, hi = wilson(flagged, seeds)
        per = {}
        for k, v in p.items():
            r = int(np.sum(v <= share))
            per[k] = {"at_share": r, "at_share_ci": list(wilson(r, seeds)), "at_0.05": float(np.mean(v <= 0.05)),
                      "at_0.2": float(np.mean(v <= 0.2)), "ks_uniform_p": float(stats.kstest(v, "uniform").pvalue)}
            rows.append([f"{eps:g}", k, f"{r}/{seeds}", f"{np.mean(v <= 0.05):.3f}", f"{np.mean(v <= 0.2):.3f}",
                         f"{per[k]['ks_uniform_p']:.2g}"])
        rows.append([f"{eps:g}", "ANY (flagged nonconformant)",
                     f"{flagged}/{seeds} ({100 * flagged / seeds:.1f}%, CI {100 * lo:.1f}-{100 * hi:.1f}%)", "", "", ""])
        cases.append({"epsilon": eps, "seeds": seeds, "m": m, "share": share, "flagged": flagged,
                      "rate": flagged / seeds, "rate_ci": [lo, hi], "tests": per})
        print(rows[-1], flush=True)
    print(table(["claimed eps", "test (exact DP-SGD)", "rejected at alpha/13", "at 0.05", "at 0.2",
                 "KS p (p-values ~U)"], rows))
    out["null"] = cases


def part_min_m(sigma: float, eps: float, seeds: int, grid: tuple, out: dict) -> None:
    """Smallest M at which the repeated-batches bug is detected in >= 95% of seeds at this claim."""
    found, rows = None, []
    for m in grid:
        det = 0
        for s in range(seeds):
            w = synthetic_observations(m, T, SPE, sigma, Q, seed=s, repeat_epochs=True)
            tests = conformance_tests(w.obs, w.coins, w.epoch_of_step, sigma, Q, 1.0, T, T, 0.95, s, n_simulated=0)
            det += any(not t["passed"] for t in tests)
        rows.append([f"{m:,}", f"{det}/{seeds}"])
        print(f"same batches every epoch, eps {eps:g}, M = {m:,}: detected {det}/{seeds}", flush=True)
        if det >= math.ceil(0.95 * seeds):
            found = m
            break
    print(table(["M", f"detected (same batches every epoch, claimed eps {eps:g})"], rows))
    out["repeat_min_m"] = {"epsilon": eps, "seeds": seeds, "m": found, "grid": list(grid),
                           "note": "omnibus off (n_simulated=0) to keep it fast; the other 12 tests share alpha"}


def part_bounds(sigmas: dict, ms: tuple, seeds: dict, out: dict) -> None:
    rows, cases = [], []
    for eps, sigma in sigmas.items():
        for m in ms:
            per = {"one_run": [], "clopper_pearson": [], "per_step": [], "fdp_one_run": []}
            best = []
            t0 = time.perf_counter()
            for s in range(seeds[m]):
                r = analyse(synthetic_observations(m, T, SPE, sigma, Q, seed=s, claimed_epsilon=eps), seed=s,
                            empirical=False)
                for x in r.routes:
                    per[x.route].append(x.epsilon_lb)
                best.append(r.epsilon_lb)
            med = {k: float(np.median(v)) for k, v in per.items()}
            b = float(np.median(best))
            cases.append({"epsilon": eps, "m": m, "seeds": seeds[m], "median": med, "best_median": b,
                          "best_share_of_claim": b / eps, "s_per_analysis": (time.perf_counter() - t0) / seeds[m]})
            rows.append([f"{eps:g}", f"{m:,}", f"{seeds[m]}", f"{med['one_run']:.2f}", f"{med['clopper_pearson']:.2f}",
                         f"{med['per_step']:.2f}", f"{med['fdp_one_run']:.2f}", f"{b:.2f} ({100 * b / eps:.0f}%)",
                         f"{cases[-1]['s_per_analysis']:.2f}"])
            print(rows[-1], flush=True)
    print()
    print(table(["claimed eps", "M", "seeds", "one run", "CP over canaries", "per-step witness", "f-DP one run",
                 "best (share of claim)", "s / analysis"], rows))
    out["bounds"] = cases


def part_monotone(sigmas: dict, m: int, seeds: int, out: dict) -> None:
    rows, cases = [], []
    for eps, sigma in sigmas.items():
        per: dict[str, list] = {"best": [], "one_run": [], "clopper_pearson": [], "per_step": [], "fdp_one_run": []}
        for f in (1.0, 0.9, 0.5):
            rs = [analyse(synthetic_observations(m, T, SPE, sigma, Q, seed=s, noise_factor=f), seed=s,
                          empirical=False) for s in range(seeds)]
            per["best"].append(float(np.median([r.epsilon_lb for r in rs])))
            for i, k in enumerate(("one_run", "clopper_pearson", "per_step", "fdp_one_run")):
                per[k].append(float(np.median([r.routes[i].epsilon_lb for r in rs])))
        for k, meds in per.items():
            ok = meds[0] <= meds[1] <= meds[2]
            cases.append({"epsilon": eps, "m": m, "seeds": seeds, "route": k, "medians": meds, "non_decreasing": ok})
            rows.append([f"{eps:g}", f"{m:,}", k, *(f"{x:.2f}" for x in meds), "yes" if ok else "NO"])
    print(table(["claimed eps", "M", "route (median bound)", "x1.0", "x0.9", "x0.5", "non-decreasing"], rows))
    out["monotone"] = cases


# the last two: one step of randomized response, where the guess-based routes (one run, f-DP one run) are near-tight
SOUND = [("randomized_response", 10, 0.75, 1.0), ("gaussian", 16, 2.0, 1.0), ("laplace", 5, 1.0, 1.0),
         ("subsampled_gaussian", 120, 0.98, 0.1), ("randomized_response", 1, 0.75, 1.0),
         ("randomized_response", 1, 0.9, 1.0)]


def part_soundness(seeds: int, m: int, out: dict) -> None:
    rows, cases = [], []
    for name, steps, param, q in SOUND:
        true_eps = exact_epsilon(name, steps, DELTA, param, q)
        over = {"one_run": 0, "clopper_pearson": 0, "per_step": 0, "fdp_one_run": 0}
        med = {k: [] for k in over}
        for s in range(seeds):
            x, coins = simulate_mechanism(name, m, steps, 10_000 + s, param, q)
            scores = llr_scores(x, param, q, 1.0) if name == "subsampled_gaussian" else x.sum(axis=0)
            for r in bound_routes(x, scores, coins, DELTA, 0.95, s, q=q):
                over[r["route"]] += r["epsilon_lb"] > true_eps
                med[r["route"]].append(r["epsilon_lb"])
        for k, v in over.items():
            lo, hi = wilson(v, seeds)
            cases.append({"mechanism": name, "steps": steps, "param": param, "q": q, "true_epsilon": true_eps,
                          "route": k, "seeds": seeds, "exceeded": v, "rate": v / seeds, "rate_ci": [lo, hi],
                          "median_bound": float(np.median(med[k]))})
            rows.append([name, f"{true_eps:.3f}", k, f"{float(np.median(med[k])):.2f}",
                         f"{v}/{seeds} ({100 * v / seeds:.1f}%, CI {100 * lo:.1f}-{100 * hi:.1f}%)"])
        print(rows[-len(over):], flush=True)
    print(table(["mechanism", "exact eps", "route", "median bound", "bound > exact eps (target <= 5%)"], rows))
    out["soundness"] = cases


def part_train(scale: str, seeds: int, eps_list: tuple, out: dict, mode: str = "hooks",
               correct_seeds: int | None = None) -> None:
    """Real Opacus training, correct and with each bug of BUGS, in ``mode``; ``correct_seeds`` (default ``seeds``):
    the correct runs' own count, since a false alarm rate needs more runs than a detection does."""
    from dpaudit.config.recipes import DP_RECIPE
    from dpaudit.training.data import load_dataset
    from dpaudit.training.train import TrainConfig, train_model

    ds = load_dataset("mnist-5k")
    if scale == "default":
        members, m, n_test, kw = 1750, 1000, 1000, {**DP_RECIPE}
    else:
        members, m, n_test, kw = 300, 500, 200, {"epochs": 6, "batch_size": 64, "lr": 0.5, "momentum": 0.0}
    rows, cases = [], []
    for eps in eps_list:
        for name, (_kw, hook, _t) in [("correct DP", ({}, None, None)), *BUGS.items()]:
            det, failed, secs = 0, {}, []
            n_seeds = (correct_seeds or seeds) if hook is None else seeds
            for s in range(n_seeds):
                idx = np.random.default_rng([s, 17]).permutation(len(ds))
                tr, te = idx[:members], idx[members:members + n_test]
                cfg = TrainConfig(epsilon=eps, delta=DELTA, **kw, seed=s, grad_sample_mode=mode)
                t0 = time.perf_counter()
                tm = train_model(cfg, ds.images[tr], ds.labels[tr], test_images=ds.images[te],
                                 test_labels=ds.labels[te], progress=False,
                                 gradient_canaries=GradientCanaries(m, seed=s), after_make_private=hook)
                secs.append(time.perf_counter() - t0)
                d, f, _, _ = verdict_flags(tm.whitebox, s, tm.record.epsilon)
                det += d
                for x in f:
                    failed[x] = failed.get(x, 0) + 1
            cases.append({"epsilon": eps, "bug": name, "seeds": n_seeds, "detected": det, "failed_tests": failed,
                          "train_s_median": float(np.median(secs))})
            top = sorted(failed.items(), key=lambda kv: -kv[1])[:3]
            rows.append([f"{eps:g}", name, f"{det}/{n_seeds}", ", ".join(f"{k} {v}" for k, v in top) or "—",
                         f"{np.median(secs):.0f}"])
            print(rows[-1], flush=True)
    print(table(["claimed eps", "bug (real Opacus training)", "verdict not 'consistent'", "tests that rejected",
                 "train s"], rows))
    out["train"] = {"scale": scale, "members": members, "m": m, "grad_sample_mode": mode, "cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="detection,bounds,monotone,soundness",
                    help="comma-separated: detection, null, bounds, monotone, soundness, train")
    ap.add_argument("--seeds", type=int, default=10, help="seeds per bug and claim (default 10)")
    ap.add_argument("--correct-seeds", type=int, default=40, help="correct runs per claim for false alarms")
    ap.add_argument("--m", type=int, default=1000, help="gradient canaries in the detection part (default 1000)")
    ap.add_argument("--soundness-seeds", type=int, default=200)
    ap.add_argument("--null-seeds", type=int, default=300, help="exact runs per claim in the null part (300)")
    ap.add_argument("--big-m-seeds", type=int, default=10, help="seeds at M = 10,000 in the bounds part")
    ap.add_argument("--train", action="store_true", help="allow the real-training part (slow)")
    ap.add_argument("--train-scale", choices=("small", "default"), default="small")
    ap.add_argument("--train-seeds", type=int, default=3, help="seeds per bug in the train part (default 3)")
    ap.add_argument("--train-correct-seeds", type=int, default=None,
                    help="correct (bug-free) runs per claim in the train part (default: --train-seeds)")
    ap.add_argument("--grad-sample-mode", default="hooks",
                    help="the DP-SGD mode the train part audits (hooks, functorch, fast); default hooks")
    ap.add_argument("--quick", action="store_true", help="3 seeds, 10 correct runs, 40 soundness seeds")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    quiet()
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    threads = set_threads(args.threads)
    if args.quick:
        args.seeds, args.correct_seeds, args.soundness_seeds, args.big_m_seeds, args.null_seeds = 3, 10, 40, 3, 20
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    sigmas = {1.0: calibrate_sigma(1.0), 8.0: calibrate_sigma(8.0)}
    print(f"T = {T} steps ({EPOCHS} epochs x {SPE}), q = {Q:.4f}, delta = {DELTA:g}; sigma (PRV) "
          + ", ".join(f"{s:.3f} at eps {e:g}" for e, s in sigmas.items()), flush=True)
    out: dict = {"sigmas": {str(k): v for k, v in sigmas.items()}}
    t0 = time.perf_counter()
    if "detection" in parts:
        part_detection(sigmas, args.m, args.seeds, args.correct_seeds, out)
        part_min_m(sigmas[1.0], 1.0, args.seeds, (2000, 4000, 8000, 16000, 32000), out)
    if "null" in parts:
        part_null(sigmas, args.m, args.null_seeds, out)
    if "bounds" in parts:
        part_bounds(sigmas, (1000, 10000), {1000: args.seeds, 10000: args.big_m_seeds}, out)
    if "monotone" in parts:
        part_monotone(sigmas, 1000, args.seeds, out)
    if "soundness" in parts:
        part_soundness(args.soundness_seeds, 1000, out)
    if "train" in parts:
        if not args.train:
            ap.error("the train part trains many models: pass --train as well")
        part_train(args.train_scale, args.train_seeds, (1.0, 8.0), out, args.grad_sample_mode,
                   args.train_correct_seeds)
    wall = time.perf_counter() - t0
    print(f"\n{fmt_duration(wall)} on {threads} threads")
    print_json_line({"benchmark": "whitebox", "commit": git_commit(), "quick": args.quick, "parts": parts,
                     "seeds": args.seeds, "correct_seeds": args.correct_seeds, "m": args.m, "T": T, "q": Q,
                     "delta": DELTA, "threads": threads, "wall_s": round(wall, 1), **out})


if __name__ == "__main__":
    main()
