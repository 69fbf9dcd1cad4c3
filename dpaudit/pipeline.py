"""One audit, as a short pipeline: plan the training jobs → run them on an executor → fill the signal
matrices once → run every registered attack and bound → build the report.

Each step lives in its own module (config, jobs, executors, signals, attack_registry, bounds); this one
only wires them and turns their results into the report's models."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpaudit.config import AuditConfig, model_name
from dpaudit.core.attack_registry import AttackInput, check_attacks, check_membership, run_attack
from dpaudit.core.bounds import (
    ceiling_clopper_pearson,
    ceiling_one_run_balanced,
    decide_verdict,
    fair_coin_check,
    max_advantage,
    max_balanced_accuracy,
    one_run_audit_balanced,
    reference_threshold_epsilon_lb,
    whitebox_need,
)
from dpaudit.core.plan import (
    BoundPlan,
    attack_options,
    bound_confidence,
    make_verdict,
    report_document,
    run_confidence,
)
from dpaudit.core.signals import Signals
from dpaudit.core.splits import Splits, make_splits
from dpaudit.errors import DPAuditError
from dpaudit.io import jsonable
from dpaudit.schema import (
    AlphaSpending,
    AttackResult,
    Bounds,
    CanaryResult,
    ModelAudit,
    ReferenceModels,
    Report,
    TrainingRecord,
    Verdict,
    WhiteBoxAudit,
)
from dpaudit.training.accounting import cross_check
from dpaudit.training.data import Dataset, load_dataset
from dpaudit.training.executors import get_executor
from dpaudit.training.isolation import preserved_global_state
from dpaudit.training.jobs import model_seed, plan_jobs, quiet_library_warnings

__all__ = ["AuditConfig", "audit_report", "run_audit", "signals_report", "audit_signals", "model_name",
           "model_seed"]


# ---- attacks and bounds --------------------------------------------------------------------------


LEDGER = "alpha_ledger.json"


def ledger_key(report: Report) -> str:
    """Which models a report's verdicts are about: its dataset and split (the same cached models)."""
    return ":".join(str(x) for x in (report.dataset.sha256, report.split.pool_sha256,
                                     report.split.target_members_sha256, report.split.seed))


def ledger_runs(cache_dir: str | Path, key: str) -> list[dict]:
    """The runs recorded in a model cache's α ledger for these models (oldest first); [] if none."""
    import json

    path = Path(cache_dir) / LEDGER
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise DPAuditError(f"{path} is not readable ({exc.__class__.__name__}); it records the α spent on the cached "
                           "models: restore it, or the re-run cannot know what is left") from None
    runs = doc.get(key, []) if isinstance(doc, dict) else []
    return [r for r in runs if isinstance(r, dict)]


def record_run(cache_dir: str | Path, key: str, spend: AlphaSpending, out: str) -> None:
    """Append this run's α to the cache's ledger, so that a re-run started from ANY report of these models (not
    only the latest) spends what is left on the schedule."""
    import json

    from dpaudit.io import atomic_write_json

    path = Path(cache_dir) / LEDGER
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    doc.setdefault(key, []).append({"rerun": spend.rerun, "alpha_this_run": spend.alpha_this_run,
                                    "alpha_spent_total": spend.alpha_spent_total, "report": str(out)})
    atomic_write_json(path, doc)


def _num(x) -> float:
    """A figure the report states as a number: NaN where it is unknown (the report writes null)."""
    return math.nan if x is None else float(x)


def _evaluate_attack(name: str, inp: AttackInput, target_in: np.ndarray, cfg: AuditConfig, delta: float,
                     seed: int, confidence: float, claimed: float | None = None) -> tuple[AttackResult, np.ndarray]:
    """Scores from the attack (which never sees ``target_in``), then thresholds from the reference
    scores only; the target's membership is used once, to count outcomes. Returns the result and the target's
    per-record scores (for --save-scores; too large for the report)."""
    from dpaudit.attacks.metrics import best_balanced_threshold, evaluate

    scored = run_attack(name, inp)
    ref_in = inp.ref_in
    thr = best_balanced_threshold(scored.reference.ravel(), ref_in.ravel())
    source = f"maximises balanced accuracy on {ref_in.shape[0]} reference models' known members/non-members"
    metrics = evaluate(scored.target, target_in, threshold=thr, threshold_source=source, n_boot=cfg.n_boot,
                       seed=seed)
    eps_lb = reference_threshold_epsilon_lb(scored.reference, ref_in, scored.target, target_in, delta=delta,
                                            confidence=confidence)
    n_pos = int(np.sum(target_in))
    ceiling = ceiling_clopper_pearson(n_pos, int(target_in.size - n_pos), delta, confidence)
    detectable = None
    if claimed is not None:
        from dpaudit.core.power import detectable_epsilon_cp

        detectable = detectable_epsilon_cp(float(claimed), n_pos, int(target_in.size - n_pos), delta, confidence,
                                           seed=cfg.seed)
    res = AttackResult(attack=name, description=scored.description, metrics=metrics, epsilon_lb=eps_lb,
                       ceiling=ceiling, details=jsonable(scored.details), detectable_epsilon=detectable)
    return res, scored.target


def _canary_audit(scores: np.ndarray, coins: np.ndarray, delta: float, confidence: float,
                  claimed: float | None = None, seed: int = 0, test_accuracy: float | None = None) -> CanaryResult:
    """One-run audit of the canaries' scores (negative loss on each canary's wrong label), under the one
    membership rule (balanced guesses, valid at the observed member share: ``bounds.one_run_audit_balanced``)."""
    res = one_run_audit_balanced(scores, coins, delta=delta, confidence=confidence)
    included, m = int(coins.sum()), int(coins.size)
    detectable = None
    if claimed is not None:
        from dpaudit.core.power import detectable_epsilon_one_run

        detectable = detectable_epsilon_one_run(float(claimed), m, included, delta, confidence, seed=seed)
    return CanaryResult(
        method="one-run (Steinke, Nasr, Jagielski 2023), balanced guesses", m=m, included=included,
        score="negative loss on the canary's wrong label", epsilon_lb=res.epsilon_lb, r=res.r, v=res.v,
        k_plus=res.k_plus, k_minus=res.k_minus, candidates_tried=tuple(int(k) for k in res.candidates_tried),
        correction=res.correction, delta=res.delta, confidence=res.confidence,
        test_accuracy_with_canaries=_num(test_accuracy),
        # The references train on canaries too (to match the target's training-set size), so no model here
        # shows the accuracy without them; say so rather than compare with a model that also had them.
        test_accuracy_without_canaries=None,
        without_canaries_from=("not measured: the reference models train on as many canaries as the target, to "
                               "match its training-set size"),
        ceiling=ceiling_one_run_balanced(m, delta, confidence, n_in=included), detectable_epsilon=detectable,
        coin_check=jsonable(fair_coin_check(coins)))


def _verdict(claimed: float | None, attacks: list[AttackResult], canary: CanaryResult | None, plan: BoundPlan,
             conf_all: float, wb: WhiteBoxAudit | None = None, observed: bool = True) -> Verdict:
    from dpaudit.core.power import POWER_METHOD

    bounds = [(f"{a.attack} attack", a.epsilon_lb.value, a.ceiling) for a in attacks]
    power = [(f"{a.attack} attack", a.detectable_epsilon) for a in attacks]
    if canary is not None:
        bounds.append(("canaries (one run)", canary.epsilon_lb, canary.ceiling))
        power.append(("canaries (one run)", canary.detectable_epsilon))
    rejected = None
    if wb is not None:
        # every valid route (one run; Clopper-Pearson over canaries; per-step witness composition, valid only when
        # every independence test accepts), each with its ceiling: the verdict takes the best and names it
        bounds.extend((f"white-box canaries ({r.label})", r.epsilon_lb, r.ceiling) for r in wb.counted_routes())
        # the white-box route's power is one figure for its bounds and conformance tests together
        power.append(("white-box canaries", wb.detectable_epsilon))
        rejected = [] if wb.conformant else list(wb.failed)
    decision = decide_verdict(claimed, bounds, rejected, n_canaries=canary.m if canary is not None else None,
                              whitebox_possible=observed, detectable=[(s, d) for s, d in power if d is not None],
                              whitebox_need=whitebox_need(wb))
    return make_verdict(decision, confidence=plan.per_model,
                        per_bound_confidence=plan.attack if plan.n_attacks else plan.canary,
                        canary_confidence=plan.canary if plan.n_bounds > plan.n_attacks else None,
                        n_bounds=plan.n_bounds, family_confidence=conf_all, correction=plan.correction,
                        power_method=POWER_METHOD if claimed is not None else None)


@dataclass(frozen=True)
class SettingOutcome:
    """One privacy setting's audit: its typed report block, and what is too large for the report (per-record
    scores for --save-scores, keyed (model, attack or "canary"); signal matrices for --save-signals), with the
    seconds each phase took."""

    model: ModelAudit
    scores: dict
    signals: dict
    timing_s: dict


def _model_audit(cfg: AuditConfig, ei: int, eps: float, results: list, data: Dataset, splits: Splits,
                 rerun: int = 0) -> SettingOutcome:
    """One privacy setting's K + 1 trained models: gather their signal rows, then evaluate."""
    inp = AttackInput(
        pool=Signals(logits=np.stack([r.pool_logits for r in results]), labels=data.labels[splits.pool_idx]),
        ref_in=splits.membership[1:],
        population=Signals(logits=np.stack([r.test_logits for r in results]), labels=data.labels[splits.test_idx]),
        pool_queries=np.stack([r.query_logits for r in results]) if results[0].query_logits is not None
        else None,
        ref_groups=splits.ref_groups, options=attack_options(cfg), seed=cfg.seed)
    canary = None
    if cfg.canaries > 0:
        canary = (-Signals(logits=results[0].canary_logits[None], labels=splits.canary_labels).losses[0],
                  splits.canary_in, splits.canary_idx)
    return evaluate_setting(cfg, ei, model_name(eps), inp, splits.membership[0], splits.pool_idx,
                            results[0].record, [r.record for r in results[1:]],
                            sum(r.cache_hit for r in results), canary, whitebox=results[0].whitebox, rerun=rerun)


def _reference_models(records: list[TrainingRecord], cache_hits: int, k: int | None = None) -> ReferenceModels:
    trained_like = bool(records) and all(r.n_train is not None and r.steps is not None for r in records)
    return ReferenceModels(
        k=len(records) if k is None else k,
        test_accuracy=tuple(_num(r.test_accuracy) for r in records),
        epsilon=tuple(r.epsilon for r in records),
        seeds=tuple(r.seed for r in records),
        cache_hits=cache_hits,
        n_train=tuple(r.n_train for r in records) if trained_like else None,
        sample_rate=tuple(r.sample_rate for r in records) if trained_like else None,
        steps=tuple(r.steps for r in records) if trained_like else None)


def evaluate_setting(cfg: AuditConfig, ei: int, name: str, inp: AttackInput, target_in: np.ndarray,
                     record_index: np.ndarray, rec: TrainingRecord, ref_records: list[TrainingRecord],
                     cache_hits: int, canary: tuple | None, whitebox=None, rerun: int = 0,
                     n_references: int | None = None) -> SettingOutcome:
    """Attacks, canaries, accounting cross-check and verdict for one target and its references.

    ``rec`` is the target's training record; one with ``observed`` False (a target trained elsewhere, or
    only its outputs) has no accounting to cross-check, and the report says so rather than faking it.
    ``canary``: (scores, coins, record indices) of the canaries, or None. ``n_references``: the references'
    count where their records are not known (outputs only)."""
    plan = bound_confidence(cfg, dp=bool(rec.dp), rerun=rerun)
    delta = cfg.delta
    claimed = rec.epsilon if rec.dp else None
    timing: dict[str, float] = {}
    scores: dict = {}
    t = time.perf_counter()
    attack_results = []
    for ai, a in enumerate(cfg.attacks):
        res, target_scores = _evaluate_attack(a, inp, target_in, cfg, delta, seed=model_seed(cfg.seed, ei, 1000 + ai),
                                              confidence=plan.attack, claimed=claimed)
        scores[(name, a)] = (record_index, target_in, target_scores)
        attack_results.append(res)
    timing[f"attacks:{name}"] = time.perf_counter() - t
    t = time.perf_counter()
    canary_res = None
    if canary is not None:
        c_scores, coins, idx = canary
        canary_res = _canary_audit(c_scores, coins, delta, plan.canary, claimed, seed=cfg.seed,
                                   test_accuracy=rec.test_accuracy)
        scores[(name, "canary")] = (idx, coins, c_scores)
    check = None
    if rec.dp and rec.observed:
        check = cross_check(rec.epsilon, rec.accountant, rec.sample_rate, rec.noise_multiplier, rec.steps,
                            rec.delta)
    wb = _whitebox_audit(whitebox, cfg, ei, plan.canary, delta) if whitebox is not None else None
    timing[f"bounds:{name}"] = time.perf_counter() - t
    signals = {
        "logits": inp.pool.logits, "labels": inp.pool.labels, "membership": np.vstack([target_in[None], inp.ref_in]),
        "record_index": record_index,
        **({"ref_groups": inp.ref_groups} if inp.ref_groups is not None else {}),
        **({"population_logits": inp.population.logits, "population_labels": inp.population.labels}
           if inp.population is not None else {}),
        **({"pool_query_logits": inp.pool_queries} if inp.pool_queries is not None else {}),
        **({"canary_scores": canary[0], "canary_in": canary[1]} if canary is not None else {}),
    }
    model = ModelAudit(
        name=name, dp=bool(rec.dp), target_epsilon=rec.target_epsilon if rec.dp else None, training=rec,
        reference_models=_reference_models(ref_records, cache_hits, n_references),
        accountant_check=check,
        bounds=Bounds(max_balanced_accuracy=max_balanced_accuracy(claimed, delta) if claimed is not None else 1.0,
                      max_advantage=max_advantage(claimed, delta) if claimed is not None else 1.0, delta=delta),
        attacks=tuple(attack_results), canary=canary_res, whitebox=wb,
        verdict=_verdict(claimed, attack_results, canary_res, plan, run_confidence(cfg, rerun), wb,
                         observed=bool(rec.observed)))
    return SettingOutcome(model=model, scores=scores, signals={name: signals}, timing_s=timing)


def _whitebox_audit(obs, cfg: AuditConfig, ei: int, per_bound: float, delta: float) -> WhiteBoxAudit:
    """White-box gradient canaries: bounds, conformance tests and empirical ε (dpaudit.training.whitebox.analyse), each
    bound route with its ceiling at its own confidence, and the route's measured power."""
    from dpaudit.training.whitebox import analyse

    analysis_seed = model_seed(cfg.seed, ei, 3000)
    res = analyse(obs, confidence=per_bound, seed=analysis_seed)
    return res.with_power(_whitebox_power(res, obs, cfg, per_bound, delta, analysis_seed))


def _whitebox_power(res: WhiteBoxAudit, obs, cfg: AuditConfig, per_bound: float, delta: float,
                    analysis_seed: int) -> dict:
    """The white-box route's detectable ε: the claimed mechanism with less noise (σ × f) at this run's shapes,
    each simulated run analysed as ``analyse`` analysed this one (dpaudit.core.power.whitebox_detectable), its ε
    from the claimed accountant at the claimed q and steps."""
    from dpaudit.core.power import whitebox_detectable
    from dpaudit.training.accounting import opacus_epsilon

    if not math.isfinite(res.claimed_epsilon):
        return {"detectable_epsilon": None, "detectable_noise_factor": None}
    steps, q, accountant = res.steps, res.claimed_q, res.accountant
    return whitebox_detectable(
        obs, confidence=per_bound, seed=cfg.seed, analysis_seed=analysis_seed,
        epsilon_of_sigma=lambda s: opacus_epsilon(q, s, steps, delta, accountant))


# ---- the audit -----------------------------------------------------------------------------------


def default_workers(cfg: AuditConfig) -> int:
    return cfg.jobs or max(1, min(os.cpu_count() or 1, len(cfg.epsilons) * (1 + cfg.shadow_models)))


@dataclass(frozen=True)
class Target:
    """A target trained elsewhere: its weights (state dict), the dataset records it trained on, and the ε it
    claims (inf: no DP claim; δ is the audit's ``delta``)."""

    weights: str
    members: str
    epsilon: float = math.inf


def run_audit(cfg: AuditConfig, **kw) -> tuple[dict, dict]:
    """:func:`audit_report`, with the report as its JSON document (what report.json holds)."""
    report, extras = audit_report(cfg, **kw)
    return report.to_json(), extras


def audit_report(cfg: AuditConfig, *, progress: bool = True, command: str | None = None,
                 dataset: Dataset | None = None, tamper=None, require_cached: bool = False,
                 executor=None, target: Target | None = None, rerun: int = 0,
                 spent_before: float | None = None) -> tuple[Report, dict]:
    """Run the whole audit. Returns (report, extras): the typed report; extras holds per-record scores (for
    --save-scores) and the signal matrices (for --save-signals), which are too large for the report.

    ``tamper`` is for dpaudit's self-tests only: a picklable function applied to the DP targets'
    optimizer after ``make_private`` (e.g. one that switches the noise off), to prove the audit
    catches training that departs from its accounting. Tampered runs are never cached.
    ``executor``: an object with the ``dpaudit.training.executors.Executor`` interface; default ``cfg.executor``.
    ``target``: audit a model trained elsewhere (``Target``); dpaudit trains only its reference models.
    ``rerun``: 0 for an audit, r for the r-th ``dpaudit attack`` re-run on its models, which spends only its
    share of α (``run_confidence``); ``spent_before``: the α the earlier runs recorded."""
    if target is not None:
        from dataclasses import replace

        if cfg.canaries:
            raise DPAuditError("--canaries and --gradient-canaries need dpaudit to train the target; drop them "
                               "with --target")
        # gradient canaries (on by default) cannot be put into a target trained elsewhere: none run, and the
        # report's configuration says 0 (the CLI refuses an explicit --gradient-canaries with --target)
        cfg = replace(cfg, epsilons=(target.epsilon,), gradient_canaries=0)
    cfg.validate()
    check_attacks(cfg.attacks, cfg.shadow_models)
    with preserved_global_state():
        quiet_library_warnings()
        return _run(cfg, progress, command, dataset, tamper, require_cached, executor, target, rerun, spent_before)


def _dataset_block(data: Dataset) -> dict:
    """The report's dataset block: the provenance, and the feature count of feature vectors even where a user's
    loader built its Dataset without ``make_dataset``."""
    block = data.provenance.to_dict()
    if data.n_features is not None and "n_features" not in block:
        block["n_features"] = data.n_features
    return block


def _run(cfg, progress, command, dataset, tamper, require_cached, executor, target, rerun=0, spent_before=None):
    from dpaudit.training.models import build_model

    phases: dict[str, float] = {}
    t = time.perf_counter()
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.download,
                                                            label_column=cfg.label_column, categorical=cfg.categorical)
    cfg = cfg.for_data(data.input_shape)  # the data's default model where none was named
    # The architecture is checked (shape, and Opacus's validator where DP trains) before any training.
    build_model(cfg.architecture(), data.input_shape, data.n_classes,
                validate_dp=any(math.isfinite(e) for e in cfg.epsilons))
    if target is not None:
        from dpaudit.core.splits import splits_for_target
        from dpaudit.sources.external import read_indices

        members = read_indices(Path(target.members), len(data))
        from dataclasses import replace

        # the reference models train on as many records as the target did; checked again with that size
        cfg = replace(cfg, members=int(members.size))
        cfg.validate()
        splits = splits_for_target(data.labels, members, n_models=1 + cfg.shadow_models, n_test=cfg.n_test,
                                   seed=cfg.seed)
        if math.isfinite(target.epsilon) and cfg.delta >= 1.0 / members.size:
            raise DPAuditError(f"--delta {cfg.delta:g} is not below 1/N = {1.0 / members.size:.3g} for the target's "
                               f"N = {members.size} members; choose --delta < 1/N")
        from dpaudit.sources.external import load_target

        # before any reference model trains: a bad weights file must not cost the training
        target_module = load_target(Path(target.weights), cfg.architecture(), data.input_shape, data.n_classes)
    else:
        splits = make_splits(data.labels, members=cfg.members, n_models=1 + cfg.shadow_models, n_test=cfg.n_test,
                             canaries=cfg.canaries, seed=cfg.seed)
        cfg.check_delta()
    check_membership(cfg.attacks, splits.membership[1:], splits.ref_groups)
    phases["data"] = time.perf_counter() - t
    if executor is None:
        executor = get_executor(cfg.executor, workers=default_workers(cfg), device=cfg.device)
    jobs = plan_jobs(cfg, data, splits, tamper=tamper, require_cached=require_cached)
    t = time.perf_counter()
    if target is not None:
        from dataclasses import replace

        from dpaudit.training.jobs import JobResult, signal_rows

        # Reference models train like the target would have: its training-set size, this recipe.
        jobs = [j for j in jobs if j.k != 0]
        ref_results = executor.run(jobs, data.images, data.labels, progress=progress, desc="training")
        first = replace(jobs[0], k=0, canary_eval_idx=None)
        rows = signal_rows(target_module, first, data.images, cfg.device)
        acc = float((rows["test_logits"].argmax(1) == data.labels[splits.test_idx]).mean())
        rec = TrainingRecord.unobserved(dp=math.isfinite(target.epsilon), epsilon=target.epsilon, delta=cfg.delta,
                                n_train=int(splits.membership[0].sum()), test_accuracy=acc,
                                model=cfg.architecture())
        all_results = [JobResult(k=0, ei=0, record=rec, **rows, whitebox=None, cache_hit=False, train_s=0.0,
                                 inference_s=0.0)] + ref_results
        jobs = [first] + jobs
    else:
        all_results = executor.run(jobs, data.images, data.labels, progress=progress, desc="training")
    phases["train"] = time.perf_counter() - t
    models, extras, worker_s = [], {"scores": {}, "signals": {}}, {}
    for ei, eps in enumerate(cfg.epsilons):
        results = sorted((r for j, r in zip(jobs, all_results) if j.ei == ei), key=lambda r: r.k)
        worker_s[model_name(eps)] = round(sum(r.train_s + r.inference_s for r in results), 3)
        out = _model_audit(cfg, ei, eps, results, data, splits, rerun=rerun)
        models.append(out.model)
        extras["scores"].update(out.scores)
        extras["signals"].update(out.signals)
        phases.update(out.timing_s)
    return report_document(cfg, command=command, workers=getattr(executor, "workers", None), device=cfg.device,
                           dataset=_dataset_block(data), split=splits.summary(), models=models, phases=phases,
                           worker_s=worker_s, observed=target is None, rerun=rerun, spent_before=spent_before), extras


# ---- outputs only (--from-signals): the same evaluation, with no training ----------------------------

def audit_signals(path: Path, cfg, epsilon: float | None, **kw) -> tuple[dict, dict]:
    """:func:`signals_report`, with the report as its JSON document (what report.json holds)."""
    report, extras = signals_report(path, cfg, epsilon, **kw)
    return report.to_json(), extras


def signals_report(path: Path, cfg, epsilon: float | None, *, command: str | None = None,
                   drop_unusable: bool = False) -> tuple[Report, dict]:
    """A full typed report (attacks, bounds, verdicts) from a SIGNALS.npz, with no training. ``epsilon``: the
    target's claimed ε (None: no DP claim); ``cfg.delta`` its δ. ``drop_unusable`` (the default attack list, not
    one the user chose): attacks the file cannot serve (too few references, no population) are left out, and
    ``extras["dropped_attacks"]`` says which and why."""
    import time
    from dataclasses import replace

    from dpaudit.config import model_name
    from dpaudit.core.attack_registry import AttackInput, check_attacks
    from dpaudit.core.signals import Signals
    from dpaudit.sources.external import load_signals
    from dpaudit.training.isolation import preserved_global_state
    from dpaudit.training.jobs import quiet_library_warnings

    # White-box gradient canaries need dpaudit to train the target: outputs alone have none (the CLI refuses an
    # explicit --gradient-canaries here; the default is simply not applicable, and the report records 0).
    cfg = replace(cfg, gradient_canaries=0)
    if epsilon is not None:
        from dpaudit.config import check_epsilon

        check_epsilon(float(epsilon), "epsilon")  # NaN is refused, not read as "no DP claim"
    sig = load_signals(path)
    m, n, c = sig["logits"].shape
    dp = epsilon is not None and math.isfinite(epsilon)
    eps_cfg = (epsilon,) if dp else (math.inf,)
    cfg = replace(cfg, epsilons=eps_cfg, shadow_models=m - 1, canaries=int(sig.get("canary_in", np.zeros(0)).size),
                  members=int(sig["membership"][0].sum()),
                  n_test=max(int(sig.get("population_labels", np.zeros(0)).size), 1),
                  dataset=f"signals:{Path(path).name}")
    dropped = []
    if drop_unusable:
        from dpaudit.core.attack_registry import usable_attacks

        kept, dropped = usable_attacks(cfg.attacks, cfg.shadow_models, population="population_logits" in sig,
                                       ref_in=sig["membership"][1:], groups=sig["ref_groups"])
        cfg = replace(cfg, attacks=kept)
    cfg.validate(training=False)
    check_attacks(cfg.attacks, cfg.shadow_models)
    for a in cfg.attacks:
        from dpaudit.core.attack_registry import get_attack

        if get_attack(a).needs_population and "population_logits" not in sig:
            raise DPAuditError(f"the {a} attack needs population_logits and population_labels in the signals file "
                               f"(records no model trained on); add them or drop {a} from --attacks")
    n_in = int(sig["membership"][0].sum()) + int(sig.get("canary_in", np.zeros(0)).sum())
    if dp and cfg.delta >= 1.0 / n_in:
        raise DPAuditError(f"--delta {cfg.delta:g} is not below 1/N = {1.0 / n_in:.3g} for the target's N = {n_in} "
                           f"training records; choose --delta < 1/N")
    with preserved_global_state():
        quiet_library_warnings()
        t = time.perf_counter()
        inp = AttackInput(
            pool=Signals(logits=sig["logits"], labels=sig["labels"]), ref_in=sig["membership"][1:],
            population=(Signals(logits=sig["population_logits"], labels=sig["population_labels"])
                        if "population_logits" in sig else None),
            pool_queries=sig.get("pool_query_logits"), ref_groups=sig["ref_groups"], options=attack_options(cfg),
            seed=cfg.seed)
        canary = ((sig["canary_scores"], sig["canary_in"], np.arange(sig["canary_in"].size))
                  if "canary_scores" in sig else None)
        rec = TrainingRecord.unobserved(dp=dp, epsilon=epsilon if dp else None, delta=cfg.delta, n_train=n_in)
        out = evaluate_setting(cfg, 0, model_name(eps_cfg[0]), inp, sig["membership"][0], sig["record_index"],
                               rec, [], 0, canary, n_references=m - 1)
        extras: dict = {"scores": out.scores, "signals": out.signals, "dropped_attacks": dropped}
        phases = {**out.timing_s, "attacks_and_bounds": time.perf_counter() - t}
    from dpaudit.core.splits import index_hash

    none = np.zeros(0, dtype=bool)
    split = {"seed": cfg.seed, "n_test": int(sig.get("population_labels", none).size), "pool_size": int(n),
             "members": int(sig["membership"][0].sum()), "n_models": int(m),
             "canaries": int(sig.get("canary_in", none).size), "canaries_in": int(sig.get("canary_in", none).sum()),
             "pool_sha256": index_hash(sig["record_index"]),
             "target_members_sha256": index_hash(sig["record_index"][sig["membership"][0]])}
    dataset = {"name": f"signals:{Path(path).name}", "source": str(path), "n_records": int(n), "n_classes": int(c),
               "sha256": sig["sha256"]}
    return report_document(cfg, command=command, workers=None, device="none (outputs only)", dataset=dataset,
                           split=split, models=[out.model], phases=phases, worker_s={}, observed=False), extras
