"""Pipelines that join plants' data and estimators through the registry.

The reference stiffness of 000 Sec. 2.3: perturbed tracking trials are cut at the task cycle
into realizations, the Short Data Segments estimator (Ludvig & Perreault 2012) gives the
joint stiffness at each time point of the cycle, and a 20-sample moving average smooths it.
Calibrators can then fit estimated rather than true stiffness, as 000 did.

``bench`` imports estimators only through :func:`bench.registry.resolve`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bench.errors import DataError
from bench.registry import resolve
from bench.types import GroundTruth, ImpedanceEstimate, MuscleData, Realizations

__all__ = ["muscle_realizations", "reference_stiffness", "with_reference_stiffness"]


def _period_samples(data: MuscleData, period: float | None) -> tuple[float, int]:
    if period is None:
        if "period" not in data.meta:
            raise DataError(
                "MuscleData.meta has no 'period' (task cycle, s); pass period= explicitly."
            )
        period = float(data.meta["period"])
    n = round(period * data.fs)
    if n < 2:
        raise DataError(f"period {period} s at fs {data.fs} Hz gives fewer than 2 samples.")
    return period, n


def muscle_realizations(
    data: MuscleData, trial: int = 0, dof: int = 0, period: float | None = None
) -> Realizations:
    """Cut one trial's angle (input) and torque (output) into realizations of one task cycle.

    Parameters
    ----------
    data : MuscleData
        Perturbed trial(s); ``angle`` and ``torque`` of shape (S, T, D).
    trial, dof : int
        Which trial and degree of freedom.
    period : float, s, optional
        Task cycle; default ``data.meta["period"]``. ``round(period * fs)`` samples per
        realization; the trailing partial cycle is dropped.

    Returns
    -------
    Realizations
        ``u`` angle (rad), ``y`` = minus the joint torque (Nm, the torque imposing the
        angle), shape (R, N); ``truth.K`` the cycle average of
        ``data.stiffness`` (and ``truth.K_r`` per cycle) when the data carry a stiffness.
    """
    S = data.angle.shape[0]
    if not 0 <= trial < S:
        raise DataError(f"trial must be in [0, {S}); got {trial}.")
    period, n = _period_samples(data, period)
    u = np.asarray(data.angle[trial, :, dof], dtype=float)
    # impedance convention: the output is the torque the dynamometer exerts to impose the
    # angle, the negative of the joint (muscle) torque, so that K = -dtau/dtheta > 0 (000:Eq.7)
    y = -np.asarray(data.torque[trial, :, dof], dtype=float)
    truth = None
    if data.stiffness is not None:
        k = np.asarray(data.stiffness[trial, :, dof], dtype=float)
        R = k.size // n
        if R >= 1:
            k_r = k[: R * n].reshape(R, n)
            truth = GroundTruth(K=k_r.mean(axis=0), K_r=k_r)
    meta = {"source": data.meta.get("plant", "muscle_data"), "trial": trial, "dof": dof,
            "period": period}
    return Realizations.from_record(u, y, data.fs, period, truth=truth, meta=meta)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` samples, ignoring NaN; NaN where none valid."""
    if width <= 1:
        return x.copy()
    ok = np.isfinite(x)
    kern = np.ones(width)
    num = np.convolve(np.where(ok, x, 0.0), kern, mode="same")
    den = np.convolve(ok.astype(float), kern, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def reference_stiffness(
    data: MuscleData,
    *,
    estimator: str = "sds",
    estimator_params: dict[str, Any] | None = None,
    trial: int = 0,
    dof: int = 0,
    smooth: int = 20,
    period: float | None = None,
) -> tuple[ImpedanceEstimate, Realizations]:
    """Reference joint stiffness over one task cycle, as in 000 Sec. 2.3.

    Parameters
    ----------
    data : MuscleData
        Perturbed trial(s).
    estimator : str
        Registered impedance estimator (default ``"sds"``) or ``"module:Class"``.
    estimator_params : dict, optional
        Hyper-parameters; for SDS the default is ``contiguous=True`` (realizations are
        consecutive cycles of one record).
    trial, dof : int
    smooth : int
        Moving-average width in samples applied to K (000: 20 samples); 1 disables it.
    period : float, s, optional
        Task cycle (default ``data.meta["period"]``).

    Returns
    -------
    estimate : ImpedanceEstimate
        ``K`` smoothed, shape (N,) over one cycle; ``info["K_raw"]`` the unsmoothed estimate.
    realizations : Realizations
        What the estimator saw (with ``truth`` when the data carry a stiffness).
    """
    params = dict(estimator_params or {})
    if estimator == "sds":
        params.setdefault("contiguous", True)
    est_cls = resolve("estimators", estimator)
    real = muscle_realizations(data, trial=trial, dof=dof, period=period)
    raw = est_cls(**params).estimate(real)
    K = _moving_average(raw.K, int(smooth))
    info = {**raw.info, "K_raw": raw.K, "smooth": int(smooth), "estimator": estimator}
    return dataclasses.replace(raw, K=K, info=info), real


def with_reference_stiffness(data: MuscleData, **kwargs: Any) -> MuscleData:
    """Copy of ``data`` whose ``stiffness`` is the estimated reference, tiled over the cycles.

    Each trial gets its own estimate (:func:`reference_stiffness`, same keyword arguments
    except ``trial``); samples after the last whole cycle and NaN estimates stay NaN. The
    true stiffness, if any, moves to ``meta["true_stiffness"]``.
    """
    kwargs.pop("trial", None)
    dof = kwargs.get("dof", 0)
    S, T, D = data.torque.shape
    ref = np.full((S, T, D), np.nan)
    for s in range(S):
        est, real = reference_stiffness(data, trial=s, **kwargs)
        tiled = np.tile(est.K, real.R)
        ref[s, : tiled.size, dof] = tiled
    meta = dict(data.meta)
    if data.stiffness is not None:
        meta["true_stiffness"] = data.stiffness
    meta["stiffness_source"] = kwargs.get("estimator", "sds")
    return dataclasses.replace(data, stiffness=ref, meta=meta)
