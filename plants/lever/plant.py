"""``LeverPlant``: the variable-stiffness lever experiment as a bench plant (004 Sec. IV).

One experiment = the rig perturbed by FGWN or PRBS at 2500 Hz while the firmware PID moves
the pivot along a periodic trajectory; the record is decimated to 100 Hz (004 Sec. IV-B) and cut
into realizations of one pivot period. The scheduling variable is the measured pivot position
and the true stiffness is the App. B mapping of the experiment's perturbation evaluated at it
(:mod:`plants.lever.mapping`), exactly as the thesis scored its methods.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, ClassVar

import numpy as np

from bench.base import Plant
from bench.errors import InvalidParameterError
from bench.params import ArrayLike, Interval, Options
from bench.signals import decimate
from bench.types import GroundTruth, Realizations
from plants.lever.mapping import (
    PERTURBATIONS,
    StiffnessMapping,
    mapping_figure,
    perturbation_command,
    true_stiffness_mapping,
)
from plants.lever.physics import simulate_record, theoretical_stiffness
from plants.lever.rig import NONIDEAL_EFFECTS, Rig, load_rig

__all__ = ["SCHEDULES", "LeverPlant", "cached_mapping", "pivot_trajectory"]

#: The thesis's time variations (004 Table IV): name -> (shape, frequency in Hz).
SCHEDULES = {
    "square_0.5": ("square", 0.5),
    "sine_0.5": ("sine", 0.5),
    "sine_1": ("sine", 1.0),
    "sine_2": ("sine", 2.0),
}


class _EffectList:
    """Constraint: a list/tuple of non-ideality names."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(v in NONIDEAL_EFFECTS for v in value)

    def __str__(self) -> str:
        return "a list of names from {" + ", ".join(NONIDEAL_EFFECTS) + "}"


def pivot_trajectory(
    t: np.ndarray,
    shape: str,
    freq: float,
    amplitude: float = 0.0,
    center: float = 0.0,
    profile: Any = None,
) -> np.ndarray:
    """Pivot reference trajectory (004 Table IV: square / sine time variations).

    Parameters
    ----------
    t : ndarray, s
        Time; phase 0 at ``t = 0``.
    shape : {"square", "sine", "custom"}
        ``square``: ``center + amplitude`` for the first half period, ``center - amplitude``
        for the second; ``sine``: ``center + amplitude sin(2 pi f t)``; ``custom``: ``profile``
        (one period of absolute positions, m) repeated, linearly interpolated.
    freq : float, Hz
    amplitude, center : float, m
    profile : array-like, shape (M,), m, optional

    Returns
    -------
    ndarray, shape of ``t``, m
    """
    t = np.asarray(t, dtype=float)
    phase = np.mod(t * freq, 1.0)
    if shape == "square":
        return center + amplitude * np.where(phase < 0.5, 1.0, -1.0)
    if shape == "sine":
        return center + amplitude * np.sin(2.0 * np.pi * freq * t)
    if shape == "custom":
        prof = np.asarray(profile, dtype=float)
        m = prof.size
        return np.interp(phase * m, np.arange(m + 1), np.append(prof, prof[0]))
    raise InvalidParameterError(
        f"The 'pivot_shape' must be one of {{'square', 'sine', 'custom'}}. Got {shape!r} instead."
    )


@functools.lru_cache(maxsize=8)
def _mapping_cached(rig_json: str, perturbation: str) -> StiffnessMapping:
    return true_stiffness_mapping(Rig.model_validate_json(rig_json), perturbation)


def cached_mapping(rig: Rig, perturbation: str) -> StiffnessMapping:
    """The App. B mapping of ``rig`` for ``perturbation``, computed once per process.

    It uses the rig file's fixed ``mapping.seed``, so it is the same for every experiment seed.
    """
    return _mapping_cached(rig.model_dump_json(), perturbation)


class LeverPlant(Plant):
    """Variable-stiffness lever device experiment (004 Sec. IV, Table IV).

    Parameters
    ----------
    rig : str or Rig or None
        Rig file path (None: the shipped ``plants/rigs/default.yaml``).
    perturbation : {"fgwn", "prbs"}
        FGWN std 2 mm or PRBS 0/5 mm, 147 ms (rig file ``perturbation`` section).
    duration : float, s
        Experimental time used for identification (Table IV: 24, 50, 100, 200, 400).
    schedule : {"square_0.5", "sine_0.5", "sine_1", "sine_2"} or None
        Time variation of Table IV; None to give ``pivot_shape``/``pivot_freq`` instead.
    pivot_shape : {"square", "sine", "custom"} or None
    pivot_freq : float or None, Hz
    pivot_amplitude : float, m
        Amplitude of the pivot trajectory (the thesis kept it equal for all experiments but
        does not report it; default 20 mm).
    pivot_center : float or None, m
        Centre of the trajectory; None = middle of the pivot travel.
    pivot_profile : array-like or None, m
        One period of absolute pivot positions for ``pivot_shape="custom"``.
    nonideal : bool
        False removes every non-ideality of the rig (then the mapping equals 004:Eq.34).
    disable : list of str or None
        Non-idealities to remove individually (``plants.lever.rig.NONIDEAL_EFFECTS``).
    truth : {"mapped", "theory"}
        ``mapped``: the App. B mapping of this perturbation at the measured pivot position
        (the thesis's reference); ``theory``: 004:Eq.34 at the true pivot position.
    settle : float, s
        Lead-in simulated and discarded before the experiment (rounded up to whole periods).
    drift : float
        Relative change of the spring rate K2 between the mapping trials and the experiment
        (0: none). The thesis attributes part of its errors to the device changing between
        the time-varying runs and the later mapping trials (004 Sec. V-C, "a bolt loosened").
    jitter_period : float
        Pivot-schedule period scatter (time warping), relative s.d. (0.05 = 5 %): pivot cycle
        ``k`` lasts ``period * (1 + jitter_period z_k)`` (factor clipped to [0.5, 1.5]), so
        the schedule drifts out of line with the nominal cut as self-paced human repetitions
        do (004 Sec. VI-F). Applied before ``jitter_shift``.
    jitter_shift : float, s
        S.d. of a per-realization time shift of the pivot schedule (realization ``r`` follows
        the schedule delayed by ``jitter_shift z_r``).
    jitter_amplitude : float
        Relative s.d. of a per-realization amplitude scale of the pivot excursion about the
        centre (factor ``1 + jitter_amplitude z_r`` clipped to [0, 2]).

    With any jitter the commanded pivot reference is clipped to the rig's pivot travel. The
    jitter draws come from a child stream spawned from the experiment's generator
    (``rng.spawn``), always of the same size, so the perturbation and sensor noise do not
    change with the jitter levels and every level sees the same standard-normal draws.

    Notes
    -----
    ``simulate(rng)`` returns :class:`bench.types.Realizations` at 100 Hz: ``u`` the measured
    actuator position (m), ``y`` the load-cell force (N), ``schedule`` the measured pivot
    position (m), ``truth.K`` the true stiffness (N/m) averaged over realizations and
    ``truth.K_r`` per realization (with jitter the realizations' K(t) differ; ``K`` is then
    the ensemble mean). ``meta["jitter"]`` holds the per-realization draws.
    """

    name: ClassVar[str] = "lever"
    _parameter_constraints: ClassVar[dict] = {
        "rig": [str, Rig, None],
        "perturbation": [Options(("fgwn", "prbs"))],
        "duration": [Interval(float, 0, 3600, closed="right")],
        "schedule": [Options(tuple(SCHEDULES)), None],
        "pivot_shape": [Options(("square", "sine", "custom")), None],
        "pivot_freq": [Interval(float, 0, 50, closed="right"), None],
        "pivot_amplitude": [Interval(float, 0, 1, closed="left")],
        "pivot_center": [Interval(float, 0, None, closed="neither"), None],
        "pivot_profile": [ArrayLike(), None],
        "nonideal": [bool],
        "disable": [_EffectList(), None],
        "truth": [Options(("mapped", "theory"))],
        "settle": [Interval(float, 0, 60, closed="both")],
        "drift": [Interval(float, -0.5, 0.5, closed="both")],
        "jitter_period": [Interval(float, 0, 0.3, closed="both")],
        "jitter_shift": [Interval(float, 0, None, closed="left")],
        "jitter_amplitude": [Interval(float, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        rig: str | Rig | None = None,
        perturbation: str = "fgwn",
        duration: float = 50.0,
        schedule: str | None = "sine_1",
        pivot_shape: str | None = None,
        pivot_freq: float | None = None,
        pivot_amplitude: float = 0.02,
        pivot_center: float | None = None,
        pivot_profile: Any = None,
        nonideal: bool = True,
        disable: list | None = None,
        truth: str = "mapped",
        settle: float = 2.0,
        drift: float = 0.0,
        jitter_period: float = 0.0,
        jitter_shift: float = 0.0,
        jitter_amplitude: float = 0.0,
    ) -> None:
        self.rig = rig
        self.perturbation = perturbation
        self.duration = duration
        self.schedule = schedule
        self.pivot_shape = pivot_shape
        self.pivot_freq = pivot_freq
        self.pivot_amplitude = pivot_amplitude
        self.pivot_center = pivot_center
        self.pivot_profile = pivot_profile
        self.nonideal = nonideal
        self.disable = disable
        self.truth = truth
        self.settle = settle
        self.drift = drift
        self.jitter_period = jitter_period
        self.jitter_shift = jitter_shift
        self.jitter_amplitude = jitter_amplitude

    # ------------------------------------------------------------------ configuration

    def _validate(self) -> None:
        super()._validate()
        if self.schedule is not None and (self.pivot_shape is not None
                                          or self.pivot_freq is not None):
            raise InvalidParameterError(
                "LeverPlant: give either 'schedule' or 'pivot_shape'/'pivot_freq', not both "
                f"(schedule={self.schedule!r}, pivot_shape={self.pivot_shape!r}, "
                f"pivot_freq={self.pivot_freq!r})."
            )
        if self.schedule is None and (self.pivot_shape is None or self.pivot_freq is None):
            raise InvalidParameterError(
                "LeverPlant: without 'schedule', both 'pivot_shape' and 'pivot_freq' are needed."
            )
        if (self.pivot_shape == "custom") != (self.pivot_profile is not None):
            raise InvalidParameterError(
                "LeverPlant: 'pivot_profile' is required with pivot_shape='custom' and only then."
            )
        rig = self.rig_description()
        g = rig.geometry
        lo, hi = self._pivot_range(rig)
        if lo < g.pivot_min - 1e-12 or hi > g.pivot_max + 1e-12:
            raise InvalidParameterError(
                f"LeverPlant: the pivot trajectory spans [{lo:.4f}, {hi:.4f}] m, outside the "
                f"rig's travel [{g.pivot_min}, {g.pivot_max}] m; reduce 'pivot_amplitude' or "
                f"move 'pivot_center'."
            )
        if self.duration * self.frequency < 1.0 - 1e-9:
            raise InvalidParameterError(
                f"LeverPlant: 'duration' ({self.duration} s) must cover at least one pivot "
                f"period ({1 / self.frequency:g} s)."
            )

    @property
    def shape(self) -> str:
        """Trajectory shape ("square", "sine" or "custom")."""
        return SCHEDULES[self.schedule][0] if self.schedule is not None else self.pivot_shape

    @property
    def frequency(self) -> float:
        """Frequency of the pivot trajectory, Hz."""
        return SCHEDULES[self.schedule][1] if self.schedule is not None else float(self.pivot_freq)

    def rig_description(self) -> Rig:
        """The rig after the ``nonideal``/``disable`` switches."""
        rig = load_rig(self.rig)
        if not self.nonideal:
            return rig.ideal()
        if self.disable:
            return rig.ideal(tuple(self.disable))
        return rig

    def _center(self, rig: Rig) -> float:
        g = rig.geometry
        return 0.5 * (g.pivot_min + g.pivot_max) if self.pivot_center is None else self.pivot_center

    def _pivot_range(self, rig: Rig) -> tuple[float, float]:
        if self.shape == "custom":
            prof = np.asarray(self.pivot_profile, dtype=float)
            return float(prof.min()), float(prof.max())
        c = self._center(rig)
        return c - self.pivot_amplitude, c + self.pivot_amplitude

    @property
    def jittered(self) -> bool:
        """Whether any pivot-schedule jitter is on."""
        return bool(self.jitter_period or self.jitter_shift or self.jitter_amplitude)

    def _reference(
        self, t: np.ndarray, rig: Rig, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Pivot reference with schedule jitter (issue 14 item 1).

        Returns the reference (m, shape of ``t``), the schedule time ``tau(t)`` it follows
        (s), the per-cycle shift (s) and amplitude factor (one per nominal cycle
        ``floor(t f)``, from the lead-in on) and the index of cycle 0 in those arrays.
        """
        f = self.frequency
        period = 1.0 / f
        center = (float(np.mean(np.asarray(self.pivot_profile, dtype=float)))
                  if self.shape == "custom" else self._center(rig))
        c_lo, c_hi = math.floor(t[0] * f), math.floor(t[-1] * f)
        n_c = c_hi - c_lo + 1
        # warped cycles last >= period / 2, so 2 n_c + 4 of them cover t from the anchor tau = 0
        k_lo, n_k = 2 * c_lo - 2, 2 * n_c + 4
        z = rng.standard_normal(2 * n_c + n_k)  # same size at every level: aligned streams
        z_shift, z_amp, z_per = z[:n_c], z[n_c:2 * n_c], z[2 * n_c:]
        tau = t
        if self.jitter_period > 0:
            d = period * np.clip(1.0 + self.jitter_period * z_per, 0.5, 1.5)
            i0 = -k_lo  # warped cycle 0 starts at t = 0 (the experiment's start)
            starts = np.empty(n_k)
            starts[i0:] = np.concatenate(([0.0], np.cumsum(d[i0:-1])))
            starts[:i0] = -np.cumsum(d[:i0][::-1])[::-1]
            j = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, n_k - 1)
            tau = (k_lo + j + (t - starts[j]) / d[j]) * period
        shift = self.jitter_shift * z_shift
        amp = np.clip(1.0 + self.jitter_amplitude * z_amp, 0.0, 2.0)
        r = np.floor(t * f).astype(int) - c_lo  # nominal cycle = realization after the cut
        tau = tau - shift[r]
        ref = pivot_trajectory(tau, self.shape, f, self.pivot_amplitude, self._center(rig),
                               self.pivot_profile)
        if self.jittered:
            g = rig.geometry
            ref = np.clip(center + amp[r] * (ref - center), g.pivot_min, g.pivot_max)
        return ref, tau, shift, amp, -c_lo

    def mapping(self) -> StiffnessMapping:
        """The App. B true-stiffness mapping for this rig and perturbation (cached)."""
        return cached_mapping(self.rig_description(), self.perturbation)

    @classmethod
    def report_figures(cls, plan: dict) -> dict[str, bytes]:
        """Report hook: the true-stiffness mapping figure of the scenario's rig (PNG).

        Draws, for the rig of ``plan`` (after its ``rig``/``nonideal``/``disable``
        settings), the theoretical curve (004:Eq.34), the per-trial stiffnesses and the
        quadratic fits of the FGWN and PRBS mappings (004 App. B, Fig. 8/17): the reference
        the mechanical study is scored against. One figure per distinct rig setting when the
        grid varies them (``mapping``, else ``mapping_1``, ``mapping_2``, ...).

        Parameters
        ----------
        plan : dict
            ``scenario.json`` content (``plant.params`` and ``grid``).

        Returns
        -------
        dict of str to bytes
            PNG bytes by figure name.
        """
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg

        params, grid = plan["plant"]["params"], plan.get("grid", {})
        keys = ("rig", "nonideal", "disable")
        choices = [grid[k] if k in grid else [params[k]] for k in keys if k in grid or k in params]
        named = [k for k in keys if k in grid or k in params]
        rigs: list[Rig] = []
        for combo in itertools.product(*choices):
            rig = cls(**dict(zip(named, combo))).rig_description()
            if rig not in rigs:
                rigs.append(rig)
        out = {}
        for i, rig in enumerate(rigs):
            fig = mapping_figure(rig, {k: cached_mapping(rig, k) for k in PERTURBATIONS})
            FigureCanvasAgg(fig)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            out["mapping" if len(rigs) == 1 else f"mapping_{i + 1}"] = buf.getvalue()
        return out

    def _jitter_meta(self, R: int, t: np.ndarray, tau: np.ndarray, shift: np.ndarray,
                     amp: np.ndarray, c0: int, n0: int, fs: float, period: float) -> dict:
        """Per-realization jitter of the experiment (shape (R,) lists)."""
        starts = n0 + np.round(np.arange(R) * period * fs).astype(int)
        return {
            "period": self.jitter_period, "shift": self.jitter_shift,
            "amplitude": self.jitter_amplitude,
            "shift_s": shift[c0:c0 + R].tolist(),
            "amplitude_factor": amp[c0:c0 + R].tolist(),
            # total schedule lag t - tau(t) at each realization's first sample (warp + shift)
            "lag_s": (t[starts] - tau[starts]).tolist(),
        }

    # ------------------------------------------------------------------ experiment

    def simulate(self, rng: np.random.Generator) -> Realizations:
        """Run one experiment.

        Parameters
        ----------
        rng : numpy.random.Generator
            Draws the perturbation and the sensor noise.

        Returns
        -------
        Realizations
            At ``fs / decimation`` Hz (100 Hz), cut at the pivot period: ``u`` actuator
            position (m), ``y`` force (N), ``schedule`` measured pivot position (m), truth ``K``
            (N/m) on the realization grid.
        """
        self._validate()
        if not isinstance(rng, np.random.Generator):
            raise InvalidParameterError(
                f"LeverPlant.simulate needs a numpy.random.Generator; got {type(rng).__name__}."
            )
        rig = self.rig_description()
        fs = rig.sampling.fs
        dec = rig.perturbation.decimation
        f = self.frequency
        period = 1.0 / f
        # lead-in of whole periods (a multiple of the decimation factor), tail for filter edges
        n0 = round(math.ceil(self.settle * f) * period * fs)
        n0 -= n0 % dec
        n_exp = round(self.duration * fs)
        n_tail = round(0.5 * fs)
        n = n0 + n_exp + n_tail
        t = (np.arange(n) - n0) / fs
        jrng = rng.spawn(1)[0]  # jitter stream: leaves rng's own draws unchanged
        ref, tau, shift, amp, c0 = self._reference(t, rig, jrng)
        cmd = perturbation_command(rig, self.perturbation, n, rng)
        rig_exp = rig
        if self.drift != 0.0:  # the device at experiment time differs from the mapped one
            d = rig.model_dump()
            d["springs"]["stiffness"] *= 1.0 + self.drift
            rig_exp = Rig.model_validate(d)
        rec = simulate_record(rig_exp, cmd, ref, rng, pivot0=float(ref[0]))
        k0, k1 = n0 // dec, (n0 + n_exp) // dec
        fs_out = fs / dec
        u = decimate(rec.actuator, dec)[k0:k1]
        y = decimate(rec.force, dec)[k0:k1]
        piv = decimate(rec.pivot, dec)[k0:k1]
        data = Realizations.from_record(u, y, fs_out, period, schedule=piv)
        if self.truth == "mapped":
            mp = self.mapping()
            K_r = mp(data.schedule)
            mapping_info = mp.to_dict()
        else:
            p_true = decimate(rec.pivot_true, dec)[k0:k1]
            sched_true = Realizations.from_record(u, y, fs_out, period, schedule=p_true).schedule
            K_r = theoretical_stiffness(sched_true, rig)  # 004:Eq.34
            mapping_info = None
        meta = {
            "plant": self.name, "rig": rig.name, "perturbation": self.perturbation,
            "pivot_shape": self.shape, "pivot_freq": f, "pivot_amplitude": self.pivot_amplitude,
            "pivot_center": self._center(rig), "duration": self.duration,
            "fs_record": fs, "decimation": dec, "truth": self.truth, "mapping": mapping_info,
            "drift": self.drift,
            "jitter": self._jitter_meta(data.u.shape[0], t, tau, shift, amp, c0, n0, fs, period),
            "units": {"u": "m", "y": "N", "schedule": "m", "K": "N/m"},
        }
        return data.replace(truth=GroundTruth(K=K_r.mean(axis=0), K_r=K_r), meta=meta)
