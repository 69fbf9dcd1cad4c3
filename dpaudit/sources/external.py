"""Audits of models dpaudit did not train.

* ``load_target``: a target trained elsewhere (weights only, loaded with ``weights_only=True``) and the file of
  dataset records it trained on; dpaudit trains the reference models with the given factory and recipe.
* ``load_signals`` (audited by ``dpaudit.pipeline.audit_signals``): only the outputs, from a ``SIGNALS.npz`` file: for models that are not PyTorch, or pipelines
  that train elsewhere. No training at all; attacks, bounds and verdicts as in any audit.

Either way the target's training was not observed: its record says ``observed: false``, and the checks that
need the training (accounting cross-check, white-box conformance) are skipped and said to be, not faked.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dpaudit.errors import DPAuditError

# As --members: fewer target members cannot give a bound worth a verdict.
MIN_TARGET_MEMBERS = 10
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


def read_indices(path: Path, n_records: int, option: str = "--target-members") -> np.ndarray:
    """Record indices, one per line (text/CSV) or a 1-D integer .npy; unique, in range."""
    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"{option} {path} not found; give a file of record indices, one per line")
    from dpaudit.limits import check_npy, parse_index

    try:
        if path.suffix == ".npy":
            check_npy(path, option)  # before np.load allocates what the header declares
            arr = np.load(path, allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise ValueError("a .npy file must hold one array, not an archive")
        else:
            text = path.read_text(encoding="utf-8-sig").replace(",", "\n").split()
            arr = np.array([parse_index(t, option, path) for t in text if t.strip()], dtype=np.int64)
    except (ValueError, OSError, EOFError, OverflowError) as exc:
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

    from dpaudit.training.models import build_model
    from dpaudit.training.train import check_checkpoint_size

    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"--target {path} not found; save your model with torch.save(model.state_dict(), PATH)")
    check_checkpoint_size(path)
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
    for key, v in state.items():  # NaN weights give NaN logits: refused here, before any reference trains
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            raise DPAuditError(f"--target {path}: tensor {str(key)[:60]!r} holds NaN or infinite values; the model "
                               f"diverged or the file is damaged, save a trained model's state_dict()")
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

    from dpaudit.limits import check_npz

    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"--from-signals {path} not found")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise DPAuditError(f"--from-signals {path} is not an .npz archive of named arrays (a plain .npy holds one "
                               f"unnamed array); save one with np.savez(path, logits=..., labels=..., membership=...)")
    check_npz(path, f"--from-signals {path}")  # before np.load allocates what the headers declare
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
    if mem.dtype.kind not in "biuf" or mem.shape != (m, n) or not np.all((mem == 0) | (mem == 1)):
        raise DPAuditError(f"--from-signals {path}: `membership` must be 0/1 of shape {(m, n)}, got {mem.shape}")
    mem = mem.astype(bool)
    if m < 2:
        raise DPAuditError(f"--from-signals {path}: needs the target and at least one reference model (row 1..)")
    for i in range(m):
        if mem[i].all() or not mem[i].any():
            raise DPAuditError(f"--from-signals {path}: model row {i} needs both members and non-members")
    if mem[0].sum() < MIN_TARGET_MEMBERS:
        # as --members: fewer cannot give a bound worth a verdict
        raise DPAuditError(f"--from-signals {path}: the target (row 0 of `membership`) has {int(mem[0].sum())} "
                           f"member(s); an audit needs at least {MIN_TARGET_MEMBERS}")
    out = {"logits": logits, "labels": labels, "membership": mem,
           "record_index": arrays.get("record_index", np.arange(n))}
    ri = out["record_index"]
    if ri.shape != (n,) or ri.dtype.kind not in "iu":
        raise DPAuditError(f"--from-signals {path}: `record_index` must be {n} integer record ids, got "
                           f"{ri.dtype} of shape {ri.shape}")
    if np.unique(ri).size != n:
        raise DPAuditError(f"--from-signals {path}: `record_index` repeats {n - np.unique(ri).size} id(s); each "
                           f"record's id must be unique")
    pop = _logits(arrays, "population_logits", "population_probs", path)
    if pop is not None:
        if pop.shape[0] != m or pop.shape[2] != c:
            raise DPAuditError(f"--from-signals {path}: population logits must be [{m}, population, {c}]")
        out["population_logits"] = pop
        out["population_labels"] = _labels(arrays, "population_labels", pop.shape[1], c, path)
    if "pool_query_logits" in arrays:
        q = arrays["pool_query_logits"]
        if q.dtype.kind not in "iuf" or q.ndim != 4 or q.shape[:2] != (m, n) or q.shape[2] < 1 or q.shape[3] != c:
            raise DPAuditError(f"--from-signals {path}: pool_query_logits must be real [{m}, {n}, queries >= 1, {c}], "
                               f"got {q.dtype} of shape {q.shape}")
        q = q.astype(np.float32)
        if not np.all(np.isfinite(q)):
            raise DPAuditError(f"--from-signals {path}: pool_query_logits must be finite [{m}, {n}, queries, {c}]")
        out["pool_query_logits"] = q
    if ("canary_scores" in arrays) != ("canary_in" in arrays):
        raise DPAuditError(f"--from-signals {path}: give canary_scores and canary_in together")
    if "canary_scores" in arrays:
        s, ci = arrays["canary_scores"], arrays["canary_in"]
        if s.dtype.kind not in "iuf" or ci.dtype.kind not in "biu" or s.size == 0:
            raise DPAuditError(f"--from-signals {path}: canary_scores (real) and canary_in (0/1) must be non-empty, "
                               f"got {s.dtype} [{s.size}] and {ci.dtype} [{ci.size}]")
        s = s.astype(np.float64)
        if s.ndim != 1 or ci.shape != s.shape or not np.all(np.isfinite(s)) or not np.all((ci == 0) | (ci == 1)):
            raise DPAuditError(f"--from-signals {path}: canary_scores (finite) and canary_in (0/1) must be 1-D of "
                               f"equal length")
        if s.size < 2:
            raise DPAuditError(f"--from-signals {path}: canary_scores needs at least 2 canaries, got {s.size}")
        out["canary_scores"], out["canary_in"] = s, ci.astype(bool)
    from dpaudit.attacks.groups import infer_groups

    if "ref_groups" in arrays:
        g = arrays["ref_groups"]
        if g.shape != (m - 1,) or not np.issubdtype(g.dtype, np.integer):
            raise DPAuditError(f"--from-signals {path}: ref_groups must be {m - 1} integers, one per reference model")
        out["ref_groups"] = g.astype(np.int64)
    else:
        out["ref_groups"] = infer_groups(out["membership"][1:])
    from dpaudit.attacks.groups import can_cross_fit

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
    for k in (key, probs_key):
        if k in arrays and arrays[k].dtype.kind not in "iuf":  # complex: its imaginary part would be dropped
            raise DPAuditError(f"--from-signals {path}: `{k}` must be real numbers, got dtype {arrays[k].dtype}")
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
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or n == 0 or y.min() < 0 or y.max() >= c:
        raise DPAuditError(f"--from-signals {path}: `{key}` must be {n} integer classes in [0, {c})")
    return y.astype(np.int64)
