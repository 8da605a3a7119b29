"""The 16 musculotendon units of the synthetic arm (002 Sec. III-B/D/F, Fig. 2).

Eleven superficial muscles (``PECM1-3``, ``DELT1-3``, ``BIClong``, ``BICshort``, ``TRIlong``,
``TRIlat``, ``BRD``) and five deep ones (``INFSP``, ``SUBSC``, ``TRImed``, ``BRA``, ``PQ``) span
the five DoFs of :mod:`plants.arm.rigid` with **exactly** the moment-arm sparsity of 002 Fig. 2:
a muscle's length depends only on the DoFs it spans, so every other moment arm is an exact zero.

Muscle paths (OpenSim wrapping surfaces in 002's reference model) are replaced by smooth
polynomial MTU length functions of the spanned coordinates (chosen; not fitted to MoBL-ARMS):

    l_mt(q) = l0 - sum_j r0_j dq_j - 1/2 sum_j k_j dq_j^2 - 1/2 sum_{j != k} c_jk dq_j dq_k,
    dq = q - q_ref,

so the moment arms ``r = -dl_mt/dq`` (002 Sec. III-C, "partial derivative of the length of a
musculotendon unit relative to a DoF") are ``r0 + k dq + C dq``: 1-5 cm at the reference
posture (plausible magnitudes; the signs follow each muscle's anatomical action), changing by
up to about a third over the movement. :func:`moment_arms` evaluates them as the exact
derivative with :func:`jax.jacfwd`, never from a separate formula.

Sign convention of the coordinates (rigid.py's axes: x anterior, y up, z lateral; right arm):
positive ``q0`` is shoulder flexion, positive ``q1`` moves the hanging arm medially (adduction;
abduction is negative), positive ``q2`` is medial (internal) rotation, positive ``q3`` elbow
flexion (0 = full extension), positive ``q4`` pronation. A positive moment arm means that the
muscle's tension drives the coordinate in its positive direction.

Each muscle has the five parameters of 002 Sec. III-F (``f_max``, ``l_opt``, ``v_max``,
``phi_opt``, ``l_ts``); ``t_act``, ``t_deact``, ``c1``, ``c2`` and the delay ``t_d`` are shared by
all muscles (002 Sec. III-F.2/3). Values: see :func:`default_muscle_params`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import InvalidParameterError
from plants.arm.rigid import N_DOF
from plants.muscle import MTUParams, make_params, resample_recursive_coefficients

__all__ = [
    "DEEP",
    "DEFAULT_MUSCLE_GEOMETRY",
    "MUSCLES",
    "N_MUSCLES",
    "SHARED_PARAMS",
    "SPANS",
    "SUPERFICIAL",
    "MuscleGeometry",
    "default_muscle_params",
    "moment_arms",
    "mtu_length",
    "mtu_velocity",
]

SUPERFICIAL = (
    "PECM1", "PECM2", "PECM3", "DELT1", "DELT2", "DELT3",
    "BIClong", "BICshort", "TRIlong", "TRIlat", "BRD",
)
DEEP = ("INFSP", "SUBSC", "TRImed", "BRA", "PQ")
MUSCLES = SUPERFICIAL + DEEP
N_MUSCLES = len(MUSCLES)

#: 002 Fig. 2, transposed: ``SPANS[m, j]`` is True when muscle m has a moment arm about DoF j
#: (rows: :data:`MUSCLES`; columns: :data:`~plants.arm.rigid.DOF_NAMES`).
SPANS = np.array(
    [
        # Sh_Fle_Ext, Sh_Abd_Add, Sh_Med_Lat, El_Fle_Ext, El_Pro_Sup
        [1, 1, 1, 0, 0],  # PECM1
        [1, 1, 1, 0, 0],  # PECM2
        [1, 1, 1, 0, 0],  # PECM3
        [1, 1, 1, 0, 0],  # DELT1
        [1, 1, 1, 0, 0],  # DELT2
        [1, 1, 1, 0, 0],  # DELT3
        [1, 1, 1, 1, 1],  # BIClong
        [1, 1, 1, 1, 1],  # BICshort
        [1, 1, 1, 1, 0],  # TRIlong
        [0, 0, 0, 1, 0],  # TRIlat
        [0, 0, 0, 1, 1],  # BRD
        [1, 1, 1, 0, 0],  # INFSP
        [1, 1, 1, 0, 0],  # SUBSC
        [0, 0, 0, 1, 0],  # TRImed
        [0, 0, 0, 1, 0],  # BRA
        [0, 0, 0, 0, 1],  # PQ
    ],
    dtype=bool,
)

#: Moment arms at the reference posture, m (chosen: 1-5 cm for prime movers, 0.5-1 cm for
#: secondary actions; signs from each muscle's anatomical action, module docstring).
_R0 = np.array(
    [
        [0.030, 0.020, 0.020, 0.0, 0.0],  # PECM1: flexor, adductor, medial rotator
        [0.010, 0.035, 0.020, 0.0, 0.0],  # PECM2
        [-0.010, 0.040, 0.015, 0.0, 0.0],  # PECM3: extends from flexion, adducts
        [0.030, -0.010, 0.010, 0.0, 0.0],  # DELT1: flexor
        [0.005, -0.035, -0.005, 0.0, 0.0],  # DELT2: abductor
        [-0.030, -0.010, -0.015, 0.0, 0.0],  # DELT3: extensor, lateral rotator
        [0.020, -0.010, 0.005, 0.035, -0.010],  # BIClong: elbow flexor, supinator
        [0.020, 0.010, 0.010, 0.035, -0.008],  # BICshort
        [-0.025, 0.015, -0.005, -0.020, 0.0],  # TRIlong: elbow extensor
        [0.0, 0.0, 0.0, -0.020, 0.0],  # TRIlat
        [0.0, 0.0, 0.0, 0.045, 0.010],  # BRD: elbow flexor
        [-0.010, -0.010, -0.020, 0.0, 0.0],  # INFSP: lateral rotator
        [0.005, 0.015, 0.020, 0.0, 0.0],  # SUBSC: medial rotator
        [0.0, 0.0, 0.0, -0.020, 0.0],  # TRImed
        [0.0, 0.0, 0.0, 0.025, 0.0],  # BRA
        [0.0, 0.0, 0.0, 0.0, 0.010],  # PQ: pronator
    ]
)

#: Relative change of each moment arm per rad of its own DoF (chosen): elbow flexors' moment
#: arms grow towards 90 deg of flexion, extensors' shrink; shoulder moment arms vary mildly.
_KAPPA = np.array([0.25, -0.2, 0.15, 0.3, -0.3])  # per DoF, 1/rad
#: Cross-coupling magnitude between two spanned DoFs, m/rad (chosen).
_COUPLING = 0.002

#: Reference posture (rad): 30 deg flexion, 20 deg abduction, 0 rotation, 70 deg elbow
#: flexion, neutral forearm (chosen: the middle of the simulated movements).
_Q_REF = np.array([0.5, -0.35, 0.0, 1.2, 0.0])


class MuscleGeometry(NamedTuple):
    """Coefficients of the polynomial MTU length functions (module docstring).

    Attributes
    ----------
    q_ref : array, shape (5,), rad
    l0 : array, shape (16,), m
        MTU lengths at ``q_ref``.
    r0 : array, shape (16, 5), m
        Moment arms at ``q_ref``.
    k : array, shape (16, 5), m/rad
        Own-DoF curvature (``dr_j/dq_j`` from this term).
    coupling : array, shape (16, 5, 5), m/rad
        Symmetric, zero-diagonal cross terms; non-zero only between spanned DoFs.
    """

    q_ref: jnp.ndarray
    l0: jnp.ndarray
    r0: jnp.ndarray
    k: jnp.ndarray
    coupling: jnp.ndarray


def _default_geometry(l0: np.ndarray) -> MuscleGeometry:
    r0 = _R0 * SPANS
    k = _KAPPA[None, :] * np.abs(r0) * np.sign(r0)
    s = np.sign(r0)
    C = _COUPLING * s[:, :, None] * s[:, None, :]
    C = C * (SPANS[:, :, None] & SPANS[:, None, :])
    C[:, np.arange(N_DOF), np.arange(N_DOF)] = 0.0
    return MuscleGeometry(
        q_ref=jnp.asarray(_Q_REF), l0=jnp.asarray(l0), r0=jnp.asarray(r0),
        k=jnp.asarray(k), coupling=jnp.asarray(C),
    )


# ----------------------------------------------------------------------------- parameters
# Per-muscle parameters (f_max N, l_opt m, l_ts m, phi_opt deg), in the range of the MoBL-ARMS
# model (Holzbaur et al. 2005, Ann. Biomed. Eng. 33(6); Saul et al. 2015). The values were
# entered from that model's published table as recalled, not checked against its .osim file:
# treat them as chosen, physiologically plausible ground truth. BIClong/BICshort (and BRA, BRD)
# are not pennated (phi_opt = 0), as 002 Sec. IV-C states for BIC in its reference model.
_MUSCLE_TABLE = np.array(
    [
        [364.4, 0.1442, 0.0028, 17.0],  # PECM1
        [515.4, 0.1385, 0.0887, 26.0],  # PECM2
        [390.5, 0.1813, 0.0905, 25.0],  # PECM3
        [1142.6, 0.0976, 0.0930, 22.0],  # DELT1
        [1142.6, 0.1078, 0.1095, 15.0],  # DELT2
        [259.9, 0.1367, 0.0380, 18.0],  # DELT3
        [624.3, 0.1157, 0.2723, 0.0],  # BIClong
        [435.6, 0.1321, 0.1923, 0.0],  # BICshort
        [798.5, 0.1340, 0.1430, 12.0],  # TRIlong
        [624.3, 0.1138, 0.0980, 9.0],  # TRIlat
        [261.3, 0.1726, 0.1326, 0.0],  # BRD
        [1210.8, 0.1323, 0.0337, 18.5],  # INFSP
        [1377.8, 0.0873, 0.0512, 20.0],  # SUBSC
        [624.3, 0.1138, 0.0908, 9.0],  # TRImed
        [987.3, 0.0858, 0.0535, 0.0],  # BRA
        [75.5, 0.0282, 0.0050, 10.0],  # PQ
    ]
)
#: Maximum contraction velocity, optimal fibre lengths per s: 10 for every MTU (OpenSim's
#: default, used throughout MoBL-ARMS), slightly spread (chosen) so each muscle's value is its own.
_V_MAX = 10.0 + np.linspace(-0.75, 0.75, N_MUSCLES)
#: Normalized fibre length at the reference posture (chosen, 0.92-1.05: fibres near optimal).
_LAMBDA_REF = 0.92 + 0.13 * np.abs(np.sin(1.7 * np.arange(N_MUSCLES)))

#: Shared activation/EMG parameters (002 Sec. III-F.2/3) at the recording rate of 100 Hz.
#: t_act = 10 ms and t_deact = 40 ms are OpenSim's first-order activation defaults (chosen;
#: 002 does not state its values); c1 = c2 = -0.55 (a critically damped filter with 17 ms time
#: constant at 100 Hz, chosen within 002:Eq.20's |c| < 1); t_d = 40 ms electromechanical delay
#: (chosen; 001 uses 35 ms).
SHARED_PARAMS = {"t_act": 0.010, "t_deact": 0.040, "c1": -0.55, "c2": -0.55, "delay": 0.040}
_SHARED_FS = 100.0


def default_muscle_params(fs: float = 100.0) -> MTUParams:
    """Ground-truth :class:`~plants.muscle.MTUParams` of the 16 MTUs, shape (16,) each.

    Parameters
    ----------
    fs : float, Hz
        Sampling rate at which ``c1, c2`` (002:Eq.19-20) apply; the 100 Hz values of
        :data:`SHARED_PARAMS` are mapped to ``fs`` with
        :func:`~plants.muscle.resample_recursive_coefficients` (same continuous-time poles).

    Returns
    -------
    MTUParams
        ``f_max`` N, ``l_opt`` m, ``l_ts`` m, ``phi_opt`` rad, ``v_max`` l_opt/s, shared
        ``t_act``, ``t_deact`` s, ``c1``, ``c2``, ``delay`` s; ``damping = 0.1`` (the muscle
        package default, 000/001) and ``shape = -1`` (unused by the arm: 002 has no shape
        factor).
    """
    if not (np.isfinite(fs) and fs > 0):
        raise InvalidParameterError(f"The 'fs' parameter must be a positive float. Got {fs}.")
    c1 = float(resample_recursive_coefficients(SHARED_PARAMS["c1"], _SHARED_FS, fs))
    c2 = float(resample_recursive_coefficients(SHARED_PARAMS["c2"], _SHARED_FS, fs))
    T = _MUSCLE_TABLE
    return make_params(
        T[:, 0], T[:, 1], T[:, 2], np.deg2rad(T[:, 3]),
        v_max=_V_MAX, t_act=SHARED_PARAMS["t_act"], t_deact=SHARED_PARAMS["t_deact"],
        c1=c1, c2=c2, delay=SHARED_PARAMS["delay"],
    )


def _reference_lengths() -> np.ndarray:
    T = _MUSCLE_TABLE
    return T[:, 2] + T[:, 1] * np.cos(np.deg2rad(T[:, 3])) * _LAMBDA_REF


#: Ground-truth MTU length coefficients.
DEFAULT_MUSCLE_GEOMETRY = _default_geometry(_reference_lengths())


# ----------------------------------------------------------------------------- kinematics
def mtu_length(q: jnp.ndarray, geom: MuscleGeometry = DEFAULT_MUSCLE_GEOMETRY) -> jnp.ndarray:
    """MTU lengths ``l_mt(q)`` of the 16 muscles.

    Parameters
    ----------
    q : array, shape (..., 5), rad
    geom : MuscleGeometry

    Returns
    -------
    array, shape (..., 16), m
    """
    dq = jnp.asarray(q)[..., None, :] - geom.q_ref  # (..., 16, 5)
    lin = jnp.sum(geom.r0 * dq, axis=-1)
    quad = 0.5 * jnp.sum(geom.k * dq**2, axis=-1)
    cross = 0.5 * jnp.einsum("...mj,mjk,...mk->...m", dq, geom.coupling, dq)
    return geom.l0 - lin - quad - cross


def moment_arms(q: jnp.ndarray, geom: MuscleGeometry = DEFAULT_MUSCLE_GEOMETRY) -> jnp.ndarray:
    """Moment arms ``r = -d l_mt / d q`` (exact, :func:`jax.jacfwd`), the muscle Jacobian
    ``J_m`` of 002:Eq.1 for the independent DoFs.

    Parameters
    ----------
    q : array, shape (..., 5), rad

    Returns
    -------
    array, shape (..., 16, 5), m (``J_m^T f_m`` = ``einsum("...mj,...m->...j", r, f)``)
    """
    q = jnp.asarray(q)
    out = _moment_arms_flat(q.reshape(-1, N_DOF), geom)
    return out.reshape(*q.shape[:-1], N_MUSCLES, N_DOF)


@jax.jit
def _moment_arms_flat(q, geom):
    return jax.vmap(jax.jacfwd(lambda x: -mtu_length(x, geom)))(q)  # r = -dl_mt/dq


def mtu_velocity(
    q: jnp.ndarray, qd: jnp.ndarray, geom: MuscleGeometry = DEFAULT_MUSCLE_GEOMETRY
) -> jnp.ndarray:
    """MTU lengthening velocities ``dl_mt/dt = -r(q) qd``.

    Parameters
    ----------
    q, qd : arrays, shape (..., 5), rad and rad/s

    Returns
    -------
    array, shape (..., 16), m/s
    """
    return -jnp.einsum("...mj,...j->...m", moment_arms(q, geom), jnp.asarray(qd))

