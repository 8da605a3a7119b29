"""Rigid-body part of the 5-DoF arm: identities any correct inverse dynamics must satisfy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plants.arm import rigid

PI = jnp.asarray(rigid.default_inertial_parameters())
RNG = np.random.default_rng(0)
Q = jnp.asarray(RNG.uniform(-1.2, 1.2, 5))
QD = jnp.asarray(RNG.normal(0, 2, 5))
QDD = jnp.asarray(RNG.normal(0, 5, 5))


def test_mass_matrix_symmetric_positive_definite():
    M = np.asarray(rigid.mass_matrix(Q, PI))
    np.testing.assert_allclose(M, M.T, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(M) > 0)


def test_regressor_is_exact_and_linear():
    Y = rigid.regressor(Q, QD, QDD)
    tau = rigid.inverse_dynamics(Q, QD, QDD, PI)
    np.testing.assert_allclose(Y @ PI.ravel(), tau, rtol=1e-12, atol=1e-12)


def test_gravity_torque_is_gradient_of_potential():
    g = rigid.bias_torques(Q, jnp.zeros(5), PI)
    dU = jax.grad(rigid.potential_energy)(Q, PI)
    np.testing.assert_allclose(g, dU, rtol=1e-10, atol=1e-12)


def test_velocity_terms_match_lagrange_equations():
    # C(q, qd) qd = Mdot qd - 1/2 d/dq (qd^T M qd), independent of the RNEA recursion
    c = rigid.bias_torques(Q, QD, PI, gravity=0.0)
    Mdot = jax.jvp(lambda q: rigid.mass_matrix(q, PI), (Q,), (QD,))[1]
    dT = jax.grad(lambda q: rigid.kinetic_energy(q, QD, PI))(Q)
    np.testing.assert_allclose(c, Mdot @ QD - dT, rtol=1e-10, atol=1e-12)


def test_energy_is_conserved_without_torque():
    def f(x):
        q, qd = x[:5], x[5:]
        return jnp.concatenate([qd, rigid.forward_dynamics(q, qd, jnp.zeros(5), PI)])

    @jax.jit
    def rk4(x, _):
        h = 1e-3
        k1 = f(x)
        k2 = f(x + h / 2 * k1)
        k3 = f(x + h / 2 * k2)
        k4 = f(x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    x0 = jnp.concatenate([Q, 0.5 * QD])
    energy = lambda x: rigid.kinetic_energy(x[:5], x[5:], PI) + rigid.potential_energy(  # noqa: E731
        x[:5], PI)
    x1, _ = jax.lax.scan(rk4, x0, None, length=500)
    e0, e1 = float(energy(x0)), float(energy(x1))
    assert abs(e1 - e0) < 1e-7 * max(1.0, abs(e0))


def test_base_parameters_reproduce_torques():
    P, ind = rigid.base_parameter_map(n_samples=200)
    n_base = P.shape[0]
    assert 10 < n_base < 30  # rank-deficient: some parameters only act in combination
    # tau = Y pi = Y_ind beta for any state
    beta = P @ np.asarray(PI).ravel()
    q, qd, qdd = (jnp.asarray(RNG.normal(0, 1, 5)) for _ in range(3))
    Y = np.asarray(rigid.regressor(q, qd, qdd))
    np.testing.assert_allclose(Y[:, ind] @ beta, Y @ np.asarray(PI).ravel(), rtol=1e-8,
                               atol=1e-10)


def test_constrained_terms_satisfy_eq11():
    M = rigid.mass_matrix(Q, PI)
    bias = rigid.bias_torques(Q, QD, PI)
    G = jnp.asarray(RNG.normal(0, 1, (2, 5)))
    b = jnp.asarray(RNG.normal(0, 1, 2))
    tau = jnp.asarray(RNG.normal(0, 3, 5))
    # constrained forward dynamics by the KKT system
    K = jnp.block([[M, G.T], [G, jnp.zeros((2, 2))]])
    sol = jnp.linalg.solve(K, jnp.concatenate([tau - bias, b]))
    qdd = sol[:5]
    A, c = rigid.constrained_terms(M, bias, G, b, qdd)
    np.testing.assert_allclose(A @ tau, c, rtol=1e-9, atol=1e-9)  # 002:Eq.11
    np.testing.assert_allclose(G @ qdd, b, atol=1e-10)


@pytest.mark.parametrize("i", range(3))
def test_inertial_parameters_physically_consistent(i):
    p = rigid.default_inertial_parameters()[i]
    m, h = p[0], p[1:4]
    c = h / m
    I_o = np.array([[p[4], p[5], p[6]], [p[5], p[7], p[8]], [p[6], p[8], p[9]]])
    I_c = I_o - m * (c @ c * np.eye(3) - np.outer(c, c))
    ev = np.linalg.eigvalsh(I_c)
    assert m > 0 and np.all(ev > 0)
    assert ev[0] + ev[1] >= ev[2]  # triangle inequality of principal moments
