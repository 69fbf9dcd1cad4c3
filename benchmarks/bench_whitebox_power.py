"""What the white-box route's measured power costs, and what it states, on the default recipe's shapes.

Each DP model of an audit with gradient canaries runs ``dpaudit.core.power.whitebox_detectable`` once: whole
white-box analyses (``analyse``: every conformance test and bound route) of runs simulated from the claimed
mechanism with less noise, at the run's own canaries, coins and steps. This prints, at claimed ε 8 and 1 with the
reference report's shapes (M = 1,000 canaries, 489 / 502 in, T = 120 steps of 10 an epoch, q = 0.1, C = 1, the
audit's per-bound confidence 0.9984375), for each power seed: the detectable noise factor and ε, the simulated rate
at that factor with its exact 95% interval, every factor simulated, the number of analyses, and the seconds taken
(wall and CPU of the search, the accountant's ε at σ × f, and one audit analysis for scale). No training: the search only reads
the run's shapes and coins, so a template from ``synthetic_observations`` is the run.

    python benchmarks/bench_whitebox_power.py                 # power seed 0
    python benchmarks/bench_whitebox_power.py --seeds 0 1 2   # the Monte-Carlo spread of the stated figure

Ends with one JSON line. Timings on a shared machine are noisy: the CPU seconds (one thread) are the cost on an
idle core; read wall times as ratios to the one analysis timed beside them (``analysis_s``).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
from _common import git_commit, print_json_line, table

from dpaudit.core import power as P
from dpaudit.core.whitebox import analyse, synthetic_observations
from dpaudit.training.accounting import opacus_epsilon

CONF = 0.9984375  # the default audit's per-bound confidence (reports/reference/report.json)
# (claimed ε, σ, canaries in) of the reference report's two DP models; q = 0.1, 120 steps, 1,000 canaries
MODELS = {"eps8": (7.992938199970315, 0.9808349609375, 489), "eps1": (0.9950907181170507, 4.3359375, 502)}
# the reference report's figures from the previous model (Clopper-Pearson at a claimed-mechanism threshold +
# the noise test), seed 0: reproduced with that code on these inputs
OLD = {"eps8": 8.34560579175442, "eps1": 1.0214419261588064}
M, T, SPE, Q, DELTA = 1000, 120, 10, 0.1, 1e-5


def template(claim: float, sigma: float, n_in: int, seed: int = 0):
    w = synthetic_observations(M, T, SPE, sigma, Q, seed=seed, claimed_epsilon=claim, delta=DELTA)
    coins = np.zeros(M, bool)
    coins[np.random.default_rng(seed).permutation(M)[:n_in]] = True
    return dataclasses.replace(w, coins=coins)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="power-simulation seeds (default 0)")
    ap.add_argument("--n-sims", type=int, default=P.WB_N_SIMS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Optimal order")
    rows, out = [], []
    for name, (claim, sigma, n_in) in MODELS.items():
        tpl = template(claim, sigma, n_in)
        eps_of = lambda s, sigma=sigma: opacus_epsilon(Q, s, T, DELTA, "prv")  # noqa: E731
        t0 = time.perf_counter()
        analyse(P.simulated_observations(tpl, 1.0, 0), confidence=CONF, seed=3000, empirical=False)
        analysis_s = time.perf_counter() - t0
        for seed in args.seeds:
            calls = []

            def counted(s, eps_of=eps_of, calls=calls):
                t = time.perf_counter()
                v = eps_of(s)
                calls.append(time.perf_counter() - t)
                return v
            t0, c0 = time.perf_counter(), time.process_time()
            r = P.whitebox_detectable(tpl, confidence=CONF, epsilon_of_sigma=counted, analysis_seed=3000, seed=seed,
                                      n_sims=args.n_sims)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            pw = r["detectable_power"]
            n_analyses = 1 + sum(x["n"] for x in pw["points"])
            rec = {"model": name, "claimed": claim, "seed": seed, "old_detectable": OLD[name],
                   "detectable_epsilon": r["detectable_epsilon"], "noise_factor": r["detectable_noise_factor"],
                   "rate": pw["rate"], "rate_ci": pw["rate_ci"], "points": pw["points"], "analyses": n_analyses,
                   "seconds": total, "cpu_seconds": cpu, "accountant_s": sum(calls), "analysis_s": analysis_s,
                   "per_analysis_s": (total - sum(calls)) / n_analyses}
            out.append(rec)
            pts = "; ".join(f"{x['noise_factor']:.4f}: {x['detected']}/{x['n']}" for x in pw["points"])
            rows.append([name, f"{claim:.3f}", seed, f"{OLD[name]:.3f}", f"{r['detectable_epsilon']:.3f}",
                         f"{r['detectable_noise_factor']:.4f}", f"{pw['rate']:.2f} [{pw['rate_ci'][0]:.2f}, "
                         f"{pw['rate_ci'][1]:.2f}]", pts, n_analyses, f"{total:.1f}", f"{cpu:.1f}", f"{sum(calls):.1f}",
                         f"{analysis_s:.2f}"])
    print(table(["model", "claimed ε", "seed", "old detectable ε", "new detectable ε", "σ × f", "rate [95% CI]",
                 "factors simulated: detected/n", "analyses", "s total", "s CPU", "s accountant", "s one analysis"], rows))
    print_json_line({"benchmark": "whitebox_power", "commit": git_commit(), "n_sims": args.n_sims,
                     "confidence": CONF, "results": out})


if __name__ == "__main__":
    main()
