"""Report layouts: plugins registered by name that turn a run's tidy table into a report.

A scenario's ``layout: {name: ..., <options>}`` picks one (entry-point group
``impbench.layouts``; ``impbench list layouts`` shows them). A layout declares

* ``tasks``: the tasks whose runs it can report;
* ``options_model``: a strict pydantic model of its options (validated with the file's lines
  when the scenario loads, like every other section);
* ``reference_model``: the model of the scenario's ``reference`` block when it has one (the
  published numbers it prints beside ours), or None to take the common
  :class:`ReferenceBase` (``source``, ``note``);
* :meth:`Layout.check`: cross-checks of the options against the grid (a split factor that
  is not a factor), returning the resolved options stored in ``scenario.json``;
* :meth:`Layout.write`: read the records and write ``report.md``, ``report.html`` and
  figures into the run directory.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from bench.yamlfile import Collector

__all__ = ["Layout", "LayoutContext", "ReferenceBase", "StrictModel"]


class StrictModel(BaseModel):
    """Base of option models: unknown keys are errors, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ReferenceBase(StrictModel):
    """The part of every ``reference`` block: where the published numbers come from."""

    source: StrictStr = Field(min_length=1)
    note: StrictStr = ""


@dataclass(frozen=True)
class LayoutContext:
    """What a layout may check its options against.

    Attributes
    ----------
    task : str
    grid : dict
        Factor -> levels.
    plant_params : dict
        Fixed plant parameters.
    labels : tuple of str
        Method labels.
    metrics : tuple of str
        The scenario's metrics.
    seeds : tuple of int
    """

    task: str
    grid: dict
    plant_params: dict
    labels: tuple
    metrics: tuple
    seeds: tuple


class Layout(abc.ABC):
    """Base class of report layouts (see the module docstring)."""

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    options_model: ClassVar[type[BaseModel]] = StrictModel
    reference_model: ClassVar[type[BaseModel] | None] = None

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        """Cross-check validated ``options`` (an ``options_model`` instance); add problems to
        ``col`` (paths relative to ``layout``) and return the resolved options (JSON-able)."""
        return options.model_dump(mode="json")

    @classmethod
    def check_reference(cls, ctx: LayoutContext, options: dict, reference: Any,
                        col: Collector) -> dict:
        """Cross-check a validated ``reference`` block (paths relative to ``reference``) and
        return it resolved (JSON-able)."""
        return reference.model_dump(mode="json")

    @abc.abstractmethod
    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        """Write the report of the run in ``out``; return the paths written by kind."""
