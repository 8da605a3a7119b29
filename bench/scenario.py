"""Scenario files: schema, YAML loading with line numbers, whole-grid validation.

A scenario YAML declares one study (DESIGN.md "Scenario -> grid -> cells -> results"):

.. code-block:: yaml

    name: quickstart
    plant: {name: msd, params: {duration: 25, variation: K}}
    grid: {perturbation: [fgwn, prbs], snr_db: [0, 10]}
    methods: [{name: eirf}, {name: sds, label: SDS, params: {}}]
    seeds: [0, 1]
    metrics: [stiffness_error, nan_share]
    layout: {split: perturbation, rows: [snr_db], baseline: {snr_db: 0}}
    reference: {source: "004 Table III", table: {fgwn: {snr_db: {0: {eirf: 117.7}}}}}

Loading is two-phased and collects *every* error before raising: the structure is checked
by pydantic models (unknown keys, wrong types), then the content against the registry
(plant and method names, each parameter and every grid level against the declared
``_parameter_constraints``, every grid cell instantiated, layout and reference consistent
with the grid). Each error reads ``FILE:LINE: field.path: message``; the line comes from the
YAML node marks of :func:`yaml.compose`.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model
from pydantic import ValidationError as _PydanticError

from bench import registry
from bench.base import Estimator, Plant
from bench.errors import InvalidParameterError, RegistryError, ScenarioError
from bench.params import get_params, validate_params

__all__ = [
    "METRICS",
    "RESERVED_COLUMNS",
    "Issue",
    "Layout",
    "MethodSpec",
    "PlantSpec",
    "RefRecord",
    "Reference",
    "Scenario",
    "ScenarioValidationError",
    "canonical_json",
    "load_scenario",
    "short_hash",
]

#: Metric names a scenario may request (functions of ``bench.metrics`` on a K trajectory).
METRICS = ("stiffness_error", "nan_share", "rmse", "nrmse", "r2", "vaf")

#: Column names of the result table that grid factors may not take.
RESERVED_COLUMNS = frozenset(
    {
        "scenario", "cell_id", "unit_id", "seed", "plant", "method", "label", "method_key",
        "params", "status", "reason", "wall_time_s", "peak_mem_mib", "sim_time_s", "arrays",
        "median", *METRICS,
    }
)

Path_ = tuple  # a field path such as ("methods", 0, "params", "window")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Issue:
    """One validation problem, located in the scenario file."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ScenarioValidationError(ScenarioError):
    """A scenario file has one or more errors; :attr:`issues` lists all of them."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line))
        n = len(self.issues)
        head = f"{n} error{'s' if n != 1 else ''} in scenario"
        super().__init__(head + ":\n" + "\n".join(str(i) for i in self.issues))


def _fmt_path(path: Path_) -> str:
    out = ""
    for p in path:
        if isinstance(p, int) and not isinstance(p, bool):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<document>"


class _Collector:
    """Collects issues, mapping field paths to YAML lines."""

    def __init__(self, file: str, lines: dict[Path_, int]) -> None:
        self.file = file
        self.lines = lines
        self.issues: list[Issue] = []

    def line_of(self, path: Path_) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def add(self, path: Path_, message: str) -> None:
        issue = Issue(self.file, self.line_of(path), _fmt_path(tuple(path)), message)
        if issue not in self.issues:
            self.issues.append(issue)


# --------------------------------------------------------------------------- YAML with lines


def _compose(text: str, file: str) -> tuple[Any, dict[Path_, int], list[Issue]]:
    """Parse YAML, returning the data, a map field path -> 1-based line, and issues."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [Issue(file, line, "<document>", f"invalid YAML: {problem}")]
    if root is None:
        return None, {}, [Issue(file, 1, "<document>", "the file is empty")]
    constructor = yaml.constructor.SafeConstructor()
    try:
        data = constructor.construct_document(root)
    except yaml.YAMLError as exc:  # e.g. an unhashable key
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, {}, [Issue(file, line, "<document>", f"invalid YAML: {exc}")]
    lines: dict[Path_, int] = {(): root.start_mark.line + 1}
    issues: list[Issue] = []

    def walk(node: yaml.Node, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for knode, vnode in node.value:
                key = constructor.construct_object(knode, deep=True)
                sub = (*path, key)
                if key in seen:
                    issues.append(
                        Issue(file, knode.start_mark.line + 1, _fmt_path(sub), "duplicate key")
                    )
                seen.add(key)
                lines[sub] = knode.start_mark.line + 1
                walk(vnode, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    walk(root, ())
    return data, lines, issues


# --------------------------------------------------------------------------- structure


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _PlantModel(_Strict):
    name: StrictStr = Field(min_length=1)
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class _MethodModel(_Strict):
    name: StrictStr = Field(min_length=1)
    label: StrictStr | None = Field(default=None, min_length=1)
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class _LayoutModel(_Strict):
    split: StrictStr | None = None
    rows: list[StrictStr] | None = None
    rows_mode: Literal["one_at_a_time", "cross"] = "one_at_a_time"
    columns: Literal["method"] = "method"
    baseline: dict[StrictStr, Any] = Field(default_factory=dict)


class _ReferenceModel(_Strict):
    source: StrictStr = Field(min_length=1)
    metric: StrictStr = "stiffness_error"
    note: StrictStr = ""
    values: list[dict[StrictStr, Any]] = Field(default_factory=list)
    table: dict[Any, Any] = Field(default_factory=dict)


class _ScenarioModel(_Strict):
    name: StrictStr = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: StrictStr = ""
    plant: _PlantModel
    grid: dict[StrictStr, list[Any]] = Field(default_factory=dict)
    methods: list[_MethodModel] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)
    metrics: list[StrictStr] = Field(default_factory=lambda: ["stiffness_error", "nan_share"])
    layout: _LayoutModel | None = None
    reference: _ReferenceModel | None = None


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
    """

    name: str
    label: str
    params: dict
    key: str
    status: str = "ok"
    reason: str = ""


@dataclass(frozen=True)
class Layout:
    """Table layout of the report (the thesis's Table III or Table V).

    ``split`` makes one table block per level; the columns are the methods. With
    ``rows_mode="one_at_a_time"`` (004 Table III) ``rows`` lists the factors varied one at a
    time around ``baseline`` (one level per grid factor). With ``rows_mode="cross"``
    (004 Table V) the rows are the cartesian product of the ``rows`` factors' levels (first
    factor outermost), every other factor held at ``baseline``; ``baseline`` then only picks
    the cell of the estimated-vs-true K(t) figure.
    """

    split: str | None
    rows: tuple[str, ...]
    baseline: dict
    rows_mode: str = "one_at_a_time"


@dataclass(frozen=True)
class RefRecord:
    """One published value: applies to every cell whose parameters match ``where``.

    ``kind="median"`` records hold the source's median over all cells of a split level.
    ``value`` is None where the source reports a failure ("-").
    """

    where: dict
    method: str
    value: float | None
    kind: str = "cell"


@dataclass(frozen=True)
class Reference:
    """Published numbers printed beside ours."""

    source: str
    metric: str
    note: str
    records: tuple[RefRecord, ...]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build it with :func:`load_scenario`."""

    name: str
    description: str
    file: str
    plant: PlantSpec
    grid: dict
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    layout: Layout
    reference: Reference | None
    cell_params: tuple[dict, ...] = field(default=(), repr=False)

    @property
    def n_cells(self) -> int:
        """Number of grid cells (cartesian product of the levels)."""
        return len(self.cell_params)

    def to_dict(self) -> dict:
        """JSON-safe description (written to ``OUT/scenario.json``)."""
        return {
            "name": self.name,
            "description": self.description,
            "file": self.file,
            "plant": {"name": self.plant.name, "params": _plain(self.plant.params)},
            "grid": _plain(self.grid),
            "methods": [
                {"name": m.name, "label": m.label, "params": _plain(m.params), "key": m.key,
                 "status": m.status, "reason": m.reason}
                for m in self.methods
            ],
            "seeds": list(self.seeds),
            "metrics": list(self.metrics),
            "layout": {"split": self.layout.split, "rows": list(self.layout.rows),
                       "rows_mode": self.layout.rows_mode,
                       "baseline": _plain(self.layout.baseline)},
            "reference": None if self.reference is None else {
                "source": self.reference.source, "metric": self.reference.metric,
                "note": self.reference.note,
                "records": [
                    {"where": _plain(r.where), "method": r.method, "value": r.value,
                     "kind": r.kind}
                    for r in self.reference.records
                ],
            },
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


def _same(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)


# --------------------------------------------------------------------------- content checks


def _suggest(loc: tuple) -> str:
    """', did you mean ...? valid keys: ...' for an unknown key in a nested section."""
    models = {"plant": _PlantModel, "methods": _MethodModel, "layout": _LayoutModel,
              "reference": _ReferenceModel}
    model = models.get(loc[0]) if len(loc) in (2, 3) else None
    if model is None or (loc[0] == "methods") != (len(loc) == 3):
        return ""
    return _valid_keys(str(loc[-1]), list(model.model_fields))


def _valid_keys(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint}; valid keys: {', '.join(valid)}"


def _pydantic_issues(exc: _PydanticError, col: _Collector) -> None:
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggest(loc)
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("missing",):
            given = err["input"]
            if not isinstance(given, (dict, list)):
                msg = f"{msg} (got {given!r})"
        col.add(loc, msg)


def _check_param(owner: str, cons: dict, key: str, value: Any) -> str | None:
    try:
        validate_params(owner, cons, {key: value})
    except InvalidParameterError as exc:
        return str(exc)
    return None


def _check_plant(m: _ScenarioModel, col: _Collector) -> tuple[type | None, list[dict]]:
    """Resolve the plant, check its params and every grid level; return the cell params."""
    try:
        cls = registry.resolve("plants", m.plant.name)
    except RegistryError as exc:
        col.add(("plant", "name"), str(exc))
        return None, []
    if not (isinstance(cls, type) and issubclass(cls, Plant)):
        col.add(("plant", "name"), f"{m.plant.name!r} is not an impbench Plant class")
        return None, []
    cons = getattr(cls, "_parameter_constraints", {})
    owner = cls.__name__
    n0 = len(col.issues)
    for key, value in m.plant.params.items():
        err = _check_param(owner, cons, key, value)
        if err:
            col.add(("plant", "params", key), err)
    for factor, levels in m.grid.items():
        if factor in RESERVED_COLUMNS:
            col.add(("grid", factor), f"{factor!r} is a reserved result column name")
            continue
        if factor in m.plant.params:
            col.add(("grid", factor), "is also set in plant.params; give it in one place only")
            continue
        if not levels:
            col.add(("grid", factor), "needs at least one level")
            continue
        if factor not in cons:
            col.add(("grid", factor), _check_param(owner, cons, factor, levels[0]) or "")
            continue
        for i, level in enumerate(levels):
            err = _check_param(owner, cons, factor, level)
            if err:
                col.add(("grid", factor, i), err)
        for i, level in enumerate(levels):
            if any(_same(level, other) for other in levels[:i]):
                col.add(("grid", factor, i), f"duplicate level {level!r}")
    if len(col.issues) > n0:
        return cls, []
    # Every cell must construct: cross-parameter checks live in the plant's _validate.
    cells: list[dict] = []
    factors = list(m.grid)
    for combo in itertools.product(*(m.grid[f] for f in factors)):
        levels = dict(zip(factors, combo))
        params = {**m.plant.params, **levels}
        try:
            plant = cls(**params)
            plant._validate()
        except (InvalidParameterError, TypeError, ValueError) as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in levels.items()) or "the only cell"
            col.add(("grid",) if factors else ("plant", "params"), f"cell {where}: {exc}")
            continue
        cells.append({"factors": levels, "params": get_params(plant)})
    return cls, cells


def _check_methods(m: _ScenarioModel, col: _Collector) -> list[MethodSpec]:
    specs: list[MethodSpec] = []
    labels: set[str] = set()
    reg = registry.entries("estimators")
    for i, meth in enumerate(m.methods):
        label = meth.label or meth.name
        if label in labels:
            col.add(("methods", i, "label" if meth.label else "name"),
                    f"duplicate method label {label!r}; give each a distinct 'label'")
        labels.add(label)
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", label)[:40]  # key is used in file names
        key = f"{safe}-{short_hash({'name': meth.name, 'params': meth.params}, 10)}"
        entry = reg.get(meth.name) if ":" not in meth.name else None
        if entry is not None and not entry.available:
            specs.append(MethodSpec(meth.name, label, dict(meth.params), key,
                                    "unavailable", entry.error or "failed to load"))
            continue
        try:
            cls = registry.resolve("estimators", meth.name)
        except RegistryError as exc:
            col.add(("methods", i, "name"), str(exc))
            continue
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            col.add(("methods", i, "name"), f"{meth.name!r} is not an impbench Estimator class")
            continue
        cons = getattr(cls, "_parameter_constraints", {})
        bad = False
        for pkey, value in meth.params.items():
            err = _check_param(cls.__name__, cons, pkey, value)
            if err:
                col.add(("methods", i, "params", pkey), err)
                bad = True
        if not bad:
            try:
                cls(**meth.params)._validate()
            except (InvalidParameterError, TypeError, ValueError) as exc:
                col.add(("methods", i, "params"), str(exc))
        specs.append(MethodSpec(meth.name, label, dict(meth.params), key))
    return specs


def _check_metrics_seeds(m: _ScenarioModel, col: _Collector) -> None:
    metrics, seeds = m.metrics or [], m.seeds or []
    for i, name in enumerate(metrics):
        if name not in METRICS:
            col.add(("metrics", i), f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        elif name in metrics[:i]:
            col.add(("metrics", i), f"duplicate metric {name!r}")
    for i, seed in enumerate(seeds):
        if seed < 0:
            col.add(("seeds", i), f"seeds must be non-negative integers; got {seed}")
        elif seed in seeds[:i]:
            col.add(("seeds", i), f"duplicate seed {seed}")


def _level_index(levels: list, value: Any) -> int | None:
    for i, level in enumerate(levels):
        if _same(level, value):
            return i
    return None


def _check_layout(m: _ScenarioModel, col: _Collector) -> Layout:
    lay = m.layout or _LayoutModel()
    grid = m.grid
    split = lay.split
    if split is not None and split not in grid:
        col.add(("layout", "split"), f"{split!r} is not a grid factor ({', '.join(grid)})")
        split = None
    if lay.rows is None:
        rows = tuple(f for f in grid if f != split)
    else:
        rows = []
        for i, f in enumerate(lay.rows):
            if f not in grid:
                col.add(("layout", "rows", i), f"{f!r} is not a grid factor ({', '.join(grid)})")
            elif f == split:
                col.add(("layout", "rows", i), f"{f!r} is the split factor")
            else:
                rows.append(f)
        rows = tuple(rows)
    baseline: dict = {}
    for f, level in lay.baseline.items():
        if f not in grid:
            col.add(("layout", "baseline", f), f"{f!r} is not a grid factor")
        elif _level_index(grid[f], level) is None:
            col.add(("layout", "baseline", f), f"{level!r} is not a level of {f} {grid[f]!r}")
        else:
            baseline[f] = level
    for f, levels in grid.items():
        if f not in baseline and f != split and levels:
            baseline[f] = levels[0]
    if lay.rows_mode == "cross" and not rows:
        col.add(("layout", "rows_mode"), "'cross' needs at least one row factor in layout.rows")
    return Layout(split, rows, baseline, lay.rows_mode)


def _check_reference(
    m: _ScenarioModel, col: _Collector, layout: Layout, labels: set[str]
) -> Reference | None:
    ref = m.reference
    if ref is None:
        return None
    base = ("reference",)
    if ref.metric not in m.metrics:
        col.add((*base, "metric"), f"{ref.metric!r} is not among the scenario's metrics")
    grid = m.grid
    known = set(grid) | set(m.plant.params)
    records: list[RefRecord] = []

    def check_value(path: Path_, value: Any) -> float | bool | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            col.add(path, f"a reference value must be a number or null; got {value!r}")
            return False
        return float(value)

    def check_method(path: Path_, method: Any) -> bool:
        if method not in labels:
            col.add(path, f"{method!r} is not a method label of this scenario "
                          f"({', '.join(sorted(labels))})")
            return False
        return True

    def check_where(path: Path_, where: dict) -> bool:
        ok = True
        for f, level in where.items():
            if f not in known:
                col.add((*path, f), f"{f!r} is neither a grid factor nor a plant parameter")
                ok = False
            elif f in grid and _level_index(grid[f], level) is None:
                col.add((*path, f), f"{level!r} is not a level of {f} {grid[f]!r}")
                ok = False
            elif f in m.plant.params and not _same(m.plant.params[f], level):
                col.add((*path, f), f"{level!r} never matches: plant.params.{f} is "
                                    f"{m.plant.params[f]!r}")
                ok = False
        return ok

    for i, rec in enumerate(ref.values):
        path = (*base, "values", i)
        rec = dict(rec)
        if "method" not in rec or "value" not in rec:
            col.add(path, "each record needs 'method' and 'value' (plus factor: level keys)")
            continue
        method, value = rec.pop("method"), rec.pop("value")
        checks = (check_value((*path, "value"), value), check_method((*path, "method"), method),
                  check_where(path, rec))
        if checks[0] is not False and all(checks[1:]):
            records.append(RefRecord(rec, method, checks[0]))

    def method_map(path: Path_, mapping: Any, where: dict, kind: str) -> None:
        if not isinstance(mapping, dict):
            col.add(path, "expected a mapping 'method: value'")
            return
        for method, value in mapping.items():
            v = check_value((*path, method), value)
            if check_method((*path, method), method) and v is not False:
                records.append(RefRecord(dict(where), method, v, kind))

    def row_block(path: Path_, block: Any, split_where: dict) -> None:
        if not isinstance(block, dict):
            col.add(path, "expected a mapping 'factor: {level: {method: value}}'")
            return
        for f, levels in block.items():
            if f == "median":
                method_map((*path, f), levels, split_where, "median")
                continue
            if layout.rows_mode == "cross":
                col.add((*path, f), "with layout.rows_mode 'cross' give cell values under "
                                    "reference.values (the table form holds only 'median')")
                continue
            if f not in layout.rows:
                col.add((*path, f), f"{f!r} is not a row factor of the layout "
                                    f"({', '.join(layout.rows)})")
                continue
            if not isinstance(levels, dict):
                col.add((*path, f), "expected a mapping 'level: {method: value}'")
                continue
            for level, mapping in levels.items():
                if _level_index(grid[f], level) is None:
                    col.add((*path, f, level), f"{level!r} is not a level of {f} {grid[f]!r}")
                    continue
                where = {**split_where, **{g: layout.baseline[g] for g in grid
                                           if g not in (f, layout.split)}, f: level}
                method_map((*path, f, level), mapping, where, "cell")

    if ref.table:
        tpath = (*base, "table")
        if layout.split is None:
            row_block(tpath, ref.table, {})
        else:
            for level, block in ref.table.items():
                if _level_index(grid[layout.split], level) is None:
                    col.add((*tpath, level), f"{level!r} is not a level of the split factor "
                                             f"{layout.split} {grid[layout.split]!r}")
                    continue
                row_block((*tpath, level), block, {layout.split: level})
    return Reference(ref.source, ref.metric, ref.note, tuple(records))


# --------------------------------------------------------------------------- entry point


def _validate_sections(data: dict, col: _Collector) -> tuple[_ScenarioModel, set[str]]:
    """Validate each top-level section on its own so that one bad section does not hide
    the errors of the others; return the (partially defaulted) model and failed sections."""
    fields = _ScenarioModel.model_fields
    failed: set[str] = set()
    for key in data:
        if key not in fields:
            col.add((key,), "unknown key" + _valid_keys(str(key), list(fields)))
    values: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in data:
            if info.is_required():
                col.add((name,), "required key is missing")
                failed.add(name)
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        section = create_model(
            f"_Section_{name}", __base__=_Strict, **{name: (info.annotation, info)}
        )
        try:
            values[name] = getattr(section.model_validate({name: data[name]}), name)
        except _PydanticError as exc:
            _pydantic_issues(exc, col)
            failed.add(name)
            values[name] = info.get_default(call_default_factory=True) if not info.is_required(
            ) else None
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
        With every problem found, each as ``FILE:LINE: field.path: message``.
    FileNotFoundError
        When ``path`` does not exist.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    file = str(path)
    data, lines, issues = _compose(text, file)
    col = _Collector(file, lines)
    col.issues.extend(issues)
    if data is None:
        raise ScenarioValidationError(col.issues)
    if not isinstance(data, dict):
        col.add((), "the document must be a mapping of scenario keys")
        raise ScenarioValidationError(col.issues)
    model, failed = _validate_sections(data, col)
    plant_cls, cells, methods, layout, reference = None, [], [], None, None
    if "plant" not in failed:
        if "grid" in failed:  # check the plant alone; the grid's errors are already listed
            model = model.model_copy(update={"grid": {}})
        plant_cls, cells = _check_plant(model, col)
    if "methods" not in failed:
        methods = _check_methods(model, col)
    _check_metrics_seeds(model, col)
    if "grid" not in failed:
        layout = _check_layout(model, col)
    if layout is not None and not failed & {"plant", "methods", "metrics", "layout", "reference"}:
        reference = _check_reference(model, col, layout, {m.label for m in methods})
    if col.issues:
        raise ScenarioValidationError(col.issues)
    assert plant_cls is not None and layout is not None
    return Scenario(
        name=model.name,
        description=model.description,
        file=file,
        plant=PlantSpec(model.plant.name, dict(model.plant.params), plant_cls),
        grid={f: list(v) for f, v in model.grid.items()},
        methods=tuple(methods),
        seeds=tuple(model.seeds),
        metrics=tuple(model.metrics),
        layout=layout,
        reference=reference,
        cell_params=tuple(cells),
    )
