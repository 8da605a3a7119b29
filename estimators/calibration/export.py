"""Calibrated models out of a run directory: per-MTU parameter files a next run can read.

For each method of a calibration run (its first finished record, i.e. its first cell and
seed), :func:`export_calibrated` writes into ``OUT/calibrated/``:

* ``<label>.yaml``: ``{fs, mtus: {name: {field: value}}}`` (readable as a dataset plant's
  ``initial: {file: ...}``) plus a ``calibration`` block (method, parameters, objective);
* ``<label>_mtus.csv``: the same per-MTU values as a table (``mtu,f_max [N],...``);
* ``<label>.csv``: the calibrated parameters with units, bounds, initial value, change and
  position inside the bounds;
* ``<label>_subject.xml``: a CEINMS subject file (Pizzolato et al. 2015) of the calibrated
  model (:func:`bench.formats.ceinms_xml.write_ceinms_subject`: ``maxIsometricForce`` the
  initial f_max, ``strengthCoefficient`` calibrated / initial; the DoFs each MTU spans,
  from its nonzero moment arms; an electromechanical delay the dataset applied to the EMG
  data is written as ``emDelay``, where CEINMS applies it).

Every file is written atomically; numbers are written at full precision.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench import store
from bench.formats.ceinms_xml import write_ceinms_subject
from bench.formats.mtu_params import PARAMETER_UNITS, mtu_csv

__all__ = ["export_calibrated"]


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:80] or "method"


def _parameter_csv(arr: dict) -> str:
    names = [str(n) for n in arr["names"]]
    units = [str(u) for u in arr.get("units", [""] * len(names))]
    x, x0 = np.asarray(arr["x"], float), np.asarray(arr["x0"], float)
    lo, hi = np.asarray(arr["lower"], float), np.asarray(arr["upper"], float)
    lines = ["name,unit,initial,value,lower,upper,change_percent,position_percent,at_bound"]
    for i, n in enumerate(names):
        change = 100 * (x[i] - x0[i]) / abs(x0[i]) if x0[i] != 0 else float("nan")
        pos = 100 * (x[i] - lo[i]) / (hi[i] - lo[i])
        at = "lower" if pos < 0.5 else ("upper" if pos > 99.5 else "")
        lines.append(",".join([n, units[i], *(repr(float(v)) for v in
                                              (x0[i], x[i], lo[i], hi[i], change, pos)), at]))
    return "\n".join(lines) + "\n"


def export_calibrated(out: str | Path) -> dict[str, Path]:
    """Write the calibrated parameters of each method of the run in ``out``.

    Returns
    -------
    dict
        ``"<label>_yaml"``, ``"<label>_csv"``, ``"<label>_mtus_csv"``,
        ``"<label>_subject_xml"`` -> path.
    """
    import yaml

    out = Path(out)
    plan = store.read_plan(out)
    order = {u["unit_id"]: i for i, u in enumerate(plan["units"])}
    records = store.read_records(out, plan)
    paths: dict[str, Path] = {}
    for m in plan["methods"]:
        recs = sorted((r for r in records if r["method_key"] == m["key"]
                       and r["status"] == "ok" and r.get("arrays")),
                      key=lambda r: order.get(r["unit_id"], 0))
        if not recs:
            continue
        r = recs[0]
        arr = store.load_arrays(out / r["arrays"])
        muscles = [str(n) for n in arr.get("muscles", [])]
        per_mtu: dict[str, dict[str, float]] = {
            mu: {f: float(arr[f"mtu_{f}"][i]) for f in PARAMETER_UNITS if f"mtu_{f}" in arr}
            for i, mu in enumerate(muscles)}
        label = _safe(m["label"])
        doc: dict[str, Any] = {
            "fs": float(arr["fs"]) if "fs" in arr else None,
            "mtus": per_mtu,
            "units": {f: u for f, u in PARAMETER_UNITS.items() if f"mtu_{f}" in arr},
            "calibration": {
                "method": m["name"], "label": m["label"],
                "params": json.loads(json.dumps(m["params"], default=str)),
                "cell": r["factors"], "seed": r["seed"],
                "metrics": {k: float(v) for k, v in r["metrics"].items()},
                "parameters": {str(n): float(v) for n, v in zip(arr["names"], arr["x"])},
            },
        }
        if "data_emg_delay" in arr:
            doc["calibration"]["emg_delay_in_data"] = float(arr["data_emg_delay"])
        base = out / "calibrated"
        paths[f"{label}_yaml"] = base / f"{label}.yaml"
        store.atomic_write_bytes(paths[f"{label}_yaml"],
                                 yaml.safe_dump(doc, sort_keys=False).encode())
        paths[f"{label}_mtus_csv"] = base / f"{label}_mtus.csv"
        store.atomic_write_bytes(paths[f"{label}_mtus_csv"], mtu_csv(per_mtu).encode())
        paths[f"{label}_csv"] = base / f"{label}.csv"
        store.atomic_write_bytes(paths[f"{label}_csv"], _parameter_csv(arr).encode())
        xml = _subject_xml(arr, per_mtu, m["label"])
        if xml is not None:
            paths[f"{label}_subject_xml"] = base / f"{label}_subject.xml"
            store.atomic_write_bytes(paths[f"{label}_subject_xml"], xml.encode())
    return paths


def _subject_xml(arr: dict, per_mtu: dict, label: str) -> str | None:
    """CEINMS subject text of a record's calibrated MTUs (None without the fields it needs)."""
    need = ("f_max", "l_opt", "l_ts", "phi_opt", "shape")
    if not per_mtu or any(f not in v for v in per_mtu.values() for f in need):
        return None
    muscles = list(per_mtu)
    lag = float(arr["data_emg_delay"]) if "data_emg_delay" in arr else 0.0
    if lag:  # the delay was applied to the data: CEINMS applies it in the model
        per_mtu = {mu: {**v, "delay": float(v.get("delay", 0.0)) + lag}
                   for mu, v in per_mtu.items()}
    initial = None
    if "mtu_initial_f_max" in arr:
        initial = {mu: float(v) for mu, v in zip(muscles, arr["mtu_initial_f_max"])}
    dofs: dict[str, list[str]] = {}
    if "dofs" in arr:
        names = [str(d) for d in arr["dofs"]]
        mask = np.asarray(arr.get("mtu_dof_mask", np.ones((len(muscles), len(names)))), bool)
        dofs = {d: [mu for i, mu in enumerate(muscles) if mask[i, j]]
                for j, d in enumerate(names)}
    return write_ceinms_subject(None, per_mtu, dofs, initial_f_max=initial,
                                start_subject=f"calibrated by impbench ({label})",
                                fs=float(arr["fs"]) if "fs" in arr else None)
