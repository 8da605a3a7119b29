"""Gradient-based calibration: AdamW through a differentiable model (001 Sec. III-B).

Bounded parameters are optimized through a smooth reparameterization

    x = lb + (ub - lb) sigmoid(z),

so every iterate stays inside its bounds and gradients never vanish at a clip. The optimizer
is ``optax.adamw`` with an exponentially decaying learning rate; several restarts (different
start points) run as one ``jax.vmap``-ed, jitted computation, stepped in chunks of
``lax.scan``. Each restart stops on a plateau: when its best loss has not improved by a
relative ``tol`` for ``patience`` steps, its parameters are frozen (001: "halting when the
loss function ceased improving for a predefined number of iterations"); "improving" means by
more than ``tol`` relative to the best loss, floored at 1e-3 of the starting loss.

Compilation is paid once per process and problem shape: the step is a module-level jitted
function whose *loss function* is a static argument and whose data, bounds, batch arguments
and optimizer settings are array arguments. Pass a stable loss object (a
:class:`~estimators.calibration._problem.ModelLoss`) and the problem's arrays as ``data``
and every later calibration with the same shapes (another subject, trial or weight sweep)
skips tracing and XLA compilation (on the ankle problem: about 3.7 s once, then 0.05 s per
200 steps; ``python -m benchmarks.calibration``).

Choices (001's Table SII with its exact settings is not in our sources, so ours are stated):
learning rate 0.05 in z-space decaying by 0.5 every 500 steps, weight decay 1e-4 (optax's
default; it acts on z, i.e. a weak pull toward the middle of each bound interval), at most
3000 steps, patience 100 steps, tol 1e-6. ``benchmarks/calibration.py`` uses 0.1 halving once
over a fixed step budget.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.base import Calibrator, Tags
from bench.errors import DataError
from bench.params import Interval
from bench.types import CalibrationResult, MuscleData
from estimators.calibration._problem import (
    WeightedModelLoss,
    best_restarts,
    call_compiled,
    default_space,
    make_problem,
    predict,
    result_from,
    valid_mask,
)
from estimators.calibration.identifiability import assess
from estimators.calibration.objectives import CalibrationSpace, Objective

__all__ = [
    "AdamWResult",
    "GradientCalibrator",
    "adamw_minimize",
    "to_bounded",
    "to_unbounded",
]


def to_bounded(z: jnp.ndarray, lb: jnp.ndarray, ub: jnp.ndarray) -> jnp.ndarray:
    """Map unbounded z to x in (lb, ub) by a scaled sigmoid."""
    return lb + (ub - lb) * jax.nn.sigmoid(z)


def to_unbounded(x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_bounded` (x strictly inside the bounds)."""
    p = (np.asarray(x, dtype=float) - lb) / (ub - lb)
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


@dataclass
class AdamWResult:
    """Outcome of :func:`adamw_minimize`.

    Attributes
    ----------
    x : ndarray, shape (n_restarts, n)
        Best point of each restart (physical units).
    fun : ndarray, shape (n_restarts,)
        Best loss of each restart.
    best : int
        Index of the restart with the lowest loss.
    history : ndarray, shape (steps, n_restarts)
        Loss at every step.
    steps : ndarray of int, shape (n_restarts,)
        Steps taken before each restart stopped.
    evaluations : int
        Loss-and-gradient evaluations (all restarts).
    wall_time : float, s
    """

    x: np.ndarray
    fun: np.ndarray
    best: int
    history: np.ndarray
    steps: np.ndarray
    evaluations: int
    wall_time: float
    info: dict = field(default_factory=dict)


def _optimizer(hyper: jnp.ndarray) -> optax.GradientTransformation:
    """AdamW with ``lr(t) = lr0 rate^(t / steps)`` from ``hyper = (lr0, steps, rate, wd)``.

    The hyper-parameters are (traced) array values, not Python constants, so changing them
    does not recompile the step.
    """
    lr0, steps, rate, wd = hyper[0], hyper[1], hyper[2], hyper[3]

    def schedule(count):  # optax.exponential_decay without staircase, traceable settings
        return lr0 * rate ** (count / steps)

    return optax.adamw(schedule, weight_decay=wd)


@jax.jit
def _init_state(z: jnp.ndarray, hyper: jnp.ndarray) -> Any:
    return jax.vmap(_optimizer(hyper).init)(z)


@partial(jax.jit, static_argnames=("loss", "mode", "chunk"))
def _run_chunk(z, state, active, bargs, data, lb, ub, hyper, *, loss, mode, chunk):
    """``chunk`` AdamW steps of every restart (vmapped), inside one ``lax.scan``.

    Module level and jitted with the loss *function* static and its data, bounds, batch
    arguments and optimizer settings dynamic: a second minimization with the same loss
    function and array shapes reuses the compiled executable (no re-tracing, no XLA compile).
    """
    opt = _optimizer(hyper)

    def zloss(z, b):
        x = to_bounded(z, lb, ub)
        if mode == "x":
            return loss(x)
        if mode == "xb":
            return loss(x, b)
        if mode == "xd":
            return loss(x, data)
        return loss(x, b, data)

    vg = jax.vmap(jax.value_and_grad(zloss))
    vupdate = jax.vmap(opt.update)
    mask = active[:, None]
    # Only optimizer steps run inside the scan; the plateau and best-point bookkeeping runs
    # on the host per chunk from the returned history. Loss-dependent bookkeeping inside the
    # scan made each step ~20x slower on CPU (measured: 7 ms vs 0.3 ms per step of the ankle
    # problem), apparently by blocking XLA's fusion of the loss.

    def step(c, _):
        z, state = c
        f, g = vg(z, bargs)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        upd, new_state = vupdate(g, state, z)
        z_new = jnp.where(mask, optax.apply_updates(z, upd), z)
        # every state leaf carries the restart axis first (vmapped init)
        new_state = jax.tree_util.tree_map(
            lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
            new_state,
            state,
        )
        return (z_new, new_state), (f, z)

    return jax.lax.scan(step, (z, state), None, length=chunk)


def compiled_steps() -> int:
    """Number of AdamW step executables compiled so far in this process (cache size)."""
    return int(_run_chunk._cache_size())


def adamw_minimize(
    loss: Callable[..., jnp.ndarray],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    learning_rate: float = 0.05,
    decay_steps: int = 500,
    decay_rate: float = 0.5,
    weight_decay: float = 1e-4,
    max_steps: int = 3000,
    patience: int = 100,
    tol: float = 1e-6,
    chunk: int = 50,
    batch_args: jnp.ndarray | None = None,
    data: Any = None,
) -> AdamWResult:
    """Minimize a differentiable JAX ``loss`` from several starts at once.

    Parameters
    ----------
    loss : callable
        Traceable by JAX, in physical units: ``loss(x)``; ``loss(x, b)`` with
        ``batch_args``; ``loss(x, data)`` with ``data``; ``loss(x, b, data)`` with both.
        ``x`` is a vector of shape (n,). ``loss`` is a static argument of the jitted step:
        pass the *same* function object (e.g. a :class:`~estimators.calibration._problem.
        ModelLoss`) and the data as ``data`` to reuse the compiled step across calls.
    x0 : ndarray, shape (n,) or (n_restarts, n)
        Start point(s), strictly inside the bounds.
    lower, upper : ndarray, shape (n,)
    learning_rate, decay_steps, decay_rate, weight_decay, max_steps, patience, tol, chunk
        See the module docstring; ``chunk`` steps run per jitted ``lax.scan`` call.
    batch_args : array, shape (n_restarts, ...), optional
        Per-restart extra argument (e.g. objective weights, so that a whole weight sweep is
        one vmapped computation).
    data : pytree of arrays, optional
        Arguments shared by every restart (the problem's arrays).

    Returns
    -------
    AdamWResult
        ``info["compiled"]`` says whether this call compiled a new step executable.
    """
    lb = np.asarray(lower, dtype=float)
    ub = np.asarray(upper, dtype=float)
    X0 = np.atleast_2d(np.asarray(x0, dtype=float))
    if X0.shape[1] != lb.size or lb.shape != ub.shape:
        raise DataError("x0, lower and upper must agree in length")
    if np.any(lb >= ub):
        raise DataError("every lower bound must be below its upper bound")
    if np.any(X0 <= lb) or np.any(X0 >= ub):
        raise DataError("start points must lie strictly inside the bounds")
    hyper = jnp.asarray([learning_rate, decay_steps, decay_rate, weight_decay], dtype=float)
    lbj, ubj = jnp.asarray(lb), jnp.asarray(ub)

    nr = X0.shape[0]
    if batch_args is None:
        bargs = jnp.zeros((nr,))
    else:
        bargs = jnp.asarray(batch_args)
        if bargs.shape[0] != nr:
            raise DataError(f"batch_args has {bargs.shape[0]} rows for {nr} start points")
    mode = ("x" if batch_args is None else "xb") if data is None else (
        "xd" if batch_args is None else "xbd")
    kw = {"loss": loss, "mode": mode, "chunk": int(chunk)}

    t0 = time.perf_counter()
    cache_before = compiled_steps()
    z = jnp.asarray(to_unbounded(X0, lb, ub))
    state = _init_state(z, hyper)
    best_f = np.full(nr, np.inf)
    best_z = np.asarray(z).copy()
    since = np.zeros(nr, dtype=int)
    active = np.ones(nr, dtype=bool)
    steps = np.zeros(nr, dtype=int)
    scale = None
    hist = []
    done = 0
    while done < max_steps and active.any():
        (z, state), (fs, zs) = _run_chunk(z, state, jnp.asarray(active), bargs, data, lbj, ubj,
                                          hyper, **kw)
        fs = np.asarray(fs)
        fs = np.where(np.isfinite(fs), fs, np.inf)
        zs = np.asarray(zs)
        hist.append(fs)
        for k in range(fs.shape[0]):  # per step, vectorized over restarts
            f = fs[k]
            live = active.copy()
            better = live & (f < best_f)
            if scale is None:  # loss scale of each restart: its first loss
                scale = np.where(np.isfinite(f), np.abs(f), 1.0)
            finite = np.isfinite(best_f)
            # relative tolerance, floored at 1e-3 of the starting loss so that a loss
            # converging to zero still reaches its plateau
            step_tol = tol * np.maximum(np.abs(np.where(finite, best_f, 0.0)), 1e-3 * scale)
            thresh = np.where(finite, best_f - step_tol, np.inf)
            improved = live & (f < thresh)
            best_z[better] = zs[k][better]
            best_f = np.where(better, f, best_f)
            since = np.where(improved, 0, np.where(live, since + 1, since))
            steps += live
            active = live & (since < patience) & (steps < max_steps)
        done += chunk
    history = np.concatenate(hist, axis=0)[: int(steps.max())]
    best_x = np.asarray(to_bounded(jnp.asarray(best_z), lbj, ubj))
    return AdamWResult(
        x=best_x,
        fun=best_f,
        best=int(np.argmin(best_f)),
        history=history,
        steps=steps,
        evaluations=int(steps.sum()),
        wall_time=time.perf_counter() - t0,
        info={
            "learning_rate": learning_rate,
            "decay_steps": decay_steps,
            "decay_rate": decay_rate,
            "weight_decay": weight_decay,
            "patience": patience,
            "compiled": compiled_steps() > cache_before,
        },
    )


class GradientCalibrator(Calibrator):
    """EMG-driven model calibration by AdamW through the differentiable model (001).

    Parameters
    ----------
    restarts : int
        Start points optimized together (vmapped): the initial parameters plus
        ``restarts - 1`` points drawn uniformly inside the bounds.
    seed : int
        Seed of the extra start points.
    learning_rate, decay_steps, decay_rate, weight_decay, max_steps, patience, tol
        See :func:`adamw_minimize`.
    """

    name = "adamw"
    tags = Tags(time_varying=False, needs_ensemble=False, needs_jax=True,
                batch_factors=("alpha", "beta"))
    _parameter_constraints = {
        "restarts": [Interval(int, 1, 4096)],
        "seed": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "decay_steps": [Interval(int, 1, None)],
        "decay_rate": [Interval(float, 0, 1, closed="right")],
        "weight_decay": [Interval(float, 0, None)],
        "max_steps": [Interval(int, 1, None)],
        "patience": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
    }

    def __init__(
        self, *, restarts: int = 4, seed: int = 0, learning_rate: float = 0.05,
        decay_steps: int = 500, decay_rate: float = 0.5, weight_decay: float = 1e-4,
        max_steps: int = 3000, patience: int = 100, tol: float = 1e-6,
    ) -> None:
        self.restarts = restarts
        self.seed = seed
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.weight_decay = weight_decay
        self.max_steps = max_steps
        self.patience = patience
        self.tol = tol

    def calibrate(
        self, model, data: MuscleData, objective: Objective, *,
        space: CalibrationSpace | None = None, x0: np.ndarray | None = None,
    ) -> CalibrationResult:
        """Calibrate ``model`` on ``data`` from ``restarts`` start points at once."""
        self._validate()
        prob = make_problem(model, data, objective, space)
        sp = prob.space
        first = sp.x0 if x0 is None else np.asarray(x0, dtype=float)
        starts = sp.start_points(first, self.restarts, np.random.default_rng(self.seed))
        res = adamw_minimize(
            prob.loss_fn, starts, sp.lower, sp.upper, data=prob.data,
            learning_rate=self.learning_rate, decay_steps=self.decay_steps,
            decay_rate=self.decay_rate, weight_decay=self.weight_decay,
            max_steps=self.max_steps, patience=self.patience, tol=self.tol,
        )
        best = res.best
        return result_from(
            prob, model, data, objective, res.x[best], res.history[:, best], res.wall_time,
            res.evaluations,
            {"calibrator": "adamw", "restart_losses": res.fun, "steps": res.steps,
             **self.get_params()},
        )

    def calibrate_many(
        self, model, data: MuscleData, objectives: list[Objective], *,
        space: CalibrationSpace | None = None,
    ) -> list[CalibrationResult]:
        """A whole (alpha, beta) sweep as one vmapped AdamW run.

        000:Eq.8 is linear in alpha and beta, so every objective that differs from the first
        only in its weights shares one loss with the weights as a batched argument
        (:class:`~estimators.calibration._problem.WeightedModelLoss`): ``len(objectives) x
        restarts`` start points run in one compiled computation, each stopping on its own
        plateau; each objective's result is its best restart. Objectives that differ in
        anything else are calibrated one by one.
        """
        self._validate()
        first = objectives[0]
        same = all(dataclasses.replace(o, alpha=first.alpha, beta=first.beta) == first
                   for o in objectives)
        if len(objectives) == 1 or not same:
            return super().calibrate_many(model, data, objectives, space=space)
        sp = space if space is not None else default_space(model)
        fn = WeightedModelLoss(model, sp, first)
        need_k = any(o.beta > 0 for o in objectives)
        d = fn.prepare(data, need_stiffness=need_k)
        starts = sp.start_points(sp.x0, self.restarts, np.random.default_rng(self.seed))
        C, R = len(objectives), self.restarts
        W = np.repeat(np.array([[o.alpha, o.beta] for o in objectives], float), R, axis=0)
        res = adamw_minimize(
            fn, np.tile(starts, (C, 1)), sp.lower, sp.upper, batch_args=W, data=d,
            learning_rate=self.learning_rate, decay_steps=self.decay_steps,
            decay_rate=self.decay_rate, weight_decay=self.weight_decay,
            max_steps=self.max_steps, patience=self.patience, tol=self.tol,
        )
        torque = np.asarray(d["torque"])
        stiff = None if d["stiffness"] is None else np.asarray(d["stiffness"])
        out = []
        for obj, (rows, b) in zip(objectives, best_restarts(res.fun, C, R)):
            x = np.asarray(res.x[b])
            w = jnp.asarray([obj.alpha, obj.beta])
            pred = predict(model, sp, x, data)
            info = {"calibrator": "adamw", "restart_losses": res.fun[rows],
                    "steps": res.steps[rows], "batch_size": C,
                    "batch_wall_time": res.wall_time, **self.get_params(),
                    **obj.errors(pred, torque, stiff, valid_mask(data)),
                    # one compiled loss and Jacobian for the whole sweep: the weights are
                    # arguments, not part of the compiled function
                    "objective": float(call_compiled(fn, jnp.asarray(x), w, d)), "x": x}
            try:
                info["identifiability"] = assess(fn, x, sp, w, d)
            except DataError as exc:  # a diagnostic must not fail the calibration
                info["identifiability"] = {"error": str(exc)}
            out.append(CalibrationResult(
                params=sp.to_dict(x), specs=sp.specs, history=np.asarray(res.history[:, b]),
                wall_time=res.wall_time / C, evaluations=res.evaluations // C,
                predicted={"calibration": pred}, info=info))
        return out
