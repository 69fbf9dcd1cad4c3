"""How an audit's confidence is planned and its report assembled, for every source of evidence alike (trained
here, a --target, outputs only, a user's own training script through the probe): the Bonferroni shares of each
verdict's bounds, the α-spending across `dpaudit attack` re-runs, and the one function that turns the stages'
results into the typed report (built directly: ``Report.from_json`` runs only where a file is read). Torch-free."""
from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone

from dpaudit.config import AuditConfig
from dpaudit.core.bounds import (
    ALPHA_SCHEDULE,
    Decision,
    alpha_share,
    alpha_spent,
    evidence_confidences,
    family_confidence,
)
from dpaudit.schema import (
    SCHEMA,
    AlphaSpending,
    DatasetInfo,
    ModelAudit,
    Platform,
    Recipe,
    Recipes,
    Report,
    ReportConfig,
    SplitInfo,
    Verdict,
    validate,
)
from dpaudit.version import __version__


@dataclass(frozen=True)
class BoundPlan:
    """At what confidence each bound of a model's verdict is computed, so that the verdict holds at
    ``per_model`` and all DP verdicts of the report together at the configured confidence."""
    attack: float  # each attack's ε bound (and its ceiling)
    canary: float  # each canary route's: black-box canaries, white-box one-run, white-box CP, conformance tests
    n_bounds: int
    n_attacks: int
    per_model: float
    d: int  # DP models in the family

    @property
    def correction(self) -> str:
        if self.n_attacks and self.n_bounds > self.n_attacks and self.attack != self.canary:
            how = (f"weighted Bonferroni over {self.n_bounds} bound(s), weights fixed in advance: crafted canaries "
                   f"take half of α (each of their {self.n_bounds - self.n_attacks} route(s) at {self.canary:.4g}), "
                   f"the {self.n_attacks} attack(s) the other half (each at {self.attack:.4g})")
        else:
            how = f"Bonferroni: each of {self.n_bounds} bound(s) at {min(self.attack, self.canary):.4g}"
        return f"{how}, so this verdict holds at {self.per_model:.4g}"


def run_confidence(cfg: AuditConfig, rerun: int = 0) -> float:
    """The confidence this run's verdicts hold together at: 1 − α · alpha_share(rerun), α = 1 − cfg.confidence
    (the original audit α/2, the r-th re-run α/2^(r+1)), so that with every re-run on the same models all their
    verdicts hold together at cfg.confidence.

    >>> from types import SimpleNamespace as NS
    >>> round(run_confidence(NS(confidence=0.95)), 6), round(run_confidence(NS(confidence=0.95), 1), 6)
    (0.975, 0.9875)
    """
    return 1.0 - (1.0 - cfg.confidence) * alpha_share(rerun)


def alpha_spending(cfg: AuditConfig, rerun: int = 0, spent_before: float | None = None) -> AlphaSpending:
    """The report's record of α spent on its models: this run's share and the total with earlier runs.
    ``spent_before``: what the earlier runs recorded (default: the schedule's, α(1 − 2^-rerun))."""
    alpha = 1.0 - cfg.confidence
    before = alpha_spent(alpha, rerun - 1) if rerun > 0 else 0.0
    if spent_before is not None:
        before = float(spent_before)
    this = alpha * alpha_share(rerun)
    return AlphaSpending(schedule=ALPHA_SCHEDULE, rerun=int(rerun), alpha=alpha, alpha_this_run=this,
                         alpha_spent_before=before, alpha_spent_total=before + this,
                         combined_confidence=1.0 - (before + this))


def bound_confidence(cfg: AuditConfig, dp: bool = True, rerun: int = 0) -> BoundPlan:
    """The confidences of a verdict's bounds, so that every verdict of the report holds together at
    ``run_confidence(cfg, rerun)`` (the run's share of α: see :func:`run_confidence`).

    Two Bonferroni corrections: a verdict takes the largest of n bounds (one per attack, one from the
    canaries, two from white-box gradient canaries and one for their conformance tests), split by
    :func:`~dpaudit.core.bounds.evidence_confidences` (canaries half of α, attacks the other half); and the
    report's overall verdict (and `dpaudit check --forbid-violation`) fails if any of its d DP models shows a
    violation, so each DP model's verdict is held at α_model = α/d. Then P(any false violation in the report)
    ≤ α. A model without DP makes no claim, so it is outside that family (its bounds share α), and
    white-box canaries, which audit DP-SGD, are not run on it."""
    # White-box gradient canaries are three routes to a failing verdict: two bounds and the conformance family
    # (its five tests share one share of α), so they take three shares.
    routes = (1 if cfg.canaries > 0 else 0) + (3 if dp and cfg.gradient_canaries > 0 else 0)
    n_attacks = len(cfg.attacks)
    d = max(sum(1 for e in cfg.epsilons if e != float("inf")), 1)
    conf = run_confidence(cfg, rerun)
    per_model = family_confidence(conf, d) if dp else conf
    attack, canary = evidence_confidences(per_model, n_attacks, routes)
    return BoundPlan(attack, canary, max(n_attacks + routes, 1), n_attacks, per_model, d)


def attack_options(cfg: AuditConfig) -> dict:
    return {"shadow_classifier": cfg.shadow_classifier, "shadow_per_class": cfg.shadow_per_class}


def report_config(cfg: AuditConfig) -> ReportConfig:
    """The configuration as the report records it: every AuditConfig field, and the recipe each kind of model
    trained with (the given options over the recipe's defaults)."""
    d = asdict(cfg)
    kw = {f.name: d[f.name] for f in fields(ReportConfig) if f.name in d}
    for k in ("data_dir", "cache_dir"):  # a pathlib.Path from the Python API is written as its string
        if kw.get(k) is not None:
            kw[k] = str(kw[k])
    kw.update(epsilons=tuple(float(e) for e in cfg.epsilons), attacks=tuple(cfg.attacks),
              categorical=tuple(cfg.categorical), hidden=None if cfg.hidden is None else tuple(cfg.hidden),
              recipes=Recipes(non_dp=Recipe(**cfg.recipe(math.inf)), dp=Recipe(**cfg.recipe(1.0))))
    return ReportConfig(**kw)


def make_verdict(decision: Decision, *, confidence: float, per_bound_confidence: float,
                 canary_confidence: float | None, n_bounds: int, family_confidence: float, correction: str,
                 power_method: str | None) -> Verdict:
    """The report's verdict: ``dpaudit.core.bounds.decide_verdict``'s decision with the confidence plan it was
    made at (its per-evidence numbers stand in each attack's and route's own block, not here)."""
    d = decision
    return Verdict(
        claimed_epsilon=d.claimed_epsilon, empirical_epsilon_lb=float(d.empirical_epsilon_lb), source=d.source,
        ratio=d.ratio, status=str(getattr(d.status, "value", d.status)), text=d.text, confidence=confidence,
        per_bound_confidence=per_bound_confidence, n_bounds=int(n_bounds), correction=correction, ceiling=d.ceiling,
        could_detect=d.could_detect, family_confidence=family_confidence, ceiling_source=d.ceiling_source,
        rejected_conformance=d.rejected_conformance, canary_confidence=canary_confidence,
        detectable_epsilon=d.detectable_epsilon, detectable_source=d.detectable_source,
        power_multiple=d.power_multiple, power_method=power_method, next_step=d.next_step)


def report_document(cfg: AuditConfig, *, command: str | None, workers: int | None, device: str, dataset: dict,
                    split: dict, models: list[ModelAudit], phases: dict, worker_s: dict, observed: bool,
                    rerun: int = 0, spent_before: float | None = None,
                    threshold_text: str | None = None) -> Report:
    """The typed report of any audit (trained here, a --target, outputs only, the probe), from its stages' typed
    models; ``dataset`` and ``split`` are the data's provenance and the split's summary."""
    report = Report(
        schema=SCHEMA,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command,
        versions=versions(),
        platform=Platform(machine=platform.machine(), cpus=os.cpu_count(), workers=workers, device=device),
        config=report_config(cfg),
        dataset=DatasetInfo(**dataset),
        split=SplitInfo(**split),
        threshold_policy=threshold_text if threshold_text is not None else threshold_policy(not observed),
        family_correction=family_text(cfg, rerun, spent_before),
        observed_training=observed,
        alpha_spending=alpha_spending(cfg, rerun, spent_before),
        models=tuple(models),
        timing_s={k: round(v, 3) for k, v in phases.items()},
        # Seconds each epsilon's models took inside the workers (training + inference), summed over its
        # K + 1 models: they overlap in time, so they do not add up to the wall time above.
        worker_s=worker_s,
    )
    # What a reader of report.json would refuse is refused here, in one line, before anything is written (a
    # plug-in attack's details that are not JSON, a path where a string belongs).
    validate(report)
    return report


def threshold_policy(external: bool) -> str:
    text = ("Every attack threshold is chosen on the reference models' scores and known membership, then applied "
            "once to the target; the target's membership is used only to count outcomes.")
    if external:
        # dpaudit did not draw the target's members: the bounds compare them with non-members it drew
        text += (" The target's members were chosen by its owner, not drawn by dpaudit: the attack bounds assume "
                 "they are like the non-members in every way but membership (chosen at random); members that "
                 "differ in distribution (a time slice, one class first) can make attacks measure that "
                 "difference instead of leakage.")
    return text


def family_text(cfg: AuditConfig, rerun: int = 0, spent_before: float | None = None) -> str:
    """How the report's verdicts hold together, in words, with the α-spending across re-runs."""
    plan = bound_confidence(cfg, rerun=rerun)
    per_model, d = plan.per_model, plan.d
    spend = alpha_spending(cfg, rerun, spent_before)
    run = "this audit" if rerun == 0 else f"re-run {rerun} on these models"
    tail = (f"; {run} spends α = {spend.alpha_this_run:.4g} of the {spend.alpha:.4g} budget "
            f"({'the original audit α/2' if rerun == 0 else f'α/2^{rerun + 1}'}), so with every run on these models "
            f"so far the verdicts hold together at {spend.combined_confidence:.4g}, and with any number of later "
            f"`dpaudit attack` re-runs at no less than "
            f"{1 - (spend.alpha_spent_before + 2 * spend.alpha_this_run):.4g}")
    if not any(math.isfinite(e) for e in cfg.epsilons):
        return "no DP model: no verdict to correct across models" + tail
    return (f"Bonferroni over {d} DP model(s): each verdict at {per_model:.4g}, so all of them hold together at "
            f"{run_confidence(cfg, rerun):.4g}" + tail)


def versions() -> dict:
    import importlib.metadata as md

    out = {"dpaudit": __version__, "python": platform.python_version()}
    for pkg in ("torch", "opacus", "numpy", "scipy", "scikit-learn", "dp-accounting"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
