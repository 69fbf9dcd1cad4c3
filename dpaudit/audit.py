"""One audit, as a short pipeline: plan the training jobs → run them on an executor → fill the signal
matrices once → run every registered attack and bound → build the report.

Each step lives in its own module (config, jobs, executors, signals, attack_registry, bounds); this one
only wires them and turns their results into the report's models."""
from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone

import numpy as np

from . import __version__
from .accounting import cross_check
from .attack_registry import AttackInput, check_attacks, run_attack
from .bounds import best_threshold_epsilon_lb, max_advantage, max_balanced_accuracy, one_run_audit
from .config import AuditConfig, model_name
from .data import Dataset, load_dataset
from .executors import get_executor
from .isolation import preserved_global_state
from .jobs import model_seed, plan_jobs, quiet_library_warnings
from .signals import Signals
from .splits import Splits, make_splits

SCHEMA = "dpaudit.report/1"
VIOLATION = "VIOLATION: the model leaks more than its ε allows"
CONSISTENT = "consistent"

__all__ = ["AuditConfig", "run_audit", "model_name", "model_seed"]


# ---- attacks and bounds --------------------------------------------------------------------------

def bound_confidence(cfg: AuditConfig) -> tuple[float, int]:
    """Confidence of each ε lower bound, and how many bounds a verdict takes the best of.

    A verdict reports the largest of several bounds (one per attack, one from the canaries). The largest of
    n bounds each failing with probability α/n fails with probability at most α (Bonferroni), so that
    the verdict holds at ``cfg.confidence`` rather than at 1 − n·α."""
    n = len(cfg.attacks) + (1 if cfg.canaries > 0 else 0)
    n = max(n, 1)
    return 1.0 - (1.0 - cfg.confidence) / n, n


def _evaluate_attack(name: str, inp: AttackInput, target_in: np.ndarray, cfg: AuditConfig, delta: float,
                     seed: int, confidence: float) -> dict:
    """Scores from the attack (which never sees ``target_in``), then thresholds from the reference
    scores only; the target's membership is used once, to count outcomes."""
    from attacks.metrics import best_balanced_threshold, evaluate

    scored = run_attack(name, inp)
    ref_in = inp.ref_in
    thr = best_balanced_threshold(scored.reference.ravel(), ref_in.ravel())
    source = f"maximises balanced accuracy on {ref_in.shape[0]} reference models' known members/non-members"
    metrics = evaluate(scored.target, target_in, threshold=thr, threshold_source=source, n_boot=cfg.n_boot,
                       seed=seed)
    eps_lb = best_threshold_epsilon_lb(scored.reference.ravel(), ref_in.ravel(), scored.target, target_in,
                                       delta=delta, confidence=confidence)
    return {"attack": name, "description": scored.description, "metrics": metrics.to_dict(),
            "epsilon_lb": eps_lb.to_dict(), "target_scores": scored.target}


def _canary_audit(canary_logits: np.ndarray, splits: Splits, delta: float, confidence: float) -> dict:
    sig = Signals(logits=canary_logits[None], labels=splits.canary_labels)
    scores = -sig.losses[0]
    res = one_run_audit(scores, splits.canary_in, delta=delta, confidence=confidence)
    return {"method": "one-run (Steinke, Nasr, Jagielski 2023)", "m": int(splits.canary_idx.size),
            "included": int(splits.canary_in.sum()), "score": "negative loss on the canary's wrong label",
            **res.to_dict(), "scores": scores}


def _verdict(claimed: float | None, attacks: list[dict], canary: dict | None, confidence: float,
             per_bound: float, n_bounds: int) -> dict:
    stats = {"confidence": confidence, "per_bound_confidence": per_bound, "n_bounds": n_bounds,
             "correction": f"Bonferroni: each of {n_bounds} bound(s) at {per_bound:.4g}, so the best holds at {confidence:g}"}
    cands = [(a["epsilon_lb"]["value"], f"{a['attack']} attack") for a in attacks]
    if canary is not None:
        cands.append((canary["epsilon_lb"], "canaries (one run)"))
    best, source = max(cands, default=(0.0, "none"))
    if best <= 0:
        source = "none (no test rejected ε = 0)"
    if claimed is None:
        return {"claimed_epsilon": None, "empirical_epsilon_lb": best, "source": source, "ratio": None,
                "status": "no DP claim", "text": "no DP guarantee to check (trained without DP)", **stats}
    status = VIOLATION if best > claimed else CONSISTENT
    return {"claimed_epsilon": claimed, "empirical_epsilon_lb": best, "source": source,
            "ratio": best / claimed if claimed > 0 else None, "status": "violation" if best > claimed else "consistent",
            "text": status, **stats}


def _model_audit(cfg: AuditConfig, ei: int, eps: float, results: list[dict], data: Dataset, splits: Splits,
                 per_bound: float, n_bounds: int, extras: dict, phases: dict) -> dict:
    """Attacks, canaries, accounting cross-check and verdict for one privacy setting's K + 1 models."""
    name = model_name(eps)
    target = results[0]
    rec = target["record"]
    delta = cfg.delta
    pool_labels = data.labels[splits.pool_idx]
    inp = AttackInput(
        pool=Signals(logits=np.stack([r["pool_logits"] for r in results]), labels=pool_labels),
        ref_in=splits.membership[1:],
        population=Signals(logits=np.stack([r["test_logits"] for r in results]), labels=data.labels[splits.test_idx]),
        options={"shadow_classifier": cfg.shadow_classifier, "shadow_per_class": cfg.shadow_per_class},
        seed=cfg.seed)
    t = time.perf_counter()
    attack_results = []
    for ai, a in enumerate(cfg.attacks):
        res = _evaluate_attack(a, inp, splits.membership[0], cfg, delta, seed=model_seed(cfg.seed, ei, 1000 + ai),
                               confidence=per_bound)
        extras["scores"][(name, a)] = (splits.pool_idx, splits.membership[0], res.pop("target_scores"))
        attack_results.append(res)
    phases[f"attacks:{name}"] = time.perf_counter() - t
    t = time.perf_counter()
    canary = None
    if cfg.canaries > 0:
        canary = _canary_audit(target["canary_logits"], splits, delta, per_bound)
        extras["scores"][(name, "canary")] = (splits.canary_idx, splits.canary_in, canary.pop("scores"))
        canary["test_accuracy_with_canaries"] = rec["test_accuracy"]
        canary["test_accuracy_without_canaries"] = float(np.mean([r["record"]["test_accuracy"] for r in results[1:]])) \
            if len(results) > 1 else None
        canary["without_canaries_from"] = "mean over the reference models (same recipe, no canaries)"
    check = None
    if rec["dp"]:
        check = cross_check(rec["epsilon"], rec["accountant"], rec["sample_rate"], rec["noise_multiplier"],
                            rec["steps"], rec["delta"]).to_dict()
    claimed = rec["epsilon"] if rec["dp"] else None
    phases[f"bounds:{name}"] = time.perf_counter() - t
    return {
        "name": name, "dp": rec["dp"], "target_epsilon": eps if rec["dp"] else None,
        "training": rec,
        "reference_models": {
            "k": cfg.shadow_models,
            "test_accuracy": [r["record"]["test_accuracy"] for r in results[1:]],
            "epsilon": [r["record"]["epsilon"] for r in results[1:]],
            "seeds": [r["record"]["seed"] for r in results[1:]],
            "cache_hits": sum(r["cache_hit"] for r in results),
        },
        "accountant_check": check,
        "bounds": {"max_balanced_accuracy": max_balanced_accuracy(claimed, delta) if claimed is not None else 1.0,
                   "max_advantage": max_advantage(claimed, delta) if claimed is not None else 1.0,
                   "delta": delta},
        "attacks": attack_results,
        "canary": canary,
        "verdict": _verdict(claimed, attack_results, canary, cfg.confidence, per_bound, n_bounds),
    }


# ---- the audit -----------------------------------------------------------------------------------

def versions() -> dict:
    import importlib.metadata as md

    out = {"dpaudit": __version__, "python": platform.python_version()}
    for pkg in ("torch", "opacus", "numpy", "scipy", "scikit-learn", "dp-accounting"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def default_workers(cfg: AuditConfig) -> int:
    return cfg.jobs or max(1, min(os.cpu_count() or 1, len(cfg.epsilons) * (1 + cfg.shadow_models)))


def run_audit(cfg: AuditConfig, *, progress: bool = True, command: str | None = None,
              dataset: Dataset | None = None, tamper=None, require_cached: bool = False,
              executor=None) -> tuple[dict, dict]:
    """Run the whole audit. Returns (report, extras): the report is the JSON-ready document;
    extras holds per-record scores (for --save-scores), which are too large for the report.

    ``tamper`` is for dpaudit's self-tests only: a picklable function applied to the DP targets'
    optimizer after ``make_private`` (e.g. one that switches the noise off), to prove the audit
    catches training that departs from its accounting. Tampered runs are never cached.
    ``executor``: an object with the ``dpaudit.executors.Executor`` interface; default ``cfg.executor``."""
    cfg.validate()
    check_attacks(cfg.attacks, cfg.shadow_models)
    with preserved_global_state():
        quiet_library_warnings()
        return _run(cfg, progress, command, dataset, tamper, require_cached, executor)


def _run(cfg, progress, command, dataset, tamper, require_cached, executor):
    phases: dict[str, float] = {}
    t = time.perf_counter()
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    splits = make_splits(data.labels, members=cfg.members, n_models=1 + cfg.shadow_models, n_test=cfg.n_test,
                         canaries=cfg.canaries, seed=cfg.seed)
    phases["data"] = time.perf_counter() - t
    if executor is None:
        executor = get_executor(cfg.executor, workers=default_workers(cfg), device=cfg.device)
    jobs = plan_jobs(cfg, data, splits, tamper=tamper, require_cached=require_cached)
    t = time.perf_counter()
    all_results = executor.run(jobs, data.images, data.labels, progress=progress, desc="training")
    phases["train"] = time.perf_counter() - t
    per_bound, n_bounds = bound_confidence(cfg)
    models, extras, worker_s = [], {"scores": {}}, {}
    for ei, eps in enumerate(cfg.epsilons):
        results = sorted((r for j, r in zip(jobs, all_results) if j["ei"] == ei), key=lambda r: r["k"])
        worker_s[model_name(eps)] = round(sum(r["train_s"] + r["inference_s"] for r in results), 3)
        models.append(_model_audit(cfg, ei, eps, results, data, splits, per_bound, n_bounds, extras, phases))
    report = {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "versions": versions(),
        "platform": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "workers": getattr(executor, "workers", None), "device": cfg.device},
        "config": cfg.to_dict(),
        "dataset": data.provenance.to_dict(),
        "split": splits.summary(),
        "threshold_policy": ("Every attack threshold is chosen on the reference models' scores and known "
                             "membership, then applied once to the target; the target's membership is used "
                             "only to count outcomes."),
        "models": models,
        "timing_s": {k: round(v, 3) for k, v in phases.items()},
        # Seconds each epsilon's models took inside the workers (training + inference), summed over its
        # K + 1 models: they overlap in time, so they do not add up to the wall time above.
        "worker_s": worker_s,
    }
    return report, extras
