"""Fibre-level mechanics: pennation, fibre force, fibre and tendon stiffness.

Inputs are normalized (see :mod:`plants.muscle.curves`); forces are in N, stiffnesses in
N/m. Arrays broadcast against :class:`~plants.muscle.params.MTUParams` fields of shape
``(M,)``, so ``(M,)`` and ``(T, M)`` inputs both work.
"""

from __future__ import annotations

import jax.numpy as jnp

from plants.muscle import curves
from plants.muscle.params import MTUParams

__all__ = [
    "fiber_force",
    "fiber_force_deriv",
    "fiber_stiffness_along_tendon",
    "pennation",
    "tendon_force",
    "tendon_stiffness",
]

_MAX_SIN = 0.9999  # keeps cos(phi) > 0 when the fibre is compressed to its thickness


def pennation(params: MTUParams, lm: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(cos phi, sin phi)`` at normalized fibre length ``lm`` for constant fibre thickness.

    Constant thickness ``h = l_opt sin(phi_opt)`` gives ``sin(phi) = sin(phi_opt) / lm``.
    """
    s = jnp.minimum(jnp.sin(params.phi_opt) / lm, _MAX_SIN)
    return jnp.sqrt(1.0 - s * s), s


def fiber_force(params: MTUParams, a, lm, vm) -> jnp.ndarray:
    """Fibre force along the fibre, ``F_m = F_max (a f_L f_V + f_PE + d v)`` (N).

    The bracket of 000:Eq.2 / 001:Eq.3 without the ``cos(phi)`` projection.

    Parameters
    ----------
    a : activation in [0, 1]; lm : normalized fibre length; vm : normalized fibre velocity.
    """
    f = (
        a * curves.active_force_length(lm) * curves.force_velocity(vm)
        + curves.passive_force_length(lm)
        + params.damping * vm
    )
    return params.f_max * f


def fiber_force_deriv(params: MTUParams, a, lm, vm) -> jnp.ndarray:
    """``dF_m / dl_m`` at fixed velocity and activation (N/m), analytic."""
    df = a * curves.active_force_length_deriv(lm) * curves.force_velocity(vm)
    df = df + curves.passive_force_length_deriv(lm)
    return params.f_max * df / params.l_opt


def fiber_stiffness_along_tendon(params: MTUParams, a, lm, vm) -> jnp.ndarray:
    """Equivalent fibre stiffness along the tendon's line of action ``K^m_eq`` (N/m).

    000:Eq.4 (Jenkins & Bryant 2020): ``K_eq = dF_m/dl_m cos^2(phi) + F_m / l_m sin^2(phi)``,
    which equals ``d(F_m cos phi) / d(l_m cos phi)`` for constant fibre thickness.
    """
    cos_phi, sin_phi = pennation(params, lm)
    F = fiber_force(params, a, lm, vm)
    dF = fiber_force_deriv(params, a, lm, vm)
    return dF * cos_phi**2 + F / (lm * params.l_opt) * sin_phi**2  # 000:Eq.4


def tendon_force(params: MTUParams, lt) -> jnp.ndarray:
    """Tendon force ``F_max f_T(lt)`` (N) at normalized tendon length ``lt``."""
    return params.f_max * curves.tendon_force_length(lt)


def tendon_stiffness(params: MTUParams, lt) -> jnp.ndarray:
    """Tendon stiffness ``K_t = dF_t/dl_t = F_max f_T'(lt) / l_ts`` (N/m), 000:Eq.5."""
    return params.f_max * curves.tendon_force_length_deriv(lt) / params.l_ts
