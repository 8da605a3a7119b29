"""Per-MTU muscle-tendon parameter files: initial values in, calibrated values out.

YAML ``{fs: 128, mtus: {soleus: {f_max: 3549, l_opt: 0.05, ...}}}`` or CSV with a header
``mtu,f_max,l_opt,...`` (a unit suffix such as ``f_max [N]`` is allowed), one row per MTU.
Fields (units): ``f_max`` N, ``l_opt`` m, ``l_ts`` m, ``phi_opt`` rad (required); ``v_max``
l_opt/s, ``damping``, ``shape``, ``c1``, ``c2`` (at the model rate ``fs``), ``delay`` s,
``t_act`` s, ``t_deact`` s (optional: the model's defaults otherwise). The files
``impbench calibrate`` writes (``calibrated/<method>.yaml``, ``<method>_mtus.csv``) are such
files, so a calibrated model can be the next calibration's start.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError, ScenarioError

__all__ = ["PARAMETER_FIELDS", "PARAMETER_UNITS", "REQUIRED_FIELDS", "mtu_csv",
           "read_params_file"]

#: Per-MTU parameter fields a file may give, with units.
PARAMETER_UNITS = {
    "f_max": "N", "l_opt": "m", "l_ts": "m", "phi_opt": "rad", "v_max": "l_opt/s",
    "damping": "1", "shape": "1", "c1": "1", "c2": "1", "delay": "s", "t_act": "s",
    "t_deact": "s",
}
PARAMETER_FIELDS = tuple(PARAMETER_UNITS)
REQUIRED_FIELDS = ("f_max", "l_opt", "l_ts", "phi_opt")

_UNIT_SUFFIX = re.compile(r"\s*\[[^\]]*\]\s*$")


def _check_fields(where: str, values: Mapping[str, Any], muscle: str) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if k not in PARAMETER_UNITS:
            raise DataError(f"{where}: MTU {muscle!r}: unknown parameter {k!r}; valid: "
                            f"{', '.join(PARAMETER_FIELDS)}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{where}: MTU {muscle!r}: {k} = {v!r} is not a number") from None
        if not np.isfinite(f):
            raise DataError(f"{where}: MTU {muscle!r}: {k} = {v!r} is not finite")
        out[k] = f
    miss = [k for k in REQUIRED_FIELDS if k not in out]
    if miss:
        raise DataError(f"{where}: MTU {muscle!r}: missing parameter(s) {miss}")
    return out


def read_params_file(path: str | Path, muscles: list[str],
                     fs: float | None = None) -> dict[str, np.ndarray]:
    """Per-MTU parameters from a YAML or CSV file (format in the module docstring).

    Parameters
    ----------
    path : path-like
        ``.yaml``/``.yml`` or ``.csv``.
    muscles : list of str, length M
        Model MTUs; the file must give each (extra MTUs are an error too).
    fs : float, Hz, optional
        Model rate; a YAML ``fs`` (rate of ``c1, c2``) must equal it.

    Returns
    -------
    dict of str to ndarray, shape (M,)
        Field -> values in model order.

    Raises
    ------
    DataError
        Naming the file (and line) of any problem, read through the bench's hardened
        readers (:mod:`bench.yamlfile`).
    """
    from bench.yamlfile import read_text, read_yaml

    p = Path(path)
    rows: dict[str, dict[str, float]] = {}
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            doc = read_yaml(p)
            data = doc.data
            if not isinstance(data, dict) or not isinstance(data.get("mtus"), dict):
                raise DataError(f"{p}: expected a mapping with 'mtus: {{name: {{field: "
                                "value}}}}'")
            file_fs = data.get("fs")
            if file_fs is not None and fs is not None and (
                    not isinstance(file_fs, (int, float)) or abs(float(file_fs) - fs) > 1e-9 * fs):
                raise DataError(f"{p}:{doc.lines.get(('fs',), 1)}: fs = {file_fs} Hz (rate of "
                                f"c1, c2) differs from the model rate {fs} Hz")
            for m, vals in data["mtus"].items():
                line = doc.lines.get(("mtus", m), 1)
                if not isinstance(vals, dict):
                    raise DataError(f"{p}:{line}: MTU {m!r}: expected a mapping of parameters")
                rows[str(m)] = _check_fields(f"{p}:{line}", vals, str(m))
        elif p.suffix.lower() == ".csv":
            reader = csv.reader(io.StringIO(read_text(p), newline=""))
            try:
                header = [_UNIT_SUFFIX.sub("", h).strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{p}: empty CSV file") from None
            if not header or header[0] != "mtu":
                raise DataError(f"{p}:1: the first column must be 'mtu'; found {header[:1]}")
            for line_no, row in enumerate(reader, start=2):
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{p}:{line_no}: expected {len(header)} values, found "
                                    f"{len(row)}")
                m = row[0].strip()
                rows[m] = _check_fields(f"{p}:{line_no}", dict(zip(header[1:], row[1:])), m)
        else:
            raise DataError(f"{p}: MTU parameters must be a .yaml/.yml or .csv file")
    except ScenarioError as exc:
        raise DataError(str(exc).splitlines()[-1]) from None
    except csv.Error as exc:
        raise DataError(f"{p}: not a readable CSV file: {exc}") from None
    missing = [m for m in muscles if m not in rows]
    extra = [m for m in rows if m not in muscles]
    if missing or extra:
        raise DataError(f"{p}: MTUs do not match the model: missing {missing}, extra {extra}")
    fields = set.union(*(set(r) for r in rows.values()))
    out = {}
    for k in PARAMETER_FIELDS:
        if k not in fields:
            continue
        lacking = [m for m in muscles if k not in rows[m]]
        if lacking:
            raise DataError(f"{p}: parameter {k!r} is given for some MTUs but not for {lacking}")
        out[k] = np.array([rows[m][k] for m in muscles])
    return out


def mtu_csv(per_mtu: Mapping[str, Mapping[str, float]]) -> str:
    """CSV text ``mtu,<field> [unit],...`` of per-MTU parameters (readable by
    :func:`read_params_file`), numbers at full precision."""
    fields = [f for f in PARAMETER_FIELDS if any(f in v for v in per_mtu.values())]
    lines = [",".join(["mtu", *(f"{f} [{PARAMETER_UNITS[f]}]" for f in fields)])]
    for m, vals in per_mtu.items():
        lines.append(",".join([m, *(repr(float(vals[f])) for f in fields)]))
    return "\n".join(lines) + "\n"
