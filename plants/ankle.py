"""Synthetic 7-MTU ankle in the dynamometer experiment of 000 Sec. 2.2-2.3.

Ground truth for EMG-driven calibration and for impedance estimation at the same time:

* **Model** (000 Sec. 2.4): soleus, gastrocnemius medialis and lateralis, tibialis anterior,
  peroneus longus, brevis and tertius; 5 EMG channels (TA, SOL, GM, GL, PL) with the PL EMG
  driving PL and PB and the TA EMG driving TA and PT (000 Sec. 2.4, "Activation dynamics").
  MTU forces from :mod:`plants.muscle` (Hill-type, De Groote 2016 curves, elastic tendon).
  Generic MTU parameters from the gait2392 OpenSim model (Delp et al. 1990), the model 000
  scaled (000 Sec. 2.5); values read from ``gait2392_simbody.osim``.
* **Kinematics**: knee fixed at 45 deg (000 Sec. 2.2); MTU length a quadratic function of the
  ankle angle, ``L(theta) = L0 - r0 theta - r1 theta^2 / 2``, so the moment arm is exactly
  ``r = -dL/dtheta = r0 + r1 theta`` and ``dr/dtheta = r1`` (000:Eq.7), fitted to the
  gait2392 via-point path lengths (:func:`gait2392_mtu_length`, error < 0.05 mm over
  +-0.25 rad). Angle convention (gait2392): dorsiflexion positive; torque positive =
  dorsiflexion.
* **Experiment** (000 Sec. 2.2): sinusoidal ankle-angle tracking (0.15 rad, 0.6 Hz) against a
  dynamometer rendering an inertia-spring-damper (1 kg m^2, 2.5 Nms/rad, 60 Nm/rad); optional
  PRBS angle perturbations (0.03 rad, 0.15 s switching) imposed by the dynamometer. The task
  frequency is snapped to an integer number of output samples per cycle (0.6 Hz -> 128/213 Hz
  = 0.60094 Hz at 128 Hz) so that cycles cut exactly into realizations.
* **Excitations**: three synergies (plantarflexion, dorsiflexion, co-contraction) whose
  weights are solved sample by sample so that the quasi-static muscle torque equals the torque
  the dynamometer requires; advanced by the electromechanical delay and the activation filter's
  lag; multiplied by smooth random fluctuations. The muscles are driven by these true
  excitations and their states are integrated forward at 2048 Hz (Rosenbrock tendon by
  default), so in perturbed trials the torque is the muscles' response to the imposed angle.
* **Measurements** (000 Sec. 2.3): raw EMG synthesized as excitation-modulated band-limited
  noise plus sensor noise, band-passed (20-300 Hz), rectified, low-passed (3 Hz, both zero-lag
  2nd order Butterworth) and normalized to a simulated MVC; torque and angle low-passed (80 Hz,
  zero-lag 4th order) and everything resampled to ``fs_out`` (128 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal

from bench.base import Plant
from bench.emg import envelope
from bench.errors import InvalidParameterError
from bench.params import Interval, Options
from bench.types import MuscleData
from plants.muscle import (
    MTUParams,
    activation_shape,
    make_params,
    mtu_force,
    params_to_dict,
    resample_recursive_coefficients,
    simulate_torque,
)

__all__ = [
    "CHANNELS",
    "EMG_MAP",
    "MUSCLES",
    "AnkleKinematics",
    "AnklePlant",
    "default_ankle_kinematics",
    "default_ankle_params",
    "prbs",
]

MUSCLES = ("soleus", "gas_med", "gas_lat", "tib_ant", "per_long", "per_brev", "per_tert")
CHANNELS = ("tib_ant", "soleus", "gas_med", "gas_lat", "per_long")
#: (7 MTUs, 5 EMG channels): PL EMG drives PL and PB, TA EMG drives TA and PT (000 Sec. 2.4).
EMG_MAP = np.array(
    [
        [0, 1, 0, 0, 0],  # soleus   <- SOL
        [0, 0, 1, 0, 0],  # gas_med  <- GM
        [0, 0, 0, 1, 0],  # gas_lat  <- GL
        [1, 0, 0, 0, 0],  # tib_ant  <- TA
        [0, 0, 0, 0, 1],  # per_long <- PL
        [0, 0, 0, 0, 1],  # per_brev <- PL
        [1, 0, 0, 0, 0],  # per_tert <- TA
    ],
    dtype=float,
)

# gait2392 (Delp et al. 1990; OpenSim gait2392_simbody.osim, right leg): max isometric force
# (N), optimal fibre length (m), tendon slack length (m), pennation at optimal length (rad).
_GAIT2392 = {
    "soleus": (3549.0, 0.050, 0.250, 0.43633231),
    "gas_med": (1558.0, 0.060, 0.390, 0.29670597),
    "gas_lat": (683.0, 0.064, 0.380, 0.13962634),
    "tib_ant": (905.0, 0.098, 0.223, 0.08726646),
    "per_long": (943.0, 0.049, 0.345, 0.17453293),
    "per_brev": (435.0, 0.050, 0.161, 0.08726646),
    "per_tert": (180.0, 0.079, 0.100, 0.22689280),
}
# Model choices (not published values; 000 calibrates them): activation shape factor A in
# (-3, 0), recursive-filter poles (C1 = C2 = -0.6 at 128 Hz, a critically damped filter with a
# 15 ms time constant), electromechanical delay 35 ms (001 Sec. II-A).
_SHAPE = (-1.5, -1.2, -1.2, -2.0, -1.0, -1.0, -2.0)
_C_AT_128 = -0.6
_DELAY = 0.035
# gait2392 musculoskeletal geometry (Delp et al. 1990; gait2392_simbody.osim, right leg), m:
# via points per MTU as (body, location): "t" tibia_r, "f" femur_r, "c" calcn_r. The
# gastrocnemius ConditionalPathPoints (active for knee_angle_r in [-0.785398, 0.174533]) are
# inactive at exactly 45 deg of flexion (-pi/4 < -0.785398) and omitted. No wrap objects.
_PATHS = {
    "soleus": (("t", (-0.0024, -0.1533, 0.0071)), ("c", (0.0, 0.031, -0.0053))),
    "gas_med": (("f", (-0.019, -0.3929, -0.0235)), ("c", (0.0, 0.031, -0.0053))),
    "gas_lat": (("f", (-0.022, -0.3946, 0.0272)), ("c", (0.0, 0.031, -0.0053))),
    "tib_ant": (
        ("t", (0.0179, -0.1624, 0.0115)), ("t", (0.0329, -0.3951, -0.0177)),
        ("c", (0.1166, 0.0178, -0.0305)),
    ),
    "per_long": (
        ("t", (0.0005, -0.1568, 0.0362)), ("t", (-0.0207, -0.4205, 0.0286)),
        ("t", (-0.0162, -0.4319, 0.0289)), ("c", (0.0438, 0.023, 0.0221)),
        ("c", (0.0681, 0.0106, 0.0284)), ("c", (0.0852, 0.0069, 0.0118)),
        ("c", (0.1203, 0.0085, -0.0184)),
    ),
    "per_brev": (
        ("t", (-0.007, -0.2646, 0.0325)), ("t", (-0.0198, -0.4184, 0.0283)),
        ("t", (-0.0144, -0.4295, 0.0289)), ("c", (0.0471, 0.027, 0.0233)),
        ("c", (0.0677, 0.0219, 0.0343)),
    ),
    "per_tert": (
        ("t", (0.001, -0.2804, 0.0231)), ("t", (0.0229, -0.4069, 0.0159)),
        ("c", (0.0857, 0.0228, 0.0299)),
    ),
}
# ankle_r: talus in tibia at (0, -0.43, 0), rotation ankle_angle_r (dorsiflexion +) about
# _ANKLE_AXIS; subtalar_r (angle 0): calcn in talus at _SUBTALAR_LOC. knee_r: tibia in femur,
# rotation knee_angle_r about z and translations given by natural cubic splines (_KNEE_TX/TY).
_ANKLE_AXIS = (-0.10501355, -0.17402245, 0.97912632)
_ANKLE_LOC = (0.0, -0.43, 0.0)
_SUBTALAR_LOC = (-0.04877, -0.04195, 0.00792)
_KNEE_TX = (
    (-2.0944, -1.74533, -1.39626, -1.0472, -0.698132, -0.349066, -0.174533, 0.197344,
     0.337395, 0.490178, 1.52146, 2.0944),
    (-0.0032, 0.00179, 0.00411, 0.0041, 0.00212, -0.001, -0.0031, -0.005227, -0.005435,
     -0.005574, -0.005435, -0.00525),
)
_KNEE_TY = (
    (-2.0944, -1.22173, -0.523599, -0.349066, -0.174533, 0.159149, 2.0944),
    (-0.4226, -0.4082, -0.399, -0.3976, -0.3966, -0.395264, -0.396),
)
KNEE_ANGLE = -np.pi / 4  # 45 deg of flexion (000 Sec. 2.2), gait2392 sign convention
_FIT_RANGE = 0.25  # rad: ankle angles over which the quadratic kinematics are fitted


def _rotation(axis, q):
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(q) * k + (1 - np.cos(q)) * (k @ k)


def gait2392_mtu_length(theta: np.ndarray, knee_angle: float = KNEE_ANGLE) -> np.ndarray:
    """Via-point MTU path lengths of the gait2392 model (m), order :data:`MUSCLES`.

    Parameters
    ----------
    theta : array, shape (K,)
        Ankle angle (``ankle_angle_r``), rad, dorsiflexion positive.
    knee_angle : float
        ``knee_angle_r``, rad (negative = flexion).

    Returns
    -------
    ndarray, shape (K, 7)
    """
    from scipy.interpolate import CubicSpline

    tx = CubicSpline(*_KNEE_TX, bc_type="natural")(knee_angle)
    ty = CubicSpline(*_KNEE_TY, bc_type="natural")(knee_angle)
    r_knee = _rotation((0.0, 0.0, 1.0), knee_angle)
    t_knee = np.array([tx, ty, 0.0])
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    out = np.empty((theta.size, len(MUSCLES)))
    for k, q in enumerate(theta):
        r_ank = _rotation(_ANKLE_AXIS, q)
        for m, name in enumerate(MUSCLES):
            pts = []
            for body, loc in _PATHS[name]:
                p = np.asarray(loc)
                if body == "f":
                    p = r_knee.T @ (p - t_knee)  # femur -> tibia frame
                elif body == "c":
                    p = np.asarray(_ANKLE_LOC) + r_ank @ (np.asarray(_SUBTALAR_LOC) + p)
                pts.append(p)
            out[k, m] = np.sum(np.linalg.norm(np.diff(np.array(pts), axis=0), axis=1))
    return out


def default_ankle_params(fs_model: float = 128.0) -> MTUParams:
    """True MTU parameters of the synthetic ankle (order :data:`MUSCLES`).

    Parameters
    ----------
    fs_model : float, Hz
        Sampling rate at which ``c1, c2`` (001:Eq.1) are expressed (the rate of the
        ``MuscleData`` the calibrators receive).
    """
    g = np.array([_GAIT2392[m] for m in MUSCLES])
    c = float(resample_recursive_coefficients(_C_AT_128, 128.0, fs_model))
    return make_params(
        g[:, 0], g[:, 1], g[:, 2], g[:, 3], shape=np.array(_SHAPE), c1=c, c2=c, delay=_DELAY
    )


@dataclass(frozen=True)
class AnkleKinematics:
    """MTU length and moment arm as smooth functions of the ankle angle (knee at 45 deg).

    ``L(theta) = l0 - r0 theta - r1 theta^2 / 2`` (m); ``r(theta) = -dL/dtheta = r0 + r1 theta``
    (m); ``dr/dtheta = r1`` (m/rad). Arrays of shape (M,). All methods accept ``theta`` of any
    shape ``(...)`` (rad, dorsiflexion positive) and return ``(..., M)``; JAX-traceable.
    """

    l0: tuple
    r0: tuple
    r1: tuple

    def lmt(self, theta):
        th = jnp.asarray(theta)[..., None]
        return jnp.asarray(self.l0) - jnp.asarray(self.r0) * th - 0.5 * jnp.asarray(self.r1) * th**2

    def moment_arm(self, theta):
        th = jnp.asarray(theta)[..., None]
        return jnp.asarray(self.r0) + jnp.asarray(self.r1) * th

    def dmoment_arm(self, theta):
        return jnp.broadcast_to(jnp.asarray(self.r1), (*jnp.shape(theta), len(self.r1)))

    def as_dict(self) -> dict:
        return {"l0": list(self.l0), "r0": list(self.r0), "r1": list(self.r1)}


def default_ankle_kinematics(knee_angle: float = KNEE_ANGLE) -> AnkleKinematics:
    """Quadratic MTU kinematics fitted to the gait2392 path lengths at the given knee angle.

    Least squares of ``L(theta) = l0 - r0 theta - r1 theta^2 / 2`` on 51 ankle angles in
    [-0.25, 0.25] rad; the fit error is below 0.05 mm at 45 deg knee flexion. Resulting neutral
    moment arms: soleus -45 mm, gastrocnemii -46/-47 mm, tibialis anterior +42 mm, peronei
    -9/-5 mm, peroneus tertius +27 mm.
    """
    th = np.linspace(-_FIT_RANGE, _FIT_RANGE, 51)
    lengths = gait2392_mtu_length(th, knee_angle)
    c = np.polyfit(th, lengths, 2)  # rows: theta^2, theta, 1
    return AnkleKinematics(
        tuple(c[2].tolist()), tuple((-c[1]).tolist()), tuple((-2.0 * c[0]).tolist())
    )


def prbs(
    n: int, fs: float, amplitude: float, switch: float, rng: np.random.Generator
) -> np.ndarray:
    """Random binary sequence of +-``amplitude`` holding each level for ``switch`` s.

    Returns
    -------
    ndarray, shape (n,)
    """
    hold = max(1, round(switch * fs))
    levels = rng.choice([-1.0, 1.0], size=n // hold + 1)
    return amplitude * np.repeat(levels, hold)[:n]


def _quasi_static_torque(params, kin, e_ch, theta, vtheta):
    """Equilibrium-tendon torque (Nm) for channel excitations ``e_ch`` (N, 5), no dynamics."""
    a = activation_shape(e_ch @ EMG_MAP.T, params.shape)
    lmt = kin.lmt(theta)
    vmt = -kin.moment_arm(theta) * vtheta[:, None]
    f = mtu_force(params, a, lmt, vmt, tendon="equilibrium")
    return jnp.sum(f * kin.moment_arm(theta), axis=-1)


_W_PF = np.array([0.0, 1.0, 0.9, 0.9, 0.6])  # plantarflexion synergy (TA, SOL, GM, GL, PL)
_W_DF = np.array([1.0, 0.0, 0.0, 0.0, 0.02])  # dorsiflexion synergy
_W_CC = np.array([1.0, 0.2, 0.2, 0.2, 0.2])  # co-contraction synergy (about torque-neutral)


def _sp(x, width=0.02):
    return width * jnp.logaddexp(0.0, x / width)


def _synergy_excitation(s, cocontraction):
    return jnp.clip(
        cocontraction * _W_CC + _sp(-s)[:, None] * _W_PF + _sp(s)[:, None] * _W_DF, 0.0, 1.0
    )


@partial(jax.jit, static_argnums=(1,))
def _design_excitation(params, kin, theta, vtheta, tau_req, cocontraction):
    """Channel excitations (N, 5) from three synergies producing ``tau_req`` quasi-statically.

    ``e = c W_cc + sp(-s) W_pf + sp(s) W_df`` with ``sp`` a softplus (so that the
    plantarflexion and dorsiflexion drives never overlap except through ``c``); the net drive
    ``s(t)`` is found by bisection so that the quasi-static equilibrium-tendon torque equals
    ``tau_req`` (the torque increases monotonically with ``s``).
    """
    lo = jnp.full(theta.shape, -1.0)
    hi = jnp.full(theta.shape, 1.0)

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        e = _synergy_excitation(mid, cocontraction)
        up = _quasi_static_torque(params, kin, e, theta, vtheta) < tau_req
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 50, body, (lo, hi))
    return _synergy_excitation(0.5 * (lo + hi), cocontraction)


@partial(jax.jit, static_argnames=("fs", "tendon"))
def _simulate_trials(params, e, lmt, r, dr, fs, tendon):
    def one_trial(e_s, lmt_s, r_s, dr_s):
        return simulate_torque(
            params, e_s, lmt_s, r_s, fs, dmoment_arm=dr_s, emg_map=EMG_MAP, tendon=tendon
        )

    return jax.vmap(one_trial)(e, lmt, r, dr)


def _smooth_noise(rng, n, m, fs, cutoff):
    b, a = signal.butter(2, cutoff / (fs / 2))
    x = signal.filtfilt(b, a, rng.standard_normal((n + 2 * int(fs), m)), axis=0)[int(fs) : -int(fs)]
    return x / np.std(x, axis=0, keepdims=True)


def _emg_carrier(rng, n, m, fs):
    b, a = signal.butter(4, [20 / (fs / 2), 450 / (fs / 2)], btype="band")
    x = signal.lfilter(b, a, rng.standard_normal((n + 1024, m)), axis=0)[1024:]
    return x / np.std(x, axis=0, keepdims=True)


def _lowpass(x, fs, cutoff, order):
    b, a = signal.butter(order, cutoff / (fs / 2))
    return signal.filtfilt(b, a, x, axis=0)


class AnklePlant(Plant):
    """7-MTU ankle tracking a sinusoid against a perturbing dynamometer (000 Sec. 2.2-2.5).

    Parameters
    ----------
    n_cycles : int
        Task cycles per trial (000 blind-tests on ~60 cycles = 100 s).
    n_trials : int
        Independent trials S (same protocol, fresh noise and perturbations).
    perturbed : bool
        Add PRBS angle perturbations (needed for the SDS reference stiffness).
    tendon : {"rosenbrock", "equilibrium", "rigid"}
        Tendon model of the ground truth.
    fs : float, Hz
        Simulation and acquisition rate (000: 2048 Hz).
    fs_out : float, Hz
        Rate of the returned data (000: torque/angle resampled at 128 Hz); ``fs / fs_out`` must
        be an integer.
    amplitude, frequency : rad, Hz
        Tracking target (000: 0.15 rad, 0.6 Hz).
    prbs_amplitude, prbs_switch : rad, s
        Perturbation (000: 0.03 rad, 0.15 s).
    actuator_bandwidth : Hz
        Cut-off of the dynamometer's position loop (2nd-order low-pass on the PRBS).
    dyn_inertia, dyn_damping, dyn_stiffness : kg m^2, Nms/rad, Nm/rad
        Admittance of the dynamometer (000: 1, 2.5, 60).
    cocontraction : float
        Excitation of the co-contraction synergy.
    excitation_noise : float
        Relative std of the smooth (< 3 Hz) multiplicative excitation fluctuations.
    emg_noise : float
        Additive raw-EMG sensor noise std, relative to the carrier at full excitation.
    torque_noise : float, Nm
        Torque-sensor white noise std.
    """

    name = "ankle"
    _parameter_constraints = {
        "n_cycles": [Interval(int, 1, 1000)],
        "n_trials": [Interval(int, 1, 100)],
        "perturbed": [bool],
        "tendon": [Options(("rosenbrock", "equilibrium", "rigid"))],
        "fs": [Interval(float, 256, 20000)],
        "fs_out": [Interval(float, 16, 20000)],
        "amplitude": [Interval(float, 0, 0.5)],
        "frequency": [Interval(float, 0.05, 5)],
        "prbs_amplitude": [Interval(float, 0, 0.2)],
        "prbs_switch": [Interval(float, 0, 5, closed="neither")],
        "actuator_bandwidth": [Interval(float, 1, 200)],
        "dyn_inertia": [Interval(float, 0, None)],
        "dyn_damping": [Interval(float, 0, None)],
        "dyn_stiffness": [Interval(float, 0, None)],
        "cocontraction": [Interval(float, 0, 0.5)],
        "excitation_noise": [Interval(float, 0, 1)],
        "emg_noise": [Interval(float, 0, 1)],
        "torque_noise": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        *,
        n_cycles: int = 20,
        n_trials: int = 1,
        perturbed: bool = True,
        tendon: str = "rosenbrock",
        fs: float = 2048.0,
        fs_out: float = 128.0,
        amplitude: float = 0.15,
        frequency: float = 0.6,
        prbs_amplitude: float = 0.03,
        prbs_switch: float = 0.15,
        actuator_bandwidth: float = 20.0,
        dyn_inertia: float = 1.0,
        dyn_damping: float = 2.5,
        dyn_stiffness: float = 60.0,
        cocontraction: float = 0.05,
        excitation_noise: float = 0.1,
        emg_noise: float = 0.02,
        torque_noise: float = 0.05,
    ) -> None:
        self.n_cycles = n_cycles
        self.n_trials = n_trials
        self.perturbed = perturbed
        self.tendon = tendon
        self.fs = fs
        self.fs_out = fs_out
        self.amplitude = amplitude
        self.frequency = frequency
        self.prbs_amplitude = prbs_amplitude
        self.prbs_switch = prbs_switch
        self.actuator_bandwidth = actuator_bandwidth
        self.dyn_inertia = dyn_inertia
        self.dyn_damping = dyn_damping
        self.dyn_stiffness = dyn_stiffness
        self.cocontraction = cocontraction
        self.excitation_noise = excitation_noise
        self.emg_noise = emg_noise
        self.torque_noise = torque_noise

    # ------------------------------------------------------------------ grid
    def _grid(self) -> tuple[int, int, float]:
        ratio = self.fs / self.fs_out
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise InvalidParameterError(
                f"fs / fs_out must be a positive integer; got fs={self.fs}, fs_out={self.fs_out}."
            )
        spc_out = round(self.fs_out / self.frequency)
        return round(ratio), spc_out, self.fs_out / spc_out

    @property
    def period(self) -> float:
        """Task cycle actually simulated, s (``round(fs_out / frequency) / fs_out``)."""
        self._validate()
        return 1.0 / self._grid()[2]

    def simulate(self, rng: np.random.Generator) -> MuscleData:
        """Run ``n_trials`` trials of ``n_cycles`` task cycles.

        Returns
        -------
        MuscleData
            At ``fs_out``: processed EMG excitations (S, T, 5), processed angle (S, T, 1) and
            torque (S, T, 1), MTU lengths (S, T, 7) and moment arms (S, T, 7, 1) from the
            kinematics at the processed angle, and ``stiffness`` = the **true** joint stiffness
            K_J(t) (000:Eq.7) at the simulated states (S, T, 1). ``truth`` holds the true
            parameters (``params`` at ``fs_model = fs_out``, kinematics, EMG map); ``meta``
            the true excitations/activations, the perturbation, the cycle length and the
            processed-angle derivative of the moment arms (``dmoment_arm``).
        """
        return self.simulate_with(rng, None)

    def simulate_with(self, rng: np.random.Generator, params: MTUParams | None) -> MuscleData:
        """:meth:`simulate` with given true MTU parameters (a synthetic subject).

        Parameters
        ----------
        rng : numpy.random.Generator
        params : MTUParams or None
            True parameters of the 7 MTUs with ``c1, c2`` at ``fs_out``; None: the generic
            ones (:func:`default_ankle_params`).
        """
        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
        ratio, spc_out, f_task = self._grid()
        fs = float(self.fs)
        n = self.n_cycles * spc_out * ratio
        t = np.arange(n) / fs
        w = 2 * np.pi * f_task

        params_out = default_ankle_params(self.fs_out) if params is None else params
        kin = default_ankle_kinematics()
        c_sim = resample_recursive_coefficients(params_out.c1, self.fs_out, fs)
        params_sim = params_out._replace(c1=c_sim, c2=c_sim)

        # tracking target and the torque the dynamometer requires (000 Sec. 2.2)
        th_trk = self.amplitude * np.sin(w * t)
        vth_trk = self.amplitude * w * np.cos(w * t)
        tau_req = (
            -self.dyn_inertia * w**2 * th_trk + self.dyn_damping * vth_trk
            + self.dyn_stiffness * th_trk
        )
        spc = spc_out * ratio  # the design is periodic: solve one cycle, tile
        e_design = np.asarray(
            _design_excitation(
                params_sim, kin, jnp.asarray(th_trk[:spc]), jnp.asarray(vth_trk[:spc]),
                jnp.asarray(tau_req[:spc]), self.cocontraction,
            )
        )
        e_design = np.tile(e_design, (self.n_cycles, 1))
        # advance by the electromechanical delay and the critically damped filter's lag
        tau_f = -1.0 / (fs * np.log(-float(c_sim[0])))
        adv = round((_DELAY + 2 * tau_f) * fs)
        e_design = np.roll(e_design, -adv, axis=0)  # periodic: n is whole cycles

        S = self.n_trials
        e_true = np.empty((S, n, 5))
        theta = np.empty((S, n))
        pert = np.zeros((S, n))
        b_act, a_act = signal.butter(2, self.actuator_bandwidth / (fs / 2))
        for s in range(S):
            fluct = 1.0 + self.excitation_noise * _smooth_noise(rng, n, 5, fs, 3.0)
            e_true[s] = np.clip(e_design * np.clip(fluct, 0.0, None), 0.0, 1.0)
            if self.perturbed and self.prbs_amplitude > 0:
                pert[s] = signal.lfilter(
                    b_act, a_act, prbs(n, fs, self.prbs_amplitude, self.prbs_switch, rng)
                )
            theta[s] = th_trk + pert[s]

        # muscles integrated forward at fs
        lmt = np.asarray(kin.lmt(theta))
        r = np.asarray(kin.moment_arm(theta))
        dr = np.asarray(kin.dmoment_arm(theta))
        res = _simulate_trials(
            params_sim, jnp.asarray(e_true), jnp.asarray(lmt), jnp.asarray(r), jnp.asarray(dr),
            fs=fs, tendon=self.tendon,
        )
        tau = np.asarray(res.torque)
        k_true = np.asarray(res.stiffness)
        act = np.asarray(res.activation)
        lm = np.asarray(res.mtu.lm)

        # measurements (000 Sec. 2.3)
        tau_meas = tau + self.torque_noise * rng.standard_normal(tau.shape)
        tau_out = _lowpass(tau_meas.T, fs, 80.0, 4).T[:, ::ratio]
        th_out = _lowpass(theta.T, fs, 80.0, 4).T[:, ::ratio]
        k_out = k_true[:, ::ratio]
        n_mvc = int(5 * fs)
        raw_mvc = _emg_carrier(rng, n_mvc, 5, fs) + self.emg_noise * rng.standard_normal((n_mvc, 5))
        env_mvc = envelope(raw_mvc, fs, "000")
        mvc = env_mvc[int(fs) : -int(fs)].max(axis=0)  # 000: normalize by the MVC
        exc_out = np.empty((S, n // ratio, 5))
        for s in range(S):
            raw = e_true[s] * _emg_carrier(rng, n, 5, fs) + self.emg_noise * rng.standard_normal(
                (n, 5)
            )
            exc_out[s] = np.clip(envelope(raw, fs, "000") / mvc, 0.0, None)[::ratio]

        lmt_out = np.asarray(kin.lmt(th_out))
        r_out = np.asarray(kin.moment_arm(th_out))
        dr_out = np.asarray(kin.dmoment_arm(th_out))
        return MuscleData(
            excitation=exc_out,
            angle=th_out[..., None],
            torque=tau_out[..., None],
            fs=float(self.fs_out),
            lmt=lmt_out,
            moment_arm=r_out[..., None],
            stiffness=k_out[..., None],
            channels=list(CHANNELS),
            muscles=list(MUSCLES),
            dofs=["ankle_angle"],
            truth={
                "params": params_to_dict(params_out),
                "fs_model": float(self.fs_out),
                "kinematics": kin.as_dict(),
                "emg_map": EMG_MAP.tolist(),
                "tendon": self.tendon,
                "activation_model": "recursive",
            },
            meta={
                "plant": "ankle",
                "plant_params": self.get_params(),
                "period": 1.0 / f_task,
                "samples_per_cycle": spc_out,
                "task_frequency": f_task,
                "perturbed": bool(self.perturbed),
                "perturbation": pert[:, ::ratio],
                "dmoment_arm": dr_out[..., None],
                "true_excitation": e_true[:, ::ratio],
                "true_activation": act[:, ::ratio],
                "true_torque": tau[:, ::ratio],
                "fiber_length": lm[:, ::ratio],
                "required_torque": tau_req[::ratio],
                "mvc": mvc.tolist(),
                "fs_sim": fs,
            },
        )
