"""dpaudit: differential-privacy auditing for machine-learning models."""

from dpaudit.errors import DPAuditError  # noqa: E402  (stdlib-only)
from dpaudit.version import __version__  # noqa: F401

__all__ = ["DPAuditError", "WhiteBoxProbe", "audit", "audit_outputs", "write_report", "__version__"]


def __getattr__(name):
    # Lazy: `dpaudit --help` imports this package and must not pay for numpy or torch.
    if name in ("audit", "audit_outputs", "write_report"):
        from dpaudit import api

        return getattr(api, name)
    if name == "WhiteBoxProbe":  # white-box audit of the user's own Opacus script (dpaudit/probe.py)
        from dpaudit.sources.probe import WhiteBoxProbe

        return WhiteBoxProbe
    raise AttributeError(f"module 'dpaudit' has no attribute {name!r}")
