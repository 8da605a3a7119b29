"""OpenSim storage files (``.sto``, ``.mot``): legacy (version 1) and version-3 headers.

Legacy header::

    <name>
    version=1
    nRows=100
    nColumns=5
    inDegrees=yes
    endheader
    time<TAB>col1<TAB>...

Version 3 (OpenSim 4)::

    DataRate=100.000000
    DataType=double
    version=3
    OpenSimVersion=4.1
    endheader
    time<TAB>...

Joint angles (IK ``.mot``), inverse-dynamics moments (``*_moment``), and MuscleAnalysis
outputs (``*_MuscleAnalysis_Length.sto``, ``*_MomentArm_<coordinate>.sto``) are all such
tables. Angles in degrees (``inDegrees=yes``) are converted to radians for the rotational
coordinates named by the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats._table import Table, parse_rows

__all__ = ["Table", "read_storage", "write_storage"]


def read_storage(path: str | os.PathLike, *, degrees_to_radians: bool = True) -> Table:
    """Read an OpenSim ``.sto``/``.mot`` file.

    Parameters
    ----------
    path : path-like
    degrees_to_radians : bool
        With ``inDegrees=yes``, convert every column except ``time`` whose name does not
        end in ``_moment``/``_force``/``_tx``/``_ty``/``_tz`` to radians.

    Returns
    -------
    Table

    Raises
    ------
    DataError
        Naming the file, line and column: no ``endheader``, a header count that
        disagrees with the data, a non-numeric or NaN value, unsorted time.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read: {exc}") from None
    lines = text.splitlines()
    try:
        end = next(i for i, ln in enumerate(lines) if ln.strip().lower() == "endheader")
    except StopIteration:
        raise DataError(f"{p}: no 'endheader' line; not an OpenSim storage file") from None
    header: dict[str, str] = {}
    for ln in lines[:end]:
        if "=" in ln:
            k, _, v = ln.partition("=")
            header[k.strip()] = v.strip()
        elif ln.strip():
            header.setdefault("name", ln.strip())
    if end + 1 >= len(lines):
        raise DataError(f"{p}:{end + 2}: missing the column-label line after 'endheader'")
    columns = [c.strip() for c in lines[end + 1].split("\t") if c.strip()]
    if len(columns) <= 1 and " " in lines[end + 1].strip():
        columns = lines[end + 1].split()
    if not columns or columns[0].lower() != "time":
        raise DataError(f"{p}:{end + 2}: the first column must be 'time'; found {columns[:1]}")
    data = parse_rows(lines[end + 2:], end + 3, len(columns), str(p), columns)
    for key, actual in (("nRows", data.shape[0]), ("nColumns", data.shape[1])):
        if key in header:
            try:
                declared = int(header[key])
            except ValueError:
                raise DataError(f"{p}: header {key}={header[key]!r} is not an integer") from None
            if declared != actual:
                raise DataError(f"{p}: header says {key}={declared} but the file has {actual}")
    values = data[:, 1:]
    if degrees_to_radians and header.get("inDegrees", "no").lower() == "yes":
        linear = ("_moment", "_force", "_tx", "_ty", "_tz")
        rot = np.array([not c.endswith(linear) for c in columns[1:]])
        values = values.copy()
        values[:, rot] = np.deg2rad(values[:, rot])
        header["inDegrees"] = "converted"
    return Table(time=data[:, 0], data=values, columns=columns[1:], path=str(p), header=header)


def write_storage(
    path: str | os.PathLike, time: np.ndarray, data: np.ndarray, columns: list[str], *,
    name: str = "impbench", version: int = 1, in_degrees: bool = False,
) -> None:
    """Write an OpenSim storage file (legacy or version-3 header), atomically."""
    p = Path(path)
    data = np.atleast_2d(np.asarray(data, dtype=float))
    time = np.asarray(time, dtype=float)
    if data.shape != (time.size, len(columns)):
        raise DataError(f"data shape {data.shape} does not match time and columns")
    if version == 1:
        head = [name, "version=1", f"nRows={time.size}", f"nColumns={len(columns) + 1}",
                f"inDegrees={'yes' if in_degrees else 'no'}", "endheader"]
    elif version == 3:
        rate = (time.size - 1) / (time[-1] - time[0])
        head = [f"DataRate={rate:.6f}", "DataType=double", "version=3",
                "OpenSimVersion=4.1", f"inDegrees={'yes' if in_degrees else 'no'}", "endheader"]
    else:
        raise DataError(f"unsupported storage version {version}; use 1 or 3")
    body = ["\t".join(["time", *columns])]
    body += ["\t".join(f"{v:.10g}" for v in (t, *row)) for t, row in zip(time, data)]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(head + body) + "\n")
    os.replace(tmp, p)
