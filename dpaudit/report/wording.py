"""Numbers and sentences shared by every renderer (Markdown, HTML, terminal), from a typed Report.

Every derived sentence comes from a comparison made here, never from a fixed phrase: "under" or "above",
"beats chance" or not, "could" or "could not have detected" are chosen by comparing the numbers they talk
about. Sentences carry a tiny markup, ``**strong**``, that each renderer turns into its own emphasis
(:func:`plain` strips it, :func:`to_html` escapes the text and makes ``<strong>``).

This module is imported by both ``report.py`` and ``html.py``; it imports neither, so they no longer import
each other.
"""
from __future__ import annotations

import html
import math
import re

from dpaudit.schema import POWER_MULTIPLE, AttackMetrics, ModelAudit, Report, WhiteBoxPower, effective_status, evidence

INDEPENDENCE_CAVEAT = ("Attack bounds apply Clopper-Pearson to the target's records as if they were independent trials, "
                       "which one training run does not strictly guarantee; the canary bound (Steinke, Nasr & "
                       "Jagielski 2023) is proved for one run.")

TPR_SHOWN = (("0.001", "TPR@0.1%FPR"), ("0.01", "TPR@1%FPR"))


# ------------------------------------------------------------------------------------------- numbers


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table: — for None or NaN, ∞ for inf, else fixed decimals."""
    if x is None:
        return "—"
    x = float(x)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}f}"


def fmt_ci(ci: tuple[float, float] | None, digits: int = 3) -> str:
    """An interval; — for one that could not be computed (None), e.g. with very few gradient canaries."""
    if ci is None:
        return "—"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def fmt_g(x: float | None) -> str:
    """A number in short general form (δ, q, thresholds)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "∞"
    return f"{x:g}"


def tpr_cell(met: AttackMetrics, level: str) -> str:
    """TPR at a fixed FPR, with the counts behind it when the attack recorded them: 0.031 (27/875)."""
    c = met.tpr_count(level)
    value = fmt(met.tpr(level))
    return value if c is None else f"{value} ({c.tp}/{c.n_pos})"


def compare(x: float, y: float) -> int:
    """-1, 0 or 1 as x is below, equal to or above y, on the 3 decimals the reader sees."""
    rx, ry = round(x, 3), round(y, 3)
    return (rx > ry) - (rx < ry)


# --------------------------------------------------------------------------------------------- tables


def summary_rows(report: Report) -> list[dict]:
    """One row per (model, attack): the numbers every renderer's summary table shows."""
    rows = []
    for m in report.models:
        tr = m.training
        for a in m.attacks:
            met = a.metrics
            rows.append({
                "model": m.name, "epsilon": tr.epsilon if m.dp else math.inf, "delta": tr.delta,
                "test_accuracy": tr.test_accuracy, "attack": a.attack,
                "auc": met.auc, "auc_ci": met.auc_ci,
                "balanced_accuracy": met.balanced_accuracy, "balanced_accuracy_ci": met.balanced_accuracy_ci,
                "advantage": met.advantage, "advantage_ci": met.advantage_ci,
                "tpr_cells": [tpr_cell(met, lv) for lv, _ in TPR_SHOWN],
                "epsilon_lb": a.epsilon_lb.value, "ceiling": a.ceiling,
                "max_balanced_accuracy": m.bounds.max_balanced_accuracy, "max_advantage": m.bounds.max_advantage,
                "status": effective_status(m),
            })
    return rows


def verdict_rows(report: Report) -> list[dict]:
    out = []
    for m in report.models:
        v, ev = m.verdict, evidence(m)
        status = effective_status(m)
        text = v.text if v.text.lower().startswith(v.status.lower()) else f"{v.status}: {v.text}"
        if status != v.status:
            # The stored status says less than the numbers do: say so next to it, never hide it.
            text += f" (**the numbers say {status}**: {_status_reason(m)})"
        out.append({"model": m.name, "claimed": v.claimed_epsilon, "empirical": v.empirical_epsilon_lb,
                    "ceiling": ev.ceiling, "could_detect": _could_detect(m), "source": v.source, "ratio": v.ratio,
                    "detectable": ev.detectable, "detectable_source": ev.detectable_source,
                    "status": status, "stored_status": v.status, "text": text})
    return out


def first_screen_rows(report: Report) -> list[dict]:
    """One row per model, what a reviewer reads first: the verdict, the claimed ε, the best bound and its route,
    the ε this audit could detect (80% power), and the one step that would decide."""
    rows = []
    for m in report.models:
        ev, status = evidence(m), effective_status(m)
        best = ev.best_lb
        if best is None:
            bound = "none computed"
        elif best > 0:
            bound = f"ε ≥ {fmt(best, 2)} ({ev.best_source})"
        else:
            bound = "no bound above 0"
        if ev.detectable is None:
            det = "not measured" if m.dp else "—"
        elif math.isinf(ev.detectable):
            det = "none (no simulated ε refuted)"
        else:
            det = f"{fmt(ev.detectable, 2)} ({ev.detectable_source})"
        if status == "inconclusive":
            step = m.verdict.next_step or "more evidence: see the verdict below"
        elif status == "violation":
            step = "decided: fix the training or its accounting"
        elif status == "nonconformant":
            step = "decided: the training does not do what its accounting assumes"
        elif status == "consistent":
            step = "decided at this power"
        else:
            step = "—"
        rows.append({"model": m.name, "status": status, "claimed": ev.claimed if m.dp else None, "bound": bound,
                     "detectable": det, "step": step})
    return rows


def detectable_sentence(m: ModelAudit) -> str | None:
    """What the audit could see, from its measured power and the claim: None when either is unknown."""
    ev = evidence(m)
    if ev.claimed is None or ev.detectable is None:
        return None
    k = POWER_MULTIPLE
    if math.isinf(ev.detectable):
        return ("No true ε this audit simulated is refuted with probability ≥ 80%, so **it could not have seen a leak**.")
    if ev.detectable <= k * ev.claimed:
        return (f"This audit refutes a true ε of {fmt(ev.detectable, 2)} or more with probability ≥ 80% (simulated, "
                f"{ev.detectable_source}), within {k:g}× the claim.")
    return (f"This audit refutes with probability ≥ 80% only a true ε of {fmt(ev.detectable, 2)} or more (simulated, "
            f"{ev.detectable_source}), above {k:g}× the claim, so **a smaller leak could pass unseen**.")


def _could_detect(m: ModelAudit) -> bool | None:
    ev = evidence(m)
    if ev.claimed is None or ev.ceiling is None:
        return m.verdict.could_detect
    return ev.ceiling > ev.claimed


def _status_reason(m: ModelAudit) -> str:
    ev = evidence(m)
    if ev.status == "violation":
        return f"ε lower bound {fmt(ev.best_lb, 2)} ({ev.best_source}) is above the claimed ε {fmt(ev.claimed, 2)}"
    if ev.status == "inconclusive":
        if ev.detectable is None:
            return "the audit's power was not measured, so passing shows nothing"
        return (f"the ε this audit detects with 80% probability, {fmt(ev.detectable, 2)}, is above "
                f"{POWER_MULTIPLE:g}× the claimed ε {fmt(ev.claimed, 2)}")
    return f"recomputed from the bounds: {ev.status}"


def confidence_note(report: Report) -> str:
    """How the verdicts' ε lower bounds hold, in one sentence, from the report alone."""
    conf = report.config.confidence
    sp = report.alpha_spending
    head = (f"{conf:.0%} confidence" if not sp else
            f"{sp.combined_confidence:.4g} confidence for every run on these models so far (budget "
            f"{conf:.0%})")
    dp = [m for m in report.models if m.dp] or list(report.models)
    if dp:
        v = dp[0].verdict  # every DP model's verdict is corrected alike
        each = (f"each at {v.per_bound_confidence:.2%} (Bonferroni)"
                if v.canary_confidence is None or v.canary_confidence == v.per_bound_confidence else
                f"each attack's at {v.per_bound_confidence:.2%} and each canary route's at {v.canary_confidence:.2%} "
                f"(weighted Bonferroni: canaries half of α, attacks half)")
        head += (f"; each {'DP model' if dp[0].dp else 'model'}'s verdict at {v.confidence:.2%}, the best of its "
                 f"{v.n_bounds} bounds, {each}")
    if report.family_correction:
        head += f"; across models: {report.family_correction}"
    return head


def whitebox_power(factor: float | None, epsilon: float | None, power: WhiteBoxPower | None = None) -> str:
    """The white-box route's measured power in words (a ``WhiteBoxAudit``'s ``detectable_noise_factor``,
    ``detectable_epsilon`` and ``detectable_power``): the noise factor it detects with 80% probability, and, when
    the audit recorded it, that factor's simulated rate with its 95% interval, the number of simulated audits and
    their seed."""
    p = power
    if factor is None:
        if epsilon is None:
            return "power not measured"
        return ("no noise factor simulated is detected with 80% probability"
                + (f" ({len(p.points)} factors down to σ × {fmt(min(x.noise_factor for x in p.points), 3)}, "
                   f"{p.n_sims} simulated audits each, seed {p.seed})" if p is not None and p.points else ""))
    head = (f"a run adding σ × {fmt(factor, 3)} of the claimed noise ({fmt((1 - factor) * 100, 1)}% less: true ε "
            f"{fmt(epsilon, 2)})")
    if p is None or p.rate is None or p.rate_ci is None:
        return f"detects with 80% probability {head}"
    lo, hi = p.rate_ci
    return (f"detects {head} in {fmt(p.rate * 100, 0)}% of {p.n_sims} simulated audits (95% CI "
            f"{fmt(lo * 100, 0)}–{fmt(hi * 100, 0)}%, seed {p.seed}): each the claimed mechanism at that noise, "
            f"at this run's canaries, coins and steps, through this audit's own white-box analysis (its "
            f"{p.n_tests} conformance tests and bound routes)")


def combined_confidence_note(report: Report) -> str:
    """The confidence the report's verdicts hold at, with every run on the same models, as numbers."""
    sp = report.alpha_spending
    if not sp:
        return (f"Confidence: the verdicts hold together at {report.config.confidence:g}; this report predates "
                "α-spending, so it spent all of α, and any re-run on its models lowers the combined confidence.")
    run = "this audit" if sp.rerun == 0 else f"re-run {sp.rerun}"
    return (f"Confidence: {run} spends α = {sp.alpha_this_run:.4g} of the budget "
            f"{sp.alpha:.4g}; with every run on these models so far, all their verdicts hold together at "
            f"{sp.combined_confidence:.4g} (α-spending fixed in advance: the audit α/2, re-run r α/2^(r+1), "
            f"so any number of re-runs keeps them at ≥ {1 - sp.alpha:.4g} when the schedule started with "
            "the audit).")


def power_note(report: Report) -> str:
    """How the detectable ε was measured, once for the report (from the verdicts' recorded method)."""
    methods = [m.verdict.power_method for m in report.models if m.dp and m.verdict.power_method]
    if not methods:
        return ("The audit's power was not measured in this report, so no verdict can read consistent."
                if any(m.dp for m in report.models) else "")
    return methods[0][0].upper() + methods[0][1:] + f" Consistent needs it at most {POWER_MULTIPLE:g}× the claim."


def interval_note(report: Report) -> str:
    """What the ± intervals are, from the bootstrap settings the attacks recorded."""
    boots = {(a.metrics.bootstrap.level, a.metrics.bootstrap.n_boot) for m in report.models for a in m.attacks}
    if not boots:
        return "No attack was run, so there are no intervals."
    if len(boots) == 1:
        level, n = boots.pop()
        return (f"Intervals are {level:.0%} bootstrap intervals over the target's members and non-members "
                f"({n} resamples).")
    return ("Intervals are bootstrap intervals over the target's members and non-members (levels and resamples: "
            + ", ".join(f"{lv:.0%}/{n}" for lv, n in sorted(boots)) + ").")


# ------------------------------------------------------------------------------------------- verdicts


def overall_verdict(report: Report) -> str:
    """"VIOLATION", "nonconformant", "inconclusive", "consistent" or "no DP claim": the worst model's status,
    recomputed from the numbers (a stored status can only make it worse)."""
    st = [effective_status(m) for m in report.models]
    if "violation" in st:
        return "VIOLATION"
    for s in ("nonconformant", "inconclusive", "consistent"):
        if s in st:
            return s
    return "no DP claim"


def models_with(report: Report, status: str) -> list[ModelAudit]:
    return [m for m in report.models if effective_status(m) == status]


def banner(report: Report) -> str:
    """The one line a reviewer reads, with **markup**."""
    overall = overall_verdict(report)
    if not report.models:
        return "**No models**: this report holds no audited model, so it shows nothing."
    if overall == "VIOLATION":
        bad = models_with(report, "violation")
        return ("**VIOLATION**: an empirical ε lower bound exceeds the claimed ε for "
                + ", ".join(f"{m.name} ({_status_reason(m)})" if evidence(m).status == "violation" else m.name
                            for m in bad)
                + ". The privacy guarantee does not hold as stated.")
    if overall == "nonconformant":
        bad = models_with(report, "nonconformant")
        return ("**Nonconformant**: " + "; ".join(f"{m.name}: {m.verdict.text}" for m in bad)
                + ". Its bounds cannot be read as support for the claim.")
    if overall == "inconclusive":
        parts = []
        for m in models_with(report, "inconclusive"):
            ev = evidence(m)
            det = ("power not measured" if ev.detectable is None else
                   "no leak detectable" if math.isinf(ev.detectable) else
                   f"detects ε ≥ {fmt(ev.detectable, 2)} with 80% probability")
            parts.append(f"{m.name} (claimed ε {fmt(ev.claimed, 2)}, {det})")
        return ("**Inconclusive**: no bound exceeds the claimed ε, but this audit lacked the power to see a leak of "
                f"{POWER_MULTIPLE:g}× the claim for " + ", ".join(parts) + ".")
    if overall == "consistent":
        dets = [evidence(m) for m in report.models if m.dp]
        worst = max((e.detectable / e.claimed for e in dets if e.detectable and e.claimed), default=None)
        tail = (f"; each DP model's audit detects a true ε of at most {fmt(worst, 2)}× its claim with 80% "
                "probability") if worst is not None else ""
        return f"**Consistent**: no bound exceeds the claimed ε{tail}."
    return "**No DP claim**: no model in this audit was trained with differential privacy; nothing to check."


def _chance(met: AttackMetrics) -> str:
    lo, hi = met.auc_ci
    if math.isnan(lo) or math.isnan(hi):
        return "has no interval to compare with chance"
    if lo > 0.5:
        return "beats chance"
    if hi < 0.5:
        return "scores below chance"
    return "is not distinguishable from chance"


def reading(report: Report) -> list[str]:
    """A plain-language reading of the numbers, one sentence group per model, each clause decided by a
    comparison of the numbers it names."""
    lines = []
    for m in report.models:
        ev = evidence(m)
        acc = m.training.test_accuracy
        best = max(m.attacks, key=lambda a: a.metrics.auc, default=None)
        if best is None:
            wb = "" if not m.whitebox else (": its evidence is the white-box gradient canaries (below), which "
                                            "test what the training did and bound ε")
            lines.append(f"- **{m.name}**: no attack was run on it{wb or ', so nothing here measures its leakage'}.")
            continue
        met = best.metrics
        lo, hi = met.auc_ci
        head = (f"the strongest attack by AUC ({best.attack}) reaches AUC {fmt(met.auc)} [{fmt(lo)}, {fmt(hi)}] "
                f"and {_chance(met)}")
        # outputs only (--from-signals): no test accuracy was measured
        acc_txt = f"test accuracy {acc:.1%}" if acc is not None else "test accuracy not measured"
        if not m.dp:
            lb = "no ε lower bound could be computed" if ev.best_lb is None else (
                f"the data support ε ≥ {fmt(ev.best_lb, 2)} ({m.verdict.source})")
            lines.append(f"- **{m.name}** (no DP, {acc_txt}): {head}; {lb}, and nothing bounds what "
                         "a stronger attack could learn.")
            continue
        adv, allowed = met.advantage, m.bounds.max_advantage
        c = compare(adv, allowed)
        if c > 0:
            adv_txt = (f"Its advantage {fmt(adv)} is **above** the {fmt(allowed)} that ε allows: no (ε, δ)-DP "
                       "training can produce that, so the claim or the measurement is wrong")
        elif c == 0:
            adv_txt = f"Its advantage {fmt(adv)} equals the {fmt(allowed)} that ε allows, the most DP permits"
        else:
            adv_txt = f"Its advantage {fmt(adv)} sits under the {fmt(allowed)} that ε allows"
        if ev.best_lb is None:
            lb_txt = "no ε lower bound could be computed"
        elif ev.claimed is not None and ev.best_lb > ev.claimed:
            lb_txt = (f"the empirical lower bound on ε is {fmt(ev.best_lb, 2)} ({ev.best_source}), **above** the "
                      f"claimed ε {fmt(ev.claimed, 2)}: the claim is disproved")
        else:
            lb_txt = (f"the empirical lower bound on ε is {fmt(ev.best_lb, 2)}, not above the claimed ε "
                      f"{fmt(ev.claimed, 2)}")
        seen = "" if m.training.observed else ", training not observed: the ε is the user's claim"
        sentence = (f"- **{m.name}** (ε = {fmt(ev.claimed, 2)}, {acc_txt}{seen}): {head}. {adv_txt}; "
                    f"{lb_txt}.")
        det = detectable_sentence(m)
        if det is not None:
            sentence += " " + det
        elif ev.claimed is not None:
            sentence += " Its power was not measured, so **passing shows nothing**."
        if ev.missing:
            sentence += f" **Bounds missing** for: {', '.join(ev.missing)}."
        lines.append(sentence)
    lines.append("- An attack that fails does not prove privacy; an ε lower bound above the claimed ε disproves it.")
    return lines


# ------------------------------------------------------------------------------------------- markup

_STRONG = re.compile(r"\*\*(.+?)\*\*")


def plain(text: str) -> str:
    """Text for a terminal: the markup removed."""
    return text.replace("**", "")


def to_html(text: str) -> str:
    """Escaped HTML, with **x** as <strong>x</strong>."""
    return _STRONG.sub(r"<strong>\1</strong>", html.escape(text, quote=True))
