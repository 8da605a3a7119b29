"""Scenario files: one schema for every study, validated whole before anything runs.

A scenario YAML declares one study (``docs/architecture.md``, "Scenario -> grid -> units ->
task -> records -> table -> layout"):

.. code-block:: yaml

    name: quickstart
    plant: {name: msd, params: {duration: 25, variation: K}}
    grid: {perturbation: [fgwn, prbs], snr_db: [0, 10]}
    exclude: []                      # cells to leave out: [{perturbation: prbs, snr_db: 10}]
    methods: [{name: eirf}, {name: sds, label: SDS, params: {}}]
    seeds: [0, 1]
    metrics: [stiffness_error, nan_share]
    layout: {name: table, split: perturbation, rows: [snr_db], baseline: {snr_db: 0}}
    reference: {source: "Ludvig 2011 Table III", table: {fgwn: {snr_db: {0: {eirf: 117.7}}}}}

The methods are estimators *or* calibrators (resolved by the registry); the task they do
(:mod:`bench.task`) decides which settings, metrics and layouts the scenario may use. A grid
factor is a plant parameter, a task setting (e.g. the calibration objective's ``alpha``) or
a parameter of one or more methods; every level is checked against the declared
constraints of whoever takes it.

Loading is two-phased and collects *every* error before raising: the structure is checked
by pydantic models (unknown keys, wrong types), then the content against the registry
(plant and method names, every parameter and grid level, every cell's plant constructed
once, the task's cross-checks, the layout's options and reference). Each error reads
``FILE:LINE: field.path: message``; the file is read by the hardened reader of
:mod:`bench.yamlfile`. Every check is linear in the file's size.

**Sizes.** A scenario may have at most :data:`MAX_CELLS` cells and :data:`MAX_RECORDS`
(cell x seed x method) records: the runner lists every unit in ``scenario.json`` and writes
one file per record, and the report reads them all back; beyond that a study should be split
into several scenarios (the thesis simulation study has 480 cells and 12 960 records).
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model
from pydantic import ValidationError as _PydanticError

from bench import registry
from bench.base import Plant, task_of
from bench.errors import InvalidParameterError, RegistryError
from bench.layout import LayoutContext, ReferenceBase
from bench.params import Schema, get_params, validate_params
from bench.yamlfile import (
    Collector,
    FileValidationError,
    Issue,
    check_name,
    pydantic_issues,
    read_yaml,
    valid_keys_hint,
)

__all__ = [
    "MAX_CELLS",
    "MAX_RECORDS",
    "MAX_SEED",
    "RESERVED_COLUMNS",
    "Issue",
    "MethodSpec",
    "PlantSpec",
    "Scenario",
    "ScenarioValidationError",
    "canonical_json",
    "load_scenario",
    "short_hash",
    "takes",
]

#: Largest number of grid cells (after ``exclude``) a scenario may have.
MAX_CELLS = 20_000
#: Largest number of records (cells x seeds x methods) a scenario may ask for.
MAX_RECORDS = 200_000
#: Largest seed: seeds are stored as int64 in the results table.
MAX_SEED = 2**63 - 1

#: Column names of the result table that grid factors may not take.
RESERVED_COLUMNS = frozenset(
    {
        "scenario", "cell_id", "unit_id", "seed", "plant", "method", "label", "method_key",
        "params", "status", "reason", "wall_time_s", "peak_mem_mib", "sim_time_s", "arrays",
        "median", "task", "exclude",
    }
)

#: A scenario file's errors (the located error type of :mod:`bench.yamlfile`).
ScenarioValidationError = FileValidationError

Path_ = tuple


# --------------------------------------------------------------------------- structure


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _PlantModel(_Strict):
    name: StrictStr = Field(min_length=1, max_length=300)
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class _MethodModel(_Strict):
    name: StrictStr = Field(min_length=1, max_length=300)
    label: StrictStr | None = Field(default=None, min_length=1, max_length=100)
    params: dict[StrictStr, Any] = Field(default_factory=dict)
    cells: dict[StrictStr, list[Any]] | None = None


class _ScenarioModel(_Strict):
    name: StrictStr
    description: StrictStr = ""
    plant: _PlantModel
    grid: dict[StrictStr, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[StrictStr, Any]] = Field(default_factory=list)
    methods: list[_MethodModel] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)
    metrics: list[StrictStr] | None = None
    layout: dict[StrictStr, Any] = Field(default_factory=dict)
    reference: dict[StrictStr, Any] | None = None


_SECTION_MODELS = {("plant",): _PlantModel, ("methods",): _MethodModel}


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class PlantSpec:
    """The plant of a scenario: registry name, fixed parameters and the resolved class."""

    name: str
    params: dict
    cls: type


@dataclass(frozen=True)
class MethodSpec:
    """One method column of a scenario.

    Attributes
    ----------
    name : str
        Registry name or ``module:Class``.
    label : str
        Column label (defaults to ``name``); unique in the scenario.
    params : dict
        Hyper-parameters given in the YAML.
    key : str
        ``label-<hash of name and params>``: identifies its result records (resume).
    status : {"ok", "unavailable"}
        ``unavailable`` when the entry point is registered but failed to load.
    reason : str
        Why it is unavailable.
    factors : tuple of str
        Grid factors that set one of its parameters.
    cells : dict or None
        The cells it runs in (factor -> levels); None: every cell. A costly reference method
        may run on a few cells of a large grid.
    """

    name: str
    label: str
    params: dict
    key: str
    status: str = "ok"
    reason: str = ""
    factors: tuple = ()
    cells: dict | None = None

    def takes(self, factors: dict) -> bool:
        """Whether the method runs in the cell with these factor levels."""
        return takes(self.cells, factors)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build it with :func:`load_scenario`.

    ``cell_params`` holds one dict per cell: ``factors`` (factor -> level), ``params`` (the
    plant's resolved parameters), ``settings`` (the task's resolved settings),
    ``method_params`` (factor -> level for method-parameter factors), ``data_id`` (hash of
    the plant and its parameters: cells with the same data id share one simulation per seed)
    and ``cell_id``.
    """

    name: str
    description: str
    file: str
    task: str
    plant: PlantSpec
    grid: dict
    factor_kinds: dict
    exclude: tuple
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    metric_info: dict
    layout: dict
    reference: dict | None
    cell_params: tuple[dict, ...] = field(default=(), repr=False)

    @property
    def n_cells(self) -> int:
        """Number of grid cells (cartesian product of the levels, less ``exclude``)."""
        return len(self.cell_params)

    def to_dict(self) -> dict:
        """JSON-safe description (written to ``OUT/scenario.json``)."""
        return {
            "name": self.name,
            "description": self.description,
            "file": self.file,
            "task": self.task,
            "plant": {"name": self.plant.name, "params": _plain(self.plant.params)},
            "grid": _plain(self.grid),
            "factor_kinds": dict(self.factor_kinds),
            "exclude": _plain(list(self.exclude)),
            "methods": [
                {"name": m.name, "label": m.label, "params": _plain(m.params), "key": m.key,
                 "status": m.status, "reason": m.reason, "factors": list(m.factors),
                 "cells": _plain(m.cells)}
                for m in self.methods
            ],
            "seeds": list(self.seeds),
            "metrics": list(self.metrics),
            "metric_info": self.metric_info,
            "layout": _plain(self.layout),
            "reference": _plain(self.reference),
        }


# --------------------------------------------------------------------------- hashing


def _jsonable(obj: Any) -> Any:
    """Convert to plain JSON types: numbers to float (so 25 and 25.0 hash alike)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, numbers.Integral) and abs(int(obj)) > 2**53:
        return int(obj)  # exact: a float would merge neighbouring large integers
    if isinstance(obj, numbers.Real):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return repr(obj)


def _plain(obj: Any) -> Any:
    """Convert to JSON types keeping ints as ints (for files people read)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    return repr(obj)


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, numbers as floats."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=True)


def short_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def takes(cells: dict | None, factors: dict) -> bool:
    """Whether a method restricted to ``cells`` (factor -> levels; None: all) runs in the
    cell with ``factors``."""
    if not cells:
        return True
    return all(any(canonical_json(factors.get(f)) == canonical_json(v) for v in levels)
               for f, levels in cells.items())


def data_id(plant: str, params: dict) -> str:
    """Id of the data a plant simulates: hash of its name and resolved parameters."""
    return short_hash({"plant": plant, "params": params})


def cell_id(plant: str, params: dict, settings: dict | None = None) -> str:
    """Id of a cell; equals :func:`data_id` when the cell has no settings factors."""
    if not settings:
        return data_id(plant, params)
    return short_hash({"plant": plant, "params": params, "settings": settings})


# --------------------------------------------------------------------------- content checks


def _check_param(owner: str, cons: dict, key: str, value: Any) -> str | None:
    try:
        validate_params(owner, cons, {key: value})
    except InvalidParameterError as exc:
        return str(exc)
    return None


@dataclass
class _Resolved:
    """What the content checks found, passed between them."""

    task_cls: type | None = None
    plant_cls: type | None = None
    methods: list = field(default_factory=list)  # [(MethodSpec, cls or None)]
    kinds: dict = field(default_factory=dict)  # factor -> "plant" | "setting" | "method"


def _check_methods(m: _ScenarioModel, col: Collector, res: _Resolved) -> None:
    labels: set[str] = set()
    tasks: dict[str, int] = {}
    for i, meth in enumerate(m.methods):
        label = meth.label or meth.name
        if label in labels:
            col.add(("methods", i, "label" if meth.label else "name"),
                    f"duplicate method label {label!r}; give each a distinct 'label'")
        labels.add(label)
        safe = "".join(c if c.isalnum() or c in "_.+-" else "_" for c in label)[:40]
        key = f"{safe}-{short_hash({'name': meth.name, 'params': meth.params}, 10)}"
        entry = None
        if ":" not in meth.name:
            entry = next((registry.entries(kind).get(meth.name)
                          for kind in ("estimators", "calibrators")
                          if meth.name in registry.entries(kind)), None)
        if entry is not None and not entry.available:
            spec = MethodSpec(meth.name, label, dict(meth.params), key, "unavailable",
                              entry.error or "failed to load")
            res.methods.append((spec, None))
            tasks.setdefault("calibration" if entry.kind == "calibrators" else "impedance", i)
            continue
        try:
            cls = _resolve_method(meth.name)
        except RegistryError as exc:
            col.add(("methods", i, "name"), str(exc))
            continue
        task = task_of(cls)
        if task is None:
            col.add(("methods", i, "name"),
                    f"{meth.name!r} is neither an impbench Estimator nor a Calibrator class")
            continue
        tasks.setdefault(task, i)
        res.methods.append((MethodSpec(meth.name, label, dict(meth.params), key), cls))
    if len(tasks) > 1:
        (t1, i1), (t2, i2) = list(tasks.items())[:2]
        col.add(("methods", i2, "name"), f"methods of one scenario must do one task: "
                                         f"methods[{i1}] does {t1!r}, this one {t2!r}")
        return
    if tasks:
        name = next(iter(tasks))
        try:
            res.task_cls = registry.resolve("tasks", name)
        except RegistryError as exc:
            col.add(("methods", 0, "name"), f"no task adapter for {name!r}: {exc}")


def _resolve_method(name: str) -> type:
    if ":" in name:
        return registry.resolve("estimators", name)  # module:Class loads the same way
    for kind in ("estimators", "calibrators"):
        if name in registry.entries(kind):
            return registry.resolve(kind, name)
    known = sorted({*registry.entries("estimators"), *registry.entries("calibrators")})
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise RegistryError(f"unknown estimator or calibrator {name!r}.{hint} "
                        f"Available: {', '.join(known)}.")


def _check_plant(m: _ScenarioModel, col: Collector, res: _Resolved) -> None:
    try:
        cls = registry.resolve("plants", m.plant.name)
    except RegistryError as exc:
        col.add(("plant", "name"), str(exc))
        return
    if not (isinstance(cls, type) and issubclass(cls, Plant)):
        col.add(("plant", "name"), f"{m.plant.name!r} is not an impbench Plant class")
        return
    res.plant_cls = cls
    task = res.task_cls.name if res.task_cls is not None else None
    if task is not None and getattr(cls, "task", "impedance") != task:
        col.add(("plant", "name"), f"plant {m.plant.name!r} gives data for the "
                                   f"{cls.task!r} task; the methods do {task!r}")
    cons = getattr(cls, "_parameter_constraints", {})
    for key, value in m.plant.params.items():
        schema = cons.get(key)
        if isinstance(schema, list) and len(schema) == 1 and isinstance(schema[0], Schema):
            for path, msg in schema[0].errors(value):  # each error at its own line
                col.add(("plant", "params", key, *path), msg)
            continue
        err = _check_param(cls.__name__, cons, key, value)
        if err:
            col.add(("plant", "params", key), err)


def _default_base_dir(m: _ScenarioModel, path: Path) -> None:
    """A plant that reads files (a ``base_dir`` parameter) resolves relative paths against
    the scenario's folder unless the scenario says otherwise."""
    try:
        cls = registry.resolve("plants", m.plant.name)
    except RegistryError:
        return
    init = getattr(cls, "__init__", None)
    params = inspect.signature(init).parameters if init is not None else {}
    if "base_dir" in params and "base_dir" not in m.plant.params:
        m.plant.params["base_dir"] = str(path.resolve().parent)


def _check_grid(m: _ScenarioModel, col: Collector, res: _Resolved) -> None:
    """Classify each factor and check every level against whoever takes it (linear)."""
    plant_cons = getattr(res.plant_cls, "_parameter_constraints", {}) if res.plant_cls else {}
    task_cons = getattr(res.task_cls, "_parameter_constraints", {}) if res.task_cls else {}
    method_cons = {spec.label: (cls, getattr(cls, "_parameter_constraints", {}))
                   for spec, cls in res.methods if cls is not None}
    for factor, levels in m.grid.items():
        path = ("grid", factor)
        if factor in RESERVED_COLUMNS or factor in (m.metrics or ()):
            col.add(path, f"{factor!r} is a reserved result column name")
            continue
        if factor in m.plant.params:
            col.add(path, "is also set in plant.params; give it in one place only")
            continue
        if not levels:
            col.add(path, "needs at least one level")
            continue
        if factor in plant_cons:
            kind, owners = "plant", [(res.plant_cls.__name__, plant_cons)]
        elif factor in task_cons:
            kind, owners = "setting", [(f"the {res.task_cls.name} task", task_cons)]
        else:
            takers = [(lab, cons) for lab, (_, cons) in method_cons.items() if factor in cons]
            if not takers:
                if res.plant_cls is None or (res.methods and not method_cons):
                    continue  # reported elsewhere (unknown plant or methods)
                valid = sorted({*plant_cons, *task_cons,
                                *(k for _, c in method_cons.values() for k in c)})
                col.add(path, "is neither a parameter of the plant, a setting of the "
                              f"{res.task_cls.name if res.task_cls else ''} task nor a "
                              "parameter of a method" + valid_keys_hint(factor, valid))
                continue
            kind, owners = "method", [(f"method {lab!r}", cons) for lab, cons in takers]
            for spec, _ in res.methods:
                if factor in spec.params:
                    col.add(path, f"is also set in the params of method {spec.label!r}; "
                                  "give it in one place only")
        res.kinds[factor] = kind
        seen: dict[str, int] = {}
        for i, level in enumerate(levels):
            for owner, cons in owners:
                err = _check_param(owner, cons, factor, level)
                if err:
                    col.add((*path, i), err)
                    break
            key = canonical_json(level)
            if key in seen:
                col.add((*path, i), f"duplicate level {level!r} (also item {seen[key]})")
            else:
                seen[key] = i
    for i, where in enumerate(m.exclude):
        if not where:
            col.add(("exclude", i), "an empty mapping would exclude every cell")
        for f, level in where.items():
            if f not in m.grid:
                col.add(("exclude", i, f), f"{f!r} is not a grid factor"
                        + valid_keys_hint(f, list(m.grid)))
            elif not any(canonical_json(level) == canonical_json(v) for v in m.grid[f]):
                col.add(("exclude", i, f), f"{level!r} is not a level of {f} {m.grid[f]!r}")


def _check_methods_params(m: _ScenarioModel, col: Collector, res: _Resolved) -> None:
    for i, (spec, cls) in enumerate(res.methods):
        if cls is None:
            continue
        idx = next(j for j, mm in enumerate(m.methods) if (mm.label or mm.name) == spec.label)
        if res.task_cls is not None:
            why = res.task_cls.check_method(cls)
            if why:
                col.add(("methods", idx, "name"), why)
                continue
        cons = getattr(cls, "_parameter_constraints", {})
        bad = False
        for pkey, value in spec.params.items():
            err = _check_param(cls.__name__, cons, pkey, value)
            if err:
                col.add(("methods", idx, "params", pkey), err)
                bad = True
        factors = tuple(f for f, k in res.kinds.items() if k == "method" and f in cons)
        cells = m.methods[idx].cells
        for f, levels in (cells or {}).items():
            if f not in m.grid:
                col.add(("methods", idx, "cells", f), f"{f!r} is not a grid factor"
                        + valid_keys_hint(f, list(m.grid)))
                continue
            if not levels:
                col.add(("methods", idx, "cells", f), "needs at least one level")
            known = {canonical_json(v) for v in m.grid[f]}
            for j, v in enumerate(levels):
                if canonical_json(v) not in known:
                    col.add(("methods", idx, "cells", f, j),
                            f"{v!r} is not a level of {f} {m.grid[f]!r}")
        res.methods[i] = (MethodSpec(spec.name, spec.label, spec.params, spec.key, spec.status,
                                     spec.reason, factors, dict(cells) if cells else None), cls)
        if not bad:
            try:
                cls(**spec.params, **{f: m.grid[f][0] for f in factors})._validate()
            except (InvalidParameterError, TypeError, ValueError) as exc:
                col.add(("methods", idx, "params"), str(exc))


def _check_metrics_seeds(m: _ScenarioModel, col: Collector, res: _Resolved) -> tuple:
    task = res.task_cls
    known = dict(getattr(task, "metrics", {}) or {})
    metrics = list(m.metrics) if m.metrics is not None else list(
        getattr(task, "default_metrics", ()) or ())
    seen: set[str] = set()
    for i, name in enumerate(m.metrics or ()):
        if task is not None and name not in known:
            col.add(("metrics", i), f"unknown metric {name!r} for the {task.name} task; "
                                    f"choose from {', '.join(known)}")
        elif name in seen:
            col.add(("metrics", i), f"duplicate metric {name!r}")
        seen.add(name)
    if m.metrics is not None and not m.metrics:
        col.add(("metrics",), "needs at least one metric")
    seen_seeds: dict[int, int] = {}
    for i, seed in enumerate(m.seeds or ()):
        if not 0 <= seed <= MAX_SEED:
            col.add(("seeds", i), f"seeds must be integers in [0, 2**63 - 1]; got {seed}")
        elif seed in seen_seeds:
            col.add(("seeds", i), f"duplicate seed {seed} (also item {seen_seeds[seed]})")
        else:
            seen_seeds[seed] = i
    return tuple(metrics), {k: known[k].as_dict() for k in metrics if k in known}


def _cells(m: _ScenarioModel, col: Collector, res: _Resolved) -> list[dict]:
    """Every cell of the grid (less ``exclude``), with its plant constructed once per
    distinct parameter set and the task's cross-checks run."""
    factors = list(m.grid)
    n = math.prod(len(v) for v in m.grid.values())
    if n > MAX_CELLS * 10:  # refuse before enumerating a huge product
        col.add(("grid",), f"the grid has {n} cells; at most {MAX_CELLS} are allowed "
                           "(split the study into several scenarios)")
        return []
    excl = [{f: canonical_json(v) for f, v in w.items()} for w in m.exclude]
    combos = []
    for combo in itertools.product(*(m.grid[f] for f in factors)):
        levels = dict(zip(factors, combo))
        if any(all(canonical_json(levels[f]) == v for f, v in w.items()) for w in excl):
            continue
        combos.append(levels)
    if not combos:
        col.add(("exclude",) if m.exclude else ("grid",), "no cell is left to run")
        return []
    n_methods = len(m.methods)
    n_rec = len(combos) * len(m.seeds) * n_methods
    if len(combos) > MAX_CELLS or n_rec > MAX_RECORDS:
        col.add(("grid",), f"{len(combos)} cells x {len(m.seeds)} seeds x {n_methods} methods "
                           f"= {n_rec} records; at most {MAX_CELLS} cells and {MAX_RECORDS} "
                           "records are allowed (split the study into several scenarios)")
        return []
    cls, task = res.plant_cls, res.task_cls
    defaults = task.defaults() if task is not None else {}
    methods = [c for _, c in res.methods if c is not None]
    plants: dict[str, Any] = {}
    cells: list[dict] = []
    for levels in combos:
        where = ", ".join(f"{k}={v!r}" for k, v in levels.items()) or "the only cell"
        plant_lv = {f: v for f, v in levels.items() if res.kinds.get(f) == "plant"}
        key = canonical_json(plant_lv)
        if key not in plants:
            try:
                plant = cls(**{**m.plant.params, **plant_lv})
                plant._validate()
                plants[key] = (plant, get_params(plant))
            except (InvalidParameterError, TypeError, ValueError) as exc:
                plants[key] = (None, exc)
        plant, params = plants[key]
        if plant is None:
            path = getattr(params, "path", ())
            if path and path[0] in m.plant.params:  # located inside a fixed parameter
                col.add(("plant", "params", *path), str(params))
            else:
                col.add(("grid",) if factors else ("plant", "params"), f"cell {where}: {params}")
            continue
        settings = {**defaults, **{f: v for f, v in levels.items()
                                   if res.kinds.get(f) == "setting"}}
        if task is not None:
            why = task.check_cell(plant, settings, methods)
            if why:
                col.add(("grid",) if factors else ("plant", "params"), f"cell {where}: {why}")
                continue
        given = {f: v for f, v in levels.items() if res.kinds.get(f) == "setting"}
        mparams = {f: v for f, v in levels.items() if res.kinds.get(f) == "method"}
        sid = {**given, **mparams}
        cells.append({"factors": levels, "params": params, "settings": settings,
                      "method_params": mparams, "data_id": data_id(m.plant.name, params),
                      "cell_id": cell_id(m.plant.name, params, sid)})
    return cells


def _check_layout(m: _ScenarioModel, col: Collector, res: _Resolved,
                  ctx: LayoutContext) -> tuple[dict, dict | None]:
    task = res.task_cls
    opts = dict(m.layout)
    name = opts.pop("name", getattr(task, "default_layout", "table"))
    lcol = Collector(col.file, col.lines, ("layout",))
    try:
        cls = registry.resolve("layouts", str(name))
    except RegistryError as exc:
        lcol.add(("name",), str(exc))
        col.extend(lcol.issues)
        return {}, None
    if task is not None and task.name not in cls.tasks:
        lcol.add(("name",), f"layout {name!r} reports {', '.join(cls.tasks)} runs, not "
                            f"{task.name!r} ones")
    try:
        options = cls.options_model.model_validate(opts)
    except _PydanticError as exc:
        pydantic_issues(exc, lcol, {(): cls.options_model})
        col.extend(lcol.issues)
        return {}, None
    resolved = {"name": name, **cls.check(ctx, options, lcol)}
    col.extend(lcol.issues)
    if m.reference is None:
        return resolved, None
    rcol = Collector(col.file, col.lines, ("reference",))
    model = cls.reference_model or ReferenceBase
    try:
        ref = model.model_validate(m.reference)
    except _PydanticError as exc:
        pydantic_issues(exc, rcol, {(): model})
        col.extend(rcol.issues)
        return resolved, None
    ref_out = cls.check_reference(ctx, resolved, ref, rcol)
    col.extend(rcol.issues)
    return resolved, ref_out


# --------------------------------------------------------------------------- entry point


def _validate_sections(data: dict, col: Collector) -> tuple[_ScenarioModel, set[str]]:
    """Validate each top-level section on its own so that one bad section does not hide
    the errors of the others; return the (partially defaulted) model and failed sections."""
    fields = _ScenarioModel.model_fields
    failed: set[str] = set()
    for key in data:
        if key not in fields:
            col.add((key,), "unknown key" + valid_keys_hint(str(key), list(fields)))
    values: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in data:
            if info.is_required():
                col.add((name,), "required key is missing")
                failed.add(name)
                values[name] = [] if name in ("methods", "seeds") else None
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        section = create_model(
            f"_Section_{name}", __base__=_Strict, **{name: (info.annotation, info)}
        )
        try:
            values[name] = getattr(section.model_validate({name: data[name]}), name)
        except _PydanticError as exc:
            pydantic_issues(exc, col, _SECTION_MODELS)
            failed.add(name)
            values[name] = info.get_default(call_default_factory=True) if not info.is_required(
            ) else ([] if name in ("methods", "seeds") else None)
    return _ScenarioModel.model_construct(**values), failed


def load_scenario(path: str | Path) -> Scenario:
    """Load and fully validate a scenario file.

    Parameters
    ----------
    path : str or Path
        YAML file.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioValidationError
        With every problem found, each as ``FILE:LINE: field.path: message`` (also for a
        file that is missing, unreadable, not UTF-8 or not YAML).
    """
    doc = read_yaml(path)
    col = doc.collector()
    data = doc.data
    if not isinstance(data, dict):
        col.add((), "the document must be a mapping of scenario keys")
        col.raise_if_any()
    model, failed = _validate_sections(data, col)
    if "plant" not in failed:
        _default_base_dir(model, Path(path))
    if "name" not in failed:
        why = check_name(model.name)
        if why:
            col.add(("name",), why)
    res = _Resolved()
    if "methods" not in failed:
        _check_methods(model, col, res)
    if "plant" not in failed:
        _check_plant(model, col, res)
    if not failed & {"grid", "plant"}:
        _check_grid(model, col, res)
    if "methods" not in failed:
        _check_methods_params(model, col, res)
    metrics, metric_info = _check_metrics_seeds(model, col, res)
    cells: list[dict] = []
    if not failed & {"grid", "plant", "exclude", "methods", "seeds"} and not col.issues:
        cells = _cells(model, col, res)
    layout, reference = {}, None
    if not failed & {"grid", "plant", "methods", "metrics", "layout", "reference"}:
        ctx = LayoutContext(
            task=res.task_cls.name if res.task_cls else "", grid=model.grid,
            plant_params=model.plant.params, labels=tuple(s.label for s, _ in res.methods),
            metrics=metrics, seeds=tuple(model.seeds))
        layout, reference = _check_layout(model, col, res, ctx)
    col.raise_if_any()
    assert res.plant_cls is not None and res.task_cls is not None
    return Scenario(
        name=model.name,
        description=model.description,
        file=str(path),
        task=res.task_cls.name,
        plant=PlantSpec(model.plant.name, dict(model.plant.params), res.plant_cls),
        grid={f: list(v) for f, v in model.grid.items()},
        factor_kinds=dict(res.kinds),
        exclude=tuple(dict(w) for w in model.exclude),
        methods=tuple(spec for spec, _ in res.methods),
        seeds=tuple(model.seeds),
        metrics=metrics,
        metric_info=metric_info,
        layout=layout,
        reference=reference,
        cell_params=tuple(cells),
    )
