"""Training jobs: what one model needs (plan) and the function that trains it (run in any executor).

A job is a frozen, picklable ``TrainingJob`` so that every executor (local processes, Ray tasks) can ship it; the
dataset travels separately, once per worker (``init_worker``), never once per job. What comes back is a
``JobResult``.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dpaudit.config import AuditConfig, model_name
from dpaudit.errors import DPAuditError
from dpaudit.schema import TrainingRecord

_DATA: dict = {}


@dataclass(frozen=True)
class TrainingJob:
    """What one model needs: its training config and index sets into the shared dataset, its cache key, and the
    options that change what is trained (canaries, a tamper hook for self-tests) or what is read out."""

    ei: int  # index of the epsilon in the audit's config
    k: int  # 0 the target, 1.. the reference models
    cfg: Any  # dpaudit.training.train.TrainConfig
    train_idx: np.ndarray
    canary_idx: np.ndarray | None
    canary_labels: np.ndarray | None
    test_idx: np.ndarray
    pool_idx: np.ndarray
    canary_eval_idx: np.ndarray | None
    key: str
    cache_dir: str | None
    desc: str
    tamper: Any = None
    require_cached: bool = False
    queries: bool = False
    norm: Any = None
    n_classes: int = 10
    gradient_canaries: Any = None  # dpaudit.training.whitebox.GradientCanaries
    progress: bool = False
    cache_tag_key: bytes | None = None  # the cache's HMAC key (dpaudit.training.cache_auth), shipped with the job


@dataclass(frozen=True)
class JobResult:
    """One trained (or cached) model's training record and its rows of the signal matrices."""

    k: int
    ei: int
    record: TrainingRecord
    pool_logits: np.ndarray
    test_logits: np.ndarray
    query_logits: np.ndarray | None
    canary_logits: np.ndarray | None
    whitebox: Any  # WhiteBoxObservations of the target, else None
    cache_hit: bool
    train_s: float
    inference_s: float


def model_seed(seed: int, eps_index: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, eps_index, k]).generate_state(1)[0] % (2**31))


def train_config(cfg: AuditConfig, epsilon: float):
    """The TrainConfig of every model trained at ``epsilon`` (seed replaced per model)."""
    from dpaudit.training.train import TrainConfig

    return TrainConfig(model=cfg.architecture(), epsilon=epsilon, delta=cfg.delta, **cfg.recipe(epsilon),
                       max_grad_norm=cfg.max_grad_norm, accountant=cfg.accountant,
                       grad_sample_mode=cfg.grad_sample_mode, seed=cfg.seed, device=cfg.device)


def plan_jobs(cfg: AuditConfig, data, splits, *, tamper=None, require_cached: bool = False) -> list[TrainingJob]:
    """One job per model: for each epsilon, the target (k = 0) and K reference models."""
    from dpaudit.core.attack_registry import needs_queries
    from dpaudit.training.models import model_source_sha256
    from dpaudit.training.train import cache_key

    # Shifted copies are of images; feature vectors have no neighbouring pixels, so LiRA takes one query there.
    queries = needs_queries(cfg.attacks) and len(data.input_shape) == 3
    # An edited user factory must not reuse models cached from its old code.
    model_src = model_source_sha256(cfg.architecture()) or ""
    # The cache's keyed-hash key travels with each job, as the cache path does (workers may be other machines).
    tag_key = None
    if cfg.cache_dir and tamper is None:
        from dpaudit.training.cache_auth import cache_secret

        tag_key = cache_secret()
    jobs = []
    for ei, eps in enumerate(cfg.epsilons):
        name = model_name(eps)
        base = train_config(cfg, eps)
        for k in range(1 + cfg.shadow_models):
            tcfg = replace(base, seed=model_seed(cfg.seed, ei, k))
            # References train like the target: as many canaries (their own draw of them) and the same
            # gradient canaries, so the same training-set size, hence under DP the same q, steps and noise.
            with_canaries = cfg.canaries > 0
            canaries_in = splits.canaries_of(k) if with_canaries else None
            canary_train = splits.canary_idx[canaries_in] if with_canaries else None
            canary_labels = splits.canary_labels[canaries_in] if with_canaries else None
            train_idx = splits.train_indices(k)
            extra = "" if canary_train is None else f"canaries:{canary_train.tolist()}:{canary_labels.tolist()}"
            extra += f"|model-source:{model_src}" if model_src else ""
            gc = None
            if cfg.gradient_canaries > 0 and tcfg.dp:
                from dpaudit.core.whitebox import GradientCanaries

                gc = GradientCanaries(cfg.gradient_canaries, seed=model_seed(cfg.seed, ei, 2000))
                extra += f"|gradient-canaries:{gc.m}:{gc.seed}:{gc.dirac_norm}:{gc.relative}"
            jobs.append(TrainingJob(
                ei=ei, k=k, cfg=tcfg, train_idx=train_idx, canary_idx=canary_train, canary_labels=canary_labels,
                test_idx=splits.test_idx, pool_idx=splits.pool_idx,
                canary_eval_idx=splits.canary_idx if with_canaries and k == 0 else None,
                key=cache_key(tcfg, data.provenance.sha256, train_idx, extra),
                cache_dir=None if tamper is not None else cfg.cache_dir, desc=f"{name} model {k}",
                tamper=tamper if k == 0 else None, require_cached=require_cached, queries=queries,
                norm=data.normalisation, n_classes=data.n_classes, gradient_canaries=gc,
                cache_tag_key=tag_key))
    return jobs


def job_cost(job: TrainingJob) -> float:
    """Relative training cost, for longest-first scheduling: record-epochs, DP steps dearer."""
    cfg = job.cfg
    n = len(job.train_idx) + (0 if job.canary_idx is None else len(job.canary_idx))
    return cfg.epochs * n * (1.6 if cfg.dp else 1.0)


def quiet_library_warnings() -> None:
    """Opacus and torch warn about things dpaudit handles on purpose (non-secure RNG is recorded in the
    report; the input-gradient hook warning is benign); absl logs RDP orders it drops. Called inside
    workers, and inside ``library_state()`` in the main process, which restores the caller's filters."""
    import logging

    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
    warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
    warnings.filterwarnings("ignore", message=".*Using a non-full backward hook.*")
    logging.getLogger("absl").setLevel(logging.ERROR)


def init_worker(images: np.ndarray, labels: np.ndarray, threads: int) -> None:
    """Give a worker the dataset once (and its share of the cores)."""
    import torch

    torch.set_num_threads(threads)
    _DATA["images"], _DATA["labels"] = images, labels


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_cached(path: Path, job: TrainingJob):
    """(module, record) from the model cache, or None when absent or not provably the model this job would
    train. An entry records the hash of its weights and the key it was written under; flipped bytes, swapped
    weights, a record moved to another slot or a hand-edited claim all fail that proof, and the model is
    retrained (with a warning) rather than silently audited. A cache entry is only ever a shortcut."""
    from dpaudit.training.train import load_model

    cfg = job.cfg
    if not (path.is_file() and path.with_name(path.name + ".json").is_file()):
        return None
    if job.gradient_canaries is not None and not _whitebox_path(path).is_file():
        return None  # not written completely: retrain
    try:
        import json

        meta = json.loads(path.with_name(path.name + ".json").read_text())
        problems = []
        if not isinstance(meta, dict):
            problems.append("its record is not a JSON object")
        else:
            if meta.get("cache_key") != job.key:
                problems.append("it was written under another key")
            from dpaudit.training.cache_auth import tag_matches

            if not tag_matches(_tag_key(job), meta):
                problems.append("its keyed hash does not match (forged, or written with another cache key)")
            if meta.get("weights_sha256") != _file_sha256(path):
                problems.append("its weights do not match the hash recorded with them")
            from dpaudit.training.train import record_sha256

            if not isinstance(meta.get("record"), dict) or meta.get("record_sha256") != record_sha256(meta["record"]):
                problems.append("its training record does not match the hash recorded with it")
            wb = _whitebox_path(path)
            if job.gradient_canaries is not None and meta.get("whitebox_sha256") != _file_sha256(wb):
                problems.append("its gradient-canary observations do not match the hash recorded with them")
        if problems:
            raise DPAuditError("; ".join(problems))
        module, meta = load_model(path, device=cfg.device, model=cfg.model)
        record = TrainingRecord.from_dict(meta["record"])
        if record.dp != cfg.dp or record.seed != cfg.seed or (cfg.dp and record.target_epsilon != cfg.epsilon):
            raise DPAuditError("its training record is not this job's (DP, seed or target epsilon differ)")
        whitebox = None
        if job.gradient_canaries is not None:
            from dpaudit.core.whitebox import WhiteBoxObservations

            whitebox = WhiteBoxObservations.load(_whitebox_path(path))
        return module, record, whitebox
    except (DPAuditError, ValueError, OSError) as exc:
        warnings.warn(f"retraining {job.desc}: cache entry {path.name} is not trustworthy ({exc})", stacklevel=2)
        return None


def _tag_key(job: TrainingJob) -> bytes:
    """The cache key: planned into the job (so a Ray or pool worker needs no key file), else this machine's."""
    from dpaudit.training.cache_auth import cache_secret

    return job.cache_tag_key or cache_secret()


def _whitebox_path(path: Path) -> Path:
    return path.with_name(path.name + ".whitebox.npz")


def train_job(job: TrainingJob, images: np.ndarray | None = None, labels: np.ndarray | None = None) -> JobResult:
    """Train (or load from cache) one model and return its record and signal rows (logits).

    The dataset is the worker's (``init_worker``) unless given: a Ray task gets it as arguments, read in place
    from the object store, rather than keeping it in a module global that would pin it after the task."""
    from dpaudit.training.memory import release_freed_memory
    from dpaudit.training.train import save_model, train_model

    quiet_library_warnings()
    if images is None:
        images, labels = _DATA["images"], _DATA["labels"]
    cfg = job.cfg
    x, y = images[job.train_idx], labels[job.train_idx]
    if job.canary_idx is not None and len(job.canary_idx):
        x = np.concatenate([x, images[job.canary_idx]])
        y = np.concatenate([y, job.canary_labels])
    cache_path = Path(job.cache_dir) / f"{job.key}.pt" if job.cache_dir else None
    t0 = time.perf_counter()
    cached = _load_cached(cache_path, job) if cache_path is not None else None
    if cached is not None:
        module, record, whitebox = cached
        hit = True
    elif job.require_cached:
        raise DPAuditError(f"{job.desc} is not in the model cache {job.cache_dir}; run "
                           f"`dpaudit audit --cache-dir DIR` with the same settings first")
    else:
        trained = train_model(cfg, x, y, test_images=images[job.test_idx], test_labels=labels[job.test_idx],
                              progress=job.progress, desc=job.desc,
                              after_make_private=job.tamper, norm=job.norm,
                              n_classes=job.n_classes, gradient_canaries=job.gradient_canaries)
        module, record, hit, whitebox = trained.module, trained.record, False, trained.whitebox
        if cache_path is not None:
            extra = {"cache_key": job.key, "n_classes": job.n_classes,
                     "input_shape": list(images.shape[1:])}
            if whitebox is not None:  # before the record: an entry is complete only once its record exists
                whitebox.save(_whitebox_path(cache_path))
                extra["whitebox_sha256"] = _file_sha256(_whitebox_path(cache_path))
            save_model(trained, cache_path, extra=extra, with_hash=True, tag_key=_tag_key(job))
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = signal_rows(module, job, images, cfg.device)
    del module
    release_freed_memory()  # a worker trains many models in turn; don't let each one's heap pile up
    # a reference's gradient canaries only make it train like the target; only the target's are audited
    whitebox = whitebox if job.k == 0 else None
    return JobResult(k=job.k, ei=job.ei, record=record, **rows, whitebox=whitebox, cache_hit=hit,
                     train_s=train_s, inference_s=time.perf_counter() - t1)


def signal_rows(module, job: TrainingJob, images: np.ndarray, device: str) -> dict:
    """One model's rows of the signal matrices: logits on the pool, on the population (test split), on
    shifted pool copies where an attack reads them, and on the canaries."""
    import torch

    from dpaudit.training.inference import model_logits, model_logits_queries

    dev = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    norm = job.norm
    return {
        "pool_logits": model_logits(module, images[job.pool_idx], dev, norm=norm),
        # Population records (the test split) that no model trained on: RMIA compares against them.
        "test_logits": model_logits(module, images[job.test_idx], dev, norm=norm),
        # Shifted copies of each pool record (LiRA's multiple queries), only when an attack reads them.
        "query_logits": (model_logits_queries(module, images[job.pool_idx], device=dev, norm=norm)
                         if job.queries else None),
        "canary_logits": (model_logits(module, images[job.canary_eval_idx], dev, norm=norm)
                          if job.canary_eval_idx is not None else None),
    }


def train_and_save(cfg: AuditConfig, out: Path, *, force: bool = False) -> dict:
    """`dpaudit train`: one model on the target's members, saved to ``out`` as one unit (model.pt and its
    record appear together, by one rename of a staging folder). Returns the training record."""
    import os
    import shutil
    import tempfile

    from dpaudit.config import check_writable_dir
    from dpaudit.core.splits import make_splits
    from dpaudit.io import check_out_folder
    from dpaudit.training.data import load_dataset
    from dpaudit.training.isolation import preserved_global_state
    from dpaudit.training.train import save_model, train_model

    cfg.validate()
    check_writable_dir(out, "--out")
    check_out_folder(out, force)
    eps = cfg.epsilons[0]
    with preserved_global_state():
        quiet_library_warnings()
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, label_column=cfg.label_column,
                            categorical=cfg.categorical)
        cfg = cfg.for_data(data.input_shape)
        sp = make_splits(data.labels, members=cfg.members, n_models=1, n_test=cfg.n_test, seed=cfg.seed)
        cfg.check_delta()
        idx = sp.train_indices(0)
        trained = train_model(train_config(cfg, eps), data.images[idx], data.labels[idx],
                              test_images=data.images[sp.test_idx], test_labels=data.labels[sp.test_idx],
                              n_classes=data.n_classes, progress=True, norm=data.normalisation)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_model(trained, stage / "model.pt",
                   extra={"n_classes": data.n_classes, "input_shape": list(data.input_shape),
                          "normalisation": data.normalisation.to_dict(), "dataset": data.provenance.to_dict(),
                          "split": sp.summary(), "members": idx.tolist(), "test_idx": sp.test_idx.tolist()})
        if not force:
            # No --force: never replace. A rename onto an existing non-empty folder fails in the kernel, so of two
            # runs with the same --out, the second to finish is refused, even if both passed the check up front.
            try:
                os.rename(stage, out)
            except OSError:
                raise DPAuditError(f"--out {out} was filled by another run while this one trained; pass --force to "
                                   f"replace it, or choose another --out") from None
        elif out.exists():
            old = out.with_name(f".{out.name}.old.{stage.name}")
            out.rename(old)
            try:
                stage.rename(out)
            except OSError:
                old.rename(out)  # the earlier model stays
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return trained.record.to_dict()
