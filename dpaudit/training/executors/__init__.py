"""Executors: where an audit's training jobs run (``--executor``), behind one Registry.

``local`` is always there; ``ray`` registers itself when first asked for, so that Ray is imported only by the
audits that use it."""
from __future__ import annotations

from dpaudit.errors import DPAuditError
from dpaudit.training.executors import local  # noqa: F401  (registers "local")
from dpaudit.training.executors.base import EXECUTORS, THREADS_PER_MODEL, Executor, register_executor

__all__ = ["EXECUTORS", "THREADS_PER_MODEL", "Executor", "get_executor", "register_executor"]


def get_executor(name: str, **options) -> Executor:
    if name == "ray" and "ray" not in EXECUTORS:
        try:
            from dpaudit.training.executors import ray_cluster  # noqa: F401  (registers "ray")
        except ImportError as exc:
            raise DPAuditError(f"--executor ray needs Ray: pip install 'dpaudit[ray]' ({exc})") from None
    if name not in EXECUTORS:
        raise DPAuditError(f"unknown --executor {name!r}; choose one of {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](**options)
