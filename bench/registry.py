"""Registry of estimators, calibrators, plants, tasks, layouts and commands by name.

Built-ins and third-party plugins register through the entry-point groups
``impbench.<kind>`` (``impbench.estimators``, ``impbench.calibrators``, ``impbench.plants``,
``impbench.tasks``, ``impbench.layouts``, ``impbench.commands``); a scenario may also name
any class as ``"module:Class"``. Listing a kind reads the installed metadata only; a backend
is imported when it is resolved (so ``impbench validate`` on an impedance scenario never
imports JAX). Names that do not resolve raise a :class:`~bench.errors.RegistryError` listing
the valid names; an entry point whose module fails to import is reported as *not available*
with the reason.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from bench.errors import RegistryError

__all__ = ["BACKEND_KINDS", "KINDS", "Entry", "available", "entries", "resolve"]

KINDS = ("estimators", "calibrators", "plants", "tasks", "layouts", "commands")
#: The kinds ``impbench list`` shows by default.
BACKEND_KINDS = ("estimators", "calibrators", "plants", "layouts")


@cache
def _load_target(target: str) -> tuple[object | None, str | None]:
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
        return getattr(mod, attr), None
    except Exception as exc:  # a broken plugin must not break the bench
        return None, f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Entry:
    """One registered backend (imported on first use of :attr:`obj`)."""

    kind: str
    name: str
    target: str

    @property
    def obj(self) -> object | None:
        """The registered object, or None when it failed to load."""
        return _load_target(self.target)[0]

    @property
    def error(self) -> str | None:
        """Why it failed to load, or None."""
        return _load_target(self.target)[1]

    @property
    def available(self) -> bool:
        return self.obj is not None


@cache
def entries(kind: str) -> dict[str, Entry]:
    """All backends of ``kind`` registered through entry points (not imported)."""
    if kind not in KINDS:
        raise RegistryError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    out: dict[str, Entry] = {}
    for ep in entry_points(group=f"impbench.{kind}"):
        if ep.name in out and out[ep.name].target != ep.value:
            raise RegistryError(
                f"{kind} name {ep.name!r} is registered twice: {out[ep.name].target} and {ep.value}"
            )
        out[ep.name] = Entry(kind, ep.name, ep.value)
    return out


def available(kind: str) -> list[str]:
    """Sorted names of the backends of ``kind`` that load (imports them all)."""
    return sorted(n for n, e in entries(kind).items() if e.available)


def resolve(kind: str, name: str) -> type:
    """Return the class registered as ``name`` (or named ``"module:Class"``).

    Raises
    ------
    RegistryError
        Unknown name (with close matches), or a plugin that failed to load (with why).
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        if not module or not attr:
            raise RegistryError(f"{name!r} is not of the form 'module:Class'.")
        try:
            mod = importlib.import_module(module)
        except Exception as exc:
            raise RegistryError(f"cannot load {kind[:-1]} {name!r}: "
                                f"{type(exc).__name__}: {exc}") from exc
        try:
            return getattr(mod, attr)
        except AttributeError:
            raise RegistryError(f"cannot load {kind[:-1]} {name!r}: module {module!r} has no "
                                f"attribute {attr!r}") from None
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
