"""Declared parameter constraints and the one validator that checks them.

Modelled on scikit-learn's ``sklearn/utils/_param_validation.py``: each estimator,
calibrator or plant declares ``_parameter_constraints = {"name": [constraint, ...]}``
and :func:`validate_params` produces one error format::

    The 'window' parameter of SDS must be an int in [4, 400]. Got 2 instead.
"""

from __future__ import annotations

import inspect
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import InvalidParameterError

__all__ = ["ArrayLike", "Interval", "Options", "Schema", "describe", "get_params",
           "validate_params"]


@dataclass(frozen=True)
class Interval:
    """A real or integer interval constraint.

    Parameters
    ----------
    type : {int, float}
        ``int`` accepts integral numbers only; ``float`` accepts any real number.
    left, right : float or None
        Bounds; ``None`` means unbounded.
    closed : {"both", "left", "right", "neither"}
        Which bounds are included.
    """

    type: type
    left: float | None
    right: float | None
    closed: str = "both"

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.type is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real):
            return False
        if not np.isfinite(float(value)):
            return False
        lo_ok = (
            self.left is None
            or (value >= self.left if self.closed in ("both", "left") else value > self.left)
        )
        hi_ok = (
            self.right is None
            or (value <= self.right if self.closed in ("both", "right") else value < self.right)
        )
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        kind = "an int" if self.type is int else "a float"
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        return f"{kind} in {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class Options:
    """A constraint accepting one of a fixed set of values."""

    values: tuple

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, np.ndarray):
            return False
        try:
            return bool(value in self.values)
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return "one of {" + ", ".join(repr(v) for v in self.values) + "}"


@dataclass(frozen=True)
class ArrayLike:
    """A constraint accepting a finite 1-D array-like of numbers (a custom profile)."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, (str, bytes, Mapping)):
            return False
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return False
        return arr.ndim == 1 and arr.size > 0 and bool(np.all(np.isfinite(arr)))

    def __str__(self) -> str:
        return "a finite 1-D array of numbers"


@dataclass(frozen=True)
class Schema:
    """A constraint for a structured parameter: a strict pydantic model validates it.

    A scenario reports each of the model's errors at its own line
    (``plant.params.trials.t1.emg``); :func:`validate_params` raises the first one.
    """

    model: Any

    def errors(self, value: Any) -> list[tuple[tuple, str]]:
        """``(path, message)`` of every problem (empty when valid)."""
        from pydantic import ValidationError

        try:
            self.model.model_validate(value)
        except ValidationError as exc:
            out = []
            for e in exc.errors():
                msg = "unknown key" if e["type"] == "extra_forbidden" else (
                    "required key is missing" if e["type"] == "missing" else e["msg"])
                out.append((tuple(e["loc"]), msg.removeprefix("Value error, ")))
            return out
        return []

    def is_satisfied_by(self, value: Any) -> bool:
        return not self.errors(value)

    def __str__(self) -> str:
        return f"a mapping of the form {self.model.__name__}"


def _satisfied(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        if constraint is float:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)
        if constraint is int:
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return isinstance(value, constraint)
    if callable(getattr(constraint, "is_satisfied_by", None)):
        return constraint.is_satisfied_by(value)
    raise TypeError(f"unknown constraint {constraint!r}")


def _constraint_str(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__!r}"
    return str(constraint)


def validate_params(
    owner: str, constraints: Mapping[str, list], params: Mapping[str, Any]
) -> None:
    """Check ``params`` against ``constraints`` and raise one readable error.

    Parameters
    ----------
    owner : str
        Name used in the message ("SDS", "MSDPlant").
    constraints : mapping of str to list
        For each parameter, the constraints of which at least one must hold. A parameter
        whose constraint list is the string ``"no_validation"`` is skipped.
    params : mapping of str to Any
        The values to check.

    Raises
    ------
    InvalidParameterError
        Naming the parameter, the allowed values and the value given.
    """
    for name, value in params.items():
        cons = constraints.get(name)
        if cons is None:
            raise InvalidParameterError(
                f"{owner} has no parameter {name!r}. "
                f"Valid parameters: {', '.join(sorted(constraints)) or '(none)'}."
            )
        if cons == "no_validation":
            continue
        if any(_satisfied(c, value) for c in cons):
            continue
        schemas = [c for c in cons if isinstance(c, Schema)]
        if len(schemas) == len(cons) == 1:
            (path, msg), *_ = schemas[0].errors(value)
            where = ".".join(str(p) for p in path)
            raise InvalidParameterError(
                f"The {name!r} parameter of {owner}: {where}: {msg}", path=(name, *path))
        allowed = [_constraint_str(c) for c in cons]
        allowed_txt = allowed[0] if len(allowed) == 1 else (
            ", ".join(allowed[:-1]) + " or " + allowed[-1]
        )
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {allowed_txt}. Got {value!r} instead."
        )


def get_params(obj: Any) -> dict[str, Any]:
    """Return the keyword parameters of ``obj`` read from its ``__init__`` signature.

    Every parameter must be stored unchanged on an attribute of the same name
    (the scikit-learn convention), so ``type(obj)(**get_params(obj))`` is a clone.
    """
    sig = inspect.signature(type(obj).__init__)
    return {
        p.name: getattr(obj, p.name)
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


_ROLE = re.compile(r":[a-z:]+:`~?([^`]+)`")


def _plain_text(text: str) -> str:
    """Docstring text without Sphinx roles and literal quotes."""
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1], text)
    return " ".join(text.replace("``", "").split())


_STOP = re.compile(r"\.(?=\s+[A-Z(]|$)")
_ABBREV = ("Sec", "Eq", "Fig", "e.g", "i.e", "vs", "Ref", "App", "Tab", "cf", "approx")


def _first_sentence(text: str) -> str:
    for m in _STOP.finditer(text):
        if not text[: m.start()].endswith(_ABBREV):
            return text[: m.end()]
    return text
_TYPES = {"int", "float", "bool", "str", "array", "ndarray", "array-like", "callable", "dict",
          "list", "tuple", "optional", "object", "none"}


def _units(kind: str, n: int) -> list[str]:
    """Units from a numpydoc type line (``float, Hz``; ``rad, Hz`` for two names)."""
    if kind.strip().startswith("{"):
        return [""] * n
    parts = [q.strip() for q in kind.split(",")]
    parts = [q for q in parts if q and q.split()[0].lower() not in _TYPES
             and not q.lower().startswith(("default", "shape"))
             and not any(ch in q for ch in "()[]{}")]
    if len(parts) == n:
        return parts
    return [", ".join(parts)] * n if parts else [""] * n


def param_docs(cls: type) -> dict[str, str]:
    """Meaning of each parameter from the numpydoc ``Parameters`` section of ``cls``'s
    docstring: its unit from the type line (``[Hz]``) and the first sentence."""
    lines = (inspect.getdoc(cls) or "").splitlines()
    try:
        start = next(i for i, ln in enumerate(lines[:-1])
                     if ln.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"})
    except StopIteration:
        return {}
    entries: list[tuple[list[str], list[str], list[str]]] = []  # names, units, text lines
    for i in range(start + 2, len(lines)):
        ln = lines[i]
        if ln and not ln[0].isspace():
            if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                break  # the next section
            head, _, kind = ln.partition(" : ")
            names = [n.strip() for n in head.split(",") if n.strip().isidentifier()]
            if names:
                entries.append((names, _units(kind, len(names)), []))
        elif ln.strip() and entries:
            entries[-1][2].append(ln.strip())
    out: dict[str, str] = {}
    for names, units, text in entries:
        body = _plain_text(" ".join(text))
        first = _first_sentence(body)
        for name, unit in zip(names, units):
            out[name] = (f"[{_plain_text(unit)}] " if unit else "") + first
    return {k: v.strip() for k, v in out.items() if v.strip()}


def describe(cls: type) -> list[tuple[str, Any, str, str]]:
    """List ``(name, default, constraint text, meaning)`` for each keyword parameter of
    ``cls`` (meaning and unit from its docstring, :func:`param_docs`)."""
    constraints = getattr(cls, "_parameter_constraints", {})
    docs = param_docs(cls)
    out = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        cons = constraints.get(p.name, [])
        txt = "any" if cons == "no_validation" else " or ".join(_constraint_str(c) for c in cons)
        default = None if p.default is inspect.Parameter.empty else p.default
        out.append((p.name, default, txt, docs.get(p.name, "")))
    return out
