"""Grid expansion: scenario -> cells -> units -> work items, with stable hashes.

A *cell* is one combination of grid levels (the cartesian product over the factors, less the
scenario's ``exclude``). Its **data id** is the sha256 of the canonical JSON of the plant name
and the plant's fully resolved parameters (defaults included), so it does not depend on dict
order, on how a number is spelled (``25`` vs ``25.0``) or on the method list; its **cell id**
is the data id when the cell varies only plant parameters, else the hash of the plant, its
parameters and the cell's task settings and method-parameter levels.

A *unit* is a (cell, seed) pair; every method runs on the same data. The data of a unit come
from ``np.random.default_rng([seed, int(data_id[:8], 16)])``, identical on any executor and
**shared by every cell with the same data id**: cells that differ only in task settings (the
calibration objective's weights, the recorded channels) or method parameters see the same
simulated subject. A *work item* is one (data id, seed): the plant simulates once and the task
runs every pending (cell, method) of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.scenario import Scenario, short_hash

__all__ = ["Cell", "Unit", "expand", "unit_id", "unit_rng", "units", "work_items"]


@dataclass(frozen=True)
class Cell:
    """One grid cell.

    Attributes
    ----------
    cell_id : str
        16 hex digits, stable across runs and machines.
    data_id : str
        Id of the plant draw the cell uses (shared by cells that differ only in settings).
    factors : dict
        Grid factor -> level of this cell (insertion order of the grid).
    params : dict
        All plant parameters (resolved, defaults included).
    settings : dict
        The task's settings (resolved, defaults included).
    method_params : dict
        Method-parameter factor -> level.
    """

    cell_id: str
    data_id: str
    factors: dict
    params: dict
    settings: dict
    method_params: dict


@dataclass(frozen=True)
class Unit:
    """A work unit: one cell simulated with one seed."""

    cell: Cell
    seed: int
    unit_id: str


def unit_id(plant: str, params: dict, seed: int, varied: dict | None = None) -> str:
    """Stable id of a (cell, seed) unit; ``varied`` = the cell's settings/method levels."""
    if not varied:
        return short_hash({"plant": plant, "params": params, "seed": int(seed)})
    return short_hash({"plant": plant, "params": params, "settings": varied, "seed": int(seed)})


def unit_rng(data: str, seed: int) -> np.random.Generator:
    """The generator a unit simulates with: seeded by the seed and the data id."""
    return np.random.default_rng([int(seed), int(data[:8], 16)])


def expand(scenario: Scenario) -> list[Cell]:
    """Cells of a validated scenario, in grid order (last factor varies fastest)."""
    return [
        Cell(c["cell_id"], c["data_id"], dict(c["factors"]), dict(c["params"]),
             dict(c["settings"]), dict(c["method_params"]))
        for c in scenario.cell_params
    ]


def _varied(scenario: Scenario, cell: Cell) -> dict:
    return {f: v for f, v in cell.factors.items()
            if scenario.factor_kinds.get(f) in ("setting", "method")}


def units(scenario: Scenario) -> list[Unit]:
    """All (cell, seed) work units of a scenario, cells outer, seeds inner."""
    name = scenario.plant.name
    return [
        Unit(cell, seed, unit_id(name, cell.params, seed, _varied(scenario, cell)))
        for cell in expand(scenario)
        for seed in scenario.seeds
    ]


def work_items(all_units: list[Unit]) -> list[tuple[str, int, list[Unit]]]:
    """Group units by (data id, seed), in order of first appearance."""
    groups: dict[tuple[str, int], list[Unit]] = {}
    for u in all_units:
        groups.setdefault((u.cell.data_id, u.seed), []).append(u)
    return [(d, s, us) for (d, s), us in groups.items()]
