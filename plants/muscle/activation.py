"""Activation dynamics: excitation -> neural activation -> muscle activation.

Two alternatives, both pure JAX functions scanning over time with :func:`jax.lax.scan`
(carry = a few arrays of shape ``(M,)``), jit-able, vmap-able over trials and
differentiable with respect to every coefficient, including the electromechanical delay:

* :func:`neural_activation` - the critically damped second-order recursive filter of
  001:Eq.1 (Lloyd & Besier 2003) with a continuous, differentiable delay (002:Eq.21),
  followed by the exponential shape factor of 000:Eq.1 / 001:Eq.2
  (:func:`activation_shape`);
* :func:`first_order_activation` - first-order activation dynamics with activation and
  deactivation time constants (002:Eq.17-18).

Time runs along axis 0: signals have shape ``(T, M)`` (T samples, M muscles); parameters have
shape ``(M,)`` or are scalars.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "activation_shape",
    "delay_signal",
    "first_order_activation",
    "neural_activation",
    "resample_recursive_coefficients",
]


def delay_signal(x: jnp.ndarray, delay: jnp.ndarray, fs: float) -> jnp.ndarray:
    """Delay ``x`` by a continuous, differentiable number of samples (002:Eq.21).

    ``x_d[t] = gamma x[t - d_l] + (1 - gamma) x[t - d_h]`` with ``d_l = floor(delay fs)``,
    ``d_h = d_l + 1`` and ``gamma = 1 - (delay fs - d_l)`` (linear interpolation between the two
    neighbouring sample delays). Samples before the record start repeat ``x[0]``.

    Parameters
    ----------
    x : array, shape (T, M)
    delay : array, shape (M,) or scalar, s
        Electromechanical delay, >= 0.
    fs : float
        Sampling rate, Hz.

    Returns
    -------
    array, shape (T, M)
    """
    T = x.shape[0]
    td = jnp.broadcast_to(jnp.asarray(delay, dtype=x.dtype) * fs, x.shape[1:])
    dl = jnp.floor(td)
    gamma = 1.0 - (td - dl)  # 002:Eq.21
    idx = jnp.arange(T)[:, None] - dl[None, :].astype(jnp.int32)
    i_l = jnp.clip(idx, 0, T - 1)
    i_h = jnp.clip(idx - 1, 0, T - 1)
    x_l = jnp.take_along_axis(x, i_l, axis=0)
    x_h = jnp.take_along_axis(x, i_h, axis=0)
    return gamma * x_l + (1.0 - gamma) * x_h


def neural_activation(
    excitation: jnp.ndarray,
    c1: jnp.ndarray,
    c2: jnp.ndarray,
    delay: jnp.ndarray,
    fs: float,
) -> jnp.ndarray:
    """Neural activation by the recursive filter of 001:Eq.1 with a continuous delay.

    ``u_i = alpha e_{i-d} - beta1 u_{i-1} - beta2 u_{i-2}``, ``beta1 = C1 + C2``,
    ``beta2 = C1 C2``, ``alpha = 1 + beta1 + beta2`` (unit DC gain; stable for
    ``|C1|, |C2| < 1``, 002:Eq.20). As in CEINMS, the filter state is initialized at steady
    state with the first (delayed) excitation sample, so a constant input gives a constant
    output from the first sample on.

    Parameters
    ----------
    excitation : array, shape (T, M)
        Muscle excitations, normally in [0, 1].
    c1, c2 : array, shape (M,) or scalar
        Recursive coefficients at sampling rate ``fs``, in (-1, 1).
    delay : array, shape (M,) or scalar, s
        Electromechanical delay (001 fixes 35 ms).
    fs : float
        Sampling rate, Hz.

    Returns
    -------
    array, shape (T, M)
        Neural activation u.
    """
    e = delay_signal(excitation, delay, fs)
    beta1 = c1 + c2
    beta2 = c1 * c2
    alpha = 1.0 + beta1 + beta2  # 001:Eq.1
    shape = excitation.shape[1:]
    alpha, beta1, beta2 = (jnp.broadcast_to(v, shape) for v in (alpha, beta1, beta2))

    def step(carry, e_i):
        u1, u2 = carry
        u = alpha * e_i - beta1 * u1 - beta2 * u2
        return (u, u1), u

    init = (e[0], e[0])
    _, u = jax.lax.scan(step, init, e)
    return u


def activation_shape(u: jnp.ndarray, A: jnp.ndarray) -> jnp.ndarray:
    """Non-linear neural-to-muscle activation ``a = (exp(A u) - 1) / (exp(A) - 1)``.

    000:Eq.1, 001:Eq.2, with shape factor ``A`` in (-3, 0); the limit ``A -> 0`` (a = u) is
    taken smoothly.

    Parameters
    ----------
    u : array, shape (T, M) or (M,)
    A : array, shape (M,) or scalar

    Returns
    -------
    array, same shape as ``u``
    """
    A = jnp.asarray(A, dtype=jnp.result_type(u, float))
    small = jnp.abs(A) < 1e-8
    A_safe = jnp.where(small, -1e-8, A)
    a = jnp.expm1(A_safe * u) / jnp.expm1(A_safe)
    # near A = 0 the value is u; the added term is exactly zero in value and carries the
    # limit derivative da/dA = u (u - 1) / 2, so that a calibrator at the bound A = 0 still
    # sees which way the data pull the shape factor
    lim = u + (A - jax.lax.stop_gradient(A)) * 0.5 * u * (u - 1.0)
    return jnp.where(small, lim, a)


def first_order_activation(
    excitation: jnp.ndarray,
    t_act: jnp.ndarray,
    t_deact: jnp.ndarray,
    fs: float,
    a0: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """First-order activation dynamics (002:Eq.17-18).

    ``da/dt = (u - a) / t(u, a)`` with ``t = t_act (0.5 + 1.5 a)`` when ``u > a`` and
    ``t = t_deact / (0.5 + 1.5 a)`` otherwise. Integrated with the exponential (exact for
    frozen ``t``) Euler step ``a_{k+1} = u_k + (a_k - u_k) exp(-dt / t(u_k, a_k))``, which is
    unconditionally stable and keeps ``a`` between its old value and ``u``.

    Parameters
    ----------
    excitation : array, shape (T, M)
        Neural excitation u in [0, 1].
    t_act, t_deact : array, shape (M,) or scalar, s
    fs : float, Hz
    a0 : array, shape (M,), optional
        Initial activation (default: the first excitation sample).

    Returns
    -------
    array, shape (T, M)
    """
    dt = 1.0 / fs
    shape = excitation.shape[1:]
    t_act = jnp.broadcast_to(t_act, shape)
    t_deact = jnp.broadcast_to(t_deact, shape)
    a_init = excitation[0] if a0 is None else jnp.broadcast_to(a0, shape)

    def step(a, u):
        g = 0.5 + 1.5 * a
        tau = jnp.where(u > a, t_act * g, t_deact / g)  # 002:Eq.18
        a_next = u + (a - u) * jnp.exp(-dt / tau)  # 002:Eq.17
        return a_next, a

    _, a = jax.lax.scan(step, a_init, excitation)
    return a


def resample_recursive_coefficients(
    c: jnp.ndarray, fs_from: float, fs_to: float
) -> jnp.ndarray:
    """Map recursive coefficients of 001:Eq.1 from one sampling rate to another.

    The filter's poles are ``z = -C``; a pole ``z`` at ``fs_from`` corresponds to the
    same continuous-time pole ``z ** (fs_from / fs_to)`` at ``fs_to``. Requires
    ``C`` in (-1, 0) (real, positive poles: a smooth low-pass filter).

    Parameters
    ----------
    c : array, shape (M,) or scalar
    fs_from, fs_to : float, Hz

    Returns
    -------
    array, same shape as ``c``
    """
    return -((-jnp.asarray(c)) ** (fs_from / fs_to))
