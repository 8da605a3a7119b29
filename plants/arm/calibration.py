"""The synthetic arm as a calibration plant: EMG-driven model calibration with known truth.

One plant draw (:class:`ArmCalibrationPlant`, registered as ``arm-calibration``) is what
Hambly et al.'s channel-removal study (Sec. III-D) needs on the 16-MTU arm of Sanderink et
al.:

1. **Calibration trials**: one :class:`~plants.arm.simulate.ArmPlant` simulation of
   ``movement`` (``"both"``: a reaching and a flexion-pronation trial);
2. **held-out trials**: a second, independent simulation of ``held_out_movement``;
3. **model**: :meth:`plants.muscle.model.MuscleModel.from_arm` (rigid tendon, the arm's own
   activation chain, Sanderink et al. Eq.17-21) started from the ground truth with
   ``l_opt``, ``l_ts`` and ``f_max`` each multiplied by ``1 + U(-p, p)``,
   ``p = init_perturbation`` (below the +-5 % length bounds of the calibration space);
4. **truth**: the arm's per-MTU parameters (shape factor -1e-6, the identity the model
   uses for the arm, which has none).

The three parts draw from independent generators spawned from the draw's one
(``rng.spawn(3)``), so each is deterministic per seed. The arm's recorded EMG is the
noise-free EMG that drove the simulation: ``meta["true_excitation"]`` is that same EMG.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from bench.base import Plant
from bench.params import Interval, Options
from bench.types import CalibrationData, MuscleData, TrialWindow
from plants.arm.muscles import MUSCLES
from plants.arm.simulate import MOVEMENTS, ArmPlant
from plants.muscle import MTUParams, params_to_dict
from plants.muscle.joint import ACTIVATION_MODELS
from plants.muscle.model import MuscleModel
from plants.muscle.mtu import TENDON_MODELS

__all__ = ["ArmCalibrationPlant", "arm_calibration_data", "perturb_params"]


def perturb_params(params: MTUParams, p: float, rng: np.random.Generator) -> MTUParams:
    """``params`` with ``l_opt``, ``l_ts`` and ``f_max`` each times ``1 + U(-p, p)``.

    Parameters
    ----------
    params : MTUParams, fields (M,)
    p : float
        Relative half-width, e.g. 0.03 for +-3 %.
    rng : numpy.random.Generator
        Draws M values for each of the three fields, in that order.
    """
    def f(v: Any) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return v * (1.0 + p * rng.uniform(-1.0, 1.0, v.shape))

    return params._replace(l_opt=f(params.l_opt), l_ts=f(params.l_ts), f_max=f(params.f_max))


def _with_true_excitation(data: MuscleData) -> MuscleData:
    return dataclasses.replace(data, meta={**data.meta,
                                           "true_excitation": np.asarray(data.excitation)})


def arm_calibration_data(
    calibration: MuscleData, held_out: MuscleData, init_perturbation: float,
    rng: np.random.Generator, *, tendon: str = "rigid",
    activation_model: str = "recursive_first_order",
) -> CalibrationData:
    """The calibration unit of two arm simulations (module docstring, steps 3-4).

    Parameters
    ----------
    calibration, held_out : MuscleData
        From :class:`~plants.arm.simulate.ArmPlant` at one rate; every trial of
        ``calibration`` is a calibration window, every trial of ``held_out`` a held-out one.
    init_perturbation : float
        Relative half-width of the initial-guess perturbation.
    rng : numpy.random.Generator
        Draws the perturbation (:func:`perturb_params`).
    tendon, activation_model
        Of the calibrated :class:`~plants.muscle.model.MuscleModel`.

    Returns
    -------
    CalibrationData
    """
    fs = float(calibration.fs)
    truth = MuscleModel.from_arm(fs, tendon=tendon, activation_model=activation_model)
    start = perturb_params(truth.base_params, float(init_perturbation), rng)
    model = MuscleModel.from_arm(fs, params=start, tendon=tendon,
                                 activation_model=activation_model)
    sets = (_with_true_excitation(calibration), _with_true_excitation(held_out))

    def windows(k: int, d: MuscleData, what: str) -> tuple[TrialWindow, ...]:
        S, T = np.shape(d.excitation)[:2]
        mv = d.meta.get("movements") or [str(s) for s in range(S)]
        return tuple(TrialWindow(k, s, 0, T, f"{what} {mv[s]}") for s in range(S))

    return CalibrationData(
        model=model,
        sets=sets,
        calibration=windows(0, sets[0], "calibration"),
        held_out=windows(1, sets[1], "held-out"),
        space={"strength_groups": model.strength_groups},
        truth=params_to_dict(truth.base_params),
        meta={"plant": ArmCalibrationPlant.name,
              "init_perturbation": float(init_perturbation),
              "initial_params": params_to_dict(start)},
    )


class ArmCalibrationPlant(Plant):
    """Calibration and held-out arm simulations with a perturbed starting model.

    Parameters
    ----------
    movement : {"reach", "flexion_pronation", "both"}
        Movement(s) of the calibration simulation (``"both"``: two trials).
    held_out_movement : {"reach", "flexion_pronation", "both"}
        Movement(s) of the held-out simulation.
    duration : float, s
        Length of each trial.
    fs : float, Hz
    substeps : int
    cocontraction, emg_noise, tracking_bandwidth : float
        Of :class:`~plants.arm.simulate.ArmPlant` (both simulations).
    init_perturbation : float
        Relative half-width of the starting model's ``l_opt``, ``l_ts`` and ``f_max``
        perturbation, in [0, 0.05) (inside the +-5 % length bounds).
    model_tendon : {"rigid", "equilibrium", "rosenbrock"}
    activation_model : {"recursive", "first_order", "recursive_first_order"}
        Of the calibrated model (default: the arm's own chain).
    """

    name: ClassVar[str] = "arm-calibration"
    task: ClassVar[str] = "calibration"
    _parameter_constraints: ClassVar[dict] = {
        **ArmPlant._parameter_constraints,  # the simulation's settings
        "held_out_movement": [Options((*MOVEMENTS, "both"))],
        "init_perturbation": [Interval(float, 0.0, 0.05, closed="left")],
        "model_tendon": [Options(TENDON_MODELS)],
        "activation_model": [Options(ACTIVATION_MODELS)],
    }

    def __init__(
        self, *, movement: str = "both", held_out_movement: str = "both",
        duration: float = 10.0, fs: float = 100.0, substeps: int = 10,
        cocontraction: float = 0.05, emg_noise: float = 0.05, tracking_bandwidth: float = 1.0,
        init_perturbation: float = 0.03, model_tendon: str = "rigid",
        activation_model: str = "recursive_first_order",
    ) -> None:
        self.movement = movement
        self.held_out_movement = held_out_movement
        self.duration = duration
        self.fs = fs
        self.substeps = substeps
        self.cocontraction = cocontraction
        self.emg_noise = emg_noise
        self.tracking_bandwidth = tracking_bandwidth
        self.init_perturbation = init_perturbation
        self.model_tendon = model_tendon
        self.activation_model = activation_model

    @staticmethod
    def channel_names() -> tuple[str, ...]:
        """The recorded EMG channels: one per MTU."""
        return tuple(MUSCLES)

    def simulate(self, rng: np.random.Generator) -> CalibrationData:
        """Simulate both sets and build the starting model (module docstring)."""
        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
        cal_rng, held_rng, init_rng = rng.spawn(3)
        cal = ArmPlant.with_settings_of(self, self.movement).simulate(cal_rng)
        held = ArmPlant.with_settings_of(self, self.held_out_movement).simulate(held_rng)
        return arm_calibration_data(cal, held, float(self.init_perturbation), init_rng,
                                    tendon=self.model_tendon,
                                    activation_model=self.activation_model)
