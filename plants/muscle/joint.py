"""Joint torque (000:Eq.6), joint stiffness (000:Eq.7) and the EMG-to-torque forward model."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bench.errors import InvalidParameterError
from plants.muscle.activation import (
    activation_shape,
    delay_signal,
    first_order_activation,
    neural_activation,
)
from plants.muscle.mtu import MTUState, mtu_trajectory
from plants.muscle.params import MTUParams

__all__ = [
    "ACTIVATION_MODELS",
    "SimulationResult",
    "joint_stiffness",
    "joint_torque",
    "muscle_activation",
    "simulate_torque",
    "simulate_torque_jit",
]

ACTIVATION_MODELS = ("recursive", "first_order", "recursive_first_order")


class SimulationResult(NamedTuple):
    """Output of :func:`simulate_torque`.

    Attributes
    ----------
    torque : array, shape (T,) or (T, D), Nm
    stiffness : array, shape (T,) or (T, D), Nm/rad (NaN-free; zeros of the ``dr/dtheta``
        term when ``dmoment_arm`` is not given)
    activation : array, shape (T, M)
    mtu : MTUState, fields (T, M)
    """

    torque: jnp.ndarray
    stiffness: jnp.ndarray
    activation: jnp.ndarray
    mtu: MTUState


def joint_torque(force: jnp.ndarray, moment_arm: jnp.ndarray) -> jnp.ndarray:
    """Joint torque ``tau = sum_i F_i r_i`` (Nm), 000:Eq.6.

    Parameters
    ----------
    force : array, shape (..., M), N
    moment_arm : array, shape (..., M) or (..., M, D), m

    Returns
    -------
    array, shape (...) or (..., D)
    """
    if moment_arm.ndim == force.ndim:
        return jnp.sum(force * moment_arm, axis=-1)
    return jnp.einsum("...m,...md->...d", force, moment_arm)


def joint_stiffness(
    k_mtu: jnp.ndarray, force: jnp.ndarray, moment_arm: jnp.ndarray, dmoment_arm: jnp.ndarray
) -> jnp.ndarray:
    """Joint stiffness ``K_J = sum_i (K_i r_i^2 - dr_i/dtheta F_i)`` (Nm/rad), 000:Eq.7.

    With ``r = -dL_mt/dtheta`` this equals ``-dtau/dtheta`` at fixed activation.

    Parameters
    ----------
    k_mtu : array, shape (..., M), N/m
    force : array, shape (..., M), N
    moment_arm, dmoment_arm : arrays, shape (..., M) or (..., M, D), m and m/rad
        Moment arms and their derivative with respect to the joint angle (diagonal terms
        per DoF).
    """
    if moment_arm.ndim == force.ndim:
        return jnp.sum(k_mtu * moment_arm**2 - dmoment_arm * force, axis=-1)  # 000:Eq.7
    return jnp.einsum("...m,...md->...d", k_mtu, moment_arm**2) - jnp.einsum(
        "...m,...md->...d", force, dmoment_arm
    )


def muscle_activation(
    params: MTUParams, excitation: jnp.ndarray, fs: float, model: str = "recursive"
) -> jnp.ndarray:
    """Activation from muscle excitation, shape (T, M) -> (T, M).

    ``"recursive"``: 001:Eq.1 filter with continuous delay (002:Eq.21), then the shape factor
    (000:Eq.1). ``"first_order"``: 002:Eq.17-18 on the delayed excitation, then the shape factor.
    ``"recursive_first_order"``: the chain of 002 (and of :mod:`plants.arm`): the recursive
    filter with continuous delay (002:Eq.19-21) gives the neural excitation, which drives
    002:Eq.17-18, then the shape factor (the identity for ``A -> 0``).
    """
    if model == "recursive":
        u = neural_activation(excitation, params.c1, params.c2, params.delay, fs)
    elif model == "first_order":
        u = first_order_activation(
            delay_signal(excitation, params.delay, fs), params.t_act, params.t_deact, fs
        )
    elif model == "recursive_first_order":
        u = neural_activation(excitation, params.c1, params.c2, params.delay, fs)  # 002:Eq.19-21
        u = first_order_activation(u, params.t_act, params.t_deact, fs)  # 002:Eq.17-18
    else:
        raise InvalidParameterError(
            f"The 'activation_model' parameter must be one of {ACTIVATION_MODELS}. "
            f"Got {model!r} instead."
        )
    return activation_shape(u, params.shape)


def simulate_torque(
    params: MTUParams,
    excitation: jnp.ndarray,
    lmt: jnp.ndarray,
    moment_arm: jnp.ndarray,
    fs: float,
    dmoment_arm: jnp.ndarray | None = None,
    emg_map: jnp.ndarray | None = None,
    tendon: str = "rigid",
    activation_model: str = "recursive",
    unroll: int = 1,
) -> SimulationResult:
    """EMG-driven forward model: excitation -> activation -> MTU force -> joint torque/stiffness.

    Pure and differentiable in ``params``, ``excitation``, ``lmt`` and the moment arms. For
    several trials use ``jax.vmap`` over the leading axis of the arrays; for speed use
    :data:`simulate_torque_jit` (``fs``, ``tendon``, ``activation_model``, ``unroll`` static).

    Parameters
    ----------
    params : MTUParams, fields (M,)
    excitation : array, shape (T, M_emg)
        Processed EMG excitations in [0, 1].
    lmt : array, shape (T, M), m
    moment_arm : array, shape (T, M) or (T, M, D), m
    fs : float, Hz
    dmoment_arm : array, same shape as ``moment_arm``, m/rad, optional
        ``dr/dtheta`` for the joint stiffness (000:Eq.7); zero if omitted.
    emg_map : array, shape (M, M_emg), optional
        Channel-to-MTU map (e.g. one EMG driving two MTUs); identity if omitted.
    tendon : {"rigid", "equilibrium", "rosenbrock"}
    activation_model : {"recursive", "first_order", "recursive_first_order"}
    unroll : int
        ``lax.scan`` unroll for the Rosenbrock tendon.

    Returns
    -------
    SimulationResult
    """
    e = excitation if emg_map is None else excitation @ jnp.asarray(emg_map).T
    if e.shape != lmt.shape:
        raise InvalidParameterError(
            f"excitation mapped to MTUs has shape {e.shape}; lmt has {lmt.shape}: they must match."
        )
    a = muscle_activation(params, e, fs, activation_model)
    st = mtu_trajectory(params, a, lmt, fs, tendon=tendon, unroll=unroll)
    torque = joint_torque(st.force, moment_arm)
    dr = jnp.zeros_like(moment_arm) if dmoment_arm is None else dmoment_arm
    stiff = joint_stiffness(st.stiffness, st.force, moment_arm, dr)
    return SimulationResult(torque=torque, stiffness=stiff, activation=a, mtu=st)


simulate_torque_jit = jax.jit(
    simulate_torque, static_argnames=("fs", "tendon", "activation_model", "unroll")
)
