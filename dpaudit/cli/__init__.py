"""`dpaudit`: thin Click commands over the library, one module per command. Every command is also a Python call."""
from dpaudit.cli import attack, audit, check, epsilon, report, train  # noqa: F401  (each registers its commands)
from dpaudit.cli.common import main

__all__ = ["main"]
