"""Synthetic 5-DoF arm with superficial and deep muscles (seed 002's identification problem)."""

from plants.arm.rigid import (
    DOF_NAMES,
    ArmGeometry,
    base_parameter_map,
    bias_torques,
    constrained_terms,
    default_inertial_parameters,
    forward_dynamics,
    inverse_dynamics,
    kinetic_energy,
    mass_matrix,
    potential_energy,
    regressor,
)

__all__ = [
    "DOF_NAMES",
    "ArmGeometry",
    "base_parameter_map",
    "bias_torques",
    "constrained_terms",
    "default_inertial_parameters",
    "forward_dynamics",
    "inverse_dynamics",
    "kinetic_energy",
    "mass_matrix",
    "potential_energy",
    "regressor",
]
