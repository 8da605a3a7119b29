"""True-stiffness mapping of the lever rig (004 Sec. IV-A, App. B, Fig. 8/17).

Time-invariant trials hold the pivot at >= 5 positions for ``mapping.duration`` s (60 s) each
while the actuator applies the perturbation at 2500 Hz; each trial's stiffness is the static
gain of its FRF, the mean ``|H(f)|`` for 0.1 <= f <= 2.5 Hz with
``H = S_yu / S_uu`` and ``S_yu = (1/N) Y U*`` (004:Eq.32-33); a quadratic in the pivot position
is fitted through the trial values (App. B-2). This is done separately for FGWN and PRBS,
and the mapping of the experiment's own perturbation scores it, as in the thesis.

The trials use the rig file's fixed ``mapping.seed``: the mapping does not depend on the
seed of the experiment it scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import spectra as sp
from bench.errors import InvalidParameterError
from bench.signals import perturbation as _perturbation
from plants.lever.physics import simulate_record, theoretical_stiffness
from plants.lever.rig import Rig

__all__ = [
    "PERTURBATIONS",
    "StiffnessMapping",
    "mapping_figure",
    "perturbation_command",
    "true_stiffness_mapping",
]

#: Perturbation kinds of the mechanical study (004 Sec. IV-B).
PERTURBATIONS = ("fgwn", "prbs")


def perturbation_command(rig: Rig, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Actuator set-points of one perturbation record (004 Sec. IV-B, App. B-1).

    FGWN: white noise through a 2nd-order Butterworth at 5 Hz, std 2 mm. PRBS: switching every
    147 ms between 0 and 5 mm (the thesis's Sec. IV-C reports the PRBS input with mean 2.5 mm
    and std 2.4 mm, i.e. levels 0 and 5 mm). Both through a 4th-order Butterworth at 40 Hz
    (:func:`bench.signals.perturbation`).

    Parameters
    ----------
    rig : Rig
        Supplies the amplitudes and filters (``rig.perturbation``) and ``sampling.fs``.
    kind : {"fgwn", "prbs"}
    n : int
        Samples at ``sampling.fs``.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n,), m
    """
    ps, fs = rig.perturbation, rig.sampling.fs
    if kind == "fgwn":
        return _perturbation(
            "fgwn", n, fs, rng, std=ps.fgwn_std, lowpass=ps.lowpass,
            lowpass_order=ps.lowpass_order, cutoff=ps.fgwn_cutoff, order=ps.fgwn_order,
        )
    if kind == "prbs":
        half = ps.prbs_amplitude / 2.0
        x = _perturbation(
            "prbs", n, fs, rng, std=half, lowpass=ps.lowpass, lowpass_order=ps.lowpass_order,
            switch_interval=ps.prbs_switch_interval,
        )
        return x + half
    raise InvalidParameterError(
        f"The 'perturbation' must be one of {{'fgwn', 'prbs'}}. Got {kind!r} instead."
    )


@dataclass(frozen=True)
class StiffnessMapping:
    """Quadratic map from pivot position to the true stiffness (004 App. B).

    Attributes
    ----------
    perturbation : str
        ``"fgwn"`` or ``"prbs"``.
    coef : ndarray, shape (3,)
        ``K(p) = coef[0] p^2 + coef[1] p + coef[2]``, N/m with p in m.
    positions : ndarray, shape (P,), m
        Mean measured pivot position of each time-invariant trial.
    stiffness : ndarray, shape (P,), N/m
        Static gain of each trial.
    band : (float, float), Hz
    """

    perturbation: str
    coef: np.ndarray
    positions: np.ndarray
    stiffness: np.ndarray
    band: tuple

    def __call__(self, pivot: Any) -> np.ndarray:
        """Mapped stiffness (N/m) at pivot position(s) ``pivot`` (m)."""
        return np.polyval(self.coef, np.asarray(pivot, dtype=float))

    def to_dict(self) -> dict:
        """JSON-safe summary."""
        return {
            "perturbation": self.perturbation, "coef": self.coef.tolist(),
            "positions": self.positions.tolist(), "stiffness": self.stiffness.tolist(),
            "band": list(self.band),
        }


def true_stiffness_mapping(
    rig: Rig,
    perturbation: str,
    *,
    positions: Any = None,
    duration: float | None = None,
    seed: int | None = None,
    settle: float = 1.0,
) -> StiffnessMapping:
    """Run the time-invariant trials and fit the quadratic mapping (004 App. B).

    Parameters
    ----------
    rig : Rig
    perturbation : {"fgwn", "prbs"}
    positions : array-like, shape (P,), m, optional
        Pivot set-points, P >= 3 (default ``rig.mapping.positions``, 5 of them).
    duration : float, s, optional
        Length of each trial (default ``rig.mapping.duration``, 60 s).
    seed : int, optional
        Seed of the trials (default ``rig.mapping.seed``).
    settle : float, s
        Simulated before each trial and discarded (PID and filters settle).

    Returns
    -------
    StiffnessMapping
    """
    pos = np.asarray(rig.mapping.positions if positions is None else positions, dtype=float)
    if pos.ndim != 1 or pos.size < 3 or np.unique(pos).size < 3:
        raise InvalidParameterError(
            f"positions must hold at least 3 distinct pivot positions (m); got {pos!r}."
        )
    T = rig.mapping.duration if duration is None else float(duration)
    fs = rig.sampling.fs
    n, n0 = round(T * fs), round(settle * fs)
    if T <= 0 or n < 4:
        raise InvalidParameterError(f"duration must be a positive number of seconds; got {T!r}.")
    rng = np.random.default_rng(rig.mapping.seed if seed is None else seed)
    cmd = np.stack([perturbation_command(rig, perturbation, n0 + n, rng) for _ in pos])
    ref = np.repeat(pos[:, None], n0 + n, axis=1)
    rec = simulate_record(rig, cmd, ref, rng)
    u = rec.actuator[:, n0:]
    y = rec.force[:, n0:]
    u = u - u.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    s = sp.spectra(u, y, fs)  # 004:Eq.33, one periodogram per trial
    H = sp.frf(s.S_yu, s.S_uu)  # 004:Eq.32
    K = sp.static_gain(H, s.freqs, tuple(rig.mapping.band))  # mean |H|, 0.1-2.5 Hz
    p_meas = rec.pivot[:, n0:].mean(axis=1)
    coef = np.polyfit(p_meas, K, 2)  # quadratic mapping (App. B)
    return StiffnessMapping(perturbation, coef, p_meas, np.asarray(K, float),
                            tuple(rig.mapping.band))


def mapping_figure(rig: Rig, mappings: dict[str, StiffnessMapping]) -> Any:
    """Theoretical (004:Eq.34), per-trial and fitted stiffness over the pivot travel (Fig. 8/17).

    Parameters
    ----------
    rig : Rig
    mappings : dict of str to StiffnessMapping
        Usually ``{"fgwn": ..., "prbs": ...}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    g = rig.geometry
    p = np.linspace(g.pivot_min, g.pivot_max, 200)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(p * 1e3, theoretical_stiffness(p, rig), "k--", label="theoretical (Eq. 34)")
    colors = {"fgwn": "tab:blue", "prbs": "tab:orange"}
    for kind, m in mappings.items():
        col = colors.get(kind, None)
        ax.plot(m.positions * 1e3, m.stiffness, "o", color=col, label=f"{kind.upper()} trials")
        ax.plot(p * 1e3, m(p), "-", color=col, label=f"{kind.upper()} quadratic fit")
    ax.set_xlabel("pivot position r1 [mm]")
    ax.set_ylabel("stiffness at the actuator [N/m]")
    ax.set_title(f"True-stiffness mapping, rig '{rig.name}'")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return fig
