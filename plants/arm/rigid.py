"""Rigid-body dynamics of the 5-DoF arm (002 Sec. III-B/C) in JAX, linear in inertial parameters.

Chain (OpenSim axes: x anterior, y superior, z lateral):

====  ======================  ==========================  ========
q     joint                   axis (in the parent frame)   body
====  ======================  ==========================  ========
q0    Sh_Fle_Ext (flexion)    z                            massless
q1    Sh_Abd_Add (abduction)  x                            massless
q2    Sh_Med_Lat (rotation)   y (humerus long axis)        humerus
q3    El_Fle_Ext (flexion)    z, at the elbow              ulna
q4    El_Pro_Sup (pronation)  y (forearm long axis)        radius
====  ======================  ==========================  ========

Each body carries the 10 standard inertial parameters, in its own frame, about its own
origin (the joint centre): ``[m, m cx, m cy, m cz, Ixx, Ixy, Ixz, Iyy, Iyz, Izz]``
(kg, kg m, kg m^2). Joint torques are linear in them, tau = Y(q, qd, qdd) pi, so the
regressor ``Y`` is the exact Jacobian of the inverse dynamics with respect to pi.

Inverse dynamics is Featherstone's recursive Newton-Euler algorithm (RNEA) with spatial
vectors [angular; linear]; the mass matrix is RNEA at zero velocity and gravity with unit
accelerations (vmapped), the bias torques (Coriolis, centrifugal, gravity) RNEA at zero
acceleration. Holonomic constraints G qdd = b use the M-weighted pseudo-inverse of
002:Eq.7-11. Every function is jit-able and differentiable in q, qd, qdd and pi.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

__all__ = [
    "DOF_NAMES",
    "ArmGeometry",
    "base_parameter_map",
    "bias_torques",
    "constrained_terms",
    "default_inertial_parameters",
    "forward_dynamics",
    "inverse_dynamics",
    "kinetic_energy",
    "mass_matrix",
    "potential_energy",
    "regressor",
]

jax.config.update("jax_enable_x64", True)

DOF_NAMES = ("Sh_Fle_Ext", "Sh_Abd_Add", "Sh_Med_Lat", "El_Fle_Ext", "El_Pro_Sup")
N_DOF = 5
GRAVITY = 9.80665  # m/s^2, along -y


class ArmGeometry(NamedTuple):
    """Fixed joint placements, m: the elbow in the humerus frame, the radius origin
    (proximal radio-ulnar joint) in the ulna frame."""

    elbow: jnp.ndarray = jnp.array([0.0, -0.29, 0.0])
    radius_origin: jnp.ndarray = jnp.array([0.0, 0.0, 0.015])


DEFAULT_GEOMETRY = ArmGeometry()

# joint axis (unit vector) of each joint in its parent frame, and which offset precedes it
_AXES = np.array(
    [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=float
)


def _skew(v):
    return jnp.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _rot(axis, angle):
    """Rotation matrix (child -> parent) about a unit axis (Rodrigues)."""
    K = _skew(axis)
    return jnp.eye(3) + jnp.sin(angle) * K + (1 - jnp.cos(angle)) * (K @ K)


def _xform(E, r):
    """Spatial motion transform parent -> child for child orientation E (parent->child
    rotation) and child origin r in parent coordinates (Featherstone's X = rot(E) xlt(r))."""
    Z = jnp.zeros((3, 3))
    return jnp.block([[E, Z], [-E @ _skew(r), E]])


def _crm(v):
    w, u = v[:3], v[3:]
    Z = jnp.zeros((3, 3))
    return jnp.block([[_skew(w), Z], [_skew(u), _skew(w)]])


def _crf(v):
    return -_crm(v).T


def _spatial_inertia(p):
    """6x6 spatial inertia about the body origin from the 10 parameters."""
    m, h = p[0], p[1:4]
    Ixx, Ixy, Ixz, Iyy, Iyz, Izz = p[4], p[5], p[6], p[7], p[8], p[9]
    I_o = jnp.array([[Ixx, Ixy, Ixz], [Ixy, Iyy, Iyz], [Ixz, Iyz, Izz]])
    H = _skew(h)
    return jnp.block([[I_o, H], [H.T, m * jnp.eye(3)]])


def _offsets(geom: ArmGeometry):
    z = jnp.zeros(3)
    return [z, z, z, geom.elbow, geom.radius_origin]


def inverse_dynamics(q, qd, qdd, pi, geom: ArmGeometry = DEFAULT_GEOMETRY, gravity=GRAVITY):
    """Joint torques by RNEA.

    Parameters
    ----------
    q, qd, qdd : array, shape (5,)
        rad, rad/s, rad/s^2.
    pi : array, shape (3, 10)
        Inertial parameters of humerus, ulna, radius (module docstring).

    Returns
    -------
    tau : array, shape (5,), Nm
    """
    offs = _offsets(geom)
    inertias = [None, None, _spatial_inertia(pi[0]), _spatial_inertia(pi[1]),
                _spatial_inertia(pi[2])]
    a_prev = jnp.array([0.0, 0.0, 0.0, 0.0, gravity, 0.0])  # -g as base acceleration
    v_prev = jnp.zeros(6)
    Xs, Ss, vs, fs = [], [], [], []
    for i in range(N_DOF):
        axis = jnp.asarray(_AXES[i])
        E = _rot(axis, q[i]).T
        X = _xform(E, offs[i])
        S = jnp.concatenate([axis, jnp.zeros(3)])
        v = X @ v_prev + S * qd[i]
        a = X @ a_prev + S * qdd[i] + _crm(v) @ (S * qd[i])
        f = (
            inertias[i] @ a + _crf(v) @ (inertias[i] @ v)
            if inertias[i] is not None
            else jnp.zeros(6)
        )
        Xs.append(X)
        Ss.append(S)
        vs.append(v)
        fs.append(f)
        v_prev, a_prev = v, a
    tau = [None] * N_DOF
    for i in reversed(range(N_DOF)):
        tau[i] = Ss[i] @ fs[i]
        if i > 0:
            fs[i - 1] = fs[i - 1] + Xs[i].T @ fs[i]
    return jnp.stack(tau)


def mass_matrix(q, pi, geom: ArmGeometry = DEFAULT_GEOMETRY):
    """Joint-space inertia matrix M(q), shape (5, 5), kg m^2."""
    eye = jnp.eye(N_DOF)
    cols = jax.vmap(lambda e: inverse_dynamics(q, jnp.zeros(N_DOF), e, pi, geom, 0.0))(eye)
    M = cols.T
    return 0.5 * (M + M.T)


def bias_torques(q, qd, pi, geom: ArmGeometry = DEFAULT_GEOMETRY, gravity=GRAVITY):
    """Coriolis, centrifugal and gravity torques, shape (5,), Nm."""
    return inverse_dynamics(q, qd, jnp.zeros(N_DOF), pi, geom, gravity)


def forward_dynamics(q, qd, tau, pi, geom: ArmGeometry = DEFAULT_GEOMETRY, gravity=GRAVITY):
    """qdd = M^-1 (tau - bias), shape (5,), rad/s^2."""
    return jnp.linalg.solve(mass_matrix(q, pi, geom), tau - bias_torques(q, qd, pi, geom,
                                                                         gravity))


def regressor(q, qd, qdd, geom: ArmGeometry = DEFAULT_GEOMETRY, gravity=GRAVITY):
    """Y such that tau = Y @ pi.ravel(); shape (5, 30). Exact (torques are linear in pi)."""
    f = lambda p: inverse_dynamics(q, qd, qdd, p.reshape(3, 10), geom, gravity)  # noqa: E731
    return jax.jacfwd(f)(jnp.zeros(30))


def _body_poses(q, geom: ArmGeometry):
    """World rotation (body->world) and origin of humerus, ulna, radius."""
    R = jnp.eye(3)
    p = jnp.zeros(3)
    poses = []
    for i, off in enumerate(_offsets(geom)):
        p = p + R @ off
        R = R @ _rot(jnp.asarray(_AXES[i]), q[i])
        if i >= 2:
            poses.append((R, p))
    return poses


def potential_energy(q, pi, geom: ArmGeometry = DEFAULT_GEOMETRY, gravity=GRAVITY):
    """Gravitational potential energy, J (zero at the shoulder height)."""
    U = 0.0
    for (R, p), par in zip(_body_poses(q, geom), pi):
        m, h = par[0], par[1:4]
        U = U + gravity * (m * p[1] + (R @ h)[1])
    return U


def kinetic_energy(q, qd, pi, geom: ArmGeometry = DEFAULT_GEOMETRY):
    """Kinetic energy 1/2 qd^T M qd, J."""
    return 0.5 * qd @ mass_matrix(q, pi, geom) @ qd


def constrained_terms(M, bias, G, b, qdd):
    """A and c of 002:Eq.10 for the constrained model M qdd + bias + G^T lambda = tau.

    Parameters
    ----------
    M : (n, n); bias : (n,); G : (k, n); b : (k,); qdd : (n,) measured accelerations.

    Returns
    -------
    A : (n, n) = (I - G^{M+} G) M^-1,   c : (n,) = qdd + A bias - G^{M+} b,
    so that A tau_m = c (002:Eq.11), with G^{M+} = M^-1 G^T (G M^-1 G^T)^-1 (002:Eq.7).
    """
    Minv = jnp.linalg.inv(M)
    GMG = G @ Minv @ G.T
    GMp = Minv @ G.T @ jnp.linalg.inv(GMG)  # 002:Eq.7
    A = (jnp.eye(M.shape[0]) - GMp @ G) @ Minv  # 002:Eq.10
    c = qdd + A @ bias - GMp @ b
    return A, c


def default_inertial_parameters() -> np.ndarray:
    """Ground-truth inertial parameters, shape (3, 10), of an adult arm.

    Masses and lengths follow common anthropometric tables for a 75 kg adult (upper arm
    2.0 kg, forearm 1.2 kg split 0.6/0.6 between ulna and radius, 0.29 m humerus); centres
    of mass at about 44 % of segment length from the proximal joint; radii of gyration about
    30 % of length (transverse) and 10 % (axial). Products of inertia are small non-zero
    values so that every parameter matters.
    """
    def body(m, c, kt, ka, L, prod):
        c = np.asarray(c)
        Ic = m * np.diag([(kt * L) ** 2, (ka * L) ** 2, (kt * L) ** 2])
        Ic = Ic + prod
        I_o = Ic + m * (np.dot(c, c) * np.eye(3) - np.outer(c, c))  # parallel axis
        return np.array([m, *(m * c), I_o[0, 0], I_o[0, 1], I_o[0, 2], I_o[1, 1], I_o[1, 2],
                         I_o[2, 2]])

    P = np.array([[0, 2e-4, -1e-4], [2e-4, 0, 3e-4], [-1e-4, 3e-4, 0]])
    return np.stack([
        body(2.0, [0.004, -0.128, 0.006], 0.30, 0.10, 0.29, P),
        body(0.6, [0.002, -0.11, 0.004], 0.29, 0.08, 0.25, 0.5 * P),
        body(0.6, [0.006, -0.12, -0.003], 0.29, 0.08, 0.24, 0.3 * P),
    ])


def base_parameter_map(
    n_samples: int = 400, seed: int = 0, geom: ArmGeometry = DEFAULT_GEOMETRY, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Numerical base (identifiable) inertial parameters (Gautier's QR regrouping).

    Stacks regressors at random states, finds the independent columns by QR with column
    pivoting and expresses the dependent ones in them: beta = pi_indep + Kd pi_dep, the
    regrouped base parameters in the sense of Atkeson et al. (1986).

    Returns
    -------
    P : ndarray, shape (n_base, 30)
        beta = P @ pi.ravel() are the base parameters.
    independent : ndarray of int, shape (n_base,)
        Indices (into pi.ravel()) that the base parameters are anchored on.
    """
    rng = np.random.default_rng(seed)
    Yf = jax.jit(jax.vmap(lambda a, b, c: regressor(a, b, c, geom)))
    q = rng.uniform(-1.5, 1.5, (n_samples, N_DOF))
    W = np.asarray(Yf(q, rng.normal(0, 2, q.shape), rng.normal(0, 5, q.shape)))
    W = W.reshape(-1, 30)
    _, Rq, piv = linalg.qr(W, mode="economic", pivoting=True)
    d = np.abs(np.diag(Rq))
    rank = int(np.sum(d > tol * d[0]))
    ind, dep = piv[:rank], piv[rank:]
    R1, R2 = Rq[:rank, :rank], Rq[:rank, rank:]
    Kd = linalg.solve_triangular(R1, R2)  # W_dep = W_ind Kd
    P = np.zeros((rank, 30))
    P[np.arange(rank), ind] = 1.0
    P[:, dep] = Kd
    P[np.abs(P) < 1e-10] = 0.0
    return P, ind
