"""Shipped checks every calibrator must pass, on a small closed-form problem with known truth.

As :mod:`estimators.testing` does for impedance estimators (modelled on scikit-learn's
``check_estimator``), a new calibrator gets the whole suite with one line::

    from estimators.calibration.testing import check_calibrator
    check_calibrator(MyCalibrator(budget=500))

The problem (:func:`make_problem_data`) is a toy EMG-driven model that follows the
calibration model protocol of :mod:`estimators.calibration.objectives` without ``plants``
(estimators never import plants): M MTUs with activation ``a = (exp(A e) - 1) / (exp(A) - 1)``
(the study's Eq.1 shape factor A), normalized fibre length ``lm = (lmt - l_ts) / l_opt``, a
Gaussian force-length curve and ``F = f_max a f_L(lm)``; torque ``sum F r`` and stiffness
``sum F r^2 / l_opt``. Data are generated from a true parameter set inside the bounds, so a
calibrator that works recovers it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from functools import cache, partial
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from bench.errors import DataError
from bench.metrics import cr2
from bench.types import CalibrationResult, MuscleData
from estimators.calibration.objectives import CalibrationSpace, Objective

__all__ = ["ToyModel", "ToyParams", "check_calibrator", "iter_checks", "make_problem_data"]


class ToyParams(NamedTuple):
    """Per-MTU parameters of :class:`ToyModel` (fields of shape (M,))."""

    f_max: Any
    l_opt: Any
    l_ts: Any
    shape: Any


class ToyModel:
    """A small differentiable EMG-driven model following the calibration model protocol.

    Parameters
    ----------
    base_params : ToyParams
        Initial parameters.
    muscles : list of str
    """

    def __init__(self, base_params: ToyParams, muscles: list[str]) -> None:
        self.base_params = base_params
        self.muscles = tuple(muscles)
        self.strength_groups = None

    def inputs(self, data: MuscleData) -> dict[str, Any]:
        """Excitations (S, T, M), MTU lengths (S, T, M) m and moment arms (S, T, M) m."""
        exc = np.asarray(data.excitation, dtype=float)
        if exc.ndim != 3 or exc.shape[2] != len(self.muscles):
            raise DataError(f"excitation must have shape (S, T, {len(self.muscles)}); got "
                            f"{exc.shape}")
        return {"excitation": jnp.asarray(exc), "lmt": jnp.asarray(data.lmt),
                "r": jnp.asarray(np.asarray(data.moment_arm)[..., 0])}

    def simulate(self, params: ToyParams, inputs: dict[str, Any]) -> dict[str, Any]:
        """Torque, stiffness (S, T, 1) and normalized fibre/tendon lengths (S, T, M)."""
        A = params.shape
        a = jnp.expm1(A * inputs["excitation"]) / jnp.expm1(A)
        lm = (inputs["lmt"] - params.l_ts) / params.l_opt
        force = params.f_max * a * jnp.exp(-jnp.square((lm - 1.0) / 0.45))
        r = inputs["r"]
        torque = jnp.sum(force * r, axis=-1, keepdims=True)
        stiffness = jnp.sum(force * r * r / params.l_opt, axis=-1, keepdims=True)
        return {"torque": torque, "stiffness": stiffness, "lm": lm,
                "lt": jnp.ones_like(lm)}


@cache
def make_problem_data(seed: int = 0, *, T: int = 120, M: int = 2) -> tuple:
    """The toy problem: model (at the initial parameters), data from the true ones, space.

    Cached: every check of a calibrator uses the same model object, so a calibrator that
    compiles per model compiles once for the whole suite (the checks verify that nothing
    mutates these objects).

    Returns
    -------
    model : ToyModel
    data : MuscleData
        One trial of T samples: excitations, MTU lengths, moment arms, torque (Nm) and
        stiffness (Nm/rad) of the true model, fs = 100 Hz.
    x_true : ndarray, shape (n,)
        The true parameters in ``space`` coordinates.
    space : CalibrationSpace
        l_opt, l_ts (+-5 %), strength (0.3, 2.5), shape (-3, 0).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 100.0
    names = [f"m{i}" for i in range(M)]
    base = ToyParams(f_max=np.full(M, 500.0), l_opt=np.linspace(0.05, 0.08, M),
                     l_ts=np.linspace(0.25, 0.3, M), shape=np.full(M, -1.5))
    exc = 0.5 + 0.4 * np.sin(2 * np.pi * (0.7 + 0.3 * np.arange(M)) * t[:, None]
                             + rng.uniform(0, np.pi, M))
    lmt = (base.l_ts + base.l_opt)[None, :] * (1 + 0.04 * np.sin(2 * np.pi * 0.5 * t)[:, None])
    r = np.tile(np.linspace(0.04, -0.03, M), (T, 1))
    truth = ToyParams(f_max=base.f_max * rng.uniform(0.8, 1.25, M),
                      l_opt=base.l_opt * (1 + rng.uniform(-0.03, 0.03, M)),
                      l_ts=base.l_ts * (1 + rng.uniform(-0.03, 0.03, M)),
                      shape=base.shape + rng.uniform(-0.5, 0.5, M))
    model = ToyModel(ToyParams(*(jnp.asarray(v) for v in base)), names)
    inputs = {"excitation": jnp.asarray(exc[None]), "lmt": jnp.asarray(lmt[None]),
              "r": jnp.asarray(r[None])}
    out = model.simulate(ToyParams(*(jnp.asarray(v) for v in truth)), inputs)
    data = MuscleData(excitation=exc[None], angle=np.zeros((1, T, 1)),
                      torque=np.asarray(out["torque"]), fs=100.0, lmt=lmt[None],
                      moment_arm=r[None, :, :, None], stiffness=np.asarray(out["stiffness"]),
                      channels=names, muscles=names, dofs=["q"])
    space = CalibrationSpace.build(model.base_params, names)
    x_true = np.concatenate([truth.l_opt, truth.l_ts, truth.f_max / base.f_max, truth.shape])
    return model, data, x_true, space


# --------------------------------------------------------------------------- checks


def check_returns_result(calibrator: Any) -> None:
    """A :class:`CalibrationResult` with named parameters inside their bounds, a finite
    objective and the calibrated vector in ``info["x"]``."""
    model, data, _, space = make_problem_data()
    res = calibrator.calibrate(model, data, Objective(1.0, 0.0, penalty="smooth"), space=space)
    assert isinstance(res, CalibrationResult), f"returned {type(res).__name__}"
    x = np.asarray(res.info["x"], dtype=float)
    assert x.shape == (space.size,) and list(res.params) == space.names
    assert np.all(x >= space.lower - 1e-9) and np.all(x <= space.upper + 1e-9), "out of bounds"
    assert np.isfinite(res.info["objective"]) and res.evaluations > 0


def check_recovers_truth(calibrator: Any, *, objective_drop: float = 20.0,
                         cr2_drop: float = 1.5) -> None:
    """From the initial parameters, the calibration lowers the objective (torque + stiffness)
    by at least ``objective_drop`` times and moves the parameters toward the truth: Cr2
    (mean relative error, Sanderink et al. Eq.23) falls by at least ``cr2_drop`` times."""
    model, data, x_true, space = make_problem_data()
    obj = Objective(1.0, 1.0, penalty="smooth")
    from estimators.calibration._problem import make_problem

    f0 = float(make_problem(model, data, obj, space).loss(space.x0))
    res = calibrator.calibrate(model, data, obj, space=space)
    f1 = float(res.info["objective"])
    assert f1 * objective_drop <= f0, f"objective {f0:.4g} -> {f1:.4g}"
    c0, c1 = cr2(x_true, space.x0), cr2(x_true, np.asarray(res.info["x"]))
    assert c1 * cr2_drop <= c0, f"Cr2 {c0:.3g} % -> {c1:.3g} %"


def check_deterministic(calibrator: Any) -> None:
    """The same instance on the same data gives the same parameters twice."""
    model, data, _, space = make_problem_data()
    obj = Objective(1.0, 0.0, penalty="smooth")
    a = np.asarray(calibrator.calibrate(model, data, obj, space=space).info["x"])
    b = np.asarray(calibrator.calibrate(model, data, obj, space=space).info["x"])
    np.testing.assert_array_equal(a, b)


def check_does_not_mutate_input(calibrator: Any) -> None:
    """The data and the model's initial parameters are unchanged by a calibration."""
    model, data, _, space = make_problem_data()
    before = copy.deepcopy(data)  # (the cached problem must stay as generated)
    base = [np.array(v) for v in model.base_params]
    calibrator.calibrate(model, data, Objective(1.0, 0.0, penalty="smooth"), space=space)
    for f in ("excitation", "torque", "lmt", "moment_arm", "stiffness"):
        np.testing.assert_array_equal(getattr(data, f), getattr(before, f))
    for a, b in zip(base, model.base_params):
        np.testing.assert_array_equal(a, np.asarray(b))


def check_bad_input(calibrator: Any) -> None:
    """NaN in the reference torque is refused with a DataError, not a wrong number."""
    model, data, _, space = make_problem_data()
    torque = np.array(data.torque)
    torque[0, 5, 0] = np.nan
    bad = MuscleData(**{**data.__dict__, "torque": torque})
    try:
        calibrator.calibrate(model, bad, Objective(1.0, 0.0, penalty="smooth"), space=space)
    except DataError:
        return
    raise AssertionError("NaN reference torque was accepted")


_CHECKS: tuple[Callable[[Any], None], ...] = (
    check_returns_result, check_recovers_truth, check_deterministic,
    check_does_not_mutate_input, check_bad_input)


def iter_checks(calibrator: Any) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for ``calibrator`` (one pytest case each)."""
    for fn in _CHECKS:
        yield fn.__name__, partial(fn, calibrator)


def check_calibrator(calibrator: Any) -> None:
    """Run every shipped check on ``calibrator`` (raises AssertionError on the first failure)."""
    for _, check in iter_checks(calibrator):
        check()
