"""Rig sessions: session files, lossless recording, raw logs, recovery and datasets.

A *session file* (YAML) names the rig description, the perturbation and its level, the pivot
schedule, the duration and the repetitions.  :func:`record` drives a rig over a
:class:`hil.link.Link`: it streams setpoints ahead of the device within the credits the device
grants (flow control, ``hil/PROTOCOL.md`` Sec. 5), appends every received wire frame to an
append-only raw log (flushed and fsynced at least every ``LOG_SYNC_S``), and on completion
writes the dataset (``<out>.npz`` arrays + ``<out>.json`` metadata).  :func:`recover` rebuilds
the same dataset from a raw log alone after a host crash.  :meth:`SessionDataset.realizations`
is the view the estimators take: actuator position as input, force as output, pivot position
as scheduling variable, cut at the pivot period (``Realizations.from_record``).

Perturbations are the thesis's mechanical-experiment signals (004 Sec. IV-B): FGWN (white
noise, 2nd-order Butterworth low-pass at 5 Hz, scaled to a standard deviation) or PRBS
(switching interval 147 ms), both low-pass filtered with a 4th-order Butterworth at 40 Hz
(:func:`bench.signals.perturbation`).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import DataError, ScenarioError
from bench.signals import perturbation
from bench.types import GroundTruth, Realizations
from hil.link import FrameChecker, Link, LinkError, LinkStats
from hil.protocol import (
    MAX_SETPOINTS_PER_CHUNK,
    PROTOCOL_VERSION,
    SETPOINT_UNIT_UM,
    Ack,
    Config,
    DeviceHeartbeat,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    HelloRequest,
    MsgType,
    Nack,
    NackReason,
    Sample,
    SetpointChunk,
    Start,
    StatusFlag,
    Stop,
    cobs_decode,
    cobs_encode,
)

__all__ = [
    "LOG_SYNC_S",
    "RawLog",
    "SessionDataset",
    "SessionError",
    "SessionPlan",
    "SessionSpec",
    "load_dataset",
    "load_session",
    "plan_session",
    "read_raw_log",
    "record",
    "recover",
    "resolve_session",
    "session_config",
    "session_realizations",
]

#: Raw-log flush + fsync interval, s (the issue asks for at most 100 ms).
LOG_SYNC_S = 0.05
_LOG_MAGIC = b"IMPBENCH-RAWLOG v1\n"
_REC_META, _REC_RX, _REC_EVENT = 1, 2, 3
#: Tries of a request (HELLO_REQ, STOP, CONFIG, START; 0.3 s each) before giving up: a request
#: and its answer are lost together with probability ~0.3 at 1 % byte errors, so 12 tries
#: fail with probability ~5e-7.
_RETRIES = 12
#: Restarts (after an underrun, reset or reconnect) before a session gives up.
_MAX_RESTARTS = 50


class SessionError(RuntimeError):
    """A session could not run to completion (device refused, link lost, fault)."""


# ----------------------------------------------------------------------------------------------
# Session file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerturbationSpec(_Strict):
    """Perturbation of the lever end (004 Sec. IV-B)."""

    signal: Literal["fgwn", "prbs", "multisine"] = "fgwn"
    level_mm: float = Field(2.0, gt=0, le=50, description="standard deviation, mm")
    cutoff_hz: float = Field(5.0, gt=0, description="FGWN low-pass cut-off, Hz")
    switch_interval_s: float = Field(0.147, gt=0, description="PRBS switching interval, s")
    lowpass_hz: float = Field(40.0, gt=0, description="final 4th-order low-pass, Hz")


class PivotSpec(_Strict):
    """Pivot (scheduling) trajectory: ``center + amplitude * shape(2 pi f t)``, mm."""

    shape: Literal["sine", "square", "constant"] = "sine"
    center_mm: float
    amplitude_mm: float = Field(0.0, ge=0)
    frequency_hz: float = Field(1.0, gt=0, le=50)


class PidSpec(_Strict):
    """Override of the rig file's integer pivot PID (``controller`` section of the rig)."""

    kp: int = Field(ge=0, le=65535)
    ki: int = Field(ge=0, le=65535)
    kd: int = Field(ge=0, le=65535)
    shift: int = Field(ge=0, le=24)


class LimitsSpec(_Strict):
    """Software travel limits sent to the firmware (inclusive), mm."""

    actuator_mm: tuple[float, float]
    pivot_mm: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSpec:
        for name in ("actuator_mm", "pivot_mm"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must be [low, high] with low < high; got [{lo}, {hi}]")
        return self


class SessionSpec(_Strict):
    """A rig session file (see ``scenarios/rig-session.yaml``).

    ``rig`` is a rig description file (``plants.lever`` schema) relative to the session file,
    or ``default`` for the shipped rig.  ``sample_rate_hz``, ``pid`` and ``limits`` default to
    the rig file's ``sampling.fs``, ``controller`` and travel (pivot switches, actuator stroke).
    """

    name: str = Field(min_length=1)
    rig: str = Field("default", min_length=1)
    sample_rate_hz: int | None = Field(None, ge=100, le=10000)
    duration_s: float = Field(gt=0, description="recorded time per repetition, s")
    settle_s: float = Field(0.5, ge=0, description="pivot settling before each repetition, s")
    repetitions: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0)
    perturbation: PerturbationSpec = PerturbationSpec()
    pivot: PivotSpec
    pid: PidSpec | None = None
    limits: LimitsSpec | None = None
    watchdog_ms: int = Field(50, ge=5, le=60000)

    @model_validator(mode="after")
    def _whole_periods(self) -> SessionSpec:
        if self.pivot.shape != "constant":
            periods = self.duration_s * self.pivot.frequency_hz
            if abs(periods - round(periods)) > 1e-9 or round(periods) < 2:
                raise ValueError(
                    f"duration_s ({self.duration_s}) must hold a whole number (>= 2) of pivot "
                    f"periods (pivot.frequency_hz = {self.pivot.frequency_hz})"
                )
        return self

    @property
    def period_s(self) -> float:
        """Period of the time variation (pivot), s; the whole run when constant."""
        return self.duration_s if self.pivot.shape == "constant" else 1.0 / self.pivot.frequency_hz


@dataclass(frozen=True)
class ResolvedSession:
    """A session with its rig loaded and every default filled in.

    Attributes
    ----------
    spec : SessionSpec
    rig : plants.lever.rig.Rig
        The rig description, its ``sampling.fs`` set to the session's sample rate.
    rig_path : str
    fs : float
        Sample rate, Hz.
    control_divider : int
        Samples per PID update.
    limits : LimitsSpec
    """

    spec: SessionSpec
    rig: Any
    rig_path: str
    fs: float
    control_divider: int
    limits: LimitsSpec


def resolve_session(spec: SessionSpec, base: str | os.PathLike | None = None,
                    source: str = "session") -> ResolvedSession:
    """Load the rig of ``spec`` (relative to directory ``base``) and fill in the defaults.

    Raises
    ------
    ScenarioError
        The rig file is invalid, or the session does not fit the rig (names the field).
    """
    from plants.lever.rig import default_rig_path, load_rig

    if spec.rig == "default":
        rig_path = default_rig_path()
    else:
        rig_path = Path(spec.rig)
        if not rig_path.is_absolute() and base is not None:
            rig_path = Path(base) / rig_path
    try:
        rig = load_rig(rig_path)
    except (ValueError, OSError) as exc:
        raise ScenarioError(f"{source}: field 'rig': {exc}") from None
    fs = float(spec.sample_rate_hz or rig.sampling.fs)
    div = fs / rig.controller.rate
    if abs(div - round(div)) > 1e-9 or round(div) < 1:
        raise ScenarioError(
            f"{source}: field 'sample_rate_hz': {fs:g} Hz must be a whole multiple of the rig's "
            f"controller.rate ({rig.controller.rate:g} Hz)")
    g = rig.geometry
    limits = spec.limits or LimitsSpec(
        actuator_mm=(-rig.actuator.stroke * 1e3, rig.actuator.stroke * 1e3),
        pivot_mm=(g.pivot_min * 1e3, g.pivot_max * 1e3))
    lo, hi = limits.pivot_mm
    p = spec.pivot
    if p.center_mm - p.amplitude_mm < lo or p.center_mm + p.amplitude_mm > hi:
        raise ScenarioError(
            f"{source}: field 'pivot': trajectory [{p.center_mm - p.amplitude_mm:g}, "
            f"{p.center_mm + p.amplitude_mm:g}] mm leaves the pivot limits [{lo:g}, {hi:g}] mm")
    d = rig.model_dump()
    d["sampling"]["fs"] = fs
    if spec.pid is not None:
        d["controller"].update(spec.pid.model_dump())
    rig = type(rig).model_validate(d)
    return ResolvedSession(spec, rig, str(rig_path), fs, round(div), limits)


def _line_of(text: str, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at path ``loc`` in ``text``, if it can be found."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load_session(path: str | os.PathLike, *, text: str | None = None) -> SessionSpec:
    """Load and validate a session file.

    Raises
    ------
    ScenarioError
        Message names the file, the line and the field (``file:line: field: problem``).
    """
    path = Path(path)
    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read session file: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a session file must be a mapping of fields")
    if set(raw) == {"session"}:
        raw = raw["session"]
        prefix: tuple = ("session",)
    else:
        prefix = ()
    try:
        return SessionSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(text, prefix + loc)
        where = f"{path}:{line}" if line else str(path)
        fld = ".".join(str(x) for x in loc) or "(top level)"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ScenarioError(f"{where}: field '{fld}': {err['msg']}{more}") from None


# ----------------------------------------------------------------------------------------------
# Plan: the setpoint stream of a session


@dataclass(frozen=True)
class SessionPlan:
    """Setpoints of every repetition, in wire units, plus the index layout.

    Attributes
    ----------
    actuator, pivot : ndarray, shape (repetitions, n_settle + n_run), int16
        Setpoints in units of 10 um.
    n_settle, n_run : int
        Samples of pivot settling (zero perturbation) and of recording per repetition.
    fs : float
        Sample rate, Hz.
    """

    actuator: np.ndarray
    pivot: np.ndarray
    n_settle: int
    n_run: int
    fs: float

    @property
    def per_rep(self) -> int:
        """Samples per repetition (settle + run)."""
        return self.n_settle + self.n_run

    @property
    def total(self) -> int:
        """Samples of the whole session."""
        return self.actuator.size


def _pivot_shape(spec: PivotSpec, t: np.ndarray) -> np.ndarray:
    ph = 2 * np.pi * spec.frequency_hz * t
    if spec.shape == "sine":
        s = np.sin(ph)
    elif spec.shape == "square":
        s = np.where(np.sin(ph) >= 0, 1.0, -1.0)
    else:
        s = np.zeros_like(t)
    return spec.center_mm + spec.amplitude_mm * s


def plan_session(res: ResolvedSession) -> SessionPlan:
    """Generate the setpoint stream of a resolved session (deterministic in ``spec.seed``).

    Each repetition draws its own perturbation from ``np.random.default_rng([seed, rep])``.

    Raises
    ------
    ScenarioError
        The perturbation exceeds the actuator limits (field ``perturbation.level_mm``).
    """
    spec, fs = res.spec, res.fs
    n_run = round(spec.duration_s * fs)
    n_settle = round(spec.settle_s * fs)
    t = np.arange(n_run) / fs
    piv_run = _pivot_shape(spec.pivot, t)
    piv_settle = np.full(n_settle, piv_run[0])
    acts, pivs = [], []
    p = spec.perturbation
    kw: dict[str, Any] = (
        {"cutoff": p.cutoff_hz} if p.signal == "fgwn"
        else {"switch_interval": p.switch_interval_s} if p.signal == "prbs" else {}
    )
    for rep in range(spec.repetitions):
        rng = np.random.default_rng([spec.seed, rep])
        u = perturbation(p.signal, n_run, fs, rng, std=p.level_mm, lowpass=p.lowpass_hz, **kw)
        acts.append(np.concatenate([np.zeros(n_settle), u]))
        pivs.append(np.concatenate([piv_settle, piv_run]))
    act_mm, piv_mm = np.array(acts), np.array(pivs)
    lo, hi = res.limits.actuator_mm
    if act_mm.min() < lo or act_mm.max() > hi:
        raise ScenarioError(
            f"field 'perturbation.level_mm': the perturbation spans [{act_mm.min():.2f}, "
            f"{act_mm.max():.2f}] mm, beyond the actuator limits [{lo:g}, {hi:g}] mm"
        )
    scale = 1000.0 / SETPOINT_UNIT_UM  # mm -> wire units
    return SessionPlan(
        actuator=np.round(act_mm * scale).astype(np.int16),
        pivot=np.round(piv_mm * scale).astype(np.int16),
        n_settle=n_settle, n_run=n_run, fs=fs,
    )


def session_config(res: ResolvedSession) -> Config:
    """The CONFIG message of a resolved session."""
    c, lim = res.rig.controller, res.limits
    return Config(
        sample_rate_hz=int(res.fs), control_divider=res.control_divider,
        kp=c.kp, ki=c.ki, kd=c.kd, shift=c.shift, pwm_max=c.pwm_max,
        integral_limit=c.integral_limit,
        act_min_um=round(lim.actuator_mm[0] * 1000),
        act_max_um=round(lim.actuator_mm[1] * 1000),
        pivot_min_um=round(lim.pivot_mm[0] * 1000),
        pivot_max_um=round(lim.pivot_mm[1] * 1000),
        watchdog_ms=res.spec.watchdog_ms,
    )


# ----------------------------------------------------------------------------------------------
# Raw log


class RawLog:
    """Append-only raw log of a session: every received wire frame, with events and metadata.

    File layout: the magic line ``IMPBENCH-RAWLOG v1\\n`` then records, each
    ``COBS(kind:u8 | t_ns:u64 | body) 0x00`` — so a torn tail after a crash is one
    undecodable record that :func:`read_raw_log` skips.  ``kind`` 1 = metadata (JSON),
    2 = received frame (``segment:u16 | wire bytes``), 3 = event (JSON).  ``t_ns`` is
    ``time.monotonic_ns()`` of arrival.

    A background thread flushes the file to the OS and fsyncs it every ``sync_s`` seconds, so
    a killed host loses at most the last ``sync_s`` of frames and the link's reader thread
    never waits on the disk (an fsync can take tens of ms on a busy machine — longer than the
    setpoint buffer lasts at 2500 Hz).
    """

    def __init__(self, path: str | os.PathLike, *, sync_s: float = LOG_SYNC_S) -> None:
        self.path = Path(path)
        self.sync_s = sync_s
        try:
            self._f = open(self.path, "xb")
        except FileExistsError:
            raise SessionError(f"{self.path} exists; a raw log is never overwritten "
                               "(choose another output name)") from None
        self._lock = threading.Lock()
        self._f.write(_LOG_MAGIC)
        self.records = 0
        self.syncs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._syncer, name="rawlog-sync", daemon=True)
        self._thread.start()

    def _append(self, kind: int, body: bytes, t_ns: int | None = None) -> None:
        t_ns = time.monotonic_ns() if t_ns is None else t_ns
        rec = cobs_encode(struct.pack("<BQ", kind, t_ns) + body) + b"\x00"
        with self._lock:
            if self._f.closed:
                return
            self._f.write(rec)
            self.records += 1

    def sync(self) -> None:
        """Flush to the OS (under the lock) and fsync (outside it)."""
        with self._lock:
            if self._f.closed:
                return
            self._f.flush()
            fd = os.dup(self._f.fileno())
        try:
            os.fsync(fd)
            self.syncs += 1
        finally:
            os.close(fd)

    def _syncer(self) -> None:
        while not self._stop.wait(self.sync_s):
            self.sync()

    def meta(self, obj: dict) -> None:
        """Append a metadata record (JSON)."""
        self._append(_REC_META, json.dumps(obj, default=str).encode())

    def event(self, kind: str, info: dict) -> None:
        """Append an event record (JSON ``{"event": kind, ...}``)."""
        self._append(_REC_EVENT, json.dumps({"event": kind, **info}, default=str).encode())

    def rx(self, wire: bytes, t_host: float, segment: int) -> None:
        """Append one received wire frame (the link's ``on_wire`` sink)."""
        self._append(_REC_RX, struct.pack("<H", segment & 0xFFFF) + wire,
                     int(t_host * 1e9))

    def close(self) -> None:
        """Stop the sync thread, flush, fsync and close."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.sync()
        with self._lock:
            if not self._f.closed:
                self._f.close()


def read_raw_log(path: str | os.PathLike) -> tuple[list[dict], list[tuple], list[dict], int]:
    """Parse a raw log.

    Returns
    -------
    metas : list of dict
    rx : list of (t_host s, segment, wire bytes)
    events : list of dict
    torn : int
        Records that could not be decoded (a crash's torn tail).

    Raises
    ------
    DataError
        Not a raw log (magic line missing).
    """
    data = Path(path).read_bytes()
    if not data.startswith(_LOG_MAGIC):
        raise DataError(f"{path}: not an impbench raw log (no {_LOG_MAGIC.strip()!r} header)")
    metas, rx, events, torn = [], [], [], 0
    parts = data[len(_LOG_MAGIC):].split(b"\x00")
    complete, tail = parts[:-1], parts[-1]
    torn += bool(tail)
    for part in complete:
        try:
            rec = cobs_decode(part)
            kind, t_ns = struct.unpack_from("<BQ", rec)
        except (ValueError, struct.error):
            torn += 1
            continue
        body = rec[9:]
        if kind == _REC_RX and len(body) >= 2:
            rx.append((t_ns * 1e-9, struct.unpack_from("<H", body)[0], bytes(body[2:])))
        elif kind in (_REC_META, _REC_EVENT):
            try:
                obj = json.loads(body)
            except ValueError:
                torn += 1
                continue
            (metas if kind == _REC_META else events).append(obj)
        else:
            torn += 1
    return metas, rx, events, torn


# ----------------------------------------------------------------------------------------------
# Assembling samples into a dataset


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

    def realizations(self, *, rig_truth: Callable[[np.ndarray], np.ndarray] | None = None
                     ) -> Realizations:
        """Estimator view: u = actuator position (m), y = force (N), schedule = pivot (m).

        Each repetition's recorded part is cut at the pivot period; periods holding any
        missing sample, or a restart of the device after an underrun/reset, are dropped
        (counted in ``meta["dropped_periods"]``), never filled.

        Parameters
        ----------
        rig_truth : callable, optional
            Pivot position (m) -> true stiffness (N/m); when given, ``truth.K`` is the mean
            over realizations of the mapping of the measured pivot, ``truth.K_r`` per row.

        Raises
        ------
        DataError
            No complete period was recorded.
        """
        a, m = self.arrays, self.meta
        fs, period = float(m["fs"]), float(m["period_s"])
        n = round(period * fs)
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
        "name": spec.name, "rig": res.rig_path, "spec": spec.model_dump(mode="json"),
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
        **extra,
    }
    return SessionDataset(arrays, meta)


def load_dataset(path: str | os.PathLike) -> SessionDataset:
    """Load a dataset written by :meth:`SessionDataset.save` (either file's path or the stem)."""
    p = Path(path)
    npz, js = p.with_suffix(".npz"), p.with_suffix(".json")
    if not npz.exists() or not js.exists():
        raise DataError(f"{p}: session dataset needs both {npz.name} and {js.name}")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    return SessionDataset(arrays, json.loads(js.read_text()))


def session_realizations(
    path: str | os.PathLike,
    *,
    truth: str | None = "auto",
    decimate_by: int = 1,
) -> Realizations:
    """Load a recorded session as estimator input (for ``impbench estimate`` and scenarios).

    Parameters
    ----------
    path : path
        Dataset (``.npz``/``.json`` or their stem) written by ``rig record`` / ``rig recover``.
    truth : {"auto", "fgwn", "prbs"} or None
        Attach the rig's true-stiffness mapping (004 App. B, ``plants.lever.mapping``) run
        with this perturbation (``"auto"``: the session's own); None: no truth.
    decimate_by : int
        Decimation factor (the thesis identifies at 100 Hz, 004 Sec. IV-B); inputs, outputs
        and schedule go through :func:`bench.signals.decimate` and lose their mean.

    Returns
    -------
    Realizations
        u = actuator position (m), y = force (N), schedule = pivot position (m).
    """
    from bench.signals import decimate

    ds = load_dataset(path)
    mapping = None
    if truth is not None:
        from plants.lever.mapping import true_stiffness_mapping

        spec = SessionSpec.model_validate(ds.meta["spec"])
        res = resolve_session(spec.model_copy(update={"rig": ds.meta["rig"]}), None,
                              str(path))
        kind = spec.perturbation.signal if truth == "auto" else truth
        if kind not in ("fgwn", "prbs"):
            raise DataError(f"no true-stiffness mapping for perturbation {kind!r}; "
                            "pass truth='fgwn' or 'prbs'")
        mapping = true_stiffness_mapping(res.rig, kind)
    R = ds.realizations(rig_truth=mapping)
    if decimate_by > 1:
        u, y, s = (decimate(x, decimate_by) for x in (R.u, R.y, R.schedule))
        R = Realizations(
            u=u - u.mean(axis=1, keepdims=True), y=y - y.mean(axis=1, keepdims=True),
            fs=R.fs / decimate_by, schedule=s,
            truth=None if mapping is None else GroundTruth(
                K=mapping(s).mean(axis=0), K_r=mapping(s)),
            meta={**R.meta, "decimated_by": decimate_by})
    return R


# ----------------------------------------------------------------------------------------------
# Recording


@dataclass
class _Flow:
    """Host side of the credit window (PROTOCOL.md Sec. 5)."""

    capacity: int
    end: int = 0
    sent: int = 0  # next setpoint index to send
    write: int = 0  # device's write index (setpoints stored)
    read: int = 0  # device's read index (setpoints consumed)
    last_progress: float = 0.0

    def update(self, write: int, read: int, now: float) -> None:
        if write > self.write:
            self.last_progress = now
        self.write = max(self.write, write)
        self.read = max(self.read, read)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("[bold]rig"), BarColumn(), TextColumn("{task.completed}/"
                          "{task.total}"), TextColumn("{task.fields[info]}"),
                          TimeRemainingColumn())
        self.p.start()
        self.task = self.p.add_task("rig", total=total, info="")

    def update(self, done: int, info: str) -> None:
        if self.enabled:
            self.p.update(self.task, completed=done, info=info)

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def record(
    spec_path: str | os.PathLike,
    port: str,
    *,
    out: str | os.PathLike | None = None,
    baudrate: int = 1_000_000,
    progress: bool = False,
    reconnect_timeout: float = 5.0,
    silence_timeout: float = 2.0,
    on_sample: Callable[[int], None] | None = None,
) -> SessionDataset:
    """Run the session of ``spec_path`` on the rig at ``port`` and write its dataset.

    Parameters
    ----------
    spec_path : path
        Session file.
    port : str
        pyserial URL of the rig (port, pty path, ``socket://``).
    out : path, optional
        Output stem; default ``<spec dir>/<name>`` -> ``.rawlog``, ``.npz``, ``.json``.
    progress : bool
        Show a rich progress bar (sample rate, gaps, faults).
    reconnect_timeout : float
        How long to wait for a lost port to come back, s.
    silence_timeout : float
        Abort when nothing valid arrives for this long while connected, s.
    on_sample : callable(int), optional
        Called with the number of samples received so far (tests, UIs).

    Returns
    -------
    SessionDataset
        Also saved to ``<out>.npz`` / ``<out>.json``; the raw log is ``<out>.rawlog``.

    Raises
    ------
    ScenarioError
        Invalid session file.
    SessionError
        The device refused the session (NACK, travel limit) or the link was lost for good.
    """
    spec = load_session(spec_path)
    res = resolve_session(spec, Path(spec_path).parent, str(spec_path))
    plan = plan_session(res)
    out = Path(out) if out is not None else Path(spec_path).with_name(spec.name)
    log = RawLog(out.with_suffix(".rawlog"))
    spec_dict = spec.model_dump(mode="json")
    log.meta({"kind": "session", "spec": spec_dict, "spec_path": str(spec_path),
              "spec_dir": str(Path(spec_path).parent.resolve()), "rig_path": res.rig_path,
              "port": port, "started_wall": time.time(), "protocol_version": PROTOCOL_VERSION})
    link = Link(port, baudrate=baudrate, on_wire=log.rx, on_event=log.event)
    stats = link.stats
    asm = _Assembler(plan.total)
    bar = _Progress(plan.total, progress)
    t_start = time.time()
    ok = False
    try:
        link.open()
        _run(link, res, plan, asm, log, bar, reconnect_timeout, silence_timeout, on_sample)
        ok = True
    finally:
        bar.close()
        with contextlib.suppress(LinkError):
            if link.connected:
                link.send(Stop())
        link.close()
        log.event("done", {"ok": ok, "wall_s": time.time() - t_start,
                           "restarts": asm.restarts})
        log.close()
    ds = _build_dataset(asm, plan, res, {
        "raw_log": str(out.with_suffix(".rawlog")), "link": stats.to_dict(),
        "wall": {"started": t_start, "ended": time.time()}, "recovered": False,
    })
    ds.save(out)
    return ds


def _handshake(link: Link, res: ResolvedSession, keep: Callable) -> Hello:
    r = link.request(HelloRequest(), [MsgType.HELLO], retries=_RETRIES, keep=keep)
    hello: Hello = r.msg  # type: ignore[assignment]
    if hello.protocol_version != PROTOCOL_VERSION:
        raise SessionError(f"device speaks protocol v{hello.protocol_version}; "
                           f"host speaks v{PROTOCOL_VERSION}")
    keep(r)
    # STOP first: after a reconnect the device may still be running the old START.
    link.request(Stop(), [MsgType.ACK, MsgType.NACK], keep=keep, retries=_RETRIES)
    r = link.request(session_config(res), [MsgType.ACK, MsgType.NACK], keep=keep, retries=_RETRIES)
    if isinstance(r.msg, Nack):
        raise SessionError(f"device refused CONFIG: {NackReason(r.msg.reason).name}")
    return hello


def _run(link: Link, res: ResolvedSession, plan: SessionPlan, asm: _Assembler, log: RawLog,
         bar: _Progress, reconnect_timeout: float, silence_timeout: float,
         on_sample: Callable[[int], None] | None) -> None:
    act, piv = plan.actuator.ravel(), plan.pivot.ravel()
    pending: list = []

    def keep(r: Any) -> None:
        pending.append(r)

    hello = _handshake(link, res, keep)
    segment = link.segment
    flow = _Flow(capacity=hello.buffer_capacity)
    t0 = time.monotonic()
    last_hb = last_rx = last_ui = t0
    rate_mark = (t0, 0)
    rate = 0.0
    for rep in range(plan.actuator.shape[0]):
        begin, end = rep * plan.per_rep, (rep + 1) * plan.per_rep
        flow.end = end
        resume = begin
        while True:
            # (Re)start the device at the first sample still missing in this repetition.
            flow.sent = flow.write = flow.read = resume
            flow.last_progress = time.monotonic()
            for attempt in range(2):
                r = link.request(Start(resume, end - resume), [MsgType.ACK, MsgType.NACK],
                                 keep=keep, retries=_RETRIES)
                if not isinstance(r.msg, Nack):
                    break
                if attempt or r.msg.reason != NackReason.BAD_STATE:
                    raise SessionError(
                        f"device refused START: {NackReason(r.msg.reason).name}")
                # The device lost its configuration (an unnoticed reset) or still runs an
                # old START: handshake again, then retry once.
                log.event("rehandshake", {"segment": link.segment, "index": resume})
                hello = _handshake(link, res, keep)
                flow.capacity = hello.buffer_capacity
            restart = underrun = dev_ran = False
            last_sample = time.monotonic()
            while True:
                now = time.monotonic()
                batch = pending + link.drain()
                pending.clear()
                if not batch:
                    r = link.get(0.002)
                    batch = [r] if r is not None else []
                for r in batch:
                    last_rx = now
                    m = r.msg
                    asm.add(m, r.t_host, r.segment)
                    if isinstance(m, Sample):
                        last_sample = now
                    if r.segment != segment:
                        continue  # an older segment's credits mean nothing now
                    if isinstance(m, (Ack, DeviceHeartbeat)):
                        flow.update(m.write_index, m.read_index, now)
                    if isinstance(m, Sample):
                        dev_ran = True
                        # SAMPLE i executed setpoint i: its slot is free again (a credit
                        # as soon as the sample arrives, not only at the next heartbeat).
                        if m.index + 1 > flow.read and m.index < end:
                            flow.read = m.index + 1
                            flow.write = max(flow.write, flow.read)
                    elif isinstance(m, DeviceHeartbeat):
                        # The run may have ended early with its FAULT frame lost: the
                        # heartbeat's sticky flags still say why.
                        if m.flags & StatusFlag.RUNNING:
                            dev_ran = True
                        elif dev_ran and m.read_index < end:
                            if m.flags & (StatusFlag.WATCHDOG | StatusFlag.ESTOP):
                                raise SessionError(
                                    f"device stopped at sample {m.read_index} "
                                    f"({StatusFlag(m.flags & 0x30).name})")
                            underrun = True
                    elif isinstance(m, Nack) and m.acked_type == MsgType.SETPOINTS:
                        if m.reason == NackReason.LIMIT:
                            raise SessionError(
                                f"device refused setpoints beyond its travel limits "
                                f"(at index {m.expected_index}); nothing was executed")
                        flow.sent = max(m.expected_index, flow.read)
                        flow.write = m.expected_index
                        flow.last_progress = now
                    elif isinstance(m, Fault) and m.code == FaultCode.UNDERRUN:
                        underrun = True
                    elif isinstance(m, Fault) and m.code in (FaultCode.LIMIT, FaultCode.ESTOP,
                                                             FaultCode.WATCHDOG,
                                                             FaultCode.TRAVEL):
                        raise SessionError(f"device FAULT {FaultCode(m.code).name} at sample "
                                           f"{m.index} (detail {m.detail})")
                    elif isinstance(m, Sample) and on_sample is not None:
                        on_sample(asm.received)
                # Link lost, device reset, or device silent: wait for the port, handshake
                # again, and resume at the first missing sample (a new segment after a reset
                # or reconnect; a restart either way).
                lost = link.segment != segment or not link.connected
                silent = now - last_rx > silence_timeout
                if lost or silent:
                    if lost and not link.wait_connected(reconnect_timeout):
                        raise SessionError(f"rig at {link.url!r} did not come back within "
                                           f"{reconnect_timeout} s")
                    log.event("silence" if silent and not lost else "lost",
                              {"segment": link.segment, "t": now - t0})
                    time.sleep(0.05)
                    try:
                        hello = _handshake(link, res, keep)
                    except LinkError as exc:
                        raise SessionError(f"rig at {link.url!r} stopped answering: {exc}"
                                           ) from exc
                    flow.capacity = hello.buffer_capacity
                    segment = link.segment
                    last_rx = time.monotonic()
                    missing = np.flatnonzero(~asm.valid[begin:end])
                    resume = begin + int(missing[0]) if missing.size else end
                    log.event("resume", {"segment": segment, "index": resume,
                                         "why": "lost" if lost else "silence"})
                    restart = resume < end
                    break
                # Go-back-N: setpoints sent but not acknowledged in time are sent again.
                if flow.sent > flow.write and now - flow.last_progress > 0.1:
                    flow.sent = max(flow.write, flow.read)
                    flow.last_progress = now
                try:
                    while flow.sent < flow.end and flow.sent < flow.read + flow.capacity:
                        k = min(MAX_SETPOINTS_PER_CHUNK, flow.end - flow.sent,
                                flow.read + flow.capacity - flow.sent)
                        s = flow.sent
                        link.send(SetpointChunk(s, tuple(act[s:s + k].tolist()),
                                                tuple(piv[s:s + k].tolist())))
                        flow.sent += k
                        last_hb = now
                    if now - last_hb > 0.02:
                        link.send(Heartbeat())
                        last_hb = now
                except LinkError:
                    continue
                got = asm.received
                if now - rate_mark[0] >= 0.5:
                    rate = (got - rate_mark[1]) / (now - rate_mark[0])
                    rate_mark = (now, got)
                if now - last_ui > 0.1:
                    bar.update(got, f"{rate:7.0f} S/s  gaps {asm.gaps_so_far}  "
                               f"faults {len(asm.faults)}  segment {segment}")
                    last_ui = now
                # Repetition done: every sample arrived, or the device consumed every
                # setpoint and the stream has been quiet for a while (the rest are gaps).
                if flow.read >= end and (asm.valid[begin:end].all()
                                         or now - last_sample > 0.3):
                    break
                if underrun and now - last_sample > 0.05:
                    missing = np.flatnonzero(~asm.valid[begin:end])
                    resume = begin + int(missing[0]) if missing.size else end
                    log.event("resume", {"segment": segment, "index": resume,
                                         "why": "underrun"})
                    restart = resume < end
                    break
            if not restart:
                break
            asm.restarts.append(resume)
            if len(asm.restarts) > _MAX_RESTARTS:
                raise SessionError(f"gave up after {_MAX_RESTARTS} restarts of the device "
                                   f"(underruns/resets); last at sample {resume}")
    bar.update(asm.received, f"done, {plan.total - asm.received} missing")


# ----------------------------------------------------------------------------------------------
# Recovery


def recover(log_path: str | os.PathLike, *, out: str | os.PathLike | None = None
            ) -> SessionDataset:
    """Rebuild a session dataset from its raw log alone (after a host crash).

    Every logged frame passes through the same checks as live (:class:`hil.link.FrameChecker`)
    and the same assembler; the setpoints are regenerated from the logged session spec.

    Returns
    -------
    SessionDataset
        ``meta["recovered"]`` is True; saved to ``<out>`` (default: the log's stem).
    """
    metas, rx, events, torn = read_raw_log(log_path)
    sess = [m for m in metas if m.get("kind") == "session"]
    if not sess:
        raise DataError(f"{log_path}: raw log has no session metadata record")
    spec = SessionSpec.model_validate(sess[0]["spec"])
    res = resolve_session(spec, sess[0].get("spec_dir"), str(log_path))
    plan = plan_session(res)
    asm = _Assembler(plan.total)
    stats = LinkStats()
    checker = FrameChecker(stats)
    seg = None
    for t_host, segment, wire in rx:
        if segment != seg:
            checker.restart()
            seg = segment
        frame = checker.check(wire)
        if frame is not None:
            checker.reset_seen = False
            asm.add(frame.msg, t_host, segment)
    asm.restarts = [int(e["index"]) for e in events if e.get("event") == "resume"]
    out = Path(out) if out is not None else Path(log_path).with_suffix("")
    ds = _build_dataset(asm, plan, res, {
        "raw_log": str(log_path), "link": stats.to_dict(), "recovered": True,
        "torn_records": torn, "events": events,
        "completed": any(e.get("event") == "done" for e in events),
    })
    ds.save(out)
    return ds
