"""Exception and warning types shared by every impbench package.

All subclass a built-in so callers can catch them generically
(as python-control's ``control/exception.py`` does).
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "EstimationError",
    "InvalidParameterError",
    "RegistryError",
    "ScenarioError",
    "failure_reason",
]


def failure_reason(exc: BaseException) -> str:
    """One line for a record's ``reason``: ``"Type: first line of the message"`` (500
    characters at most)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:500]


class InvalidParameterError(ValueError):
    """A hyper-parameter or plant parameter violates its declared constraint.

    ``path`` (optional) locates the problem inside a structured parameter, e.g.
    ``("trials", "t1", "emg")``, so that a scenario's error names its line.
    """

    def __init__(self, message: str, *, path: tuple = ()) -> None:
        super().__init__(message)
        self.path = tuple(path)


class DataError(ValueError):
    """Input data are malformed: wrong shape, NaN/inf, unsorted time, missing column."""


class EstimationError(RuntimeError):
    """An estimator could not produce a result (singular matrix, too few samples, ...)."""


class RegistryError(LookupError):
    """A plugin name does not resolve, or a plugin failed to load."""


class ScenarioError(ValueError):
    """A scenario file is invalid. The message names the file, line and field."""


class ConvergenceWarning(UserWarning):
    """An iterative method stopped before meeting its convergence criterion."""
