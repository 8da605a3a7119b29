"""Result store: crash-safe per-record files and the consolidated Parquet table.

Layout of a run directory ``OUT``::

    OUT/scenario.json          the validated scenario and its plan (units, method keys)
    OUT/cells/<unit>__<method_key>.json   one result record per (cell, seed) x method
    OUT/arrays/<unit>__<method_key>.npz   t, K (and B, I where estimated), K_true, ...
    OUT/results.parquet        tidy table consolidated from cells/ (one row per record)

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``),
so a ``kill -9`` at any moment leaves either the complete old state or the complete new
file: a record that exists is finished, and its arrays (written first) exist too.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "array_path",
    "atomic_write_bytes",
    "consolidate",
    "expected_pairs",
    "finished",
    "load_arrays",
    "read_plan",
    "read_records",
    "read_results",
    "record_path",
    "save_arrays",
    "write_plan",
    "write_record",
]

STATUSES = ("ok", "failed", "unavailable")


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()  # files get the usual permissions, not mkstemp's 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def record_path(out: Path, unit: str, method_key: str) -> Path:
    """Path of the result record of one unit and method."""
    return Path(out) / "cells" / f"{unit}__{method_key}.json"


def array_path(out: Path, unit: str, method_key: str) -> Path:
    """Path of the estimate arrays of one unit and method."""
    return Path(out) / "arrays" / f"{unit}__{method_key}.npz"


def write_record(out: Path, record: dict) -> Path:
    """Write one result record (JSON; NaN allowed) atomically; returns its path."""
    path = record_path(out, record["unit_id"], record["method_key"])
    atomic_write_bytes(path, json.dumps(record, indent=1, default=_json_default).encode())
    return path


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Save named arrays as an ``.npz`` atomically (None values are skipped)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load the arrays saved by :func:`save_arrays`."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


def write_plan(out: Path, plan: dict) -> None:
    """Write ``OUT/scenario.json`` (the scenario description and its units)."""
    atomic_write_bytes(Path(out) / "scenario.json",
                       json.dumps(plan, indent=1, default=_json_default).encode())


def read_plan(out: Path) -> dict:
    """Read ``OUT/scenario.json``.

    Raises
    ------
    FileNotFoundError
        When ``out`` is not a run directory.
    """
    path = Path(out) / "scenario.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not an impbench run directory (no scenario.json)")
    return json.loads(path.read_text())


def read_records(out: Path, plan: dict | None = None) -> list[dict]:
    """All result records under ``OUT/cells``; with ``plan``, only those it expects.

    Records of cells or methods no longer in the scenario are kept on disk (a later run
    may need them again) but left out here.
    """
    cells = Path(out) / "cells"
    if not cells.is_dir():
        return []
    wanted = None
    if plan is not None:
        wanted = {f"{u['unit_id']}__{k}" for u, k in expected_pairs(plan)}
    recs = []
    for p in sorted(cells.glob("*.json")):
        if wanted is not None and p.stem not in wanted:
            continue
        recs.append(json.loads(p.read_text()))
    return recs


def expected_pairs(plan: dict) -> list[tuple[dict, str]]:
    """(unit, method key) of every record a run's plan asks for (a method restricted to
    some cells with ``cells`` runs only in those)."""
    from bench.scenario import takes

    return [(u, m["key"]) for u in plan["units"] for m in plan["methods"]
            if takes(m.get("cells"), u["factors"])]


def finished(out: Path) -> set[tuple[str, str]]:
    """``(unit_id, method_key)`` pairs with a final record (``ok`` or ``failed``).

    ``unavailable`` records are not final: the method is tried again once it loads.
    """
    done = set()
    cells = Path(out) / "cells"
    if not cells.is_dir():
        return done
    for p in cells.glob("*.json"):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # unreadable (cannot happen with atomic writes): recompute
        if rec.get("status") in ("ok", "failed"):
            done.add((rec["unit_id"], rec["method_key"]))
    return done


def _column(values: list) -> pa.Array:
    """One column; mixed-type factor levels become strings."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} or kinds <= {bool} or kinds <= {str}:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def to_table(records: list[dict], factors: list[str], metrics: list[str]) -> pa.Table:
    """Tidy table: one row per record, factor and metric columns flattened."""
    cols: dict[str, list] = {
        "scenario": [], "cell_id": [], "unit_id": [], "seed": [],
        **{f: [] for f in factors},
        "method": [], "label": [], "method_key": [], "params": [], "status": [], "reason": [],
        **{m: [] for m in metrics},
        "wall_time_s": [], "peak_mem_mib": [], "sim_time_s": [], "arrays": [],
    }
    for r in records:
        for k in ("scenario", "cell_id", "unit_id", "seed", "method", "label", "method_key",
                  "status", "reason", "wall_time_s", "peak_mem_mib", "sim_time_s", "arrays"):
            cols[k].append(r.get(k))
        cols["params"].append(json.dumps(r.get("params", {}), sort_keys=True))
        for f in factors:
            cols[f].append(r.get("factors", {}).get(f))
        for m in metrics:
            v = r.get("metrics", {}).get(m)
            cols[m].append(float("nan") if v is None else float(v))
    arrays = {}
    for k, v in cols.items():
        if k in metrics or k in ("wall_time_s", "peak_mem_mib", "sim_time_s"):
            arrays[k] = pa.array([float("nan") if x is None else float(x) for x in v],
                                 type=pa.float64())
        elif k == "seed":
            arrays[k] = pa.array(v, type=pa.int64())
        elif k in factors:
            arrays[k] = _column(v)
        else:
            arrays[k] = pa.array(v, type=pa.string())
    return pa.table(arrays)


def consolidate(out: Path) -> Path:
    """Gather the records of the current plan into ``OUT/results.parquet`` (atomically)."""
    out = Path(out)
    plan = read_plan(out)
    metrics = list(plan["metrics"])
    table = to_table(read_records(out, plan), list(plan["grid"]), metrics)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = out / "results.parquet"
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def read_results(out: Path) -> pa.Table:
    """Read ``OUT/results.parquet``."""
    return pq.read_table(Path(out) / "results.parquet")
