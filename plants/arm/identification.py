"""The synthetic arm as an identification plant for deep-muscle least squares (Sanderink et al.).

Sanderink et al. identify the bone inertial parameters and the muscle parameters of an arm
from its motion, its EMG and known external torques, with (M2) or without (M1) deep-muscle
EMG (Sec. III-E, IV). The identifier (``estimators.calibration.deep_lsq``) never imports
``plants``: everything it needs of the arm comes in the data of one draw of
:class:`ArmIdentificationPlant` (registered as ``arm-identification``):

* the **record**: one :class:`~plants.arm.simulate.ArmPlant` simulation of ``movement``
  (EMG, joint angles, velocities and accelerations, MTU lengths, velocities and moment arms,
  the known passive and tracking torques; 002 Sec. IV-A);
* the **model** (:class:`ArmIdentificationModel`): the arm's structure as a value-hashable
  :class:`ArmDynamics` (muscle names, which muscles are identifiable without deep EMG, the
  parameter fields, the rigid-body regressors of :mod:`plants.arm.rigid`, the EMG-to-force
  chain 002:Eq.15-21), the ``n_guesses`` **initial guesses** ``N(pi_gt, (rel_std pi_gt)^2)``
  of 002:Eq.24 in the layout of :func:`plants.arm.truth.parameter_vector` (``"M2"``; M1 takes
  its entries), and starting MTU parameters (the first guess) for the calibration task's
  parameter space;
* the **truth** (in ``MuscleData.truth`` and ``CalibrationData.truth``, for scoring only):
  :func:`plants.arm.truth.ground_truth` plus ``parameters`` (names, values and muscle flags
  of the M2 vector), ``identifiable`` (the names identifiable without deep EMG, 002 Sec.
  III-D) and ``base_inertial_map`` (the identifiable combinations of the inertial
  parameters, :func:`plants.arm.truth.base_inertial_map`).

Random numbers: the simulation, then the guesses, from the draw's generator (the order of
the script-run study this replaces).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bench.base import Plant
from bench.params import Interval
from bench.types import CalibrationData, TrialWindow
from plants.arm import rigid
from plants.arm.muscles import MUSCLES, default_muscle_params
from plants.arm.simulate import ArmPlant
from plants.arm.truth import (
    IDENTIFIABLE_MUSCLES,
    MUSCLE_FIELDS,
    SHARED_FIELDS,
    base_inertial_map,
    identifiable_mask,
    parameter_vector,
    sample_initial_guess,
)
from plants.muscle import MTUParams, first_order_activation, mtu_force, neural_activation

__all__ = ["ArmDynamics", "ArmIdentificationModel", "ArmIdentificationPlant",
           "identification_truth"]

#: The 30 inertial parameter names, in the order of ``pi``.
_INERTIAL_NAMES = tuple(parameter_vector("M1")[0][:30])
_UNITS = {"m": "kg", "mcx": "kg m", "mcy": "kg m", "mcz": "kg m", "f_max": "N", "l_opt": "m",
          "v_max": "l_opt/s", "phi_opt": "rad", "l_ts": "m", "t_act": "s", "t_deact": "s",
          "c1": "1", "c2": "1", "delay": "s"}


@jax.jit
def _regressors(q: jnp.ndarray, qd: jnp.ndarray, qdd: jnp.ndarray):
    """``Y`` (S, T, 5, 30) with ``tau_ID = Y pi`` and ``dM/dpi`` (S, T, 5, 5, 30), exact (the
    inverse dynamics and the mass matrix are linear in the inertial parameters)."""
    Y = jax.vmap(jax.vmap(rigid.regressor))(q, qd, qdd)
    YM = jax.vmap(jax.vmap(lambda qt: jax.jacfwd(
        lambda p: rigid.mass_matrix(qt, p.reshape(3, 10)))(jnp.zeros(30))))(q)
    return Y, YM


@dataclass(frozen=True)
class ArmDynamics:
    """The arm's structure as deep-muscle identification needs it; equal (and hashed) by value,
    so jitted code that takes it as a static argument compiles once per rate and shape.

    Attributes
    ----------
    fs : float, Hz
        Rate of the records (``c1, c2`` of 002:Eq.19-20 apply at it).
    muscles : tuple of str
        The 16 MTUs, in the record's channel and moment-arm order.
    identifiable_muscles : tuple of str
        Superficial muscles whose parameters are identifiable without deep-muscle EMG
        (002 Sec. III-D: the nine spanning the shoulder).
    inertial_names : tuple of str
        The 30 inertial parameters (``"humerus.m"``, ...), the order of ``pi``.
    muscle_fields, shared_fields : tuple of str
        Per-muscle parameters (002 Sec. III-F order) and those shared by all muscles.
    dofs : tuple of str
    """

    fs: float
    muscles: tuple = MUSCLES
    identifiable_muscles: tuple = IDENTIFIABLE_MUSCLES
    inertial_names: tuple = _INERTIAL_NAMES
    muscle_fields: tuple = MUSCLE_FIELDS
    shared_fields: tuple = SHARED_FIELDS
    dofs: tuple = rigid.DOF_NAMES

    def regressors(self, q: Any, qd: Any, qdd: Any) -> tuple[np.ndarray, np.ndarray]:
        """Inverse-dynamics regressor and mass-matrix derivative per sample.

        Parameters
        ----------
        q, qd, qdd : array, shape (S, T, 5)
            rad, rad/s, rad/s^2.

        Returns
        -------
        Y : ndarray, shape (S, T, 5, 30)
            ``tau_ID = Y @ pi`` (Nm).
        YM : ndarray, shape (S, T, 5, 5, 30)
            ``M(q) = YM @ pi`` (kg m^2).
        """
        Y, YM = _regressors(jnp.asarray(q), jnp.asarray(qd), jnp.asarray(qdd))
        return np.asarray(Y), np.asarray(YM)

    def muscle_forces(self, params: MTUParams, emg: jnp.ndarray, lmt: jnp.ndarray,
                      vmt: jnp.ndarray) -> jnp.ndarray:
        """Forces of one trial from its EMG (JAX-traceable): 002:Eq.19-21 -> Eq.17-18 -> Eq.15.

        Parameters
        ----------
        params : MTUParams, fields (m,)
        emg : array, shape (T, m)
        lmt : array, shape (T, m), m
        vmt : array, shape (T, m), m/s

        Returns
        -------
        array, shape (T, m), N
        """
        u = neural_activation(emg, params.c1, params.c2, params.delay, self.fs)  # 002:Eq.19-21
        a = first_order_activation(u, params.t_act, params.t_deact, self.fs)  # 002:Eq.17-18
        return mtu_force(params, a, lmt, vmt, "rigid")  # 002:Eq.15

    def unit(self, name: str) -> str:
        """Unit of a parameter named as in :func:`plants.arm.truth.parameter_vector`."""
        field = name.split(".", 1)[-1]
        if field.startswith("I"):
            return "kg m^2"
        return _UNITS.get(field, "")


class ArmIdentificationModel:
    """What an arm identification calibrator receives as its ``model``.

    Parameters
    ----------
    dynamics : ArmDynamics
    initial_guesses : ndarray, shape (G, n)
        Start points in the layout ``guess_names`` (002:Eq.24).
    guess_names : sequence of str, length n
    template : MTUParams, fields (16,)
        Values of the MTU fields that are not identified (damping, shape factor).

    Attributes
    ----------
    base_params : MTUParams, fields (16,)
        The first guess's MTU parameters (non-identified fields from ``template``): the
        starting point the calibration task's parameter space is built around.
    muscles, dofs, fs, strength_groups
        As the calibration model protocol has them.
    """

    def __init__(self, dynamics: ArmDynamics, initial_guesses: np.ndarray,
                 guess_names: list[str] | tuple[str, ...], template: MTUParams) -> None:
        P0 = np.asarray(initial_guesses, dtype=float)
        names = tuple(guess_names)
        if P0.ndim != 2 or P0.shape[1] != len(names):
            raise ValueError(f"initial_guesses must have shape (G, {len(names)}); "
                             f"got {P0.shape}")
        self.dynamics = dynamics
        self.initial_guesses = P0
        self.guess_names = names
        self.fs = float(dynamics.fs)
        self.muscles = tuple(dynamics.muscles)
        self.dofs = tuple(dynamics.dofs)
        self.strength_groups = None
        idx = {n: i for i, n in enumerate(names)}
        fields = {}
        for f in MTUParams._fields:
            v = np.asarray(getattr(template, f), dtype=float).copy()
            for j, m in enumerate(self.muscles):
                key = f"{m}.{f}" if f in dynamics.muscle_fields else f"shared.{f}"
                if key in idx:
                    v[j] = P0[0, idx[key]]
            fields[f] = jnp.asarray(v)
        self.base_params = MTUParams(**fields)

    def __repr__(self) -> str:
        return (f"ArmIdentificationModel(fs={self.fs}, guesses={self.initial_guesses.shape[0]}, "
                f"parameters={len(self.guess_names)})")


def identification_truth(fs: float, base: dict | None = None) -> dict:
    """The truth an identification record carries for scoring (module docstring).

    Parameters
    ----------
    fs : float, Hz
        Rate at which ``c1, c2`` are expressed.
    base : dict, optional
        Entries to keep (the record's :func:`plants.arm.truth.ground_truth`).

    Returns
    -------
    dict
        ``base`` plus ``parameters`` (``names``, ``values``, ``is_muscle`` of the M2 vector of
        :func:`plants.arm.truth.parameter_vector`), ``identifiable`` (names) and
        ``base_inertial_map`` (nested lists, (23, 30)).
    """
    names, values, is_muscle = parameter_vector("M2", fs)
    return {
        **(base or {}),
        "parameters": {"names": list(names), "values": values.tolist(),
                       "is_muscle": is_muscle.tolist()},
        "identifiable": [n for n, ok in zip(names, identifiable_mask(names)) if ok],
        "base_inertial_map": base_inertial_map().tolist(),
    }


class ArmIdentificationPlant(Plant):
    """An arm record with initial guesses and truth for deep-muscle identification.

    Parameters
    ----------
    movement : {"reach", "flexion_pronation", "both"}
    duration : float, s
        Length of each trial (Sanderink et al. state none; 5 s chosen).
    fs : float, Hz
    substeps : int
    cocontraction, emg_noise, tracking_bandwidth : float
        Of :class:`~plants.arm.simulate.ArmPlant`.
    n_guesses : int
        Initial guesses per record (Sanderink et al. Sec. IV-C: 5).
    rel_std : float
        Relative standard deviation of the guesses (002:Eq.24: 0.1).
    """

    name: ClassVar[str] = "arm-identification"
    task: ClassVar[str] = "calibration"
    _parameter_constraints: ClassVar[dict] = {
        **ArmPlant._parameter_constraints,  # the simulation's settings
        "n_guesses": [Interval(int, 1, 1000)],
        "rel_std": [Interval(float, 0.0, 0.5)],
    }

    def __init__(
        self, *, movement: str = "reach", duration: float = 5.0, fs: float = 100.0,
        substeps: int = 10, cocontraction: float = 0.05, emg_noise: float = 0.05,
        tracking_bandwidth: float = 1.0, n_guesses: int = 5, rel_std: float = 0.1,
    ) -> None:
        self.movement = movement
        self.duration = duration
        self.fs = fs
        self.substeps = substeps
        self.cocontraction = cocontraction
        self.emg_noise = emg_noise
        self.tracking_bandwidth = tracking_bandwidth
        self.n_guesses = n_guesses
        self.rel_std = rel_std

    @staticmethod
    def channel_names() -> tuple[str, ...]:
        """The recorded EMG channels: one per MTU."""
        return tuple(MUSCLES)

    def simulate(self, rng: np.random.Generator) -> CalibrationData:
        """Simulate the record, draw the guesses (002:Eq.24) and attach the truth."""
        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
        fs = float(self.fs)
        data = ArmPlant.with_settings_of(self, self.movement).simulate(rng)
        names, gt, _ = parameter_vector("M2", fs)
        guesses = sample_initial_guess(gt, rng, float(self.rel_std),
                                       size=int(self.n_guesses))  # 002:Eq.24
        truth = identification_truth(fs, data.truth)
        data = dataclasses.replace(data, truth=truth)
        model = ArmIdentificationModel(ArmDynamics(fs), guesses, names,
                                       default_muscle_params(fs))
        S, T = np.shape(data.excitation)[:2]
        movements = data.meta.get("movements", [str(s) for s in range(S)])
        return CalibrationData(
            model=model,
            sets=(data,),
            calibration=tuple(TrialWindow(0, s, 0, T, f"{movements[s]} record")
                              for s in range(S)),
            space={"strength_groups": None},
            truth=truth,
            meta={"plant": self.name, "movements": list(movements),
                  "n_guesses": int(self.n_guesses), "rel_std": float(self.rel_std)},
        )
