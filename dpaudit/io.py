"""Atomic writes: a reader (or a crashed run) never sees a half-written file."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from dpaudit.errors import DPAuditError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give. tempfile's 0600/0700 would otherwise survive the
    rename and hide reports from the colleagues and CI jobs that must read them."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj):
    """Plain, strict-JSON values: the one cleaner every dpaudit writer uses.

    JSON has no inf/NaN. ``inf``/``-inf`` become the strings ``"inf"``/``"-inf"`` (a bound can truly be
    infinite, and readers turn the string back into a float); NaN, a value that could not be computed,
    becomes ``null``. Tuples become lists, numpy scalars and arrays plain Python. ``attacks/metrics.py``
    keeps a copy of this rule (``attacks`` must not import dpaudit); tests/test_report_model.py checks they agree.
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and arrays
        return jsonable(obj.tolist())
    return obj


def dumps(obj) -> str:
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def check_out_folder(out: str | Path, force: bool) -> None:
    """Before any work: ``--out`` must be a new or empty folder, or ``force`` replaces it as a whole. Checked
    up front so that a refusal never costs an audit's training."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DPAuditError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        what = "an earlier report" if (out / "report.json").exists() else "other files"
        raise DPAuditError(f"--out {out} already holds {what}; pass --force to replace the folder as a whole, "
                           f"or choose another --out")
