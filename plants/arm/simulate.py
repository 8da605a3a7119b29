"""EMG-driven forward dynamics of the 16-muscle arm: 002 Sec. IV-A's training data.

002 generates its training data "by driving the ground truth arm model in OpenSim through the
forward dynamics with the neural excitations of all the muscles as the input calculated from
the synthesized irregular EMG signals" and records, at each time step, joint positions,
velocities, accelerations, muscle lengths, velocities and moment arms (002 Sec. IV-A), for two
different arm movements (Fig. 3). It states neither the sampling rate, the duration nor how the
EMG was synthesized; everything below marked *chosen* is ours.

Pipeline (:func:`simulate_arm`):

1. **Nominal movement** (:func:`nominal_movement`, chosen): minimum-jerk segments between
   random postures drawn from a movement-specific box, after a 0.5 s hold: ``"reach"``
   (reaching-like: shoulder flexion/abduction with elbow extension and pronation, returning to
   a home posture) or ``"flexion_pronation"`` (elbow flexion-extension with pronation-
   supination, shoulder nearly still) - the two kinds of movement in 002 Fig. 3.
2. **Irregular co-contraction**: a per-muscle floor ``cocontraction * 2 sigmoid(2 z(t))`` of
   band-limited (< 2 Hz) Gaussian noise ``z``.
3. **Activations** that realize the nominal movement: static optimization per sample,
   ``min sum a^2 + rho ||J_m^T f_m(a) - tau_req||^2`` with ``floor <= a <= 1``; exact because
   the rigid-tendon MTU force is affine in the activation. ``tau_req`` is the inverse dynamics
   of the nominal movement minus the passive joint-limit torque.
4. **EMG** by inverting, exactly, the activation dynamics (002:Eq.17-18, in its discrete
   exponential-Euler form of :func:`plants.muscle.first_order_activation`) and the
   EMG-to-excitation filter with continuous delay (002:Eq.19-21); then made irregular by a
   smooth multiplicative fluctuation ``1 + emg_noise z(t)`` (< 4 Hz) and clipped to [0, 1].
5. **Forward**: EMG -> neural excitation (002:Eq.19-21, :func:`plants.muscle.neural_activation`)
   -> activation (002:Eq.17-18) -> rigid-tendon Hill forces (002:Eq.15) -> joint torques
   ``J_m^T f_m`` (002:Eq.1) -> ``qdd = M^-1 (tau - tau_bias)``, integrated with RK4 in a
   :func:`jax.lax.scan` (``substeps`` steps per sample, activations linear between samples),
   in blocks of :data:`CHUNK` samples so that one compilation serves every record length.

Two torques are added to the muscle torques so that the motion stays physiological while the
EMG is irregular (documented departures from a pure muscle-driven simulation, both recorded):
a **passive joint-limit torque** ``k (exp(s (lo - q)) - exp(s (q - hi)))`` (s = 20/rad: it is
negligible more than ~0.2 rad inside the range) and a **weak PD tracking** of the nominal
movement (bandwidth ``tracking_bandwidth``, default 1 Hz, critically damped, gains scaled by the
diagonal of M at the reference posture). Because the EMG was designed for the nominal movement,
the PD torque stays small; a calibrator must treat both as known external torques
(``tau_passive + tau_control``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize
from scipy import signal as sps

from bench.base import Plant
from bench.errors import InvalidParameterError
from bench.params import Interval, Options
from bench.types import MuscleData
from plants.arm import rigid
from plants.arm.muscles import (
    DEFAULT_MUSCLE_GEOMETRY,
    MUSCLES,
    N_MUSCLES,
    MuscleGeometry,
    default_muscle_params,
    moment_arms,
    mtu_length,
)
from plants.arm.rigid import DOF_NAMES, N_DOF
from plants.muscle import MTUParams, first_order_activation, mtu_force, neural_activation

__all__ = [
    "JOINT_RANGES",
    "MOVEMENTS",
    "ArmPlant",
    "ArmTrial",
    "design_activations",
    "invert_activation",
    "invert_excitation",
    "joint_limit_torque",
    "movement_plan",
    "nominal_movement",
    "simulate_arm",
]

MOVEMENTS = ("reach", "flexion_pronation")

#: Joint ranges (rad), rows = DoFs, columns = (lo, hi); chosen inside the human range of motion
#: (shoulder flexion -45..140 deg, abduction up to 90 deg (negative q1), rotation -60..75 deg,
#: elbow 3..145 deg, forearm +-75 deg).
JOINT_RANGES = np.array(
    [[-0.8, 2.45], [-1.6, 0.5], [-1.05, 1.3], [0.05, 2.5], [-1.3, 1.3]]
)
#: Passive joint-limit torque scale per DoF, Nm (chosen) and its exponential rate, 1/rad.
_LIMIT_K = np.array([2.0, 2.0, 0.5, 0.5, 0.02])
_LIMIT_S = 20.0

_HOLD_S = 0.5  # initial hold of the nominal movement, s
_SEG_S = (0.8, 1.6)  # duration range of a movement segment, s (chosen)
# postures (rad): home and target boxes per movement (chosen)
_REACH_HOME = np.array([0.2, -0.2, 0.2, 1.4, 0.3])
_REACH_BOX = np.array([[0.8, 1.6], [-0.9, -0.3], [-0.3, 0.4], [0.3, 0.9], [-0.2, 0.8]])
_FP_SHOULDER = np.array([[0.3, 0.6], [-0.45, -0.2], [0.0, 0.25]])
_FP_FLEX = np.array([[1.7, 2.2], [0.7, 1.1]])  # elbow flexion and forearm pronation together
_FP_EXT = np.array([[0.3, 0.7], [-0.9, -0.5]])  # elbow extension and supination together


# ----------------------------------------------------------------------------- movement
def _via_points(movement: str, n_seg: int, rng: np.random.Generator) -> np.ndarray:
    pts = np.empty((n_seg + 1, N_DOF))
    if movement == "reach":
        pts[0] = _REACH_HOME
        for i in range(1, n_seg + 1):
            if i % 2:
                pts[i] = rng.uniform(_REACH_BOX[:, 0], _REACH_BOX[:, 1])
            else:
                pts[i] = _REACH_HOME + rng.uniform(-0.1, 0.1, N_DOF)
    elif movement == "flexion_pronation":
        for i in range(n_seg + 1):
            box = _FP_EXT if i % 2 == 0 else _FP_FLEX
            pts[i, :3] = rng.uniform(_FP_SHOULDER[:, 0], _FP_SHOULDER[:, 1])
            pts[i, 3:] = rng.uniform(box[:, 0], box[:, 1])
    else:
        raise InvalidParameterError(
            f"The 'movement' parameter must be one of {MOVEMENTS}. Got {movement!r} instead."
        )
    return pts


def movement_plan(
    movement: str, duration: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the via-postures and segment boundaries of a nominal movement.

    Parameters
    ----------
    movement : {"reach", "flexion_pronation"}
    duration : float, s
    rng : numpy.random.Generator

    Returns
    -------
    postures : ndarray, shape (n_seg + 1, 5), rad
    bounds : ndarray, shape (n_seg + 1,), s
        Segment ``i`` moves from ``postures[i]`` to ``postures[i + 1]`` during
        ``[bounds[i], bounds[i + 1]]``; before ``bounds[0]`` (0.5 s) the arm holds.
    """
    n_seg = int(np.ceil((duration - _HOLD_S) / _SEG_S[0])) + 1
    pts = _via_points(movement, n_seg, rng)
    dur = rng.uniform(*_SEG_S, n_seg)
    return pts, _HOLD_S + np.concatenate([[0.0], np.cumsum(dur)])


def nominal_movement(
    plan: tuple[np.ndarray, np.ndarray], t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nominal joint trajectory: minimum-jerk segments between the postures of ``plan``.

    Parameters
    ----------
    plan : (postures, bounds) from :func:`movement_plan`
    t : ndarray, shape (N,), s

    Returns
    -------
    q, qd, qdd : ndarrays, shape (N, 5)
        rad, rad/s, rad/s^2 (C2-continuous: minimum-jerk quintics start and end at rest).
    """
    pts, bounds = plan
    n_seg = pts.shape[0] - 1
    t = np.asarray(t, dtype=float)
    i = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, n_seg - 1)
    D = (bounds[i + 1] - bounds[i])[:, None]
    tau = np.clip((t - bounds[i])[:, None] / D, 0.0, 1.0)
    dq = pts[i + 1] - pts[i]
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    sd = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / D
    sdd = (60 * tau - 180 * tau**2 + 120 * tau**3) / D**2
    return pts[i] + dq * s, dq * sd, dq * sdd


def _smooth_noise(rng: np.random.Generator, n: int, m: int, fs: float, fc: float) -> np.ndarray:
    """Zero-phase 2nd-order low-passed white noise, unit standard deviation, shape (n, m)."""
    pad = int(2 * fs / fc)
    w = rng.standard_normal((n + 2 * pad, m))
    b, a = sps.butter(2, fc / (fs / 2))
    z = sps.filtfilt(b, a, w, axis=0)[pad:-pad]
    return z / z.std(axis=0, keepdims=True)


# ----------------------------------------------------------------------------- torques
def joint_limit_torque(q: jnp.ndarray) -> jnp.ndarray:
    """Passive joint-limit torque ``k (exp(s (lo - q)) - exp(s (q - hi)))``, shape (..., 5), Nm.

    Chosen soft stops (module docstring): pushes back inside :data:`JOINT_RANGES`.
    """
    lo, hi = JOINT_RANGES[:, 0], JOINT_RANGES[:, 1]
    return _LIMIT_K * (jnp.exp(_LIMIT_S * (lo - q)) - jnp.exp(_LIMIT_S * (q - hi)))


def _muscle_state(params: MTUParams, geom: MuscleGeometry, q, qd, a):
    """Forces (16,), torques (5,), lengths, velocities (16,), moment arms (16, 5)."""
    lmt = mtu_length(q, geom)
    R = moment_arms(q, geom)
    vmt = -R @ qd
    f = mtu_force(params, a, lmt, vmt, "rigid")  # 002:Eq.15 with a rigid tendon
    return f, R.T @ f, lmt, vmt, R  # tau_m = J_m^T f_m, 002:Eq.1


def design_activations(
    q: np.ndarray,
    qd: np.ndarray,
    tau_req: np.ndarray,
    floor: np.ndarray,
    params: MTUParams,
    geom: MuscleGeometry = DEFAULT_MUSCLE_GEOMETRY,
    rho: float = 1e6,
) -> np.ndarray:
    """Static optimization: activations whose muscle torques best give ``tau_req``.

    Solves, per sample, ``min_a sum_m a_m^2 + rho ||B a + J_m^T f_p - tau_req||^2`` subject to
    ``a >= floor``, where ``f = a * f_a + f_p`` is the rigid-tendon MTU force, affine in
    ``a`` (so the problem is a non-negative least-squares problem in ``a - floor``, solved
    exactly by Lawson-Hanson NNLS); activations above 1 (never reached by the default
    movements) are clipped, and the PD tracking absorbs the shortfall.

    Parameters
    ----------
    q, qd : ndarrays, shape (T, 5)
    tau_req : ndarray, shape (T, 5), Nm
    floor : ndarray, shape (T, 16)
        Lower activation bound (co-contraction), in [0, 1).
    params : MTUParams
    rho : float, 1/Nm^2
        Torque-matching weight.

    Returns
    -------
    ndarray, shape (T, 16)
    """
    T, Tp = q.shape[0], _padded_length(q.shape[0])
    qp, qdp = _pad(q, Tp), _pad(qd, Tp)
    blocks = [_force_basis(jnp.asarray(qp[i : i + CHUNK]), jnp.asarray(qdp[i : i + CHUNK]),
                           params, geom) for i in range(0, Tp, CHUNK)]
    R, f_a, f_p = (np.concatenate(b, axis=0)[:T] for b in zip(*blocks))
    B = np.einsum("tmj,tm->tjm", R, f_a)  # (T, 5, 16)
    rhs = tau_req - np.einsum("tmj,tm->tj", R, f_p)
    sr = np.sqrt(rho)
    out = np.empty_like(floor)
    for k in range(q.shape[0]):
        # a = floor + y, y >= 0: non-negative least squares (Lawson-Hanson)
        A = np.vstack([sr * B[k], np.eye(N_MUSCLES)])
        b = np.concatenate([sr * rhs[k], np.zeros(N_MUSCLES)]) - A @ floor[k]
        y, _ = optimize.nnls(A, b)
        out[k] = np.minimum(floor[k] + y, 1.0)
    return out


@jax.jit
def _force_basis(q, qd, params, geom):
    """Moment arms (T, 16, 5) and the affine force basis f = a f_a + f_p (T, 16) each, N."""
    lmt = mtu_length(q, geom)
    R = moment_arms(q, geom)
    vmt = -jnp.einsum("tmj,tj->tm", R, qd)
    f_p = mtu_force(params, jnp.zeros_like(lmt), lmt, vmt, "rigid")
    f_a = mtu_force(params, jnp.ones_like(lmt), lmt, vmt, "rigid") - f_p
    return R, f_a, f_p


@jax.jit
def _inverse_dynamics_batch(q, qd, qdd, pi, q_ref):
    """RNEA torques (T, 5) and the diagonal of M at ``q_ref`` (5,)."""
    tau = jax.vmap(lambda a, b, c: rigid.inverse_dynamics(a, b, c, pi))(q, qd, qdd)
    return tau, jnp.diag(rigid.mass_matrix(q_ref, pi))


@partial(jax.jit, static_argnames=("fs",))
def _activation_chain(e, params, fs):
    """EMG -> neural excitation (002:Eq.19-21) -> activation (002:Eq.17-18), (T, 16) each."""
    u = neural_activation(e, params.c1, params.c2, params.delay, fs)
    return u, first_order_activation(u, params.t_act, params.t_deact, fs)


def invert_activation(a: np.ndarray, t_act: float, t_deact: float, fs: float) -> np.ndarray:
    """Neural excitation ``u`` that makes :func:`plants.muscle.first_order_activation` return
    ``a`` (002:Eq.17-18 in its exponential-Euler form), clipped to [0, 1].

    ``a[k+1] = u[k] + (a[k] - u[k]) E`` with ``E = exp(-dt / t(u, a[k]))``: the branch of
    002:Eq.18 follows from the sign of ``a[k+1] - a[k]``, then ``u[k] = (a[k+1] - E a[k]) /
    (1 - E)``. The last sample repeats.

    Parameters
    ----------
    a : ndarray, shape (T, M), in [0, 1]
    t_act, t_deact : float, s
    fs : float, Hz

    Returns
    -------
    ndarray, shape (T, M)
    """
    dt = 1.0 / fs
    a0, a1 = a[:-1], a[1:]
    g = 0.5 + 1.5 * a0
    tau = np.where(a1 > a0, t_act * g, t_deact / g)  # 002:Eq.18
    E = np.exp(-dt / tau)
    u = (a1 - E * a0) / (1.0 - E)  # 002:Eq.17, solved for u
    u = np.vstack([u, u[-1:]])
    return np.clip(u, 0.0, 1.0)


def invert_excitation(
    u: np.ndarray, c1: float, c2: float, delay: float, fs: float
) -> np.ndarray:
    """EMG ``e`` whose filtered, delayed version (002:Eq.19-21) is ``u``.

    Undoes the recursive filter (``e_d[k] = (u[k] + beta1 u[k-1] + beta2 u[k-2]) / alpha``,
    steady-state start) and then the two-tap continuous delay ``e_d[k] = gamma e[k - d_l] +
    (1 - gamma) e[k - d_l - 1]`` by a stable recursion (forward when ``gamma >= 1/2``, else
    backward). Samples needed beyond the record end repeat the last one.

    Parameters
    ----------
    u : ndarray, shape (T, M)
    c1, c2 : float
        002:Eq.20 coefficients at ``fs``.
    delay : float, s
    fs : float, Hz

    Returns
    -------
    ndarray, shape (T, M) (not clipped)
    """
    beta1, beta2 = c1 + c2, c1 * c2
    alpha = 1.0 + beta1 + beta2  # 002:Eq.20
    up = np.vstack([u[:1], u[:1], u])
    e_d = (up[2:] + beta1 * up[1:-1] + beta2 * up[:-2]) / alpha  # 002:Eq.19 solved for e
    n = delay * fs
    dl = int(np.floor(n))
    gamma = 1.0 - (n - dl)  # 002:Eq.21
    T = u.shape[0]
    if gamma >= 0.5:
        # e_d[m + dl] = gamma e[m] + (1 - gamma) e[m - 1]: forward recursion, |pole| <= 1
        x = e_d[np.minimum(np.arange(T) + dl, T - 1)]
        b, a_ = [1.0 / gamma], [1.0, (1.0 - gamma) / gamma]
        e, _ = sps.lfilter(b, a_, x, axis=0, zi=sps.lfilter_zi(b, a_)[:, None] * x[0][None, :])
        return e
    # e_d[m + dl + 1] = (1 - gamma) e[m] + gamma e[m + 1]: backward recursion, |pole| < 1
    x = e_d[np.minimum(np.arange(T) + dl + 1, T - 1)][::-1]
    b, a_ = [1.0 / (1.0 - gamma)], [1.0, gamma / (1.0 - gamma)]
    e, _ = sps.lfilter(b, a_, x, axis=0, zi=sps.lfilter_zi(b, a_)[:, None] * x[0][None, :])
    return e[::-1]


# ----------------------------------------------------------------------------- forward
def _forward_dynamics(q, qd, tau, pi):
    """``qdd = M^-1 (tau - tau_bias)`` (002:Eq.4) with M and the bias torques from ONE vmapped
    RNEA over six rows (five unit accelerations without gravity and velocity, one bias row):
    the same result as :func:`rigid.forward_dynamics` with half the traced graph."""
    QD = jnp.concatenate([jnp.zeros((N_DOF, N_DOF)), qd[None]], axis=0)
    QDD = jnp.concatenate([jnp.eye(N_DOF), jnp.zeros((1, N_DOF))], axis=0)
    G = jnp.concatenate([jnp.zeros(N_DOF), jnp.array([rigid.GRAVITY])])
    rows = jax.vmap(
        lambda v, acc, g: rigid.inverse_dynamics(q, v, acc, pi, rigid.DEFAULT_GEOMETRY, g)
    )(QD, QDD, G)
    M = rows[:N_DOF].T
    M = 0.5 * (M + M.T)
    return jnp.linalg.solve(M, tau - rows[N_DOF])


#: Samples per compiled block: every jitted kernel runs on blocks of this length (records are
#: padded by repeating their last sample), so one compilation serves every record length.
CHUNK = 100


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    """Pad ``x`` along axis 0 to length ``n`` by repeating its last row."""
    x = np.asarray(x)
    if x.shape[0] >= n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n - x.shape[0], axis=0)], axis=0)


def _padded_length(T: int) -> int:
    return -(-T // CHUNK) * CHUNK


_RK4_C = jnp.array([0.0, 0.5, 0.5, 1.0])  # stage times (fraction of the step)
_RK4_B = jnp.array([1.0, 2.0, 2.0, 1.0]) / 6.0  # stage weights


@partial(jax.jit, static_argnames=("substeps",))
def _integrate(x0, act, qn, qdn, params, geom, pi, kp, kd, fs, substeps: int):
    """Classical RK4 over samples (scan) and ``substeps`` steps per sample.

    The four stages of every step run in one ``fori_loop`` over ``4 substeps`` stage
    evaluations, so the dynamics appear once in the traced graph (short compile); the record
    of a sample is the first stage's evaluation at the sample's state.

    act : (T + 1, 16) activations at the samples (linear in between); qn, qdn :
    (T, 2 substeps + 1, 5) nominal trajectory on the half-step grid of each sample interval.
    """
    h = 1.0 / (fs * substeps)

    def parts(x, a, q_n, qd_n):
        q, qd = x[:N_DOF], x[N_DOF:]
        f, tau_m, lmt, vmt, R = _muscle_state(params, geom, q, qd, a)
        tau_p = joint_limit_torque(q)
        tau_c = kp * (q_n - q) + kd * (qd_n - qd)
        qdd = _forward_dynamics(q, qd, tau_m + tau_p + tau_c, pi)
        return qdd, (f, tau_m, tau_p, tau_c, lmt, vmt, R)

    def sample(x, inp):
        a0, a1, q_n, qd_n = inp

        def stage(i, carry):
            x, k_prev, acc, rec = carry
            j, st = i // 4, i % 4
            c = _RK4_C[st]
            xs = x + c * h * k_prev
            w = (j + c) / substeps
            idx = 2 * j + (2 * c).astype(jnp.int32)
            qdd, r = parts(xs, (1.0 - w) * a0 + w * a1, q_n[idx], qd_n[idx])
            k = jnp.concatenate([xs[N_DOF:], qdd])
            acc = acc + _RK4_B[st] * k
            first = i == 0
            rec = jax.tree_util.tree_map(lambda new, old: jnp.where(first, new, old),
                                         (qdd, r), rec)
            done = st == 3
            x = jnp.where(done, x + h * acc, x)
            acc = jnp.where(done, jnp.zeros_like(acc), acc)
            return x, k, acc, rec

        rec0 = jax.eval_shape(parts, x, a0, q_n[0], qd_n[0])
        rec0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), rec0)
        z = jnp.zeros_like(x)
        x_next, _, _, (qdd, rec) = jax.lax.fori_loop(0, 4 * substeps, stage, (x, z, z, rec0))
        return x_next, (x, qdd, rec)

    return jax.lax.scan(sample, x0, (act[:-1], act[1:], qn, qdn))


@dataclass
class ArmTrial:
    """One simulated trial at the recording rate (002 Sec. IV-A data).

    Attributes
    ----------
    t : (T,) s; q, qd, qdd : (T, 5) rad, rad/s, rad/s^2
    emg : (T, 16) preprocessed EMG in [0, 1] (all muscles; superficial = first 11)
    excitation : (T, 16) neural excitation u (002:Eq.19-21); activation : (T, 16) (Eq.17-18)
    lmt : (T, 16) m; vmt : (T, 16) m/s; moment_arm : (T, 16, 5) m (J_m^T per sample)
    force : (T, 16) N; tau_muscle, tau_passive, tau_control : (T, 5) Nm
        Muscle torque J_m^T f_m, passive joint-limit torque, PD tracking torque;
        ``rigid.inverse_dynamics(q, qd, qdd)`` equals their sum.
    q_nominal : (T, 5) rad; fs : Hz; movement : str
    """

    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    emg: np.ndarray
    excitation: np.ndarray
    activation: np.ndarray
    lmt: np.ndarray
    vmt: np.ndarray
    moment_arm: np.ndarray
    force: np.ndarray
    tau_muscle: np.ndarray
    tau_passive: np.ndarray
    tau_control: np.ndarray
    q_nominal: np.ndarray
    fs: float
    movement: str
    info: dict = field(default_factory=dict)


def simulate_arm(
    rng: np.random.Generator,
    movement: str = "reach",
    duration: float = 10.0,
    fs: float = 100.0,
    substeps: int = 10,
    cocontraction: float = 0.05,
    emg_noise: float = 0.05,
    tracking_bandwidth: float = 1.0,
    params: MTUParams | None = None,
    pi: np.ndarray | None = None,
    geom: MuscleGeometry = DEFAULT_MUSCLE_GEOMETRY,
) -> ArmTrial:
    """Simulate one trial (module docstring, steps 1-5).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw (postures, segment durations, co-contraction, EMG).
    movement : {"reach", "flexion_pronation"}
    duration : float, s
    fs : float, Hz
        Recording (and EMG-model) rate; chosen default 100 Hz (002 does not state it).
    substeps : int
        RK4 steps per sample.
    cocontraction : float
        Mean of the irregular co-contraction activation floor.
    emg_noise : float
        Relative std of the smooth multiplicative EMG fluctuation.
    tracking_bandwidth : float, Hz
        Bandwidth of the weak PD tracking of the nominal movement (0: none).
    params : MTUParams, optional
        Muscle parameters at ``fs`` (default :func:`default_muscle_params(fs)`).
    pi : ndarray, shape (3, 10), optional
        Inertial parameters (default :func:`rigid.default_inertial_parameters`).

    Returns
    -------
    ArmTrial
    """
    if movement not in MOVEMENTS:
        raise InvalidParameterError(
            f"The 'movement' parameter must be one of {MOVEMENTS}. Got {movement!r} instead."
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
    params = default_muscle_params(fs) if params is None else params
    pi = rigid.default_inertial_parameters() if pi is None else np.asarray(pi, dtype=float)
    T = round(duration * fs)
    t = np.arange(T) / fs
    # 1. nominal movement at the samples and on the half-sub-step grid of each interval
    plan = movement_plan(movement, duration, rng)
    q_n, qd_n, qdd_n = nominal_movement(plan, t)
    fine = (np.arange(T)[:, None] + np.arange(2 * substeps + 1)[None, :] / (2 * substeps)) / fs
    qf, qdf, _ = nominal_movement(plan, fine.ravel())
    qf = qf.reshape(T, 2 * substeps + 1, N_DOF)
    qdf = qdf.reshape(T, 2 * substeps + 1, N_DOF)
    # 2. irregular co-contraction floor
    z = _smooth_noise(rng, T, N_MUSCLES, fs, 2.0)
    floor = np.clip(cocontraction * 2.0 / (1.0 + np.exp(-2.0 * z)), 0.0, 0.9)
    # 3. activations for the nominal movement (static optimization)
    pij = jnp.asarray(pi)
    Tp = _padded_length(T)
    padded = [_pad(v, Tp) for v in (q_n, qd_n, qdd_n)]
    blocks = [_inverse_dynamics_batch(*(jnp.asarray(v[i : i + CHUNK]) for v in padded), pij,
                                      geom.q_ref) for i in range(0, Tp, CHUNK)]
    tau_req = np.concatenate([b[0] for b in blocks])[:T] - np.asarray(joint_limit_torque(q_n))
    m_diag = np.asarray(blocks[0][1])
    a_des = design_activations(q_n, qd_n, tau_req, floor, params, geom)
    # 4. EMG by inverting 002:Eq.17-21, made irregular
    p0 = {k: float(np.asarray(v)[0]) for k, v in params._asdict().items()}
    u_des = invert_activation(a_des, p0["t_act"], p0["t_deact"], fs)
    e = invert_excitation(u_des, p0["c1"], p0["c2"], p0["delay"], fs)
    e = np.clip(e * (1.0 + emg_noise * _smooth_noise(rng, T, N_MUSCLES, fs, 4.0)), 0.0, 1.0)
    # 5. forward: EMG -> u (002:Eq.19-21) -> a (002:Eq.17-18) -> forces -> motion
    # (causal: padding the end changes nothing before it; power-of-two block counts bound the
    # number of compilations of this sequential kernel)
    T2 = CHUNK * 2 ** int(np.ceil(np.log2(Tp // CHUNK)))
    u, a = (np.asarray(v)[:T] for v in _activation_chain(jnp.asarray(_pad(e, T2)), params,
                                                          float(fs)))
    act = _pad(a, Tp + 1)
    qf, qdf = _pad(qf, Tp), _pad(qdf, Tp)
    w = 2 * np.pi * tracking_bandwidth
    kp, kd = w**2 * m_diag, 2.0 * w * m_diag  # critically damped PD, per DoF
    x = jnp.concatenate([jnp.asarray(q_n[0]), jnp.asarray(qd_n[0])])
    blocks = []
    for i in range(0, Tp, CHUNK):
        x, out = _integrate(
            x, jnp.asarray(act[i : i + CHUNK + 1]), jnp.asarray(qf[i : i + CHUNK]),
            jnp.asarray(qdf[i : i + CHUNK]), params, geom, pij, jnp.asarray(kp),
            jnp.asarray(kd), float(fs), substeps=int(substeps),
        )
        blocks.append(out)
    out = jax.tree_util.tree_map(lambda *b: np.concatenate(b, axis=0)[:T], *blocks)
    x, qdd, (f, tau_m, tau_p, tau_c, lmt, vmt, R) = out
    x = np.asarray(x)
    return ArmTrial(
        t=t, q=x[:, :N_DOF], qd=x[:, N_DOF:], qdd=np.asarray(qdd), emg=e,
        excitation=np.asarray(u), activation=np.asarray(a), lmt=np.asarray(lmt),
        vmt=np.asarray(vmt), moment_arm=np.asarray(R), force=np.asarray(f),
        tau_muscle=np.asarray(tau_m), tau_passive=np.asarray(tau_p),
        tau_control=np.asarray(tau_c), q_nominal=q_n, fs=float(fs), movement=movement,
        info={"activation_design": a_des, "pd_gains": (kp, kd), "substeps": int(substeps)},
    )


# ----------------------------------------------------------------------------- plant
class ArmPlant(Plant):
    """Synthetic 5-DoF arm with 11 superficial and 5 deep muscles (002 Sec. III, IV-A).

    Parameters
    ----------
    movement : {"reach", "flexion_pronation", "both"}
        Movement(s) simulated; ``"both"`` gives 002's two training trials (S = 2).
    duration : float, s
        Length of each trial.
    fs : float, Hz
        Recording rate (chosen default 100 Hz).
    substeps : int
        RK4 steps per sample.
    cocontraction, emg_noise, tracking_bandwidth : float
        See :func:`simulate_arm`.
    """

    name: ClassVar[str] = "arm"
    _parameter_constraints: ClassVar[dict] = {
        "movement": [Options((*MOVEMENTS, "both"))],
        "duration": [Interval(float, 1.0, 3600.0)],
        "fs": [Interval(float, 20.0, 2000.0)],
        "substeps": [Interval(int, 1, 100)],
        "cocontraction": [Interval(float, 0.0, 0.3)],
        "emg_noise": [Interval(float, 0.0, 1.0)],
        "tracking_bandwidth": [Interval(float, 0.0, 10.0)],
    }

    def __init__(
        self,
        *,
        movement: str = "both",
        duration: float = 10.0,
        fs: float = 100.0,
        substeps: int = 10,
        cocontraction: float = 0.05,
        emg_noise: float = 0.05,
        tracking_bandwidth: float = 1.0,
    ) -> None:
        self.movement = movement
        self.duration = duration
        self.fs = fs
        self.substeps = substeps
        self.cocontraction = cocontraction
        self.emg_noise = emg_noise
        self.tracking_bandwidth = tracking_bandwidth

    @classmethod
    def with_settings_of(cls, plant: Any, movement: str) -> ArmPlant:
        """The simulation of ``movement`` with the settings (duration, fs, substeps,
        cocontraction, emg_noise, tracking_bandwidth) a wrapping plant carries."""
        return cls(movement=movement, duration=float(plant.duration), fs=float(plant.fs),
                   substeps=int(plant.substeps), cocontraction=float(plant.cocontraction),
                   emg_noise=float(plant.emg_noise),
                   tracking_bandwidth=float(plant.tracking_bandwidth))

    def simulate(self, rng: np.random.Generator) -> MuscleData:
        """Simulate the trial(s).

        Returns
        -------
        MuscleData
            ``excitation`` (S, T, 16) EMG of all muscles (superficial = first 11), ``angle``
            (S, T, 5), ``torque`` (S, T, 5) muscle torque ``J_m^T f_m``, ``lmt`` (S, T, 16),
            ``moment_arm`` (S, T, 16, 5); ``truth`` = :func:`plants.arm.truth.ground_truth`;
            ``meta``: ``qd``, ``qdd``, ``vmt``, ``force``, ``activation``, ``tau_passive``,
            ``tau_control`` (S, T, ...), ``movements``, ``superficial``/``deep`` names.
        """
        from plants.arm.truth import ground_truth

        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
        movements = MOVEMENTS if self.movement == "both" else (self.movement,)
        trials = [
            simulate_arm(
                rng, movement=m, duration=float(self.duration), fs=float(self.fs),
                substeps=int(self.substeps), cocontraction=float(self.cocontraction),
                emg_noise=float(self.emg_noise),
                tracking_bandwidth=float(self.tracking_bandwidth),
            )
            for m in movements
        ]
        st = lambda name: np.stack([getattr(tr, name) for tr in trials])  # noqa: E731
        return MuscleData(
            excitation=st("emg"), angle=st("q"), torque=st("tau_muscle"), fs=float(self.fs),
            lmt=st("lmt"), moment_arm=st("moment_arm"), channels=list(MUSCLES),
            muscles=list(MUSCLES), dofs=list(DOF_NAMES), truth=ground_truth(float(self.fs)),
            meta={
                "qd": st("qd"), "qdd": st("qdd"), "vmt": st("vmt"), "force": st("force"),
                "activation": st("activation"), "neural_excitation": st("excitation"),
                "tau_passive": st("tau_passive"), "tau_control": st("tau_control"),
                "q_nominal": st("q_nominal"), "movements": list(movements),
                "superficial": list(MUSCLES[:11]), "deep": list(MUSCLES[11:]),
            },
        )
