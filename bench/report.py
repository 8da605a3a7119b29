"""Write the report of a run directory with the layout its scenario names.

:func:`write_report` consolidates the records into ``results.parquet`` and hands them to the
layout plugin of ``scenario.json`` (:mod:`bench.layout`; ``table`` for runs made before
layouts had names).
"""

from __future__ import annotations

from pathlib import Path

from bench import registry, store

__all__ = ["write_report"]


def write_report(out: str | Path) -> dict[str, Path]:
    """Consolidate ``out`` and write its report.

    Parameters
    ----------
    out : str or Path
        A run directory written by :func:`bench.runner.run_scenario`.

    Returns
    -------
    dict
        Paths of ``parquet``, ``md``, ``html`` and the figures, by kind.

    Raises
    ------
    FileNotFoundError
        ``out`` is not a run directory.
    """
    out = Path(out)
    plan = store.read_plan(out)
    paths = {"parquet": store.consolidate(out)}
    records = store.read_records(out, plan)
    layout = registry.resolve("layouts", plan.get("layout", {}).get("name", "table"))()
    paths.update(layout.write(out, plan, records))
    return paths
