"""Wall time of the same audit on the local process pool and on Ray, on this machine, in one run.

The default audit (embedded 5,000 digits; non-DP, epsilon 8 and 1 targets) with K = 16 reference models per
epsilon (51 models), run first with ``--executor local`` and then with ``--executor ray`` (a local Ray started
for the run and shut down after it, as `dpaudit audit --executor ray` does without ``--ray-address``; its
start-up counts in Ray's time). The dataset is loaded once, before both. Prints both wall times, their ratio,
and whether the two reports give the same numbers (they must: training is deterministic given the seed).
``--rounds N`` measures each executor N times in the order local, ray, ray, local, ... and keeps the fastest:
on a shared machine, load that comes and goes then favours neither.

    python benchmarks/bench_executors.py              # K = 16, the default recipes (long: ~6-7 min per executor on 2 idle cores)
    python benchmarks/bench_executors.py --quick      # K = 4, 300 members, 1 epoch: a check in a few minutes
    python benchmarks/bench_executors.py --quick --rounds 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from _common import fmt_duration, git_commit, print_json_line, quiet, table

from dpaudit.pipeline import AuditConfig, default_workers, run_audit
from dpaudit.training.data import load_dataset
from dpaudit.training.executors import get_executor

TIMING_FIELDS = {"wall_s", "accounting_s"}


def report_numbers(report: dict) -> list:
    """Everything in the report that must not depend on the executor (timings and cache counts aside)."""
    return [{"training": {k: v for k, v in m["training"].items() if k not in TIMING_FIELDS},
             "reference_accuracy": m["reference_models"]["test_accuracy"], "attacks": m["attacks"],
             "canary": m["canary"], "verdict": m["verdict"]} for m in report["models"]]


def build_config(args) -> AuditConfig:
    changes: dict = {"shadow_models": args.shadow_models if args.shadow_models is not None else (4 if args.quick else 16)}
    if args.quick:
        changes.update(members=300, n_test=500, epochs=1, n_boot=200)
    for field in ("members", "epochs", "jobs"):
        v = getattr(args, field)
        if v is not None:
            changes[field] = v
    return replace(AuditConfig(), **changes)


def timed_audit(cfg: AuditConfig, dataset, executor) -> tuple[dict, float]:
    t = time.perf_counter()
    report, _extras = run_audit(cfg, progress=False, dataset=dataset, executor=executor, command="bench_executors")
    return report, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shadow-models", type=int, default=None, help="K per epsilon (default 16; 4 with --quick)")
    p.add_argument("--members", type=int, default=None, help="override AuditConfig.members (default 1750)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    p.add_argument("--jobs", type=int, default=None, help="models trained side by side (default 0 = per core)")
    p.add_argument("--ray-address", default=None,
                   help="measure on this Ray cluster instead of a local Ray (RAY_ADDRESS is ignored here)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each executor N times, in the order local, ray, ray, local, ...; keep the fastest")
    p.add_argument("--quick", action="store_true", help="K = 4, 300 members, 500 test records, 1 epoch")
    args = p.parse_args(argv)

    quiet()
    cfg = build_config(args)
    commit = git_commit()
    n_models = len(cfg.epsilons) * (1 + cfg.shadow_models)
    print(f"bench_executors: commit {commit}, cpus {os.cpu_count()}; dataset {cfg.dataset}, members {cfg.members}, "
          f"epsilons {cfg.to_dict()['epsilons']}, K {cfg.shadow_models} ({n_models} models), recipes "
          f"{cfg.to_dict()['recipes']}", flush=True)
    dataset = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    if args.ray_address is None:
        os.environ.pop("RAY_ADDRESS", None)  # a Ray started on this machine, like the local pool
    workers = default_workers(cfg)

    runs: dict[str, dict] = {}
    plan = ["local", "ray"]
    for rnd in range(1, args.rounds):  # ABBA...: a machine that speeds up or slows down favours neither
        plan += ["ray", "local"] if rnd % 2 else ["local", "ray"]
    for name in plan:
        options = {"address": args.ray_address} if name == "ray" else {}
        executor = get_executor(name, workers=workers, device=cfg.device, **options)
        print(f"\n{name}: {n_models} models, {workers} side by side ...", flush=True)
        report, wall = timed_audit(cfg, dataset, executor)
        print(f"{name}: wall {wall:.1f} s ({fmt_duration(wall)}), training phase {report['timing_s']['train']:.1f} s",
              flush=True)
        r = runs.setdefault(name, {"walls_s": [], "numbers": report_numbers(report)})
        wall = round(wall, 3)
        r["walls_s"].append(wall)
        r["same"] = r.get("same", True) and report_numbers(report) == r["numbers"]
        if wall <= min(r["walls_s"]):  # figures of the fastest round, the least disturbed by other load
            r.update(wall_s=wall, train_s=report["timing_s"]["train"], **getattr(executor, "timing", {}))

    local, ray_ = runs["local"], runs["ray"]
    ratio = ray_["wall_s"] / local["wall_s"]
    same = local.pop("numbers") == ray_.pop("numbers") and local.pop("same") and ray_.pop("same")
    rows = [[name, f"{r['wall_s']:.1f}", f"{r['train_s']:.1f}", f"{r['wall_s'] / local['wall_s']:.3f}",
             " ".join(f"{w:.1f}" for w in r["walls_s"])] for name, r in runs.items()]
    print("\n" + table(["executor", "wall s (best)", "train s", "vs local", "every round"], rows))
    if "connect_s" in ray_:
        print(f"ray start-up (ray.init) {ray_['connect_s']:.1f} s, dataset into the object store "
              f"{ray_.get('put_s', 0.0):.2f} s, both inside Ray's wall time")
    print(f"ray / local wall time: {ratio:.3f}; same report numbers: {same}")

    import ray

    print_json_line({"commit": commit, "local_wall_s": local["wall_s"], "ray_wall_s": ray_["wall_s"],
                     "local_walls_s": local["walls_s"], "ray_walls_s": ray_["walls_s"],
                     "ray_over_local": round(ratio, 4), "local_train_s": local["train_s"],
                     "ray_train_s": ray_["train_s"], "ray_connect_s": round(ray_.get("connect_s", 0.0), 3),
                     "ray_put_s": round(ray_.get("put_s", 0.0), 3), "same_numbers": same, "models": n_models,
                     "workers": workers, "cpus": os.cpu_count(), "ray": ray.__version__,
                     "ray_address": args.ray_address, "quick": args.quick, "config": cfg.to_dict()})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
