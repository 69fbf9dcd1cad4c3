"""The Python API: a few calls for a notebook, each the library call behind a CLI command. The README's
"From Python" block shows ``audit`` and ``write_report``; an outputs-only audit, as a doctest:

    >>> import numpy as np, dpaudit
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 10, 400)
    >>> membership = rng.random((5, 400)) < 0.5          # row 0 the target, rows 1.. references
    >>> logits = rng.normal(size=(5, 400, 10)) + 3.0 * np.eye(10)[labels]
    >>> report = dpaudit.audit_outputs(logits, labels, membership, epsilon=4.0, delta=1e-5, attacks=("loss", "lira"))
    >>> report.models[0].dp, report.models[0].training.epsilon
    (True, 4.0)

Every keyword of ``audit`` is a field of ``dpaudit.config.AuditConfig`` (the same defaults as the CLI).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np


def audit(*, target: str | None = None, target_members: str | None = None, target_epsilon: float = math.inf,
          progress: bool = True, **config):
    """Run an audit and return the typed report (``dpaudit.schema.Report``). ``target``/``target_members``:
    audit your own trained target (weights file, member indices file) claiming ``target_epsilon``."""
    from dpaudit.config import DATASET_SETTINGS, AuditConfig, apply_dataset_settings
    from dpaudit.pipeline import Target, audit_report

    dataset = config.get("dataset", AuditConfig.dataset)
    # a built-in dataset's own settings where the caller passed none (as the CLI does for options left unset)
    config = apply_dataset_settings(dataset, config, set(DATASET_SETTINGS.get(dataset, {})) - set(config))
    cfg = AuditConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()})
    if "attacks" not in config:  # the default list leaves out what too few references cannot serve, and says so
        import warnings
        from dataclasses import replace

        from dpaudit.core.attack_registry import usable_attacks

        kept, dropped = usable_attacks(cfg.attacks, cfg.shadow_models) if cfg.shadow_models >= 1 else (cfg.attacks, [])
        if dropped:
            warnings.warn(f"dpaudit: the default attacks {', '.join(dropped)} cannot run here and are left out; pass "
                          f"attacks=(...) to choose", stacklevel=2)
            cfg = replace(cfg, attacks=kept)
    tgt = Target(str(target), str(target_members), target_epsilon) if target is not None else None
    if (target is None) != (target_members is None):
        from dpaudit.errors import DPAuditError

        raise DPAuditError("target and target_members go together")
    report, _ = audit_report(cfg, progress=progress, command="dpaudit.audit(...)", target=tgt)
    return report


def audit_outputs(logits: np.ndarray, labels: np.ndarray, membership: np.ndarray, *, epsilon: float | None = None,
                  delta: float = 1e-5, population_logits: np.ndarray | None = None,
                  population_labels: np.ndarray | None = None, canary_scores: np.ndarray | None = None,
                  canary_in: np.ndarray | None = None, **config):
    """A report from model outputs alone, as ``dpaudit audit --from-signals``: ``logits`` [models, records,
    classes] (row 0 the target), ``labels`` [records], ``membership`` [models, records]; ``epsilon`` the
    target's claim (None: no DP claim)."""
    from dpaudit.config import AuditConfig
    from dpaudit.pipeline import signals_report

    arrays = {"logits": logits, "labels": labels, "membership": membership}
    for k, v in (("population_logits", population_logits), ("population_labels", population_labels),
                 ("canary_scores", canary_scores), ("canary_in", canary_in)):
        if v is not None:
            arrays[k] = v
    # The default attack list drops what these outputs cannot serve (RMIA without population records, attacks
    # needing more references than given); a list the caller chose is refused instead.
    default = "attacks" not in config
    cfg = AuditConfig(delta=delta, **config)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "signals.npz"
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
        report, _ = signals_report(path, cfg, epsilon, command="dpaudit.audit_outputs(...)", drop_unusable=default)
    return report


def write_report(report, out: str | Path, formats: tuple[str, ...] = ("json", "md", "html"), *,
                 force: bool = False) -> Path:
    """Write ``report`` (typed or its JSON) into the folder ``out``, atomically. A folder that already holds
    files is refused unless ``force``, which replaces it as a whole."""
    from dpaudit.io import check_out_folder
    from dpaudit.report import render, write_outputs

    check_out_folder(out, force)
    files: dict[str, bytes] = {}
    for f in ("json",) + tuple(f for f in formats if f != "json"):
        files.update(render(report, f))
    write_outputs(out, files, force=force)
    return Path(out)
