"""Grid throughput: cells per second of a scenario with the local and the Dask executors.

Usage::

    python -m benchmarks.grid [--scenario scenarios/quickstart.yaml] [--repeats 3] [--out PATH]

Runs the whole grid (every cell x seed x method, into a fresh run directory each time) with

* ``local-1``: the local executor with one process (``--jobs 1``: in-process, serial),
* ``local-2``: the local executor with two worker processes (a new ``spawn`` pool per run,
  as ``impbench run --jobs 2`` does, so every run pays the pool start and the imports),
* ``dask-2``: a 2-worker :class:`distributed.LocalCluster` (processes, one thread each).
  The cluster is started once (``startup_s``); its first run (``cold``) pays the workers'
  imports, later runs (``warm``) reuse them, as a long-lived cluster does.

and reports wall time per run (best and median of ``--repeats``), cells/s (grid cells,
each with all its seeds and methods), units/s (cell x seed) and records/s (x method).
Prints a table and writes JSON (default: ``benchmarks/grid.json`` next to this script).
The machine's load average is recorded with the numbers: on a shared machine they vary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time_runs(scenario, executor_factory, repeats: int, tmp: Path, tag: str) -> list[float]:
    from bench.runner import run_scenario

    walls = []
    for i in range(repeats):
        out = tmp / f"{tag}-{i}"
        t0 = time.perf_counter()
        s = run_scenario(scenario, out, executor=executor_factory(), progress=False)
        walls.append(time.perf_counter() - t0)
        if s.crashed or s.computed["ok"] + s.computed["failed"] == 0:
            raise RuntimeError(f"{tag}: run {i} did not complete: {s}")
        shutil.rmtree(out)
    return walls


def _row(name: str, walls: list[float], n_cells: int, n_units: int, n_records: int,
         **extra) -> dict:
    best, med = min(walls), statistics.median(walls)
    return {"executor": name, "runs": len(walls), "wall_best_s": best, "wall_median_s": med,
            "cells_per_s": n_cells / best, "units_per_s": n_units / best,
            "records_per_s": n_records / best, "walls_s": walls, **extra}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "quickstart.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    import distributed

    from bench.executors import DaskExecutor, LocalProcessExecutor, SerialExecutor
    from bench.scenario import load_scenario

    sc = load_scenario(args.scenario)
    n_cells, n_units = sc.n_cells, sc.n_cells * len(sc.seeds)
    n_records = n_units * sum(m.status == "ok" for m in sc.methods)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="impbench-grid-") as tmp:
        tmp = Path(tmp)
        walls = _time_runs(sc, SerialExecutor, args.repeats, tmp, "local1")
        rows.append(_row("local-1", walls, n_cells, n_units, n_records))
        walls = _time_runs(sc, lambda: LocalProcessExecutor(jobs=2), args.repeats, tmp,
                           "local2")
        rows.append(_row("local-2", walls, n_cells, n_units, n_records))
        t0 = time.perf_counter()
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster:
            startup = time.perf_counter() - t0
            factory = lambda: DaskExecutor(address=cluster.scheduler_address)  # noqa: E731
            cold = _time_runs(sc, factory, 1, tmp, "dask-cold")
            rows.append(_row("dask-2 cold", cold, n_cells, n_units, n_records,
                             startup_s=startup))
            warm = _time_runs(sc, factory, args.repeats, tmp, "dask-warm")
            rows.append(_row("dask-2 warm", warm, n_cells, n_units, n_records,
                             startup_s=startup))
    result = {
        "benchmark": "grid",
        "scenario": str(args.scenario),
        "cells": n_cells, "seeds": len(sc.seeds), "units": n_units, "records": n_records,
        "methods": [m.label for m in sc.methods],
        "repeats": args.repeats,
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "distributed": distributed.__version__,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }
    print(f"{args.scenario.name}: {n_cells} cells x {len(sc.seeds)} seeds x "
          f"{len(sc.methods)} methods = {n_records} records; best of {args.repeats} runs; "
          f"load average {load_before[0]:.1f} -> {result['machine']['loadavg_after'][0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'executor':12s} {'best [s]':>9s} {'median [s]':>10s} {'cells/s':>8s} "
          f"{'units/s':>8s} {'records/s':>9s}")
    for r in rows:
        print(f"{r['executor']:12s} {r['wall_best_s']:9.2f} {r['wall_median_s']:10.2f} "
              f"{r['cells_per_s']:8.2f} {r['units_per_s']:8.2f} {r['records_per_s']:9.2f}")
    print(f"dask-2 LocalCluster start: {rows[-1]['startup_s']:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
