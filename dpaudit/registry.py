"""The one shape of every extension point's name table (datasets, models): a dict from name to plug-in,
whose built-in names cannot be replaced and whose user names can (a notebook re-runs its cells)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import DPAuditError

T = TypeVar("T", bound=Callable)


class Registry(dict):
    """``name -> callable``. ``register(name)`` is the decorator user code calls; names hold no ':' because
    specs such as ``npz:PATH`` and ``module:factory`` use it. Registered names live in this process only:
    worker processes need the registering module imported too (or a spec string instead of a name)."""

    def __init__(self, kind: str, colon_use: str):
        super().__init__()
        self.kind, self.colon_use = kind, colon_use
        self.builtin: set[str] = set()

    def register(self, name: str, *, _builtin: bool = False) -> Callable[[T], T]:
        if not isinstance(name, str) or not name or ":" in name or name != name.strip():
            raise DPAuditError(f"{self.kind} name {name!r} must be a non-empty string without ':' "
                               f"(kept for {self.colon_use})")
        if name in self.builtin:
            raise DPAuditError(f"{self.kind} name {name!r} is a built-in; register yours under another name")

        def deco(fn: T) -> T:
            if not callable(fn):
                raise DPAuditError(f"register_{self.kind}({name!r}) needs a callable, got {type(fn).__name__}")
            self[name] = fn
            if _builtin:
                self.builtin.add(name)
            return fn

        return deco
