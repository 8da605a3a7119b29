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

The objective is any callable ``f(x) -> float``; the calibrators pass the same jitted JAX
forward model that the gradient calibrator differentiates, so a speed comparison between
the two measures the optimizer, not the model code.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

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
    """

    x: np.ndarray
    fun: float
    evaluations: int
    temperatures: int
    history: np.ndarray
    converged: bool
    wall_time: float
    info: dict = field(default_factory=dict)


def anneal(
    f: Callable[[np.ndarray], float],
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
) -> AnnealResult:
    """Minimize ``f`` inside box bounds by Corana/Goffe simulated annealing.

    Parameters
    ----------
    f : callable
        Objective, ``f(x: ndarray (n,)) -> float``. Non-finite values count as +inf.
    x0, lower, upper : ndarray, shape (n,)
        Start point and bounds (lower < upper, x0 inside).
    rng : numpy.random.Generator
        Source of every random draw.
    T0, r_T, N_S, N_T, eps, N_eps, c, max_evaluations
        See the module docstring.

    Returns
    -------
    AnnealResult
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

    def fx(p: np.ndarray) -> float:
        v = float(f(p))
        return v if np.isfinite(v) else np.inf

    t_start = time.perf_counter()
    n = x.size
    v = (ub - lb) / 2.0
    fcur = fx(x)
    nevals = 1
    xbest, fbest = x.copy(), fcur
    T = T0
    f_star = [np.inf] * N_eps
    history = []
    converged = False
    while nevals < max_evaluations:
        for _ in range(N_T):
            accepted = np.zeros(n)
            for _ in range(N_S):
                for h in range(n):
                    xt = x.copy()
                    xt[h] = x[h] + v[h] * rng.uniform(-1.0, 1.0)
                    if xt[h] < lb[h] or xt[h] > ub[h]:
                        xt[h] = lb[h] + (ub[h] - lb[h]) * rng.uniform()
                    ft = fx(xt)
                    nevals += 1
                    if ft <= fcur or rng.uniform() < np.exp(-(ft - fcur) / T):
                        x, fcur = xt, ft
                        accepted[h] += 1
                        if ft < fbest:
                            xbest, fbest = xt.copy(), ft
                    if nevals >= max_evaluations:
                        break
                if nevals >= max_evaluations:
                    break
            ratio = accepted / N_S
            grow = ratio > 0.6
            shrink = ratio < 0.4
            v[grow] *= 1.0 + c * (ratio[grow] - 0.6) / 0.4
            v[shrink] /= 1.0 + c * (0.4 - ratio[shrink]) / 0.4
            v = np.minimum(v, ub - lb)
            if nevals >= max_evaluations:
                break
        history.append(fbest)
        f_star = [fcur, *f_star[:-1]]
        if all(abs(fcur - fs) <= eps for fs in f_star) and fcur - fbest <= eps:
            converged = True
            break
        T *= r_T
        x, fcur = xbest.copy(), fbest
    if not converged:
        warnings.warn(
            f"simulated annealing stopped at the evaluation budget ({max_evaluations}) "
            "before meeting its eps/N_eps criterion",
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
        info={"final_step": v.copy(), "final_temperature": T},
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
        f = prob.loss
        res = anneal(
            lambda x: float(f(x)), start, prob.space.lower, prob.space.upper,
            np.random.default_rng(self.seed), T0=self.T0, r_T=self.r_T, N_S=self.N_S,
            N_T=self.N_T, eps=self.eps, N_eps=self.N_eps,
            max_evaluations=self.max_evaluations,
        )
        return result_from(
            prob, model, data, objective, res.x, res.history, res.wall_time, res.evaluations,
            {"calibrator": "annealing", "converged": res.converged,
             "temperatures": res.temperatures, **self.get_params()},
        )
