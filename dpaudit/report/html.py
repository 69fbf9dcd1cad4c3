"""One self-contained, printable HTML report, built from a typed Report alone.

Nothing in the page makes a network request: no CDN, no web fonts, no remote images. Figures are PNGs
from :mod:`dpaudit.report.plots`, embedded as ``data:`` URIs. Every string from the report passes through
:func:`html.escape`; every number comes from the report. A report that lacks a field fails when it is
loaded (:meth:`dpaudit.schema.Report.from_json`), never as a silently missing figure here.
"""
from __future__ import annotations

import base64
import html
import json

from dpaudit.report import wording
from dpaudit.report.wording import INDEPENDENCE_CAVEAT, fmt, fmt_ci, fmt_g, to_html
from dpaudit.schema import ModelAudit, Report, as_report

_CSS = """
:root { --ok: #1b6e3a; --bad: #a4161a; --warn: #b07800; --neutral: #555; --line: #d0d0d0; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem; color: #111; line-height: 1.45; }
h1 { margin-top: 0; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td, th { overflow-wrap: anywhere; }
code { word-break: break-all; }
.scroll { overflow-x: auto; max-width: 100%; }
#first-screen td:first-child { white-space: nowrap; }
details { margin: .8rem 0; }
details > summary { cursor: pointer; font-weight: bold; font-size: 1.05rem; padding: .3rem 0; }
.status-violation, .status-nonconformant { color: var(--bad); font-weight: bold; }
.status-inconclusive { color: #6b4a00; font-weight: bold; }
.status-consistent { color: var(--ok); font-weight: bold; }
#verdict { padding: .9rem 1.1rem; border-radius: 6px; font-size: 1.1rem; border: 2px solid; }
#verdict.consistent { background: #e8f5ec; border-color: var(--ok); color: var(--ok); }
#verdict.violation { background: #fdecec; border-color: var(--bad); color: var(--bad); }
#verdict.no-dp-claim { background: #f2f2f2; border-color: var(--neutral); color: var(--neutral); }
#verdict.inconclusive, #verdict.nonconformant { background: #fff6e0; border-color: var(--warn); color: #6b4a00; }
tr.inconclusive td, tr.nonconformant td { background: #fff6e0; }
tr.violation td { background: #fdecec; }
.flag { color: var(--bad); font-weight: bold; }
.ok { color: var(--ok); }
figure { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: .85rem; color: #444; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .8rem; white-space: pre-wrap;
      word-break: break-word; }
dl.glossary dt { font-weight: bold; margin-top: .5rem; }
dl.glossary dd { margin-left: 1.2rem; }
.muted { color: #555; font-size: .85rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { page-break-after: avoid; break-after: avoid; }
  table, figure, tr { page-break-inside: avoid; break-inside: avoid; }
  #verdict, tr.violation td, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  pre { white-space: pre-wrap; }
  a { color: inherit; text-decoration: none; }
}
"""

GLOSSARY = [
    ("AUC", "Area under the ROC curve of a membership attack: the chance that the attack scores a random "
            "training member above a random non-member. 0.5 is guessing; 1.0 is perfect."),
    ("Advantage", "True-positive rate minus false-positive rate at the attack's fixed threshold: how much better "
                  "than chance the attack tells members from non-members. 0 is guessing; 1 is perfect."),
    ("Balanced accuracy", "The mean of the attack's accuracy on members and on non-members at its threshold; "
                          "0.5 is guessing. Equal to (1 + advantage) / 2."),
    ("TPR@FPR", "True-positive rate at a fixed low false-positive rate (for example 1%): how many members the "
                "attack finds while it wrongly accuses few non-members. This is what matters for real harm."),
    ("ε (epsilon)", "The privacy budget of (ε, δ)-differential privacy, reported by the training accountant. "
                    "Smaller is more private; ∞ means no DP guarantee."),
    ("δ (delta)", "The small probability with which the ε guarantee may fail; kept below 1 / (number of "
                  "training records)."),
    ("ε lower bound", "The smallest ε consistent with what an attack achieved, at the stated confidence. If it exceeds "
                      "the claimed ε, the claim is disproved; if it is lower, the claim stands (it is not proved)."),
    ("Clopper-Pearson", "Exact binomial confidence intervals for the attack's true- and false-positive rates; "
                        "the ε lower bound uses their conservative ends so that it holds at the stated confidence."),
    ("One-run canary audit", "Steinke, Nasr & Jagielski (2023): mislabeled canary records each enter training "
                             "with probability 1/2; how many the attack guesses right in a single training run "
                             "gives an ε lower bound without training many models."),
    ("Reference models", "Models trained with the target's recipe on random halves of the data pool, with known "
                         "membership. Attack thresholds and classifiers are fitted on them and only then applied "
                         "once to the target."),
    ("Max advantage / accuracy ε allows", "The largest advantage (or balanced accuracy) any attack can reach "
                                          "against an (ε, δ)-DP model; measured values should sit under it."),
    ("ε ceiling", "The largest ε lower bound a perfect attack could reach with this audit's records, canaries "
                  "and confidence. A claimed ε at or above it cannot be disproved by this audit; below it, only the "
                  "detectable ε says whether a real leak would have been seen."),
    ("Detectable ε", "The smallest true ε this audit, at its sample sizes and confidence, refutes with probability "
                     "≥ 80%, measured by seeded simulation of each route under a stated leakage model."),
    ("Verdict", "consistent: no bound exceeds the claimed ε, and the audit's detectable ε is at most 2× the "
                "claim. violation: an ε lower bound exceeds the claimed ε, so the guarantee is false (or "
                "mis-accounted). inconclusive: nothing was disproved, but the audit could not see a leak of 2× the "
                "claim (or its power was not measured). nonconformant: the training or data did not meet an "
                "assumption the bounds rely on. no DP claim: trained without DP, nothing to check."),
]


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x, digits: int = 3) -> str:
    return _e(fmt(x, digits))


def _g(x) -> str:
    return _e(fmt_g(x))


def _img(png: bytes | None, alt: str, caption: str) -> str:
    if not png:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(headers: list[str], rows: list[list[str]], table_id: str | None = None,
           row_classes: list[str] | None = None) -> str:
    """Cells must already be escaped HTML; headers are escaped here."""
    tid = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        cls_attr = f' class="{_e(cls)}"' if cls else ""
        body.append(f"<tr{cls_attr}>" + "".join(r) + "</tr>")
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(text: str, numeric: bool = False) -> str:
    """`text` must already be escaped."""
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


_ROW_CLASS = {"violation": "violation", "inconclusive": "inconclusive", "nonconformant": "nonconformant"}
BANNER_CLASS = {"VIOLATION": "violation", "consistent": "consistent", "inconclusive": "inconclusive",
                "nonconformant": "nonconformant"}


def _verdict_banner(report: Report) -> str:
    overall = wording.overall_verdict(report)
    cls = BANNER_CLASS.get(overall, "no-dp-claim")
    return (f'<div id="verdict" class="{cls}" data-verdict="{_e(overall)}">'
            f"{to_html(wording.banner(report))}</div>")


def _first_screen(report: Report) -> str:
    """One row per model: verdict, claimed ε, best bound and its route, detectable ε, the step that decides."""
    headers = ["model", "verdict", "ε claimed", "best ε lower bound (route)", "ε this audit detects (80% power)",
               "what would decide"]
    rows, classes = [], []
    for r in wording.first_screen_rows(report):
        rows.append([_td(f"<strong>{_e(r['model'])}</strong>"),
                     _td(f'<span class="status-{_e(r["status"].replace(" ", "-"))}">{_e(r["status"])}</span>'),
                     _td(_num(r["claimed"], 2), True), _td(_e(r["bound"])), _td(_e(r["detectable"])),
                     _td(_e(r["step"]))])
        classes.append(_ROW_CLASS.get(r["status"], ""))
    return _table(headers, rows, "first-screen", classes)


def _fold(title: str, body: str, open_: bool = False) -> str:
    """Details below the first screen: folded, one click away."""
    return f"<details{' open' if open_ else ''}><summary>{_e(title)}</summary>{body}</details>"


def _scroll(table: str) -> str:
    """A wide table scrolls inside its own box, never the page."""
    return f'<div class="scroll">{table}</div>'


def _summary(report: Report) -> str:
    headers = ["model", "ε claimed", "ε empirical lower bound", "ε ceiling", "test accuracy", "attack",
               "AUC [CI]", "advantage [CI]", "balanced accuracy [CI]", *(h for _, h in wording.TPR_SHOWN),
               "max advantage ε allows", "max balanced accuracy ε allows"]
    rows, classes = [], []
    for r in wording.summary_rows(report):
        rows.append([
            _td(_e(r["model"])), _td(_num(r["epsilon"], 3), True), _td(_num(r["epsilon_lb"], 3), True),
            _td(_num(r["ceiling"], 2), True), _td(_num(r["test_accuracy"]), True), _td(_e(r["attack"])),
            _td(_e(f"{fmt(r['auc'])} {fmt_ci(r['auc_ci'])}"), True),
            _td(_e(f"{fmt(r['advantage'])} {fmt_ci(r['advantage_ci'])}"), True),
            _td(_e(f"{fmt(r['balanced_accuracy'])} {fmt_ci(r['balanced_accuracy_ci'])}"), True),
            *(_td(_e(c), True) for c in r["tpr_cells"]),
            _td(_num(r["max_advantage"]), True), _td(_num(r["max_balanced_accuracy"]), True)])
        classes.append(_ROW_CLASS.get(r["status"], ""))
    return _table(headers, rows, "summary-table", classes)


def _verdicts(report: Report) -> str:
    headers = ["model", "ε claimed (accountant)", "ε lower bound (best)", "detectable ε (80%)", "ε ceiling",
               "ceiling above claim", "from", "ratio", "status", "verdict"]
    rows, classes = [], []
    for v in wording.verdict_rows(report):
        detect = {True: "yes", False: "no", None: "—"}[v["could_detect"]]
        flag = "ok" if v["status"] in ("consistent", "no DP claim") else "flag"
        rows.append([_td(_e(v["model"])), _td(_num(v["claimed"]), True), _td(_num(v["empirical"]), True),
                     _td(_num(v["detectable"], 2), True), _td(_num(v["ceiling"], 2), True), _td(_e(detect)),
                     _td(_e(v["source"])),
                     _td(_num(v["ratio"], 2), True), _td(f'<span class="{flag}">{_e(v["status"])}</span>'),
                     _td(to_html(v["text"]))])
        classes.append(_ROW_CLASS.get(v["status"], ""))
    return _table(headers, rows, "verdict-table", classes)


def _reading(report: Report) -> str:
    items = "".join(f"<li>{to_html(line.removeprefix('- '))}</li>" for line in wording.reading(report))
    return f'<ul id="reading">{items}</ul>'


def _canary(report: Report) -> str:
    canaries = [m for m in report.models if m.canary is not None]
    if not canaries:
        return ""
    headers = ["model", "canaries m", "in target", "guesses r", "correct v", "k+ / k−", "ε lower bound", "ε ceiling",
               "detectable ε", "correction", "test accuracy with canaries", "test accuracy without canaries"]
    rows = []
    for m in canaries:
        c = m.canary
        rows.append([_td(_e(m.name)), _td(_e(c.m), True), _td(_e(c.included), True), _td(_e(c.r), True),
                     _td(_e(c.v), True), _td(_e(f"{c.k_plus} / {c.k_minus}"), True), _td(_num(c.epsilon_lb), True),
                     _td(_num(c.ceiling, 2), True), _td(_num(c.detectable_epsilon, 2), True), _td(_e(c.correction)),
                     _td(_num(c.test_accuracy_with_canaries), True),
                     _td(_num(c.test_accuracy_without_canaries), True)])
    return ("<section id=\"canary\"><h2>Canary audit (one training run)</h2>"
            + _scroll(_table(headers, rows, "canary-table"))
            + "<p class=\"muted\">Canaries are real images with a wrong label, each included in the target's "
              "training set with probability 1/2 (Steinke, Nasr &amp; Jagielski 2023). Guesses are balanced (k "
              "in, k out), which keeps the bound valid at the observed member share. Accuracy without canaries: "
              f"{_e(canaries[0].canary.without_canaries_from)}.</p></section>")


def _whitebox(report: Report) -> str:
    blocks = [m for m in report.models if m.whitebox is not None]
    if not blocks:
        return ""
    from dpaudit.report.plots import whitebox_figure

    out = ['<section id="whitebox"><h2>White-box canaries</h2>']
    for m in blocks:
        w = m.whitebox
        failed = [t.name for t in w.failed_tests()]
        broken = [t.broken or t.name for t in w.failed_tests()]
        verdict = ('<p class="consistent"><b>Conformant</b>: every test accepts that the training did what its '
                   'accountant was told.</p>' if not failed else
                   f'<p class="violation"><b>Nonconformant</b>: {_e(", ".join(failed))} rejected '
                   f'({_e("; ".join(broken))}); the training did not do what its accountant assumes.</p>')
        rows = "".join(f"<tr><td>{_e(t.name)}</td><td>{_e(t.what)}</td><td>{_e(fmt(t.statistic, 4))}</td>"
                       f"<td>{t.p_value:.3g}</td><td>{'pass' if t.passed else '<b>REJECTED</b>'}</td></tr>"
                       for t in w.tests)
        power = wording.whitebox_power(w.detectable_noise_factor, w.detectable_epsilon, w.detectable_power)
        out.append(f"<h3>{_e(m.name)}</h3>{verdict}<table><tr><th>test</th><th>what</th><th>statistic</th>"
                   f"<th>p-value</th><th>result</th></tr>{rows}</table>"
                   f"<p>σ̂ = {_e(fmt(w.sigma_hat, 4))} (claimed {_e(fmt(w.claimed_sigma, 4))}), "
                   f"q̂ = {_e(fmt(w.q_hat, 5))} (claimed {_e(fmt(w.claimed_q, 5))}), empirical ε "
                   f"{_e(fmt(w.empirical_epsilon, 3))} {_e(fmt_ci(w.empirical_epsilon_ci, 3))} against the claimed "
                   f"{_e(fmt(w.claimed_epsilon, 3))}; ε lower bounds: one-run {_e(fmt(w.epsilon_lb_one_run, 3))}, "
                   f"Clopper-Pearson {_e(fmt(w.epsilon_lb_cp, 3))}; {_e(power)}.</p>"
                   + (f"<p>{_e(w.routes_text)}</p>" if w.routes_text else ""))
    fig = whitebox_figure(report)
    if fig is not None:
        out.append(_img(fig, "White-box canaries: observed against claimed",
                        "Observed noise and sampling rate over the claimed ones (1 = as claimed), and the ε of what ran."))
    return "".join(out) + "</section>"


def _accountant(m: ModelAudit) -> str:
    ac = m.accountant_check
    if ac is None:
        return "training not observed: skipped" if not m.training.observed else "—"
    flag = '<span class="flag">FLAGGED</span> ' if ac.flagged else '<span class="ok">ok</span> '
    return (flag + _e(f"PLD {fmt(ac.dp_accounting_pld)}, RDP {fmt(ac.dp_accounting_rdp)}, "
                      f"rel. diff {fmt(ac.relative_difference, 4)}")
            + (f'<br><span class="muted">{_e(ac.note)}</span>' if ac.note else ""))


def _training(report: Report) -> str:
    headers = ["model", "DP", "target ε", "ε spent", "ε per epoch", "δ", "σ (noise multiplier)", "q (sample rate)",
               "steps", "clip norm C", "accountant", "dp_accounting cross-check", "train accuracy", "test accuracy",
               "seed", "wall s"]
    rows, classes = [], []
    for m in report.models:
        tr = m.training
        per_epoch = ", ".join(fmt(e, 2) for e in tr.epsilon_per_epoch) or "—"
        rows.append([_td(_e(m.name)), _td("yes" if m.dp else "no"), _td(_num(m.target_epsilon, 2), True),
                     _td(_num(tr.epsilon), True), _td(_e(per_epoch)), _td(_g(tr.delta), True),
                     _td(_num(tr.noise_multiplier, 4), True), _td(_g(tr.sample_rate), True),
                     _td(_e("—" if tr.steps is None else tr.steps), True), _td(_num(tr.max_grad_norm, 2), True),
                     _td(_e(tr.accountant or "—")), _td(_accountant(m)), _td(_num(tr.train_accuracy), True),
                     _td(_num(tr.test_accuracy), True), _td(_e("—" if tr.seed is None else tr.seed), True), _td(_num(tr.wall_s, 1), True)])
        classes.append("violation" if m.accountant_check is not None and m.accountant_check.flagged else "")
    return _table(headers, rows, "training-table", classes)


def _references(report: Report) -> str:
    rows = []
    for m in report.models:
        ref = m.reference_models
        accs = ", ".join(fmt(a) for a in ref.test_accuracy)
        seeds = ", ".join(str(s) for s in ref.seeds)
        rows.append([_td(_e(m.name)), _td(_e(ref.k), True), _td(_e(accs or "—")), _td(_e(seeds or "—")),
                     _td(_e(ref.cache_hits), True)])
    if not rows:
        return ""
    return _table(["model", "reference models K", "test accuracy", "seeds", "cache hits"], rows, "reference-table")


def _kv(d: dict, table_id: str) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list, tuple)):
            val = f"<code>{_e(json.dumps(v, default=str))}</code>"
        elif isinstance(v, float):
            val = _g(v)
        else:
            val = _e("—" if v is None else v)
        rows.append([_td(f"<code>{_e(k)}</code>"), _td(val)])
    return _table(["key", "value"], rows, table_id)


def _attack_notes(report: Report) -> str:
    items = []
    for m in report.models:
        for a in m.attacks:
            met, lb = a.metrics, a.epsilon_lb
            tprs = " / ".join(_e(wording.tpr_cell(met, k)) for k in ("0.001", "0.01", "0.1"))
            items.append(f"<li><strong>{_e(m.name)} / {_e(a.attack)}</strong>: {_e(a.description)}. "
                         f"Threshold {_g(met.threshold)} ({_e(met.threshold_source)}); "
                         f"TPR at 0.1% / 1% / 10% FPR: {tprs}; {_e(met.n_members)} members, "
                         f"{_e(met.n_nonmembers)} non-members; ε lower bound {_num(lb.value)} "
                         f"({_e(lb.threshold_selection)}); ε ceiling {_num(a.ceiling, 2)}.</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _figures(report: Report) -> tuple[str, str]:
    """The figures; a report they cannot be drawn from raises (it was validated on load, so that is a bug).
    Imported here so that loading and checking a report never pays for numpy, scipy or matplotlib."""
    from dpaudit.report.plots import epsilon_per_epoch_figure, epsilon_vs_success_figure, roc_figure

    main_figs = "" if not any(m.attacks for m in report.models) else (  # white-box only: no attack to draw
        _img(roc_figure(report), "ROC curves of every attack (log-log)",
             "ROC of each attack on each target, log-log axes: the TPR at very low FPR matters most.")
        + _img(epsilon_vs_success_figure(report), "Attack success against ε",
               "Attack AUC and advantage against ε spent, under the most advantage that ε allows."))
    ep = _img(epsilon_per_epoch_figure(report), "ε spent per epoch",
              "ε spent after each epoch, per DP model; dotted lines mark the target ε.")
    return main_figs, ep


def render_html(report: Report | dict) -> str:
    """The whole report as one self-contained HTML document (UTF-8 text)."""
    report = as_report(report)
    doc = report.to_json()  # the provenance blocks are shown key by key, as written
    ds, sp, cfg = doc["dataset"], doc["split"], doc["config"]
    main_figs, ep_fig = _figures(report)
    canary, whitebox = _canary(report), _whitebox(report)
    seeds = [["audit (split, sampling, noise)", _e(report.split.seed)]]
    for m in report.models:
        seeds.append([f"{_e(m.name)} target training", _e(m.training.seed)])
        if m.reference_models.seeds:
            seeds.append([f"{_e(m.name)} reference models", _e(", ".join(str(s) for s in m.reference_models.seeds))])
        for a in m.attacks:
            seeds.append([f"{_e(m.name)} / {_e(a.attack)} bootstrap", _e(a.metrics.bootstrap.seed)])
    seed_rows = [[_td(k), _td(v, True)] for k, v in seeds]
    glossary = "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in GLOSSARY)
    platform = doc["platform"]
    timing = doc["timing_s"]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network access at all: a strict CSP makes any accidental external reference inert.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>dpaudit report: {_e(report.dataset.name)} ({_e(report.created_utc)})</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>dpaudit report</h1>",
        f'<p class="muted">Dataset <strong>{_e(report.dataset.name)}</strong>, created {_e(report.created_utc)}, '
        f"schema {_e(report.schema)}.</p>",
        _verdict_banner(report),
        _first_screen(report),
        f'<p class="muted">{_e(wording.combined_confidence_note(report))} {_e(wording.power_note(report))}</p>',
        _fold("Privacy verdicts in full", _scroll(_verdicts(report))
              + f'<p class="muted">ε lower bounds: {_e(wording.confidence_note(report))}. The ε ceiling is the '
              "largest lower bound a perfect attack could reach with this audit's records and confidence (— where "
              f"not computed): a number, not a promise; the verdict rests on the detectable ε. "
              f"{_e(INDEPENDENCE_CAVEAT)}</p>"),
        _fold("Reading", _reading(report)),
        _fold("Attack metrics", _scroll(_summary(report))
              + f'<p class="muted">{_e(wording.interval_note(report))} Advantage and balanced accuracy are at a '
              "threshold fixed in advance on the reference models. TPR at a fixed FPR shows (members found / "
              "members) where the attack recorded the counts.</p>"),
        _fold("Canary audit", canary) if canary else "",
        _fold("White-box canaries", whitebox) if whitebox else "",
        _fold("Figures", main_figs),
        _fold("Attacks and thresholds", f"<p>{_e(report.threshold_policy)}</p>" + _attack_notes(report)),
        _fold("Training records", _scroll(_training(report)) + ep_fig + "<h3>Reference models</h3>"
              + (_references(report) or '<p class="muted">none</p>')),
        _fold("Provenance: dataset, split, configuration, seeds, command, versions",
              "<h2>Dataset provenance</h2>" + _kv(ds, "dataset-table")
              + "<h2>Split</h2>" + _kv(sp, "split-table")
              + "<h2>Configuration</h2>" + _kv(cfg, "config-table")
              + "<h2>Seeds</h2>" + _table(["what", "seed"], seed_rows, "seed-table")
              + "<h2>Command</h2>" + f'<pre id="command">{_e(report.command or "Python API")}</pre>'
              + "<h2>Tool versions and platform</h2>"
              + _kv({**report.versions, **{f"platform.{k}": v for k, v in platform.items()}}, "versions-table")
              + (("<h3>Timing (seconds)</h3>" + _kv(timing, "timing-table")) if timing else "")),
        _fold("Glossary", '<dl class="glossary" id="glossary">' + glossary + "</dl>"),
        '<p class="muted">Generated by dpaudit from report.json alone; this page makes no network requests.</p>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
