"""dpaudit: differential-privacy auditing for machine-learning models."""

__version__ = "0.2.0"

from .errors import DPAuditError  # noqa: E402  (stdlib-only)

__all__ = ["DPAuditError", "WhiteBoxProbe", "audit", "audit_outputs", "write_report", "__version__"]


def __getattr__(name):
    # Lazy: `dpaudit --help` imports this package and must not pay for numpy or torch.
    if name in ("audit", "audit_outputs", "write_report"):
        from . import api

        return getattr(api, name)
    if name == "WhiteBoxProbe":  # white-box audit of the user's own Opacus script (dpaudit/probe.py)
        from .probe import WhiteBoxProbe

        return WhiteBoxProbe
    raise AttributeError(f"module 'dpaudit' has no attribute {name!r}")
