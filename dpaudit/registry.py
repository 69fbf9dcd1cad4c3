"""The one shape of every extension point's name table (attacks, datasets, models, executors): a dict from name
to plug-in that refuses to replace an entry unless told to (``force=True``), and never replaces a built-in.

Refusing by default matters for an audit: a plug-in that silently shadowed ``loss`` or ``local`` would change what
a report means without any trace in it. A notebook that re-runs its registering cell passes ``force=True``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from dpaudit.errors import DPAuditError

T = TypeVar("T", bound=Callable)


class Registry(dict):
    """``name -> plug-in``. ``register(name)`` is the decorator user code calls; ``add`` stores a ready object.
    Names hold no ':' because specs such as ``npz:PATH`` and ``module:factory`` use it. Registered names live in
    this process only: worker processes need the registering module imported too (or a spec string instead)."""

    def __init__(self, kind: str, colon_use: str = "specs such as module:name"):
        super().__init__()
        self.kind, self.colon_use = kind, colon_use
        self.builtin: set[str] = set()

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or ":" in name or name != name.strip():
            raise DPAuditError(f"{self.kind} name {name!r} must be a non-empty string without ':' "
                               f"(kept for {self.colon_use})")
        if name in self.builtin:
            raise DPAuditError(f"{self.kind} name {name!r} is a built-in; register yours under another name")

    def add(self, name: str, entry: Any, *, force: bool = False, builtin: bool = False) -> Any:
        self._check_name(name)
        if name in self.builtin:
            raise DPAuditError(f"{self.kind} name {name!r} is a built-in; register yours under another name")
        if name in self and not force:
            raise DPAuditError(f"{self.kind} {name!r} is already registered; pass force=True to replace it")
        self[name] = entry
        if builtin:
            self.builtin.add(name)
        return entry

    def register(self, name: str, *, force: bool = False, _builtin: bool = False) -> Callable[[T], T]:
        def deco(fn: T) -> T:
            if not callable(fn):
                raise DPAuditError(f"register_{self.kind}({name!r}) needs a callable, got {type(fn).__name__}")
            return self.add(name, fn, force=force, builtin=_builtin)

        self._check_name(name)  # a bad name fails where it is written, not at first use
        return deco

    def lookup(self, name: str) -> Any:
        """The entry named ``name``, or a one-line error that lists the choices."""
        if name not in self:
            raise DPAuditError(f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self))}")
        return self[name]
