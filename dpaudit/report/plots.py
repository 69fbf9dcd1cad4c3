"""Figures drawn from a typed Report alone, so any saved report can be re-plotted."""
from __future__ import annotations

import io
import math

import numpy as np

from dpaudit.core.bounds import max_advantage
from dpaudit.schema import Report

FIGURES = {
    "roc": "roc.png",
    "epsilon_vs_success": "epsilon_vs_success.png",
    "epsilon_per_epoch": "epsilon_per_epoch.png",
    "whitebox": "whitebox.png",
}
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def roc_figure(report: Report) -> bytes:
    """ROC on log-log axes (Carlini et al. 2022): what matters is the TPR at very low FPR."""
    plt = _plt()
    attacks = sorted({a.attack for m in report.models for a in m.attacks})
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(5.2 * max(1, len(attacks)), 4.4), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        floor = 1.0
        for m in report.models:
            for a in m.attacks:
                if a.attack != attack:
                    continue
                met = a.metrics
                fpr, tpr = np.asarray(met.roc_fpr), np.asarray(met.roc_tpr)
                keep = fpr > 0
                floor = min(floor, 1.0 / max(met.n_nonmembers, 1))
                lo, hi = met.auc_ci
                ax.plot(fpr[keep], tpr[keep], label=f"{m.name} (AUC {met.auc:.3f} [{lo:.3f}, {hi:.3f}])")
        grid = np.logspace(math.log10(floor), 0, 50)
        ax.plot(grid, grid, "k--", lw=0.8, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1.05)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{attack} attack on the target")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, which="both", alpha=0.2)
    return _png(fig)


def epsilon_vs_success_figure(report: Report) -> bytes:
    """Measured attack success against epsilon, under the most that epsilon allows."""
    plt = _plt()
    delta = report.config.delta
    dp_eps = [m.training.epsilon for m in report.models if m.dp and m.training.epsilon is not None]
    right = max(dp_eps + [8.0]) * 1.6
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    grid = np.linspace(0.01, right, 200)
    ax2.plot(grid, [max_advantage(e, delta) for e in grid], "k-", lw=1, label="max advantage ε allows")
    attacks = sorted({a.attack for m in report.models for a in m.attacks})
    for i, attack in enumerate(attacks):
        xs, auc, auc_err, adv, adv_err = [], [], [], [], []
        for m in report.models:
            for a in m.attacks:
                if a.attack != attack:
                    continue
                met = a.metrics
                x = m.training.epsilon if m.dp and m.training.epsilon is not None else right
                xs.append(x)
                auc.append(met.auc)
                auc_err.append([met.auc - met.auc_ci[0], met.auc_ci[1] - met.auc])
                adv.append(met.advantage)
                adv_err.append([met.advantage - met.advantage_ci[0], met.advantage_ci[1] - met.advantage])
        off = (i - (len(attacks) - 1) / 2) * right * 0.01
        # A percentile bootstrap interval need not contain its point estimate; draw the part that exists
        # rather than refuse the figure (matplotlib rejects negative error bars).
        ax1.errorbar(np.array(xs) + off, auc, yerr=np.maximum(np.array(auc_err).T, 0), fmt="o", capsize=3,
                     label=attack)
        ax2.errorbar(np.array(xs) + off, adv, yerr=np.maximum(np.array(adv_err).T, 0), fmt="o", capsize=3,
                     label=attack)
    for ax, name, chance in ((ax1, "attack AUC", 0.5), (ax2, "membership advantage (TPR − FPR)", 0.0)):
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
        ax.axvline(right, color="grey", ls="--", lw=0.6)
        ax.text(right, ax.get_ylim()[0], " non-DP", rotation=90, va="bottom", ha="right", fontsize=8)
        ax.set_xlabel("ε spent (accountant)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.2)
    ax2.set_ylim(-0.05, 1.0)
    return _png(fig)


def epsilon_per_epoch_figure(report: Report, size=(5.0, 3.2)) -> bytes | None:
    plt = _plt()
    dp = [m for m in report.models if m.dp]
    if not dp:
        return None
    fig, ax = plt.subplots(figsize=size)
    for m in dp:
        ep = m.training.epsilon_per_epoch
        target = m.target_epsilon if m.target_epsilon is not None else m.training.target_epsilon
        ax.plot(range(1, len(ep) + 1), ep, marker=".",
                label=f"{m.name}" + (f" (target {target:g})" if target is not None else ""))
        if target is not None:
            ax.axhline(target, color="grey", ls=":", lw=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ε spent")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.2)
    return _png(fig)


def whitebox_figure(report: Report) -> bytes | None:
    """White-box gradient canaries: what ran against what the accountant was told. Left, the observed noise σ̂
    and sampling rate q̂ divided by the claimed σ and q, with their intervals (1 = as claimed); right, the
    empirical ε (the same accountant on σ̂, q̂) with its interval beside the claimed ε."""
    plt = _plt()
    wb = [(m.name, m.whitebox) for m in report.models if m.whitebox is not None]
    if not wb:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    def known(*vals) -> bool:  # with very few canaries an estimate or its interval may not exist (None / NaN)
        return all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals)

    for i, (_name, w) in enumerate(wb):
        for j, (est, ci, claimed, label) in enumerate(((w.sigma_hat, w.sigma_ci, w.claimed_sigma, "σ̂ / σ"),
                                                        (w.q_hat, w.q_ci, w.claimed_q, "q̂ / q"))):
            if not known(est, claimed, *ci) or not claimed:
                continue
            est, (lo, hi) = est / claimed, (v / claimed for v in ci)
            x = i + (j - 0.5) * 0.25
            ax1.errorbar([x], [est], yerr=[[max(est - lo, 0.0)], [max(hi - est, 0.0)]], fmt="o" if j == 0 else "s",
                         capsize=3, color=f"C{j}", label=label if i == 0 else None)
        claimed, (lo, hi) = w.claimed_epsilon, (w.empirical_epsilon_ci or (None, None))
        est = w.empirical_epsilon
        if known(est, lo, hi):
            ax2.errorbar([i], [est], yerr=[[max(est - lo, 0.0)], [max(hi - est, 0.0)]], fmt="o", capsize=3,
                         color="C2", label="empirical ε (σ̂, q̂)" if i == 0 else None)
        if known(claimed):
            ax2.scatter([i], [claimed], marker="_", s=400, color="k", label="claimed ε" if i == 0 else None)
        if not w.conformant:
            ax1.annotate("nonconformant", (i, ax1.get_ylim()[1]), ha="center", va="top", color="C3", fontsize=8)
    ax1.axhline(1.0, color="grey", ls=":", lw=0.8)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(wb)), [n for n, _ in wb])
        ax.grid(True, alpha=0.2)
        ax.legend(fontsize=8)
    ax1.set_ylabel("observed / claimed")
    ax2.set_ylabel("ε")
    ax1.set_title("noise and sampling as observed", fontsize=9)
    ax2.set_title("ε of what ran", fontsize=9)
    return _png(fig)


def all_figures(report: Report) -> dict[str, bytes]:
    """{file name: PNG bytes} for every figure that applies to the report."""
    out = {}
    if any(m.attacks for m in report.models):  # a white-box-only report (dpaudit.sources.probe) has no attack to draw
        out = {FIGURES["roc"]: roc_figure(report), FIGURES["epsilon_vs_success"]: epsilon_vs_success_figure(report)}
    ep = epsilon_per_epoch_figure(report)
    if ep is not None:
        out[FIGURES["epsilon_per_epoch"]] = ep
    wb = whitebox_figure(report)
    if wb is not None:
        out[FIGURES["whitebox"]] = wb
    return out
