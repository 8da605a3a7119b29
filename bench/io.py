"""Reading experiment records and writing estimates (rig, third-party or MATLAB data).

:func:`load_record` reads one long input/output record from ``.npz``, ``.csv`` or MATLAB
``.mat`` and returns plain arrays, ready for :meth:`bench.types.Realizations.from_record`.
:func:`save_estimate` writes a stiffness (and optionally damping/inertia) trajectory to
``.npz`` or ``.csv`` atomically: the data go to a temporary file in the target directory that
replaces the target only once complete (``os.replace``), so a crash never leaves a half-written
file behind.

Every error about the data is a :class:`~bench.errors.DataError` naming the file and, for
CSV, the line (1-based, header = line 1 unless preceded by ``#`` comments) and column: a
file that is empty, truncated, of another format than its suffix says, not UTF-8 text (CSV),
or holds NaN/inf is refused with one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError, ScenarioError

__all__ = ["ESTIMATE_FORMATS", "check_estimate_path", "load_record", "save_estimate"]

#: Relative tolerance on the spread of CSV/MAT time steps around their mean.
_DT_RTOL = 1e-3
#: Largest record file read, bytes (400 s at 10 kHz of t,u,y in CSV is about 500 MB).
MAX_RECORD_BYTES = 2**31
#: Formats :func:`save_estimate` writes, by suffix.
ESTIMATE_FORMATS = (".npz", ".csv", ".mat")


# --------------------------------------------------------------------------- loading


def _short(text: object, n: int = 200) -> str:
    """``text`` on one line, cut to ``n`` characters (messages quote hostile content)."""
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 3] + "..."


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """Load one input/output record.

    Formats (by file suffix, case-insensitive):

    * ``.npz``: arrays ``u``, ``y`` and ``fs`` (scalar, Hz) or ``t`` (s); optional ``schedule``.
    * ``.csv``: comma-separated, a header line naming the columns ``t`` (s), ``u``, ``y`` and
      optionally ``schedule`` (any order, names case-insensitive, other columns ignored; lines
      starting with ``#`` before the header and blank lines are skipped). ``fs`` comes from the
      time column, which must increase strictly with uniform steps (each step within 0.1 % of
      the mean step).
    * ``.mat`` (MATLAB v5/v7, :func:`scipy.io.loadmat`): variables ``u``, ``y`` and ``fs`` or
      ``t``; optional ``schedule``. v7.3 (HDF5) files are not supported.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``u`` (T,), ``y`` (T,), ``fs`` (float, Hz), ``t`` (T,) in s (the file's time column or
        ``arange(T) / fs``) and ``schedule`` (T,) when present.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataError
        Unsupported format, missing variable/column, non-numeric or non-finite value, mismatched
        lengths, non-uniform or unsorted time, bad ``fs``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"record file not found: {p}")
    if p.stat().st_size > MAX_RECORD_BYTES:
        raise DataError(f"{p}: larger than {MAX_RECORD_BYTES >> 20} MiB; refusing to read it.")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty.")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        raw = _read_npz(p)
    elif suffix == ".csv":
        raw = _read_csv(p)
    elif suffix == ".mat":
        raw = _read_mat(p)
    else:
        raise DataError(f"{p}: unsupported record format {p.suffix!r}; use .npz, .csv or .mat.")
    return _finish(p, raw)


def _read_npz(p: Path) -> dict[str, Any]:
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:  # zipfile, EOF, pickle refusals, ...: all mean "not readable"
        raise DataError(f"{p}: cannot read as .npz ({type(exc).__name__}: "
                        f"{_short(exc)})") from None


def _read_mat(p: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        m = loadmat(p, squeeze_me=True)
    except NotImplementedError:
        raise DataError(
            f"{p}: MATLAB v7.3 (HDF5) files are not supported; save with -v7."
        ) from None
    except Exception as exc:  # scipy raises many types for a file that is not .mat
        raise DataError(f"{p}: cannot read as MATLAB .mat ({type(exc).__name__}: "
                        f"{_short(exc)})") from None
    return {k: v for k, v in m.items() if not k.startswith("__")}


def _read_csv(p: Path) -> dict[str, Any]:
    from bench.yamlfile import read_text

    try:
        text = read_text(p, max_bytes=MAX_RECORD_BYTES)
    except ScenarioError as exc:
        raise DataError(str(exc).splitlines()[-1]) from None
    try:
        return _parse_csv(p, io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise DataError(f"{p}: not a readable CSV file: {_short(exc)}") from None


def _parse_csv(p: Path, fh: io.StringIO) -> dict[str, Any]:
    reader = csv.reader(fh)
    header = None
    for row in reader:
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        header, header_line = [c.strip().lower() for c in row], reader.line_num
        break
    if header is None:
        raise DataError(f"{p}: empty CSV file (no header line).")
    for need in ("t", "u", "y"):
        if need not in header:
            raise DataError(
                f"{p}, line {header_line}: missing column {need!r} in the header "
                f"(found {_short(', '.join(repr(h) for h in header))}); need t, u, "
                "y[, schedule]."
            )
    wanted = [c for c in ("t", "u", "y", "schedule") if c in header]
    idx = {c: header.index(c) for c in wanted}
    cols: dict[str, list[float]] = {c: [] for c in wanted}
    line_of: list[int] = []
    for row in reader:
        lineno = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise DataError(
                f"{p}, line {lineno}: {len(row)} field(s), the header has {len(header)}."
            )
        for c in wanted:
            cell = row[idx[c]].strip()
            try:
                val = float(cell)
            except ValueError:
                shown = cell if len(cell) <= 40 else cell[:37] + "..."
                raise DataError(
                    f"{p}, line {lineno}, column {c!r}: non-numeric value {shown!r}."
                ) from None
            if not np.isfinite(val):
                raise DataError(f"{p}, line {lineno}, column {c!r}: non-finite value "
                                f"{_short(repr(cell), 60)}.")
            cols[c].append(val)
        line_of.append(lineno)
    if len(line_of) < 2:
        raise DataError(f"{p}: needs at least 2 data lines; found {len(line_of)}.")
    out = {c: np.asarray(v) for c, v in cols.items()}
    out["_csv_lines"] = np.asarray(line_of)
    return out


def _vector(p: Path, raw: dict, name: str) -> np.ndarray:
    a = np.asarray(raw[name])
    if a.dtype.kind not in "biuf":
        raise DataError(f"{p}: variable {name!r} must be numeric; got dtype {a.dtype}.")
    a = np.asarray(a, dtype=float).squeeze()
    if a.ndim != 1:
        raise DataError(f"{p}: variable {name!r} must be a 1-D record; got shape {a.shape}.")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise DataError(
            f"{p}: variable {name!r} has {bad.size} non-finite value(s); first at index {bad[0]}."
        )
    return a


def _check_time(p: Path, t: np.ndarray, lines: np.ndarray | None) -> float:
    def where(i: int) -> str:
        return f"line {lines[i]}, column 't'" if lines is not None else f"index {i}"

    dt = np.diff(t)
    nonpos = np.flatnonzero(dt <= 0)
    if nonpos.size:
        i = int(nonpos[0]) + 1
        raise DataError(
            f"{p}, {where(i)}: time is not strictly increasing ({t[i - 1]!r} then {t[i]!r})."
        )
    mean_dt = (t[-1] - t[0]) / (t.size - 1)
    off = np.flatnonzero(np.abs(dt - mean_dt) > _DT_RTOL * mean_dt)
    if off.size:
        i = int(off[0]) + 1
        raise DataError(
            f"{p}, {where(i)}: time is not uniformly sampled (step {dt[i - 1]!r} s vs mean "
            f"{mean_dt!r} s)."
        )
    return 1.0 / mean_dt


def _finish(p: Path, raw: dict) -> dict[str, Any]:
    lines = raw.pop("_csv_lines", None)
    for need in ("u", "y"):
        if need not in raw:
            raise DataError(f"{p}: missing variable {need!r} (found {_short(sorted(raw))}).")
    u, y = _vector(p, raw, "u"), _vector(p, raw, "y")
    if u.size != y.size:
        raise DataError(f"{p}: u and y differ in length ({u.size} vs {y.size}).")
    if u.size < 2:
        raise DataError(f"{p}: the record needs at least 2 samples; got {u.size}.")
    t = None
    if "t" in raw:
        t = _vector(p, raw, "t")
        if t.size != u.size:
            raise DataError(f"{p}: t has {t.size} samples, u has {u.size}.")
        fs_t = _check_time(p, t, lines)
    if "fs" in raw:
        fs_arr = np.asarray(raw["fs"])
        if fs_arr.size != 1 or fs_arr.dtype.kind not in "biuf":
            raise DataError(f"{p}: fs must be one number (Hz); got {fs_arr.dtype} of shape "
                            f"{fs_arr.shape}.")
        fs = float(fs_arr.reshape(()))
        if not (np.isfinite(fs) and fs > 0):
            raise DataError(f"{p}: fs must be a positive finite rate in Hz; got {fs!r}.")
        if t is not None and abs(fs_t - fs) > _DT_RTOL * fs:
            raise DataError(f"{p}: fs = {fs:g} Hz disagrees with the time vector ({fs_t:g} Hz).")
    elif t is not None:
        fs = fs_t
    else:
        raise DataError(f"{p}: needs a sampling rate 'fs' or a time vector 't'.")
    out: dict[str, Any] = {
        "u": u, "y": y, "fs": fs, "t": t if t is not None else np.arange(u.size) / fs,
    }
    if "schedule" in raw:
        s = _vector(p, raw, "schedule")
        if s.size != u.size:
            raise DataError(f"{p}: schedule has {s.size} samples, u has {u.size}.")
        out["schedule"] = s
    return out


# --------------------------------------------------------------------------- saving


def check_estimate_path(path: str | os.PathLike) -> Path:
    """Check that an estimate can be written to ``path`` (suffix and folder) before computing.

    Raises
    ------
    DataError
        Unsupported suffix.
    FileNotFoundError
        The folder does not exist.
    """
    p = Path(path)
    if p.suffix.lower() not in ESTIMATE_FORMATS:
        raise DataError(f"{p}: unsupported estimate format {p.suffix!r}; use "
                        f"{', '.join(ESTIMATE_FORMATS)}.")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"directory does not exist: {p.parent}")
    return p


def _csv_text(cols: dict[str, np.ndarray], n: int) -> bytes:
    """CSV at the numbers' real precision: each value as the shortest text that reads back
    to the same double (``repr``), so ``0.03`` stays ``0.03``."""
    lines = [",".join(cols)]
    table = [np.broadcast_to(v, (n,)) for v in cols.values()]
    for i in range(n):
        lines.append(",".join(repr(float(c[i])) for c in table))
    return ("\n".join(lines) + "\n").encode()


def save_estimate(
    path: str | os.PathLike,
    t: np.ndarray,
    K: np.ndarray,
    B: np.ndarray | None = None,
    I: np.ndarray | float | None = None,
    *,
    meta: dict | None = None,
) -> Path:
    """Write an impedance trajectory atomically to ``.npz``, ``.csv`` or MATLAB ``.mat``.

    Parameters
    ----------
    path : str or os.PathLike
        Target; its suffix picks the format. The directory must exist.
    t : ndarray, shape (N,)
        Time, s (finite).
    K : ndarray, shape (N,)
        Stiffness, Nm/rad (NaN allowed where not estimable; written as ``nan``).
    B : ndarray, shape (N,), optional
        Damping, Nms/rad.
    I : float or ndarray, shape (N,), optional
        Inertia, kg m^2 (a scalar is stored as a scalar in ``.npz``/``.mat`` and repeated in
        ``.csv``).
    meta : dict, optional
        Provenance (method, parameters, source file): JSON text in a variable ``meta``
        (``.npz``, ``.mat``; in MATLAB ``jsondecode(meta)``); not written to ``.csv``, which
        stays a plain table any tool reads.

    Returns
    -------
    pathlib.Path
        The written file. ``.npz``/``.mat`` hold variables ``t``, ``K`` and, when given,
        ``B``, ``I``; ``.csv`` a header ``t,K[,B][,I]`` and one line per sample, each number
        the shortest text that reads back exactly.

    Raises
    ------
    DataError
        Unsupported suffix, shape mismatch or non-finite time.
    """
    p = check_estimate_path(path)
    suffix = p.suffix.lower()
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise DataError(f"{p}: t must be a finite 1-D time vector; got shape {t.shape}.")
    cols: dict[str, Any] = {"t": t}
    for name, val in (("K", K), ("B", B), ("I", I)):
        if val is None:
            continue
        a = np.asarray(val, dtype=float)
        if name == "I" and a.ndim == 0:
            cols[name] = a
            continue
        if a.shape != t.shape:
            raise DataError(f"{p}: {name} must have the shape of t {t.shape}; got {a.shape}.")
        cols[name] = a
    meta_txt = None if meta is None else json.dumps(meta, default=str)
    if suffix == ".csv":
        data = _csv_text(cols, t.size)
    else:
        buf = io.BytesIO()
        extra = {} if meta_txt is None else {"meta": np.asarray(meta_txt)}
        if suffix == ".npz":
            np.savez(buf, **cols, **extra)
        else:
            from scipy.io import savemat

            savemat(buf, {k: (v[:, None] if v.ndim == 1 else v) for k, v in cols.items()}
                    | extra, do_compression=True)
        data = buf.getvalue()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions of a data file
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p
