"""Shared glue of the calibrators: model + data + objective -> a jitted loss of a flat vector.

The model protocol is described in :mod:`estimators.calibration.objectives`; additionally
``model.inputs(data) -> pytree`` prepares the arrays ``simulate`` needs from a
:class:`~bench.types.MuscleData` (excitations, MTU lengths, moment arms ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import DataError
from bench.types import CalibrationResult, MuscleData
from estimators.calibration.objectives import CalibrationSpace, Objective

__all__ = ["Problem", "make_problem", "predict", "result_from"]


@dataclass(frozen=True)
class Problem:
    """A calibration problem ready for an optimizer."""

    space: CalibrationSpace
    loss: Any  # jitted x -> scalar
    loss_unjitted: Any
    inputs: Any
    torque: np.ndarray
    stiffness: np.ndarray | None


def make_problem(
    model: Any,
    data: MuscleData,
    objective: Objective,
    space: CalibrationSpace | None = None,
) -> Problem:
    """Build the loss of 000:Eq.8 over the calibrated-parameter vector."""
    if not isinstance(data, MuscleData):
        raise DataError(f"calibration data must be MuscleData; got {type(data).__name__}")
    torque = np.asarray(data.torque, dtype=float)
    if torque.ndim != 3:
        raise DataError(f"MuscleData.torque must have shape (S, T, D); got {torque.shape}")
    if not np.all(np.isfinite(torque)):
        raise DataError("reference torque contains NaN/inf")
    stiffness = None if data.stiffness is None else np.asarray(data.stiffness, dtype=float)
    if stiffness is not None and not np.all(np.isfinite(stiffness)):
        raise DataError("reference stiffness contains NaN/inf")
    if space is None:
        space = CalibrationSpace.build(
            model.base_params, list(model.muscles),
            strength_groups=getattr(model, "strength_groups", None),
        )
    vt, vk = objective.reference_variances(torque, stiffness)
    inputs = model.inputs(data)
    tj = jnp.asarray(torque)
    kj = None if stiffness is None else jnp.asarray(stiffness)
    vtj = jnp.asarray(vt)
    vkj = None if vk is None else jnp.asarray(vk)

    def loss(x):
        out = model.simulate(space.unpack(x), inputs)
        return objective(out, tj, kj, vtj, vkj)

    return Problem(space, jax.jit(loss), loss, inputs, torque, stiffness)


def predict(model: Any, space: CalibrationSpace, x: np.ndarray, data: MuscleData) -> dict:
    """Model outputs (numpy) for parameter vector ``x`` on ``data`` (e.g. held-out trials)."""
    out = model.simulate(space.unpack(jnp.asarray(x)), model.inputs(data))
    return {k: np.asarray(v) for k, v in out.items()}


def result_from(
    problem: Problem, model: Any, data: MuscleData, objective: Objective, x: np.ndarray,
    history: np.ndarray, wall_time: float, evaluations: int, info: dict,
) -> CalibrationResult:
    """Assemble a :class:`CalibrationResult` with named parameters and predictions."""
    pred = predict(model, problem.space, x, data)
    info = dict(info)
    info.update(objective.errors(pred, problem.torque, problem.stiffness))
    info["objective"] = float(problem.loss(jnp.asarray(x)))
    info["x"] = np.asarray(x)
    return CalibrationResult(
        params=problem.space.to_dict(x),
        specs=problem.space.specs,
        history=np.asarray(history),
        wall_time=wall_time,
        evaluations=int(evaluations),
        predicted={"calibration": pred},
        info=info,
    )
