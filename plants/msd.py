"""Time-varying mass-spring-damper joint under a stiff position-controlled manipulator.

The thesis simulation plant (004 Sec. III-A/B, Fig. 2a, Table II). The joint has admittance
``H_joint(s, t) = 1 / (I s^2 + B(t) s + K(t))`` (004:Eq.5), i.e. ``T = I th'' + B(t) th' +
K(t) th`` (004:Eq.4); the manipulator drives the joint with torque ``T = Kc (u - th)`` so that
``y = Kc / (1 + Kc H_joint) u + v`` (004:Eq.1-2), which for ``Kc >> 0`` approaches the joint
impedance ``y = u / H_joint + v`` (004:Eq.3). Eliminating ``T`` gives the closed loop

    I th'' + B(t) th' + (K(t) + Kc) th = Kc u,        T = Kc (u - th).

With the thesis values (``Kc = 20000``, ``I = 0.02``) its poles sit near 160 Hz with damping
ratio ~0.05, far too stiff for explicit integration at the 1 kHz step. We integrate it
*exactly* per step: ``K`` and ``B`` are held over each 1 ms step (their value at the step start)
and ``u`` is linearly interpolated between samples (first-order hold), so the state update is
``x[n+1] = Phi[n] x[n] + Gamma0[n] u[n] + Gamma1[n] (u[n+1] - u[n])`` with closed-form 2x2
matrix exponentials (:func:`discretize_loop`). The linear recurrence is evaluated in blocks:
every block is first run from a zero state (vectorized across blocks), the block-boundary
states follow from a short sequential recursion, and a second vectorized sweep fills in the
states, so 400 s at 1 kHz take about 0.2-0.3 s (``benchmarks/msd.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy import signal as sps

from bench.base import Plant
from bench.errors import InvalidParameterError
from bench.params import ArrayLike, Interval, Options
from bench.signals import KIND_OPTIONS, KINDS, decimate, measurement_noise, perturbation
from bench.types import GroundTruth, Realizations

__all__ = [
    "PROFILES",
    "MSDPlant",
    "closed_loop_response",
    "cycle_boundaries",
    "discretize_loop",
    "profile_shape",
    "warp_time",
]

#: Named time-variation shapes (normalized to [0, 1]); see :func:`profile_shape`.
PROFILES = ("sine", "square", "triangle")

#: Pre-/post-roll simulated around the record and discarded (loop transient decays with
#: exp(-B t / 2I), about exp(-27) after 0.5 s for the thesis values; decimation-filter edges).
_ROLL_S = 0.5


# --------------------------------------------------------------------------- profiles


def profile_shape(profile: str | Any, phase: np.ndarray) -> np.ndarray:
    """Normalized time-variation shape ``s(phase)`` in [0, 1].

    The three named shapes share the phase of ``sin(2 pi phase)``:

    * ``"sine"``: ``(1 + sin(2 pi phase)) / 2``;
    * ``"square"``: 1 for ``phase mod 1 < 0.5``, else 0 (high first half period);
    * ``"triangle"``: 0.5 at phase 0, 1 at 0.25, 0 at 0.75 (linear in between).

    A custom profile is an array of ``L`` values in [0, 1] at phases ``j / L`` (one period),
    linearly interpolated and repeated periodically.

    Parameters
    ----------
    profile : {"sine", "square", "triangle"} or array-like, shape (L,)
    phase : ndarray
        Time in periods (any shape); only ``phase mod 1`` matters.

    Returns
    -------
    ndarray, shape of ``phase``
    """
    ph = np.mod(np.asarray(phase, dtype=float), 1.0)
    if isinstance(profile, str):
        if profile == "sine":
            return 0.5 * (1.0 + np.sin(2.0 * np.pi * ph))
        if profile == "square":
            return (ph < 0.5).astype(float)
        if profile == "triangle":
            return 1.0 - np.abs(2.0 * np.mod(ph + 0.25, 1.0) - 1.0)
        raise InvalidParameterError(
            f"profile must be one of {PROFILES} or an array; got {profile!r}."
        )
    v = np.asarray(profile, dtype=float)
    grid = np.arange(v.size) / v.size
    return np.interp(ph, grid, v, period=1.0)


def cycle_boundaries(
    period: float, scatter: float, z_forward: np.ndarray, z_backward: np.ndarray
) -> np.ndarray:
    """Start times of cycles whose durations scatter around the nominal period.

    Cycle ``c`` lasts ``period * clip(1 + scatter z_c, 0.5, 1.5)``; cycle 0 starts at
    ``t = 0`` and the cycles are contiguous (each starts where the previous ends).

    Parameters
    ----------
    period : float
        Nominal period of the time variation, s.
    scatter : float
        Relative standard deviation of a cycle's duration (fraction of ``period``).
    z_forward : ndarray, shape (F,)
        Standard-normal draws of cycles 0 .. F-1 (forward from ``t = 0``).
    z_backward : ndarray, shape (P,)
        Standard-normal draws of cycles -1 .. -P (backward from ``t = 0``).

    Returns
    -------
    ndarray, shape (P + F + 1,)
        Increasing boundaries ``b_{-P}, ..., b_0 = 0, ..., b_F``, s; cycle ``c`` spans
        ``[b_c, b_{c+1})``. With ``F`` cycles the boundaries reach at least ``F period / 2``.
    """
    d_f = period * np.clip(1.0 + scatter * np.asarray(z_forward, dtype=float), 0.5, 1.5)
    d_b = period * np.clip(1.0 + scatter * np.asarray(z_backward, dtype=float), 0.5, 1.5)
    fwd = np.concatenate([[0.0], np.cumsum(d_f)])
    bwd = -np.cumsum(d_b)[::-1]
    return np.concatenate([bwd, fwd])


def warp_time(t: np.ndarray, boundaries: np.ndarray, period: float) -> np.ndarray:
    """Piecewise-linear time warp: the nominal time at which the variation's phase is.

    Maps each cycle ``[b_c, b_{c+1})`` of :func:`cycle_boundaries` linearly onto
    ``[c period, (c + 1) period)``, so ``profile_shape(profile, warp_time(t) / period)`` is the
    warped variation (continuous in phase across cycle boundaries).

    Parameters
    ----------
    t : ndarray, any shape
        Time, s (within ``[boundaries[0], boundaries[-1]]``).
    boundaries : ndarray, shape (C + 1,)
        Cycle start times with ``b_0 = 0`` at index ``P`` (as returned by
        :func:`cycle_boundaries`).
    period : float
        Nominal period, s.

    Returns
    -------
    ndarray, shape of ``t``
        Warped (nominal) time, s.
    """
    b = np.asarray(boundaries, dtype=float)
    t = np.asarray(t, dtype=float)
    if t.min() < b[0] or t.max() > b[-1]:
        raise ValueError(
            f"times [{t.min():g}, {t.max():g}] s leave the warped cycles "
            f"[{b[0]:g}, {b[-1]:g}] s"
        )
    n_bwd = int(np.searchsorted(b, 0.0))  # index of b_0 = 0
    cycles = (np.arange(b.size) - n_bwd) * float(period)
    return np.interp(t, b, cycles)


# --------------------------------------------------------------------------- physics


def discretize_loop(
    K: np.ndarray, B: np.ndarray, inertia: float, Kc: float, h: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact first-order-hold discretization of the manipulator-joint loop (004:Eq.1-5).

    Continuous loop, state ``x = [th, th']`` (rad, rad/s)::

        x' = A x + b u,   A = [[0, 1], [-(K + Kc)/I, -B/I]],   b = [0, Kc/I].

    With ``K``, ``B`` constant over a step of ``h`` s and ``u`` linear between samples::

        x[n+1] = Phi x[n] + Gamma0 u[n] + Gamma1 (u[n+1] - u[n]),
        Phi = exp(A h),  Gamma0 = A^-1 (Phi - I) b,  Gamma1 = (A^-2 (Phi - I) / h - A^-1) b.

    ``exp(A h)`` in closed form (Cayley-Hamilton): with ``a = (K + Kc)/I``, ``c = B/I`` and
    ``mu^2 = c^2/4 - a``, ``exp(A h) = exp(-c h/2) [C I + S (A + c/2 I)]`` where
    ``C = cosh(mu h)``, ``S = sinh(mu h)/mu`` (``cos``/``sin`` for ``mu^2 < 0``).

    Parameters
    ----------
    K, B : ndarray, same shape (...)
        Stiffness (Nm/rad) and damping (Nms/rad) held over each step; ``K + Kc > 0``.
    inertia : float
        Joint inertia ``I``, kg m^2.
    Kc : float
        Manipulator gain, Nm/rad.
    h : float
        Step, s.

    Returns
    -------
    Phi : ndarray, shape (..., 2, 2)
    Gamma0, Gamma1 : ndarray, shape (..., 2)
    """
    K, B = np.broadcast_arrays(np.asarray(K, dtype=float), np.asarray(B, dtype=float))
    a = (K + Kc) / inertia
    c = B / inertia
    g = Kc / inertia
    mu2 = 0.25 * c * c - a
    under = mu2 < 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        w = np.sqrt(np.abs(mu2))
        wh = w * h
        # under-damped: e^{-ch/2} cos, e^{-ch/2} sin/w
        dec = np.exp(-0.5 * c * h)
        cu = dec * np.cos(wh)
        su = dec * np.where(wh > 1e-8, np.sin(wh) / np.where(w > 0, w, 1.0), h)
        # over-damped, written with decaying exponentials only: e^{(+-w - c/2) h}
        ep = np.exp((w - 0.5 * c) * h)
        em = np.exp((-w - 0.5 * c) * h)
        co = 0.5 * (ep + em)
        so = np.where(wh > 1e-8, 0.5 * (ep - em) / np.where(w > 0, w, 1.0), dec * h)
    Cc = np.where(under, cu, co)
    S = np.where(under, su, so)
    Phi = np.empty((*K.shape, 2, 2))
    Phi[..., 0, 0] = Cc + 0.5 * c * S
    Phi[..., 0, 1] = S
    Phi[..., 1, 0] = -a * S
    Phi[..., 1, 1] = Cc - 0.5 * c * S

    def ainv(v0: np.ndarray, v1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A^-1 = (1/a) [[-c, -1], [a, 0]]
        return (-c * v0 - v1) / a, v0

    # (Phi - I) b = g [Phi01, Phi11 - 1]
    g0, g1 = ainv(g * Phi[..., 0, 1], g * (Phi[..., 1, 1] - 1.0))
    Gamma0 = np.stack([g0, g1], axis=-1)
    h0, h1 = ainv(g0, g1)
    Gamma1 = np.stack([h0 / h + g / a, h1 / h], axis=-1)  # A^-1 b = [-g/a, 0]
    return Phi, Gamma0, Gamma1


def closed_loop_response(
    u: np.ndarray,
    K: np.ndarray | float,
    B: np.ndarray | float,
    *,
    inertia: float,
    Kc: float,
    fs: float,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the manipulator-joint loop from rest (004:Eq.1-5, Fig. 2a).

    Parameters
    ----------
    u : ndarray, shape (n,)
        Manipulator position command, rad, at ``fs`` (linearly interpolated in between).
    K, B : float or ndarray, shape (n,)
        Stiffness (Nm/rad) and damping (Nms/rad); ``K[i]``, ``B[i]`` hold from sample ``i`` to
        ``i + 1``.
    inertia : float
        Joint inertia, kg m^2.
    Kc : float
        Manipulator gain, Nm/rad (thesis: 20000).
    fs : float
        Simulation rate, Hz (thesis: 1000).
    block : int, optional
        Block length of the evaluation (default ``ceil(sqrt(n))``); the result does not
        depend on it beyond rounding.

    Returns
    -------
    theta : ndarray, shape (n,)
        Joint angle, rad.
    torque : ndarray, shape (n,)
        Interaction torque ``T = Kc (u - theta)``, Nm (noise-free ``y``).
    """
    u = np.asarray(u, dtype=float)
    if u.ndim != 1 or u.size < 2:
        raise InvalidParameterError(f"u must be a 1-D record of >= 2 samples; got {u.shape}.")
    n = u.size
    K = np.broadcast_to(np.asarray(K, dtype=float), (n,))
    B = np.broadcast_to(np.asarray(B, dtype=float), (n,))
    if np.any(K + Kc <= 0):
        raise InvalidParameterError("K + Kc must be positive at every sample.")
    P = max(2, math.ceil(math.sqrt(n))) if block is None else int(block)
    M = -(-n // P)
    pad = M * P - n
    # pad with the last value (held input), then one more sample for the last FOH step
    up = np.concatenate([u, np.full(pad + 1, u[-1])])
    Kp = np.concatenate([K, np.full(pad, K[-1])])
    Bp = np.concatenate([B, np.full(pad, B[-1])])
    Phi, G0, G1 = discretize_loop(Kp, Bp, inertia, Kc, 1.0 / fs)
    Phi = Phi.reshape(M, P, 2, 2)
    Ga = (G0 - G1).reshape(M, P, 2)  # coefficient of u[n]
    Gb = G1.reshape(M, P, 2)  # coefficient of u[n+1]
    U0 = up[:-1].reshape(M, P)
    U1 = up[1:].reshape(M, P)

    def sweep(x: np.ndarray, record: bool) -> tuple[np.ndarray, np.ndarray | None]:
        th = np.empty((M, P)) if record else None
        for k in range(P):
            if record:
                th[:, k] = x[:, 0]
            f = Phi[:, k]
            x = np.stack(
                [
                    f[:, 0, 0] * x[:, 0] + f[:, 0, 1] * x[:, 1]
                    + Ga[:, k, 0] * U0[:, k] + Gb[:, k, 0] * U1[:, k],
                    f[:, 1, 0] * x[:, 0] + f[:, 1, 1] * x[:, 1]
                    + Ga[:, k, 1] * U0[:, k] + Gb[:, k, 1] * U1[:, k],
                ],
                axis=1,
            )
        return x, th

    # 1) forced response of every block from a zero state; block transition matrices
    z_end, _ = sweep(np.zeros((M, 2)), record=False)
    C = np.broadcast_to(np.eye(2), (M, 2, 2)).copy()
    for k in range(P):
        C = np.einsum("mij,mjk->mik", Phi[:, k], C)
    # 2) block-boundary states, sequential over M blocks: s[m+1] = C[m] s[m] + z_end[m]
    s = np.zeros((M, 2))
    for m in range(M - 1):
        s[m + 1] = C[m] @ s[m] + z_end[m]
    # 3) states inside every block from its true initial state
    _, th = sweep(s, record=True)
    theta = th.reshape(-1)[:n]
    return theta, Kc * (u - theta)


def _nyquist_filter(L: int, half: int = 24, beta: float = 9.0) -> np.ndarray:
    """Kaiser-windowed sinc, cut-off ``1 / L`` of Nyquist, taps zero at multiples of ``L``.

    An L-th band filter spanning ``2 * half`` low-rate samples; its passband (to 40 % of the
    low rate) is flat to ~1e-5.
    """
    n = np.arange(-half * L, half * L + 1)
    h = np.sinc(n / L) * np.kaiser(n.size, beta)
    h[n % L == 0] = 0.0
    h[n == 0] = 1.0
    return h


def _interpolate(u: np.ndarray, L: int) -> np.ndarray:
    """Band-limited interpolation by ``L`` that keeps the original samples (``out[::L] == u``).

    Returns
    -------
    ndarray, shape (u.size * L,)
    """
    up = np.zeros(u.size * L)
    up[::L] = u
    return sps.oaconvolve(up, _nyquist_filter(L), mode="same")


def _downsample(x: np.ndarray, L: int) -> np.ndarray:
    """Anti-aliased down-sampling by ``L`` with the same flat L-th band filter (unit DC gain).

    Returns
    -------
    ndarray, shape (x.size // L,)
    """
    h = _nyquist_filter(L)
    return sps.oaconvolve(x, h / h.sum(), mode="same")[::L]


# --------------------------------------------------------------------------- plant


class _Range:
    """Constraint: a pair ``(lo, hi)`` of finite numbers with ``lo <= hi``."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, (str, bytes, dict)):
            return False
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return False
        return arr.shape == (2,) and bool(np.all(np.isfinite(arr))) and arr[0] <= arr[1]

    def __str__(self) -> str:
        return "a pair (lo, hi) of finite numbers with lo <= hi"


class _Profile:
    """Constraint: a named profile or a custom finite 1-D array (see :func:`profile_shape`).

    One class instead of ``[Options(PROFILES), ArrayLike()]`` because ``Options`` tests
    ``value in values``, which is ambiguous for a numpy array.
    """

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in PROFILES
        return ArrayLike().is_satisfied_by(value)

    def __str__(self) -> str:
        return f"{Options(PROFILES)} or {ArrayLike()}"


_VARIATIONS = ("none", "B", "K", "KB")


class MSDPlant(Plant):
    """Thesis time-varying mass-spring-damper simulation (004 Sec. III-A/B, Table II).

    Parameters
    ----------
    perturbation : {"fgwn", "prbs", "multisine"}
        Position perturbation (004 Sec. III-B), generated at ``fs_sim``, 40 Hz 4th-order
        low-passed and scaled to ``input_std`` (:func:`bench.signals.perturbation`).
    perturbation_options : dict, optional
        Extra generator arguments (e.g. ``{"phases": "schroeder"}``).
    input_std : float
        Perturbation standard deviation, rad. The thesis does not state it for the simulation;
        the default 0.0089 rad is its human-study value (004 Sec. V). The plant is linear and
        the SNR relative, so it only scales the data.
    duration : float
        Record length, s (Table II: 25, 50, 100, 200, 400; baseline 50). ``floor(duration /
        period)`` realizations.
    snr_db : float or None
        SNR of the measured torque, dB (Table II: -10, 0, 10, 20; baseline 0); ``None``:
        noise-free.
    variation : {"none", "B", "K", "KB"}
        Which of stiffness/damping vary (Table II; baseline "K"). A constant parameter sits at
        the mean of its range.
    inertia : float
        Joint inertia, kg m^2 (004 Sec. III-A: 0.02).
    K_range, B_range : (float, float)
        Range of stiffness (Nm/rad, thesis 50-150) and damping (Nms/rad, thesis 1.2-3.2).
    K_profile, B_profile : {"sine", "square", "triangle"} or array-like
        Shapes of the variation (thesis: square K, triangle B); see :func:`profile_shape`.
    phase : float in [0, 1) or "random"
        Phase offset of the K and B profiles relative to the cut of the record into
        realizations, periods: the shapes are evaluated at ``t / period - phase``, so every
        profile feature moves ``phase * period`` s later within a realization (the square
        wave's jumps sit at ``phase`` and ``phase + 0.5`` of the period). 0 (default) is the
        thesis's alignment and reproduces the output without the parameter bit for bit.
        ``"random"``: a phase drawn uniformly in [0, 1) per simulation, from a fourth child
        of ``simulate``'s generator (so per seed and cell, and the other streams are
        unchanged); the draw is recorded in ``meta["phase"]``. An experimenter cutting a
        record does not know where the time variation starts, and methods whose fixed
        structure lines up with phase 0 lose that edge.
    period : float
        Period of the time variation, s (thesis: 1 s = 1 Hz).
    Kc : float
        Manipulator gain, Nm/rad (thesis: 20000).
    fs_sim : float
        Simulation rate, Hz (thesis: 1000 Hz fixed step).
    fs : float
        Output rate after anti-aliased decimation, Hz (thesis: 100 Hz).
    jitter_shift : float
        Standard deviation of a per-realization time shift of the K/B profiles, s (the
        thesis's suggested realism extension, 004 Sec. VII); 0 = perfectly aligned ensemble.
    jitter_amplitude : float
        Relative standard deviation of a per-realization scale of the K and B variation
        amplitudes (independent draws for K and B; the factor ``1 + jitter_amplitude z`` is
        clipped to [0, 2]); 0 = identical realizations.
    jitter_period : float
        Period scatter (time warping): relative standard deviation of the duration of each
        cycle of the time variation, a fraction of ``period`` in [0, 0.3] (e.g. 0.05 = 5 %).
        Cycle ``c`` lasts ``period * (1 + jitter_period z_c)`` (factor clipped to [0.5, 1.5])
        and starts where cycle ``c - 1`` ends, cycle 0 at the start of the record, so the
        K/B phase is a continuous piecewise-linear warp of time (:func:`warp_time`). The
        record is still cut at the nominal ``period``: realization ``r`` starts ``r`` nominal
        periods into the record, and the accumulated drift of its phase has standard deviation
        ``~ sqrt(r) * jitter_period * period`` (the realizations drift out of line, as
        self-paced human repetitions do, 004 Sec. VI-F). Applied before ``jitter_shift``.
        0 = no warping.
    oversample : int
        Integration sub-steps per ``1 / fs_sim``. 1 (default) is the thesis's fixed 1 ms step
        with the 1 kHz input linearly interpolated. Caveat of that setting: the interpolation's
        spectral images near multiples of ``fs_sim`` reach the stiff loop, which passes them
        with gain ~``Kc`` (200x the joint's ~100 Nm/rad), and alias back when the torque is
        sampled; the data then show an apparent inertia ~8.5 % below ``inertia`` (I, B, K fitted
        to the 0.1-19.3 Hz FRF: 0.0183 kg m^2, 2.2017 Nms/rad, 100.03 Nm/rad for the thesis
        values 0.02, 2.2, 100). With ``oversample = L > 1`` the input is band-limited-
        interpolated to ``L * fs_sim`` (:func:`_interpolate`, which keeps the original
        samples), the loop integrated at that rate and the torque low-passed by the same flat
        filter and down-sampled to ``fs_sim``; the error falls as ``1/L^2`` (max FRF error
        below 20 Hz: 7.6 % at L=1, 0.46 % at 4, 0.12 % at 8; at L=8 the fit gives 0.01997,
        2.20006, 100.0007).

    Notes
    -----
    Random streams: ``simulate(rng)`` spawns three independent child generators (perturbation,
    noise, jitter), so changing ``snr_db`` or the jitter leaves the input signal unchanged for a
    given seed (common random numbers across grid cells). The cycle durations of the period
    scatter are drawn from the jitter stream after the per-realization shift/amplitude draws,
    always (scaled by ``jitter_period``), so every jitter level sees the same draws.
    """

    name: ClassVar[str] = "msd"
    _parameter_constraints: ClassVar[dict] = {
        "perturbation": [Options(KINDS)],
        "perturbation_options": [dict, None],
        "input_std": [Interval(float, 0, None, closed="neither")],
        "duration": [Interval(float, 0, None, closed="neither")],
        "snr_db": [Interval(float, -100, 200), None],
        "variation": [Options(_VARIATIONS)],
        "inertia": [Interval(float, 0, None, closed="neither")],
        "K_range": [_Range()],
        "B_range": [_Range()],
        "K_profile": [_Profile()],
        "B_profile": [_Profile()],
        "phase": [Interval(float, 0, 1, closed="left"), Options(("random",))],
        "period": [Interval(float, 0, None, closed="neither")],
        "Kc": [Interval(float, 0, None, closed="neither")],
        "fs_sim": [Interval(float, 0, None, closed="neither")],
        "fs": [Interval(float, 0, None, closed="neither")],
        "jitter_shift": [Interval(float, 0, None)],
        "jitter_amplitude": [Interval(float, 0, None)],
        "jitter_period": [Interval(float, 0, 0.3)],
        "oversample": [Interval(int, 1, 64)],
    }

    def __init__(
        self,
        *,
        perturbation: str = "fgwn",
        perturbation_options: dict | None = None,
        input_std: float = 0.0089,
        duration: float = 50.0,
        snr_db: float | None = 0.0,
        variation: str = "K",
        inertia: float = 0.02,
        K_range: tuple[float, float] = (50.0, 150.0),
        B_range: tuple[float, float] = (1.2, 3.2),
        K_profile: str | Any = "square",
        B_profile: str | Any = "triangle",
        phase: float | str = 0.0,
        period: float = 1.0,
        Kc: float = 20000.0,
        fs_sim: float = 1000.0,
        fs: float = 100.0,
        jitter_shift: float = 0.0,
        jitter_amplitude: float = 0.0,
        oversample: int = 1,
        jitter_period: float = 0.0,
    ) -> None:
        self.perturbation = perturbation
        self.perturbation_options = perturbation_options
        self.input_std = input_std
        self.duration = duration
        self.snr_db = snr_db
        self.variation = variation
        self.inertia = inertia
        self.K_range = K_range
        self.B_range = B_range
        self.K_profile = K_profile
        self.B_profile = B_profile
        self.phase = phase
        self.period = period
        self.Kc = Kc
        self.fs_sim = fs_sim
        self.fs = fs
        self.jitter_shift = jitter_shift
        self.jitter_amplitude = jitter_amplitude
        self.oversample = oversample
        self.jitter_period = jitter_period

    # ------------------------------------------------------------------ validation

    def _err(self, name: str, msg: str) -> InvalidParameterError:
        return InvalidParameterError(f"The {name!r} parameter of MSDPlant {msg}")

    def _validate(self) -> None:
        """Declared constraints, then the cross-parameter checks."""
        super()._validate()
        q = self.fs_sim / self.fs
        if abs(q - round(q)) > 1e-9 or round(q) < 1:
            raise self._err(
                "fs", f"must divide fs_sim ({self.fs_sim:g} Hz) by an integer. Got {self.fs!r}."
            )
        for name, rate in (("fs_sim", self.fs_sim), ("fs", self.fs)):
            n = self.period * rate
            if abs(n - round(n)) > 1e-6 or round(n) < 2:
                raise self._err(
                    "period",
                    f"must span a whole number (>= 2) of samples at {name} = {rate:g} Hz. "
                    f"Got {self.period!r} instead.",
                )
        if self.duration < self.period:
            raise self._err(
                "duration",
                f"must be at least one period ({self.period:g} s). Got {self.duration!r}.",
            )
        for name in ("K_profile", "B_profile"):
            prof = getattr(self, name)
            if not isinstance(prof, str):
                v = np.asarray(prof, dtype=float)
                if v.min() < 0 or v.max() > 1:
                    raise self._err(
                        name, "as an array must hold a normalized shape with values in [0, 1]."
                    )
        opts = self.perturbation_options or {}
        bad = sorted(set(opts) - set(KIND_OPTIONS[self.perturbation]))
        if bad:
            raise self._err(
                "perturbation_options",
                f"has key {bad[0]!r}, not an argument of the {self.perturbation!r} generator "
                f"({', '.join(KIND_OPTIONS[self.perturbation])}).",
            )
        # extreme parameter values reachable with amplitude jitter (factor clipped to [0, 2])
        amp = 2.0 if self.jitter_amplitude > 0 else 1.0
        checks = (
            ("K_range", self.K_range, -self.Kc, "K + Kc"),
            ("B_range", self.B_range, 0.0, "B"),
        )
        for name, (lo, hi), floor, what in checks:
            lowest = 0.5 * (lo + hi) - amp * 0.5 * (hi - lo)
            if lowest <= floor:
                raise self._err(
                    name,
                    f"gives {what} <= 0 (lowest value {lowest:g}"
                    f"{' with amplitude jitter' if amp > 1 else ''}); the loop would be unstable.",
                )

    # ------------------------------------------------------------------ simulation

    def _trajectories(
        self, t: np.ndarray, shift: np.ndarray, amp_k: np.ndarray, amp_b: np.ndarray,
        offset: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """K, B and their normalized shapes at times ``t`` (per-row jitter, profile phase
        ``offset`` in periods), shape of ``t``."""
        phase = (t - shift) / self.period
        if offset:
            phase = phase - offset
        sk = profile_shape(self.K_profile, phase)
        sb = profile_shape(self.B_profile, phase)
        k_lo, k_hi = (float(x) for x in self.K_range)
        b_lo, b_hi = (float(x) for x in self.B_range)
        k_mid, b_mid = 0.5 * (k_lo + k_hi), 0.5 * (b_lo + b_hi)
        if "K" in self.variation:
            K = k_mid + amp_k * (k_hi - k_lo) * (sk - 0.5)
        else:
            K = np.full_like(phase, k_mid)
        if "B" in self.variation:
            B = b_mid + amp_b * (b_hi - b_lo) * (sb - 0.5)
        else:
            B = np.full_like(phase, b_mid)
        return K, B, sk, sb

    def simulate(self, rng: np.random.Generator) -> Realizations:
        """Run one experiment and cut it into one-period realizations.

        Parameters
        ----------
        rng : numpy.random.Generator

        Returns
        -------
        Realizations
            ``u`` (rad) and ``y`` (Nm), shape (R, N) with ``R = floor(duration / period)`` and
            ``N = period * fs``; ``schedule`` the measured scheduling signal: the normalized
            driver (in [0, 1]) of the varying parameter (K unless only B varies) at each
            sample's actual time, jitter, warp and ``phase`` included, i.e. what a noise-free
            sensor of the variable that sets the stiffness (pivot position, EMG envelope)
            records; ``truth`` with ``K``, ``B`` (nominal, on the
            decimated one-period grid), ``I`` and, with any jitter (shift, amplitude or period
            scatter), ``K_r`` (R, N), the true K of every realization on its own samples;
            ``meta`` with all parameters, the profile phase used (``phase``), the achieved
            SNRs and the per-realization jitter (``cycle_boundaries_s``: boundaries of the
            warped cycles covering the record).
        """
        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise InvalidParameterError(
                f"MSDPlant.simulate needs a numpy.random.Generator; got {type(rng).__name__}."
            )
        rng_u, rng_v, rng_j = rng.spawn(3)
        if self.phase == "random":
            # a fourth child: the first three (and so every other draw) stay as they were
            offset = float(rng.spawn(1)[0].uniform(0.0, 1.0))
        else:
            offset = float(self.phase)
        q = round(self.fs_sim / self.fs)
        P = round(self.period * self.fs_sim)  # simulation samples per period
        N = round(self.period * self.fs)  # output samples per period
        R = math.floor(self.duration / self.period + 1e-9)
        n_roll = math.ceil(_ROLL_S / self.period)  # whole periods before and after
        M = R + 2 * n_roll
        n_tot = M * P
        t = (np.arange(n_tot) / self.fs_sim - n_roll * self.period).reshape(M, P)

        # per-realization jitter (drawn always, scaled by the s.d., so streams stay aligned)
        z = rng_j.standard_normal((3, R))
        shift = np.zeros(M)
        amp_k = np.ones(M)
        amp_b = np.ones(M)
        shift[n_roll : n_roll + R] = self.jitter_shift * z[0]
        amp_k[n_roll : n_roll + R] = np.clip(1.0 + self.jitter_amplitude * z[1], 0.0, 2.0)
        amp_b[n_roll : n_roll + R] = np.clip(1.0 + self.jitter_amplitude * z[2], 0.0, 2.0)
        # period scatter: cycle durations drawn after the per-realization jitter (so the
        # existing streams are unchanged), a fixed count per (duration, period), always drawn
        n_fwd, n_bwd = 2 * (R + n_roll) + 2, 2 * n_roll + 2
        zc = rng_j.standard_normal(n_fwd + n_bwd)
        boundaries = cycle_boundaries(
            self.period, self.jitter_period, zc[:n_fwd], zc[n_fwd:]
        )
        warped = self.jitter_period > 0
        tau = warp_time(t, boundaries, self.period) if warped else t
        K, B, sk, sb = self._trajectories(
            tau, shift[:, None], amp_k[:, None], amp_b[:, None], offset
        )

        # 004 Sec. III-B: generated at fs_sim, 40 Hz 4th-order low-pass, scaled to input_std
        u = perturbation(
            self.perturbation, n_tot, self.fs_sim, rng_u, std=float(self.input_std),
            **(self.perturbation_options or {}),
        )
        L = int(self.oversample)
        if L == 1:
            _, torque = closed_loop_response(
                u, K.reshape(-1), B.reshape(-1), inertia=float(self.inertia),
                Kc=float(self.Kc), fs=float(self.fs_sim),
            )
        else:
            t_f = (np.arange(n_tot * L) / (L * self.fs_sim) - n_roll * self.period).reshape(
                M, P * L
            )
            tau_f = warp_time(t_f, boundaries, self.period) if warped else t_f
            K_f, B_f, _, _ = self._trajectories(
                tau_f, shift[:, None], amp_k[:, None], amp_b[:, None], offset
            )
            u_f = _interpolate(u, L)
            _, torque_f = closed_loop_response(
                u_f, K_f.reshape(-1), B_f.reshape(-1), inertia=float(self.inertia),
                Kc=float(self.Kc), fs=float(L * self.fs_sim),
            )
            torque = _downsample(torque_f, L)
        keep = slice(n_roll * P, (n_roll + R) * P)
        y = torque.copy()
        snr_1k = None
        if self.snr_db is not None:
            # 004 Sec. III-A: noise = white noise, 2nd-order 40 Hz low-pass; the SNR is exact
            # against the noise-free torque over the kept record at fs_sim.
            v = measurement_noise(torque, float(self.snr_db), self.fs_sim, rng_v)
            v *= np.sqrt(
                torque[keep].var() / 10.0 ** (float(self.snr_db) / 10.0) / v[keep].var()
            )
            y = torque + v
            snr_1k = float(10 * np.log10(torque[keep].var() / v[keep].var()))

        # 004 Sec. III-B: decimated to fs before identification (zero-phase anti-aliasing)
        keep_d = slice(n_roll * N, (n_roll + R) * N)
        u_d = decimate(u, q)[keep_d]
        y_d = decimate(y, q)[keep_d]
        snr_d = None
        if self.snr_db is not None:
            clean_d = decimate(torque, q)[keep_d]
            snr_d = float(10 * np.log10(clean_d.var() / (y_d - clean_d).var()))

        rows = slice(n_roll, n_roll + R)
        Kd, Bd = K[rows, ::q], B[rows, ::q]  # values at the decimated sample times
        skd, sbd = sk[rows, ::q], sb[rows, ::q]
        K_nom, B_nom, sk_nom, sb_nom = self._trajectories(
            np.arange(N) / self.fs, np.zeros(1), np.ones(1), np.ones(1), offset
        )
        jittered = self.jitter_shift > 0 or self.jitter_amplitude > 0 or warped
        if "K" in self.variation or self.variation == "none":
            schedule, source = skd, "K_profile"
        else:
            schedule, source = sbd, "B_profile"
        params = {
            k: (np.asarray(v).tolist() if isinstance(v, (tuple, list, np.ndarray)) else v)
            for k, v in self.get_params().items()
        }
        meta = {
            "plant": self.name,
            "params": params,
            "period": float(self.period),
            "phase": offset,  # profile phase offset used (the draw when phase="random")
            "contiguous": True,  # realizations are consecutive periods of one record
            "n_realizations": R,
            "samples_per_realization": N,
            "decimation_factor": q,
            "snr_db_sim": snr_1k,
            "snr_db_decimated": snr_d,
            "schedule_source": source,
            "K_shape": sk_nom,
            "B_shape": sb_nom,
            "B_r": Bd if jittered else None,
            "jitter_shift_s": shift[rows].copy(),
            "jitter_amplitude_K": amp_k[rows].copy(),
            "jitter_amplitude_B": amp_b[rows].copy(),
            # boundaries (s from the record start) of the warped cycles that cover the
            # record, b_0 = 0 up to the first one at or after its end; empty without scatter
            "cycle_boundaries_s": (
                boundaries[
                    int(np.searchsorted(boundaries, 0.0)):
                    int(np.searchsorted(boundaries, R * self.period)) + 1
                ].copy()
                if warped else np.zeros(0)
            ),
        }
        truth = GroundTruth(
            K=K_nom, B=B_nom, I=float(self.inertia), K_r=Kd.copy() if jittered else None
        )
        return Realizations.from_record(
            u_d, y_d, self.fs, self.period, schedule=schedule.reshape(-1), truth=truth,
            meta=meta,
        )

