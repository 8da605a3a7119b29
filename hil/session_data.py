"""Session datasets: received samples assembled per setpoint index, saved, loaded, viewed.

:class:`_Assembler` is the one code path that turns checked frames into per-index arrays,
live (:func:`hil.session.record`) and from a raw log (:func:`hil.session.recover`).
:class:`SessionDataset` holds the arrays and metadata (``<stem>.npz`` + ``<stem>.json``);
:meth:`SessionDataset.realizations` is the view the estimators take: actuator position as
input, force as output, pivot position as scheduling variable, cut at the pivot period.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError
from bench.types import GroundTruth, Realizations
from hil.protocol import SETPOINT_UNIT_UM, Fault, FaultCode, Hello, Sample
from hil.session_spec import ResolvedSession, SessionPlan, SessionSpec, resolve_session

__all__ = [
    "DATASET_FORMAT",
    "SessionDataset",
    "find_datasets",
    "is_session_dataset",
    "load_dataset",
    "session_mapping",
    "session_realizations",
]

#: ``meta["format"]`` of a session dataset's JSON file.
DATASET_FORMAT = "impbench-session-dataset/1"
_REQUIRED_ARRAYS = frozenset({"valid", "act_m", "force_n", "pivot_m", "rep", "recorded"})


class _Assembler:
    """Collects checked frames into per-index arrays; the one code path of record and recover."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.valid = np.zeros(total, bool)
        self.time_us = np.zeros(total, np.int64)
        self.t_host = np.full(total, np.nan)
        self.act_um = np.zeros(total, np.int64)
        self.force_mn = np.zeros(total, np.int64)
        self.pivot_um = np.zeros(total, np.int64)
        self.motor = np.zeros(total, np.int64)
        self.flags = np.zeros(total, np.int64)
        self.segment = np.full(total, -1, np.int64)
        self.faults: list[dict] = []
        self.hello: Hello | None = None
        self.out_of_range = 0
        self.repeats = 0
        self.restarts: list[int] = []
        self.count = 0  # samples stored (== valid.sum(), kept incrementally)
        self.max_index = -1

    def add(self, msg: Any, t_host: float, segment: int) -> None:
        if isinstance(msg, Sample):
            i = msg.index
            if not 0 <= i < self.total:
                self.out_of_range += 1
                return
            if self.valid[i]:
                self.repeats += 1
                return
            self.valid[i] = True
            self.count += 1
            self.max_index = max(self.max_index, i)
            self.time_us[i] = msg.time_us
            self.t_host[i] = t_host
            self.act_um[i] = msg.act_um
            self.force_mn[i] = msg.force_mn
            self.pivot_um[i] = msg.pivot_um
            self.motor[i] = msg.motor
            self.flags[i] = msg.flags
            self.segment[i] = segment
        elif isinstance(msg, Fault):
            name = FaultCode(msg.code).name if msg.code in FaultCode._value2member_map_ else "?"
            self.faults.append({"code": msg.code, "name": name, "index": msg.index,
                                "detail": msg.detail, "t_host": t_host, "segment": segment})
        elif isinstance(msg, Hello):
            self.hello = msg

    @property
    def received(self) -> int:
        return self.count

    @property
    def gaps_so_far(self) -> int:
        """Missing samples below the highest index received."""
        return self.max_index + 1 - self.count


def _gap_runs(valid: np.ndarray) -> list[list[int]]:
    """[start, length] of each run of missing samples."""
    d = np.diff(np.concatenate([[1], valid.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(d == -1), np.flatnonzero(d == 1)
    return [[int(s), int(e - s)] for s, e in zip(starts, ends)]


@dataclass
class SessionDataset:
    """A recorded session: per-sample arrays (index = setpoint index) and metadata.

    Attributes
    ----------
    arrays : dict of str to ndarray, each shape (total,)
        ``valid`` (bool), ``time_us`` (device clock, unwrapped, us), ``t_host`` (host
        arrival, ``time.monotonic`` s, NaN when missing), ``act_m``, ``force_n``, ``pivot_m``,
        ``motor`` (permille), ``flags``, ``segment``, ``act_sp_m``, ``pivot_sp_m``
        (commanded setpoints), ``rep`` (repetition), ``recorded`` (bool: not settling).
    meta : dict
        Session spec, rig file, firmware version, gap report, faults, link statistics,
        wall and device clock summary.
    """

    arrays: dict
    meta: dict = field(default_factory=dict)

    @property
    def gaps(self) -> dict:
        """Gap report: ``missing`` samples and their runs ``[start, length]``."""
        return self.meta["gaps"]

    def save(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<out>.npz`` (arrays) and ``<out>.json`` (metadata); returns both paths."""
        out = Path(out)
        npz, js = out.with_suffix(".npz"), out.with_suffix(".json")
        np.savez_compressed(npz, **self.arrays)
        js.write_text(json.dumps(self.meta, indent=1, default=str))
        return npz, js

    def realizations(self, *, rig_truth: Callable[[np.ndarray], np.ndarray] | None = None,
                     period: float | None = None) -> Realizations:
        """Estimator view: u = actuator position (m), y = force (N), schedule = pivot (m).

        Each repetition's recorded part is cut into periods; periods holding any missing
        sample, or a restart of the device after an underrun/reset, are dropped (counted in
        ``meta["dropped_periods"]``), never filled.

        Parameters
        ----------
        rig_truth : callable, optional
            Pivot position (m) -> true stiffness (N/m); when given, ``truth.K`` is the mean
            over realizations of the mapping of the measured pivot, ``truth.K_r`` per row.
        period : float, optional
            Length of one realization, s (default: the pivot period ``meta["period_s"]``).

        Raises
        ------
        DataError
            No complete period was recorded, or ``period`` is shorter than 2 samples or
            longer than a repetition.
        """
        a, m = self.arrays, self.meta
        fs = float(m["fs"])
        period = float(m["period_s"]) if period is None else float(period)
        n = round(period * fs)
        if n < 2 or n > int(m["n_run"]):
            raise DataError(f"period ({period:g} s = {n} samples at {fs:g} Hz) must span 2 "
                            f"to {m['n_run']} samples (one repetition)")
        rows_u, rows_y, rows_s, dropped = [], [], [], 0
        for rep in range(int(m["repetitions"])):
            sel = np.flatnonzero((a["rep"] == rep) & a["recorded"])
            r = sel.size // n
            idx = sel[: r * n].reshape(r, n)
            ok = a["valid"][idx].all(axis=1)
            for k in m.get("restarts", []):
                ok &= ~((idx[:, 1:] == k).any(axis=1))  # a restart inside a period
            dropped += int((~ok).sum())
            rows_u.append(a["act_m"][idx[ok]])
            rows_y.append(a["force_n"][idx[ok]])
            rows_s.append(a["pivot_m"][idx[ok]])
        u = np.concatenate(rows_u) if rows_u else np.zeros((0, n))
        if u.shape[0] == 0:
            raise DataError(f"session {m.get('name')!r} has no complete pivot period "
                            f"({n} samples) without gaps")
        y, s = np.concatenate(rows_y), np.concatenate(rows_s)
        truth = None
        if rig_truth is not None:
            k_r = np.asarray(rig_truth(s), float)
            truth = GroundTruth(K=k_r.mean(axis=0), K_r=k_r)
        meta = {"source": "rig-session", "name": m.get("name"), "rig": m.get("rig"),
                "firmware": m.get("firmware"), "dropped_periods": dropped,
                "period_s": period}
        return Realizations(u=u, y=y, fs=fs, schedule=s, truth=truth, meta=meta)


def _build_dataset(asm: _Assembler, plan: SessionPlan, res: ResolvedSession, extra: dict
                   ) -> SessionDataset:
    total = plan.total
    rep = np.repeat(np.arange(plan.actuator.shape[0]), plan.per_rep)
    recorded = np.tile(np.arange(plan.per_rep) >= plan.n_settle, plan.actuator.shape[0])
    # Unwrap the 32-bit device clock within each segment.
    t_us = asm.time_us.astype(np.int64).copy()
    for seg in np.unique(asm.segment[asm.valid]):
        sel = np.flatnonzero(asm.valid & (asm.segment == seg))
        d = np.diff(t_us[sel])
        wraps = np.concatenate([[0], np.cumsum(d < -(2**31))])
        t_us[sel] += wraps * 2**32
    um = 1e-6
    arrays = {
        "valid": asm.valid, "time_us": t_us, "t_host": asm.t_host,
        "act_m": asm.act_um * um, "force_n": asm.force_mn * 1e-3, "pivot_m": asm.pivot_um * um,
        "motor": asm.motor, "flags": asm.flags, "segment": asm.segment,
        "act_sp_m": plan.actuator.ravel().astype(float) * SETPOINT_UNIT_UM * um,
        "pivot_sp_m": plan.pivot.ravel().astype(float) * SETPOINT_UNIT_UM * um,
        "rep": rep, "recorded": recorded,
    }
    runs = _gap_runs(asm.valid)
    v = asm.valid
    dev_span = float((t_us[v].max() - t_us[v].min()) * 1e-6) if v.any() else 0.0
    host_span = float(np.nanmax(asm.t_host) - np.nanmin(asm.t_host)) if v.any() else 0.0
    hello = asm.hello
    spec = res.spec
    meta = {
        "format": DATASET_FORMAT, "name": spec.name, "rig": res.rig_path,
        "spec": spec.model_dump(mode="json"),
        "fs": plan.fs, "period_s": spec.period_s, "repetitions": plan.actuator.shape[0],
        "n_settle": plan.n_settle, "n_run": plan.n_run, "total": total,
        "received": asm.received,
        "firmware": hello.firmware_version if hello else None,
        "rig_id": hello.rig_id if hello else None,
        "gaps": {"missing": int(total - asm.received), "runs": runs},
        "faults": asm.faults,
        "samples_out_of_range": asm.out_of_range, "samples_repeated": asm.repeats,
        "restarts": asm.restarts,
        "clocks": {"device_span_s": dev_span, "host_span_s": host_span,
                   "drift_ppm": (host_span / dev_span - 1) * 1e6 if dev_span > 0 else None},
        "segments": sorted({int(s) for s in asm.segment[v]}),
        "rig_description": res.rig.model_dump(mode="json"),
        **extra,
    }
    return SessionDataset(arrays, meta)


#: Largest session metadata file read, bytes (a dataset's JSON is a few kB to a few MB).
MAX_META_BYTES = 64 * 2**20


def _read_meta(js: Path) -> Any:
    """The parsed metadata file; DataError when unreadable, too large or not JSON."""
    from bench.errors import ScenarioError
    from bench.yamlfile import read_text

    try:
        text = read_text(js, max_bytes=MAX_META_BYTES)
    except ScenarioError as exc:
        raise DataError(str(exc).splitlines()[-1]) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{js}: not a JSON file: {str(exc)[:200]}") from None


def _check_meta(js: Path, meta: Any) -> None:
    """The numbers a dataset's view is built from: present, of their type and in range."""
    if not isinstance(meta, dict):
        raise DataError(f"{js}: session metadata must be a JSON object")

    def number(key: str, integer: bool = False) -> float:
        v = meta.get(key)
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not np.isfinite(v) or v <= 0:
            kind = "a positive integer" if integer else "a positive finite number"
            raise DataError(f"{js}: '{key}' must be {kind}; got {v!r}")
        return v

    number("fs")
    number("period_s")
    for key in ("n_run", "repetitions", "total"):
        number(key, integer=True)
    restarts = meta.get("restarts", [])
    if not isinstance(restarts, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in restarts):
        raise DataError(f"{js}: 'restarts' must be a list of sample indices")


def load_dataset(path: str | os.PathLike) -> SessionDataset:
    """Load a dataset written by :meth:`SessionDataset.save` (either file's path or the stem).

    Raises
    ------
    DataError
        One of the two files is missing, unreadable or not of its kind (naming it), an array
        is missing or of another length than ``total``, or a number of the metadata is
        missing or out of range.
    """
    p = Path(path)
    npz, js = p.with_suffix(".npz"), p.with_suffix(".json")
    if not npz.is_file() or not js.is_file():
        raise DataError(f"{p}: session dataset needs both {npz.name} and {js.name}")
    meta = _read_meta(js)
    _check_meta(js, meta)
    try:
        with np.load(npz, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, EOF, pickle refusals, ...: all mean "not readable"
        raise DataError(f"{npz}: cannot read as .npz ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None
    missing = sorted(_REQUIRED_ARRAYS - set(arrays))
    if missing:
        raise DataError(f"{npz}: not a session dataset (no arrays {', '.join(missing)})")
    total = meta["total"]
    for k in sorted(_REQUIRED_ARRAYS):
        a = arrays[k]
        if a.shape != (total,) or a.dtype.kind not in "biuf":
            raise DataError(f"{npz}: array {k!r} must be numeric of shape ({total},); got "
                            f"{a.dtype} {a.shape}")
    for k in ("act_m", "force_n", "pivot_m"):
        v = arrays["valid"].astype(bool)
        if not np.isfinite(arrays[k][v]).all():
            raise DataError(f"{npz}: array {k!r} holds non-finite values at valid samples")
    return SessionDataset(arrays, meta)


def _is_dataset_meta(meta: Any) -> bool:
    """True for the metadata of a session dataset (``format``, or the keys of older ones)."""
    if not isinstance(meta, dict):
        return False
    if meta.get("format") == DATASET_FORMAT:
        return True
    return {"spec", "gaps", "fs", "period_s", "total", "received"} <= set(meta)


def is_session_dataset(path: str | os.PathLike) -> bool:
    """True when ``path`` (``.npz``, ``.json`` or their stem) is a recorded session dataset.

    Checks the metadata file only (both files must exist); never raises.
    """
    p = Path(path)
    npz, js = p.with_suffix(".npz"), p.with_suffix(".json")
    if not (npz.is_file() and js.is_file()):
        return False
    try:
        return _is_dataset_meta(_read_meta(js))
    except DataError:
        return False


def find_datasets(path: str | os.PathLike) -> list[Path]:
    """Stems of the session datasets at ``path``: a dataset file/stem, or a directory's.

    Returns
    -------
    list of Path
        Stems (``<dir>/<name>``, without suffix), sorted; empty when there are none.
    """
    p = Path(path)
    if p.is_dir():
        return sorted(js.with_suffix("") for js in p.glob("*.json")
                      if is_session_dataset(js))
    if is_session_dataset(p):
        return [p.with_suffix("")]
    return []


def session_mapping(ds: SessionDataset, truth: str = "auto", *, duration: float | None = None,
                    source: str = "session") -> Any:
    """The rig's true-stiffness mapping (004 App. B) for a recorded session.

    Runs :func:`plants.lever.mapping.true_stiffness_mapping` on the rig the session ran on
    (``meta["rig_description"]``, else the rig file ``meta["rig"]`` resolved with the session).

    Parameters
    ----------
    ds : SessionDataset
    truth : {"auto", "fgwn", "prbs"}
        Perturbation of the mapping trials (``"auto"``: the session's own).
    duration : float, optional
        Length of each time-invariant trial, s (default: the rig file's ``mapping.duration``,
        60 s, as the thesis).
    source : str
        Name used in error messages.

    Returns
    -------
    plants.lever.mapping.StiffnessMapping
        Callable: pivot position (m) -> stiffness (N/m).

    Raises
    ------
    DataError
        No mapping for the session's perturbation (multisine), or unknown ``truth``.
    """
    from plants.lever.mapping import true_stiffness_mapping
    from plants.lever.rig import Rig

    try:
        spec = SessionSpec.model_validate(ds.meta.get("spec"))
    except ValueError as exc:  # pydantic's ValidationError
        raise DataError(f"{source}: the dataset's session spec is invalid: "
                        f"{str(exc).splitlines()[0][:200]}") from None
    kind = spec.perturbation.signal if truth == "auto" else truth
    if kind not in ("fgwn", "prbs"):
        raise DataError(f"{source}: no true-stiffness mapping for perturbation {kind!r}; "
                        "use truth 'fgwn' or 'prbs'")
    try:
        if "rig_description" in ds.meta:
            rig = Rig.model_validate(ds.meta["rig_description"])
        else:
            rig = resolve_session(spec.model_copy(update={"rig": str(ds.meta.get("rig"))}),
                                  None, source).rig
    except ValueError as exc:  # pydantic's ValidationError, a rig file's located errors
        issues = getattr(exc, "issues", None)
        why = str(issues[0]) if issues else str(exc).splitlines()[0]
        raise DataError(f"{source}: the dataset's rig description is invalid: {why[:200]}"
                        ) from None
    return true_stiffness_mapping(rig, kind, duration=duration)


def session_realizations(
    path: str | os.PathLike,
    *,
    truth: str | Callable[[np.ndarray], np.ndarray] | None = "auto",
    decimate_by: int = 1,
    period: float | None = None,
    mapping_duration: float | None = None,
) -> Realizations:
    """Load a recorded session as estimator input (for ``impbench estimate`` and reports).

    Parameters
    ----------
    path : path
        Dataset (``.npz``/``.json`` or their stem) written by ``rig record`` / ``rig recover``.
    truth : {"auto", "fgwn", "prbs"}, callable or None
        Attach the rig's true-stiffness mapping (004 App. B, :func:`session_mapping`) run
        with this perturbation (``"auto"``: the session's own), or this callable
        (pivot m -> N/m); None: no truth.
    decimate_by : int
        Decimation factor (the thesis identifies at 100 Hz, 004 Sec. IV-B); inputs, outputs
        and schedule go through :func:`bench.signals.decimate` and lose their mean.
    period : float, optional
        Realization length, s, at the recorded rate (default: the pivot period).
    mapping_duration : float, optional
        Length of each mapping trial, s (default: the rig file's, 60 s).

    Returns
    -------
    Realizations
        u = actuator position (m), y = force (N), schedule = pivot position (m); shape (R, N)
        with N = period * fs / decimate_by.
    """
    from bench.signals import decimate

    if not isinstance(decimate_by, (int, np.integer)) or decimate_by < 1:
        raise DataError(f"decimate_by must be an integer >= 1; got {decimate_by!r}")
    ds = load_dataset(path)
    mapping = None
    if callable(truth):
        mapping = truth
    elif truth is not None:
        mapping = session_mapping(ds, truth, duration=mapping_duration, source=str(path))
    R = ds.realizations(rig_truth=mapping, period=period)
    if decimate_by > 1:
        u, y, s = (decimate(x, decimate_by) for x in (R.u, R.y, R.schedule))
        R = Realizations(
            u=u - u.mean(axis=1, keepdims=True), y=y - y.mean(axis=1, keepdims=True),
            fs=R.fs / decimate_by, schedule=s,
            truth=None if mapping is None else GroundTruth(
                K=mapping(s).mean(axis=0), K_r=mapping(s)),
            meta={**R.meta, "decimated_by": int(decimate_by)})
    return R
