"""Muscle-tendon unit force (000:Eq.2, 001:Eq.3) and stiffness (000:Eq.3-5).

Two levels:

* instantaneous functions of ``(activation, l_mt, v_mt)`` - :func:`mtu_force`,
  :func:`mtu_stiffness`, :func:`fiber_state` - for the rigid and the equilibrium elastic
  tendon (no state);
* :func:`mtu_trajectory` - a whole record ``(T, M)`` for any tendon model, including the
  Rosenbrock elastic tendon whose fibre length is integrated forward in time.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from bench.errors import InvalidParameterError
from plants.muscle import tendon as _tendon
from plants.muscle.fiber import (
    fiber_force,
    fiber_stiffness_along_tendon,
    pennation,
    tendon_stiffness,
)
from plants.muscle.params import MTUParams

__all__ = [
    "TENDON_MODELS",
    "MTUState",
    "fiber_state",
    "mtu_force",
    "mtu_force_from_fiber",
    "mtu_stiffness",
    "mtu_stiffness_from_fiber",
    "mtu_trajectory",
]

TENDON_MODELS = ("rigid", "equilibrium", "rosenbrock")


class MTUState(NamedTuple):
    """Per-sample MTU state, every field shaped like the activation input ``(..., M)``.

    Attributes
    ----------
    lm : normalized fibre length; vm : normalized fibre velocity;
    lt : normalized tendon length (l_t / l_ts); force : MTU force, N;
    stiffness : MTU stiffness, N/m.
    """

    lm: jnp.ndarray
    vm: jnp.ndarray
    lt: jnp.ndarray
    force: jnp.ndarray
    stiffness: jnp.ndarray


def _check_tendon(tendon: str, allowed=TENDON_MODELS) -> None:
    if tendon not in allowed:
        raise InvalidParameterError(
            f"The 'tendon' parameter must be one of {allowed}. Got {tendon!r} instead."
        )


def mtu_force_from_fiber(params: MTUParams, a, lm, vm) -> jnp.ndarray:
    """MTU force ``F_max (a f_L f_V + f_PE + d v) cos(phi)`` (N), 000:Eq.2 / 001:Eq.3."""
    cos_phi, _ = pennation(params, lm)
    return fiber_force(params, a, lm, vm) * cos_phi  # 000:Eq.2


def mtu_stiffness_from_fiber(params: MTUParams, a, lm, vm, lt, rigid: bool) -> jnp.ndarray:
    """MTU stiffness (N/m): fibre stiffness along the tendon (000:Eq.4) in series with the
    tendon stiffness (000:Eq.5), ``K = (K_eq^-1 + K_t^-1)^-1`` (000:Eq.3); ``K = K_eq`` for a
    rigid tendon."""
    k_eq = fiber_stiffness_along_tendon(params, a, lm, vm)
    if rigid:
        return k_eq
    k_t = tendon_stiffness(params, lt)
    return k_eq * k_t / (k_eq + k_t)  # 000:Eq.3


def _tendon_length(params: MTUParams, lm, lmt):
    cos_phi, _ = pennation(params, lm)
    return (lmt - params.l_opt * lm * cos_phi) / params.l_ts


def fiber_state(
    params: MTUParams, activation, lmt, vmt, tendon: str = "rigid"
) -> MTUState:
    """Instantaneous MTU state for a rigid or equilibrium elastic tendon.

    Parameters
    ----------
    params : MTUParams, fields (M,)
    activation : array, shape (..., M), in [0, 1]
    lmt : array, shape (..., M), m
    vmt : array, shape (..., M), m/s
        MTU lengthening velocity. The fibre velocity is its rigid-tendon projection
        ``cos(phi) v_mt`` (for the equilibrium tendon too: an instantaneous model has no
        fibre-length history; use :func:`mtu_trajectory` for records).
    tendon : {"rigid", "equilibrium"}

    Returns
    -------
    MTUState
    """
    _check_tendon(tendon, ("rigid", "equilibrium"))
    lm_r = _tendon.rigid_fiber_length(params, lmt)
    vm = _tendon.rigid_fiber_velocity(params, lm_r, vmt)
    if tendon == "rigid":
        lm = lm_r
        lt = jnp.ones_like(lm) * jnp.ones_like(activation)
    else:
        lm = _tendon.equilibrium_fiber_length(params, activation, lmt, vm)
        lt = _tendon_length(params, lm, lmt)
    force = mtu_force_from_fiber(params, activation, lm, vm)
    k = mtu_stiffness_from_fiber(params, activation, lm, vm, lt, rigid=tendon == "rigid")
    return MTUState(lm=lm, vm=vm, lt=lt, force=force, stiffness=k)


def mtu_force(params: MTUParams, activation, lmt, vmt, tendon: str = "rigid") -> jnp.ndarray:
    """MTU force (N), 000:Eq.2; see :func:`fiber_state` for the arguments."""
    return fiber_state(params, activation, lmt, vmt, tendon).force


def mtu_stiffness(params: MTUParams, activation, lmt, vmt, tendon: str = "rigid") -> jnp.ndarray:
    """MTU stiffness ``dF_mtu/dl_mt`` (N/m), 000:Eq.3-5; see :func:`fiber_state`."""
    return fiber_state(params, activation, lmt, vmt, tendon).stiffness


def mtu_trajectory(
    params: MTUParams,
    activation: jnp.ndarray,
    lmt: jnp.ndarray,
    fs: float,
    tendon: str = "rigid",
    unroll: int = 1,
) -> MTUState:
    """MTU states over a record.

    Parameters
    ----------
    params : MTUParams, fields (M,)
    activation, lmt : arrays, shape (T, M)
        Activation in [0, 1] and MTU length (m).
    fs : float, Hz
    tendon : {"rigid", "equilibrium", "rosenbrock"}
        ``rigid``: fibre velocity from the MTU velocity (central differences);
        ``equilibrium``: :func:`~plants.muscle.tendon.equilibrium_fiber_trajectory`;
        ``rosenbrock``: :func:`~plants.muscle.tendon.rosenbrock_fiber_trajectory`.
    unroll : int
        Scan unroll factor (Rosenbrock only).

    Returns
    -------
    MTUState, fields (T, M)
    """
    _check_tendon(tendon)
    if tendon == "rigid":
        lm = _tendon.rigid_fiber_length(params, lmt)
        vm = _tendon.rigid_fiber_velocity(params, lm, _tendon.time_derivative(lmt, fs))
        lt = jnp.ones_like(lm)
    elif tendon == "equilibrium":
        lm, vm = _tendon.equilibrium_fiber_trajectory(params, activation, lmt, fs)
        lt = _tendon_length(params, lm, lmt)
    else:
        lm, vm = _tendon.rosenbrock_fiber_trajectory(params, activation, lmt, fs, unroll=unroll)
        lt = _tendon_length(params, lm, lmt)
    force = mtu_force_from_fiber(params, activation, lm, vm)
    k = mtu_stiffness_from_fiber(params, activation, lm, vm, lt, rigid=tendon == "rigid")
    return MTUState(lm=lm, vm=vm, lt=lt, force=force, stiffness=k)
