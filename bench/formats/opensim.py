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
tables. The files are read as OpenSim reads them (``TimeSeriesTable``, ``Storage``):

* OpenSim 4 state files (``coordinates.sto`` of Moco, states of a forward simulation) name
  columns by state path, ``/jointset/ankle_r/ankle_angle_r/value``; a ``.../value`` column
  is also found under its coordinate name (``ankle_angle_r``) when that name is unique in
  the file (``Table.header["state_paths"]`` keeps the mapping);
* ``nRows``/``nColumns`` header counts that disagree with the data are tolerated with a
  :class:`~bench.formats._table.FormatWarning` (OpenSim ignores them too): the labelled
  columns and the rows present are read;
* ``inDegrees=yes`` converts the rotational columns to radians (all but ``*_moment``,
  ``*_force`` and translations ``*_tx/_ty/_tz``, or exactly the columns the caller names);
  a file without ``inDegrees`` is in radians (OpenSim's default).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats._table import FormatWarning, Table, parse_rows

__all__ = ["Table", "read_storage", "state_path_names", "write_storage"]

#: Column-name endings that are never angles (moments, forces, translations).
LINEAR_SUFFIXES = ("_moment", "_force", "_tx", "_ty", "_tz")


def state_path_names(columns: list[str]) -> tuple[list[str], dict[str, str]]:
    """Coordinate names for OpenSim 4 state-path labels.

    ``/jointset/<joint>/<coordinate>/value`` becomes ``<coordinate>`` when no other column
    has (or maps to) that name; other labels are kept.

    Returns
    -------
    names : list of str
        The labels to use, in order.
    mapping : dict
        Coordinate name -> original state path, for the labels that were renamed.
    """
    short = {}
    for c in columns:
        parts = c.split("/")
        if c.startswith("/") and len(parts) >= 3 and parts[-1] == "value" and parts[-2]:
            short[c] = parts[-2]
    count: dict[str, int] = {}
    for c in columns:
        n = short.get(c, c)
        count[n] = count.get(n, 0) + 1
    names, mapping = [], {}
    for c in columns:
        n = short.get(c)
        if n is not None and count[n] == 1:
            names.append(n)
            mapping[n] = c
        else:
            names.append(c)
    return names, mapping


def read_storage(path: str | os.PathLike, *, degrees_to_radians: bool = True,
                 rotational: Collection[str] | None = None) -> Table:
    """Read an OpenSim ``.sto``/``.mot`` file (legacy or version-3 header).

    Parameters
    ----------
    path : path-like
    degrees_to_radians : bool
        With ``inDegrees=yes``, convert the rotational columns to radians.
    rotational : collection of str, optional
        The columns that are rotations (e.g. from the model's coordinate types); default:
        every column except ``time`` whose name does not end in ``_moment``/``_force``/
        ``_tx``/``_ty``/``_tz``.

    Returns
    -------
    Table
        ``header`` holds the header's ``key=value`` pairs (``inDegrees`` becomes
        ``"converted"`` after a conversion) and ``state_paths`` (coordinate name -> state
        path) for renamed OpenSim 4 state columns.

    Raises
    ------
    DataError
        Naming the file, line and column: no ``endheader``, no ``time`` column, a
        non-numeric or NaN value, a row with the wrong number of values, unsorted time, a
        header count that is not an integer.

    Warns
    -----
    FormatWarning
        A ``nRows``/``nColumns`` header count that disagrees with the data (read anyway).
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
    header: dict = {}
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
    for key, actual, what in (("nRows", data.shape[0], "data rows"),
                              ("nColumns", data.shape[1], "columns")):
        if key in header:
            line = 1 + next((i for i, ln in enumerate(lines[:end])
                             if ln.partition("=")[0].strip() == key), 0)
            try:
                declared = int(header[key])
            except ValueError:
                raise DataError(f"{p}:{line}: header {key}={header[key]!r} is not an "
                                "integer") from None
            if declared != actual:
                warnings.warn(f"{p}:{line}: header says {key}={declared} but the file has "
                              f"{actual} {what}; read the {actual} {what} present (as "
                              "OpenSim does)", FormatWarning, stacklevel=2)
    names, mapping = state_path_names(columns[1:])
    if mapping:
        header["state_paths"] = mapping
    values = data[:, 1:]
    if degrees_to_radians and str(header.get("inDegrees", "no")).lower() == "yes":
        if rotational is None:
            rot = np.array([not c.endswith(LINEAR_SUFFIXES) for c in names])
        else:
            rot = np.array([c in rotational for c in names])
        values = values.copy()
        values[:, rot] = np.deg2rad(values[:, rot])
        header["inDegrees"] = "converted"
    return Table(time=data[:, 0], data=values, columns=names, path=str(p), header=header)


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
