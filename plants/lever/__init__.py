"""Variable-stiffness lever rig (004 Sec. IV, App. B): physics, rig files, mapping, plant.

Public API
----------
Rig files (:mod:`plants.lever.rig`)
    ``load_rig(path | mapping | None) -> Rig`` (frozen pydantic model; ``Rig.ideal(effects)``
    zeroes non-idealities), ``RigFileError`` (``FILE:LINE: field: message``),
    ``default_rig_path()``, ``NONIDEAL_EFFECTS``.
Stepping (:mod:`plants.lever.physics`, for the virtual rig ``hil/virtual.py``)
    ``LeverRig(rig)``: ``reset(rng, pivot0) -> SensorReadings``,
    ``step(dt, motor_command, actuator_command) -> SensorReadings`` (duty in [-1, 1],
    actuator set-point in m), ``state`` (``RigState``, true physics), ``t``.
    ``PivotPID(rig.controller)``: ``reset(measurement)``, ``update(setpoint, measurement) -> pwm``
    (integer counts, run at ``controller.rate`` Hz; duty = ``pwm / pwm_max``).
    ``counts_from_position(pivot, rig)``: set-point in potentiometer counts.
Batch (:mod:`plants.lever.physics`)
    ``simulate_record(rig, actuator_command, pivot_reference, rng, pivot0=None,
    backend="jax") -> Record``: the same equations in a compiled ``jax.lax.scan``.
Mapping (:mod:`plants.lever.mapping`, 004 App. B)
    ``true_stiffness_mapping(rig, perturbation) -> StiffnessMapping``,
    ``mapping_figure(rig, {"fgwn": m1, "prbs": m2}) -> Figure``, ``perturbation_command``,
    ``theoretical_stiffness(pivot, rig)`` (004:Eq.34).
Plant (:mod:`plants.lever.plant`)
    ``LeverPlant(**params).simulate(rng) -> Realizations`` (registry name ``lever``),
    ``pivot_trajectory``, ``SCHEDULES``, ``cached_mapping``.
"""

from plants.lever.mapping import (
    PERTURBATIONS,
    StiffnessMapping,
    mapping_figure,
    perturbation_command,
    true_stiffness_mapping,
)
from plants.lever.physics import (
    LeverRig,
    PivotPID,
    Record,
    RigState,
    SensorReadings,
    counts_from_position,
    simulate_record,
    theoretical_stiffness,
)
from plants.lever.plant import SCHEDULES, LeverPlant, cached_mapping, pivot_trajectory
from plants.lever.rig import NONIDEAL_EFFECTS, Rig, RigFileError, default_rig_path, load_rig

__all__ = [
    "NONIDEAL_EFFECTS",
    "PERTURBATIONS",
    "SCHEDULES",
    "LeverPlant",
    "LeverRig",
    "PivotPID",
    "Record",
    "Rig",
    "RigFileError",
    "RigState",
    "SensorReadings",
    "StiffnessMapping",
    "cached_mapping",
    "counts_from_position",
    "default_rig_path",
    "load_rig",
    "mapping_figure",
    "perturbation_command",
    "pivot_trajectory",
    "simulate_record",
    "theoretical_stiffness",
    "true_stiffness_mapping",
]
