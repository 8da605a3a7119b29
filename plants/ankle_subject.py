"""Synthetic subjects for EMG-driven ankle calibration with known truth (a calibration plant).

One plant draw is one synthetic subject (the torque-stiffness EMG model study's protocol,
Sec. 2.2-2.6, with the subject's parameters known):

1. **Subject.** True MTU parameters drawn around the generic ankle parameters
   (:func:`plants.ankle.default_ankle_params`): optimal fibre length and tendon slack length
   scaled by ``1 + U(-w, w)`` (``w`` below the +-5 % calibration bounds), one strength
   coefficient per strength group ``U(lo, hi)`` (inside (0.3, 2.5)), shape factor generic
   ``+ U(-s, s)`` clipped to (-2.9, -0.1). The calibrated model starts from the generic
   parameters, as the study started from the scaled generic model.
2. **Trials** (:class:`plants.ankle.AnklePlant` with the subject's parameters): two perturbed
   trials (PRBS) of ``n_cycles`` task cycles and, with ``unperturbed``, one unperturbed
   trial. Calibration window: cycle ``calibration_cycle`` of the first perturbed trial (the
   study's "1.6 s calibrate"); held out: the whole second perturbed trial (~100 s for 60
   cycles), scored per task cycle with the first cycle left out (filter transients); extra
   window ``unperturbed``: the unperturbed trial (the third test).
3. **Truth**: the subject's per-MTU parameters and the true joint stiffness K_J(t) in the
   trials' ``stiffness`` (``stiffness_is_true``); the calibration task may replace it by an
   SDS estimate (``stiffness_reference: sds``), as the study did.

Other protocols (defaults: the study's): ``subject="generic"`` simulates the generic ankle
itself (the truth is the model's starting point; no random numbers are drawn for the
subject), ``perturbed=False`` records the two trials without perturbation,
``calibration_cycles`` widens the calibration window to that many cycles, and
``score_per_cycle=False`` scores each held-out window as one segment. Hambly et al.'s
channel-removal study (Sec. III-D) on the generic ankle is ``subject="generic",
perturbed=False, unperturbed=False, n_cycles=2, calibration_cycle=0,
calibration_cycles=2, score_per_cycle=False``: calibration on the whole first trial, held
out the whole second one.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from bench.base import Plant
from bench.errors import InvalidParameterError
from bench.params import ArrayLike, Interval, Options
from bench.types import CalibrationData, TrialWindow
from plants.ankle import CHANNELS, MUSCLES, AnklePlant, default_ankle_params
from plants.muscle import MTUParams, params_to_dict
from plants.muscle.model import ANKLE_STRENGTH_GROUPS, MuscleModel

__all__ = ["AnkleSubjectPlant", "draw_subject"]


def draw_subject(rng: np.random.Generator, *, fs: float = 128.0, l_opt: float = 0.04,
                 l_ts: float = 0.04, strength: tuple[float, float] = (0.7, 1.4),
                 shape: float = 0.5) -> tuple[MTUParams, np.ndarray]:
    """True parameters of one subject around the generic ankle (module docstring, step 1).

    Returns
    -------
    params : MTUParams
        With ``c1, c2`` at ``fs``.
    strength : ndarray, shape (7,)
        True / generic maximum isometric force per MTU (equal within a strength group).
    """
    muscles = list(MUSCLES)
    M = len(muscles)
    g = default_ankle_params(fs)
    s_l_opt = 1.0 + rng.uniform(-l_opt, l_opt, M)
    s_l_ts = 1.0 + rng.uniform(-l_ts, l_ts, M)
    st = np.empty(M)
    grouped = {m for mem in ANKLE_STRENGTH_GROUPS.values() for m in mem}
    for mem in ANKLE_STRENGTH_GROUPS.values():
        st[[muscles.index(m) for m in mem]] = rng.uniform(*strength)
    for j, m in enumerate(muscles):
        if m not in grouped:
            st[j] = rng.uniform(*strength)
    sh = np.clip(np.asarray(g.shape) + rng.uniform(-shape, shape, M), -2.9, -0.1)
    params = g._replace(l_opt=g.l_opt * s_l_opt, l_ts=g.l_ts * s_l_ts, f_max=g.f_max * st,
                        shape=jnp.asarray(sh))
    return params, st


class AnkleSubjectPlant(Plant):
    """One synthetic ankle subject per draw: calibration and held-out trials with truth.

    Parameters
    ----------
    n_cycles : int
        Task cycles per trial (the study blind-tests on ~60 cycles = 100 s).
    calibration_cycle : int
        Which cycle of the first perturbed trial is calibrated on (0-based).
    unperturbed : bool
        Also simulate an unperturbed trial (the third test).
    tendon : {"rosenbrock", "equilibrium", "rigid"}
        Tendon model of the ground truth.
    model_tendon : {"rigid", "equilibrium", "rosenbrock"}
        Tendon model of the calibrated model.
    activation_model : {"recursive", "first_order"}
        Activation model of the calibrated model.
    fs_out : float, Hz
        Rate of the data.
    l_opt_spread, l_ts_spread : float
        Relative half-width of the subjects' fibre and tendon slack lengths around generic.
    strength_range : (float, float)
        Range of the subjects' strength coefficients.
    shape_spread : float
        Half-width of the subjects' activation shape factors around generic.
    subject : {"drawn", "generic"}
        Draw a subject around the generic parameters (the study) or simulate the generic
        ankle itself.
    perturbed : bool
        Perturb the two trials (PRBS); with False they are unperturbed and ``unperturbed``
        must be False.
    calibration_cycles : int
        Cycles of the calibration window, from ``calibration_cycle`` on.
    score_per_cycle : bool
        Score the held-out trial per task cycle, the first left out (the study); False:
        the whole trial as one segment.
    """

    name = "ankle-subject"
    task = "calibration"
    _parameter_constraints = {
        "n_cycles": [Interval(int, 2, 600)],
        "calibration_cycle": [Interval(int, 0, 599)],
        "unperturbed": [bool],
        "tendon": [Options(("rosenbrock", "equilibrium", "rigid"))],
        "model_tendon": [Options(("rigid", "equilibrium", "rosenbrock"))],
        "activation_model": [Options(("recursive", "first_order"))],
        "fs_out": [Interval(float, 16, 1024)],
        "l_opt_spread": [Interval(float, 0, 0.05, closed="left")],
        "l_ts_spread": [Interval(float, 0, 0.05, closed="left")],
        "strength_range": [ArrayLike()],
        "shape_spread": [Interval(float, 0, 1.5)],
        "subject": [Options(("drawn", "generic"))],
        "perturbed": [bool],
        "calibration_cycles": [Interval(int, 1, 600)],
        "score_per_cycle": [bool],
    }

    def __init__(
        self, *, n_cycles: int = 60, calibration_cycle: int = 1, unperturbed: bool = True,
        tendon: str = "rosenbrock", model_tendon: str = "rigid",
        activation_model: str = "recursive", fs_out: float = 128.0,
        l_opt_spread: float = 0.04, l_ts_spread: float = 0.04,
        strength_range: tuple[float, float] = (0.7, 1.4), shape_spread: float = 0.5,
        subject: str = "drawn", perturbed: bool = True, calibration_cycles: int = 1,
        score_per_cycle: bool = True,
    ) -> None:
        self.n_cycles = n_cycles
        self.calibration_cycle = calibration_cycle
        self.unperturbed = unperturbed
        self.tendon = tendon
        self.model_tendon = model_tendon
        self.activation_model = activation_model
        self.fs_out = fs_out
        self.l_opt_spread = l_opt_spread
        self.l_ts_spread = l_ts_spread
        self.strength_range = strength_range
        self.shape_spread = shape_spread
        self.subject = subject
        self.perturbed = perturbed
        self.calibration_cycles = calibration_cycles
        self.score_per_cycle = score_per_cycle

    @staticmethod
    def channel_names() -> tuple[str, ...]:
        """The recorded EMG channels (the calibration task checks channel settings on them)."""
        return tuple(CHANNELS)

    def _validate(self) -> None:
        super()._validate()
        rng_ = np.asarray(self.strength_range, dtype=float)
        if rng_.shape != (2,) or not 0.3 < rng_[0] <= rng_[1] < 2.5:
            raise InvalidParameterError(
                "strength_range must be [low, high] with 0.3 < low <= high < 2.5 (the "
                f"calibration bounds); got {list(self.strength_range)}")
        if self.calibration_cycle + self.calibration_cycles > self.n_cycles:
            raise InvalidParameterError(
                f"calibration_cycle {self.calibration_cycle} + calibration_cycles "
                f"{self.calibration_cycles} exceeds n_cycles {self.n_cycles}")
        if self.unperturbed and not self.perturbed:
            raise InvalidParameterError(
                "unperturbed=True adds an unperturbed trial to perturbed ones (the third "
                "test); with perturbed=False set unperturbed=False")
        AnklePlant(fs_out=float(self.fs_out))._validate()

    def simulate(self, rng: np.random.Generator) -> CalibrationData:
        """Draw one subject and simulate its trials (see the module docstring)."""
        self._validate()
        fs = float(self.fs_out)
        if self.subject == "drawn":
            params, strength = draw_subject(
                rng, fs=fs, l_opt=self.l_opt_spread, l_ts=self.l_ts_spread,
                strength=tuple(float(v) for v in self.strength_range), shape=self.shape_spread)
        else:
            params, strength = default_ankle_params(fs), np.ones(len(MUSCLES))
        kw: dict[str, Any] = {"n_cycles": self.n_cycles, "tendon": self.tendon, "fs_out": fs}
        pert = AnklePlant(**kw, n_trials=2, perturbed=self.perturbed).simulate_with(rng, params)
        sets = [pert]
        n = int(pert.meta["samples_per_cycle"])
        T = self.n_cycles * n
        extra = {}
        if self.unperturbed:
            sets.append(AnklePlant(**kw, n_trials=1, perturbed=False).simulate_with(rng, params))
            extra["unperturbed"] = (TrialWindow(1, 0, 0, T, "unperturbed trial"),)
        c, k = self.calibration_cycle, self.calibration_cycles
        kind = "perturbed" if self.perturbed else "unperturbed"
        cycles = f"cycle {c + 1}" if k == 1 else f"cycles {c + 1}-{c + k}"
        model = MuscleModel.from_ankle(fs, tendon=self.model_tendon,
                                       activation_model=self.activation_model)
        truth = {k: np.asarray(v, dtype=float).tolist()
                 for k, v in params_to_dict(params).items()}
        return CalibrationData(
            model=model,
            sets=tuple(sets),
            calibration=(TrialWindow(0, 0, c * n, (c + k) * n, f"{kind} trial 1, {cycles}"),),
            held_out=(TrialWindow(0, 1, 0, T, f"{kind} trial 2"),),
            extra=extra,
            space={"strength_groups": dict(model.strength_groups or ANKLE_STRENGTH_GROUPS)},
            truth=truth,
            segment=n if self.score_per_cycle else None,
            skip_segments=1 if self.score_per_cycle else 0,
            stiffness_is_true=True,
            meta={"plant": "ankle-subject", "strength": strength.tolist(),
                  "period": float(pert.meta["period"]), "samples_per_cycle": n},
        )
