"""Audits of models dpaudit did not train.

* ``load_target``: a target trained elsewhere (weights only, loaded with ``weights_only=True``) and the file of
  dataset records it trained on; dpaudit trains the reference models with the given factory and recipe.
* ``audit_signals``: only the outputs, from a ``SIGNALS.npz`` file: for models that are not PyTorch, or pipelines
  that train elsewhere. No training at all; attacks, bounds and verdicts as in any audit.

Either way the target's training was not observed: its record says ``observed: false``, and the checks that
need the training (accounting cross-check, white-box conformance) are skipped and said to be, not faked.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from .errors import DPAuditError

# The keys of a SIGNALS.npz file; row 0 of every [models, ...] array is the target.
SIGNAL_KEYS = {
    "logits": "float [models, records, classes] (or `probs`, softmax outputs of the same shape)",
    "labels": "int [records], the true classes",
    "membership": "0/1 or bool [models, records]: who trained on what (row 0 the target)",
    "population_logits": "optional float [models, population, classes] on records no model trained on (RMIA)",
    "population_labels": "optional int [population]",
    "pool_query_logits": "optional float [models, records, queries, classes] (LiRA's shifted queries)",
    "canary_scores": "optional float [m], higher = more likely included",
    "canary_in": "optional 0/1 [m], each canary's fair coin",
    "record_index": "optional int [records], the records' ids in your data",
    "ref_groups": "optional int [models - 1]: references drawn together (pairs splitting the pool) share a label; "
                  "absent: references that share no member are taken as drawn together",
}


def unobserved_record(*, dp: bool, epsilon: float | None, delta: float | None, n_train: int,
                      test_accuracy: float | None = None, model: str = "external") -> dict:
    """A training record for a target whose training dpaudit did not see: what the user claims, the rest
    unknown (None)."""
    from .train import TrainingRecord

    rec = {f: None for f in TrainingRecord.__dataclass_fields__}
    rec.update({"model": model, "dp": dp, "target_epsilon": epsilon if dp else None, "epsilon": epsilon if dp else None,
                "epsilon_per_epoch": [], "delta": delta if dp else None, "n_train": int(n_train),
                "test_accuracy": test_accuracy, "poisson_sampling_checked": False, "observed": False})
    return rec


def read_indices(path: Path, n_records: int, option: str = "--target-members") -> np.ndarray:
    """Record indices, one per line (text/CSV) or a 1-D integer .npy; unique, in range."""
    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"{option} {path} not found; give a file of record indices, one per line")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise ValueError("a .npy file must hold one array, not an archive")
        else:
            text = path.read_text(encoding="utf-8-sig").replace(",", "\n").split()
            arr = np.array([int(t) for t in text if t.strip()], dtype=np.int64)
    except (ValueError, OSError, EOFError) as exc:
        why = (str(exc).splitlines() or [exc.__class__.__name__])[0][:80]
        raise DPAuditError(f"{option} {path}: not a list of whole numbers ({why})") from None
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise DPAuditError(f"{option} {path}: needs a non-empty 1-D list of integer record indices")
    if arr.min() < 0 or arr.max() >= n_records:
        raise DPAuditError(f"{option} {path}: indices must be in [0, {n_records}) for this dataset, "
                           f"got [{arr.min()}, {arr.max()}]")
    if np.unique(arr).size != arr.size:
        raise DPAuditError(f"{option} {path}: {arr.size - np.unique(arr).size} indices are repeated; list each once")
    return np.sort(arr.astype(np.int64))


def load_target(path: Path, model: str, input_shape: tuple, n_classes: int):
    """The user's trained target: a state dict of tensors, never code (``weights_only=True``)."""
    import torch

    from .models import build_model
    from .train import _check_checkpoint_size

    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"--target {path} not found; save your model with torch.save(model.state_dict(), PATH)")
    _check_checkpoint_size(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0][:100] if str(exc) else exc.__class__.__name__
        raise DPAuditError(f"--target {path} is not a weights-only checkpoint ({msg}); save "
                           f"model.state_dict() with torch.save") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DPAuditError(f"--target {path} holds no state dict of tensors; save model.state_dict()")
    module = build_model(model, input_shape, n_classes)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)[:100]
        raise DPAuditError(f"--target {path} does not fit --model {model} ({first}); pass the factory that built "
                           f"it") from None
    return module.eval()


# ---- outputs only ------------------------------------------------------------------------------------

def load_signals(path: Path) -> dict:
    """Read and check a SIGNALS.npz (``allow_pickle=False``); every problem is a one-line error."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"--from-signals {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DPAuditError(f"--from-signals {path} holds object arrays, which could run code; save plain "
                               f"numeric arrays") from None
        raise DPAuditError(f"--from-signals {path} is not a readable .npz ({str(exc)[:80]})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DPAuditError(f"--from-signals {path} is not a readable .npz ({exc.__class__.__name__})") from None
    unknown = set(arrays) - set(SIGNAL_KEYS) - {"probs", "population_probs"}
    if unknown:
        raise DPAuditError(f"--from-signals {path}: unknown arrays {sorted(unknown)}; expected {', '.join(SIGNAL_KEYS)}")
    for k, v in arrays.items():
        if v.dtype == object:
            raise DPAuditError(f"--from-signals {path}: array {k} holds objects; save plain numeric arrays")
    logits = _logits(arrays, "logits", "probs", path)
    if logits is None:
        raise DPAuditError(f"--from-signals {path}: needs `logits` (or `probs`) [models, records, classes]")
    m, n, c = logits.shape
    labels = _labels(arrays, "labels", n, c, path)
    if "membership" not in arrays:
        raise DPAuditError(f"--from-signals {path}: needs `membership` [models, records] (row 0 the target)")
    mem = arrays["membership"]
    if mem.shape != (m, n) or not np.all((mem == 0) | (mem == 1)):
        raise DPAuditError(f"--from-signals {path}: `membership` must be 0/1 of shape {(m, n)}, got {mem.shape}")
    mem = mem.astype(bool)
    if m < 2:
        raise DPAuditError(f"--from-signals {path}: needs the target and at least one reference model (row 1..)")
    for i in range(m):
        if mem[i].all() or not mem[i].any():
            raise DPAuditError(f"--from-signals {path}: model row {i} needs both members and non-members")
    out = {"logits": logits, "labels": labels, "membership": mem,
           "record_index": arrays.get("record_index", np.arange(n))}
    if out["record_index"].shape != (n,):
        raise DPAuditError(f"--from-signals {path}: `record_index` must have shape ({n},)")
    pop = _logits(arrays, "population_logits", "population_probs", path)
    if pop is not None:
        if pop.shape[0] != m or pop.shape[2] != c:
            raise DPAuditError(f"--from-signals {path}: population logits must be [{m}, population, {c}]")
        out["population_logits"] = pop
        out["population_labels"] = _labels(arrays, "population_labels", pop.shape[1], c, path)
    if "pool_query_logits" in arrays:
        q = arrays["pool_query_logits"].astype(np.float32)
        if q.ndim != 4 or q.shape[:2] != (m, n) or q.shape[3] != c or not np.all(np.isfinite(q)):
            raise DPAuditError(f"--from-signals {path}: pool_query_logits must be finite [{m}, {n}, queries, {c}]")
        out["pool_query_logits"] = q
    if ("canary_scores" in arrays) != ("canary_in" in arrays):
        raise DPAuditError(f"--from-signals {path}: give canary_scores and canary_in together")
    if "canary_scores" in arrays:
        s, ci = arrays["canary_scores"].astype(np.float64), arrays["canary_in"]
        if s.ndim != 1 or ci.shape != s.shape or not np.all(np.isfinite(s)) or not np.all((ci == 0) | (ci == 1)):
            raise DPAuditError(f"--from-signals {path}: canary_scores (finite) and canary_in (0/1) must be 1-D of "
                               f"equal length")
        if s.size < 2:
            raise DPAuditError(f"--from-signals {path}: canary_scores needs at least 2 canaries, got {s.size}")
        out["canary_scores"], out["canary_in"] = s, ci.astype(bool)
    from .attacks.groups import infer_groups

    if "ref_groups" in arrays:
        g = arrays["ref_groups"]
        if g.shape != (m - 1,) or not np.issubdtype(g.dtype, np.integer):
            raise DPAuditError(f"--from-signals {path}: ref_groups must be {m - 1} integers, one per reference model")
        out["ref_groups"] = g.astype(np.int64)
    else:
        out["ref_groups"] = infer_groups(out["membership"][1:])
    from .attacks.groups import can_cross_fit

    if m > 2 and not can_cross_fit(out["ref_groups"]):
        raise DPAuditError(f"--from-signals {path}: the reference models form a single group (drawn together), so "
                           f"none can be scored out-of-sample; add references drawn independently")
    out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def signals_npz(arrays: dict) -> bytes:
    """One audited setting's signals as the bytes of a SIGNALS.npz that ``--from-signals`` reads back."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _logits(arrays: dict, key: str, probs_key: str, path: Path):
    if key in arrays:
        x = arrays[key]
    elif probs_key in arrays:
        p = arrays[probs_key].astype(np.float64)
        if np.any(p < 0) or np.any(p > 1) or not np.allclose(p.sum(-1), 1.0, atol=1e-3):
            raise DPAuditError(f"--from-signals {path}: `{probs_key}` rows must be probabilities summing to 1")
        with np.errstate(divide="ignore"):
            x = np.log(np.clip(p, 1e-300, None))  # log-probabilities: softmax gives the probabilities back
    else:
        return None
    if not np.issubdtype(x.dtype, np.number) or x.ndim != 3 or x.shape[2] < 2 or x.shape[1] < 2:
        raise DPAuditError(f"--from-signals {path}: `{key}` must be numeric [models, records, classes >= 2], "
                           f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DPAuditError(f"--from-signals {path}: `{key}` has NaN or infinite values")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _labels(arrays: dict, key: str, n: int, c: int, path: Path) -> np.ndarray:
    if key not in arrays:
        raise DPAuditError(f"--from-signals {path}: needs `{key}` [{n}]")
    y = arrays[key]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c:
        raise DPAuditError(f"--from-signals {path}: `{key}` must be {n} integer classes in [0, {c})")
    return y.astype(np.int64)


def audit_signals(path: Path, cfg, epsilon: float | None, *, command: str | None = None) -> tuple[dict, dict]:
    """A full report (attacks, bounds, verdicts) from a SIGNALS.npz, with no training. ``epsilon``: the
    target's claimed ε (None: no DP claim); ``cfg.delta`` its δ."""
    import time
    from dataclasses import replace as _replace

    from .attack_registry import AttackInput, check_attacks
    from .audit import attack_options, evaluate_setting, report_document
    from .config import model_name
    from .isolation import preserved_global_state
    from .jobs import quiet_library_warnings
    from .signals import Signals

    # White-box gradient canaries need dpaudit to train the target: outputs alone have none (the CLI refuses an
    # explicit --gradient-canaries here; the default is simply not applicable, and the report records 0).
    cfg = _replace(cfg, gradient_canaries=0)
    sig = load_signals(path)
    m, n, c = sig["logits"].shape
    dp = epsilon is not None and math.isfinite(epsilon)
    eps_cfg = (epsilon,) if dp else (math.inf,)
    from dataclasses import replace

    cfg = replace(cfg, epsilons=eps_cfg, shadow_models=m - 1, canaries=int(sig.get("canary_in", np.zeros(0)).size),
                  members=max(int(sig["membership"][0].sum()), 10), n_test=max(int(np.asarray(sig.get("population_labels", [0])).size), 1),
                  dataset=f"signals:{Path(path).name}")
    cfg.validate(training=False)
    check_attacks(cfg.attacks, cfg.shadow_models)
    for a in cfg.attacks:
        from .attack_registry import get_attack

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
        rec = unobserved_record(dp=dp, epsilon=epsilon if dp else None, delta=cfg.delta, n_train=n_in)
        extras: dict = {"scores": {}}
        phases: dict = {}
        model = evaluate_setting(cfg, 0, model_name(eps_cfg[0]), inp, sig["membership"][0], sig["record_index"],
                                 rec, [], 0, canary, extras, phases)
        model["reference_models"]["k"] = m - 1
        phases["attacks_and_bounds"] = time.perf_counter() - t
    from .splits import _hash

    none = np.zeros(0, dtype=bool)
    split = {"seed": cfg.seed, "n_test": int(sig.get("population_labels", none).size), "pool_size": int(n),
             "members": int(sig["membership"][0].sum()), "n_models": int(m),
             "canaries": int(sig.get("canary_in", none).size), "canaries_in": int(sig.get("canary_in", none).sum()),
             "pool_sha256": _hash(sig["record_index"]),
             "target_members_sha256": _hash(sig["record_index"][sig["membership"][0]])}
    dataset = {"name": f"signals:{Path(path).name}", "source": str(path), "n_records": int(n), "n_classes": int(c),
               "sha256": sig["sha256"]}
    return report_document(cfg, command=command, workers=None, device="none (outputs only)", dataset=dataset,
                           split=split, models=[model], phases=phases, worker_s={}, observed=False), extras
