"""Task adapters: the one place per kind of work that knows its data types.

A scenario's methods are estimators *or* calibrators; the backends' tags name the task they
do (``Tags.task``), and the task adapter registered under that name (entry-point group
``impbench.tasks``) runs them. The runner, the store, the executors and ``compare`` know no
data type: they hand a task adapter the plant's output for one data draw and the cells that
share it, and write the records it yields.

A task adapter declares

* ``_parameter_constraints``: its **settings**, which a scenario gives as grid factors (e.g.
  the calibration objective's ``alpha``/``beta``, the recorded EMG channels);
* ``metrics``: the metric names a scenario may request, with the better direction and unit;
* ``default_metrics`` and ``default_layout``;

and implements :meth:`Task.run`, which yields one :class:`Outcome` per (cell, method).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.base import task_of
from bench.params import validate_params

__all__ = ["CellWork", "MethodWork", "MetricInfo", "Outcome", "Task"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means: which direction is better, its unit, one line of description."""

    better: str  # "lower" | "higher"
    unit: str = ""
    text: str = ""

    def as_dict(self) -> dict:
        return {"better": self.better, "unit": self.unit, "text": self.text}


@dataclass(frozen=True)
class MethodWork:
    """One method of a work item: registry name, label, record key and parameters."""

    name: str
    label: str
    key: str
    params: dict


@dataclass(frozen=True)
class CellWork:
    """One cell of a work item: its ids, its factor levels, and the task settings and
    method-parameter levels it gives (plant parameters are already in the plant)."""

    cell_id: str
    unit_id: str
    factors: dict
    settings: dict
    method_params: dict
    methods: tuple[MethodWork, ...]


@dataclass
class Outcome:
    """The result of one method on one cell, as the task reports it.

    Attributes
    ----------
    status : {"ok", "failed"}
    reason : str
    metrics : dict of str to float
    info : dict
        JSON-able scalars and short lists (hyper-parameters used, warnings, diagnostics).
    arrays : str or None
        Path of the record's arrays file relative to the run directory.
    wall_time_s, peak_mem_mib : float or None
    """

    cell: CellWork
    method: MethodWork
    status: str = "ok"
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    arrays: str | None = None
    wall_time_s: float | None = None
    peak_mem_mib: float | None = None


class Task(abc.ABC):
    """Base class of task adapters (see the module docstring).

    Subclasses set the class attributes and implement :meth:`run`.
    """

    name: ClassVar[str] = ""
    #: Registry kind of the methods it runs ("estimators" or "calibrators").
    method_kind: ClassVar[str] = ""
    #: Settings a scenario may give as grid factors, with their declared constraints.
    _parameter_constraints: ClassVar[dict] = {}
    #: Metric name -> MetricInfo.
    metrics: ClassVar[dict[str, MetricInfo]] = {}
    default_metrics: ClassVar[tuple[str, ...]] = ()
    default_layout: ClassVar[str] = "table"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Default value of each setting; override in subclasses."""
        return {}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        """Validate ``settings`` against the declared constraints (raises
        :class:`~bench.errors.InvalidParameterError`)."""
        validate_params(f"the {cls.name} task", cls._parameter_constraints, settings)

    @classmethod
    def check_cell(cls, plant: Any, settings: dict, methods: list[Any]) -> str | None:
        """Cross-checks of one cell before anything runs (a setting the plant's data cannot
        satisfy, e.g. a channel it does not record); returns why it is invalid, or None."""
        return None

    @classmethod
    def check_method(cls, method_cls: type) -> str | None:
        """Why ``method_cls`` cannot run in this task, or None."""
        task = task_of(method_cls)
        if task != cls.name:
            return (f"{getattr(method_cls, '__name__', method_cls)!r} does the "
                    f"{task or 'unknown'!r} task, not {cls.name!r}")
        return None

    @abc.abstractmethod
    def run(self, data: Any, cells: list[CellWork], out: Path,
            metrics: list[str]) -> Iterator[Outcome]:
        """Run every method of every cell on ``data`` (one plant draw) and yield outcomes.

        Parameters
        ----------
        data : Any
            What the plant's ``simulate`` returned for this draw.
        cells : list of CellWork
            The cells that share this draw, each with its pending methods.
        out : Path
            Run directory (for arrays files, :func:`bench.store.array_path`).
        metrics : list of str
            The scenario's metrics.
        """
