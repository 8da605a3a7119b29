"""Differentiable Hill-type muscle-tendon model in JAX (000, 001, 002).

Importing this package switches JAX to float64 (``jax.config.update("jax_enable_x64",
True)``): the stiffness identities and the implicit-gradient equilibrium solver need double
precision. Every function is pure, jit-able, vmap-able over muscles and trials, and
differentiable with respect to the :class:`MTUParams` pytree.

Modules: :mod:`~plants.muscle.curves` (De Groote 2016 curves), :mod:`~plants.muscle.activation`
(001:Eq.1-2, 002:Eq.17-21), :mod:`~plants.muscle.fiber` (pennation, 000:Eq.4-5),
:mod:`~plants.muscle.tendon` (rigid, equilibrium, Rosenbrock 001:App.A),
:mod:`~plants.muscle.mtu` (000:Eq.2-3), :mod:`~plants.muscle.joint` (000:Eq.6-7).
"""

import jax

jax.config.update("jax_enable_x64", True)

from plants.muscle.activation import (  # noqa: E402
    activation_shape,
    delay_signal,
    first_order_activation,
    neural_activation,
    resample_recursive_coefficients,
)
from plants.muscle.fiber import (  # noqa: E402
    fiber_force,
    fiber_stiffness_along_tendon,
    pennation,
    tendon_force,
    tendon_stiffness,
)
from plants.muscle.joint import (  # noqa: E402
    SimulationResult,
    joint_stiffness,
    joint_torque,
    muscle_activation,
    simulate_torque,
    simulate_torque_jit,
)
from plants.muscle.mtu import (  # noqa: E402
    TENDON_MODELS,
    MTUState,
    fiber_state,
    mtu_force,
    mtu_stiffness,
    mtu_trajectory,
)
from plants.muscle.params import MTUParams, make_params, params_to_dict  # noqa: E402
from plants.muscle.tendon import (  # noqa: E402
    equilibrium_fiber_length,
    rigid_fiber_length,
    rosenbrock_fiber_trajectory,
)

__all__ = [
    "TENDON_MODELS",
    "MTUParams",
    "MTUState",
    "SimulationResult",
    "activation_shape",
    "delay_signal",
    "equilibrium_fiber_length",
    "fiber_force",
    "fiber_state",
    "fiber_stiffness_along_tendon",
    "first_order_activation",
    "joint_stiffness",
    "joint_torque",
    "make_params",
    "mtu_force",
    "mtu_stiffness",
    "mtu_trajectory",
    "muscle_activation",
    "neural_activation",
    "params_to_dict",
    "pennation",
    "resample_recursive_coefficients",
    "rigid_fiber_length",
    "rosenbrock_fiber_trajectory",
    "simulate_torque",
    "simulate_torque_jit",
    "tendon_force",
    "tendon_stiffness",
]
