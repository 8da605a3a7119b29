"""Least-squares calibration: Levenberg-Marquardt on the residual rows of 000:Eq.8.

The objective of 000:Eq.8 (torque and stiffness errors normalized by the reference
variances, plus the range penalties of 001:Eq.4 or 000:Eq.9) is a sum of squares
``F(x) = sum_i r_i(x)^2`` (:meth:`~estimators.calibration.objectives.Objective.residual_parts`),
so a second-order least-squares method applies. First-order methods crawl along the flat
valleys of this problem (optimal fibre length against tendon slack length); the Gauss-Newton
model ``J^T J`` sees them.

Algorithm (one start)
---------------------
Bounded parameters are mapped to logits by the sigmoid of :mod:`~estimators.calibration.
gradient` (``x = lb + (ub - lb) sigmoid(z)``): every iterate is inside its bounds and the
damping acts on dimensionless coordinates. With ``r`` the residual rows at ``z``, ``J`` their
Jacobian (forward mode, one JVP per parameter, the primal shared), ``A = J^T J`` and
``g = J^T r``:

1. solve ``(A + lambda I) delta = -g`` (Levenberg's identity damping, Cholesky);
2. gain ratio ``rho = (F(z) - F(z + delta)) / (-2 delta.g - delta.A delta)``;
3. ``rho > 0``: accept, ``lambda <- lambda max(1/3, 1 - (2 rho - 1)^3)``, ``nu <- 2``
   (Nielsen's update); otherwise ``lambda <- nu lambda``, ``nu <- 2 nu`` and retry with the
   same ``A`` and ``g`` (no new Jacobian), at most ``max_tries`` times;
4. after an accepted step, stop when the relative decrease ``(F_old - F_new) / F_old`` is
   below ``ftol`` ("ftol"), when ``max |g| <= gtol`` ("gtol") or after ``max_iterations``
   accepted steps ("max_iter"); else compute the Jacobian at the new point and go to 1.
   A start whose retries are exhausted stops with "no decrease".

``lambda_0 = tau max(diag A)`` (Madsen, Nielsen & Tingleff 2004, Algorithm 3.16, tau = 1e-3).
The Jacobian is evaluated once per accepted step; its primal gives F at that point.

Stop rule and where it was chosen: ``ftol = 1e-4`` (stop after the first accepted step that
lowers F by less than 0.01 %), at most 50 accepted steps, one start (the initial parameters).
It was chosen on the *tuning* subjects 6-10 of ``benchmarks/calibration.py``'s subject
generator, from ftol in {1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4} x {1, 2 starts}: the
cheapest candidate (fewest Jacobians, median over the subjects) whose held-out torque nRMSE
(median per-cycle, 59 unseen cycles) is at or below compiled annealing's on the median *and
on every tuning subject*; it was then checked on the reported subjects 1-5 and on the fresh
subjects 11-15. The rule declared first asked for 4 of 5 tuning subjects and chose
``ftol = 1e-2`` (9 Jacobians): 230-500x faster than annealing, but +0.002 in median held-out
nRMSE on both the reported and the fresh subjects; single-subject differences (+-0.005) are
the size of annealing's own seed-to-seed spread, so a rule must win on every tuning subject
to carry over. ``ftol = 1e-2`` remains the fast setting where a 0.002 nRMSE loss is
acceptable. Variants measured on the same tuning subjects and not kept: Marquardt's scaling
``diag(J^T J)`` (floored at 1e-6 of its maximum) and an active-set projected LM in
``(x - lb) / w`` (+0.002 to +0.003 median held-out nRMSE), reusing each Jacobian for a
second step (fewer Jacobians, worse and less robust fits), Transtrum & Sethna's geodesic
acceleration (no fewer steps here, +0.003 median held-out nRMSE), more starts (2-3x the cost,
no held-out gain).

Cost of the rows
----------------
The residual vector is assembled by ``dynamic_update_slice``
(:func:`~estimators.calibration.objectives.assemble`), not ``jnp.concatenate``: XLA's CPU
backend fuses a concatenate with the whole Hill model that produces its operands, into one
element-by-element loop that recomputes the shared force-length, force-velocity and
pennation terms per row kind, which made the residual vector 4-8x dearer than the scalar loss
(0.37-0.5 against 0.07-0.1 ms on the ankle problem; assembled: 0.07-0.1 ms, the loss's cost).
The Jacobian costs about 26 forward passes (one tangent per parameter through every MTU,
1-1.5 ms); the normal equations over all 3408 rows add 0.28 ms, over the 426 fit rows 0.04 ms.
Forming them without the range-penalty rows when none is active (exact: such a row is zero
with a zero derivative) saved that standalone but nothing measurable inside the compiled loop
(a ``lax.cond`` per Jacobian; CPU time rose), so every row enters.

Compilation is paid once per process and shape: the solver is a module-level jitted function
whose residual *function* is a static argument and whose data, bounds, batch arguments and
settings are array arguments (as :func:`~estimators.calibration.gradient.adamw_minimize`);
JAX's persistent compilation cache (:mod:`bench.jaxcache`) carries it to later processes.
Several starts (and a sweep of objective weights as batched arguments) run in one call:
sequentially (``batch_size = 1``, each start its own ``lax.while_loop``; the default on a
CPU, where 175 starts of the ankle study took 4.0 s against 9.9 s vmapped in groups of 25
and 15 s in one group, since a vmapped group runs as long as its slowest start) or vmapped
in groups of ``batch_size`` (the default on an accelerator). Either way every start stops on
its own rule and its parameters freeze when it does.
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
)
from estimators.calibration.gradient import to_bounded
from estimators.calibration.identifiability import assess
from estimators.calibration.objectives import CalibrationSpace, Objective, assemble, row_parts

__all__ = [
    "STATUS",
    "LeastSquaresCalibrator",
    "LeastSquaresResult",
    "compiled_solvers",
    "levenberg_marquardt",
]

#: Why a start stopped (``LeastSquaresResult.status``).
STATUS = {0: "running", 1: "ftol", 2: "gtol", 3: "max_iter", 4: "no decrease",
          5: "non-finite start"}


@dataclass
class LeastSquaresResult:
    """Outcome of :func:`levenberg_marquardt`.

    Attributes
    ----------
    x : ndarray, shape (n_starts, n)
        Final point of each start (physical units).
    fun : ndarray, shape (n_starts,)
        Objective ``sum(r**2)`` at ``x``.
    best : int
        Index of the start with the lowest objective.
    history : ndarray, shape (max_iterations + 1, n_starts)
        Objective at the start and after every accepted step; NaN after a start stopped.
    iterations : ndarray of int, shape (n_starts,)
        Accepted steps of each start.
    jacobians : ndarray of int, shape (n_starts,)
        Jacobian evaluations of each start.
    residual_evaluations : ndarray of int, shape (n_starts,)
        Residual-vector evaluations of each start (trial steps, accepted or not).
    status : ndarray of int, shape (n_starts,)
        Why each start stopped, a key of :data:`STATUS`.
    wall_time : float, s
    info : dict
        ``compiled``: whether this call compiled a new solver executable; the settings.
    """

    x: np.ndarray
    fun: np.ndarray
    best: int
    history: np.ndarray
    iterations: np.ndarray
    jacobians: np.ndarray
    residual_evaluations: np.ndarray
    status: np.ndarray
    wall_time: float
    info: dict = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        """Model evaluations: residual vectors plus Jacobians (each one forward pass with
        n tangents), over all starts."""
        return int(self.residual_evaluations.sum() + self.jacobians.sum())

    @property
    def reasons(self) -> list[str]:
        """:attr:`status` as words."""
        return [STATUS[int(s)] for s in self.status]


@partial(jax.jit, static_argnames=("loss", "mode"))
def _rows(z: jnp.ndarray, b: Any, data: Any, lb, ub, *, loss: Any, mode: str) -> tuple:
    """``(fit, penalty)`` rows of ``loss`` at logits ``z``, each assembled into one vector.

    Jitted so that the solver traces the model once: its Jacobian (a JVP of this function)
    and its trial steps reuse the cached jaxpr (XLA inlines it; tracing the ankle model twice
    cost a second of every first call).
    """
    x = to_bounded(z, lb, ub)
    fn = getattr(loss, "residual_parts", loss)
    args = {"x": (x,), "xb": (x, b), "xd": (x, data), "xbd": (x, b, data)}[mode]
    fit, pen = row_parts(fn(*args))
    return assemble(fit), assemble(pen) if pen else jnp.zeros(0, z.dtype)


def _lm_one(x0, b, data, lb, ub, hyper, *, loss, mode, max_iter, max_tries):
    """Levenberg-Marquardt from one start (see the module docstring); traceable.

    Returns the final point (physical units), its objective, the accepted steps, the
    Jacobian and residual evaluations, the status code and the objective history.
    """
    ftol, gtol, tau = hyper[0], hyper[1], hyper[2]
    n = x0.shape[0]
    eye = jnp.eye(n, dtype=x0.dtype)

    def blocks(z):
        """The fit rows and the penalty rows as two vectors (never one: XLA fuses a joint
        assembly of their tangents into a slow loop, see the module docstring)."""
        return _rows(z, b, data, lb, ub, loss=loss, mode=mode)

    def normal_equations(z):
        """``F = |r|^2``, ``A = J^T J`` and ``g = J^T r`` at ``z`` (forward mode: one JVP
        per coordinate, the primal shared), summed over the two blocks of rows."""
        r, J = jax.vmap(lambda v: jax.jvp(blocks, (z,), (v,)), out_axes=(None, 1))(eye)
        return (sum(ri @ ri for ri in r), sum(Ji.T @ Ji for Ji in J),
                sum(Ji.T @ ri for Ji, ri in zip(J, r)))

    def trial(c):
        """One damped step from ``z``; accepted when it decreases F (gain ratio > 0)."""
        z, f, A, g, lam, nu, tries, _acc, _zn, _fn = c
        L = jnp.linalg.cholesky(A + lam * eye)
        delta = jax.scipy.linalg.cho_solve((L, True), -g)  # (A + lambda I) delta = -g
        zn = z + delta
        fit_n, pen_n = blocks(zn)
        fn = fit_n @ fit_n + pen_n @ pen_n
        pred = -(2.0 * delta @ g + delta @ (A @ delta))
        rho = (f - fn) / pred
        ok = jnp.isfinite(fn) & jnp.all(jnp.isfinite(delta)) & (pred > 0) & (rho > 0)
        lam_ok = lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)  # Nielsen
        lam = jnp.where(ok, lam_ok, lam * nu)
        nu = jnp.where(ok, 2.0, 2.0 * nu)
        return (z, f, A, g, lam, nu, tries + 1, ok, zn, fn)

    def outer(s):
        """The Jacobian at the current point, then damped trials until one decreases F."""
        z, f, lam, nu, it, njac, nres, status, hist = s
        f, A, g = normal_equations(z)
        first = it == 0
        hist = jnp.where(first, hist.at[0].set(f), hist)
        lam = jnp.where(first, tau * jnp.max(jnp.diag(A)), lam)
        bad = ~(jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(A)))
        flat = jnp.max(jnp.abs(g)) <= gtol
        skip = bad | flat
        c0 = (z, f, A, g, lam, nu, jnp.where(skip, max_tries, 0), jnp.asarray(False), z, f)
        c = jax.lax.while_loop(lambda c: (~c[7]) & (c[6] < max_tries), trial, c0)
        lam, nu, tries, acc, zn, fn = c[4:]
        nres = nres + jnp.where(skip, 0, tries)
        rel = (f - fn) / jnp.maximum(jnp.abs(f), jnp.finfo(f.dtype).tiny)
        it = it + acc
        z = jnp.where(acc, zn, z)
        f = jnp.where(acc, fn, f)
        hist = jnp.where(acc, hist.at[it].set(fn), hist)
        status = jnp.where(acc, jnp.where(rel < ftol, 1, jnp.where(it >= max_iter, 3, 0)), 4)
        status = jnp.where(flat, 2, status)
        status = jnp.where(bad, jnp.where(first, 5, 4), status)
        return (z, f, lam, nu, it, njac + 1, nres, status, hist)

    i0 = jnp.asarray(0)
    nan = jnp.full((), jnp.nan, x0.dtype)
    hist0 = jnp.full((max_iter + 1,), jnp.nan, dtype=x0.dtype)
    # z, F, lambda, nu, accepted steps, Jacobians, residual evaluations, status, history
    state0 = (_logit(x0, lb, ub), nan, nan, jnp.asarray(2.0, x0.dtype), i0, i0, i0, i0, hist0)
    s = jax.lax.while_loop(lambda s: s[7] == 0, outer, state0)
    z, f, _, _, it, njac, nres, status, hist = s
    return to_bounded(z, lb, ub), f, it, njac, nres, status, hist


def _logit(x, lb, ub):
    """Inverse of :func:`~estimators.calibration.gradient.to_bounded` (traceable)."""
    p = jnp.clip((x - lb) / (ub - lb), 1e-9, 1 - 1e-9)
    return jnp.log(p) - jnp.log1p(-p)


@partial(jax.jit, static_argnames=("loss", "mode", "batch_size", "max_iter", "max_tries"))
def _solve(x0, bargs, data, lb, ub, hyper, *, loss, mode, batch_size, max_iter, max_tries):
    """Levenberg-Marquardt from every row of ``x0``; module level and jitted with the
    residual function static and its data, bounds and settings dynamic, so a second call with
    the same function and shapes reuses the compiled executable."""
    kw = {"loss": loss, "mode": mode, "max_iter": max_iter, "max_tries": max_tries}

    def one(a):
        return _lm_one(a[0], a[1], data, lb, ub, hyper, **kw)

    if batch_size == 1:  # one start after the other, each with its own control flow
        return jax.lax.map(one, (x0, bargs))
    return jax.lax.map(one, (x0, bargs), batch_size=batch_size)


def compiled_solvers() -> int:
    """Number of least-squares solver executables compiled so far in this process."""
    return int(_solve._cache_size())


def levenberg_marquardt(
    residuals: Callable[..., Any],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    ftol: float = 1e-4,
    gtol: float = 1e-10,
    max_iterations: int = 50,
    max_tries: int = 12,
    damping: float = 1e-3,
    batch_size: int | None = None,
    batch_args: jnp.ndarray | None = None,
    data: Any = None,
) -> LeastSquaresResult:
    """Minimize ``sum(r(x)**2)`` inside box bounds from several starts (Levenberg-Marquardt).

    Parameters
    ----------
    residuals : callable or ModelLoss
        Residual rows in physical units, traceable by JAX: ``r(x)``, ``r(x, b)`` with
        ``batch_args``, ``r(x, data)`` with ``data``, ``r(x, b, data)`` with both, returning
        a vector (m,) or a pair ``(fit, penalty)`` of vectors or lists of vectors
        (:func:`~estimators.calibration.objectives.row_parts`). A
        :class:`~estimators.calibration._problem.ModelLoss` or
        :class:`~estimators.calibration._problem.WeightedModelLoss` is used through its
        ``residual_parts``. A static argument of the compiled solver: pass the *same* object
        and the data as ``data`` to reuse the executable across calls.
    x0 : ndarray, shape (n,) or (n_starts, n)
        Start point(s), strictly inside the bounds.
    lower, upper : ndarray, shape (n,)
    ftol : float
        Stop a start when an accepted step decreases its objective by less than this
        fraction of it.
    gtol : float
        Stop a start when ``max |J^T r| <= gtol`` (logit coordinates).
    max_iterations : int
        Accepted steps per start at most.
    max_tries : int
        Damped trial steps per iteration before a start stops with "no decrease".
    damping : float
        tau of the initial damping ``lambda_0 = tau max(diag J^T J)``.
    batch_size : int, optional
        1: starts one after the other, each in its own compiled loop; k > 1: vmapped groups
        of k starts (each start still stops on its own rule and freezes, but a group runs as
        long as its slowest start). Default: 1 on a CPU, all starts in one group on an
        accelerator.
    batch_args : array, shape (n_starts, ...), optional
        Per-start extra argument (e.g. objective weights ``(alpha, beta)``).
    data : pytree of arrays, optional
        Arguments shared by every start (the problem's arrays).

    Returns
    -------
    LeastSquaresResult

    Raises
    ------
    DataError
        Start points outside the bounds, bounds in the wrong order, shapes or settings that
        do not agree.

    Examples
    --------
    The ankle study's weight sweep, 35 (alpha, beta) combinations x R starts in one call:

    >>> fn = weighted_loss(model, space)                        # doctest: +SKIP
    >>> d = fn.prepare(cal)                                     # doctest: +SKIP
    >>> x0 = space.start_points(space.x0, R, rng)               # doctest: +SKIP
    >>> res = levenberg_marquardt(fn, np.tile(x0, (35, 1)), space.lower, space.upper,
    ...                           batch_args=np.repeat(combos, R, axis=0), data=d)
    ...                                                         # doctest: +SKIP
    """
    lb = np.asarray(lower, dtype=float)
    ub = np.asarray(upper, dtype=float)
    X0 = np.atleast_2d(np.asarray(x0, dtype=float))
    if X0.ndim != 2 or lb.ndim != 1 or X0.shape[1] != lb.size or lb.shape != ub.shape:
        raise DataError("x0 (n,) or (n_starts, n), lower and upper (n,) must agree in length")
    if np.any(lb >= ub):
        raise DataError("every lower bound must be below its upper bound")
    if not np.all(np.isfinite(X0)) or np.any(X0 <= lb) or np.any(X0 >= ub):
        raise DataError("start points must be finite and lie strictly inside the bounds")
    ns = X0.shape[0]
    if batch_size is None:
        batch_size = 1 if jax.default_backend() == "cpu" else ns
    for name, v in (("max_iterations", max_iterations), ("max_tries", max_tries),
                    ("batch_size", batch_size)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise DataError(f"{name} must be an integer >= 1; got {v!r}")
    for name, v in (("ftol", ftol), ("gtol", gtol), ("damping", damping)):
        if not (np.isfinite(v) and v >= 0):
            raise DataError(f"{name} must be a finite number >= 0; got {v!r}")
    if batch_args is None:
        bargs = jnp.zeros((ns,))
    else:
        bargs = jnp.asarray(batch_args, dtype=float)
        if bargs.shape[:1] != (ns,):
            raise DataError(f"batch_args needs one row per start point ({ns}); got shape "
                            f"{bargs.shape}")
    mode = ("x" if batch_args is None else "xb") if data is None else (
        "xd" if batch_args is None else "xbd")
    bs = int(min(batch_size, ns))
    hyper = jnp.asarray([ftol, gtol, damping], dtype=float)
    t0 = time.perf_counter()
    before = compiled_solvers()
    x, f, it, njac, nres, status, hist = _solve(
        jnp.asarray(X0), bargs, data, jnp.asarray(lb), jnp.asarray(ub), hyper,
        loss=residuals, mode=mode, batch_size=bs, max_iter=int(max_iterations),
        max_tries=int(max_tries))
    x = np.asarray(x)
    f = np.asarray(f)
    wall = time.perf_counter() - t0
    return LeastSquaresResult(
        x=x,
        fun=f,
        best=int(np.argmin(np.where(np.isfinite(f), f, np.inf))),
        history=np.asarray(hist).T,
        iterations=np.asarray(it, dtype=int),
        jacobians=np.asarray(njac, dtype=int),
        residual_evaluations=np.asarray(nres, dtype=int),
        status=np.asarray(status, dtype=int),
        wall_time=wall,
        info={"ftol": ftol, "gtol": gtol, "max_iterations": int(max_iterations),
              "max_tries": int(max_tries), "damping": damping, "batch_size": bs,
              "compiled": compiled_solvers() > before},
    )


class LeastSquaresCalibrator(Calibrator):
    """EMG-driven model calibration by Levenberg-Marquardt on the residual rows of 000:Eq.8.

    Parameters
    ----------
    restarts : int
        Start points: the initial parameters plus ``restarts - 1`` points drawn uniformly
        inside the bounds; the one with the lowest objective is kept.
    seed : int
        Seed of the extra start points.
    ftol, gtol, max_iterations, max_tries, damping, batch_size
        See :func:`levenberg_marquardt`; the defaults are the stop rule of the module
        docstring (``batch_size = 0``: the device's default).
    diagnostics : bool
        Attach :func:`~estimators.calibration.identifiability.identifiability` of the
        solution to ``result.info["identifiability"]`` (one Jacobian at the solution).
    """

    name = "least-squares"
    tags = Tags(time_varying=False, needs_ensemble=False, needs_jax=True,
                batch_factors=("alpha", "beta"))
    _parameter_constraints = {
        "restarts": [Interval(int, 1, 4096)],
        "seed": [Interval(int, 0, None)],
        "ftol": [Interval(float, 0, 1, closed="neither")],
        "gtol": [Interval(float, 0, None)],
        "max_iterations": [Interval(int, 1, 100_000)],
        "max_tries": [Interval(int, 1, 60)],
        "damping": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 0, 4096)],
        "diagnostics": [bool],
    }

    def __init__(
        self, *, restarts: int = 1, seed: int = 0, ftol: float = 1e-4, gtol: float = 1e-10,
        max_iterations: int = 50, max_tries: int = 12, damping: float = 1e-3,
        batch_size: int = 0, diagnostics: bool = True,
    ) -> None:
        self.restarts = restarts
        self.seed = seed
        self.ftol = ftol
        self.gtol = gtol
        self.max_iterations = max_iterations
        self.max_tries = max_tries
        self.damping = damping
        self.batch_size = batch_size
        self.diagnostics = diagnostics

    def calibrate(
        self, model, data: MuscleData, objective: Objective, *,
        space: CalibrationSpace | None = None, x0: np.ndarray | None = None,
    ) -> CalibrationResult:
        """Calibrate ``model`` on ``data`` from ``restarts`` start points.

        Parameters
        ----------
        model : object
            Forward model (protocol of :mod:`estimators.calibration.objectives`).
        data : MuscleData
        objective : Objective
            000:Eq.8; its penalty should be ``"smooth"`` or ``"both"`` (the rows of
            000:Eq.9 are piecewise constant: the step ignores them, the acceptance test
            does not).
        space : CalibrationSpace, optional
            Default: the model's default space.
        x0 : ndarray, shape (n,), optional
            First start point (default: the initial parameters).

        Returns
        -------
        CalibrationResult
            ``history``: objective per accepted step of the kept start; ``evaluations``:
            residual vectors plus Jacobians over all starts; ``info``: ``restart_losses``,
            ``iterations``, ``status``, ``compiled`` and, unless disabled,
            ``identifiability``.
        """
        self._validate()
        prob = make_problem(model, data, objective, space)
        sp = prob.space
        first = sp.x0 if x0 is None else np.asarray(x0, dtype=float)
        starts = sp.start_points(first, self.restarts, np.random.default_rng(self.seed))
        res = levenberg_marquardt(
            prob.loss_fn, starts, sp.lower, sp.upper, data=prob.data, ftol=self.ftol,
            gtol=self.gtol, max_iterations=self.max_iterations, max_tries=self.max_tries,
            damping=self.damping, batch_size=self.batch_size or None,
        )
        best = res.best
        hist = res.history[:, best]
        info = {"calibrator": self.name, "restart_losses": res.fun,
                "iterations": res.iterations, "status": res.reasons,
                "compiled": res.info["compiled"], **self.get_params()}
        return result_from(prob, model, data, objective, res.x[best], hist[np.isfinite(hist)],
                           res.wall_time, res.evaluations, info,
                           identifiability=self.diagnostics)

    def calibrate_many(
        self, model, data: MuscleData, objectives: list[Objective], *,
        space: CalibrationSpace | None = None,
    ) -> list[CalibrationResult]:
        """A whole (alpha, beta) sweep in one solver call.

        000:Eq.8 is linear in alpha and beta, so objectives that differ only in their
        weights share one residual function with the weights as a batched argument
        (:class:`~estimators.calibration._problem.WeightedModelLoss`: ``sqrt(alpha)`` times
        the torque rows, ``sqrt(beta)`` times the stiffness rows): ``len(objectives) x
        restarts`` starts run through one compiled solver, each stopping on its own rule;
        each objective's result is its best restart. Objectives that differ in anything
        else are calibrated one by one.
        """
        self._validate()
        if not objectives:
            return []
        first = objectives[0]
        same = all(dataclasses.replace(o, alpha=first.alpha, beta=first.beta) == first
                   for o in objectives)
        if len(objectives) == 1 or not same:
            return [self.calibrate(model, data, o, space=space) for o in objectives]
        sp = space if space is not None else default_space(model)
        fn = WeightedModelLoss(model, sp, first)
        d = fn.prepare(data, need_stiffness=any(o.beta > 0 for o in objectives))
        starts = sp.start_points(sp.x0, self.restarts, np.random.default_rng(self.seed))
        C, R = len(objectives), self.restarts
        W = np.repeat(np.array([[o.alpha, o.beta] for o in objectives], float), R, axis=0)
        res = levenberg_marquardt(
            fn, np.tile(starts, (C, 1)), sp.lower, sp.upper, batch_args=W, data=d,
            ftol=self.ftol, gtol=self.gtol, max_iterations=self.max_iterations,
            max_tries=self.max_tries, damping=self.damping,
            batch_size=self.batch_size or None,
        )
        torque = np.asarray(d["torque"])
        stiff = None if d["stiffness"] is None else np.asarray(d["stiffness"])
        out = []
        for obj, (rows, b) in zip(objectives, best_restarts(res.fun, C, R)):
            x = np.asarray(res.x[b])
            w = jnp.asarray([obj.alpha, obj.beta])
            pred = predict(model, sp, x, data)
            hist = res.history[:, b]
            info = {"calibrator": self.name, "restart_losses": res.fun[rows],
                    "iterations": res.iterations[rows], "status": [res.reasons[i] for i in rows],
                    "compiled": res.info["compiled"], "sweep_size": C,
                    "batch_wall_time": res.wall_time, **self.get_params(),
                    **obj.errors(pred, torque, stiff),
                    # the weights are arguments: one compiled loss and Jacobian per sweep
                    "objective": float(call_compiled(fn, jnp.asarray(x), w, d)), "x": x}
            if self.diagnostics:
                try:
                    info["identifiability"] = assess(fn, x, sp, w, d)
                except DataError as exc:  # a diagnostic must not fail the calibration
                    info["identifiability"] = {"error": str(exc)}
            out.append(CalibrationResult(
                params=sp.to_dict(x), specs=sp.specs, history=hist[np.isfinite(hist)],
                wall_time=res.wall_time / C,
                evaluations=int(res.residual_evaluations[rows].sum() + res.jacobians[rows].sum()),
                predicted={"calibration": pred}, info=info))
        return out
