"""Shared glue of the calibrators: model + data + objective -> a loss of a flat vector.

The model protocol is described in :mod:`estimators.calibration.objectives`; additionally
``model.inputs(data) -> pytree`` prepares the arrays ``simulate`` needs from a
:class:`~bench.types.MuscleData` (excitations, MTU lengths, moment arms ...).

The loss is split into a *function* and its *data* so that compiled code is reused: a
:class:`ModelLoss` holds only the model, the parameter space and the objective (it hashes by
the identity of the first two and the value of the third) and takes the arrays of one problem
(:meth:`ModelLoss.prepare`) as an argument. :func:`estimators.calibration.gradient.
adamw_minimize` jits its optimizer step with the loss function as a static argument, so every
calibration with the same model, space and array shapes (another subject, another weight
sweep, another call of a calibrator) runs the executable compiled the first time.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import DataError
from bench.types import CalibrationResult, MuscleData
from estimators.calibration.identifiability import identifiability as local_identifiability
from estimators.calibration.objectives import (
    CalibrationSpace,
    Objective,
    assemble,
    sample_weights,
)

__all__ = ["ModelLoss", "Problem", "WeightedModelLoss", "best_restarts", "call_compiled",
           "default_space", "make_problem", "predict", "result_from", "valid_mask"]


def valid_mask(data: MuscleData) -> np.ndarray | None:
    """``data.meta["valid"]`` (S, T) bool when trials of different lengths are stacked
    padded, else None."""
    v = (data.meta or {}).get("valid")
    if v is None:
        return None
    v = np.asarray(v, dtype=bool)
    if v.shape != np.shape(data.torque)[:2]:
        raise DataError(f"MuscleData.meta['valid'] must have shape {np.shape(data.torque)[:2]}; "
                        f"got {v.shape}")
    return v


class ModelLoss:
    """000:Eq.8 of a model over a calibrated-parameter vector: ``loss(x, data) -> scalar``.

    Parameters
    ----------
    model : object
        Forward model (protocol of :mod:`estimators.calibration.objectives`).
    space : CalibrationSpace
    objective : Objective

    Notes
    -----
    Equality and hashing use the identity of ``model`` and ``space`` and the value of
    ``objective``: two instances built from the same objects are interchangeable as a
    static argument of ``jax.jit``.
    """

    def __init__(self, model: Any, space: CalibrationSpace, objective: Objective) -> None:
        self.model = model
        self.space = space
        self.objective = objective

    def _key(self) -> tuple:
        return (type(self), id(self.model), id(self.space), self.objective)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelLoss) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def prepare(self, data: MuscleData, *, need_stiffness: bool = False) -> dict[str, Any]:
        """Validated arrays of one problem: model inputs, references and their variances.

        Parameters
        ----------
        data : MuscleData
            ``torque`` (S, T, D) Nm; ``stiffness`` (S, T, D) Nm/rad when the objective's
            beta > 0 or ``need_stiffness``.

        Returns
        -------
        dict
            ``inputs`` (``model.inputs(data)``), ``torque``, ``stiffness`` (or None),
            ``var_torque``, ``var_stiffness`` (S, 1, D) (or None), all JAX arrays, and
            ``sample_weight`` (None). Trials of different lengths, stacked padded with
            ``data.meta["valid"]`` (S, T) marking their own samples
            (:func:`~estimators.calibration.task.cut_windows`), get the variances per sample
            with the weights folded in (S, T, D) and ``sample_weight`` (S, T) for the
            penalties (:meth:`Objective.reference_variances`): the loss averages each trial
            over its own samples (000:Eq.8).

        Raises
        ------
        DataError
            Not MuscleData, a torque of the wrong rank, NaN/inf or constant references.
        """
        if not isinstance(data, MuscleData):
            raise DataError(f"calibration data must be MuscleData; got {type(data).__name__}")
        torque = np.asarray(data.torque, dtype=float)
        if torque.ndim != 3:
            raise DataError(f"MuscleData.torque must have shape (S, T, D); got {torque.shape}")
        if not np.all(np.isfinite(torque)):
            raise DataError("reference torque contains NaN/inf")
        stiffness = None if data.stiffness is None else np.asarray(data.stiffness, dtype=float)
        if need_stiffness and stiffness is None:
            raise DataError("this calibration needs a reference stiffness (MuscleData.stiffness)")
        if stiffness is not None and not np.all(np.isfinite(stiffness)):
            raise DataError("reference stiffness contains NaN/inf")
        obj = dataclasses.replace(self.objective, beta=1.0) if need_stiffness else self.objective
        valid = valid_mask(data)
        vt, vk = obj.reference_variances(torque, stiffness, valid)
        sw = None if valid is None else sample_weights(valid)
        as_j = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
        return {"inputs": self.model.inputs(data), "torque": as_j(torque),
                "stiffness": as_j(stiffness), "var_torque": as_j(vt), "var_stiffness": as_j(vk),
                "sample_weight": as_j(sw)}

    def outputs(self, x: jnp.ndarray, data: dict) -> dict:
        """Model outputs at ``x`` (JAX-traceable)."""
        return self.model.simulate(self.space.unpack(x), data["inputs"])

    def __call__(self, x: jnp.ndarray, data: dict) -> jnp.ndarray:
        """000:Eq.8 (with the objective's penalty) at ``x``; JAX-traceable."""
        out = self.outputs(x, data)
        return self.objective(out, data["torque"], data["stiffness"], data["var_torque"],
                              data["var_stiffness"], data.get("sample_weight"))

    def residual_parts(self, x: jnp.ndarray, data: dict) -> tuple[list, list]:
        """000:Eq.8 at ``x`` as residual rows ``(fit, penalty)``: two lists of 1-D arrays
        (:meth:`Objective.residual_parts`) whose squared sums add up to :meth:`__call__`.

        Kept as lists so that a consumer assembles all rows in *one*
        :func:`~estimators.calibration.objectives.assemble` (a nested one is rewritten by
        XLA into the slow concatenate it avoids)."""
        out = self.outputs(x, data)
        return self.objective.residual_parts(
            out, data["torque"], data["stiffness"], data["var_torque"], data["var_stiffness"],
            sample_weight=data.get("sample_weight"))

    def residuals(self, x: jnp.ndarray, data: dict) -> jnp.ndarray:
        """All residual rows at ``x``, shape (m,); ``sum(r**2)`` equals :meth:`__call__`."""
        fit, pen = self.residual_parts(x, data)
        return assemble(fit + pen)


class WeightedModelLoss(ModelLoss):
    """000:Eq.8 with the weights as an argument: ``loss(x, w, data)``.

    ``w = (alpha, beta)``; the value is ``alpha J_tau + beta J_K + P`` with ``J_tau``, ``J_K``
    the normalized torque and stiffness errors and ``P`` the objective's penalty. The
    objective is linear in alpha and beta, so this equals ``Objective(alpha, beta, ...)``;
    with the weights an argument, a whole (alpha, beta) sweep is one vmapped computation.
    The ``alpha``/``beta`` of ``objective`` itself are ignored.
    """

    def prepare(self, data: MuscleData, *, need_stiffness: bool = True) -> dict[str, Any]:
        """As :meth:`ModelLoss.prepare`; a reference stiffness is required by default."""
        return super().prepare(data, need_stiffness=need_stiffness)

    def __call__(self, x: jnp.ndarray, w: jnp.ndarray, data: dict) -> jnp.ndarray:  # type: ignore[override]
        out = self.outputs(x, data)
        ref = (data["torque"], data["stiffness"], data["var_torque"], data["var_stiffness"],
               data.get("sample_weight"))
        o = self.objective
        j_t = dataclasses.replace(o, alpha=1.0, beta=0.0, penalty="none")(out, *ref)
        j_k = dataclasses.replace(o, alpha=0.0, beta=1.0, penalty="none")(out, *ref)
        pen = dataclasses.replace(o, alpha=0.0, beta=0.0)(out, *ref)
        return w[0] * j_t + w[1] * j_k + pen  # 000:Eq.8

    def residual_parts(  # type: ignore[override]
        self, x: jnp.ndarray, w: jnp.ndarray, data: dict,
    ) -> tuple[list, list]:
        """Rows ``(fit, penalty)`` of ``loss(x, w, data)`` as lists of 1-D arrays:
        ``sqrt(alpha)`` times the torque rows and ``sqrt(beta)`` times the stiffness rows,
        then the penalty rows."""
        out = self.outputs(x, data)
        return self.objective.residual_parts(
            out, data["torque"], data["stiffness"], data["var_torque"], data["var_stiffness"],
            weights=w, sample_weight=data.get("sample_weight"))

    def residuals(self, x: jnp.ndarray, w: jnp.ndarray, data: dict) -> jnp.ndarray:  # type: ignore[override]
        """All rows of ``loss(x, w, data)``; ``sum(r**2)`` equals :meth:`__call__`."""
        fit, pen = self.residual_parts(x, w, data)
        return assemble(fit + pen)


@dataclass(frozen=True)
class Problem:
    """A calibration problem ready for an optimizer.

    ``loss(x)`` is jitted; ``loss_fn(x, data)`` with ``data`` (:meth:`ModelLoss.prepare`:
    model inputs, references and their variances) is the same loss in the reusable form.
    ``torque`` and ``stiffness`` are the references as numpy arrays; ``valid`` (S, T) marks
    each trial's own samples when trials of different lengths are stacked padded.
    """

    space: CalibrationSpace
    loss: Any  # jitted x -> scalar
    torque: np.ndarray
    stiffness: np.ndarray | None
    loss_fn: ModelLoss
    data: dict
    valid: np.ndarray | None = None


_DEFAULT_SPACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def default_space(model: Any) -> CalibrationSpace:
    """The default calibrated-parameter space of ``model`` (000 Fig. 2 bounds), built once
    per model object and its current ``base_params``, so that repeated calibrations of one
    model share one :class:`ModelLoss` key and hence one compiled optimizer step."""
    try:
        base, space = _DEFAULT_SPACES[model]
    except (KeyError, TypeError):
        base, space = None, None
    if space is None or base is not model.base_params:
        space = CalibrationSpace.build(
            model.base_params, list(model.muscles),
            strength_groups=getattr(model, "strength_groups", None),
        )
        try:
            _DEFAULT_SPACES[model] = (model.base_params, space)
        except TypeError:  # not weak-referenceable or unhashable: no memo
            pass
    return space


@partial(jax.jit, static_argnums=0)
def call_compiled(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` compiled once per function object (a :class:`ModelLoss` hashes by its
    model, space and objective) and argument shapes."""
    return fn(*args)


@partial(jax.jit, static_argnums=0)
def _outputs_at(fn: ModelLoss, x: jnp.ndarray, inputs: Any) -> dict:
    """Model outputs at ``x``, compiled once per model, space and input shapes."""
    return fn.model.simulate(fn.space.unpack(x), inputs)


def make_problem(
    model: Any,
    data: MuscleData,
    objective: Objective,
    space: CalibrationSpace | None = None,
) -> Problem:
    """Build the loss of 000:Eq.8 over the calibrated-parameter vector.

    ``Problem.loss`` runs an executable compiled once per model, space, objective and data
    shapes (not once per problem), so building many problems of one shape is cheap.
    """
    if space is None:
        space = default_space(model)
    fn = ModelLoss(model, space, objective)
    d = fn.prepare(data)

    stiff = None if d["stiffness"] is None else np.asarray(d["stiffness"])
    return Problem(space, lambda x: call_compiled(fn, jnp.asarray(x), d), np.asarray(d["torque"]),
                   stiff, fn, d, valid_mask(data))


def predict(model: Any, space: CalibrationSpace, x: np.ndarray, data: MuscleData) -> dict:
    """Model outputs (numpy) for parameter vector ``x`` on ``data`` (e.g. held-out trials);
    compiled once per model, space and data shape."""
    out = _outputs_at(ModelLoss(model, space, Objective()), jnp.asarray(x), model.inputs(data))
    return {k: np.asarray(v) for k, v in out.items()}


def result_from(
    problem: Problem, model: Any, data: MuscleData, objective: Objective, x: np.ndarray,
    history: np.ndarray, wall_time: float, evaluations: int, info: dict,
    *, identifiability: bool = True,
) -> CalibrationResult:
    """Assemble a :class:`CalibrationResult` with named parameters and predictions.

    With ``identifiability`` (the default, for every calibrator), ``info["identifiability"]``
    holds :func:`~estimators.calibration.identifiability.identifiability` at ``x``: singular
    values and condition number of the scaled Jacobian, the most correlated parameter pairs
    and a Gauss-Newton standard error per parameter (``{"error": ...}`` where the Jacobian is
    not finite there).
    """
    pred = predict(model, problem.space, x, data)
    info = dict(info)
    info.update(objective.errors(pred, problem.torque, problem.stiffness, problem.valid))
    info["objective"] = float(problem.loss(jnp.asarray(x)))
    info["x"] = np.asarray(x)
    if identifiability and "identifiability" not in info:
        try:
            info["identifiability"] = local_identifiability(problem, np.asarray(x))
        except DataError as exc:  # a diagnostic must not fail the calibration
            info["identifiability"] = {"error": str(exc)}
    return CalibrationResult(
        params=problem.space.to_dict(x),
        specs=problem.space.specs,
        history=np.asarray(history),
        wall_time=wall_time,
        evaluations=int(evaluations),
        predicted={"calibration": pred},
        info=info,
    )


def best_restarts(fun: np.ndarray, n_objectives: int, restarts: int
                  ) -> list[tuple[np.ndarray, int]]:
    """Rows of each objective in a weight sweep solved as one batch (objective-major, the
    objective's ``restarts`` start points together) and the row of its lowest finite loss.

    Parameters
    ----------
    fun : ndarray, shape (n_objectives * restarts,)
        Final loss of every row.

    Returns
    -------
    list of (rows, best)
        ``rows`` (shape (restarts,)) and ``best`` (one of them) per objective.
    """
    fun = np.asarray(fun, dtype=float)
    out = []
    for c in range(n_objectives):
        rows = np.arange(c * restarts, (c + 1) * restarts)
        f = fun[rows]
        out.append((rows, int(rows[int(np.argmin(np.where(np.isfinite(f), f, np.inf)))])))
    return out
