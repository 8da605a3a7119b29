"""Curves (De Groote 2016) and activation dynamics (001:Eq.1-2, 002:Eq.17-21)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plants.muscle as pm
from plants.muscle import curves


@pytest.mark.parametrize(
    "f, df, lo, hi",
    [
        (curves.active_force_length, curves.active_force_length_deriv, 0.4, 1.8),
        (curves.passive_force_length, curves.passive_force_length_deriv, 0.4, 1.8),
        (curves.force_velocity, curves.force_velocity_deriv, -1.0, 1.0),
        (curves.tendon_force_length, curves.tendon_force_length_deriv, 0.95, 1.06),
    ],
)
def test_analytic_derivatives_match_autodiff(f, df, lo, hi):
    x = jnp.linspace(lo, hi, 57)
    np.testing.assert_allclose(df(x), jax.vmap(jax.grad(f))(x), rtol=1e-12, atol=1e-12)


def test_curve_anchor_points():
    # OpenSim's DeGrooteFregly2016Muscle: f_V(-1) = 0, f_V(0) = 1; f_L(1) = 0.99933 (published)
    assert abs(float(curves.force_velocity(-1.0))) < 1e-12
    assert abs(float(curves.force_velocity(0.0)) - 1.0) < 1e-12
    assert abs(float(curves.active_force_length(1.0)) - 0.99933) < 1e-5
    assert abs(float(curves.passive_force_length(0.2))) < 1e-12
    assert abs(float(curves.passive_force_length(1.6)) - 1.0) < 0.02
    # unit tendon force at 4.9 % strain; extension below slack length tends to -c3
    assert abs(float(curves.tendon_force_length(1.049)) - 1.0) < 1e-12
    assert -0.25 < float(curves.tendon_force_length(0.9)) < -0.2


def test_recursive_filter_unit_gain_and_steady_start():
    fs = 100.0
    e = jnp.full((50, 2), 0.4)
    u = pm.neural_activation(e, jnp.array([-0.6, -0.9]), jnp.array([-0.6, -0.8]), 0.02, fs)
    np.testing.assert_allclose(u, 0.4, atol=1e-14)
    step = jnp.concatenate([jnp.zeros((5, 1)), jnp.ones((400, 1))])
    u = pm.neural_activation(step, -0.7, -0.7, 0.0, fs)
    assert abs(float(u[-1, 0]) - 1.0) < 1e-10
    assert float(jnp.min(jnp.diff(u[:, 0]))) > -1e-15  # critically damped: no overshoot
    # hand-rolled 001:Eq.1 recursion
    c1, c2 = -0.7, -0.5
    b1, b2 = c1 + c2, c1 * c2
    al = 1 + b1 + b2
    ref, u1, u2 = [], 0.0, 0.0
    for x in np.asarray(step[:, 0]):
        v = al * x - b1 * u1 - b2 * u2
        ref.append(v)
        u1, u2 = v, u1
    np.testing.assert_allclose(pm.neural_activation(step, c1, c2, 0.0, fs)[:, 0], ref, atol=1e-14)


def test_continuous_delay_interpolates_and_is_differentiable():
    fs = 10.0
    ramp = jnp.arange(40.0)[:, None]
    d = pm.delay_signal(ramp, 0.37, fs)  # 3.7 samples
    np.testing.assert_allclose(d[10:, 0], ramp[10:, 0] - 3.7, atol=1e-12)
    x = jnp.sin(jnp.arange(60.0) / 5.0)[:, None]

    def loss(delay):
        return jnp.sum(pm.delay_signal(x, delay, fs) ** 2 * jnp.arange(60.0)[:, None])

    g = jax.grad(loss)(0.234)
    fd = (loss(0.234 + 1e-6) - loss(0.234 - 1e-6)) / 2e-6
    assert abs(float(g) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))


def test_activation_shape_factor():
    u = jnp.linspace(0, 1, 11)
    for A in (-2.9, -1.0, -0.01):
        a = pm.activation_shape(u, A)
        assert abs(float(a[0])) < 1e-15 and abs(float(a[-1]) - 1) < 1e-12
        assert bool(jnp.all(a >= u - 1e-12))  # A < 0: concave, a >= u
    np.testing.assert_allclose(pm.activation_shape(u, 0.0), u, atol=1e-15)
    np.testing.assert_allclose(pm.activation_shape(u, -1e-6), u, atol=1e-6)


def test_first_order_activation_time_constants():
    fs = 1000.0
    e = jnp.ones((2000, 1))
    a = pm.first_order_activation(e, 0.015, 0.06, fs, a0=jnp.zeros(1))
    assert float(a[0, 0]) == 0.0
    assert bool(jnp.all(jnp.diff(a[:, 0]) >= 0)) and 0.999 < float(a[-1, 0]) <= 1.0
    # from a = 1 with u = 0 the decay time constant is t_deact / 2 at a = 1 (002:Eq.18)
    d = pm.first_order_activation(jnp.zeros((3, 1)), 0.015, 0.06, fs, a0=jnp.ones(1))
    np.testing.assert_allclose(d[1, 0], np.exp(-1e-3 / (0.06 / 2.0)), rtol=1e-12)
    # activation is faster than deactivation
    up = pm.first_order_activation(jnp.ones((60, 1)), 0.015, 0.06, fs, a0=jnp.zeros(1))
    down = pm.first_order_activation(jnp.zeros((60, 1)), 0.015, 0.06, fs, a0=jnp.ones(1))
    assert float(up[-1, 0]) > 1 - float(down[-1, 0])


def test_muscle_activation_models():
    from bench.errors import InvalidParameterError

    p = pm.make_params([100.0, 200.0], [0.1, 0.05], [0.2, 0.3], [0.1, 0.2], shape=[-1.0, -2.0])
    fs = 200.0
    e = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (40, 2)))
    a = pm.muscle_activation(p, e, fs, "first_order")
    ref = pm.activation_shape(
        pm.first_order_activation(pm.delay_signal(e, p.delay, fs), p.t_act, p.t_deact, fs),
        p.shape,
    )
    np.testing.assert_allclose(a, ref, atol=1e-15)
    a2 = pm.muscle_activation(p, e, fs, "recursive")
    ref2 = pm.activation_shape(pm.neural_activation(e, p.c1, p.c2, p.delay, fs), p.shape)
    np.testing.assert_allclose(a2, ref2, atol=1e-15)
    assert float(jnp.min(a)) >= 0 and float(jnp.max(a)) <= 1
    with pytest.raises(InvalidParameterError, match="'activation_model'"):
        pm.muscle_activation(p, e, fs, "second_order")


def test_resampled_coefficients_keep_the_step_response():
    fast, slow = 2048.0, 128.0
    c_slow = -0.6
    c_fast = float(pm.resample_recursive_coefficients(c_slow, slow, fast))
    n = 16 * 64
    step_fast = jnp.concatenate([jnp.zeros((16, 1)), jnp.ones((n - 16, 1))])
    u_fast = pm.neural_activation(step_fast, c_fast, c_fast, 0.0, fast)[::16, 0]
    u_slow = pm.neural_activation(step_fast[::16], c_slow, c_slow, 0.0, slow)[:, 0]
    # same continuous-time poles: equal shapes up to a shift of about one slow sample (the
    # recursion's direct feed-through advances its response by one sample at either rate)
    t_fast = np.arange(n) / fast
    uf = np.asarray(pm.neural_activation(step_fast, c_fast, c_fast, 0.0, fast)[:, 0])
    us = np.asarray(u_slow)
    t_slow = np.arange(us.size) / slow
    for level in (0.25, 0.5, 0.75, 0.95):
        t1 = np.interp(level, uf, t_fast)
        t2 = np.interp(level, us, t_slow)
        assert abs(t1 - t2) < 1.5 / slow
    assert float(jnp.max(jnp.abs(u_fast[20:] - u_slow[20:]))) < 1e-3


def test_make_params_validation_names_the_field():
    from bench.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'shape'"):
        pm.make_params([100.0], [0.1], [0.2], [0.1], shape=-3.5)
    with pytest.raises(InvalidParameterError, match="'l_opt'"):
        pm.make_params([100.0], [-0.1], [0.2], [0.1])
    with pytest.raises(InvalidParameterError, match="unknown"):
        pm.make_params([100.0], [0.1], [0.2], [0.1], foo=1.0)
