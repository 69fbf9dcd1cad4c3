"""Wall time and peak memory of the default `dpaudit audit`, phase by phase.

Runs ``dpaudit.audit.run_audit(AuditConfig())`` (the embedded 5,000 digits; non-DP, epsilon 8 and 1 targets
with K = 4 reference models each; loss and shadow attacks) and renders every report format (json, md,
html) into a temporary folder, as `dpaudit audit` does.

    python benchmarks/bench_audit.py                      # the default audit
    python benchmarks/bench_audit.py --canaries 500       # with the one-run canary audit
    python benchmarks/bench_audit.py --quick              # 300 members, 1 epoch: a smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace

from _common import fmt_duration, git_commit, peak_rss, print_json_line, quiet, table, timed

from dpaudit.audit import AuditConfig, run_audit
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
                   help="override the epochs of every model (default: the recipes, non-DP 20, DP 6)")
    p.add_argument("--shadow-models", type=int, default=None, help="override K (default 4)")
    p.add_argument("--jobs", type=int, default=None, help="override worker processes (default 0 = per core)")
    p.add_argument("--n-boot", type=int, default=None, help="override bootstrap resamples (default 1000)")
    p.add_argument("--quick", action="store_true",
                   help="300 members, 500 test records, 1 epoch, 200 bootstrap resamples (flags above still win)")
    args = p.parse_args(argv)

    quiet()
    cfg = build_config(args)
    fmts = FORMATS
    commit = git_commit()
    print(f"bench_audit: commit {commit}, cpus {os.cpu_count()}; config: dataset {cfg.dataset}, members "
          f"{cfg.members}, epsilons {[e for e in cfg.to_dict()['epsilons']]}, K {cfg.shadow_models}, attacks "
          f"{','.join(cfg.attacks)}, canaries {cfg.canaries}, recipes {cfg.to_dict()['recipes']}", flush=True)

    t0 = time.perf_counter()
    report, _extras = run_audit(cfg, progress=False, command="benchmarks/bench_audit.py")
    audit_s = time.perf_counter() - t0
    phases = dict(report["timing_s"])
    render_t, sizes = render_timed(report, fmts)
    wall = time.perf_counter() - t0
    phases.update(render_t)
    phases["other"] = round(wall - sum(phases.values()), 3)  # splits, signal stacking, report assembly
    rss = peak_rss()

    rows = [[k, f"{v:.2f}", f"{100 * v / wall:.1f}%"] for k, v in phases.items()]
    rows.append(["total", f"{wall:.2f}", "100.0%"])
    print("\n" + table(["phase", "seconds", "share"], rows))
    print(f"\nwall {wall:.1f} s ({fmt_duration(wall)}); run_audit {audit_s:.1f} s; rendered "
          f"{', '.join(fmts)} ({len(sizes)} files, {sum(sizes.values()) / 1e6:.2f} MB); peak RSS self "
          f"{rss['self_mb']:.0f} MB, largest child {rss['children_mb']:.0f} MB; workers "
          f"{report['platform']['workers']}")
    acc = {m["name"]: {"test_accuracy": round(m["training"]["test_accuracy"], 4),
                       "epsilon": m["training"]["epsilon"], "wall_s": round(m["training"]["wall_s"], 2),
                       "verdict": m["verdict"]["status"]} for m in report["models"]}
    for name, a in acc.items():
        print(f"  {name:10s} test acc {a['test_accuracy']:.4f}  target loop {a['wall_s']:.1f} s  verdict {a['verdict']}")
    print_json_line({
        "commit": commit,
        "wall_s": round(wall, 3),
        "peak_rss_mb": rss["max_mb"],
        "peak_rss": rss,
        "phases": phases,
        "formats": fmts,
        "workers": report["platform"]["workers"],
        "cpus": os.cpu_count(),
        "models": acc,
        "config": report["config"],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
