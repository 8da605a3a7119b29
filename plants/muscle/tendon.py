"""Tendon models: rigid, equilibrium elastic (implicit gradients), Rosenbrock elastic.

Each returns the normalized fibre length ``lm`` (fibre length / optimal fibre length) and
normalized fibre velocity ``vm`` (per ``l_opt * v_max``, negative = shortening).

* rigid: ``l_t = l_ts``, so ``l_m cos(phi) = l_mt - l_ts``;
* equilibrium elastic: ``F_t(l_t) = F_m(l_m, v_m, a) cos(phi)`` solved per sample by a
  bracketed Newton iteration wrapped in :func:`jax.lax.custom_root`, so gradients come from the
  implicit function theorem, never from differentiating the solver iterations (CEINMS solves the
  same equation with Brent's method, 000 Fig. 2);
* Rosenbrock elastic: the linearly implicit first-order Rosenbrock step of 001:App.A
  (Eq.A4-A6) integrating the fibre length forward in a :func:`jax.lax.scan`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from plants.muscle import curves
from plants.muscle.fiber import fiber_force, pennation
from plants.muscle.params import MTUParams

__all__ = [
    "equilibrium_fiber_length",
    "equilibrium_fiber_trajectory",
    "equilibrium_residual",
    "rigid_fiber_length",
    "rigid_fiber_velocity",
    "rosenbrock_fiber_trajectory",
    "time_derivative",
]

_NEWTON_ITERS = 30


def rigid_fiber_length(params: MTUParams, lmt: jnp.ndarray) -> jnp.ndarray:
    """Normalized fibre length with a rigid tendon, ``sqrt((l_mt - l_ts)^2 + h^2) / l_opt``."""
    h = params.l_opt * jnp.sin(params.phi_opt)
    x = lmt - params.l_ts
    return jnp.sqrt(x * x + h * h) / params.l_opt


def rigid_fiber_velocity(params: MTUParams, lm: jnp.ndarray, vmt: jnp.ndarray) -> jnp.ndarray:
    """Normalized fibre velocity with a rigid tendon: ``v_m = cos(phi) v_mt / (l_opt v_max)``."""
    cos_phi, _ = pennation(params, lm)
    return cos_phi * vmt / (params.l_opt * params.v_max)


def equilibrium_residual(params: MTUParams, a, lmt, vm, lm) -> jnp.ndarray:
    """Normalized force imbalance ``f_T(l_t / l_ts) - F_m cos(phi) / F_max`` (000 Fig. 2).

    Positive when the tendon pulls harder than the fibre (the fibre must lengthen).
    """
    cos_phi, _ = pennation(params, lm)
    lt = (lmt - params.l_opt * lm * cos_phi) / params.l_ts
    return curves.tendon_force_length(lt) - fiber_force(params, a, lm, vm) * cos_phi / params.f_max


def _elementwise_tangent_solve(g, y):
    # the residual is elementwise over muscles/samples: its Jacobian is diagonal
    return y / g(jnp.ones_like(y))


def equilibrium_fiber_length(params: MTUParams, a, lmt, vm) -> jnp.ndarray:
    """Normalized fibre length where tendon and fibre forces balance (elastic tendon).

    Solves :func:`equilibrium_residual` ``= 0`` at the given activation, MTU length and
    normalized fibre velocity by a Newton iteration safeguarded by bisection on a bracket,
    elementwise over any array shape. Derivatives with respect to ``params``, ``a``, ``lmt``
    and ``vm`` are those of the exact root (implicit function theorem via
    :func:`jax.lax.custom_root`).

    Parameters
    ----------
    params : MTUParams, fields (M,)
    a, lmt, vm : arrays broadcastable to (..., M)
        Activation, MTU length (m), normalized fibre velocity.

    Returns
    -------
    array, shape of the broadcast inputs
    """
    a, lmt, vm = jnp.broadcast_arrays(a, lmt, vm)
    sin0 = jnp.sin(params.phi_opt)

    def residual(lm):
        return equilibrium_residual(params, a, lmt, vm, lm)

    def solve(f, x0):
        lo = jnp.broadcast_to(sin0 * 1.0001 + 1e-3, x0.shape)
        x_hi = jnp.maximum(lmt - 0.5 * params.l_ts, 1e-4) / params.l_opt
        hi = jnp.sqrt(x_hi**2 + sin0**2) + 1e-6
        hi = jnp.maximum(hi, lo + 1e-3)

        def body(_, state):
            x, lo, hi = state
            r, dr = jax.jvp(f, (x,), (jnp.ones_like(x),))
            # r > 0: fibre too short -> root above x
            lo = jnp.where(r > 0, x, lo)
            hi = jnp.where(r > 0, hi, x)
            xn = x - r / jnp.where(dr == 0, -1.0, dr)
            inside = (xn >= lo) & (xn <= hi) & jnp.isfinite(xn)
            x = jnp.where(inside, xn, 0.5 * (lo + hi))
            return x, lo, hi

        x0 = jnp.clip(x0, lo, hi)
        x, _, _ = jax.lax.fori_loop(0, _NEWTON_ITERS, body, (x0, lo, hi))
        return x

    guess = jax.lax.stop_gradient(
        jnp.broadcast_to(rigid_fiber_length(params, lmt - 0.02 * params.l_ts), lmt.shape)
    )
    return jax.lax.custom_root(residual, guess, solve, _elementwise_tangent_solve)


def time_derivative(x: jnp.ndarray, fs: float) -> jnp.ndarray:
    """Time derivative along axis 0 by central differences (one-sided at the ends), per s."""
    return jnp.gradient(x, axis=0) * fs


def equilibrium_fiber_trajectory(
    params: MTUParams, activation: jnp.ndarray, lmt: jnp.ndarray, fs: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Equilibrium elastic tendon over a record, vectorized over time (no scan).

    Two passes: (1) equilibrium at the rigid-tendon fibre velocity; (2) fibre velocity as the
    time derivative of the pass-1 fibre length, equilibrium solved again at that velocity.

    Parameters
    ----------
    activation, lmt : arrays, shape (T, M)
    fs : float, Hz

    Returns
    -------
    lm, vm : arrays, shape (T, M)
    """
    vmt = time_derivative(lmt, fs)
    vm0 = rigid_fiber_velocity(params, rigid_fiber_length(params, lmt), vmt)
    lm1 = equilibrium_fiber_length(params, activation, lmt, vm0)
    vm = time_derivative(lm1, fs) / params.v_max
    lm = equilibrium_fiber_length(params, activation, lmt, vm)
    return lm, vm


def rosenbrock_fiber_trajectory(
    params: MTUParams,
    activation: jnp.ndarray,
    lmt: jnp.ndarray,
    fs: float,
    unroll: int = 1,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Elastic tendon by the first-order Rosenbrock method (001:App.A, Eq.A4-A6).

    State ``x = lm`` (normalized fibre length), ``xdot = dlm/dt``; implicit model
    ``f(lm, lmdot, u) = f_T(l_t / l_ts) - F_m(lm, lmdot, a) cos(phi) / F_max`` (A6, normalized by
    ``F_max``) with controls ``u = (a, l_mt)``. Each step (A4/A5)::

        lm_{i+1} = lm_i + (df/dlm + df/dlmdot / h)^-1
                   (df/dlmdot lmdot_i - f(lm_i, lmdot_i, u_i) - df/du (u_{i+1} - u_i))

    with ``lmdot_{i+1} = (lm_{i+1} - lm_i) / h``. The partial derivatives are forward-mode
    derivatives of the elementwise residual (as 001 uses automatic differentiation). The
    fibre damping (000:Eq.2) keeps ``df/dlmdot`` away from zero. The MTU length enters as a
    control next to the activation (001 lists only ``a``; the MTU length must enter the
    same way when the joint moves). The state starts at equilibrium with the rigid-tendon
    fibre velocity.

    Parameters
    ----------
    activation, lmt : arrays, shape (T, M)
    fs : float, Hz
    unroll : int
        ``lax.scan`` unroll factor.

    Returns
    -------
    lm, vm : arrays, shape (T, M)
        Normalized fibre length and velocity.
    """
    h = 1.0 / fs
    vmax = params.v_max

    def f(lm, lmdot, a, l):
        return equilibrium_residual(params, a, l, lmdot / vmax, lm)  # 001:Eq.A6

    vmt = time_derivative(lmt, fs)
    vm0 = rigid_fiber_velocity(params, rigid_fiber_length(params, lmt[0]), vmt[0])
    lm0 = equilibrium_fiber_length(params, activation[0], lmt[0], vm0)
    x0 = (lm0, vm0 * vmax)

    a_next = jnp.concatenate([activation[1:], activation[-1:]], axis=0)
    l_next = jnp.concatenate([lmt[1:], lmt[-1:]], axis=0)

    def step(carry, inp):
        lm, lmdot = carry
        a, l, a1, l1 = inp
        ones = jnp.ones_like(lm)
        r, df_dx = jax.jvp(lambda x: f(x, lmdot, a, l), (lm,), (ones,))
        df_dxd = jax.jvp(lambda v: f(lm, v, a, l), (lmdot,), (ones,))[1]
        # df/du (u_{i+1} - u_i) as one directional derivative along the control change
        df_du = jax.jvp(lambda aa, ll: f(lm, lmdot, aa, ll), (a, l), (a1 - a, l1 - l))[1]
        dx = (df_dxd * lmdot - r - df_du) / (df_dx + df_dxd / h)  # 001:Eq.A4-A5
        lm_new = lm + dx
        return (lm_new, dx / h), (lm, lmdot)

    _, (lm, lmdot) = jax.lax.scan(step, x0, (activation, lmt, a_next, l_next), unroll=unroll)
    return lm, lmdot / vmax
