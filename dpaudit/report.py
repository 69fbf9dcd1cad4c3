"""The report: one versioned JSON document, and renderers that read only that document."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DPAuditError
from .io import default_mode, dumps

SCHEMA = "dpaudit.report/1"


def load_report(path: str | Path) -> dict:
    """Read and sanity-check a report.json; a foreign or broken file gets a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"report {path} not found; run `dpaudit audit --out DIR` to make DIR/report.json")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DPAuditError(f"{path} is not readable JSON ({exc.__class__.__name__}); re-run the audit") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise DPAuditError(f"{path} is not a dpaudit report (schema {found!r}, expected {SCHEMA!r})")
    if not isinstance(report.get("models"), list):
        raise DPAuditError(f"{path} has no models list; it is truncated or hand-edited")
    return report


def num(x) -> float:
    """JSON stores inf as the string 'inf'."""
    if isinstance(x, str):
        return float(x)
    return float("nan") if x is None else float(x)


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    x = num(x)
    if math.isinf(x):
        return "∞"
    return f"{x:.{digits}f}"


def fmt_ci(ci, digits: int = 3) -> str:
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def summary_rows(report: dict) -> list[dict]:
    """One row per (model, attack), the columns every renderer shows."""
    rows = []
    for m in report["models"]:
        tr = m["training"]
        for a in m["attacks"]:
            met = a["metrics"]
            rows.append({
                "model": m["name"],
                "epsilon": tr["epsilon"] if m["dp"] else math.inf,
                "delta": tr["delta"],
                "test_accuracy": tr["test_accuracy"],
                "attack": a["attack"],
                "auc": met["auc"], "auc_ci": met["auc_ci"],
                "balanced_accuracy": met["balanced_accuracy"], "balanced_accuracy_ci": met["balanced_accuracy_ci"],
                "advantage": met["advantage"], "advantage_ci": met["advantage_ci"],
                "tpr_at_1pct_fpr": met["tpr_at_fpr"]["0.01"],
                "epsilon_lb": a["epsilon_lb"]["value"],
                "max_balanced_accuracy": m["bounds"]["max_balanced_accuracy"],
                "max_advantage": m["bounds"]["max_advantage"],
                "verdict": m["verdict"]["status"],
            })
    return rows


def verdict_rows(report: dict) -> list[dict]:
    out = []
    for m in report["models"]:
        v = m["verdict"]
        out.append({"model": m["name"], "claimed": v["claimed_epsilon"], "empirical": v["empirical_epsilon_lb"],
                    "source": v["source"], "ratio": v["ratio"], "status": v["status"], "text": v["text"]})
    return out


def confidence_note(report: dict) -> str:
    """How the verdicts' ε lower bounds hold, in one sentence, from the report alone."""
    conf = report["config"].get("confidence", 0.95)
    v = report["models"][0]["verdict"] if report["models"] else {}
    head = f"{conf:.0%} confidence"
    if "per_bound_confidence" in v:
        head += (f"; each of {v['n_bounds']} bounds at {v['per_bound_confidence']:.2%}, Bonferroni-corrected, so the "
                 f"best of them holds at {conf:.0%}")
    return head


INDEPENDENCE_CAVEAT = ("Attack bounds apply Clopper-Pearson to the target's records as if they were independent trials, "
                       "which one training run does not strictly guarantee; the canary bound (Steinke, Nasr & "
                       "Jagielski 2023) is proved for one run.")


def overall_verdict(report: dict) -> str:
    st = [m["verdict"]["status"] for m in report["models"]]
    if "violation" in st:
        return "VIOLATION"
    return "consistent" if "consistent" in st else "no DP claim"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


SUMMARY_HEADERS = ["model", "ε spent", "δ", "test acc", "attack", "AUC [95% CI]", "bal. acc", "advantage [95% CI]",
                   "TPR@1%FPR", "ε lower bound", "max acc ε allows", "max adv ε allows"]


def _summary_cells(r: dict) -> list[str]:
    return [r["model"], fmt(r["epsilon"], 2), f"{num(r['delta']):g}" if r["delta"] else "—", fmt(r["test_accuracy"]),
            r["attack"], f"{fmt(r['auc'])} {fmt_ci(r['auc_ci'])}", fmt(r["balanced_accuracy"]),
            f"{fmt(r['advantage'])} {fmt_ci(r['advantage_ci'])}", fmt(r["tpr_at_1pct_fpr"]), fmt(r["epsilon_lb"], 2),
            fmt(r["max_balanced_accuracy"]), fmt(r["max_advantage"])]


def _verdict_cells(v: dict) -> list[str]:
    return [v["model"], fmt(v["claimed"], 3), fmt(v["empirical"], 3), v["source"], fmt(v["ratio"], 2),
            "**" + v["text"] + "**" if v["status"] == "violation" else v["text"]]


VERDICT_HEADERS = ["model", "ε claimed (accountant)", "ε lower bound (best)", "from", "ratio", "verdict"]


def text_summary(report: dict) -> str:
    """The table `dpaudit audit` prints at the end: plain columns that read in any terminal."""
    def cols(headers, rows):
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
        return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])

    s = cols(SUMMARY_HEADERS, [_summary_cells(r) for r in summary_rows(report)])
    v = cols(VERDICT_HEADERS, [[c.replace("**", "") for c in _verdict_cells(r)] for r in verdict_rows(report)])
    return f"{s}\n\nPrivacy verdicts ({confidence_note(report)}):\n{v}\n\nOverall: {overall_verdict(report)}"


def _reading(report: dict) -> list[str]:
    """A plain-language reading of the numbers, derived from them."""
    lines = []
    for m in report["models"]:
        best = max(m["attacks"], key=lambda a: a["metrics"]["auc"], default=None)
        if best is None:
            continue
        met = best["metrics"]
        lo, hi = met["auc_ci"]
        beats = "beats chance" if lo > 0.5 else "is not distinguishable from chance"
        acc = m["training"]["test_accuracy"]
        if m["dp"]:
            lines.append(
                f"- **{m['name']}** (ε = {fmt(m['training']['epsilon'], 2)}, test accuracy {acc:.1%}): the strongest "
                f"attack ({best['attack']}) reaches AUC {met['auc']:.3f} [{lo:.3f}, {hi:.3f}] and {beats}. Its "
                f"advantage {met['advantage']:.3f} sits under the {m['bounds']['max_advantage']:.3f} that ε allows; "
                f"the empirical lower bound on ε is {m['verdict']['empirical_epsilon_lb']:.2f} "
                f"({m['verdict']['text']}).")
        else:
            lines.append(
                f"- **{m['name']}** (no DP, test accuracy {acc:.1%}): the strongest attack ({best['attack']}) reaches "
                f"AUC {met['auc']:.3f} [{lo:.3f}, {hi:.3f}] and {beats}; the data support ε ≥ "
                f"{m['verdict']['empirical_epsilon_lb']:.2f} ({m['verdict']['source']}), and nothing bounds what a "
                f"stronger attack could learn.")
    lines.append("- An attack that fails does not prove privacy; an ε lower bound above the claimed ε disproves it.")
    return lines


def render_markdown(report: dict, figures: list[str] | None = None) -> str:
    cfg, ds, sp = report["config"], report["dataset"], report["split"]
    overall = overall_verdict(report)
    banner = ("> **VIOLATION**: at least one model leaks more than its ε allows." if overall == "VIOLATION" else
              "> **Consistent**: no attack proved more leakage than the claimed ε allows." if overall == "consistent"
              else "> No DP model in this audit: nothing to check against a guarantee.")
    parts = [
        "# dpaudit report", "",
        banner, "",
        f"Dataset **{ds['name']}** ({ds['n_records']} records; {sp['members']} members and "
        f"{sp['pool_size'] - sp['members']} non-members per model, {sp['n_test']} test records, "
        f"{sp['n_models'] - 1} reference models); seed {sp['seed']}; created {report['created_utc']}.", "",
        "## Privacy verdicts", "",
        _table(VERDICT_HEADERS, [_verdict_cells(v) for v in verdict_rows(report)]), "",
        f"ε lower bounds: {confidence_note(report)}. {INDEPENDENCE_CAVEAT}", "",
        "## Summary", "",
        _table(SUMMARY_HEADERS, [_summary_cells(r) for r in summary_rows(report)]), "",
        "Intervals are 95% bootstrap intervals over the target's members and non-members "
        f"({cfg['n_boot']} resamples). Balanced accuracy and advantage are at a threshold fixed in advance.", "",
        "## Reading", "", *_reading(report), "",
    ]
    canaries = [m for m in report["models"] if m.get("canary")]
    if canaries:
        parts += ["## Canary audit (one training run)", "",
                  _table(["model", "canaries m", "in target", "guesses r", "correct v", "k+", "ε lower bound",
                          "correction", "test acc with / without canaries"],
                         [[m["name"], str(c["m"]), str(c["included"]), str(c["r"]), str(c["v"]), str(c["k_plus"]),
                           fmt(c["epsilon_lb"], 3), c["correction"],
                           f"{fmt(c['test_accuracy_with_canaries'])} / {fmt(c['test_accuracy_without_canaries'])}"]
                          for m in canaries for c in [m["canary"]]]), "",
                  "Canaries are real images with a wrong label, each included in the target's training set with "
                  "probability 1/2 (Steinke, Nasr & Jagielski 2023). Accuracy without canaries is the mean of the "
                  "reference models, which train the same recipe without them.", ""]
    parts += ["## Training", "",
              _table(["model", "ε per epoch", "σ", "q", "steps", "clip C", "accountant", "dp_accounting check",
                      "train acc", "test acc", "wall s"],
                     [[m["name"], ", ".join(f"{e:.2f}" for e in m["training"]["epsilon_per_epoch"]) or "—",
                       fmt(m["training"]["noise_multiplier"], 4), fmt(m["training"]["sample_rate"], 5),
                       str(m["training"]["steps"]), fmt(m["training"]["max_grad_norm"], 2),
                       m["training"]["accountant"] or "—",
                       ("—" if not m.get("accountant_check") else
                        f"{'FLAG ' if m['accountant_check']['flagged'] else ''}PLD {fmt(m['accountant_check']['dp_accounting_pld'], 3)}, "
                        f"RDP {fmt(m['accountant_check']['dp_accounting_rdp'], 3)}"),
                       fmt(m["training"]["train_accuracy"]), fmt(m["training"]["test_accuracy"]),
                       fmt(m["training"]["wall_s"], 1)] for m in report["models"]]), ""]
    parts += ["## How thresholds were chosen", "", report["threshold_policy"], ""]
    for m in report["models"]:
        for a in m["attacks"]:
            parts.append(f"- {m['name']} / {a['attack']}: {a['description']}. Threshold "
                         f"{a['metrics']['threshold']:.4g} ({a['metrics']['threshold_source']}); ε lower bound: "
                         f"{a['epsilon_lb']['threshold_selection']}.")
    parts.append("")
    if figures:
        parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    parts += ["## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", "",
              f"Command: `{report.get('command') or 'Python API'}`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(parts)


def render(report: dict, fmt_name: str) -> dict[str, bytes]:
    """All files of one format: {file name: bytes}."""
    from .plots import all_figures

    if fmt_name == "md":
        figs = all_figures(report)
        return {"report.md": render_markdown(report, list(figs)).encode(), **figs}
    if fmt_name == "html":
        from .html import render_html

        return {"report.html": render_html(report).encode()}
    if fmt_name == "json":
        return {"report.json": (dumps(report) + "\n").encode()}
    raise DPAuditError(f"unknown report format {fmt_name!r}; choose md, html or json")


def scores_csv(record_idx, is_member, scores) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["record_index", "is_member", "score"])
    for i, m, s in zip(record_idx, is_member, scores):
        w.writerow([int(i), int(bool(m)), repr(float(s))])
    return buf.getvalue().encode()


def write_outputs(out: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Stage every file in a sibling temp folder, then move them into place by atomic renames.

    A new output folder appears only once it is complete. Into an existing folder (which may hold the
    user's own files, so it is never swapped out whole) each file is replaced atomically, report.json
    last: a reader never sees a half-written file, and a report.json never refers to renderings that
    are not yet on disk."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        stage.chmod(default_mode(directory=True))
        for name, data in files.items():
            p = stage / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if not out.exists():
            os.replace(stage, out)
            return [out / n for n in files]
        for name in sorted(files, key=lambda n: n == "report.json"):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, out / name)
        return [out / n for n in files]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
