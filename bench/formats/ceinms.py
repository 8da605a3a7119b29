"""CEINMS trial text files (emg, lmt, per-DoF moment arms, torques).

Layout::

    datacolumns 8
    datarows 1601
    range 0.000000 1.600000        (optional)
    time<TAB>soleus<TAB>gasmed ...
    0.000<TAB>...

One file per quantity; moment-arm files are one per DoF (columns = MTUs).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import DataError
from bench.formats._table import Table, parse_rows

__all__ = ["read_ceinms_table"]


def read_ceinms_table(path: str | os.PathLike) -> Table:
    """Read a CEINMS ``datacolumns``/``datarows`` text file into a :class:`Table`.

    Raises
    ------
    DataError
        Naming the file, line and column for a malformed header, a count that disagrees
        with the data, a non-numeric or NaN value, or unsorted time.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read: {exc}") from None
    header: dict[str, int] = {}
    i = 0
    for key in ("datacolumns", "datarows"):
        if i >= len(lines):
            raise DataError(f"{p}:{i + 1}: expected '{key} N', found end of file")
        parts = lines[i].split()
        if len(parts) != 2 or parts[0].lower() != key:
            raise DataError(f"{p}:{i + 1}: expected '{key} N', found {lines[i]!r}")
        try:
            header[key] = int(parts[1])
        except ValueError:
            raise DataError(f"{p}:{i + 1}: {key} value {parts[1]!r} is not an integer") from None
        i += 1
    if i < len(lines) and lines[i].split()[:1] == ["range"]:
        i += 1
    if i >= len(lines):
        raise DataError(f"{p}:{i + 1}: missing the column-label line")
    columns = lines[i].split()
    if not columns or columns[0].lower() != "time":
        raise DataError(f"{p}:{i + 1}: the first column must be 'time'; found {columns[:1]}")
    if len(columns) != header["datacolumns"]:
        raise DataError(
            f"{p}:{i + 1}: datacolumns={header['datacolumns']} but {len(columns)} labels"
        )
    data = parse_rows(lines[i + 1:], i + 2, len(columns), str(p), columns)
    if data.shape[0] != header["datarows"]:
        raise DataError(f"{p}: datarows={header['datarows']} but {data.shape[0]} data rows")
    return Table(time=data[:, 0], data=data[:, 1:], columns=columns[1:], path=str(p),
                 header=dict(header))
