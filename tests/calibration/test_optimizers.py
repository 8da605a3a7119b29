"""Generic optimizers behind the calibrators: Corana/Goffe annealing and batched AdamW."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import ConvergenceWarning, DataError
from estimators.calibration.annealing import anneal
from estimators.calibration.gradient import adamw_minimize, to_bounded, to_unbounded

TARGET = np.array([0.3, -1.2, 2.0, 0.7])
LB = np.array([-1.0, -2.0, 0.0, 0.0])
UB = np.array([1.0, 0.0, 3.0, 1.0])
W = np.array([1.0, 2.0, 3.0, 4.0])


def _quadratic(x):
    return jnp.sum(W * (x - TARGET) ** 2)


def test_adamw_restarts_converge_inside_bounds():
    starts = np.array([[0.5, -0.5, 1.5, 0.5], [0.0, -1.0, 1.0, 0.2], [-0.9, -1.9, 2.9, 0.9]])
    res = adamw_minimize(_quadratic, starts, LB, UB)
    assert res.x.shape == (3, 4)
    np.testing.assert_allclose(res.x, np.broadcast_to(TARGET, (3, 4)), atol=1e-3)
    assert np.all(res.fun < 1e-6)
    assert np.all(res.steps < 3000)  # each stopped on its plateau, not the step cap
    assert res.history.shape[1] == 3


def test_adamw_respects_bounds_when_optimum_is_outside():
    # optimum at x = 5 lies above ub = 1: the answer must approach the bound, never cross it
    res = adamw_minimize(lambda x: jnp.sum((x - 5.0) ** 2), np.array([0.0]), np.array([-1.0]),
                         np.array([1.0]), max_steps=2000)
    assert 0.98 < res.x[0, 0] < 1.0


def test_reparameterization_round_trip():
    x = np.array([-0.99, 0.0, 0.5, 0.999])
    lb, ub = np.full(4, -1.0), np.full(4, 1.0)
    np.testing.assert_allclose(np.asarray(to_bounded(to_unbounded(x, lb, ub), lb, ub)), x,
                               rtol=1e-6)


def test_annealing_finds_quadratic_minimum_and_is_seeded():
    f = jax.jit(_quadratic)
    a = anneal(lambda x: float(f(x)), np.array([0.5, -0.5, 1.5, 0.5]), LB, UB,
               np.random.default_rng(0))
    b = anneal(lambda x: float(f(x)), np.array([0.5, -0.5, 1.5, 0.5]), LB, UB,
               np.random.default_rng(0))
    assert a.converged
    assert a.fun < 1e-3  # eps = 1e-3 termination
    np.testing.assert_allclose(a.x, TARGET, atol=0.05)
    np.testing.assert_array_equal(a.x, b.x)
    assert np.all(np.diff(a.history) <= 0)  # best value never gets worse
    assert np.all((a.x >= LB) & (a.x <= UB))


def test_annealing_escapes_local_minimum():
    # Rastrigin in 2-D: local minima at the integer points (f = 18 at the start (3, -3)),
    # global minimum 0 at the origin. From the start, every run must leave its basin for the
    # two innermost rings (f <= 1) and most must reach the origin (6 of these 10 seeds).
    def rastrigin(x):
        return 20 + np.sum(x**2 - 10 * np.cos(2 * np.pi * x))

    fs = np.array([anneal(rastrigin, np.array([3.0, -3.0]), np.full(2, -5.12), np.full(2, 5.12),
                          np.random.default_rng(seed)).fun for seed in range(10)])
    assert np.all(fs < 1.0)
    assert np.sum(fs < 0.05) >= 5


def test_annealing_compiled_objective_equals_python_callback():
    """A JAX-traceable objective runs compiled; the same objective as an opaque Python
    callable runs through the callback; both follow the same draws to the same answer."""
    f = jax.jit(_quadratic)
    x0 = np.array([0.5, -0.5, 1.5, 0.5])
    fast = anneal(_quadratic, x0, LB, UB, np.random.default_rng(3))
    slow = anneal(lambda x: float(f(x)), x0, LB, UB, np.random.default_rng(3))
    assert fast.info["compiled"] and not slow.info["compiled"]
    assert fast.evaluations == slow.evaluations
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-12)


def test_annealing_budget_and_errors():
    with pytest.warns(ConvergenceWarning, match="budget"):
        r = anneal(lambda x: float(np.sum(x**2)), np.ones(3), -np.ones(3) * 2, np.ones(3) * 2,
                   np.random.default_rng(0), max_evaluations=50)
    assert r.evaluations == 50
    with pytest.raises(DataError, match="outside the bounds"):
        anneal(lambda x: 0.0, np.array([3.0]), np.array([0.0]), np.array([1.0]),
               np.random.default_rng(0))
    with pytest.raises(DataError, match="strictly inside"):
        adamw_minimize(_quadratic, UB, LB, UB)
