"""Rig session files: validation, the rig they run on, and the setpoint plan.

A *session file* (YAML) names the rig description, the perturbation and its level, the pivot
schedule, the duration and the repetitions (see ``scenarios/rig-session.yaml``).
:func:`load_session` validates it like a scenario (errors name file, line and field),
:func:`resolve_session` loads the rig and fills in the defaults, :func:`plan_session` generates
the setpoint stream and :func:`session_config` the CONFIG message.

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
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import ScenarioError
from bench.signals import perturbation
from hil.protocol import SETPOINT_UNIT_UM, Config

__all__ = [
    "LimitsSpec",
    "PerturbationSpec",
    "PidSpec",
    "PivotSpec",
    "ResolvedSession",
    "SessionError",
    "SessionPlan",
    "SessionSpec",
    "load_session",
    "plan_session",
    "resolve_session",
    "session_config",
]


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
