"""One self-contained, printable HTML report, built from a report dict alone.

Nothing in the page makes a network request: no CDN, no web fonts, no remote images. Figures are PNGs
from :mod:`dpaudit.plots`, embedded as ``data:`` URIs. Every string from the report passes through
:func:`html.escape`; every number comes from the report dict.
"""
from __future__ import annotations

import base64
import html
import json
import math

from .report import (INDEPENDENCE_CAVEAT, confidence_note, fmt, fmt_ci, num, overall_verdict, summary_rows,
                     verdict_rows)

_CSS = """
:root { --ok: #1b6e3a; --bad: #a4161a; --neutral: #555; --line: #d0d0d0; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem; color: #111; line-height: 1.45; }
h1 { margin-top: 0; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#verdict { padding: .9rem 1.1rem; border-radius: 6px; font-size: 1.1rem; border: 2px solid; }
#verdict.consistent { background: #e8f5ec; border-color: var(--ok); color: var(--ok); }
#verdict.violation { background: #fdecec; border-color: var(--bad); color: var(--bad); }
#verdict.no-dp-claim { background: #f2f2f2; border-color: var(--neutral); color: var(--neutral); }
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
    ("Verdict", "consistent: no attack proved more leakage than ε allows. violation: an ε lower bound exceeds "
                "the claimed ε, so the guarantee is false (or mis-accounted). no DP claim: trained without DP, "
                "nothing to check."),
]


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x, digits: int = 3) -> str:
    return _e(fmt(x, digits))


def _g(x) -> str:
    """A number in short general form (δ, q, ...)."""
    if x is None:
        return "—"
    v = num(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞"
    return _e(f"{v:g}")


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


def _verdict_banner(report: dict) -> str:
    overall = overall_verdict(report)
    cls = {"VIOLATION": "violation", "consistent": "consistent"}.get(overall, "no-dp-claim")
    if overall == "VIOLATION":
        bad = [v["model"] for v in verdict_rows(report) if v["status"] == "violation"]
        msg = ("VIOLATION: an empirical ε lower bound exceeds the claimed ε for "
               + ", ".join(bad) + ". The privacy guarantee does not hold as stated.")
    elif overall == "consistent":
        msg = "Consistent: no attack proved more leakage than the claimed ε allows."
    else:
        msg = "No DP claim: no model in this audit was trained with differential privacy; nothing to check."
    return f'<div id="verdict" class="{cls}" data-verdict="{_e(overall)}"><strong>{_e(msg)}</strong></div>'


def _summary(report: dict) -> str:
    headers = ["model", "ε claimed", "ε empirical lower bound", "test accuracy", "attack", "AUC [95% CI]",
               "advantage [95% CI]", "balanced accuracy [95% CI]", "TPR@1%FPR", "max advantage ε allows",
               "max balanced accuracy ε allows"]
    rows, classes = [], []
    for r in summary_rows(report):
        rows.append([
            _td(_e(r["model"])), _td(_num(r["epsilon"], 3), True), _td(_num(r["epsilon_lb"], 3), True),
            _td(_num(r["test_accuracy"]), True), _td(_e(r["attack"])),
            _td(_e(f"{fmt(r['auc'])} {fmt_ci(r['auc_ci'])}"), True),
            _td(_e(f"{fmt(r['advantage'])} {fmt_ci(r['advantage_ci'])}"), True),
            _td(_e(f"{fmt(r['balanced_accuracy'])} {fmt_ci(r['balanced_accuracy_ci'])}"), True),
            _td(_num(r["tpr_at_1pct_fpr"]), True), _td(_num(r["max_advantage"]), True),
            _td(_num(r["max_balanced_accuracy"]), True)])
        classes.append("violation" if r["verdict"] == "violation" else "")
    return _table(headers, rows, "summary-table", classes)


def _verdicts(report: dict) -> str:
    headers = ["model", "ε claimed (accountant)", "ε lower bound (best)", "from", "ratio", "status", "verdict"]
    rows, classes = [], []
    for v in verdict_rows(report):
        rows.append([_td(_e(v["model"])), _td(_num(v["claimed"]), True), _td(_num(v["empirical"]), True),
                     _td(_e(v["source"])), _td(_num(v["ratio"], 2), True),
                     _td(f'<span class="{"flag" if v["status"] == "violation" else "ok"}">{_e(v["status"])}</span>'),
                     _td(_e(v["text"]))])
        classes.append("violation" if v["status"] == "violation" else "")
    return _table(headers, rows, "verdict-table", classes)


def _canary(report: dict) -> str:
    canaries = [m for m in report["models"] if m.get("canary")]
    if not canaries:
        return ""
    headers = ["model", "canaries m", "in target", "guesses r", "correct v", "k+", "ε lower bound", "correction",
               "test accuracy with canaries", "test accuracy without canaries"]
    rows = []
    for m in canaries:
        c = m["canary"]
        rows.append([_td(_e(m["name"])), _td(_e(c.get("m")), True), _td(_e(c.get("included")), True),
                     _td(_e(c.get("r")), True), _td(_e(c.get("v")), True), _td(_e(c.get("k_plus")), True),
                     _td(_num(c.get("epsilon_lb")), True), _td(_e(c.get("correction"))),
                     _td(_num(c.get("test_accuracy_with_canaries")), True),
                     _td(_num(c.get("test_accuracy_without_canaries")), True)])
    return ("<section id=\"canary\"><h2>Canary audit (one training run)</h2>"
            + _table(headers, rows, "canary-table")
            + "<p class=\"muted\">Canaries are real images with a wrong label, each included in the target's "
              "training set with probability 1/2 (Steinke, Nasr &amp; Jagielski 2023). Accuracy without canaries "
              "is the mean of the reference models, which train the same recipe without them.</p></section>")


def _training(report: dict) -> str:
    headers = ["model", "DP", "target ε", "ε spent", "ε per epoch", "δ", "σ (noise multiplier)", "q (sample rate)",
               "steps", "clip norm C", "accountant", "dp_accounting cross-check", "train accuracy", "test accuracy",
               "seed", "wall s"]
    rows, classes = [], []
    for m in report["models"]:
        tr = m["training"]
        ac = m.get("accountant_check")
        if not ac:
            check = "—"
        else:
            flag = ('<span class="flag">FLAGGED</span> ' if ac.get("flagged")
                    else '<span class="ok">ok</span> ')
            check = (flag + _e(f"PLD {fmt(ac.get('dp_accounting_pld'))}, RDP {fmt(ac.get('dp_accounting_rdp'))}, "
                               f"rel. diff {fmt(ac.get('relative_difference'), 4)}")
                     + (f"<br><span class=\"muted\">{_e(ac.get('note'))}</span>" if ac.get("note") else ""))
        per_epoch = ", ".join(fmt(e, 2) for e in tr.get("epsilon_per_epoch") or []) or "—"
        rows.append([_td(_e(m["name"])), _td("yes" if m["dp"] else "no"), _td(_num(m.get("target_epsilon"), 2), True),
                     _td(_num(tr.get("epsilon")), True), _td(_e(per_epoch)), _td(_g(tr.get("delta")), True),
                     _td(_num(tr.get("noise_multiplier"), 4), True), _td(_g(tr.get("sample_rate")), True),
                     _td(_e(tr.get("steps")), True), _td(_num(tr.get("max_grad_norm"), 2), True),
                     _td(_e(tr.get("accountant") or "—")), _td(check), _td(_num(tr.get("train_accuracy")), True),
                     _td(_num(tr.get("test_accuracy")), True), _td(_e(tr.get("seed")), True),
                     _td(_num(tr.get("wall_s"), 1), True)])
        classes.append("violation" if ac and ac.get("flagged") else "")
    return _table(headers, rows, "training-table", classes)


def _references(report: dict) -> str:
    rows = []
    for m in report["models"]:
        ref = m.get("reference_models")
        if not ref:
            continue
        accs = ", ".join(fmt(a) for a in ref.get("test_accuracy") or [])
        seeds = ", ".join(str(s) for s in ref.get("seeds") or [])
        rows.append([_td(_e(m["name"])), _td(_e(ref.get("k")), True), _td(_e(accs or "—")), _td(_e(seeds or "—")),
                     _td(_e(ref.get("cache_hits", "—")), True)])
    if not rows:
        return ""
    return _table(["model", "reference models K", "test accuracy", "seeds", "cache hits"], rows, "reference-table")


def _kv(d: dict, table_id: str) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list)):
            val = f"<code>{_e(json.dumps(v, default=str))}</code>"
        else:
            val = _e("—" if v is None else v)
        rows.append([_td(f"<code>{_e(k)}</code>"), _td(val)])
    return _table(["key", "value"], rows, table_id)


def _attack_notes(report: dict) -> str:
    items = []
    for m in report["models"]:
        for a in m["attacks"]:
            met, lb = a["metrics"], a.get("epsilon_lb") or {}
            items.append(f"<li><strong>{_e(m['name'])} / {_e(a['attack'])}</strong>: {_e(a.get('description'))}. "
                         f"Threshold {_g(met.get('threshold'))} ({_e(met.get('threshold_source'))}); "
                         f"TPR at 0.1% / 1% / 10% FPR: "
                         + " / ".join(_num(met.get("tpr_at_fpr", {}).get(k)) for k in ("0.001", "0.01", "0.1"))
                         + f"; {_e(met.get('n_members'))} members, {_e(met.get('n_nonmembers'))} non-members; "
                         f"ε lower bound {_num(lb.get('value'))} ({_e(lb.get('threshold_selection'))}).</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _figures(report: dict) -> tuple[str, str]:
    from .plots import epsilon_per_epoch_figure, epsilon_vs_success_figure, roc_figure

    try:
        main_figs = (_img(roc_figure(report), "ROC curves of every attack (log-log)",
                          "ROC of each attack on each target, log-log axes: the TPR at very low FPR matters most.")
                     + _img(epsilon_vs_success_figure(report), "Attack success against ε",
                            "Attack AUC and advantage against ε spent, under the most advantage that ε allows."))
    except (KeyError, ValueError, TypeError):
        main_figs = '<p class="muted">Figures could not be drawn from this report.</p>'
    try:
        ep = _img(epsilon_per_epoch_figure(report), "ε spent per epoch",
                  "ε spent after each epoch, per DP model; dotted lines mark the target ε.")
    except (KeyError, ValueError, TypeError):
        ep = ""
    return main_figs, ep


def render_html(report: dict) -> str:
    """The whole report as one self-contained HTML document (UTF-8 text)."""
    ds, sp, cfg = report.get("dataset") or {}, report.get("split") or {}, report.get("config") or {}
    main_figs, ep_fig = _figures(report)
    seeds = [["audit (split, sampling, noise)", _e(sp.get("seed", cfg.get("seed")))]]
    for m in report["models"]:
        seeds.append([f"{_e(m['name'])} target training", _e(m["training"].get("seed"))])
        ref = m.get("reference_models") or {}
        if ref.get("seeds"):
            seeds.append([f"{_e(m['name'])} reference models", _e(", ".join(str(s) for s in ref["seeds"]))])
        for a in m["attacks"]:
            bs = (a["metrics"].get("bootstrap") or {}).get("seed")
            if bs is not None:
                seeds.append([f"{_e(m['name'])} / {_e(a['attack'])} bootstrap", _e(bs)])
    seed_rows = [[_td(k), _td(v, True)] for k, v in seeds]
    glossary = "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in GLOSSARY)
    versions = report.get("versions") or {}
    platform = report.get("platform") or {}
    timing = report.get("timing_s") or {}

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network access at all: a strict CSP makes any accidental external reference inert.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>dpaudit report: {_e(ds.get('name'))} ({_e(report.get('created_utc'))})</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>dpaudit report</h1>",
        f'<p class="muted">Dataset <strong>{_e(ds.get("name"))}</strong>, created {_e(report.get("created_utc"))}, '
        f'schema {_e(report.get("schema"))}.</p>',
        _verdict_banner(report),
        "<h2>Summary</h2>", _summary(report),
        f'<p class="muted">Intervals are 95% bootstrap intervals over the target\'s members and non-members '
        f'({_e(cfg.get("n_boot"))} resamples). Advantage and balanced accuracy are at a threshold fixed in '
        f"advance on the reference models.</p>",
        "<h2>Privacy verdicts</h2>", _verdicts(report),
        f'<p class="muted">ε lower bounds: {_e(confidence_note(report))}. {_e(INDEPENDENCE_CAVEAT)} An attack '
        "that fails does not prove privacy; an ε lower bound above the claimed ε disproves it.</p>",
        _canary(report),
        "<h2>Figures</h2>", main_figs,
        "<h2>Attacks and thresholds</h2>", f"<p>{_e(report.get('threshold_policy'))}</p>", _attack_notes(report),
        "<h2>Training records</h2>", _training(report), ep_fig,
        "<h3>Reference models</h3>", _references(report) or '<p class="muted">none</p>',
        "<h2>Dataset provenance</h2>", _kv(ds, "dataset-table"),
        "<h2>Split</h2>", _kv(sp, "split-table"),
        "<h2>Configuration</h2>", _kv(cfg, "config-table"),
        "<h2>Seeds</h2>", _table(["what", "seed"], seed_rows, "seed-table"),
        "<h2>Command</h2>", f'<pre id="command">{_e(report.get("command") or "Python API")}</pre>',
        "<h2>Tool versions and platform</h2>", _kv({**versions, **{f"platform.{k}": v for k, v in platform.items()}},
                                                  "versions-table"),
        ("<h3>Timing (seconds)</h3>" + _kv(timing, "timing-table")) if timing else "",
        '<h2>Glossary</h2><dl class="glossary" id="glossary">', glossary, "</dl>",
        '<p class="muted">Generated by dpaudit from report.json alone; this page makes no network requests.</p>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
