"""Wall time and peak memory of the default `dpaudit audit`, phase by phase.

Runs ``dpaudit.pipeline.run_audit(AuditConfig())`` (the embedded 5,000 digits; non-DP, epsilon 8 and 1 targets
with K = 4 reference models each; the default attacks) and renders every report format (json, md,
html) into a temporary folder, as `dpaudit audit` does.

    python benchmarks/bench_audit.py                      # the default audit
    python benchmarks/bench_audit.py --canaries 500       # with the one-run canary audit
    python benchmarks/bench_audit.py --quick              # 300 members, 1 epoch: a smoke run
    python benchmarks/bench_audit.py --gradient-canaries 1000 --rounds 2
        # the extra time white-box gradient canaries add: the same audit without and with them, alternated,
        # the fastest round of each kept (the host is noisy), and their ratio (target <= 1.15)
    python benchmarks/bench_audit.py --grad-sample-mode hooks,fast --rounds 2
        # the same audit with each grad-sample mode, alternated (hooks, fast, fast, hooks, ...): fastest and median
        # wall time of each and the ratio of the fastest (issue 26: the default audit before and after)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

from _common import TreeRSS, fmt_duration, git_commit, peak_rss, print_json_line, quiet, table, timed

from dpaudit.config import GRAD_SAMPLE_MODES
from dpaudit.pipeline import AuditConfig, run_audit
from dpaudit.report import render, write_outputs

FORMATS = ["json", "md", "html"]


def render_timed(report: dict, fmts: list[str]) -> tuple[dict[str, float], dict[str, int]]:
    """Render each format and write all files into a temporary folder, as `dpaudit audit` does.
    Returns ({"report:<fmt>": s, "report:write": s}, {file name: bytes})."""
    render_t: dict[str, float] = {}
    files: dict[str, bytes] = {}
    for f in fmts:
        with timed(render_t, f"report:{f}"):
            files.update(render(report, f))
    with tempfile.TemporaryDirectory(prefix="bench_audit.") as tmp:
        with timed(render_t, "report:write"):
            write_outputs(os.path.join(tmp, "out"), files)
    return {k: round(v, 3) for k, v in render_t.items()}, {n: len(b) for n, b in files.items()}


def run_and_render(cfg: AuditConfig, command: str, pre_phases: dict[str, float] | None = None,
                   **run_kwargs) -> tuple[dict, dict[str, float], float, dict]:
    """run_audit, then every format rendered and written; prints the phase table.
    Returns (report, phases in s, wall s, peak RSS). ``pre_phases`` (e.g. data loading done by the caller)
    count in the wall time."""
    before = dict(pre_phases or {})
    t0 = time.perf_counter()
    with TreeRSS() as tree:
        report, _extras = run_audit(cfg, progress=False, command=command, **run_kwargs)
        audit_s = time.perf_counter() - t0
        phases = before | dict(report["timing_s"])
        render_t, sizes = render_timed(report, FORMATS)
    phases.update(render_t)
    wall = time.perf_counter() - t0 + sum(before.values())
    phases["other"] = round(wall - sum(phases.values()), 3)  # splits, signal stacking, report assembly
    rss = peak_rss() | {"tree_mb": round(tree.peak_mb, 1)}
    rss["max_mb"] = max(rss["max_mb"], rss["tree_mb"])
    rows = [[k, f"{v:.2f}", f"{100 * v / wall:.1f}%"] for k, v in phases.items()]
    rows.append(["total", f"{wall:.2f}", "100.0%"])
    print("\n" + table(["phase", "seconds", "share"], rows))
    print(f"\nwall {wall:.1f} s ({fmt_duration(wall)}); run_audit {audit_s:.1f} s; rendered "
          f"{', '.join(FORMATS)} ({len(sizes)} files, {sum(sizes.values()) / 1e6:.2f} MB); peak RSS self "
          f"{rss['self_mb']:.0f} MB, largest child {rss['children_mb']:.0f} MB, process tree (sampled, summed) "
          f"{rss['tree_mb']:.0f} MB; workers "
          f"{report['platform']['workers']}")
    return report, phases, wall, rss


def audit_figures(commit: str, wall: float, rss: dict, phases: dict, report: dict, models: dict, **extra) -> dict:
    """The JSON line both audit benchmarks end with; ``extra`` adds a benchmark's own fields."""
    return {"commit": commit, "wall_s": round(wall, 3), "peak_rss_mb": rss["max_mb"], "peak_rss": rss,
            "phases": phases, "worker_s": report.get("worker_s"), **extra,
            "workers": report["platform"]["workers"], "cpus": os.cpu_count(), "models": models,
            "config": report["config"]}


def attack_summary(m: dict) -> dict[str, dict]:
    """Per attack on one model: AUC with its interval, TPR at 0.1% and 1% FPR with the counts behind them."""
    out = {}
    for a in m["attacks"]:
        met = a["metrics"]
        counts = met.get("tpr_at_fpr_counts") or {}
        out[a["attack"]] = {"auc": round(met["auc"], 4), "auc_ci": [round(v, 4) for v in met["auc_ci"]],
                            **{f"tpr_at_{lv}": met["tpr_at_fpr"][lv] for lv in ("0.001", "0.01")},
                            **{f"tp_at_{lv}": (counts.get(lv) or {}).get("tp") for lv in ("0.001", "0.01")},
                            "n_members": met["n_members"], "epsilon_lb": a["epsilon_lb"]["value"]}
        r = out[a["attack"]]
        print(f"    {a['attack']:8s} AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]  TPR@0.1%FPR "
              f"{r['tpr_at_0.001']:.4f} ({r['tp_at_0.001']}/{r['n_members']})  TPR@1%FPR {r['tpr_at_0.01']:.4f} "
              f"({r['tp_at_0.01']}/{r['n_members']})  ε lb {r['epsilon_lb']:.2f}")
    return out


def model_summary(report: dict) -> dict[str, dict]:
    """Per model: accuracy, epsilon spent, the target's training-loop time, lower bounds, verdict and attacks."""
    out = {}
    for m in report["models"]:
        c = m.get("canary") or {}
        out[m["name"]] = {"test_accuracy": round(m["training"]["test_accuracy"], 4),
                          "epsilon": m["training"]["epsilon"], "wall_s": round(m["training"]["wall_s"], 2),
                          "empirical_epsilon_lb": m["verdict"].get("empirical_epsilon_lb"),
                          "canary_epsilon_lb": c.get("epsilon_lb"), "verdict": m["verdict"]["status"]}
        print(f"  {m['name']:10s} test acc {out[m['name']]['test_accuracy']:.4f}  target loop "
              f"{out[m['name']]['wall_s']:.1f} s  verdict {m['verdict']['status']}")
        out[m["name"]]["attacks"] = attack_summary(m)
    return out


def build_config(args) -> AuditConfig:
    cfg = AuditConfig()
    changes = {"canaries": args.canaries}
    if args.quick:
        changes.update(members=300, n_test=500, epochs=1, n_boot=200)
    for field in ("members", "epochs", "shadow_models", "jobs", "n_boot"):
        v = getattr(args, field)
        if v is not None:
            changes[field] = v
    return replace(cfg, **changes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--canaries", type=int, default=0, help="canaries m for the one-run audit (0 = off)")
    p.add_argument("--members", type=int, default=None, help="override AuditConfig.members (default 1750)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the epochs of every model (default: the recipes, non-DP 20, DP 12)")
    p.add_argument("--shadow-models", type=int, default=None, help="override K (default 4)")
    p.add_argument("--jobs", type=int, default=None, help="override worker processes (default 0 = per core)")
    p.add_argument("--n-boot", type=int, default=None, help="override bootstrap resamples (default 1000)")
    p.add_argument("--gradient-canaries", type=int, default=0,
                   help="compare the audit without and with this many white-box gradient canaries (0 = off)")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --gradient-canaries or several --grad-sample-mode: rounds of the comparison")
    p.add_argument("--grad-sample-mode", default=None,
                   help=f"grad-sample mode of the DP targets and references ({', '.join(GRAD_SAMPLE_MODES)}; default: "
                        f"AuditConfig's, {AuditConfig().grad_sample_mode}); a comma list, e.g. hooks,fast, runs the "
                        f"same audit once per mode in each of --rounds rounds, alternating the order")
    p.add_argument("--quick", action="store_true",
                   help="300 members, 500 test records, 1 epoch, 200 bootstrap resamples (flags above still win)")
    args = p.parse_args(argv)

    quiet()
    cfg = build_config(args)
    commit = git_commit()
    print(f"bench_audit: commit {commit}, cpus {os.cpu_count()}; config: dataset {cfg.dataset}, members "
          f"{cfg.members}, epsilons {[e for e in cfg.to_dict()['epsilons']]}, K {cfg.shadow_models}, attacks "
          f"{','.join(cfg.attacks)}, canaries {cfg.canaries}, recipes {cfg.to_dict()['recipes']}", flush=True)

    modes = [m.strip() for m in (args.grad_sample_mode or "").split(",") if m.strip()]
    bad = [m for m in modes if m not in GRAD_SAMPLE_MODES]
    if bad:
        p.error(f"--grad-sample-mode: unknown {', '.join(bad)}; choose from {', '.join(GRAD_SAMPLE_MODES)}")
    if len(modes) == 1:
        cfg = replace(cfg, grad_sample_mode=modes[0])
    if args.gradient_canaries:
        return overhead(cfg, args.gradient_canaries, args.rounds, commit)
    if len(modes) > 1:
        return compare_modes(cfg, modes, args.rounds, commit)
    report, phases, wall, rss = run_and_render(cfg, "benchmarks/bench_audit.py")
    acc = model_summary(report)
    print_json_line(audit_figures(commit, wall, rss, phases, report, acc, formats=FORMATS))
    return 0


def overhead(cfg: AuditConfig, m: int, rounds: int, commit: str) -> int:
    """Wall time of the same audit without and with ``m`` gradient canaries, in one run; alternated order
    (off, on, on, off, ...) so that drift in the host's load hits both alike; the fastest round of each kept."""
    walls: dict[str, list[float]] = {"off": [], "on": []}
    whitebox = {}
    for r in range(rounds):
        for kind in (("off", "on") if r % 2 == 0 else ("on", "off")):
            c = replace(cfg, gradient_canaries=m if kind == "on" else 0)
            report, _, wall, _ = run_and_render(c, f"benchmarks/bench_audit.py --gradient-canaries {m}")
            walls[kind].append(wall)
            if kind == "on":
                whitebox = {x["name"]: {k: x["whitebox"][k] for k in ("conformant", "failed", "epsilon_lb",
                                                                      "empirical_epsilon", "sigma_hat", "q_hat")}
                            for x in report["models"] if x.get("whitebox")}
    off, on = min(walls["off"]), min(walls["on"])
    print(f"\ngradient canaries {m}: audit {off:.1f} s without, {on:.1f} s with (fastest of {rounds}); "
          f"ratio {on / off:.3f} (target <= 1.15)")
    print_json_line({"commit": commit, "gradient_canaries": m, "rounds": rounds, "wall_s_without": walls["off"],
                     "wall_s_with": walls["on"], "ratio_fastest": round(on / off, 4), "kept": "fastest",
                     "whitebox": whitebox, "cpus": os.cpu_count()})
    return 0


def compare_modes(cfg: AuditConfig, modes: list[str], rounds: int, commit: str) -> int:
    """Wall time of the same audit with each grad-sample mode, in one run: the order alternates from round to
    round (a b, b a, ...) so that drift in the host's load hits every mode alike. Keeps every run's wall and
    training time; reports the fastest and the median of each mode, and each mode's fastest against the first's."""
    walls: dict[str, list[float]] = {m: [] for m in modes}
    train: dict[str, list[float]] = {m: [] for m in modes}
    verdicts: dict[str, dict] = {}
    for r in range(rounds):
        for m in (modes if r % 2 == 0 else modes[::-1]):
            report, phases, wall, _ = run_and_render(replace(cfg, grad_sample_mode=m),
                                                     f"benchmarks/bench_audit.py --grad-sample-mode {m}")
            walls[m].append(round(wall, 3))
            train[m].append(round(phases.get("train", float("nan")), 3))
            verdicts[m] = {x["name"]: x["verdict"]["status"] for x in report["models"]}
            print(f"round {r + 1}: {m} wall {wall:.1f} s, train {train[m][-1]:.1f} s", flush=True)
    base = modes[0]
    summary = {m: {"wall_s_fastest": min(walls[m]), "wall_s_median": round(statistics.median(walls[m]), 3),
                   "train_s_fastest": min(train[m]), "train_s_median": round(statistics.median(train[m]), 3),
                   "ratio_fastest": round(min(walls[m]) / min(walls[base]), 4),
                   "train_ratio_fastest": round(min(train[m]) / min(train[base]), 4)} for m in modes}
    print("\n" + table(["mode", "wall fastest s", "wall median s", "train fastest s", "train median s",
                         f"wall vs {base}", f"train vs {base}"],
                        [[m, f"{v['wall_s_fastest']:.1f}", f"{v['wall_s_median']:.1f}", f"{v['train_s_fastest']:.1f}",
                          f"{v['train_s_median']:.1f}", f"{v['ratio_fastest']:.3f}", f"{v['train_ratio_fastest']:.3f}"]
                         for m, v in summary.items()]))
    print(f"({rounds} round(s), order alternating; ratios of the fastest runs)")
    print_json_line({"commit": commit, "grad_sample_modes": modes, "rounds": rounds, "kept": "fastest and median",
                     "wall_s": walls, "train_s": train, "summary": summary, "verdicts": verdicts,
                     "cpus": os.cpu_count(), "config": {k: v for k, v in cfg.to_dict().items()
                                                        if k != "grad_sample_mode"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
