"""Levenberg-Marquardt calibration: residual identity, recovery of known parameters,
per-start stopping, determinism, bad input, compile-once."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import DataError, InvalidParameterError
from bench.metrics import cr2
from bench.registry import resolve
from bench.types import MuscleData
from estimators.calibration._problem import ModelLoss, WeightedModelLoss
from estimators.calibration.least_squares import (
    STATUS,
    LeastSquaresCalibrator,
    compiled_solvers,
    levenberg_marquardt,
)
from estimators.calibration.objectives import CalibrationSpace, Objective
from tests.calibration.test_calibrators import BASE, ToyModel, _data, _true_vector

# Rosenbrock as residuals r = (10 (x2 - x1^2), 1 - x1): minimum 0 at (1, 1).
LB, UB = np.array([-2.0, -2.0]), np.array([2.0, 2.0])


def _rosenbrock(x):
    return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def _outputs(rng, S=2, T=50, M=3, D=1):
    """Model outputs with fibre lengths and tendon strains outside their ranges."""
    return {"torque": jnp.asarray(rng.normal(size=(S, T, D))),
            "stiffness": jnp.asarray(rng.normal(size=(S, T, D))),
            "lm": jnp.asarray(rng.uniform(0.2, 1.9, size=(S, T, M))),
            "lt": jnp.asarray(rng.uniform(0.9, 1.7, size=(S, T, M)))}


@pytest.mark.parametrize("penalty", ["hard", "smooth", "both", "none"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.4, 0.6), (0.0, 1.0)])
def test_squared_residuals_sum_to_objective(penalty, alpha, beta):
    """000:Eq.8 (+ 000:Eq.9 / 001:Eq.4) is exactly the squared sum of its residual rows,
    with active penalties of both kinds (fibre length out of [0.5, 1.5], strain out of
    [0, 0.5], l_t < l_ts)."""
    rng = np.random.default_rng(3)
    out = _outputs(rng)
    tq, kk = np.asarray(rng.normal(size=(2, 50, 1))), np.asarray(rng.normal(size=(2, 50, 1)))
    obj = Objective(alpha, beta, penalty=penalty)
    vt, vk = Objective(1.0, 1.0).reference_variances(tq, kk)
    value = float(obj(out, tq, kk, vt, vk))
    r = np.asarray(obj.residuals(out, tq, kk, vt, vk))
    assert value > 0
    np.testing.assert_allclose(np.sum(r ** 2), value, rtol=1e-10)
    # weights as an argument (the sweep form) give the same rows' sum
    fit, pen = Objective(1.0, 1.0, penalty=penalty).residual_parts(
        out, tq, kk, vt, vk, weights=jnp.array([alpha, beta]))
    total = sum(float(jnp.sum(p ** 2)) for p in fit + pen)
    np.testing.assert_allclose(total, value, rtol=1e-10)


def test_model_loss_residuals_match_loss_on_the_toy_model():
    model, data = ToyModel(BASE), _data()
    space = CalibrationSpace.build(BASE, list(ToyModel.muscles))
    xs = space.start_points(space.x0, 4, np.random.default_rng(0))
    fn = ModelLoss(model, space, Objective(0.3, 0.7, penalty="both"))
    wf = WeightedModelLoss(model, space, Objective(1.0, 1.0, penalty="both"))
    d, dw = fn.prepare(data), wf.prepare(data)
    w = jnp.array([0.3, 0.7])
    for x in xs:
        x = jnp.asarray(x)
        np.testing.assert_allclose(np.sum(np.asarray(fn.residuals(x, d)) ** 2),
                                   float(fn(x, d)), rtol=1e-10)
        np.testing.assert_allclose(np.sum(np.asarray(wf.residuals(x, w, dw)) ** 2),
                                   float(wf(x, w, dw)), rtol=1e-10)


def test_lm_solves_rosenbrock_from_a_far_start():
    res = levenberg_marquardt(_rosenbrock, np.array([-1.2, 1.0]), LB, UB, ftol=1e-12,
                              gtol=1e-14, max_iterations=200)
    np.testing.assert_allclose(res.x[0], [1.0, 1.0], atol=1e-6)
    assert res.fun[0] < 1e-12
    assert STATUS[int(res.status[0])] in ("ftol", "gtol")
    h = res.history[:, 0]
    h = h[np.isfinite(h)]
    assert h.size == res.iterations[0] + 1 and np.all(np.diff(h) < 0)  # accepted = decrease


def test_each_start_stops_on_its_own_rule():
    """One easy (near the minimum) and one hard start in one call, sequential and vmapped:
    the easy one stops after fewer steps and freezes at the point it reaches alone."""
    starts = np.array([[0.9, 0.8], [-1.2, 1.0]])
    opts = {"ftol": 1e-10, "gtol": 1e-14, "max_iterations": 200}
    alone = levenberg_marquardt(_rosenbrock, starts[:1], LB, UB, **opts)
    for bs in (1, 2):
        res = levenberg_marquardt(_rosenbrock, starts, LB, UB, batch_size=bs, **opts)
        assert res.info["batch_size"] == bs
        assert res.iterations[0] < res.iterations[1]
        assert res.jacobians[0] < res.jacobians[1]
        assert res.iterations[0] == alone.iterations[0]
        np.testing.assert_allclose(res.x[0], alone.x[0], rtol=1e-9)
        np.testing.assert_allclose(res.x, np.ones((2, 2)), atol=1e-5)
        # the easy start's history ends where it stopped
        assert np.isnan(res.history[res.iterations[0] + 1, 0])


def test_max_iterations_stops_a_start():
    res = levenberg_marquardt(_rosenbrock, np.array([-1.2, 1.0]), LB, UB, ftol=1e-14,
                              gtol=0.0, max_iterations=3)
    assert res.iterations[0] == 3 and res.reasons == ["max_iter"]


def test_bounds_hold_when_the_optimum_is_outside():
    # minimum of (x - 5)^2 lies above ub = 1: iterates approach the bound, never cross it
    res = levenberg_marquardt(lambda x: x - 5.0, np.array([0.0]), np.array([-1.0]),
                              np.array([1.0]), ftol=1e-8)
    assert 0.99 < res.x[0, 0] < 1.0


def test_weight_batch_equals_separate_objectives():
    """A weight sweep through WeightedModelLoss (weights as batched arguments) reaches the
    same points as calibrations with each Objective(alpha, beta)."""
    model, data = ToyModel(BASE), _data()
    space = CalibrationSpace.build(BASE, list(ToyModel.muscles))
    combos = np.array([[1.0, 0.0], [0.5, 0.5]])
    wf = WeightedModelLoss(model, space, Objective(1.0, 1.0, penalty="smooth"))
    x0 = space.start_points(space.x0, 1, None)
    batch = levenberg_marquardt(wf, np.tile(x0, (2, 1)), space.lower, space.upper,
                                batch_args=combos, data=wf.prepare(data), ftol=1e-6)
    for c, (a, b) in enumerate(combos):
        fn = ModelLoss(model, space, Objective(a, b, penalty="smooth"))
        one = levenberg_marquardt(fn, x0, space.lower, space.upper, data=fn.prepare(data),
                                  ftol=1e-6)
        np.testing.assert_allclose(batch.x[c], one.x[0], rtol=1e-7)
        assert batch.iterations[c] == one.iterations[0]


def test_calibrator_recovers_true_parameters():
    """Synthetic toy MTUs with known truth (noise-free, 2 trials): LM from the perturbed
    initial parameters recovers them to 0.5 % mean relative error (Cr2)."""
    data = _data()
    cal = LeastSquaresCalibrator(ftol=1e-10, max_iterations=200)
    res = cal.calibrate(ToyModel(BASE), data, Objective(alpha=0.5, beta=0.5, penalty="smooth"))
    space = CalibrationSpace.build(BASE, list(ToyModel.muscles))
    x_hat = np.array([res.params[n] for n in space.names])
    assert cr2(_true_vector(space), x_hat) < 0.5  # percent
    assert res.info["E_tau"] < 1e-6
    assert res.info["calibrator"] == "least-squares"
    assert res.history.size == res.info["iterations"][0] + 1
    ident = res.info["identifiability"]
    assert ident["names"] == space.names
    json.dumps(ident)


def test_calibrator_is_deterministic_and_compiles_once():
    model, data = ToyModel(BASE), _data()
    obj = Objective(alpha=1.0, beta=0.0, penalty="smooth")
    cal = LeastSquaresCalibrator(restarts=3, seed=4, diagnostics=False)
    a = cal.calibrate(model, data, obj)
    n = compiled_solvers()
    b = cal.calibrate(model, data, obj)
    assert compiled_solvers() == n and not b.info["compiled"]
    assert a.params == b.params
    np.testing.assert_array_equal(a.info["restart_losses"], b.info["restart_losses"])
    assert "identifiability" not in a.info


def test_bad_input_is_rejected():
    data = _data()
    bad = MuscleData(excitation=data.excitation, angle=data.angle,
                     torque=np.full_like(data.torque, np.nan), fs=100.0, lmt=data.lmt,
                     moment_arm=data.moment_arm)
    with pytest.raises(DataError, match="NaN"):
        LeastSquaresCalibrator().calibrate(ToyModel(BASE), bad, Objective())
    with pytest.raises(InvalidParameterError, match="'ftol' parameter of LeastSquaresCalibrator"):
        LeastSquaresCalibrator(ftol=0.0).calibrate(ToyModel(BASE), data, Objective())
    with pytest.raises(DataError, match="strictly inside"):
        levenberg_marquardt(_rosenbrock, np.array([2.0, 0.0]), LB, UB)
    with pytest.raises(DataError, match="one row per start"):
        levenberg_marquardt(lambda x, b: x - b, np.zeros((2, 2)), LB, UB,
                            batch_args=np.zeros((3, 2)))
    with pytest.raises(DataError, match="max_iterations"):
        levenberg_marquardt(_rosenbrock, np.zeros(2), LB, UB, max_iterations=0)


def test_non_finite_start_stops_without_steps():
    res = levenberg_marquardt(lambda x: jnp.log(x - 0.5), np.array([0.2]), np.array([0.0]),
                              np.array([1.0]))
    assert res.reasons == ["non-finite start"] and res.iterations[0] == 0


def test_registered_under_its_name():
    assert resolve("calibrators", "least-squares") is LeastSquaresCalibrator


def test_weight_sweep_in_one_call_matches_single_calibrations():
    """calibrate_many runs a sweep that differs only in (alpha, beta) through one solver
    call; each result equals the calibration with that objective alone."""
    model, data = ToyModel(BASE), _data()
    cal = LeastSquaresCalibrator(restarts=2, ftol=1e-6, diagnostics=False)
    objs = [Objective(1.0, 0.0, penalty="smooth"), Objective(0.4, 0.6, penalty="smooth")]
    many = cal.calibrate_many(model, data, objs)
    assert [r.info["sweep_size"] for r in many] == [2, 2]
    for obj, r in zip(objs, many):
        one = cal.calibrate(model, data, obj)
        np.testing.assert_allclose([r.params[k] for k in one.params], list(one.params.values()),
                                   rtol=1e-7)
        np.testing.assert_allclose(r.info["objective"], one.info["objective"], rtol=1e-8,
                                   atol=1e-14)
    assert "alpha" in LeastSquaresCalibrator.tags.batch_factors
