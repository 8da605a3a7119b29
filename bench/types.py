"""The data types every package exchanges (one place, docs/architecture.md "Data types").

``estimators`` never imports ``plants`` and vice versa: they meet here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.errors import DataError

__all__ = [
    "CalibrationData",
    "CalibrationResult",
    "GroundTruth",
    "ImpedanceEstimate",
    "MuscleData",
    "ParameterSpec",
    "Realizations",
    "TrialWindow",
    "cut_record",
    "scalar_info",
]


def scalar_info(info: dict | None) -> dict:
    """The JSON-safe scalar entries of an ``info`` dict (str, bool, int, float, None and
    one-element numpy scalars), for records."""
    out = {}
    for k, v in (info or {}).items():
        if isinstance(v, (str, bool, int, float)) or v is None:
            out[str(k)] = v
        elif isinstance(v, np.generic) and v.size == 1:
            out[str(k)] = v.item()
    return out


def _finite_2d(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DataError(f"{name} must have shape (R, N); got an array with shape {arr.shape}.")
    if arr.shape[0] < 1 or arr.shape[1] < 2:
        raise DataError(f"{name} must hold at least 1 realization of 2 samples; got {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, n = np.argwhere(bad)[0]
        raise DataError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/inf); "
            f"first at realization {int(r)}, sample {int(n)}."
        )
    return arr


@dataclass(frozen=True)
class GroundTruth:
    """Known impedance of a simulated or mapped plant on the realization grid.

    Attributes
    ----------
    K : ndarray, shape (N,), Nm/rad (or N/m for the lever rig)
        True stiffness at each sample of one realization.
    B : ndarray, shape (N,), Nms/rad, optional
        True damping.
    I : float, kg m^2, optional
        True inertia.
    K_r : ndarray, shape (R, N), optional
        Per-realization stiffness when realizations differ (jitter); ``K`` is then
        the nominal (un-jittered) trajectory.
    """

    K: np.ndarray
    B: np.ndarray | None = None
    I: float | None = None
    K_r: np.ndarray | None = None


@dataclass(frozen=True)
class Realizations:
    """Ensemble data for impedance estimation.

    Attributes
    ----------
    u : ndarray, shape (R, N)
        Input (position perturbation), rad or m.
    y : ndarray, shape (R, N)
        Output (torque or force), Nm or N.
    fs : float
        Sampling rate, Hz.
    schedule : ndarray, shape (R, N), optional
        Scheduling variable (e.g. pivot position, EMG envelope, normalized K shape).
    truth : GroundTruth, optional
        Ground truth on the same grid.
    meta : dict
        Free-form provenance (plant parameters, seed, rig id, ...).
    """

    u: np.ndarray
    y: np.ndarray
    fs: float
    schedule: np.ndarray | None = None
    truth: GroundTruth | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        u = _finite_2d("u", self.u)
        y = _finite_2d("y", self.y)
        if u.shape != y.shape:
            raise DataError(f"u and y must have the same shape; got {u.shape} and {y.shape}.")
        if not (np.isfinite(self.fs) and self.fs > 0):
            raise DataError(f"fs must be a positive finite sampling rate in Hz; got {self.fs!r}.")
        object.__setattr__(self, "u", u)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "fs", float(self.fs))
        if self.schedule is not None:
            s = _finite_2d("schedule", self.schedule)
            if s.shape != u.shape:
                raise DataError(
                    f"schedule must have the shape of u {u.shape}; got {s.shape}."
                )
            object.__setattr__(self, "schedule", s)
        if self.truth is not None and np.shape(self.truth.K) != (u.shape[1],):
            raise DataError(
                f"truth.K must have shape (N,) = ({u.shape[1]},); got {np.shape(self.truth.K)}."
            )

    @property
    def R(self) -> int:
        """Number of realizations."""
        return self.u.shape[0]

    @property
    def N(self) -> int:
        """Samples per realization."""
        return self.u.shape[1]

    @property
    def dt(self) -> float:
        """Sampling interval, s."""
        return 1.0 / self.fs

    @property
    def t(self) -> np.ndarray:
        """Time within one realization, shape (N,), s."""
        return np.arange(self.N) / self.fs

    @classmethod
    def from_record(
        cls,
        u: np.ndarray,
        y: np.ndarray,
        fs: float,
        period: float,
        *,
        schedule: np.ndarray | None = None,
        truth: GroundTruth | None = None,
        meta: dict | None = None,
    ) -> Realizations:
        """Cut one long record into realizations of one period of the time variation.

        Parameters
        ----------
        u, y : ndarray, shape (T,)
            Input and output records.
        fs : float
            Sampling rate, Hz.
        period : float
            Period of the time variation, s. ``round(period * fs)`` samples per realization;
            a trailing partial period is dropped.
        schedule : ndarray, shape (T,), optional
        truth : GroundTruth, optional
            Already on the one-period grid.
        meta : dict, optional
            ``meta["contiguous"]`` is set to True: the rows are consecutive periods of one
            record, which edge-aware estimators may exploit.
        """
        return cls(
            u=cut_record(u, fs, period, name="u"),
            y=cut_record(y, fs, period, name="y"),
            fs=fs,
            schedule=None if schedule is None else cut_record(schedule, fs, period, "schedule"),
            truth=truth,
            meta={"contiguous": True, **(meta or {})},
        )

    def experimenter_view(self, *, schedule: bool) -> Realizations:
        """What an experimenter has: the data estimators are handed.

        A copy with ``u``, ``y``, ``fs``, the measured schedule when asked for, ``truth=None``
        and ``meta`` reduced to the contiguity flag ``{"contiguous": bool}`` (the rows are
        consecutive periods of one record). No ground truth, no plant parameters, no profile
        shapes or phases, no jitter draws.

        Parameters
        ----------
        schedule : bool
            Keep the measured scheduling variable (for methods that need one); dropped
            otherwise.

        Returns
        -------
        Realizations
            New arrays (an estimator that writes into them cannot change this object).
        """
        meta = {"contiguous": bool(self.meta.get("contiguous", False))}
        return Realizations(
            u=self.u.copy(), y=self.y.copy(), fs=self.fs,
            schedule=self.schedule.copy() if schedule and self.schedule is not None else None,
            truth=None, meta=meta,
        )

    def replace(self, **changes: Any) -> Realizations:
        """Return a copy with some fields replaced (validated again)."""
        kw = {
            "u": self.u, "y": self.y, "fs": self.fs, "schedule": self.schedule,
            "truth": self.truth, "meta": dict(self.meta),
        }
        kw.update(changes)
        return Realizations(**kw)


def cut_record(x: np.ndarray, fs: float, period: float, name: str = "x") -> np.ndarray:
    """Cut a 1-D record into rows of one period (the one place that does this).

    Returns
    -------
    ndarray, shape (R, round(period * fs))
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise DataError(f"{name} must be a 1-D record to cut; got shape {x.shape}.")
    if not (np.isfinite(period) and period > 0):
        raise DataError(f"period must be a positive number of seconds; got {period!r}.")
    n = round(period * fs)
    if n < 2:
        raise DataError(f"period {period} s at fs {fs} Hz gives fewer than 2 samples.")
    r = x.size // n
    if r < 1:
        raise DataError(
            f"{name} has {x.size} samples, shorter than one period ({n} samples = {period} s)."
        )
    return x[: r * n].reshape(r, n).copy()


@dataclass(frozen=True)
class ImpedanceEstimate:
    """Result of an impedance estimator on one :class:`Realizations`.

    Attributes
    ----------
    K : ndarray, shape (N,)
        Stiffness trajectory (NaN where not estimable), same unit as the truth.
    B : ndarray, shape (N,), optional
        Damping trajectory.
    I : ndarray, shape (N,) or float, optional
        Inertia.
    irf : ndarray, shape (N, L), optional
        Time-varying impulse response (input->output), output unit per input unit per s.
    lags : ndarray, shape (L,), optional
        IRF lags, s (negative = anti-causal).
    frf : ndarray, shape (N, F) complex, optional
        Time-varying frequency response.
    freqs : ndarray, shape (F,), optional
        FRF frequencies, Hz.
    info : dict
        Hyper-parameters actually used, VAF, warnings.
    """

    K: np.ndarray
    B: np.ndarray | None = None
    I: np.ndarray | float | None = None
    irf: np.ndarray | None = None
    lags: np.ndarray | None = None
    frf: np.ndarray | None = None
    freqs: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=float)
        if K.ndim != 1:
            raise DataError(f"ImpedanceEstimate.K must be 1-D; got shape {K.shape}.")
        object.__setattr__(self, "K", K)


@dataclass(frozen=True)
class ParameterSpec:
    """A named, bounded model parameter carried into calibration results."""

    name: str
    unit: str
    lower: float
    upper: float
    group: str | None = None


@dataclass(frozen=True)
class MuscleData:
    """EMG-driven modelling trial(s).

    Attributes
    ----------
    excitation : ndarray, shape (S, T, M_emg)
        Processed EMG excitations in [0, 1] for S trials, T samples, M_emg channels.
    angle : ndarray, shape (S, T, D), rad
    torque : ndarray, shape (S, T, D), Nm
        Reference joint torque.
    fs : float, Hz
    lmt : ndarray, shape (S, T, M), m, optional
        MTU lengths (else computed from a kinematics model).
    moment_arm : ndarray, shape (S, T, M, D), m, optional
    stiffness : ndarray, shape (S, T, D), Nm/rad, optional
        Reference joint stiffness.
    channels, muscles, dofs : list of str
    truth : dict, optional
        True parameters when synthetic.
    meta : dict
    """

    excitation: np.ndarray
    angle: np.ndarray
    torque: np.ndarray
    fs: float
    lmt: np.ndarray | None = None
    moment_arm: np.ndarray | None = None
    stiffness: np.ndarray | None = None
    channels: list = field(default_factory=list)
    muscles: list = field(default_factory=list)
    dofs: list = field(default_factory=list)
    truth: dict | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrialWindow:
    """A stretch of one recorded trial: ``sets[set].<array>[trial, start:stop]``.

    Attributes
    ----------
    set : int
        Index into :attr:`CalibrationData.sets`.
    trial : int
        Trial of that set (first axis of its arrays).
    start, stop : int
        Samples, ``0 <= start < stop <= T``.
    name : str
        How reports name it ("trial1 0.0-1.66 s").
    """

    set: int
    trial: int
    start: int
    stop: int
    name: str = ""


@dataclass(frozen=True)
class CalibrationData:
    """What a calibration plant gives one calibration unit (the calibration task's input).

    Attributes
    ----------
    model : object
        Forward model with the initial (generic or scaled) parameters, following the
        calibration model protocol of :mod:`estimators.calibration.objectives`.
    sets : tuple of MuscleData
        Recorded or simulated trial sets; the trials of one set share length and rate.
        Reference stiffness estimates (SDS) are computed per set before any window is cut.
    calibration : tuple of TrialWindow
        What the calibrators fit (000: one task cycle of a perturbed trial).
    held_out : tuple of TrialWindow
        What the calibrated model is scored on (blind test; may be empty).
    extra : dict of str to tuple of TrialWindow
        Other windows a test needs (``"unperturbed"``: 000's third test).
    space : dict
        Keyword arguments of ``CalibrationSpace.build`` (which parameters are calibrated,
        bounds, strength groups).
    truth : dict, optional
        True per-MTU parameters of the model's MTUs (``f_max`` N, ``l_opt`` m, ``l_ts`` m,
        ``shape``, ...; lists of length M) when synthetic.
    segment : int, optional
        Samples per scoring segment of the held-out windows (a task cycle); None: each
        window is one segment.
    skip_segments : int
        Leading segments of each held-out window left out of the scores (filter transients).
    stiffness_is_true : bool
        The sets' ``stiffness`` is the true joint stiffness (synthetic data).
    meta : dict
    """

    model: Any
    sets: tuple
    calibration: tuple
    held_out: tuple = ()
    extra: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)
    truth: dict | None = None
    segment: int | None = None
    skip_segments: int = 0
    stiffness_is_true: bool = False
    meta: dict = field(default_factory=dict)


@dataclass
class CalibrationResult:
    """Outcome of a calibration.

    Attributes
    ----------
    params : dict of str to float
        Fitted values, keyed by parameter name.
    specs : list of ParameterSpec
        Names, units and bounds of the calibrated parameters.
    history : ndarray, shape (n_iter,)
        Objective value per iteration / temperature.
    wall_time : float, s
    evaluations : int
        Forward-model evaluations.
    predicted : dict
        Predicted torque/stiffness arrays on calibration and held-out trials.
    info : dict
    """

    params: dict
    specs: list
    history: np.ndarray
    wall_time: float
    evaluations: int
    predicted: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
