"""lira-online's Gaussian centre: the references' mean φ, their median (TF Privacy's choice), and the one dpaudit
chooses on the references (leave-group-out AUC), compared on the TARGET's AUC of a saved audit's signals.

    dpaudit audit --epsilons inf --shadow-models 8 --attacks lira,lira-online --save-signals --out R
    python benchmarks/bench_lira_centre.py R/signals/non-dp.npz

The choice never sees the target's membership; this script does, only to report what each choice would have
scored. The paired difference (median − mean) gets a 95% bootstrap interval over the target's records (the same
resample for both). Ends with ONE JSON line on stdout.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import git_commit, print_json_line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("signals", help="SIGNALS.npz written by dpaudit audit --save-signals")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from dpaudit.attacks.lira import lira_scores, phi_from_logits
    from dpaudit.attacks.metrics import auc
    from dpaudit.core.attack_registry import AttackInput, run_attack
    from dpaudit.core.signals import Signals
    from dpaudit.sources.external import load_signals

    t0 = time.perf_counter()
    sig = load_signals(args.signals)
    mem = sig["membership"]
    truth, ref_in = mem[0], mem[1:]
    inp = AttackInput(pool=Signals(logits=sig["logits"], labels=sig["labels"]), ref_in=ref_in,
                      pool_queries=sig.get("pool_query_logits"), ref_groups=sig["ref_groups"])
    chosen = run_attack("lira-online", inp)
    q = chosen.details["queries"]
    logits = sig["logits"] if q == 1 else sig["pool_query_logits"]
    phi = phi_from_logits(logits.astype(np.float64), sig["labels"] if q == 1 else sig["labels"][:, None])
    scores = {c: lira_scores(phi[0], phi[1:], ref_in, online=True, centre=c) for c in ("mean", "median")}
    aucs = {c: auc(s, truth) for c, s in scores.items()}
    rng = np.random.default_rng(args.seed)
    n = truth.size
    diffs = []
    for _ in range(args.boot):
        i = rng.integers(0, n, n)
        if truth[i].all() or not truth[i].any():
            continue
        diffs.append(auc(scores["median"][i], truth[i]) - auc(scores["mean"][i], truth[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print_json_line({
        "bench": "lira_centre", "commit": git_commit(), "signals": args.signals, "references": int(ref_in.shape[0]),
        "records": int(n), "queries": int(q), "chosen_centre": chosen.details["centre"],
        "auc_chosen": auc(chosen.target, truth), "auc_mean": aucs["mean"], "auc_median": aucs["median"],
        "median_minus_mean": aucs["median"] - aucs["mean"], "median_minus_mean_ci95": [float(lo), float(hi)],
        "boot": len(diffs), "seed": args.seed, "wall_s": round(time.perf_counter() - t0, 2)})


if __name__ == "__main__":
    main()
