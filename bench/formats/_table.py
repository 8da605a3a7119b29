"""A time-indexed table of named columns, and the checks every reader applies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.errors import DataError

__all__ = ["FormatWarning", "Table", "parse_rows"]


class FormatWarning(UserWarning):
    """A file was read despite a harmless departure from its format (a header count that
    disagrees with the data, small negative excitations clipped ...); the message names the
    file and says what was done."""


@dataclass(frozen=True)
class Table:
    """Columns sampled on a common time base.

    Attributes
    ----------
    time : ndarray, shape (T,), s
        Strictly increasing.
    data : ndarray, shape (T, C)
    columns : list of str, length C
    path : str
        Source file (for messages).
    header : dict
        Header key/values as read (``inDegrees``, ``DataRate`` ...).
    """

    time: np.ndarray
    data: np.ndarray
    columns: list
    path: str = ""
    header: dict = field(default_factory=dict)

    @property
    def fs(self) -> float:
        """Mean sampling rate, Hz."""
        return float((self.time.size - 1) / (self.time[-1] - self.time[0]))

    def column(self, name: str) -> np.ndarray:
        """One column by name; a clear error lists what the file has."""
        try:
            return self.data[:, self.columns.index(name)]
        except ValueError:
            raise DataError(
                f"{self.path}: missing column {name!r}; the file has: {', '.join(self.columns)}"
            ) from None

    def select(self, names: list[str]) -> np.ndarray:
        """Several columns, shape (T, len(names))."""
        return np.stack([self.column(n) for n in names], axis=1)


def parse_rows(
    lines: list[str], first_line_no: int, ncols: int, path: str, columns: list[str]
) -> np.ndarray:
    """Parse numeric rows, naming file, line and column of the first bad value.

    Parameters
    ----------
    lines : list of str
        Data lines (blank lines skipped).
    first_line_no : int
        1-based line number of ``lines[0]`` in the file.
    ncols : int
        Expected values per row.
    """
    rows = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.split()  # tab- or space-separated numbers
        line_no = first_line_no + k
        if len(parts) != ncols:
            raise DataError(
                f"{path}:{line_no}: expected {ncols} values, found {len(parts)}"
            )
        row = []
        for j, p in enumerate(parts):
            try:
                v = float(p)
            except ValueError:
                raise DataError(
                    f"{path}:{line_no}: column {columns[j]!r}: {p!r} is not a number"
                ) from None
            if not np.isfinite(v):
                raise DataError(f"{path}:{line_no}: column {columns[j]!r}: value is {p}")
            row.append(v)
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no data rows")
    arr = np.asarray(rows, dtype=float)
    t = arr[:, 0]
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        raise DataError(
            f"{path}: time is not strictly increasing at data row {int(bad[0]) + 2} "
            f"({t[bad[0]]} then {t[bad[0] + 1]})"
        )
    return arr
