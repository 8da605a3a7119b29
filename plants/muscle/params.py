"""The muscle-tendon parameter pytree shared by the plant and the calibrators."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bench.errors import InvalidParameterError

__all__ = ["MTUParams", "make_params", "params_to_dict"]


class MTUParams(NamedTuple):
    """Per-MTU parameters, every field an array of shape ``(M,)`` (float64).

    A NamedTuple is a JAX pytree: pass it through ``jit``/``vmap``/``grad`` as is.

    Attributes
    ----------
    f_max : N
        Maximum isometric force.
    l_opt : m
        Optimal fibre length.
    l_ts : m
        Tendon slack length.
    phi_opt : rad
        Pennation angle at optimal fibre length.
    v_max : optimal fibre lengths per s
        Maximum contraction velocity.
    damping : dimensionless
        Fibre damping ``d`` of 000:Eq.2 / 001:Eq.3 (0.1 in both papers, after Millard 2013).
    shape : dimensionless
        Activation shape factor ``A`` in (-3, 0) (000:Eq.1, 001:Eq.2).
    c1, c2 : dimensionless
        Recursive-filter coefficients of 001:Eq.1 at the model's sampling rate, in (-1, 1).
    delay : s
        Electromechanical delay (001: 35 ms).
    t_act, t_deact : s
        Activation / deactivation time constants of 002:Eq.17-18.
    """

    f_max: jnp.ndarray
    l_opt: jnp.ndarray
    l_ts: jnp.ndarray
    phi_opt: jnp.ndarray
    v_max: jnp.ndarray
    damping: jnp.ndarray
    shape: jnp.ndarray
    c1: jnp.ndarray
    c2: jnp.ndarray
    delay: jnp.ndarray
    t_act: jnp.ndarray
    t_deact: jnp.ndarray


_DEFAULTS = {
    "v_max": 10.0,  # OpenSim default max_contraction_velocity (gait2392)
    "damping": 0.1,  # 000:Eq.2, 001:Eq.3
    "shape": -1.0,
    "c1": -0.5,
    "c2": -0.5,
    "delay": 0.035,  # 001 Sec. II-A
    "t_act": 0.015,  # common default (Thelen 2003 / OpenSim); used by 002:Eq.18 as a learnable
    "t_deact": 0.060,
}


def make_params(
    f_max, l_opt, l_ts, phi_opt, **optional: float | np.ndarray
) -> MTUParams:
    """Build :class:`MTUParams`, broadcasting scalars to ``(M,)`` and checking ranges.

    Parameters
    ----------
    f_max, l_opt, l_ts, phi_opt : array-like, shape (M,)
        See :class:`MTUParams`.
    **optional
        Any other field of :class:`MTUParams`; defaults: ``v_max=10``, ``damping=0.1``,
        ``shape=-1``, ``c1=c2=-0.5``, ``delay=0.035``, ``t_act=0.015``, ``t_deact=0.06``.

    Raises
    ------
    InvalidParameterError
        Unknown field, wrong shape, or a value out of its physical range (names the field).
    """
    unknown = set(optional) - set(_DEFAULTS)
    if unknown:
        raise InvalidParameterError(
            f"make_params got unknown field(s) {sorted(unknown)}; "
            f"valid: {sorted(MTUParams._fields)}"
        )
    f_max = np.atleast_1d(np.asarray(f_max, dtype=float))
    M = f_max.shape[0]
    vals = {"f_max": f_max, "l_opt": l_opt, "l_ts": l_ts, "phi_opt": phi_opt}
    vals.update({k: optional.get(k, v) for k, v in _DEFAULTS.items()})
    out = {}
    for k in MTUParams._fields:
        arr = np.asarray(vals[k], dtype=float)
        if arr.ndim == 0:
            arr = np.full(M, float(arr))
        if arr.shape != (M,):
            raise InvalidParameterError(
                f"MTU parameter {k!r} must have shape ({M},); got {arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidParameterError(f"MTU parameter {k!r} must be finite; got {arr}.")
        out[k] = arr
    for k in ("f_max", "l_opt", "l_ts", "v_max", "t_act", "t_deact"):
        if np.any(out[k] <= 0):
            raise InvalidParameterError(f"MTU parameter {k!r} must be > 0; got {out[k]}.")
    if np.any((out["phi_opt"] < 0) | (out["phi_opt"] >= np.pi / 2)):
        raise InvalidParameterError(
            f"MTU parameter 'phi_opt' must be in [0, pi/2) rad; got {out['phi_opt']}."
        )
    if np.any((out["shape"] <= -3) | (out["shape"] >= 0)):
        raise InvalidParameterError(
            f"MTU parameter 'shape' (A) must be in (-3, 0); got {out['shape']}."
        )
    for k in ("c1", "c2"):
        if np.any(np.abs(out[k]) >= 1):
            raise InvalidParameterError(f"MTU parameter {k!r} must be in (-1, 1); got {out[k]}.")
    if np.any(out["delay"] < 0) or np.any(out["damping"] < 0):
        raise InvalidParameterError("MTU parameters 'delay' and 'damping' must be >= 0.")
    return MTUParams(**{k: jnp.asarray(v) for k, v in out.items()})


def params_to_dict(params: MTUParams) -> dict[str, list[float]]:
    """Plain-Python copy of ``params`` (for ``MuscleData.truth`` and JSON)."""
    return {k: np.asarray(v, dtype=float).tolist() for k, v in params._asdict().items()}
