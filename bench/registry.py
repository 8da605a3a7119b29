"""Registry of estimators, calibrators and plants by name.

Built-ins and third-party plugins register through the entry-point groups
``impbench.estimators``, ``impbench.calibrators`` and ``impbench.plants``; a scenario
may also name any class as ``"module:Class"``. Names that do not resolve raise a
:class:`~bench.errors.RegistryError` listing the valid names; an entry point whose
module fails to import is reported as *not available* with the reason.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from bench.errors import RegistryError

__all__ = ["KINDS", "Entry", "available", "entries", "resolve"]

KINDS = ("estimators", "calibrators", "plants")


@dataclass(frozen=True)
class Entry:
    """One registered backend."""

    kind: str
    name: str
    target: str
    obj: type | None
    error: str | None

    @property
    def available(self) -> bool:
        return self.obj is not None


def _load(target: str) -> type:
    module, _, attr = target.partition(":")
    if not attr:
        raise RegistryError(f"{target!r} is not of the form 'module:Class'.")
    mod = importlib.import_module(module)
    try:
        return getattr(mod, attr)
    except AttributeError as exc:
        raise RegistryError(f"module {module!r} has no attribute {attr!r}") from exc


@cache
def entries(kind: str) -> dict[str, Entry]:
    """All backends of ``kind`` registered through entry points, loaded (cached)."""
    if kind not in KINDS:
        raise RegistryError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    out: dict[str, Entry] = {}
    for ep in entry_points(group=f"impbench.{kind}"):
        try:
            obj, err = ep.load(), None
        except Exception as exc:  # a broken plugin must not break the bench
            obj, err = None, f"{type(exc).__name__}: {exc}"
        if ep.name in out and out[ep.name].target != ep.value:
            raise RegistryError(
                f"{kind} name {ep.name!r} is registered twice: {out[ep.name].target} and {ep.value}"
            )
        out[ep.name] = Entry(kind, ep.name, ep.value, obj, err)
    return out


def available(kind: str) -> list[str]:
    """Sorted names of the backends of ``kind`` that loaded."""
    return sorted(n for n, e in entries(kind).items() if e.available)


def resolve(kind: str, name: str) -> type:
    """Return the class registered as ``name`` (or named ``"module:Class"``).

    Raises
    ------
    RegistryError
        Unknown name (with close matches), or a plugin that failed to load (with why).
    """
    if ":" in name:
        try:
            return _load(name)
        except (ImportError, RegistryError) as exc:
            raise RegistryError(f"cannot load {kind[:-1]} {name!r}: {exc}") from exc
    reg = entries(kind)
    if name not in reg:
        close = difflib.get_close_matches(name, list(reg), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RegistryError(
            f"unknown {kind[:-1]} {name!r}.{hint} Available: {', '.join(sorted(reg)) or '(none)'}."
        )
    e = reg[name]
    if e.obj is None:
        raise RegistryError(f"{kind[:-1]} {name!r} is not available: {e.error}")
    return e.obj
