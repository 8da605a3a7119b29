"""MTU force/stiffness identities (000:Eq.2-7), tendon models and differentiability."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plants.muscle as pm
from plants.ankle import default_ankle_kinematics, default_ankle_params
from plants.muscle.fiber import fiber_force, fiber_force_deriv

P = default_ankle_params()
KIN = default_ankle_kinematics()
A = jnp.array([0.05, 0.3, 0.6, 0.2, 0.9, 0.01, 0.4])


@pytest.mark.parametrize("tendon", ["rigid", "equilibrium"])
@pytest.mark.parametrize("theta", [-0.18, 0.0, 0.18])
def test_mtu_stiffness_equals_autodiff_of_force(tendon, theta):
    # 000:Eq.3-5 analytic stiffness == dF_mtu/dl_mt at fixed activation (isometric)
    lmt = KIN.lmt(theta)
    k = jax.jit(pm.mtu_stiffness, static_argnums=4)(P, A, lmt, jnp.zeros(7), tendon)
    jac = jax.jit(jax.jacfwd(lambda l: pm.mtu_force(P, A, l, jnp.zeros(7), tendon)))(lmt)
    np.testing.assert_allclose(k, jnp.diag(jac), rtol=1e-6)
    assert bool(jnp.all(jnp.abs(jac - jnp.diag(jnp.diag(jac))) == 0))


def test_pennated_fiber_stiffness_eq4_and_issue_form():
    # 000:Eq.4 == d(F cos phi)/d(l cos phi) at fixed velocity, and the equivalent form
    # (K_f cos phi + F dcos/dl) / (cos phi - l sin phi dphi/dl)
    lm = jnp.array([0.6, 0.8, 1.0, 1.1, 1.3, 0.9, 1.45])
    vm = jnp.array([-0.3, -0.1, 0.0, 0.05, 0.2, 0.4, -0.05])
    keq = pm.fiber_stiffness_along_tendon(P, A, lm, vm)

    def f_eq(l):
        c, _ = pm.pennation(P, l)
        return fiber_force(P, A, l, vm) * c

    def l_eq(l):
        c, _ = pm.pennation(P, l)
        return l * P.l_opt * c

    dF = jnp.diag(jax.jacfwd(f_eq)(lm))
    dL = jnp.diag(jax.jacfwd(l_eq)(lm))
    np.testing.assert_allclose(keq, dF / dL, rtol=1e-10)
    c, s = pm.pennation(P, lm)
    l_m = lm * P.l_opt
    dphi_dl = -s / (c * l_m)  # constant thickness
    F = fiber_force(P, A, lm, vm)
    alt = (fiber_force_deriv(P, A, lm, vm) * c - F * s * dphi_dl) / (c - l_m * s * dphi_dl)
    np.testing.assert_allclose(keq, alt, rtol=1e-10)


@pytest.mark.parametrize("tendon", ["rigid", "equilibrium"])
def test_joint_stiffness_equals_minus_dtorque_dangle(tendon):
    # 000:Eq.7 with r = -dL/dtheta: K_J == -dtau/dtheta at fixed activation
    def torque(theta):
        lmt = KIN.lmt(theta)
        return pm.joint_torque(pm.mtu_force(P, A, lmt, jnp.zeros(7), tendon), KIN.moment_arm(theta))

    @jax.jit
    def eq7(theta):
        lmt = KIN.lmt(theta)
        st = pm.fiber_state(P, A, lmt, jnp.zeros(7), tendon)
        return pm.joint_stiffness(
            st.stiffness, st.force, KIN.moment_arm(theta), KIN.dmoment_arm(theta)
        )

    theta = jnp.array([-0.17, -0.05, 0.0, 0.12])
    kj = jax.vmap(eq7)(theta)
    ad = -jax.jit(jax.vmap(jax.grad(torque)))(theta)
    np.testing.assert_allclose(kj, ad, rtol=1e-6)
    assert bool(jnp.all(kj > 0))


def test_moment_arm_is_minus_dlength_dangle():
    th = jnp.linspace(-0.2, 0.2, 9)
    dl = jax.vmap(jax.jacfwd(KIN.lmt))(th)
    np.testing.assert_allclose(KIN.moment_arm(th), -dl, rtol=0, atol=1e-15)
    d2 = jax.vmap(jax.jacfwd(KIN.moment_arm))(th)
    np.testing.assert_allclose(KIN.dmoment_arm(th), d2, atol=1e-15)


def test_equilibrium_solves_and_has_implicit_gradients():
    lmt = KIN.lmt(0.1)
    vm = jnp.array([0.0, -0.1, 0.1, 0.0, 0.05, -0.05, 0.0])
    lm = pm.equilibrium_fiber_length(P, A, lmt, vm)
    from plants.muscle.tendon import equilibrium_residual

    assert float(jnp.max(jnp.abs(equilibrium_residual(P, A, lmt, vm, lm)))) < 1e-12

    @jax.jit
    def total(l_ts):
        return jnp.sum(pm.equilibrium_fiber_length(P._replace(l_ts=l_ts), A, lmt, vm))

    g = jax.jit(jax.grad(total))(P.l_ts)
    eps = 1e-7
    for i in range(7):
        e = jnp.zeros(7).at[i].set(eps)
        fd = (total(P.l_ts + e) - total(P.l_ts - e)) / (2 * eps)
        assert abs(float(g[i]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))


def _slow_record(fs=512.0, T=1024):
    t = jnp.arange(T) / fs
    theta = 0.1 * jnp.sin(2 * jnp.pi * 0.5 * t)
    a = jnp.broadcast_to(0.2 + 0.1 * jnp.sin(2 * jnp.pi * 0.5 * t)[:, None], (T, 7))
    return fs, a, KIN.lmt(theta), theta


def test_rosenbrock_matches_equilibrium_on_slow_inputs():
    fs, a, lmt, _ = _slow_record()
    traj = jax.jit(pm.mtu_trajectory, static_argnums=(3, 4))
    ros = traj(P, a, lmt, fs, "rosenbrock")
    eq = traj(P, a, lmt, fs, "equilibrium")
    err = jnp.abs(ros.force - eq.force)[100:]
    assert float(jnp.max(err / jnp.max(jnp.abs(eq.force), axis=0))) < 0.01
    # the integrated state satisfies the force balance to first order
    from plants.muscle.tendon import equilibrium_residual

    res = equilibrium_residual(P, a, lmt, ros.vm, ros.lm)[100:]
    assert float(jnp.max(jnp.abs(res))) < 2e-3


@pytest.mark.parametrize("tendon", ["rigid", "equilibrium", "rosenbrock"])
def test_gradients_wrt_parameters_match_finite_differences(tendon):
    fs, a, lmt, theta = _slow_record(T=256)
    r = KIN.moment_arm(theta)

    @jax.jit
    def loss(l_opt):
        st = pm.mtu_trajectory(P._replace(l_opt=l_opt), a, lmt, fs, tendon)
        return jnp.mean(pm.joint_torque(st.force, r) ** 2)

    g = jax.jit(jax.grad(loss))(P.l_opt)
    for i in (0, 3):
        e = jnp.zeros(7).at[i].set(1e-7)
        fd = (loss(P.l_opt + e) - loss(P.l_opt - e)) / 2e-7
        assert abs(float(g[i]) - float(fd)) <= 1e-4 * abs(float(fd)) + 1e-8


def test_simulate_torque_vmap_jit_and_grad():
    fs = 128.0
    T, S = 96, 3
    rng = np.random.default_rng(0)
    exc = jnp.asarray(rng.uniform(0, 0.3, (S, T, 5)))
    th = jnp.asarray(0.15 * np.sin(2 * np.pi * 0.6 * np.arange(T) / fs))[None].repeat(S, 0)
    lmt, r, dr = KIN.lmt(th), KIN.moment_arm(th), KIN.dmoment_arm(th)
    from plants.ankle import EMG_MAP

    f = partial(pm.simulate_torque, fs=fs, emg_map=EMG_MAP, tendon="rosenbrock")
    one = jax.jit(lambda e, l, rr, d: f(P, e, l, rr, dmoment_arm=d).torque)
    batched = jax.jit(jax.vmap(one))(exc, lmt, r, dr)
    loop = jnp.stack([one(exc[s], lmt[s], r[s], dr[s]) for s in range(S)])
    np.testing.assert_allclose(batched, loop, rtol=1e-10, atol=1e-9)
    fr = partial(pm.simulate_torque, fs=fs, emg_map=EMG_MAP, tendon="rigid")

    # activation parameters are differentiable too (shape factor, filter, delay)
    @jax.jit
    def loss(p):
        return jnp.sum(fr(p, exc[0], lmt[0], r[0]).torque ** 2)

    g = jax.jit(jax.grad(loss))(P)
    for name in ("shape", "c1", "delay", "f_max", "l_ts"):
        assert bool(jnp.all(jnp.isfinite(getattr(g, name))))
        assert float(jnp.max(jnp.abs(getattr(g, name)))) > 0


def test_bad_tendon_name_is_rejected():
    from bench.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'tendon'"):
        pm.mtu_force(P, A, KIN.lmt(0.0), jnp.zeros(7), "stiff")
