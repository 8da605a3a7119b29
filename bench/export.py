"""Export a run's results for MATLAB and other tools: ``impbench export RUN --format csv|mat``.

Writes into ``RUN/export/`` (or ``--out``):

* ``csv``: ``results.csv`` (the tidy table, one row per record, every number at full
  precision: the shortest text that reads back to the same double) and ``arrays/<record>.csv``
  with each record's per-sample arrays of equal length as columns (impedance: ``t``, ``K``,
  ``K_true``, ``B`` ...); arrays of other lengths go to ``arrays/<record>__<name>.csv``.
* ``mat``: ``results.mat`` (MATLAB v5, ``load`` or ``scipy.io.loadmat``) holding the struct
  ``results`` (one field per table column: numbers as double vectors, text as cell arrays)
  and the struct ``records`` (one field per record, ``r<unit>_<method>``, holding that
  record's arrays and its ``factors``, ``method``, ``seed`` and ``status``).

In MATLAB::

    r = load('runs/quickstart/export/results.mat');
    err = r.results.stiffness_error;            % one value per record
    T = readtable('runs/quickstart/export/results.csv');
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench import store
from bench.errors import DataError

__all__ = ["FORMATS", "export_run"]

FORMATS = ("csv", "mat")


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bool, int, np.integer, np.floating)):
        return repr(v.item() if hasattr(v, "item") else v)
    return str(v)


def _csv_cell(v: Any) -> str:
    text = _num(v)
    if any(c in text for c in ',"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def _table(out: Path) -> tuple[list[str], dict[str, list]]:
    table = store.read_results(out) if (out / "results.parquet").is_file() else None
    if table is None:
        store.consolidate(out)
        table = store.read_results(out)
    cols = table.column_names
    return cols, {c: table.column(c).to_pylist() for c in cols}


def _record_name(rec: dict) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"r{rec['unit_id']}_{rec['method_key']}")[:63]


def export_run(out: str | Path, fmt: str, target: str | Path | None = None) -> dict[str, Path]:
    """Export the results table and the per-record arrays of run directory ``out``.

    Parameters
    ----------
    out : path-like
        A run directory (``scenario.json``, ``cells/``).
    fmt : {"csv", "mat"}
    target : path-like, optional
        Folder to write into (default ``out/export``).

    Returns
    -------
    dict
        What was written, by kind.

    Raises
    ------
    DataError
        Unknown format.
    FileNotFoundError
        ``out`` is not a run directory.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    plan = store.read_plan(out)
    dest = Path(target) if target is not None else out / "export"
    records = store.read_records(out, plan)
    cols, data = _table(out)
    paths: dict[str, Path] = {}
    if fmt == "csv":
        lines = [",".join(cols)]
        n = len(data[cols[0]]) if cols else 0
        lines += [",".join(_csv_cell(data[c][i]) for c in cols) for i in range(n)]
        paths["results"] = dest / "results.csv"
        store.atomic_write_bytes(paths["results"], ("\n".join(lines) + "\n").encode())
        for rec in records:
            if not rec.get("arrays") or not (out / rec["arrays"]).is_file():
                continue
            arrays = store.load_arrays(out / rec["arrays"])
            name = _record_name(rec)
            lengths = [a.shape[0] for a in arrays.values() if a.ndim == 1 and a.dtype.kind in
                       "biuf"]
            n_main = max(set(lengths), key=lengths.count) if lengths else 0
            main = {k: a for k, a in arrays.items()
                    if a.ndim == 1 and a.dtype.kind in "biuf" and a.shape[0] == n_main}
            if main:
                body = [",".join(main)] + [",".join(repr(float(a[i])) for a in main.values())
                                           for i in range(n_main)]
                p = dest / "arrays" / f"{name}.csv"
                store.atomic_write_bytes(p, ("\n".join(body) + "\n").encode())
            for k, a in arrays.items():
                if k in main:
                    continue
                buf = io.StringIO()
                a2 = np.atleast_2d(a) if a.ndim <= 2 else a.reshape(a.shape[0], -1)
                if a2.dtype.kind in "biuf":
                    np.savetxt(buf, a2, delimiter=",", fmt="%.17g")
                else:
                    buf.write("\n".join(",".join(map(str, row)) for row in a2) + "\n")
                store.atomic_write_bytes(dest / "arrays" / f"{name}__{k}.csv",
                                         buf.getvalue().encode())
        paths["arrays"] = dest / "arrays"
    else:
        from scipy.io import savemat

        results = {}
        for c in cols:
            vals = data[c]
            if all(v is None or isinstance(v, (int, float, bool)) for v in vals):
                results[c] = np.asarray([np.nan if v is None else float(v) for v in vals])
            else:
                results[c] = np.asarray(["" if v is None else str(v) for v in vals],
                                        dtype=object)
        recs = {}
        for rec in records:
            entry: dict[str, Any] = {
                "method": rec["label"], "seed": float(rec["seed"]), "status": rec["status"],
                "factors": json.dumps(rec["factors"], default=str)}
            if rec.get("arrays") and (out / rec["arrays"]).is_file():
                for k, a in store.load_arrays(out / rec["arrays"]).items():
                    entry[k] = a if a.dtype.kind in "biufc" else a.astype(object)
            recs[_record_name(rec)] = entry
        buf = io.BytesIO()
        savemat(buf, {"results": results, "records": recs,
                      "scenario": json.dumps({k: plan[k] for k in ("name", "task", "grid",
                                                                  "metrics", "seeds")},
                                             default=str)},
                do_compression=True, long_field_names=True)
        paths["results"] = dest / "results.mat"
        store.atomic_write_bytes(paths["results"], buf.getvalue())
    return paths
