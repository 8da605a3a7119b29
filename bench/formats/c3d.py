"""Analog (EMG) channels from C3D files through the maintained ``c3d`` reader (PyPI)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats._table import Table

__all__ = ["read_c3d_analog"]


def read_c3d_analog(path: str | os.PathLike, channels: list[str] | None = None) -> Table:
    """Read analog channels of a C3D file at the analog rate.

    Parameters
    ----------
    path : path-like
    channels : list of str, optional
        Analog labels to keep (default: all).

    Returns
    -------
    Table
        ``time`` at the analog rate from the first frame, ``data`` shape (T, C).
    """
    import c3d

    p = Path(path)
    try:
        with open(p, "rb") as fh:
            reader = c3d.Reader(fh)
            labels = [str(lb).strip() for lb in reader.analog_labels]
            rate = float(reader.analog_rate)
            blocks = [analog for _, _, analog in reader.read_frames()]
    except (OSError, ValueError, AssertionError, KeyError) as exc:
        raise DataError(f"{p}: cannot read C3D analog data: {exc}") from None
    if not blocks or not labels:
        raise DataError(f"{p}: the C3D file has no analog channels")
    data = np.concatenate([np.asarray(b, dtype=float) for b in blocks], axis=1).T
    if channels is not None:
        missing = [c for c in channels if c not in labels]
        if missing:
            raise DataError(
                f"{p}: missing analog channel(s) {missing}; the file has: {', '.join(labels)}"
            )
        data = data[:, [labels.index(c) for c in channels]]
        labels = list(channels)
    bad = ~np.isfinite(data)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{p}: analog channel {labels[c]!r} has NaN at sample {int(r)}")
    time = np.arange(data.shape[0]) / rate
    return Table(time=time, data=data, columns=labels, path=str(p), header={"rate": rate})
