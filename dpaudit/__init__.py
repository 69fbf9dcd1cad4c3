"""dpaudit: differential-privacy auditing for machine-learning models.

The façade: the calls a notebook needs, each the library call behind a CLI command, and the registries that
user code extends. Every name loads on first use (``dpaudit --help`` imports this package and must not pay for
numpy or torch).
"""

from dpaudit.errors import DPAuditError  # noqa: E402  (stdlib-only)
from dpaudit.version import __version__  # noqa: F401

# name -> (module, attribute): one table, so the façade's names and their homes are read in one place
_LAZY = {
    "audit": ("dpaudit.api", "audit"),
    "audit_outputs": ("dpaudit.api", "audit_outputs"),
    "write_report": ("dpaudit.api", "write_report"),
    "load_report": ("dpaudit.report", "load_report"),
    "Report": ("dpaudit.schema", "Report"),
    "AuditConfig": ("dpaudit.config", "AuditConfig"),
    "Registry": ("dpaudit.registry", "Registry"),
    "register_attack": ("dpaudit.core.attack_registry", "register_attack"),
    "register_model": ("dpaudit.training.models", "register_model"),
    "register_dataset": ("dpaudit.training.data", "register_dataset"),
    "register_executor": ("dpaudit.training.executors.base", "register_executor"),
    # white-box audit of the user's own Opacus script (dpaudit.sources.probe)
    "WhiteBoxProbe": ("dpaudit.sources.probe", "WhiteBoxProbe"),
}

__all__ = ["DPAuditError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dpaudit' has no attribute {name!r}")
