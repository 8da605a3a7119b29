"""Calibrators on a small differentiable toy MTU model with known truth.

The real Hill-type ankle is exercised in the ankle study tests; this file pins the
calibrators' mechanics: bounds, restarts, recovery of known parameters, result contents.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import ConvergenceWarning, DataError, InvalidParameterError
from bench.metrics import cr2
from bench.types import MuscleData
from estimators.calibration.annealing import AnnealingCalibrator
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective


class ToyParams(NamedTuple):
    f_max: jnp.ndarray
    l_opt: jnp.ndarray
    l_ts: jnp.ndarray
    shape: jnp.ndarray


class ToyModel:
    """Rigid-tendon MTUs: F = f_max a(e; A) f_L(l_m), l_m = (l_mt - l_ts) / l_opt."""

    muscles = ("flexor", "extensor")
    strength_groups = None

    def __init__(self, base: ToyParams) -> None:
        self.base_params = base

    def inputs(self, data: MuscleData):
        return (jnp.asarray(data.excitation), jnp.asarray(data.lmt),
                jnp.asarray(data.moment_arm))

    def simulate(self, p: ToyParams, inputs):
        e, lmt, r = inputs
        a = (jnp.exp(p.shape * e) - 1) / (jnp.exp(p.shape) - 1)
        lm = (lmt - p.l_ts) / p.l_opt
        fl = jnp.exp(-jnp.square((lm - 1) / 0.45))
        F = p.f_max * a * fl
        dF = p.f_max * a * fl * (-2 * (lm - 1) / 0.45**2) / p.l_opt
        torque = jnp.sum(F * r, axis=-1, keepdims=True)
        stiffness = jnp.sum(dF * r * r, axis=-1, keepdims=True)
        return {"torque": torque, "stiffness": stiffness, "lm": lm, "lt": jnp.ones_like(lm)}


TRUE = ToyParams(jnp.array([800.0, 600.0]), jnp.array([0.06, 0.05]), jnp.array([0.20, 0.25]),
                 jnp.array([-1.5, -0.8]))
BASE = ToyParams(jnp.array([500.0, 500.0]), jnp.array([0.058, 0.051]),
                 jnp.array([0.205, 0.248]), jnp.array([-1.0, -1.0]))


def _data(seed=0, S=2, T=200):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 100.0
    e = np.stack([np.stack([0.3 + 0.25 * np.sin(2 * np.pi * (0.7 + 0.2 * s) * t + k)
                            for k in range(2)], -1) for s in range(S)])
    e = np.clip(e + 0.05 * rng.standard_normal(e.shape), 0, 1)
    ang = np.stack([0.2 * np.sin(2 * np.pi * 0.5 * t + s) for s in range(S)])[..., None]
    lmt = np.concatenate([0.262 - 0.04 * ang, 0.298 + 0.03 * ang], axis=-1)
    r = np.broadcast_to(np.array([0.04, -0.03]), lmt.shape).copy()
    model = ToyModel(TRUE)
    out = model.simulate(TRUE, (jnp.asarray(e), jnp.asarray(lmt), jnp.asarray(r)))
    return MuscleData(excitation=e, angle=ang, torque=np.asarray(out["torque"]), fs=100.0,
                      lmt=lmt, moment_arm=r, stiffness=np.asarray(out["stiffness"]),
                      muscles=list(ToyModel.muscles), dofs=["ankle"])


def _true_vector(space):
    return np.concatenate([np.asarray(TRUE.l_opt), np.asarray(TRUE.l_ts),
                           np.asarray(TRUE.f_max / BASE.f_max), np.asarray(TRUE.shape)])


def test_adamw_recovers_true_parameters_from_perturbed_start():
    data = _data()
    res = GradientCalibrator(restarts=4, max_steps=3000).calibrate(
        ToyModel(BASE), data, Objective(alpha=0.5, beta=0.5, penalty="smooth"))
    space = CalibrationSpace.build(BASE, list(ToyModel.muscles))
    x_hat = np.array([res.params[n] for n in space.names])
    assert cr2(_true_vector(space), x_hat) < 2.0  # percent
    assert res.info["E_tau"] < 1e-3
    assert res.specs[0].name == "l_opt[flexor]" and res.specs[0].unit == "m"
    assert res.predicted["calibration"]["torque"].shape == data.torque.shape


def test_annealing_lowers_objective():
    data = _data()
    obj = Objective(alpha=1.0, beta=0.0, penalty="hard")
    with pytest.warns(ConvergenceWarning):  # both stop at the budget before eps
        start = AnnealingCalibrator(max_evaluations=20).calibrate(ToyModel(BASE), data, obj)
    with pytest.warns(ConvergenceWarning):
        res = AnnealingCalibrator(seed=1, max_evaluations=6000).calibrate(
            ToyModel(BASE), data, obj)
    assert res.info["objective"] < 0.1 * start.info["objective"]
    assert res.info["objective"] < 0.05
    assert res.evaluations == 6000


def test_calibrator_errors():
    data = _data()
    with pytest.raises(InvalidParameterError, match="'restarts' parameter of GradientCalibrator"):
        GradientCalibrator(restarts=0).calibrate(ToyModel(BASE), data, Objective())
    bad = MuscleData(excitation=data.excitation, angle=data.angle,
                     torque=np.full_like(data.torque, np.nan), fs=100.0, lmt=data.lmt,
                     moment_arm=data.moment_arm)
    with pytest.raises(DataError, match="NaN"):
        AnnealingCalibrator().calibrate(ToyModel(BASE), bad, Objective())


def test_adamw_step_compiled_once_for_same_loss_function_and_shapes():
    """A second problem with the same ModelLoss and array shapes reuses the compiled step
    and gives the same answer as a fresh closure over its data."""
    from estimators.calibration._problem import ModelLoss
    from estimators.calibration.gradient import adamw_minimize

    model = ToyModel(BASE)
    space = CalibrationSpace.build(BASE, list(ToyModel.muscles))
    fn = ModelLoss(model, space, Objective(alpha=1.0, beta=0.0, penalty="smooth"))
    assert fn == ModelLoss(model, space, Objective(alpha=1.0, beta=0.0, penalty="smooth"))
    assert fn != ModelLoss(model, space, Objective(alpha=0.5, beta=0.0, penalty="smooth"))
    x0 = space.start_points(space.x0, 2, np.random.default_rng(0))
    opts = {"max_steps": 100, "patience": 1000}
    first = adamw_minimize(fn, x0, space.lower, space.upper, data=fn.prepare(_data(0)), **opts)
    d1 = fn.prepare(_data(1))
    again = adamw_minimize(fn, x0, space.lower, space.upper, data=d1, **opts)
    assert first.info["compiled"] and not again.info["compiled"]

    def closure(x):
        return fn(x, d1)

    fresh = adamw_minimize(closure, x0, space.lower, space.upper, **opts)
    assert fresh.info["compiled"]
    np.testing.assert_allclose(again.x, fresh.x, rtol=1e-9)
    np.testing.assert_allclose(again.fun, fresh.fun, rtol=1e-9)


def test_repeated_gradient_calibrations_of_one_model_compile_once():
    """Without an explicit space, calibrations of one model object share its default space,
    hence one compiled AdamW step; a new base parameter set gets a new space."""
    from estimators.calibration._problem import default_space
    from estimators.calibration.gradient import compiled_steps

    model = ToyModel(BASE)
    assert default_space(model) is default_space(model)
    cal = GradientCalibrator(restarts=1, max_steps=100)
    obj = Objective(alpha=1.0, beta=0.0, penalty="smooth")
    cal.calibrate(model, _data(0), obj)
    n = compiled_steps()
    cal.calibrate(model, _data(1), obj)
    assert compiled_steps() == n
    space = default_space(model)
    model.base_params = BASE._replace(f_max=BASE.f_max * 1.1)
    assert default_space(model) is not space
