"""dpaudit: train with and without differential privacy, attack, and report the leak beside the bound."""
__version__ = "0.1.0"

from .errors import DPAuditError  # noqa: F401
