"""Scenario runner: expand the grid, run the unfinished (cell, seed) x method work, resume.

Work item = one (data id, seed) (:func:`bench.grid.work_items`): the plant is simulated once
with :func:`bench.grid.unit_rng`, and the scenario's task adapter (:mod:`bench.task`, found
through the registry) runs every pending method of every cell that shares that draw. Each
(cell, method) result is written by the worker as its own record file the moment the task
yields it (:mod:`bench.store`), so a ``kill -9`` loses at most the methods still running. A
rerun skips every (unit, method) that has an ``ok`` or ``failed`` record; a method added to
the scenario later runs alone on data re-simulated deterministically from the seed.

The runner knows no data type: what the plant returns goes to the task adapter unopened.
Failure capture: an exception raised by the plant fails every method of its work item; the
task adapter reports method failures itself (status ``failed`` with the reason), and a task
adapter that raises fails the (cell, method) pairs it had not reported yet. Registered but
unloadable methods get ``status="unavailable"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench import registry, store
from bench.errors import failure_reason
from bench.executors import Executor, SerialExecutor, get_executor
from bench.grid import unit_rng, units, work_items
from bench.scenario import Scenario
from bench.task import CellWork, MethodWork, Outcome

__all__ = ["ADAPTIVE_SECONDS", "RunSummary", "plan_of", "run_scenario", "run_work_item"]

#: With ``jobs=None`` the first work item runs in this process; the rest go to a pool of
#: worker processes only when it took longer than this (s): starting a worker and importing
#: the plugins costs about 2-4 s, so small grids finish sooner in one process.
ADAPTIVE_SECONDS = 2.0


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
        Work items whose worker died or could not be reached (nothing recorded; a rerun
        retries), as ``data_id:seed``.
    jobs : int
        Worker processes used (1: this process).
    wall_s : float
        Wall time of the run, s.
    """

    out: Path
    units: int = 0
    skipped_units: int = 0
    computed: dict = field(default_factory=lambda: {"ok": 0, "failed": 0, "unavailable": 0})
    crashed: list = field(default_factory=list)
    jobs: int = 1
    wall_s: float = 0.0


def _record(item: dict, cell: dict, m: dict, **fields: Any) -> dict:
    rec = {"scenario": item["scenario"], "cell_id": cell["cell_id"], "unit_id": cell["unit_id"],
           "seed": item["seed"], "factors": cell["factors"], "plant": item["plant"],
           "sim_time_s": item.get("sim_time_s"), "method": m["name"], "label": m["label"],
           "method_key": m["key"], "params": m["params"], "status": "ok", "reason": "",
           "metrics": {}, "wall_time_s": None, "peak_mem_mib": None, "arrays": None,
           "info": {}}
    rec.update(fields)
    return rec


def run_work_item(item: dict) -> list[dict]:
    """Simulate one (data id, seed) draw and run its pending (cell, method) pairs.

    The worker entry point of every executor.

    Parameters
    ----------
    item : dict
        ``out``, ``scenario``, ``task``, ``plant``, ``plant_params``, ``data_id``, ``seed``,
        ``metrics`` and ``cells`` (each ``cell_id``, ``unit_id``, ``factors``, ``settings``,
        ``method_params`` and ``methods``: ``name``, ``label``, ``key``, ``params``).

    Returns
    -------
    list of dict
        The records written, one per (cell, method).
    """
    # Parallelism is across work items: each runs with single-threaded BLAS/OpenMP, so N
    # workers on N cores do not oversubscribe them (measured: bIRF at 50 s took 4.5 s with
    # default threads on a loaded 2-core machine and 0.26 s with one thread), and every
    # executor computes with the same thread count, hence bit-identical results.
    with threadpool_limits(limits=1):
        return _run_work_item(item)


def _run_work_item(item: dict) -> list[dict]:
    out = Path(item["out"])
    item = dict(item)
    t0 = time.perf_counter()
    try:
        plant = registry.resolve("plants", item["plant"])(**item["plant_params"])
        data = plant.simulate(unit_rng(item["data_id"], item["seed"]))
        err = None
    except Exception as exc:  # the plant failed: every method of the item fails with it
        err = f"plant: {failure_reason(exc)}"
    item["sim_time_s"] = time.perf_counter() - t0
    records: list[dict] = []
    pending = {(c["unit_id"], m["key"]): (c, m) for c in item["cells"] for m in c["methods"]}
    if err is None:
        cells = [CellWork(c["cell_id"], c["unit_id"], c["factors"], c["settings"],
                          c["method_params"],
                          tuple(MethodWork(m["name"], m["label"], m["key"], m["params"])
                                for m in c["methods"]))
                 for c in item["cells"]]
        try:
            task = registry.resolve("tasks", item["task"])()
            for oc in task.run(data, cells, out, list(item["metrics"])):
                _write(oc, item, pending, records, out)
        except Exception as exc:  # a task adapter bug: what it did not report fails
            err = f"task {item['task']}: {failure_reason(exc)}"
    for c, m in list(pending.values()):
        rec = _record(item, c, m, status="failed", reason=err or "task gave no result")
        store.write_record(out, rec)
        records.append(rec)
    return records


def _write(oc: Outcome, item: dict, pending: dict, records: list, out: Path) -> None:
    key = (oc.cell.unit_id, oc.method.key)
    c, m = pending.pop(key)
    rec = _record(item, c, m, status=oc.status, reason=oc.reason, metrics=oc.metrics,
                  info=oc.info, arrays=oc.arrays, wall_time_s=oc.wall_time_s,
                  peak_mem_mib=oc.peak_mem_mib)
    store.write_record(out, rec)
    records.append(rec)


def plan_of(scenario: Scenario) -> dict:
    """The scenario description plus its units (what ``OUT/scenario.json`` holds)."""
    plan = scenario.to_dict()
    plan["units"] = [
        {"unit_id": u.unit_id, "cell_id": u.cell.cell_id, "data_id": u.cell.data_id,
         "seed": u.seed, "factors": u.cell.factors}
        for u in units(scenario)
    ]
    return plan


def _items(scenario: Scenario, out: Path, done: set, summary: RunSummary) -> list[dict]:
    ready = [m for m in scenario.methods if m.status == "ok"]
    items = []
    for data, seed, group in work_items(units(scenario)):
        cells = []
        for u in group:
            for m in scenario.methods:
                if m.status == "unavailable" and m.takes(u.cell.factors):
                    store.write_record(out, _record(
                        {"scenario": scenario.name, "seed": seed, "plant": scenario.plant.name},
                        {"cell_id": u.cell.cell_id, "unit_id": u.unit_id,
                         "factors": u.cell.factors},
                        {"name": m.name, "label": m.label, "key": m.key, "params": m.params},
                        status="unavailable", reason=m.reason))
                    summary.computed["unavailable"] += 1
            pending = [m for m in ready
                       if (u.unit_id, m.key) not in done and m.takes(u.cell.factors)]
            if not pending:
                summary.skipped_units += 1
                continue
            cells.append({
                "cell_id": u.cell.cell_id, "unit_id": u.unit_id, "factors": u.cell.factors,
                "settings": u.cell.settings, "method_params": u.cell.method_params,
                "methods": [{"name": m.name, "label": m.label, "key": m.key,
                             "params": {**m.params, **{f: u.cell.method_params[f]
                                                       for f in m.factors}}}
                            for m in pending]})
        if cells:
            items.append({"out": str(out), "scenario": scenario.name, "task": scenario.task,
                          "plant": scenario.plant.name, "plant_params": group[0].cell.params,
                          "data_id": data, "seed": seed, "metrics": list(scenario.metrics),
                          "cells": cells})
    return items


def run_scenario(
    scenario: Scenario,
    out: str | Path,
    *,
    jobs: int | None = None,
    executor: str | Executor = "local",
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
        Worker processes. Default (None) with the local executor: the first work item runs
        in this process and the rest on ``min(cores, items left)`` processes only when it
        took longer than :data:`ADAPTIVE_SECONDS` (small grids are faster in one process);
        ``1`` runs everything in this process.
    executor : str or Executor
        Name in :data:`bench.executors.EXECUTORS`, or an executor.
    progress : bool
        Show a progress bar with the records done and the time left (on stderr).
    force : bool
        Recompute every (unit, method), overwriting finished records (e.g. after changing a
        backend's code: the cell ids hash the configuration, not the code version).
    log : callable, optional
        Receives one line per crashed work item.

    Returns
    -------
    RunSummary
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_of(scenario)
    store.write_plan(out, plan)
    summary = RunSummary(out=out, units=len(plan["units"]))
    done = set() if force else store.finished(out)
    items = _items(scenario, out, done, summary)
    if items:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        total = sum(len(c["methods"]) for it in items for c in it["cells"])
        bar = Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), "eta", TimeRemainingColumn(),
                       console=Console(stderr=True), disable=not progress)
        with bar:
            tid = bar.add_task(f"{scenario.name} records", total=total)

            def consume(ex: Executor, batch: list[dict]) -> None:
                for i, recs, err in ex.imap_unordered(run_work_item, batch):
                    if err is not None:
                        it = batch[i]
                        summary.crashed.append(f"{it['data_id']}:{it['seed']}")
                        if log is not None:
                            log(f"work item {it['data_id']} seed {it['seed']}: worker error "
                                f"{failure_reason(err)} (rerun retries)")
                        bar.advance(tid, sum(len(c["methods"]) for c in it["cells"]))
                        continue
                    for r in recs:
                        summary.computed[r["status"]] += 1
                    bar.advance(tid, len(recs))

            adaptive = jobs is None and executor == "local"
            if adaptive:
                t_first = time.perf_counter()
                consume(SerialExecutor(), items[:1])
                items = items[1:]
                slow = time.perf_counter() - t_first > ADAPTIVE_SECONDS
                jobs = min(os.cpu_count() or 1, len(items)) if slow and len(items) > 1 else 1
            if items:
                with get_executor(executor, jobs) as ex:
                    summary.jobs = getattr(ex, "jobs", 1)
                    consume(ex, items)
    store.consolidate(out)
    summary.wall_s = time.perf_counter() - t_start
    return summary
