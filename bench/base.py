"""Small base classes for estimators, calibrators and plants, with capability tags.

Estimators follow scikit-learn's convention (``sklearn/base.py``): keyword-only
hyper-parameters stored unchanged, :meth:`get_params` read from the signature,
validation against ``_parameter_constraints`` in :meth:`_validate`, and one pure
method that returns a new result and keeps no hidden state.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench.params import get_params, validate_params
from bench.types import ImpedanceEstimate, Realizations

__all__ = ["Calibrator", "Estimator", "Plant", "Tags", "task_of"]


@dataclass(frozen=True)
class Tags:
    """Capabilities of a backend, read by the runner and by the shared test suite.

    Attributes
    ----------
    time_varying : bool
        Estimates a stiffness trajectory (False: one constant value broadcast over N).
    needs_ensemble : bool
        Needs R > 1 realizations of the same time variation.
    needs_schedule : bool
        Needs ``Realizations.schedule``.
    stochastic : bool
        Uses random numbers (then it takes a ``random_state``).
    needs_jax : bool
    min_realizations : int
        Fewest realizations it can work with.
    task : str or None
        The task adapter that runs it (``bench.task``); None: by its base class
        (:class:`Estimator`: ``"impedance"``, :class:`Calibrator`: ``"calibration"``).
    batch_factors : tuple of str
        Task settings it takes as one batch (e.g. ``("alpha", "beta")``: a whole weight sweep
        in one vmapped call); the runner still writes one record per setting.
    """

    time_varying: bool = True
    needs_ensemble: bool = True
    needs_schedule: bool = False
    stochastic: bool = False
    needs_jax: bool = False
    min_realizations: int = 1
    task: str | None = None
    batch_factors: tuple[str, ...] = ()


class _Parametrized:
    _parameter_constraints: ClassVar[dict] = {}

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor."""
        return get_params(self)

    def _validate(self) -> None:
        validate_params(type(self).__name__, self._parameter_constraints, self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Estimator(_Parametrized, abc.ABC):
    """Base class of impedance estimators.

    Subclasses set ``name``, ``tags`` and ``_parameter_constraints``, store their
    keyword-only hyper-parameters unchanged in ``__init__`` and implement :meth:`_estimate`.
    """

    name: ClassVar[str] = ""
    tags: ClassVar[Tags] = Tags()
    #: Where this implementation departs from its source paper, in a sentence or two of
    #: plain facts; reports print it under the tables that compare with the published values.
    deviations: ClassVar[str] = ""

    def estimate(self, data: Realizations) -> ImpedanceEstimate:
        """Estimate the impedance of ``data``.

        Validates the hyper-parameters and the data's fitness for this method,
        then calls :meth:`_estimate`.
        """
        self._validate()
        if not isinstance(data, Realizations):
            raise TypeError(
                f"{type(self).__name__}.estimate expects Realizations, got {type(data)}"
            )
        from bench.errors import DataError

        if data.R < self.tags.min_realizations:
            raise DataError(
                f"{type(self).__name__} needs at least {self.tags.min_realizations} "
                f"realizations; got {data.R}."
            )
        if self.tags.needs_schedule and data.schedule is None:
            raise DataError(f"{type(self).__name__} needs a scheduling variable (schedule).")
        est = self._estimate(data)
        if est.K.shape != (data.N,):
            raise RuntimeError(
                f"{type(self).__name__} returned K with shape {est.K.shape}; expected ({data.N},)"
            )
        return est

    @abc.abstractmethod
    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        """Compute the estimate; ``data`` is already validated."""


class Plant(_Parametrized, abc.ABC):
    """Base class of ground-truth generators.

    Subclasses take their parameters as keyword arguments (validated by
    ``_parameter_constraints``) and implement :meth:`simulate`, drawing every random
    number from the ``rng`` given.
    """

    name: ClassVar[str] = ""
    #: The task whose data :meth:`simulate` returns (``bench.task``).
    task: ClassVar[str] = "impedance"

    @abc.abstractmethod
    def simulate(self, rng: np.random.Generator) -> Any:
        """Run one experiment; returns :class:`Realizations` or ``MuscleData``."""


class Calibrator(_Parametrized, abc.ABC):
    """Base class of musculoskeletal model calibrators."""

    name: ClassVar[str] = ""
    tags: ClassVar[Tags] = Tags(time_varying=False, needs_ensemble=False, needs_jax=True)
    #: Physiological penalty of the objective when a scenario leaves it to the method
    #: (``penalty: auto``): gradient methods need the smooth one.
    default_penalty: ClassVar[str] = "smooth"

    @abc.abstractmethod
    def calibrate(self, model: Any, data: Any, objective: Any, *, space: Any = None) -> Any:
        """Fit ``model`` to ``data`` under ``objective``; returns a CalibrationResult."""

    def calibrate_many(self, model: Any, data: Any, objectives: list, *,
                       space: Any = None) -> list:
        """One calibration per objective on the same data (a weight sweep).

        Methods whose ``tags.batch_factors`` name the objective's weights override this to
        run the sweep as one batch; the default calls :meth:`calibrate` for each.
        """
        return [self.calibrate(model, data, o, space=space) for o in objectives]


def task_of(cls: type) -> str | None:
    """The task a backend class does: its ``tags.task``, else by its base class."""
    tags = getattr(cls, "tags", None)
    if getattr(tags, "task", None):
        return tags.task
    if isinstance(cls, type) and issubclass(cls, Estimator):
        return "impedance"
    if isinstance(cls, type) and issubclass(cls, Calibrator):
        return "calibration"
    return None
