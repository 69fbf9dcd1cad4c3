"""One audit: train the target and K reference models per privacy setting, fill the signal matrices
once, run every attack on them, and put measured leakage beside what the epsilon allows."""
from __future__ import annotations

import math
import os
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .accounting import cross_check
from .bounds import (best_threshold_epsilon_lb, max_advantage, max_balanced_accuracy, one_run_audit)
from .data import Dataset, load_dataset
from .errors import DPAuditError
from .memory import release_freed_memory
from .recipes import DP_RECIPE, NON_DP_RECIPE
from .signals import Signals, model_logits
from .splits import Splits, make_splits
from .train import TrainConfig, cache_key, train_model

SCHEMA = "dpaudit.report/1"
ATTACKS = ("loss", "shadow")
VIOLATION = "VIOLATION: the model leaks more than its ε allows"
CONSISTENT = "consistent"


@dataclass(frozen=True)
class AuditConfig:
    """Every field has a default; the defaults are the reference audit on the embedded digits."""

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    download: bool = False
    members: int = 1750
    n_test: int = 1000
    epsilons: tuple[float, ...] = (math.inf, 8.0, 1.0)
    delta: float = 1e-5
    model: str = "simple-cnn"
    # None takes the recipe for the model's kind (NON_DP_RECIPE / DP_RECIPE); a value applies to both.
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "hooks"
    shadow_models: int = 4
    attacks: tuple[str, ...] = ATTACKS
    shadow_classifier: str = "gbm"
    shadow_per_class: bool = False
    canaries: int = 0
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    jobs: int = 0  # 0: as many worker processes as cores allow
    device: str = "cpu"
    cache_dir: str | None = None

    def recipe(self, epsilon: float) -> dict:
        base = DP_RECIPE if math.isfinite(epsilon) else NON_DP_RECIPE
        given = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum}
        return {k: (given[k] if given[k] is not None else v) for k, v in base.items()}

    def train_config(self, epsilon: float) -> TrainConfig:
        return TrainConfig(model=self.model, epsilon=epsilon, delta=self.delta, **self.recipe(epsilon),
                           max_grad_norm=self.max_grad_norm, accountant=self.accountant,
                           grad_sample_mode=self.grad_sample_mode, seed=self.seed, device=self.device)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilons"] = [("inf" if not math.isfinite(e) else e) for e in self.epsilons]
        d["attacks"] = list(self.attacks)
        d["recipes"] = {"non_dp": self.recipe(math.inf), "dp": self.recipe(1.0)}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AuditConfig":
        """Rebuild the configuration a report recorded (its ``config`` block)."""
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names - {"recipes"}
        if unknown:
            raise DPAuditError(f"report config has unknown fields {sorted(unknown)}; written by another version?")
        kw = {k: v for k, v in d.items() if k in names}
        kw["epsilons"] = tuple(float(e) for e in kw.get("epsilons", ()))
        kw["attacks"] = tuple(kw.get("attacks", ()))
        return cls(**kw)

    def validate(self) -> None:
        for e in self.epsilons:
            if not e > 0 or math.isnan(e):
                raise DPAuditError(f"every epsilon must be > 0 (inf for no DP), got {e}")
        if not 0 < self.delta < 1:
            raise DPAuditError(f"--delta must be in (0, 1), got {self.delta}")
        if self.members < 1:
            raise DPAuditError(f"--members must be at least 1, got {self.members}")
        if self.canaries < 0:
            raise DPAuditError(f"--canaries must be >= 0, got {self.canaries}")
        # The target trains on its members plus the canaries drawn in, at most all of them.
        n_max = self.members + self.canaries
        if self.delta >= 1.0 / n_max:
            raise DPAuditError(f"--delta {self.delta:g} is not below 1/N = {1.0 / n_max:.3g} "
                               f"for up to N = {n_max} training records (members + canaries); choose --delta < 1/N")
        if self.shadow_models < 1 and ("loss" in self.attacks or "shadow" in self.attacks):
            raise DPAuditError("--shadow-models must be at least 1 (thresholds come from reference models)")
        if "shadow" in self.attacks and self.shadow_models < 2:
            raise DPAuditError("--shadow-models must be at least 2 for the shadow attack "
                               "(its threshold is cross-fitted across reference models)")
        unknown = set(self.attacks) - set(ATTACKS)
        if unknown:
            raise DPAuditError(f"unknown attack(s) {sorted(unknown)}; choose from {', '.join(ATTACKS)}")
        if not 0.5 <= self.confidence < 1:
            raise DPAuditError(f"--confidence must be in [0.5, 1), got {self.confidence}")


def model_name(epsilon: float) -> str:
    return "non-dp" if not math.isfinite(epsilon) else f"dp-eps{epsilon:g}"


def model_seed(seed: int, eps_index: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, eps_index, k]).generate_state(1)[0] % (2**31))


# ---- training jobs (module-level so worker processes can import them) ---------------------------

_DATA: dict = {}


def quiet_library_warnings() -> None:
    """Opacus and torch warn about things dpaudit handles on purpose (non-secure RNG is recorded in the
    report; the input-gradient hook warning is benign); absl logs RDP orders it drops."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
    warnings.filterwarnings("ignore", message=".*Using a non-full backward hook.*")
    logging.getLogger("absl").setLevel(logging.ERROR)


def _init_worker(images: np.ndarray, labels: np.ndarray, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _DATA["images"], _DATA["labels"] = images, labels


def _load_cached(path: Path, device: str):
    """(module, record) from the model cache, or None when absent or damaged (e.g. a run killed between
    writing the weights and the record): a cache entry is only ever a shortcut, so a bad one is retrained
    and overwritten rather than failing the audit."""
    from .train import TrainingRecord, load_model

    if not (path.is_file() and path.with_name(path.name + ".json").is_file()):
        return None
    try:
        module, meta = load_model(path, device=device)
        return module, TrainingRecord.from_dict(meta["record"])
    except DPAuditError as exc:
        warnings.warn(f"ignoring damaged cache entry {path.name}: {exc}", stacklevel=2)
        return None


def _train_job(job: dict) -> dict:
    """Train (or load from cache) one model and return its record, weights and signal rows."""
    import torch

    from .train import save_model

    quiet_library_warnings()
    images, labels = _DATA["images"], _DATA["labels"]
    cfg: TrainConfig = job["cfg"]
    x, y = images[job["train_idx"]], labels[job["train_idx"]]
    if job["canary_idx"] is not None and len(job["canary_idx"]):
        x = np.concatenate([x, images[job["canary_idx"]]])
        y = np.concatenate([y, job["canary_labels"]])
    cache_path = Path(job["cache_dir"]) / f"{job['key']}.pt" if job.get("cache_dir") else None
    t0 = time.perf_counter()
    cached = _load_cached(cache_path, cfg.device) if cache_path is not None else None
    if cached is not None:
        module, record = cached
        hit = True
    elif job.get("require_cached"):
        raise DPAuditError(f"{job['desc']} is not in the model cache {job.get('cache_dir')}; run "
                           f"`dpaudit audit --cache-dir DIR` with the same settings first")
    else:
        trained = train_model(cfg, x, y, test_images=images[job["test_idx"]], test_labels=labels[job["test_idx"]],
                              progress=job.get("progress", False), desc=job["desc"],
                              after_make_private=job.get("tamper"))
        module, record, hit = trained.module, trained.record, False
        if cache_path is not None:
            save_model(trained, cache_path)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    pool_logits = model_logits(module, images[job["pool_idx"]], dev)
    canary_logits = model_logits(module, images[job["canary_eval_idx"]], dev) if job["canary_eval_idx"] is not None else None
    del module
    release_freed_memory()  # a worker trains many models in turn; don't let each one's heap pile up
    return {"k": job["k"], "record": record.to_dict(), "pool_logits": pool_logits, "canary_logits": canary_logits,
            "cache_hit": hit, "train_s": train_s, "inference_s": time.perf_counter() - t1}


def _job_cost(job: dict) -> float:
    """Relative training cost, for longest-first scheduling: record-epochs, DP steps dearer."""
    cfg: TrainConfig = job["cfg"]
    n = len(job["train_idx"]) + (0 if job["canary_idx"] is None else len(job["canary_idx"]))
    return cfg.epochs * n * (1.6 if cfg.dp else 1.0)


def _run_jobs(jobs: list[dict], images, labels, n_workers: int, progress: bool, desc: str) -> list[dict]:
    """Train every job in one pool of worker processes and return the results in the jobs' order.

    One pool for the whole audit (not one per epsilon) pays the workers' start once and leaves no core
    idle while the last model of one epsilon trains; longest jobs go first so the pool drains evenly."""
    from tqdm.auto import tqdm

    order = sorted(range(len(jobs)), key=lambda i: -_job_cost(jobs[i]))
    results: dict[int, dict] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="model", disable=not progress)
    if n_workers <= 1:
        _init_worker(images, labels, max(1, os.cpu_count() or 1))
        for i in order:
            results[i] = _train_job(jobs[i])
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import as_completed

        threads = max(1, (os.cpu_count() or 1) // n_workers)
        with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(images, labels, threads)) as ex:
            futures = {ex.submit(_train_job, jobs[i]): i for i in order}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    return [results[i] for i in range(len(jobs))]


# ---- attacks -------------------------------------------------------------------------------------

def _attack_scores(name: str, sig: Signals, membership: np.ndarray, cfg: AuditConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Scores for the target row and out-of-sample scores for every reference row.

    Nothing here sees the target's membership: reference rows (1..K) carry all the fitting.
    """
    ref_in = membership[1:]
    if name == "loss":
        from attacks.loss_threshold import scores_from_losses

        scores = scores_from_losses(sig.losses)
        return scores[0], scores[1:], "negative cross-entropy loss under the model (Yeom et al. 2018)"
    if name == "shadow":
        from attacks.shadow import ShadowAttack, cross_fit_reference_scores

        probs = sig.probs
        kw = dict(classifier=cfg.shadow_classifier, per_class=cfg.shadow_per_class, seed=cfg.seed)
        attack = ShadowAttack(**kw).fit(probs[1:], sig.labels, ref_in)
        target = attack.score(probs[0], sig.labels)
        ref = cross_fit_reference_scores(probs[1:], sig.labels, ref_in, **kw)
        how = "per-class" if cfg.shadow_per_class else "global"
        return target, ref, (f"{cfg.shadow_classifier} attack classifier ({how}) on sorted top-3 probabilities + "
                             f"true-label probability, trained on {ref_in.shape[0]} reference models (Shokri et al. 2017)")
    raise DPAuditError(f"unknown attack {name!r}")


def bound_confidence(cfg: AuditConfig) -> tuple[float, int]:
    """Confidence of each ε lower bound, and how many bounds a verdict takes the best of.

    A verdict reports the largest of several bounds (one per attack, one from the canaries). The largest of
    n bounds each failing with probability α/n fails with probability at most α (Bonferroni), so that
    the verdict holds at ``cfg.confidence`` rather than at 1 − n·α."""
    n = len(cfg.attacks) + (1 if cfg.canaries > 0 else 0)
    n = max(n, 1)
    return 1.0 - (1.0 - cfg.confidence) / n, n


def _run_attack(name: str, sig: Signals, membership: np.ndarray, cfg: AuditConfig, delta: float, seed: int,
                confidence: float) -> dict:
    from attacks.metrics import best_balanced_threshold, evaluate

    target_scores, ref_scores, description = _attack_scores(name, sig, membership, cfg)
    ref_in = membership[1:]
    thr = best_balanced_threshold(ref_scores.ravel(), ref_in.ravel())
    source = f"maximises balanced accuracy on {ref_in.shape[0]} reference models' known members/non-members"
    metrics = evaluate(target_scores, membership[0], threshold=thr, threshold_source=source, n_boot=cfg.n_boot,
                       seed=seed)
    eps_lb = best_threshold_epsilon_lb(ref_scores.ravel(), ref_in.ravel(), target_scores, membership[0],
                                       delta=delta, confidence=confidence)
    return {"attack": name, "description": description, "metrics": metrics.to_dict(), "epsilon_lb": eps_lb.to_dict(),
            "target_scores": target_scores}


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


def run_audit(cfg: AuditConfig, *, progress: bool = True, command: str | None = None,
              dataset: Dataset | None = None, tamper=None, require_cached: bool = False) -> tuple[dict, dict]:
    """Run the whole audit. Returns (report, extras): the report is the JSON-ready document;
    extras holds per-record scores (for --save-scores), which are too large for the report.

    ``tamper`` is for dpaudit's self-tests only: a picklable function applied to the DP targets'
    optimizer after ``make_private`` (e.g. one that switches the noise off), to prove the audit
    catches training that departs from its accounting. Tampered runs are never cached."""
    cfg.validate()
    quiet_library_warnings()
    phases: dict[str, float] = {}
    t = time.perf_counter()
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    splits = make_splits(data.labels, members=cfg.members, n_models=1 + cfg.shadow_models, n_test=cfg.n_test,
                         canaries=cfg.canaries, seed=cfg.seed)
    phases["data"] = time.perf_counter() - t
    n_workers = cfg.jobs or max(1, min(os.cpu_count() or 1, len(cfg.epsilons) * (1 + cfg.shadow_models)))
    if cfg.device != "cpu":
        n_workers = 1  # one GPU: processes would only contend for it
    pool_labels = data.labels[splits.pool_idx]
    models, extras = [], {"scores": {}}
    jobs = []
    for ei, eps in enumerate(cfg.epsilons):
        name = model_name(eps)
        base = cfg.train_config(eps)
        for k in range(1 + cfg.shadow_models):
            tcfg = replace(base, seed=model_seed(cfg.seed, ei, k))
            with_canaries = k == 0 and cfg.canaries > 0
            canary_train = splits.canary_idx[splits.canary_in] if with_canaries else None
            canary_labels = splits.canary_labels[splits.canary_in] if with_canaries else None
            train_idx = splits.train_indices(k)
            extra = "" if canary_train is None else f"canaries:{canary_train.tolist()}:{canary_labels.tolist()}"
            jobs.append({"ei": ei, "k": k, "cfg": tcfg, "train_idx": train_idx, "canary_idx": canary_train,
                         "canary_labels": canary_labels, "test_idx": splits.test_idx, "pool_idx": splits.pool_idx,
                         "canary_eval_idx": splits.canary_idx if with_canaries else None,
                         "key": cache_key(tcfg, data.provenance.sha256, train_idx, extra),
                         "cache_dir": None if tamper is not None else cfg.cache_dir, "desc": f"{name} model {k}",
                         "tamper": tamper if k == 0 else None, "require_cached": require_cached})
    t = time.perf_counter()
    all_results = _run_jobs(jobs, data.images, data.labels, n_workers, progress, "training")
    phases["train"] = time.perf_counter() - t
    worker_s: dict[str, float] = {}
    per_bound, n_bounds = bound_confidence(cfg)
    for ei, eps in enumerate(cfg.epsilons):
        name = model_name(eps)
        results = sorted((r for j, r in zip(jobs, all_results) if j["ei"] == ei), key=lambda r: r["k"])
        worker_s[name] = round(sum(r["train_s"] + r["inference_s"] for r in results), 3)
        sig = Signals(logits=np.stack([r["pool_logits"] for r in results]), labels=pool_labels)
        target = results[0]
        rec = target["record"]
        delta = cfg.delta
        t = time.perf_counter()
        attack_results = []
        for ai, a in enumerate(cfg.attacks):
            res = _run_attack(a, sig, splits.membership, cfg, delta, seed=model_seed(cfg.seed, ei, 1000 + ai),
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
        models.append({
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
        })
    report = {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "versions": versions(),
        "platform": {"machine": platform.machine(), "cpus": os.cpu_count(), "workers": n_workers,
                     "device": cfg.device},
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
