"""The report: load it, and render it as Markdown, terminal text, CSV scores and files on disk.

Every renderer takes the typed :class:`~dpaudit.schema.Report`; a dict is converted once by ``as_report``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from dpaudit.errors import DPAuditError
from dpaudit.io import default_mode, dumps
from dpaudit.report import wording
from dpaudit.report.html import render_html
from dpaudit.report.wording import INDEPENDENCE_CAVEAT, fmt, fmt_ci, fmt_g, plain
from dpaudit.schema import SCHEMA, Report, WhiteBoxAudit, as_report

__all__ = ["SCHEMA", "Report", "as_report", "confidence_note", "fmt", "fmt_ci", "load_report", "overall_verdict",
           "render", "render_html", "render_markdown", "scores_csv", "summary_rows", "text_summary", "verdict_rows",
           "write_outputs"]

def load_report(path: str | Path) -> Report:
    """Read and validate a report.json; a missing, broken or foreign file gets a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        raise DPAuditError(f"report {path} is a folder; give the report.json inside it")
    if not path.is_file():
        raise DPAuditError(f"report {path} not found; run `dpaudit audit --out DIR` to make DIR/report.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DPAuditError(f"{path} is not readable JSON ({exc.__class__.__name__}); re-run the audit") from None
    if not isinstance(doc, dict) or "schema" not in doc or not str(doc["schema"]).startswith("dpaudit.report/"):
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise DPAuditError(f"{path} is not a dpaudit report (schema {found!r}, expected {SCHEMA!r})")
    try:
        return Report.from_json(doc)
    except DPAuditError as exc:
        raise DPAuditError(f"{path}: {exc}") from None


# Renderers take a Report; a dict (what run_audit returns, or parsed JSON) is converted once, here.

def summary_rows(report: Report | dict) -> list[dict]:
    return wording.summary_rows(as_report(report))


def verdict_rows(report: Report | dict) -> list[dict]:
    return wording.verdict_rows(as_report(report))


def confidence_note(report: Report | dict) -> str:
    return wording.confidence_note(as_report(report))


def overall_verdict(report: Report | dict) -> str:
    return wording.overall_verdict(as_report(report))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(c: str) -> str:
        return c.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


SUMMARY_HEADERS = ["model", "ε spent", "δ", "test acc", "attack", "AUC [CI]", "bal. acc", "advantage [CI]",
                   *(h for _, h in wording.TPR_SHOWN), "ε lower bound", "ε ceiling", "max acc ε allows",
                   "max adv ε allows"]


def _summary_cells(r: dict) -> list[str]:
    return [r["model"], fmt(r["epsilon"], 2), fmt_g(r["delta"]) if r["delta"] else "—", fmt(r["test_accuracy"]),
            r["attack"], f"{fmt(r['auc'])} {fmt_ci(r['auc_ci'])}", fmt(r["balanced_accuracy"]),
            f"{fmt(r['advantage'])} {fmt_ci(r['advantage_ci'])}", *r["tpr_cells"], fmt(r["epsilon_lb"], 2),
            fmt(r["ceiling"], 2), fmt(r["max_balanced_accuracy"]), fmt(r["max_advantage"])]


FIRST_HEADERS = ["model", "verdict", "ε claimed", "best ε lower bound (route)", "ε this audit detects (80% power)",
                 "what would decide"]


def _first_cells(r: dict) -> list[str]:
    return [r["model"], r["status"], fmt(r["claimed"], 2), r["bound"], r["detectable"], r["step"]]


VERDICT_HEADERS = ["model", "ε claimed (accountant)", "ε lower bound (best)", "detectable ε (80%)", "ε ceiling", "from",
                   "ratio", "verdict"]


def _verdict_cells(v: dict) -> list[str]:
    loud = v["status"] in ("violation", "nonconformant", "inconclusive") and "**" not in v["text"]
    return [v["model"], fmt(v["claimed"], 3), fmt(v["empirical"], 3), fmt(v["detectable"], 2), fmt(v["ceiling"], 2),
            v["source"], fmt(v["ratio"], 2), f"**{v['text']}**" if loud else v["text"]]


def text_summary(report: Report | dict) -> str:
    """What `dpaudit audit` prints at the end: plain columns that read in any terminal, the verdicts and the
    reading of the numbers."""
    report = as_report(report)

    def cols(headers, rows):
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

        def line(cells):
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths))

        return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])

    first = cols(FIRST_HEADERS, [_first_cells(r) for r in wording.first_screen_rows(report)])
    s = cols(SUMMARY_HEADERS, [_summary_cells(r) for r in wording.summary_rows(report)])
    v = cols(VERDICT_HEADERS, [[plain(c) for c in _verdict_cells(r)] for r in wording.verdict_rows(report)])
    read = "\n".join(plain(line) for line in wording.reading(report))
    return (f"{s}\n\nPrivacy verdicts ({wording.confidence_note(report)}):\n{v}\n\nReading:\n{read}\n\n"
            f"{first}\n{wording.combined_confidence_note(report)}\n\nOverall: {plain(wording.banner(report))}")


def render_markdown(report: Report | dict, figures: list[str] | None = None) -> str:
    report = as_report(report)
    cfg, ds, sp = report.config, report.dataset, report.split
    parts = [
        "# dpaudit report", "",
        "> " + wording.banner(report), "",
        _table(FIRST_HEADERS, [_first_cells(r) for r in wording.first_screen_rows(report)]), "",
        f"{wording.combined_confidence_note(report)} {wording.power_note(report)}", "",
        (f"Dataset **{ds.name}** ({ds.n_records} records"
         f"{f' of {ds.n_features} features: {ds.preprocessing}' if ds.n_features is not None else ''}; "
         f"{sp.members} members and "
        f"{sp.pool_size - sp.members} non-members per model, {sp.n_test} test records, "
        f"{sp.n_models - 1} reference models); seed {sp.seed}; created {report.created_utc}."), "",
        "## Privacy verdicts", "",
        _table(VERDICT_HEADERS, [_verdict_cells(v) for v in wording.verdict_rows(report)]), "",
        (f"ε lower bounds: {wording.confidence_note(report)}. The ε ceiling is the largest lower bound a perfect "
        "attack could reach with this audit's records and confidence (— where not computed): a number, not a "
        f"promise; the verdict rests on the detectable ε. {INDEPENDENCE_CAVEAT}"),
        "",
        "## Reading", "", *wording.reading(report), "",
        "## Attack metrics", "",
        _table(SUMMARY_HEADERS, [_summary_cells(r) for r in wording.summary_rows(report)]), "",
        (f"{wording.interval_note(report)} Balanced accuracy and advantage are at a threshold fixed in advance. "
        "TPR at a fixed FPR shows (members found / members) where the attack recorded the counts."), "",
    ]
    canaries = [m for m in report.models if m.canary is not None]
    if canaries:
        parts += ["## Canary audit (one training run)", "",
                  _table(["model", "canaries m", "in target", "guesses r", "correct v", "k+ / k−", "ε lower bound",
                          "ε ceiling", "detectable ε", "correction", "test acc with / without canaries"],
                         [[m.name, str(c.m), str(c.included), str(c.r), str(c.v), f"{c.k_plus} / {c.k_minus}",
                           fmt(c.epsilon_lb, 3), fmt(c.ceiling, 2), fmt(c.detectable_epsilon, 2), c.correction,
                           f"{fmt(c.test_accuracy_with_canaries)} / {fmt(c.test_accuracy_without_canaries)}"]
                          for m in canaries for c in [m.canary]]), "",
                  ("Canaries are real images with a wrong label, each included in the target's training set with "
                   "probability 1/2 (Steinke, Nasr & Jagielski 2023). Guesses are balanced (k in, k out), which keeps "
                   "the bound valid at the observed member share. Accuracy without canaries: "
                   f"{canaries[0].canary.without_canaries_from}."), ""]
    for m in report.models:
        if m.whitebox:
            parts += [f"## White-box canaries: {m.name}", "", *whitebox_markdown(m.whitebox, figures or []), ""]
    parts += ["## Training", "",
              _table(["model", "ε per epoch", "σ", "q", "steps", "clip C", "accountant", "dp_accounting check",
                      "train acc", "test acc", "wall s"],
                     [[m.name, ", ".join(f"{e:.2f}" for e in m.training.epsilon_per_epoch) or "—",
                       fmt(m.training.noise_multiplier, 4), fmt(m.training.sample_rate, 5),
                       "—" if m.training.steps is None else str(m.training.steps), fmt(m.training.max_grad_norm, 2), m.training.accountant or "—",
                       _accountant_cell(m), fmt(m.training.train_accuracy), fmt(m.training.test_accuracy),
                       fmt(m.training.wall_s, 1)] for m in report.models]), ""]
    parts += ["## How thresholds were chosen", "", report.threshold_policy, ""]
    for m in report.models:
        for a in m.attacks:
            parts.append(f"- {m.name} / {a.attack}: {a.description}. Threshold "
                         f"{a.metrics.threshold:.4g} ({a.metrics.threshold_source}); ε lower bound: "
                         f"{a.epsilon_lb.threshold_selection}.")
    parts.append("")
    if figures:
        parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    cfg_json = report.to_json()["config"]
    parts += ["## Configuration", "", "```json", json.dumps(cfg_json, indent=2), "```", "",
              f"Command: `{report.command or 'Python API'}`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()), ""]
    del cfg
    return "\n".join(parts)


def _accountant_cell(m) -> str:
    ac = m.accountant_check
    if ac is None and not m.training.observed:
        return "not observed (skipped)"
    if ac is None:
        return "—"
    return (f"{'FLAG ' if ac.flagged else ''}PLD {fmt(ac.dp_accounting_pld, 3)}, "
            f"RDP {fmt(ac.dp_accounting_rdp, 3)}")


def whitebox_markdown(w: WhiteBoxAudit, figures) -> list[str]:
    """The white-box section: the conclusion, the conformance tests with p-values, bounds and estimates."""
    from dpaudit.report.plots import FIGURES

    failed = [t.name for t in w.failed_tests()]
    # each rejection in words a user understands ("the noise is not Gaussian"), where the test states them
    broken = [t.broken or t.name for t in w.failed_tests()]
    head = ("**Conformant**: every test accepts that the training did what its accountant was told."
            if not failed else
            f"**Nonconformant**: {', '.join(failed)} rejected ({'; '.join(broken)}); the training did not do what its "
            f"accountant assumes.")
    lines = [head, "",
             f"{w.m} canaries ({w.included} included by fair coins), observed over {w.steps} noisy steps; "
             f"tests Bonferroni-corrected over {len(w.tests)} at confidence {w.confidence:.4g}.", "",
             _table(["test", "what", "statistic", "p-value", "result"],
                    [[t.name, t.what, fmt(t.statistic, 4), f"{t.p_value:.3g}",
                      "pass" if t.passed else "**REJECTED**"] for t in w.tests]), "",
             _table(["", "claimed", "observed", "interval"],
                    [["σ (noise multiplier)", fmt(w.claimed_sigma, 4), fmt(w.sigma_hat, 4), fmt_ci(w.sigma_ci, 4)],
                     ["q (sampling rate)", fmt(w.claimed_q, 5), fmt(w.q_hat, 5), fmt_ci(w.q_ci, 5)],
                     ["ε (accountant on σ̂, q̂)", fmt(w.claimed_epsilon, 3), fmt(w.empirical_epsilon, 3),
                      fmt_ci(w.empirical_epsilon_ci, 3)]]), "",
             f"ε lower bounds: one-run {fmt(w.epsilon_lb_one_run, 3)}, Clopper-Pearson "
             f"{fmt(w.epsilon_lb_cp, 3)} (ceiling {fmt(w.ceiling, 2)}); "
             f"{wording.whitebox_power(w.detectable_noise_factor, w.detectable_epsilon, w.detectable_power)}; "
             f"from the final model alone (shown for users who see only the released model; not part of the verdict, "
             f"so not corrected for): one-run {fmt(w.final_model_epsilon_lb_one_run, 3)}, Clopper-Pearson "
             f"{fmt(w.final_model_epsilon_lb_cp, 3)}."]
    if w.routes:
        lines += ["", _table(["bound route", "ε lower bound", "ceiling", "confidence", "counted", "canaries for ceiling > claim",
                              "assumption"],
                             [[("**" + r.label + "** (best)") if r.route == w.best_route else r.label,
                               fmt(r.epsilon_lb, 3), fmt(r.ceiling, 2), f"{r.confidence:.4g}",
                               "yes" if r.valid else "no: an independence test rejected",
                               "—" if r.canaries_needed is None else f"{r.canaries_needed:,}",
                               r.assumption] for r in w.routes])]
        if w.routes_text:
            lines += ["", w.routes_text]
    if FIGURES["whitebox"] in figures:
        lines += ["", f"![observed against claimed noise and sampling]({FIGURES['whitebox']})"]
    return lines


def render(report: Report | dict, fmt_name: str) -> dict[str, bytes]:
    """All files of one format: {file name: bytes}."""
    report = as_report(report)
    if fmt_name == "md":
        from dpaudit.report.plots import all_figures

        figs = all_figures(report)
        return {"report.md": render_markdown(report, list(figs)).encode(), **figs}
    if fmt_name == "html":
        return {"report.html": render_html(report).encode()}
    if fmt_name == "json":
        return {"report.json": (dumps(report.to_json()) + "\n").encode()}
    raise DPAuditError(f"unknown report format {fmt_name!r}; choose md, html or json")


def scores_csv(record_idx, is_member, scores) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["record_index", "is_member", "score"])
    for i, m, s in zip(record_idx, is_member, scores):
        w.writerow([int(i), int(bool(m)), repr(float(s))])
    return buf.getvalue().encode()


def write_outputs(out: str | Path, files: dict[str, bytes], *, replace: bool = True,
                  force: bool = True) -> list[Path]:
    """Write a report folder so that no reader ever sees it half-written or mixed with another run's files.

    Every file is staged in a unique sibling folder first. ``replace`` (an audit's output): the staged folder
    becomes ``out`` by one rename; an existing ``out`` is first moved aside and deleted after, so old
    renderings, figures or scores never stay beside a new report.json. Writers of the same ``out`` are
    serialised by a lock on the parent folder (nothing is left behind), and a failure is a one-line error. Not ``replace`` (re-rendering into a report's own folder): each file is
    replaced atomically, report.json last."""
    import fcntl

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    lock = os.open(out.parent, os.O_RDONLY)
    try:
        stage.chmod(default_mode(directory=True))
        for name, data in files.items():
            p = stage / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if True:  # under the lock
            if not out.exists():
                os.replace(stage, out)
            elif replace:
                if not out.is_dir():
                    raise DPAuditError(f"--out {out} is a file; choose a folder")
                if not force and any(out.iterdir()):
                    # checked again under the lock: another run may have written it while this one trained
                    raise DPAuditError(f"--out {out} was filled by another run while this one worked; pass --force "
                                       f"to replace it, or choose another --out")
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
                os.replace(out, old / "previous")
                try:
                    os.replace(stage, out)
                except OSError:
                    os.replace(old / "previous", out)  # put the earlier report back: nothing changed after all
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                for name in sorted(files, key=lambda n: n == "report.json"):
                    (out / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(stage / name, out / name)
        return [out / n for n in files]
    except OSError as exc:
        raise DPAuditError(f"could not write {out}: {exc.strerror or exc}; nothing was changed there") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        os.close(lock)  # releases the lock
