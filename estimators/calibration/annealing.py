"""Simulated annealing with per-coordinate step adaptation (Corana et al. 1987; Goffe et al. 1994).

This is the optimizer CEINMS uses to calibrate EMG-driven models (000 Sec. 2.4-2.5, 001
Sec. III-B). One temperature stage:

* ``N_T`` times: ``N_S`` sweeps over the coordinates; at each coordinate h a trial point
  x'_h = x_h + v_h U(-1, 1), redrawn uniformly inside [lb_h, ub_h] when it falls outside;
  downhill moves are accepted, uphill ones with the Metropolis probability
  exp(-(f' - f) / T); after the N_S sweeps the step v_h grows when coordinate h's
  acceptance ratio a_h exceeds 0.6, v_h <- v_h (1 + c (a_h - 0.6) / 0.4), and shrinks when
  it is below 0.4, v_h <- v_h / (1 + c (0.4 - a_h) / 0.4) (Corana's rule, c = 2), capped
  at ub_h - lb_h;
* then the search stops when the current value differs by at most ``eps`` from the last
  ``N_eps`` end-of-temperature values and from the best; otherwise T <- r_T T and the
  search restarts from the best point.

Defaults follow CEINMS's test configuration as reported to us (issue 8 notes): T0 = 20,
r_T = 0.3, N_S = 15, N_T = 5, eps = 1e-3, N_eps = 4, at most 200 000 evaluations, initial
step (ub - lb) / 2.

The objective is any callable ``f(x) -> float`` (or ``f(x, data)``); the calibrators pass
the same JAX forward model that the gradient calibrator differentiates, so a speed comparison
between the two measures the optimizer, not the model code.

Implementation: one temperature stage (N_T x N_S x n trials) is a single compiled XLA loop
(``lax.fori_loop``) when ``f`` is JAX-traceable, so an evaluation costs the model's compute
and no Python dispatch (as in CEINMS's C++); other callables run inside the same loop through
``jax.pure_callback``. The host only checks the termination criterion between stages. The
uniform draws of a stage (trial offset, redraw inside the bounds, Metropolis test) are taken
from ``rng`` beforehand, three per trial whether used or not, so a run is reproducible from
its seed. The compiled stage is cached per objective function and shapes (pass a stable
function, e.g. a :class:`~estimators.calibration._problem.ModelLoss`, and its arrays as
``data`` to reuse it across calls).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.base import Calibrator
from bench.errors import ConvergenceWarning, DataError
from bench.params import Interval
from bench.types import CalibrationResult, MuscleData
from estimators.calibration._problem import make_problem, result_from
from estimators.calibration.objectives import CalibrationSpace, Objective

__all__ = ["AnnealResult", "AnnealingCalibrator", "anneal"]


@dataclass
class AnnealResult:
    """Outcome of :func:`anneal`.

    Attributes
    ----------
    x : ndarray, shape (n,)
        Best point found.
    fun : float
        Objective at ``x``.
    evaluations : int
    temperatures : int
        Temperature stages run.
    history : ndarray, shape (temperatures,)
        Best objective at the end of each temperature stage.
    converged : bool
        Stopped by the eps/N_eps criterion (not by the evaluation budget).
    wall_time : float, s
    info : dict
        ``final_step``, ``final_temperature``, ``compiled``; ``stop_measure`` (the quantity
        the criterion compares with ``eps`` at the stop: the largest of |f - f*_i| over the
        last N_eps end-of-temperature values, those run so far, and f - f_best; inf before
        any stage finished) and ``stop_eps``.
    """

    x: np.ndarray
    fun: float
    evaluations: int
    temperatures: int
    history: np.ndarray
    converged: bool
    wall_time: float
    info: dict = field(default_factory=dict)


@partial(jax.jit, static_argnames=("f", "with_data", "N_S", "N_T"))
def _stage(x, fcur, xbest, fbest, v, T, lb, ub, U, budget, data, c, *, f, with_data, N_S,
           N_T):
    """One temperature stage: N_T rounds of N_S sweeps over the n coordinates, each round
    followed by Corana's step adaptation; trials beyond ``budget`` evaluations are no-ops.

    ``U`` (3, N_T, N_S, n): uniform(-1, 1) offsets, uniform(0, 1) redraws, uniform(0, 1)
    Metropolis draws. Returns the updated (x, fcur, xbest, fbest, v) and the number of
    evaluations made.
    """
    n = x.shape[0]
    span = ub - lb

    def value(p):
        y = f(p, data) if with_data else f(p)
        return jnp.where(jnp.isfinite(y), y, jnp.inf)

    def trial(i, carry):
        x, fcur, xbest, fbest, v, acc, nev, t = carry
        s, h = i // n, i % n
        live = nev < budget
        step = x[h] + v[h] * U[0, t, s, h]
        out = (step < lb[h]) | (step > ub[h])
        xh = jnp.where(out, lb[h] + span[h] * U[1, t, s, h], step)
        xt = x.at[h].set(xh)
        ft = value(xt)
        accept = live & ((ft <= fcur) | (U[2, t, s, h] < jnp.exp(-(ft - fcur) / T)))
        better = accept & (ft < fbest)
        return (jnp.where(accept, xt, x), jnp.where(accept, ft, fcur),
                jnp.where(better, xt, xbest), jnp.where(better, ft, fbest), v,
                acc.at[h].add(accept), nev + live, t)

    def round_(t, carry):
        x, fcur, xbest, fbest, v, nev = carry
        acc = jnp.zeros(n)
        x, fcur, xbest, fbest, v, acc, nev, _ = jax.lax.fori_loop(
            0, N_S * n, trial, (x, fcur, xbest, fbest, v, acc, nev, t))
        ratio = acc / N_S
        v = jnp.where(ratio > 0.6, v * (1.0 + c * (ratio - 0.6) / 0.4), v)
        v = jnp.where(ratio < 0.4, v / (1.0 + c * (0.4 - ratio) / 0.4), v)
        return x, fcur, xbest, fbest, jnp.minimum(v, span), nev

    return jax.lax.fori_loop(0, N_T, round_, (x, fcur, xbest, fbest, v, jnp.asarray(0)))


def _traceable(f: Callable, x: np.ndarray, data: Any) -> bool:
    try:
        out = jax.eval_shape(f, x) if data is None else jax.eval_shape(f, x, data)
    except Exception:  # not JAX-traceable (numpy calls, float(), ...)
        return False
    return getattr(out, "shape", None) == ()


def anneal(
    f: Callable[..., float],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rng: np.random.Generator,
    *,
    T0: float = 20.0,
    r_T: float = 0.3,
    N_S: int = 15,
    N_T: int = 5,
    eps: float = 1e-3,
    N_eps: int = 4,
    c: float = 2.0,
    max_evaluations: int = 200_000,
    data: Any = None,
) -> AnnealResult:
    """Minimize ``f`` inside box bounds by Corana/Goffe simulated annealing.

    Parameters
    ----------
    f : callable
        Objective, ``f(x: array (n,)) -> scalar`` (``f(x, data)`` with ``data``). A
        JAX-traceable ``f`` runs compiled; any other callable is called back from the
        compiled loop. Non-finite values count as +inf.
    x0, lower, upper : ndarray, shape (n,)
        Start point and bounds (lower < upper, x0 inside).
    rng : numpy.random.Generator
        Source of every random draw.
    T0, r_T, N_S, N_T, eps, N_eps, c, max_evaluations
        See the module docstring.
    data : pytree of arrays, optional
        Second argument of ``f``.

    Returns
    -------
    AnnealResult
        ``info["compiled"]``: whether ``f`` ran as compiled JAX (False: Python callback).
    """
    x = np.asarray(x0, dtype=float).copy()
    lb = np.asarray(lower, dtype=float)
    ub = np.asarray(upper, dtype=float)
    if not (x.shape == lb.shape == ub.shape and x.ndim == 1):
        raise DataError("x0, lower and upper must be 1-D arrays of the same length")
    if np.any(lb >= ub):
        raise DataError("every lower bound must be below its upper bound")
    if np.any(x < lb) or np.any(x > ub):
        raise DataError("x0 lies outside the bounds")
    if not (0 < r_T < 1) or T0 <= 0 or N_S < 1 or N_T < 1 or N_eps < 1:
        raise DataError("need T0 > 0, 0 < r_T < 1, N_S, N_T, N_eps >= 1")

    t_start = time.perf_counter()
    fast = _traceable(f, x, data)
    if fast:
        fn, with_data = f, data is not None
    else:
        user = f
        def host(p, *d):
            v = float(user(np.asarray(p), *d))
            return np.float64(v if np.isfinite(v) else np.inf)
        def fn(p, *d):
            return jax.pure_callback(host, jax.ShapeDtypeStruct((), p.dtype), p, *d)
        with_data = data is not None
    n = x.size
    v = (ub - lb) / 2.0
    f0 = float(fn(jnp.asarray(x), data) if with_data else fn(jnp.asarray(x)))
    fcur = f0 if np.isfinite(f0) else np.inf
    nevals = 1
    xbest, fbest = x.copy(), fcur
    T = T0
    f_star = [np.inf] * N_eps
    history = []
    converged = False
    lbj, ubj = jnp.asarray(lb), jnp.asarray(ub)
    kw = {"f": fn, "with_data": with_data, "N_S": int(N_S), "N_T": int(N_T)}
    while nevals < max_evaluations:
        U = np.stack([rng.uniform(-1.0, 1.0, (N_T, N_S, n)), rng.uniform(size=(N_T, N_S, n)),
                      rng.uniform(size=(N_T, N_S, n))])
        xj, fj, xbj, fbj, vj, nev = _stage(
            jnp.asarray(x), jnp.asarray(fcur), jnp.asarray(xbest), jnp.asarray(fbest),
            jnp.asarray(v), jnp.asarray(T, dtype=float), lbj, ubj, jnp.asarray(U),
            jnp.asarray(max_evaluations - nevals), data, jnp.asarray(c, dtype=float), **kw)
        x, fcur = np.asarray(xj), float(fj)
        xbest, fbest, v = np.asarray(xbj), float(fbj), np.asarray(vj)
        nevals += int(nev)
        history.append(fbest)
        f_star = [fcur, *f_star[:-1]]
        if all(abs(fcur - fs) <= eps for fs in f_star) and fcur - fbest <= eps:
            converged = True
            break
        T *= r_T
        x, fcur = xbest.copy(), fbest
    # distance from the stop criterion: the largest of |f - f*_i| over the last N_eps
    # end-of-temperature values (those run so far) and f - f_best, against eps
    seen = [fs for fs in f_star if np.isfinite(fs)]
    measure = max([abs(fcur - fs) for fs in seen] + [fcur - fbest]) if seen else np.inf
    if not converged:
        gap = (f"its change measure {measure:.3g} is {measure / eps:.3g} x eps = {eps:g}"
               if np.isfinite(measure) else "no temperature stage had finished")
        if len(seen) < N_eps:
            gap += (f" (over the {len(seen)} end-of-temperature values it had; the "
                    f"criterion compares N_eps = {N_eps})")
        warnings.warn(
            f"simulated annealing stopped at the evaluation budget ({max_evaluations}) "
            f"before meeting its eps/N_eps criterion: {gap}",
            ConvergenceWarning,
            stacklevel=2,
        )
    return AnnealResult(
        x=xbest,
        fun=fbest,
        evaluations=nevals,
        temperatures=len(history),
        history=np.asarray(history),
        converged=converged,
        wall_time=time.perf_counter() - t_start,
        info={"final_step": v.copy(), "final_temperature": T, "compiled": fast,
              "stop_measure": float(measure), "stop_eps": float(eps)},
    )


class AnnealingCalibrator(Calibrator):
    """EMG-driven model calibration by simulated annealing (CEINMS's optimizer, 000).

    Parameters
    ----------
    seed : int
        Seed of the annealing's random draws.
    T0, r_T, N_S, N_T, eps, N_eps, max_evaluations
        See :func:`anneal`; defaults are CEINMS's test configuration.
    """

    name = "annealing"
    _parameter_constraints = {
        "seed": [Interval(int, 0, None)],
        "T0": [Interval(float, 0, None, closed="neither")],
        "r_T": [Interval(float, 0, 1, closed="neither")],
        "N_S": [Interval(int, 1, None)],
        "N_T": [Interval(int, 1, None)],
        "eps": [Interval(float, 0, None, closed="neither")],
        "N_eps": [Interval(int, 1, None)],
        "max_evaluations": [Interval(int, 10, None)],
    }

    def __init__(
        self, *, seed: int = 0, T0: float = 20.0, r_T: float = 0.3, N_S: int = 15,
        N_T: int = 5, eps: float = 1e-3, N_eps: int = 4, max_evaluations: int = 200_000,
    ) -> None:
        self.seed = seed
        self.T0 = T0
        self.r_T = r_T
        self.N_S = N_S
        self.N_T = N_T
        self.eps = eps
        self.N_eps = N_eps
        self.max_evaluations = max_evaluations

    def calibrate(
        self, model, data: MuscleData, objective: Objective, *,
        space: CalibrationSpace | None = None, x0: np.ndarray | None = None,
    ) -> CalibrationResult:
        """Calibrate ``model`` on ``data``; start from the initial parameters (or ``x0``)."""
        self._validate()
        prob = make_problem(model, data, objective, space)
        start = prob.space.x0 if x0 is None else np.asarray(x0, dtype=float)
        res = anneal(
            prob.loss_fn, start, prob.space.lower, prob.space.upper,
            np.random.default_rng(self.seed), data=prob.data, T0=self.T0, r_T=self.r_T,
            N_S=self.N_S, N_T=self.N_T, eps=self.eps, N_eps=self.N_eps,
            max_evaluations=self.max_evaluations,
        )
        return result_from(
            prob, model, data, objective, res.x, res.history, res.wall_time, res.evaluations,
            {"calibrator": "annealing", "converged": res.converged,
             "temperatures": res.temperatures, "stop_eps": res.info["stop_eps"],
             **({"stop_measure": res.info["stop_measure"]}
                if np.isfinite(res.info["stop_measure"]) else {}),
             **self.get_params()},
        )
