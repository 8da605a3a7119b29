"""Physics of the lever rig, written once and run two ways: stepped or scanned.

The equations live in :func:`_substep`, :func:`_adc` and :func:`_pid`, written against a tiny
array namespace (``where``, ``clip``, ``sign``, ...). :class:`LeverRig` evaluates them on
Python floats (a cheap real-time ``step``); :func:`simulate_record` evaluates the *same*
functions with ``jax.numpy`` inside a compiled ``jax.lax.scan`` (batch). A test checks that the
two agree sample by sample.

Model (positions along the actuator's line of action, small rod angles)
----------------------------------------------------------------------
* Lever: rod of length ``r``, pivot at ``r1`` from the actuator end, springs ``K2`` at the far
  end. Ideal stiffness at the actuator ``K1 = ((r - r1) / r1)^2 K2`` (004:Eq.34); spring damping
  reflects the same way; rod inertia about the pivot ``J = m (r^2/12 + (r/2 - r1)^2)`` appears as
  a mass ``J / r1^2`` at the actuator.
* Springs: two opposing springs (combined ``K2``) pre-tensioned by ``preload`` deflection;
  beyond it one goes slack and the rate halves (``preload: null``: never slack, linear). With
  the PRBS's 2.5 mm mean this softens the PRBS mapping more than the FGWN one (004 Sec. V-E).
* Rod compliance: a cantilever of flexural rigidity ``EI`` bent by the load adds a series
  compliance ``r1^2 r / (3 EI)`` at the actuator (left arm ``r1^3/3EI`` plus the right arm's
  ``(r-r1)^3/3EI`` reflected by ``(r1/(r-r1))^2``).
* Backlash: the rod may slide across the pivot bearing within a total play ``g``, held by a
  Coulomb force ``f_p`` (a stick-slip/play element). In actuator coordinates the slip is
  ``z = delta r / (r - r1)`` with ``|z| <= g r / (2 (r - r1))``; the rod slips when the actuator
  force exceeds ``f_p (r - r1) / r``. With ``f_p = 0`` this is a dead zone (hardening with
  amplitude); with ``f_p > 0`` small motions stick and larger ones slip (softening), so the
  apparent stiffness depends on the perturbation amplitude (004 Sec. V-E).
* Pivot drive: DC motor (``L di/dt = V - R i - ke w``, exact exponential update for fixed ``w``),
  lead screw of lead ``l`` (``w = 2 pi v / l``, force ``eta kt i 2 pi / l``), carriage with
  viscous (implicit) and Coulomb friction (impulse form: sticks when the step's friction
  impulse exceeds the momentum), hard end stops, limit switches that cut the drive toward
  their end. Duty in [-1, 1] scales the supply voltage (H-bridge PWM).
* Actuator: position servo ``x'' = w_a^2 (x_cmd - x) - 2 zeta w_a x'`` discretized exactly
  (zero-order hold) for the sub-step; clamped to its stroke.
* Sensors: ``counts = clip(round((value + noise - offset) / scale))``, reported back in
  physical units as ``counts * scale + offset`` (``bits = 0``: no rounding or clipping).
* Firmware: :class:`PivotPID`, an integer PID on potentiometer counts,
  ``pwm = clip((kp e + ki sum(e) + kd (meas_prev - meas)) >> shift, +-pwm_max)``, derivative on
  measurement, clamped integral, run every ``fs / rate`` samples.

Stepping API (used by ``hil/virtual.py`` and by the batch path's reference loop)
-------------------------------------------------------------------------------
.. code-block:: python

    rig = LeverRig(load_rig())                        # or load_rig("my_rig.yaml")
    r = rig.reset(np.random.default_rng(0), pivot0=0.25)
    pid = PivotPID(rig.rig.controller)                # firmware PID, integer counts
    pid.reset(r.pivot_counts)
    setpoint = int(counts_from_position(0.26, rig.rig))
    for k in range(n):                                # at sampling.fs (2500 Hz)
        if k % rig.rig.control_divider == 0:          # controller.rate (500 Hz)
            duty = pid.update(setpoint, r.pivot_counts) / pid.pwm_max
        r = rig.step(1 / 2500, motor_command=duty, actuator_command=x_cmd[k])
        r.force, r.actuator_position, r.pivot_position, r.pivot_counts, r.limit_high

``step`` draws three standard normals (pivot, force, actuator noise, in that order) from the
generator given to ``reset`` for each call, so a stepped run and :func:`simulate_record` with the
same seed give the same samples.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import expm

from bench.errors import DataError, InvalidParameterError
from plants.lever.rig import Controller, Rig

__all__ = [
    "LeverRig",
    "PivotPID",
    "Record",
    "RigState",
    "SensorReadings",
    "counts_from_position",
    "simulate_record",
    "theoretical_stiffness",
]


# --------------------------------------------------------------------------- namespaces


class _Py:
    """Scalar namespace: the equations on Python floats (real-time stepping)."""

    @staticmethod
    def where(c: Any, a: Any, b: Any) -> Any:
        return a if c else b

    @staticmethod
    def clip(x: float, lo: float, hi: float) -> float:
        return lo if x < lo else (hi if x > hi else x)

    @staticmethod
    def sign(x: float) -> float:
        return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)

    abs = staticmethod(abs)
    floor = staticmethod(math.floor)
    round = staticmethod(round)  # half to even, as numpy/jax


def _jax_ns() -> Any:
    import jax.numpy as jnp

    class _Jnp:
        where = staticmethod(jnp.where)
        clip = staticmethod(jnp.clip)
        sign = staticmethod(jnp.sign)
        abs = staticmethod(jnp.abs)
        floor = staticmethod(jnp.floor)
        round = staticmethod(jnp.round)

    return _Jnp


# --------------------------------------------------------------------------- constants


class _Consts(NamedTuple):
    """Rig constants as plain floats (hashable: keys the compiled-scan cache)."""

    r: float
    K2: float
    b2: float
    d0: float  # spring pre-tension deflection (inf: never slack)
    m_rod: float
    gap: float
    f_p: float
    bend: float
    G: float  # rad per m of carriage travel, 2 pi / lead
    m_eq: float
    Fc: float
    bv: float
    eta: float
    R: float
    L: float
    kt: float
    ke: float
    Vs: float
    sw_lo: float
    sw_hi: float
    hard_lo: float
    hard_hi: float
    wa: float
    za: float
    stroke: float
    sensors: tuple  # 3 x (bits, scale, offset, noise_std, lo, hi): pivot, force, actuator


def _consts(rig: Rig) -> _Consts:
    g, ls, mo = rig.geometry, rig.lead_screw, rig.motor
    G = 2.0 * math.pi / ls.lead
    sens = tuple(
        (s.bits, s.scale, s.offset, s.noise_std, *s.count_range)
        for s in (rig.sensors.pivot, rig.sensors.force, rig.sensors.actuator)
    )
    return _Consts(
        r=g.rod_length, K2=rig.springs.stiffness, b2=rig.springs.damping,
        d0=math.inf if rig.springs.preload is None else rig.springs.preload, m_rod=g.rod_mass,
        gap=rig.play.backlash, f_p=rig.play.bearing_friction, bend=rig.play.bending_compliance,
        G=G, m_eq=ls.carriage_mass + mo.inertia * G * G, Fc=ls.coulomb_friction,
        bv=ls.viscous_friction, eta=ls.efficiency, R=mo.resistance, L=mo.inductance,
        kt=mo.kt, ke=mo.ke, Vs=mo.supply_voltage, sw_lo=g.pivot_min, sw_hi=g.pivot_max,
        hard_lo=g.pivot_min - g.overtravel, hard_hi=g.pivot_max + g.overtravel,
        wa=2.0 * math.pi * rig.actuator.bandwidth, za=rig.actuator.damping_ratio,
        stroke=rig.actuator.stroke, sensors=sens,
    )


@functools.lru_cache(maxsize=64)
def _discretize(c: _Consts, h: float) -> tuple[float, ...]:
    """Exact ZOH discretization of the actuator servo and the motor's electrical decay."""
    A = np.array([[0.0, 1.0, 0.0], [-c.wa**2, -2.0 * c.za * c.wa, c.wa**2], [0.0, 0.0, 0.0]])
    E = expm(A * h)
    eL = math.exp(-c.R * h / c.L) if c.L > 0 else 0.0
    return (float(E[0, 0]), float(E[0, 1]), float(E[0, 2]),
            float(E[1, 0]), float(E[1, 1]), float(E[1, 2]), eL)


def theoretical_stiffness(pivot: Any, rig: Rig) -> np.ndarray:
    """Ideal stiffness at the actuator, ``K1 = ((r - r1) / r1)^2 K2`` (004:Eq.34).

    Parameters
    ----------
    pivot : array-like, m
        Pivot position ``r1`` (distance from the actuator end of the rod).
    rig : Rig

    Returns
    -------
    ndarray, N/m, shape of ``pivot``
    """
    r1 = np.asarray(pivot, dtype=float)
    r = rig.geometry.rod_length
    return ((r - r1) / r1) ** 2 * rig.springs.stiffness  # 004:Eq.34


# --------------------------------------------------------------------------- equations


class RigState(NamedTuple):
    """True physical state of the rig.

    Attributes
    ----------
    xa, va : actuator position (m) and velocity (m/s)
    delta : slip of the rod across the pivot bearing, within +- backlash/2 (m)
    q : spring deflection at the far end (m)
    p, vp : pivot position r1 (m) and carriage velocity (m/s)
    i : motor current (A)
    force : force between actuator and rod, load-cell side (N)
    """

    xa: Any
    va: Any
    delta: Any
    q: Any
    p: Any
    vp: Any
    i: Any
    force: Any


def _substep(c: _Consts, d: tuple, s: RigState, h: float, duty: Any, xcmd: Any,
             xp: Any) -> RigState:
    """Advance the rig by one sub-step ``h`` (s) under constant commands."""
    e00, e01, e02, e10, e11, e12, eL = d
    # actuator: exact ZOH update of the 2nd-order position servo
    xa = e00 * s.xa + e01 * s.va + e02 * xcmd
    va = e10 * s.xa + e11 * s.va + e12 * xcmd
    xa_c = xp.clip(xa, -c.stroke, c.stroke)
    va = xp.where(xa_c != xa, 0.0, va)
    xa = xa_c
    aa = c.wa * c.wa * (xcmd - xa) - 2.0 * c.za * c.wa * va
    # pivot drive: PWM -> voltage, limit switches cut the drive toward their end
    V = xp.clip(duty, -1.0, 1.0) * c.Vs
    V = xp.where((s.p >= c.sw_hi) & (V > 0.0), 0.0, V)
    V = xp.where((s.p <= c.sw_lo) & (V < 0.0), 0.0, V)
    i_ss = (V - c.ke * c.G * s.vp) / c.R
    i = i_ss + (s.i - i_ss) * eL  # L di/dt = V - R i - ke w, exact for constant w
    Fm = c.eta * c.kt * c.G * i
    vt = (s.vp + h * Fm / c.m_eq) / (1.0 + h * c.bv / c.m_eq)  # implicit viscous friction
    dv = h * c.Fc / c.m_eq  # Coulomb friction impulse per unit mass
    vp = xp.where(xp.abs(vt) <= dv, 0.0, vt - xp.sign(vt) * dv)
    p = s.p + h * vp
    p_c = xp.clip(p, c.hard_lo, c.hard_hi)
    vp = xp.where(p_c != p, 0.0, vp)
    p = p_c
    # lever: 004:Eq.34 with series rod compliance, slack-able springs and pivot play
    arm = c.r - p
    a = p / arm  # lever ratio r1 / (r - r1): spring force S = a F, K1 = K2 / a^2 (004:Eq.34)
    cmp = c.bend * p * p * c.r / 3.0  # rod bending compliance at the actuator
    Kl = 1.0 / (cmp + a * a / c.K2)  # both springs acting (ideal: K1 = K2 / a^2)
    Kh = 1.0 / (cmp + 2.0 * a * a / c.K2)  # one spring slack
    Fb = c.K2 * c.d0 / a  # actuator force at which a spring goes slack
    yb = Fb / Kl

    def force_of(y: Any) -> Any:  # actuator force for a lever-side displacement y
        return xp.where(xp.abs(y) <= yb, Kl * y, xp.sign(y) * Kh * (xp.abs(y) + a * c.d0))

    def disp_of(F: Any) -> Any:  # inverse of force_of
        return xp.where(xp.abs(F) <= Fb, F / Kl, xp.sign(F) * (xp.abs(F) / Kh - a * c.d0))

    Fs = c.f_p * arm / c.r  # bearing friction seen at the actuator
    zmax = c.gap * c.r / (2.0 * arm)  # play seen at the actuator
    z0 = xp.clip(s.delta * c.r / arm, -zmax, zmax)
    Ft = force_of(xa - z0)
    zs = xp.clip(xa - disp_of(xp.sign(Ft) * Fs), -zmax, zmax)
    z = xp.where(xp.abs(Ft) > Fs, zs, z0)  # stick inside the play unless friction is overcome
    Fst = force_of(xa - z)
    S = a * Fst
    q = xp.where(xp.abs(S) <= c.K2 * c.d0, S / c.K2, xp.sign(S) * (2.0 * xp.abs(S) / c.K2 - c.d0))
    Fd = c.b2 * (q - s.q) / h / a
    M1 = c.m_rod * (c.r * c.r / 12.0 + (c.r / 2.0 - p) ** 2) / (p * p)
    return RigState(xa, va, z * arm / c.r, q, p, vp, i, Fst + Fd + M1 * aa)


def _adc(value: Any, noise: Any, sens: tuple, xp: Any) -> tuple[Any, Any]:
    """Sensor + ADC: counts and the physical reading they stand for."""
    bits, scale, offset, std, lo, hi = sens
    raw = (value + std * noise - offset) / scale
    counts = xp.clip(xp.round(raw), lo, hi) if bits > 0 else raw
    return counts, counts * scale + offset


def _pid(ctl: tuple, integ: Any, prev: Any, setpoint: Any, meas: Any,
         xp: Any) -> tuple[Any, Any]:
    """Integer PID step on counts; returns the new integral and the PWM count."""
    kp, ki, kd, shift, pwm_max, ilim = ctl
    e = setpoint - meas
    integ = xp.clip(integ + e, -ilim, ilim)
    u = xp.floor((kp * e + ki * integ + kd * (prev - meas)) / float(2**shift))  # == >> shift
    return integ, xp.clip(u, -pwm_max, pwm_max)


def _ctl_tuple(ctl: Controller) -> tuple:
    return (ctl.kp, ctl.ki, ctl.kd, ctl.shift, ctl.pwm_max, ctl.integral_limit)


# --------------------------------------------------------------------------- stepping


class SensorReadings(NamedTuple):
    """What the rig's electronics report after a step.

    Attributes
    ----------
    t : float, s
        Rig time at the end of the step.
    actuator_position : float, m
        Encoder reading (quantized, noisy).
    force : float, N
        Load-cell reading.
    pivot_position : float, m
        Potentiometer reading.
    actuator_counts, force_counts, pivot_counts : int or float
        Raw ADC counts (float when the sensor has ``bits = 0``).
    motor_current : float, A
    motor_command : float
        Duty actually applied, in [-1, 1].
    limit_low, limit_high : bool
        Limit switches (pivot at or beyond ``pivot_min`` / ``pivot_max``).
    """

    t: float
    actuator_position: float
    force: float
    pivot_position: float
    actuator_counts: Any
    force_counts: Any
    pivot_counts: Any
    motor_current: float
    motor_command: float
    limit_low: bool
    limit_high: bool


def _as_count(x: Any) -> Any:
    return int(x) if isinstance(x, int) or float(x).is_integer() else float(x)


class PivotPID:
    """The firmware's pivot position controller (Arduino integer PID on pot counts).

    ``pwm = clip((kp e + ki sum(e) + kd (meas_prev - meas)) >> shift, -pwm_max, pwm_max)``
    with ``e = setpoint - meas`` in potentiometer counts, the integral clamped to
    ``+- integral_limit`` and the derivative taken on the measurement (no setpoint kick).
    All arithmetic is integer (it fits int32 for 10-bit counts and gains <= 2^15).

    Parameters
    ----------
    controller : plants.lever.rig.Controller
        Gains and loop rate (``controller.rate`` Hz) from the rig file.
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self._ctl = _ctl_tuple(controller)
        self.pwm_max = controller.pwm_max
        self.integral = 0
        self.previous = 0

    def reset(self, measurement: int) -> None:
        """Zero the integral and take ``measurement`` (counts) as the previous sample."""
        self.integral = 0
        self.previous = int(measurement)

    def update(self, setpoint: int, measurement: int) -> int:
        """One controller period: returns the PWM count in ``[-pwm_max, pwm_max]``."""
        meas = int(measurement)
        self.integral, pwm = _pid(self._ctl, self.integral, self.previous, int(setpoint), meas,
                                  _Py)
        self.previous = meas
        return int(pwm)


class LeverRig:
    """The lever rig as a steppable object (shared by the virtual rig and the batch path).

    Parameters
    ----------
    rig : plants.lever.rig.Rig
        Validated description (:func:`plants.lever.rig.load_rig`).
    """

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self._c = _consts(rig)
        self._rng: np.random.Generator | None = None
        self.state: RigState | None = None
        self.t = 0.0
        self._duty = 0.0

    def reset(self, rng: np.random.Generator, pivot0: float) -> SensorReadings:
        """Put the rig at rest with the pivot at ``pivot0`` (m); returns the first readings.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of all sensor noise of the following steps.
        pivot0 : float, m
            Initial pivot position, inside the hard end stops.
        """
        if not isinstance(rng, np.random.Generator):
            raise InvalidParameterError(
                f"rng must be a numpy.random.Generator; got {type(rng).__name__}."
            )
        c = self._c
        if not c.hard_lo <= float(pivot0) <= c.hard_hi:
            raise InvalidParameterError(
                f"pivot0 must lie in the pivot travel [{c.hard_lo}, {c.hard_hi}] m; got {pivot0!r}."
            )
        self._rng = rng
        self.t = 0.0
        self._duty = 0.0
        self.state = RigState(0.0, 0.0, 0.0, 0.0, float(pivot0), 0.0, 0.0, 0.0)
        return self._read(rng.standard_normal(3))

    def step(self, dt: float, motor_command: float, actuator_command: float) -> SensorReadings:
        """Advance by ``dt`` seconds under constant commands, then sample the sensors.

        Parameters
        ----------
        dt : float, s
            Step length; split into equal sub-steps of at most ``sampling.max_step``.
        motor_command : float
            H-bridge duty in [-1, 1] (the firmware's ``pwm / pwm_max``); clipped.
        actuator_command : float, m
            Position set-point of the linear actuator (the perturbation).

        Returns
        -------
        SensorReadings
        """
        if self.state is None or self._rng is None:
            raise DataError("LeverRig.step called before reset(rng, pivot0).")
        if not (dt > 0 and math.isfinite(dt)):
            raise InvalidParameterError(f"dt must be a positive number of seconds; got {dt!r}.")
        n_sub = max(1, math.ceil(dt / self.rig.sampling.max_step - 1e-9))
        h = dt / n_sub
        d = _discretize(self._c, h)
        duty = min(1.0, max(-1.0, float(motor_command)))
        xcmd = float(actuator_command)
        s = self.state
        for _ in range(n_sub):
            s = _substep(self._c, d, s, h, duty, xcmd, _Py)
        self.state = s
        self.t += dt
        self._duty = duty
        return self._read(self._rng.standard_normal(3))

    def _read(self, noise: np.ndarray) -> SensorReadings:
        c, s = self._c, self.state
        pc, pv = _adc(s.p, float(noise[0]), c.sensors[0], _Py)
        fc, fv = _adc(s.force, float(noise[1]), c.sensors[1], _Py)
        ac, av = _adc(s.xa, float(noise[2]), c.sensors[2], _Py)
        return SensorReadings(
            self.t, av, fv, pv, _as_count(ac), _as_count(fc), _as_count(pc), s.i, self._duty,
            bool(s.p <= c.sw_lo), bool(s.p >= c.sw_hi),
        )


def counts_from_position(pivot: Any, rig: Rig) -> np.ndarray:
    """Pivot position (m) -> potentiometer set-point counts, as the firmware would store it."""
    s = rig.sensors.pivot
    lo, hi = s.count_range
    raw = (np.asarray(pivot, dtype=float) - s.offset) / s.scale
    return np.clip(np.round(raw), lo, hi) if s.bits > 0 else raw


# --------------------------------------------------------------------------- batch


class Record(NamedTuple):
    """A batch run at ``sampling.fs``; every array has shape (B, n) (or (n,) unbatched).

    Attributes
    ----------
    fs : float, Hz
    actuator : measured actuator position, m (the input u)
    force : measured force, N (the output y)
    pivot : measured pivot position, m (the scheduling variable)
    pivot_true : true pivot position, m
    force_true : true force, N
    actuator_true : true actuator position, m
    current : motor current, A
    duty : applied duty in [-1, 1]
    """

    fs: float
    actuator: np.ndarray
    force: np.ndarray
    pivot: np.ndarray
    pivot_true: np.ndarray
    force_true: np.ndarray
    actuator_true: np.ndarray
    current: np.ndarray
    duty: np.ndarray


@functools.lru_cache(maxsize=16)
def _compiled(c: _Consts, d: tuple, h: float, n_sub: int, div: int, ctl: tuple) -> Any:
    import jax

    xp = _jax_ns()
    pwm_max = float(ctl[4])

    def one(pivot0: Any, xcmd: Any, sp: Any, noise: Any) -> Any:
        z = pivot0 * 0.0
        s0 = RigState(z, z, z, z, pivot0, z, z, z)
        c0, _ = _adc(pivot0, noise[0, 0], c.sensors[0], xp)

        def body(carry: Any, inp: Any) -> Any:
            s, integ, prev, duty, meas, k = carry
            xk, spk, nk = inp
            tick = (k % div) == 0
            integ2, pwm = _pid(ctl, integ, prev, spk, meas, xp)
            integ = xp.where(tick, integ2, integ)
            prev = xp.where(tick, meas, prev)
            duty = xp.where(tick, pwm / pwm_max, duty)
            for _ in range(n_sub):
                s = _substep(c, d, s, h, duty, xk, xp)
            pc, pv = _adc(s.p, nk[0], c.sensors[0], xp)
            _, fv = _adc(s.force, nk[1], c.sensors[1], xp)
            _, av = _adc(s.xa, nk[2], c.sensors[2], xp)
            out = (av, fv, pv, s.p, s.force, s.xa, s.i, duty)
            return (s, integ, prev, duty, pc, k + 1), out

        carry0 = (s0, z, c0, z, c0, 0)
        _, outs = jax.lax.scan(body, carry0, (xcmd, sp, noise[1:]))
        return outs

    return jax.jit(jax.vmap(one))


def simulate_record(
    rig: Rig,
    actuator_command: np.ndarray,
    pivot_reference: np.ndarray,
    rng: np.random.Generator,
    *,
    pivot0: Any = None,
    backend: str = "jax",
) -> Record:
    """Run the rig under the firmware PID at ``sampling.fs`` (the batch experiment).

    At sample ``k`` the PID runs if ``k % (fs / rate) == 0`` on the latest pivot counts, then the
    rig is stepped by ``1 / fs`` and the sensors are sampled, exactly as a loop of
    :meth:`LeverRig.step` and :meth:`PivotPID.update` would (``backend="python"`` runs that loop).

    Parameters
    ----------
    rig : Rig
    actuator_command : ndarray, shape (n,) or (B, n), m
        Actuator set-points (the perturbation), one per sample.
    pivot_reference : ndarray, shape (n,) or (B, n), m
        Pivot trajectory; turned into potentiometer set-point counts.
    rng : numpy.random.Generator
        Draws the sensor noise, shape (B, n + 1, 3), in the order a stepped run draws it.
    pivot0 : float or ndarray, shape (B,), m, optional
        Initial pivot position; default the first reference sample.
    backend : {"jax", "python"}
        Compiled scan (fast) or the stepping loop (reference, slow).

    Returns
    -------
    Record
    """
    x = np.asarray(actuator_command, dtype=float)
    p_ref = np.asarray(pivot_reference, dtype=float)
    single = x.ndim == 1
    x2, p2 = np.atleast_2d(x), np.atleast_2d(p_ref)
    if x2.ndim != 2 or x2.shape != p2.shape or x2.shape[1] < 1:
        raise DataError(
            f"actuator_command and pivot_reference must have equal shapes (n,) or (B, n); "
            f"got {x.shape} and {p_ref.shape}."
        )
    if not (np.all(np.isfinite(x2)) and np.all(np.isfinite(p2))):
        raise DataError("actuator_command and pivot_reference must be finite.")
    B, n = x2.shape
    p0 = p2[:, 0] if pivot0 is None else np.broadcast_to(np.asarray(pivot0, float), (B,))
    sp = counts_from_position(p2, rig)
    fs = rig.sampling.fs
    dt = 1.0 / fs
    n_sub = max(1, math.ceil(dt / rig.sampling.max_step - 1e-9))
    h = dt / n_sub
    c = _consts(rig)
    if backend == "jax":
        import jax

        noise = rng.standard_normal((B, n + 1, 3))
        with jax.enable_x64(True):
            fn = _compiled(c, _discretize(c, h), h, n_sub, rig.control_divider,
                           _ctl_tuple(rig.controller))
            outs = [np.asarray(o) for o in fn(p0, x2, sp, noise)]
    elif backend == "python":
        outs = [np.empty((B, n)) for _ in range(8)]
        for b in range(B):
            rr = LeverRig(rig)
            r0 = rr.reset(rng, float(p0[b]))  # draws as rng.standard_normal((B, n + 1, 3))
            pid = PivotPID(rig.controller)
            pid.reset(r0.pivot_counts)
            meas, duty = r0.pivot_counts, 0.0
            for k in range(n):
                if k % rig.control_divider == 0:
                    duty = pid.update(int(sp[b, k]), meas) / pid.pwm_max
                rd = rr.step(dt, duty, x2[b, k])
                meas = rd.pivot_counts
                s = rr.state
                vals = (rd.actuator_position, rd.force, rd.pivot_position, s.p, s.force, s.xa,
                        s.i, duty)
                for o, v in zip(outs, vals):
                    o[b, k] = v
    else:
        raise InvalidParameterError(f"backend must be 'jax' or 'python'; got {backend!r}.")
    if single:
        outs = [o[0] for o in outs]
    return Record(fs, *outs)
