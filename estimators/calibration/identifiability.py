"""Which calibrated parameters do the data determine? Local identifiability at a solution.

At a calibrated parameter vector ``x`` the residual rows ``r`` of 000:Eq.8
(:meth:`~estimators.calibration.objectives.Objective.residual_parts`) are linearized,
``r(x + dx) ~ r + J dx``. In *scaled* coordinates ``u = x / w`` (``w = ub - lb``, each
parameter divided by the width of its permitted range, so that a fibre length in metres and
a shape factor are comparable) the Jacobian is ``J_u = J diag(w)``, and

* its singular values ``s_1 >= ... >= s_n`` and condition number ``s_1 / s_n`` say how
  many directions of the parameter space the data pin down: a direction with a small
  singular value changes the fit by little however far the parameters move along it;
* the Gauss-Newton covariance ``C_u = sigma^2 (J_u^T J_u)^-1`` with
  ``sigma^2 = |r|^2 / (N - n)`` (N fit rows, i.e. calibration samples x DoFs x terms, not
  counting rows of a term weighted by 0; the penalty rows are constraints, not data) gives an
  approximate standard error per parameter,
  ``se_i = w_i sqrt(C_u,ii)`` in physical units, and the correlations
  ``C_ij / sqrt(C_ii C_jj)`` of pairs of parameters; a correlation near +-1 means the pair
  trades off along a valley (000 Sec. 3.2: "similar torque fits underlay different
  parameters");
* a parameter is *poorly determined* when its scaled standard error ``sqrt(C_u,ii)`` exceeds
  ``se_limit`` (default 0.1: one standard error spans a tenth of the permitted range).

Seed 000's claim that a stiffness term shrinks the feasible set reads here as a smaller
condition number, fewer weak directions and smaller standard errors for torque + stiffness
than for torque alone. Measured on the synthetic ankle (``benchmarks/calibration.py``, LM
solutions, true stiffness): cond 0.5-2.7e7 -> 0.1-2.1e7, directions with ``s < 1e-3 s_1``
15-16 -> 11-12, median standard error 64-166 -> 5-11 times the permitted range; every
parameter stays poorly determined at ``se_limit = 0.1`` (one calibration cycle cannot pin
26 parameters; l_opt / l_ts of one MTU and strength / shape of one group correlate at
|r| > 0.99).

The inverse uses every singular value floored at ``1e-12 s_1``, so an exactly collinear pair
(a duplicated column) gives a huge but finite standard error and a correlation of -1 or +1
instead of a division by zero.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import DataError
from estimators.calibration.objectives import assemble, row_parts

__all__ = [
    "SUMMARY_HEADER",
    "assess",
    "identifiability",
    "identifiability_from",
    "jacobian_at",
    "markdown_rows",
    "summary_row",
]

_FLOOR = 1e-12


@partial(jax.jit, static_argnames=("residuals",))
def _jacobian(x, args, *, residuals):
    def f(x):
        fit, pen = row_parts(residuals(x, *args))
        return assemble(fit + pen)

    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    r, J = jax.vmap(lambda v: jax.jvp(f, (x,), (v,)), out_axes=(None, 1))(eye)
    return r, J


def _parts_fn(loss: Any):
    """The ``(fit, penalty)`` residual function of a ModelLoss-like object, else ``loss``."""
    return getattr(loss, "residual_parts", loss)


def jacobian_at(residuals: Any, x: np.ndarray, *args: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Residual rows and their Jacobian in physical units at ``x`` (forward mode, compiled
    once per residual function and shapes).

    Parameters
    ----------
    residuals : ModelLoss, WeightedModelLoss or callable
        ``residuals(x, *args)`` returning a vector or ``(fit, penalty)`` rows (a ModelLoss is
        used through its ``residual_parts``).
    x : ndarray, shape (n,)
    *args
        Further arguments (``data``; ``w, data`` for a weighted loss).

    Returns
    -------
    r : ndarray, shape (m,)
    J : ndarray, shape (m, n)
        ``dr/dx`` (row units per parameter unit).
    n_fit : int
        Number of fit rows (the first ``n_fit`` rows; the rest are penalty rows).
    """
    fn = _parts_fn(residuals)
    xj = jnp.asarray(np.asarray(x, dtype=float))
    fit, _ = jax.eval_shape(lambda x: row_parts(fn(x, *args)), xj)
    r, J = _jacobian(xj, tuple(args), residuals=fn)
    return np.asarray(r), np.asarray(J), int(sum(np.prod(a.shape) for a in fit))


def identifiability_from(
    r: np.ndarray,
    J: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    names: list[str],
    *,
    units: list[str] | None = None,
    n_fit: int | None = None,
    top: int = 5,
    se_limit: float = 0.1,
) -> dict[str, Any]:
    """Identifiability summary from residual rows and their Jacobian (numpy only).

    Parameters
    ----------
    r : ndarray, shape (m,)
        Residual rows at the solution (``sum(r**2)`` is the objective).
    J : ndarray, shape (m, n)
        Their Jacobian with respect to the physical parameters.
    lower, upper : ndarray, shape (n,)
        Bounds; ``upper - lower`` scales each parameter.
    names : list of str, length n
    units : list of str, optional
    n_fit : int, optional
        The first ``n_fit`` rows are data (fit) rows, the rest penalty rows; default all m.
        Fit rows that are zero with a zero derivative (a term weighted by 0) do not count
        as data in the residual variance.
    top : int
        Number of most correlated pairs reported.
    se_limit : float
        Scaled standard error above which a parameter is poorly determined.

    Returns
    -------
    dict
        JSON-able: ``names``, ``units``, ``scaling``, ``singular_values`` (descending,
        scaled coordinates), ``condition_number``, ``rank`` (singular values above 1e-8
        s_1), ``sigma2``, ``dof``, ``standard_error`` and ``standard_error_scaled`` (name ->
        value, physical units and fraction of the permitted range), ``top_correlations``
        (list of ``{"pair": [a, b], "correlation": c}``, by decreasing ``|c|``),
        ``poorly_determined`` (names), ``weakest_direction`` (name -> loading of the
        right singular vector of the smallest singular value, largest five),
        ``se_limit``.
    """
    r = np.asarray(r, dtype=float).ravel()
    J = np.asarray(J, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    m, n = J.shape if J.ndim == 2 else (0, 0)
    if J.ndim != 2 or r.shape != (m,) or lo.shape != (n,) or hi.shape != (n,) or len(names) != n:
        raise DataError(f"identifiability needs r (m,), J (m, n), bounds and names (n,); got "
                        f"r {r.shape}, J {J.shape}, bounds {lo.shape}/{hi.shape}, "
                        f"{len(names)} names")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
        raise DataError("residuals or Jacobian contain NaN/inf at this point")
    if np.any(hi <= lo):
        raise DataError("every lower bound must be below its upper bound")
    width = hi - lo
    Ju = J * width[None, :]
    _, s, Vt = np.linalg.svd(Ju, full_matrices=False)
    s_max = float(s[0]) if s.size else 0.0
    if s_max == 0.0:
        s_floor = np.full_like(s, 1.0)
        cond = float("inf")
    else:
        s_floor = np.maximum(s, _FLOOR * s_max)
        cond = s_max / float(s_floor[-1])
    nf = m if n_fit is None else int(n_fit)
    # data rows: fit rows that are not identically zero (a term weighted by 0 adds rows of
    # zeros, e.g. the stiffness rows of a torque-only calibration)
    nf = int(np.sum((r[:nf] != 0) | np.any(J[:nf] != 0, axis=1)))
    dof = max(nf - n, 1)
    sigma2 = float(r @ r) / dof
    cov = (Vt.T / s_floor**2) @ Vt * sigma2  # C_u = sigma^2 (J_u^T J_u)^-1
    var = np.clip(np.diag(cov), 0.0, None)
    se_u = np.sqrt(var)
    se = se_u * width
    d = np.where(se_u > 0, se_u, 1.0)
    corr = cov / d[:, None] / d[None, :]
    iu = np.triu_indices(n, 1)
    order = np.argsort(-np.abs(corr[iu]), kind="stable")[:top]
    pairs = [{"pair": [names[iu[0][k]], names[iu[1][k]]],
              "correlation": float(corr[iu][k])} for k in order]
    weak = Vt[-1] if n else np.zeros(0)
    wk = np.argsort(-np.abs(weak), kind="stable")[:5]
    return {
        "names": list(names),
        "units": list(units) if units is not None else ["" for _ in names],
        "scaling": "parameters divided by the width of their bounds",
        "rows": int(m),
        "fit_rows": int(nf),
        "singular_values": [float(v) for v in s],
        "condition_number": float(cond),
        "rank": int(np.sum(s > 1e-8 * s_max)) if s_max > 0 else 0,
        "sigma2": sigma2,
        "dof": int(dof),
        "standard_error": {nm: float(v) for nm, v in zip(names, se)},
        "standard_error_scaled": {nm: float(v) for nm, v in zip(names, se_u)},
        "top_correlations": pairs,
        "poorly_determined": [nm for nm, v in zip(names, se_u) if v > se_limit],
        "weakest_direction": {names[k]: float(weak[k]) for k in wk},
        "se_limit": float(se_limit),
    }


def assess(
    residuals: Any, x: np.ndarray, space: Any, *args: Any, top: int = 5,
    se_limit: float = 0.1,
) -> dict[str, Any]:
    """Identifiability of ``x`` for any residual function over a calibration space.

    Parameters
    ----------
    residuals : ModelLoss, WeightedModelLoss or callable
        See :func:`jacobian_at`; e.g. the study's ``weighted_loss(model, space)`` with
        ``args = (w, data)``.
    x : ndarray, shape (n,)
        Calibrated parameters (physical units).
    space : CalibrationSpace
        Names, units (``specs``) and bounds.
    *args
        Further arguments of ``residuals``.
    top, se_limit
        See :func:`identifiability_from`.

    Examples
    --------
    >>> fn = weighted_loss(model, space)            # doctest: +SKIP
    >>> d = fn.prepare(cal)                         # doctest: +SKIP
    >>> ident = assess(fn, x_best, space, jnp.array([1.0, 0.0]), d)  # doctest: +SKIP
    """
    r, J, n_fit = jacobian_at(residuals, x, *args)
    units = [sp.unit for sp in space.specs]
    return identifiability_from(r, J, space.lower, space.upper, space.names, units=units,
                                n_fit=n_fit, top=top, se_limit=se_limit)


def identifiability(problem: Any, x: np.ndarray, **kw: Any) -> dict[str, Any]:
    """Identifiability of a calibration result: ``problem`` from
    :func:`~estimators.calibration._problem.make_problem` (any calibrator's), ``x`` its
    calibrated vector. Keywords as :func:`identifiability_from`."""
    return assess(problem.loss_fn, x, problem.space, problem.data, **kw)


def summary_row(ident: dict[str, Any], label: str, *, pairs: int = 2) -> str:
    """One Markdown table row: label, cond(J), rank/n, poorly determined count, the
    ``pairs`` most correlated pairs. Header: :data:`SUMMARY_HEADER`."""
    n = len(ident["names"])
    top = "; ".join(f"{p['pair'][0]} / {p['pair'][1]} ({p['correlation']:+.3f})"
                    for p in ident["top_correlations"][:pairs])
    return (f"| {label} | {ident['condition_number']:.3g} | {ident['rank']}/{n} | "
            f"{len(ident['poorly_determined'])}/{n} | {top} |")


SUMMARY_HEADER = ("| calibration | cond(J) scaled | rank | poorly determined | "
                  "most correlated pairs |\n| --- | --- | --- | --- | --- |")


def markdown_rows(ident: dict[str, Any]) -> list[str]:
    """Markdown table (header + one row per parameter): name, unit, standard error
    (physical), standard error as % of the permitted range, poorly determined."""
    rows = ["| parameter | unit | standard error | % of range | poorly determined |",
            "| --- | --- | --- | --- | --- |"]
    poor = set(ident["poorly_determined"])
    for nm, unit in zip(ident["names"], ident["units"]):
        rows.append(f"| {nm} | {unit} | {ident['standard_error'][nm]:.3g} | "
                    f"{100 * ident['standard_error_scaled'][nm]:.3g} | "
                    f"{'yes' if nm in poor else ''} |")
    return rows
