"""Grid expansion: scenario -> cells -> work units, with stable hashes.

A *cell* is one combination of grid levels (the cartesian product over the factors); its
id is the sha256 of the canonical JSON of the plant name and the plant's fully resolved
parameters (defaults included), so it does not depend on dict order, on how a number is
spelled (``25`` vs ``25.0``) or on the method list. A *unit* is a (cell, seed) pair: it is
simulated once and every method runs on the same data. Its data come from
``np.random.default_rng([seed, int(cell_id[:8], 16)])``, identical on any executor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.scenario import Scenario, short_hash

__all__ = ["Cell", "Unit", "cell_id", "expand", "unit_id", "unit_rng", "units"]


@dataclass(frozen=True)
class Cell:
    """One grid cell.

    Attributes
    ----------
    cell_id : str
        16 hex digits, stable across runs and machines.
    factors : dict
        Grid factor -> level of this cell (insertion order of the grid).
    params : dict
        All plant parameters (resolved, defaults included).
    """

    cell_id: str
    factors: dict
    params: dict


@dataclass(frozen=True)
class Unit:
    """A work unit: one cell simulated with one seed."""

    cell: Cell
    seed: int
    unit_id: str


def cell_id(plant: str, params: dict) -> str:
    """Stable id of a cell: hash of the plant name and its resolved parameters."""
    return short_hash({"plant": plant, "params": params})


def unit_id(plant: str, params: dict, seed: int) -> str:
    """Stable id of a (cell, seed) unit."""
    return short_hash({"plant": plant, "params": params, "seed": int(seed)})


def unit_rng(cell: str, seed: int) -> np.random.Generator:
    """The generator a unit simulates with: seeded by the seed and the cell id."""
    return np.random.default_rng([int(seed), int(cell[:8], 16)])


def expand(scenario: Scenario) -> list[Cell]:
    """Cells of a validated scenario, in grid order (last factor varies fastest)."""
    name = scenario.plant.name
    return [
        Cell(cell_id(name, c["params"]), dict(c["factors"]), dict(c["params"]))
        for c in scenario.cell_params
    ]


def units(scenario: Scenario) -> list[Unit]:
    """All (cell, seed) work units of a scenario, cells outer, seeds inner."""
    name = scenario.plant.name
    return [
        Unit(cell, seed, unit_id(name, cell.params, seed))
        for cell in expand(scenario)
        for seed in scenario.seeds
    ]
