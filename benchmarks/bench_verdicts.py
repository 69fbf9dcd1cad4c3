"""Do verdicts claim only the power the audit has, and do confidences survive re-runs and foreign files?

Three tables, all on synthetic data whose true ε is known exactly (no training: seconds, not hours):

1. Leak table. `dpaudit audit --from-signals` (the Python path of that command, ``external.audit_signals``) on
   synthetic SIGNALS files with a claim of ε = 1 and a real Gaussian leak: the target's and the reference
   models' members score N(μ, 1), non-members N(0, 1) (μ-Gaussian DP: true ε 1.5, 3, 4.4 and 10 at δ = 1e-5),
   with canaries drawn by fair coins leaking the same way. Verdict counts over the runs, the stated detectable ε,
   and the check the issue asks for: no "consistent" where the stated power did not reach the true ε.
2. False bounds on pure noise at member shares 50/55/60/80%: `dpaudit epsilon --method one-run`
   (``scores.epsilon_from_scores``: a bound > 0 at confidence 0.95) and `--from-signals` canaries (the canary
   bound > 0, and a false violation of a claim ε = 0.1), against the nominal α = 0.05.
3. Family-wise confidence after 0, 1 and 5 `dpaudit attack` re-runs: the stated combined confidence, and
   simulations of the real one: (a) exact null tests whose p-values are uniform (the worst case for the union
   bound), each run at its scheduled α; (b) the audit's own one-run canary test (balanced guesses, 500 fair-coin
   canaries, pure noise), each run at its scheduled per-run confidence, re-runs with fresh attack noise: the
   chance that some run of the sequence shows a bound > 0. Beside them, the old rule (every run at the full α).

    python benchmarks/bench_verdicts.py              # 30 runs per leak, 200 files per share
    python benchmarks/bench_verdicts.py --quick      # 6 runs per leak, 40 files per share

Ends with ONE JSON line.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import git_commit, print_json_line

from dpaudit.config import AuditConfig
from dpaudit.core.bounds import alpha_spent, combined_confidence, one_run_audit
from dpaudit.core.plan import run_confidence
from dpaudit.core.power import gdp_epsilon, gdp_mu
from dpaudit.core.scores import epsilon_from_scores
from dpaudit.pipeline import audit_signals
from dpaudit.sources.external import signals_npz

DELTA = 1e-5
CLAIM = 1.0
TRUE_EPS = (1.5, 3.0, 4.4, 10.0)
SHARES = (0.5, 0.55, 0.6, 0.8)


def synthetic_signals(rng: np.random.Generator, *, mu: float, n_pool: int = 2000, k_refs: int = 4, m: int = 1000,
                      canary_share: float | None = None, records: bool = True) -> dict:
    """A SIGNALS.npz's arrays with a μ-GDP leak: a model's logit for the true class is 3 + N(0, 1) + μ·member
    (two classes, the other logit 0), so the loss attack's score (−loss, monotone in that logit) is N(μ, 1) on
    members against N(0, 1) on non-members. Each model's members are a random half of the pool. Canaries:
    ``m`` scores N(μ, 1) in / N(0, 1) out, in by fair coins, or exactly ``canary_share`` of them in."""
    n_models = k_refs + 1
    mem = np.zeros((n_models, n_pool), bool)
    for i in range(n_models):
        mem[i, rng.permutation(n_pool)[: n_pool // 2]] = True
    z = 3.0 + rng.standard_normal((n_models, n_pool)) + (mu if records else 0.0) * mem
    logits = np.stack([z, np.zeros_like(z)], axis=-1).astype(np.float32)
    out = {"logits": logits, "labels": np.zeros(n_pool, np.int64), "membership": mem.astype(np.uint8)}
    if m:
        if canary_share is None:
            cin = rng.random(m) < 0.5
        else:
            cin = np.zeros(m, bool)
            cin[rng.permutation(m)[: int(round(canary_share * m))]] = True
        out["canary_scores"] = rng.standard_normal(m) + mu * cin
        out["canary_in"] = cin.astype(np.uint8)
    return out


def audit_file(arrays: dict, cfg: AuditConfig, tmp: Path, claim: float = CLAIM) -> dict:
    path = tmp / "s.npz"
    path.write_bytes(signals_npz(arrays))
    report, _ = audit_signals(path, cfg, claim)
    return report["models"][0]


def leak_table(runs: int, cfg: AuditConfig, tmp: Path) -> list[dict]:
    rows = []
    for true_eps in TRUE_EPS:
        mu = gdp_mu(true_eps, DELTA)
        counts: dict[str, int] = {}
        dets, unsupported = [], 0
        for r in range(runs):
            m = audit_file(synthetic_signals(np.random.default_rng([r, int(true_eps * 100)]), mu=mu), cfg, tmp)
            v = m["verdict"]
            counts[v["status"]] = counts.get(v["status"], 0) + 1
            det = float(v["detectable_epsilon"]) if v["detectable_epsilon"] is not None else math.inf
            dets.append(det)
            # the check: a "consistent" whose stated power did not reach the true ε
            unsupported += v["status"] == "consistent" and det > true_eps
        rows.append({"true_eps": true_eps, "mu": round(mu, 4), "runs": runs, "verdicts": counts,
                     "detectable_eps_median": float(np.median(dets)), "detectable_eps_range": [min(dets), max(dets)],
                     "consistent_without_power": unsupported})
    return rows


def noise_table(files: int, cfg: AuditConfig, tmp: Path) -> list[dict]:
    """Pure noise (μ = 0) at fixed member shares: a bound > 0 and a false violation of the claim, per route."""
    rows = []
    for share in SHARES:
        eps_pos = sig_pos = sig_viol = old_pos = 0
        for f in range(files):
            rng = np.random.default_rng([f, int(share * 100), 7])
            n = 1000
            y = np.zeros(n, bool)
            y[rng.permutation(n)[: int(share * n)]] = True
            s = rng.standard_normal(n)
            out = epsilon_from_scores(y, s, method="one-run", delta=DELTA, confidence=0.95)
            eps_pos += out["epsilon_lower_bound"] > 0
            old_pos += one_run_audit(s, y, DELTA, 0.95).epsilon_lb > 0  # the top-k rule it replaces
            if f < max(files // 4, 10):  # --from-signals runs the whole audit: fewer files
                m = audit_file(synthetic_signals(rng, mu=0.0, n_pool=400, k_refs=2, m=1000, canary_share=share),
                               cfg, tmp, claim=0.1)
                sig_pos += m["canary"]["epsilon_lb"] > 0
                sig_viol += m["verdict"]["status"] == "violation"
        n_sig = min(files, max(files // 4, 10))
        rows.append({"share": share, "epsilon_files": files, "epsilon_bound_gt0": eps_pos / files,
                     "old_top_k_bound_gt0": old_pos / files,
                     "signals_files": n_sig, "signals_canary_bound_gt0": sig_pos / n_sig,
                     "signals_false_violation_of_0.1": sig_viol / n_sig, "nominal_alpha": 0.05})
    return rows


def _one_run_false(confidences: list[float], sims: int, m: int = 500) -> float:
    """Chance that some run of a sequence (one-run canary test at each confidence, pure noise, fresh scores per
    run) gives a bound > 0; the decisions are exact (the one-run p-value at ε = 0 against each run's α)."""
    from dpaudit.core.power import one_run_simulator

    any_false = np.zeros(sims, bool)
    for r, c in enumerate(confidences):
        sim = one_run_simulator(m, m // 2, DELTA, c, 0.0)
        any_false |= sim(1e-6, np.random.default_rng([r, 5]), sims)
    return float(1.0 - any_false.mean())


def rerun_table(sims: int) -> list[dict]:
    """Stated combined confidence after R re-runs, and the simulated chance that no run of the sequence shows a
    false violation. Each run's verdict is a test at its scheduled α on null data; the runs re-use the same
    models, so their tests are dependent: simulated here both independent (the worst case for a union bound is
    disjoint rejection events, which independence approaches for small α) and with the re-runs' p-values
    identical to the original's (fully dependent)."""
    rows = []
    alpha = 0.05
    rng = np.random.default_rng(11)
    for reruns in (0, 1, 5):
        shares = [alpha * 2.0 ** -(r + 1) for r in range(reruns + 1)]
        p = rng.random((sims, reruns + 1))  # null p-values are uniform
        indep = 1.0 - np.mean((p <= np.array(shares)).any(axis=1))
        same = 1.0 - np.mean(p[:, :1] <= max(shares))
        old = 1.0 - np.mean((p <= np.array([alpha] * (reruns + 1))).any(axis=1))  # every run at full α
        canary = _one_run_false([1 - a for a in shares], 20_000)
        canary_old = _one_run_false([1 - alpha] * (reruns + 1), 20_000)
        rows.append({"reruns": reruns, "stated_combined_confidence": combined_confidence(1 - alpha, reruns),
                     "alpha_spent": alpha_spent(alpha, reruns), "simulated_independent": indep,
                     "simulated_fully_dependent": same, "old_rule_independent": old,
                     "simulated_one_run_canaries": canary, "old_rule_one_run_canaries": canary_old})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.files = 6, 40
    cfg = replace(AuditConfig(), attacks=("loss",), delta=DELTA, n_boot=100, seed=0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        leaks = leak_table(args.runs, cfg, tmp)
        t_leak = time.perf_counter() - t0
        noise = noise_table(args.files, cfg, tmp)
    reruns = rerun_table(200_000)
    wall = time.perf_counter() - t0

    print(f"1. Leak table: claim ε = {CLAIM:g}, δ = {DELTA:g}, --from-signals with the loss attack on 1,000 + 1,000 "
          "records and 1,000 fair-coin canaries, 4 references")
    print(f"{'true ε':>7} {'μ':>6} {'runs':>5}  {'verdicts':40s} {'detectable ε (median, range)':30s} "
          "consistent w/o power")
    for r in leaks:
        v = ", ".join(f"{k} {n}" for k, n in sorted(r["verdicts"].items()))
        lo, hi = r["detectable_eps_range"]
        print(f"{r['true_eps']:7.2f} {r['mu']:6.3f} {r['runs']:5d}  {v:40s} "
              f"{r['detectable_eps_median']:.2f} [{lo:.2f}, {hi:.2f}]{'':14s} {r['consistent_without_power']}")
    print("\n2. Pure noise at fixed member shares (nominal α = 0.05)")
    print(f"{'share':>6} {'epsilon one-run: bound > 0':>28} {'old top-k rule':>15} "
          f"{'--from-signals canaries: bound > 0':>36} {'false violation of ε = 0.1':>28}")
    for r in noise:
        print(f"{r['share']:6.2f} {r['epsilon_bound_gt0']:>17.3f} ({r['epsilon_files']} files) "
              f"{r['old_top_k_bound_gt0']:>15.3f} "
              f"{r['signals_canary_bound_gt0']:>25.3f} ({r['signals_files']} files) "
              f"{r['signals_false_violation_of_0.1']:>20.3f}")
    print("\n3. Family-wise confidence after R `dpaudit attack` re-runs (α = 0.05; 200,000 sequences of uniform "
          "p-values, 20,000 of one-run canary audits on pure noise)")
    print(f"{'R':>3} {'stated':>8} {'uniform p, independent':>23} {'same p':>8} {'one-run canaries':>17} "
          f"{'old rule: uniform p':>20} {'old rule: canaries':>19}")
    for r in reruns:
        print(f"{r['reruns']:3d} {r['stated_combined_confidence']:8.4f} {r['simulated_independent']:23.4f} "
              f"{r['simulated_fully_dependent']:8.4f} {r['simulated_one_run_canaries']:17.4f} "
              f"{r['old_rule_independent']:20.4f} {r['old_rule_one_run_canaries']:19.4f}")
    ok = (all(r["consistent_without_power"] == 0 for r in leaks)
          and all(r["epsilon_bound_gt0"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / r["epsilon_files"]) for r in noise)
          and all(r["simulated_independent"] >= r["stated_combined_confidence"] - 0.002
                  and r["simulated_one_run_canaries"] >= r["stated_combined_confidence"] - 0.004 for r in reruns))
    print_json_line({"benchmark": "bench_verdicts", "commit": git_commit(), "claim": CLAIM, "delta": DELTA,
                     "leak_table": leaks, "noise_table": noise, "rerun_table": reruns,
                     "per_run_confidence": run_confidence(cfg), "checks_pass": ok, "wall_s": round(wall, 1),
                     "leak_table_s": round(t_leak, 1), "gdp_eps_of_mu_1": round(gdp_epsilon(1.0, DELTA), 3)})


if __name__ == "__main__":
    main()
