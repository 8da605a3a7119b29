"""Rig session files: validation, the rig they run on, and the setpoint plan.

A *session file* (YAML) names the rig description, the perturbation and its level, the pivot
schedule, the duration and the repetitions (see ``scenarios/rig-session.yaml``).
:func:`load_session` validates it like a scenario (errors name file, line and field),
:func:`resolve_session` loads the rig and fills in the defaults, :func:`plan_session` generates
the setpoint stream and :func:`session_config` the CONFIG message.

Session files are untrusted input: they are read by the bench's one hardened YAML reader
(:func:`bench.yamlfile.read_yaml`: size, encoding, nesting, alias bombs, duplicate keys), every
problem is reported at once as ``FILE:LINE: field: message``, and every number that sizes work
or memory is bounded (:data:`MAX_DURATION_S`, :data:`MAX_SETTLE_S`, :data:`MAX_REPETITIONS`,
:data:`MAX_SESSION_SAMPLES`; sample rates 100-10 000 Hz). The ``name`` becomes the default
output file name, so it must be a path component (:func:`bench.yamlfile.check_name`).

Perturbations are the thesis's mechanical-experiment signals (004 Sec. IV-B): FGWN (white
noise, 2nd-order Butterworth low-pass at 5 Hz, scaled to a standard deviation) or PRBS
(switching interval 147 ms), both low-pass filtered with a 4th-order Butterworth at 40 Hz
(:func:`bench.signals.perturbation`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bench.yamlfile import (
    Collector,
    FileValidationError,
    Issue,
    YamlDocument,
    check_name,
    fmt_path,
    pydantic_issues,
    read_yaml,
)
from hil.protocol import SETPOINT_UNIT_UM, Config

__all__ = [
    "MAX_DURATION_S",
    "MAX_REPETITIONS",
    "MAX_SEED",
    "MAX_SESSION_SAMPLES",
    "MAX_SETTLE_S",
    "LimitsSpec",
    "PerturbationSpec",
    "PidSpec",
    "PivotSpec",
    "ResolvedSession",
    "SessionError",
    "SessionPlan",
    "SessionSpec",
    "check_session",
    "load_session",
    "plan_session",
    "resolve_session",
    "session_config",
]


class SessionError(RuntimeError):
    """A session could not run to completion (device refused, link lost, fault)."""


#: Longest recorded time per repetition, s (an hour; the thesis's trials last 50-200 s).
MAX_DURATION_S = 3600.0
#: Longest pivot settling before a repetition, s.
MAX_SETTLE_S = 60.0
#: Most repetitions of one session.
MAX_REPETITIONS = 1000
#: Largest seed (the generator takes any non-negative integer; the dataset stores int64).
MAX_SEED = 2**63 - 1
#: Most samples of one session, all repetitions and their settling included. While it records,
#: the host keeps about 200 bytes per sample (nine per-sample arrays of the assembler, the
#: setpoint plan, the dataset written at the end), so the limit bounds it to about 2 GB; it is
#: 2.2 h at the thesis's 2500 Hz (its trials are 50-200 s long).
MAX_SESSION_SAMPLES = 10_000_000
#: Sample rates the firmware and the virtual rig run at, Hz.
FS_RANGE = (100, 10_000)


# ----------------------------------------------------------------------------------------------
# Session file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PerturbationSpec(_Strict):
    """Perturbation of the lever end (004 Sec. IV-B)."""

    signal: Literal["fgwn", "prbs", "multisine"] = "fgwn"
    level_mm: float = Field(2.0, gt=0, le=50, description="standard deviation, mm")
    # Lower bounds: a filter's start-up transient, generated and discarded, lasts about
    # 4 / cut-off seconds (settle_samples), so a cut-off near 0 Hz would size the work.
    cutoff_hz: float = Field(5.0, ge=0.1, le=5000, description="FGWN low-pass cut-off, Hz")
    switch_interval_s: float = Field(0.147, gt=0, le=MAX_DURATION_S,
                                     description="PRBS switching interval, s")
    lowpass_hz: float = Field(40.0, ge=1, le=5000, description="final 4th-order low-pass, Hz")


class PivotSpec(_Strict):
    """Pivot (scheduling) trajectory: ``center + amplitude * shape(2 pi f t)``, mm."""

    shape: Literal["sine", "square", "constant"] = "sine"
    center_mm: float = Field(ge=-1e4, le=1e4)
    amplitude_mm: float = Field(0.0, ge=0, le=1e4)
    frequency_hz: float = Field(1.0, gt=0, le=50)


class PidSpec(_Strict):
    """Override of the rig file's integer pivot PID (``controller`` section of the rig)."""

    kp: int = Field(ge=0, le=65535)
    ki: int = Field(ge=0, le=65535)
    kd: int = Field(ge=0, le=65535)
    shift: int = Field(ge=0, le=24)


class LimitsSpec(_Strict):
    """Software travel limits sent to the firmware (inclusive), mm."""

    # +-10 m: the CONFIG message carries them as int32 micrometres.
    actuator_mm: tuple[float, float] = Field(description="[low, high], mm, within +-1e4")
    pivot_mm: tuple[float, float] = Field(description="[low, high], mm, within +-1e4")

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSpec:
        for name in ("actuator_mm", "pivot_mm"):
            lo, hi = getattr(self, name)
            if not (-1e4 <= lo <= 1e4 and -1e4 <= hi <= 1e4):
                raise ValueError(f"{name} must lie within [-10000, 10000] mm; got [{lo}, {hi}]")
            if not lo < hi:
                raise ValueError(f"{name} must be [low, high] with low < high; got [{lo}, {hi}]")
        return self


class SessionSpec(_Strict):
    """A rig session file (see ``scenarios/rig-session.yaml``).

    ``rig`` is a rig description file (``plants.lever`` schema) relative to the session file,
    or ``default`` for the shipped rig.  ``sample_rate_hz``, ``pid`` and ``limits`` default to
    the rig file's ``sampling.fs``, ``controller`` and travel (pivot switches, actuator stroke).
    ``name`` is the default output file name: a path component (letters, digits, ``_ . -``).
    """

    name: str = Field(min_length=1)
    rig: str = Field("default", min_length=1, max_length=4096)
    sample_rate_hz: int | None = Field(None, ge=FS_RANGE[0], le=FS_RANGE[1])
    duration_s: float = Field(gt=0, le=MAX_DURATION_S,
                              description="recorded time per repetition, s")
    settle_s: float = Field(0.5, ge=0, le=MAX_SETTLE_S,
                            description="pivot settling before each repetition, s")
    repetitions: int = Field(1, ge=1, le=MAX_REPETITIONS)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    perturbation: PerturbationSpec = PerturbationSpec()
    pivot: PivotSpec
    pid: PidSpec | None = None
    limits: LimitsSpec | None = None
    watchdog_ms: int = Field(50, ge=5, le=60000)

    # Where the spec was read from (file, field lines), so that the checks needing the rig
    # (resolve_session, plan_session) name the line too; None for specs built in code.
    _source: tuple[str, dict, tuple] | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _name_is_a_path_component(cls, value: str) -> str:
        problem = check_name(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> SessionSpec:
        # load_session reports these at their own lines (context {"located": True}).
        if not (info.context or {}).get("located"):
            for path, message in self.problems():
                raise ValueError(f"{fmt_path(path)}: {message}")
        return self

    def problems(self) -> list[tuple[tuple, str]]:
        """Checks across fields that need no rig: ``(field path, message)`` per problem."""
        out: list[tuple[tuple, str]] = []
        if self.pivot.shape != "constant":
            periods = self.duration_s * self.pivot.frequency_hz
            if abs(periods - round(periods)) > 1e-9 or round(periods) < 2:
                out.append((("duration_s",),
                            f"duration_s ({self.duration_s:g}) must hold a whole number (>= 2) "
                            f"of pivot periods (pivot.frequency_hz = "
                            f"{self.pivot.frequency_hz:g})"))
        if self.sample_rate_hz is not None:
            out.extend(_size_problems(self, float(self.sample_rate_hz)))
        return out

    @property
    def period_s(self) -> float:
        """Period of the time variation (pivot), s; the whole run when constant."""
        return self.duration_s if self.pivot.shape == "constant" else 1.0 / self.pivot.frequency_hz


#: The model of each section, for the valid keys of an unknown key's message.
_MODELS = {(): SessionSpec, ("perturbation",): PerturbationSpec, ("pivot",): PivotSpec,
           ("pid",): PidSpec, ("limits",): LimitsSpec}


def _size_problems(spec: SessionSpec, fs: float) -> list[tuple[tuple, str]]:
    """The session's size at ``fs`` Hz against :data:`MAX_SESSION_SAMPLES`."""
    per_rep = round(spec.settle_s * fs) + round(spec.duration_s * fs)
    total = spec.repetitions * per_rep
    if total > MAX_SESSION_SAMPLES:
        return [(("duration_s",),
                 f"repetitions x (settle_s + duration_s) x {fs:g} Hz = {total} samples; a "
                 f"session holds at most {MAX_SESSION_SAMPLES} (about 200 bytes each while "
                 "recording): record several sessions")]
    return []


def _error(spec: SessionSpec, source: str, problems: list[tuple[tuple, str]]
           ) -> FileValidationError:
    """A located error for ``problems`` of ``spec`` (lines when it was read from a file)."""
    if spec._source is not None:
        file, lines, prefix = spec._source
        col = Collector(file, lines, prefix)
        for path, message in problems:
            col.add(path, message)
        return FileValidationError(col.issues)
    return FileValidationError([Issue(source, None, fmt_path(path), message)
                                for path, message in problems])


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
        The rig file is invalid (its own located errors, and the session's ``rig`` line), or
        the session does not fit the rig (sample rate, pivot travel, filter cut-offs, size):
        ``FILE:LINE: field: message``.
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
    except FileValidationError as exc:
        err = _error(spec, source, [(("rig",), f"cannot load the rig file {str(rig_path)!r} "
                                               "(its own errors are listed under its name)")])
        raise FileValidationError([*err.issues, *exc.issues]) from None
    except (ValueError, OSError) as exc:
        raise _error(spec, source, [(("rig",), str(exc))]) from None
    problems: list[tuple[tuple, str]] = []
    fs = float(spec.sample_rate_hz or rig.sampling.fs)
    fs_field = ("sample_rate_hz",) if spec.sample_rate_hz else ("rig",)
    if not FS_RANGE[0] <= fs <= FS_RANGE[1]:
        problems.append((fs_field, f"the sample rate {fs:g} Hz (the rig's sampling.fs) must lie "
                                   f"in [{FS_RANGE[0]}, {FS_RANGE[1]}] Hz; set sample_rate_hz"))
        raise _error(spec, source, problems)
    div = fs / rig.controller.rate
    if abs(div - round(div)) > 1e-9 or round(div) < 1:
        problems.append((fs_field, f"{fs:g} Hz must be a whole multiple of the rig's "
                                   f"controller.rate ({rig.controller.rate:g} Hz)"))
    if spec.sample_rate_hz is None:
        problems.extend(_size_problems(spec, fs))
    p = spec.perturbation
    for key, value in (("lowpass_hz", p.lowpass_hz), ("cutoff_hz", p.cutoff_hz)):
        if value >= fs / 2 and (key == "lowpass_hz" or p.signal == "fgwn"):
            problems.append((("perturbation", key), f"{value:g} Hz must lie below the Nyquist "
                                                    f"frequency {fs / 2:g} Hz"))
    if p.signal == "prbs" and not 1.0 / fs <= p.switch_interval_s <= spec.duration_s:
        problems.append((("perturbation", "switch_interval_s"),
                         f"{p.switch_interval_s:g} s must lie between one sample ({1 / fs:g} s) "
                         f"and duration_s ({spec.duration_s:g} s)"))
    g = rig.geometry
    limits = spec.limits or LimitsSpec(
        actuator_mm=(-rig.actuator.stroke * 1e3, rig.actuator.stroke * 1e3),
        pivot_mm=(g.pivot_min * 1e3, g.pivot_max * 1e3))
    lo, hi = limits.pivot_mm
    pv = spec.pivot
    if pv.center_mm - pv.amplitude_mm < lo or pv.center_mm + pv.amplitude_mm > hi:
        problems.append((("pivot",), f"trajectory [{pv.center_mm - pv.amplitude_mm:g}, "
                                     f"{pv.center_mm + pv.amplitude_mm:g}] mm leaves the pivot "
                                     f"limits [{lo:g}, {hi:g}] mm"))
    if problems:
        raise _error(spec, source, problems)
    d = rig.model_dump()
    d["sampling"]["fs"] = fs
    if spec.pid is not None:
        d["controller"].update(spec.pid.model_dump())
    try:
        rig = type(rig).model_validate(d)
    except ValidationError as exc:  # the session's rate or PID does not suit the rig
        raise _error(spec, source, [(fs_field, "the rig does not accept the session's sample "
                                               f"rate or PID: {exc.errors()[0]['msg']}")]
                     ) from None
    return ResolvedSession(spec, rig, str(rig_path), fs, round(div), limits)


def load_session(path: str | os.PathLike, *, text: str | None = None,
                 doc: YamlDocument | None = None) -> SessionSpec:
    """Load and validate a session file.

    Parameters
    ----------
    path : path-like
        The session file (named in every message).
    text : str, optional
        Its text, when already read.
    doc : YamlDocument, optional
        Its parsed document, when already read (``impbench validate``).

    Raises
    ------
    ScenarioError
        A :class:`bench.yamlfile.FileValidationError` listing every problem as
        ``FILE:LINE: field: message`` (unreadable, too large, not UTF-8, invalid YAML,
        duplicate keys, unknown or missing keys, values out of range, a name that is not a
        path component, a session too large).
    """
    from bench.yamlfile import parse_yaml

    name = str(path)
    if doc is None:
        doc = parse_yaml(text, name) if text is not None else read_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise FileValidationError([Issue(name, doc.lines.get((), 1), "",
                                         "a session file must be a mapping of fields (under "
                                         "'session:')")])
    prefix: tuple = ()
    if "session" in data:
        extra = sorted(str(k) for k in data if k != "session")
        if extra:
            col = doc.collector()
            for k in extra:
                col.add((k,), "unknown key; a session file holds one 'session:' mapping")
            col.raise_if_any()
        data, prefix = data["session"], ("session",)
        if not isinstance(data, dict):
            raise FileValidationError([Issue(name, doc.lines.get(prefix, 1), "session",
                                             "must be a mapping of the session's fields")])
    col = doc.collector(prefix)
    try:
        spec = SessionSpec.model_validate(data, context={"located": True})
    except ValidationError as exc:
        pydantic_issues(exc, col, _MODELS)
        col.raise_if_any()
        raise  # pragma: no cover - a ValidationError always has errors
    for fpath, message in spec.problems():
        col.add(fpath, message)
    col.raise_if_any()
    spec._source = (name, doc.lines, prefix)
    return spec


def check_session(res: ResolvedSession) -> None:
    """Check a resolved session as :func:`plan_session` would, one repetition at a time.

    ``impbench validate`` calls it: it draws each repetition's perturbation and checks it
    against the actuator limits, holding one repetition in memory, not the whole plan.

    Raises
    ------
    ScenarioError
        The perturbation leaves the actuator limits (``perturbation.level_mm``'s line).
    """
    n_run, _ = _sizes(res)
    for rep in range(res.spec.repetitions):
        _check_level(res, _rep_perturbation(res, rep, n_run))


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


def _sizes(res: ResolvedSession) -> tuple[int, int]:
    """Samples per repetition recorded (``n_run``) and settling (``n_settle``)."""
    return round(res.spec.duration_s * res.fs), round(res.spec.settle_s * res.fs)


def _rep_perturbation(res: ResolvedSession, rep: int, n_run: int) -> np.ndarray:
    """Perturbation of repetition ``rep``, mm, shape (n_run,)."""
    from bench.errors import InvalidParameterError
    from bench.signals import perturbation

    spec, p = res.spec, res.spec.perturbation
    kw: dict[str, Any] = (
        {"cutoff": p.cutoff_hz} if p.signal == "fgwn"
        else {"switch_interval": p.switch_interval_s} if p.signal == "prbs" else {}
    )
    rng = np.random.default_rng([spec.seed, rep])
    try:
        return perturbation(p.signal, n_run, res.fs, rng, std=p.level_mm, lowpass=p.lowpass_hz,
                            **kw)
    except InvalidParameterError as exc:
        raise _error(spec, "session", [(("perturbation",), str(exc))]) from None


def _check_level(res: ResolvedSession, act_mm: np.ndarray) -> None:
    lo, hi = res.limits.actuator_mm
    if act_mm.min() < lo or act_mm.max() > hi:
        raise _error(res.spec, "session", [(
            ("perturbation", "level_mm"),
            f"the perturbation spans [{act_mm.min():.2f}, {act_mm.max():.2f}] mm, beyond the "
            f"actuator limits [{lo:g}, {hi:g}] mm")])


def plan_session(res: ResolvedSession) -> SessionPlan:
    """Generate the setpoint stream of a resolved session (deterministic in ``spec.seed``).

    Each repetition draws its own perturbation from ``np.random.default_rng([seed, rep])``.

    Raises
    ------
    ScenarioError
        The perturbation exceeds the actuator limits (field ``perturbation.level_mm``).
    """
    spec, fs = res.spec, res.fs
    n_run, n_settle = _sizes(res)
    t = np.arange(n_run) / fs
    piv_run = _pivot_shape(spec.pivot, t)
    piv_settle = np.full(n_settle, piv_run[0])
    scale = 1000.0 / SETPOINT_UNIT_UM  # mm -> wire units
    act = np.empty((spec.repetitions, n_settle + n_run), np.int16)
    piv = np.empty_like(act)
    piv[:] = np.round(np.concatenate([piv_settle, piv_run]) * scale).astype(np.int16)
    act[:, :n_settle] = 0
    for rep in range(spec.repetitions):
        u = _rep_perturbation(res, rep, n_run)
        _check_level(res, u)
        act[rep, n_settle:] = np.round(u * scale).astype(np.int16)
    return SessionPlan(actuator=act, pivot=piv, n_settle=n_settle, n_run=n_run, fs=fs)


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
