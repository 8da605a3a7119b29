"""Scenario runner: expand the grid, run the unfinished (cell, seed) x method work, resume.

Work unit = one (cell, seed): the plant is simulated once with
:func:`bench.grid.unit_rng` and every pending method runs on the same data. Each method's
result is written by the worker as its own record file the moment it is finished
(:mod:`bench.store`), so a ``kill -9`` loses at most the methods still running. A rerun skips
every (unit, method) that has an ``ok`` or ``failed`` record; a method added to the
scenario later runs alone on data re-simulated deterministically from the seed.

Scoring: against ``truth.K`` (N,), or, when the plant reports per-realization truth
``truth.K_r`` (R, N) (jitter, time warping), per realization (:func:`_scored_pair`).

Failure capture: an exception raised by a method (or by the plant, for all methods of the
unit), an all-NaN stiffness or a NaN metric gives ``status="failed"`` with the reason
(exception type and message) and the run goes on. Registered-but-unloadable methods get
``status="unavailable"``. Per method the worker measures the wall time
(:func:`time.perf_counter`) and the peak of traced Python/numpy allocations
(:mod:`tracemalloc`, MiB; tracing slows allocation-heavy Python code somewhat).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench import metrics as _metrics
from bench import registry, store
from bench.executors import get_executor
from bench.grid import unit_rng, units
from bench.scenario import Scenario
from bench.types import Realizations

__all__ = ["RunSummary", "run_scenario", "run_unit"]


@dataclass
class RunSummary:
    """What a run did.

    Attributes
    ----------
    out : Path
        Run directory.
    units : int
        (cell, seed) units in the scenario.
    skipped_units : int
        Units whose every available method was already finished (resume).
    computed : dict
        Records written in this run by status (``ok``, ``failed``, ``unavailable``).
    crashed : list of str
        Units whose worker died or could not be reached (nothing recorded; a rerun retries).
    wall_s : float
        Wall time of the run, s.
    """

    out: Path
    units: int = 0
    skipped_units: int = 0
    computed: dict = field(default_factory=lambda: {"ok": 0, "failed": 0, "unavailable": 0})
    crashed: list = field(default_factory=list)
    wall_s: float = 0.0


@cache
def _load(kind: str, name: str) -> type:
    """Load one backend in a worker without importing every registered plugin.

    Same result as :func:`bench.registry.resolve` (which it falls back to for ``module:Class``
    names and for its error messages), but a worker only imports what its unit uses.
    """
    if ":" not in name:
        eps = entry_points(group=f"impbench.{kind}", name=name)
        if len(eps) == 1:
            return next(iter(eps)).load()
    return registry.resolve(kind, name)


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:500]


def _info(info: dict) -> dict:
    """JSON-safe scalar subset of an estimate's ``info``."""
    out = {}
    for k, v in (info or {}).items():
        if isinstance(v, (str, bool, int, float)) or v is None:
            out[str(k)] = v
        elif isinstance(v, np.generic) and v.size == 1:
            out[str(k)] = v.item()
    return out


def _score(names: list[str], k_true: np.ndarray, k_est: np.ndarray) -> dict[str, float]:
    out = {}
    for name in names:
        fn = getattr(_metrics, name)
        out[name] = fn(k_est) if name == "nan_share" else fn(k_true, k_est)
    return out


def _scored_pair(data: Realizations, est: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """True and estimated K to score, and which pair it is.

    When the realizations differ (``truth.K_r`` (R, N), e.g. jittered or warped time
    variation) the metrics compare per-realization arrays: the estimate's
    ``info["K_record"]`` (R, N) when it has one (alignment, single-record estimators), else
    its phase trajectory ``K`` broadcast to every realization. That is the honest error under
    misalignment. Otherwise ``truth.K`` (N,) against ``K`` (N,).
    """
    truth = data.truth
    K_r = getattr(truth, "K_r", None)
    if K_r is not None and np.shape(K_r) == (data.R, data.N):
        rec = est.info.get("K_record") if isinstance(est.info, dict) else None
        if rec is not None and np.shape(rec) == (data.R, data.N):
            return np.asarray(K_r, dtype=float), np.asarray(rec, dtype=float), "K_record"
        return (np.asarray(K_r, dtype=float),
                np.broadcast_to(np.asarray(est.K, dtype=float), (data.R, data.N)),
                "K_broadcast")
    return np.asarray(truth.K, dtype=float), est.K, "K"


def _run_method(m: dict, data: Realizations, task: dict, base: dict) -> dict:
    rec = {**base, "method": m["name"], "label": m["label"], "method_key": m["key"],
           "params": m["params"], "status": "ok", "reason": "", "metrics": {},
           "wall_time_s": None, "peak_mem_mib": None, "arrays": None, "info": {}}
    out = Path(task["out"])
    tracemalloc.start()
    tracemalloc.clear_traces()
    t0 = time.perf_counter()
    try:
        est = _load("estimators", m["name"])(**m["params"]).estimate(data)
        rec["wall_time_s"] = time.perf_counter() - t0
        rec["peak_mem_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    except Exception as exc:  # failure capture: recorded, the run goes on
        rec["wall_time_s"] = time.perf_counter() - t0
        rec["status"], rec["reason"] = "failed", _reason(exc)
        return rec
    finally:
        tracemalloc.stop()
    rec["info"] = _info(est.info)
    truth = data.truth
    apath = store.array_path(out, base["unit_id"], m["key"])
    store.save_arrays(
        apath, t=data.t, K=est.K, K_true=truth.K, B=est.B, B_true=truth.B,
        I=None if est.I is None else np.asarray(est.I, dtype=float),
    )
    rec["arrays"] = str(apath.relative_to(out))
    if not np.any(np.isfinite(est.K)):
        rec["status"], rec["reason"] = "failed", "estimate K is NaN everywhere"
        return rec
    k_true, k_est, rec["info"]["scored_on"] = _scored_pair(data, est)
    try:
        rec["metrics"] = _score(task["metrics"], k_true, k_est)
    except Exception as exc:
        rec["status"], rec["reason"] = "failed", f"metric: {_reason(exc)}"
        return rec
    rec["status"], rec["reason"], note = metric_status(task["metrics"], rec["metrics"])
    if note:
        rec["info"]["metric_note"] = note
    return rec


def metric_status(names: list[str], values: dict) -> tuple[str, str | None, str | None]:
    """Status from the metric values: the scenario's first metric is the primary one.

    A NaN primary metric fails the record. A NaN secondary metric does not: some are
    undefined for a valid estimate (r2 against a constant true stiffness, the "none" and
    "B" variations), so it stays NaN in the table with a note.

    Returns
    -------
    (status, reason, note)
    """
    nan = [k for k in names if not np.isfinite(values.get(k, np.nan))]
    if names and names[0] in nan:
        return "failed", f"metric {', '.join(nan)} is NaN", None
    return "ok", "", (f"undefined (NaN): {', '.join(nan)}" if nan else None)


def run_unit(task: dict) -> list[dict]:
    """Simulate one (cell, seed) unit and run its pending methods (worker entry point).

    Parameters
    ----------
    task : dict
        ``out``, ``scenario``, ``plant``, ``plant_params``, ``cell_id``, ``unit_id``, ``seed``,
        ``factors``, ``metrics`` and ``methods`` (each ``name``, ``label``, ``params``, ``key``).

    Returns
    -------
    list of dict
        The records written, one per method.
    """
    # Parallelism is across units: each unit runs with single-threaded BLAS/OpenMP, so N
    # workers on N cores do not oversubscribe them (measured: bIRF at 50 s took 4.5 s with
    # default threads on a loaded 2-core machine and 0.26 s with one thread), and every
    # executor computes with the same thread count, hence bit-identical results.
    with threadpool_limits(limits=1):
        return _run_unit(task)


def _run_unit(task: dict) -> list[dict]:
    out = Path(task["out"])
    base = {k: task[k] for k in ("scenario", "cell_id", "unit_id", "seed", "factors", "plant")}
    t0 = time.perf_counter()
    try:
        plant = _load("plants", task["plant"])(**task["plant_params"])
        data = plant.simulate(unit_rng(task["cell_id"], task["seed"]))
        if not isinstance(data, Realizations) or data.truth is None:
            raise TypeError(
                f"plant {task['plant']!r} returned {type(data).__name__} without ground truth; "
                "impedance scenarios need Realizations with truth.K"
            )
        err = None
    except Exception as exc:  # the plant failed: every method of the unit fails with it
        err = f"plant: {_reason(exc)}"
    base["sim_time_s"] = time.perf_counter() - t0
    records = []
    for m in task["methods"]:
        if err is not None:
            rec = {**base, "method": m["name"], "label": m["label"], "method_key": m["key"],
                   "params": m["params"], "status": "failed", "reason": err, "metrics": {},
                   "wall_time_s": None, "peak_mem_mib": None, "arrays": None, "info": {}}
        else:
            rec = _run_method(m, data, task, base)
        store.write_record(out, rec)
        records.append(rec)
    return records


def plan_of(scenario: Scenario) -> dict:
    """The scenario description plus its units (what ``OUT/scenario.json`` holds)."""
    plan = scenario.to_dict()
    plan["units"] = [
        {"unit_id": u.unit_id, "cell_id": u.cell.cell_id, "seed": u.seed,
         "factors": u.cell.factors}
        for u in units(scenario)
    ]
    return plan


def run_scenario(
    scenario: Scenario,
    out: str | Path,
    *,
    jobs: int | None = None,
    executor: str = "local",
    progress: bool = True,
    force: bool = False,
    log: Callable[[str], Any] | None = None,
) -> RunSummary:
    """Run every unfinished (unit, method) of a validated scenario into ``out``.

    Parameters
    ----------
    scenario : Scenario
        From :func:`bench.scenario.load_scenario`.
    out : str or Path
        Run directory (created); existing finished records are reused (resume).
    jobs : int, optional
        Worker processes (default: number of cores); ``1`` runs in this process.
    executor : str
        Name in :data:`bench.executors.EXECUTORS`.
    progress : bool
        Show a rich progress bar (on stderr).
    force : bool
        Recompute every (unit, method), overwriting finished records (e.g. after changing a
        backend's code: the cell ids hash the configuration, not the code version).
    log : callable, optional
        Receives one line per crashed unit.

    Returns
    -------
    RunSummary
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store.write_plan(out, plan_of(scenario))
    summary = RunSummary(out=out)
    all_units = units(scenario)
    summary.units = len(all_units)
    done = set() if force else store.finished(out)
    ready = [m for m in scenario.methods if m.status == "ok"]
    tasks = []
    for u in all_units:
        base = {"scenario": scenario.name, "cell_id": u.cell.cell_id, "unit_id": u.unit_id,
                "seed": u.seed, "factors": u.cell.factors, "plant": scenario.plant.name}
        for m in scenario.methods:
            if m.status == "unavailable":
                store.write_record(out, {
                    **base, "method": m.name, "label": m.label, "method_key": m.key,
                    "params": m.params, "status": "unavailable", "reason": m.reason,
                    "metrics": {}, "wall_time_s": None, "peak_mem_mib": None,
                    "sim_time_s": None, "arrays": None, "info": {}})
                summary.computed["unavailable"] += 1
        pending = [m for m in ready if (u.unit_id, m.key) not in done]
        if not pending:
            summary.skipped_units += 1
            continue
        tasks.append({
            **base, "out": str(out), "plant_params": u.cell.params,
            "metrics": list(scenario.metrics),
            "methods": [{"name": m.name, "label": m.label, "params": m.params, "key": m.key}
                        for m in pending],
        })
    if tasks:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), disable=not progress)
        with bar, get_executor(executor, jobs) as ex:
            tid = bar.add_task(f"{scenario.name}", total=len(tasks))
            for i, recs, err in ex.imap_unordered(run_unit, tasks):
                if err is not None:
                    summary.crashed.append(tasks[i]["unit_id"])
                    if log is not None:
                        log(f"unit {tasks[i]['unit_id']} {tasks[i]['factors']} seed "
                            f"{tasks[i]['seed']}: worker error {_reason(err)} (rerun retries)")
                else:
                    for r in recs:
                        summary.computed[r["status"]] += 1
                bar.advance(tid)
    store.consolidate(out)
    summary.wall_s = time.perf_counter() - t_start
    return summary
