"""Scoring metrics (docs/architecture.md "Metrics").

All functions take true values first, estimates second, ignore samples where the
estimate is NaN (reporting the NaN share separately) and return floats.
"""

from __future__ import annotations

import numpy as np

from bench.errors import DataError

__all__ = [
    "cr1",
    "cr2",
    "nan_share",
    "nrmse",
    "r2",
    "rmse",
    "stiffness_error",
    "vaf",
]


def _pair(true: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true, dtype=float)
    e = np.asarray(est, dtype=float)
    if t.shape != e.shape:
        raise DataError(f"true and estimate differ in shape: {t.shape} vs {e.shape}")
    if not np.all(np.isfinite(t)):
        raise DataError("the reference (true) values contain NaN/inf")
    ok = np.isfinite(e)
    return t[ok], e[ok]


def nan_share(est: np.ndarray) -> float:
    """Fraction of samples (0-1) where the estimate is not finite."""
    e = np.asarray(est, dtype=float)
    return float(np.mean(~np.isfinite(e))) if e.size else float("nan")


def rmse(true: np.ndarray, est: np.ndarray) -> float:
    """Root-mean-square error over finite estimate samples (004:Eq.6)."""
    t, e = _pair(true, est)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((t - e) ** 2)))


def stiffness_error(true: np.ndarray, est: np.ndarray) -> float:
    """Normalized stiffness error in percent, 100 RMSE(K_hat) / RMS(K) (004:Eq.6-7)."""
    t, e = _pair(true, est)
    if t.size == 0:
        return float("nan")
    rms = np.sqrt(np.mean(t**2))
    if rms == 0:
        raise DataError("RMS of the true stiffness is zero; the normalized error is undefined")
    return float(100.0 * np.sqrt(np.mean((t - e) ** 2)) / rms)


def nrmse(true: np.ndarray, est: np.ndarray) -> float:
    """RMSE normalized by the root-mean-square of the reference (000 Sec. 2.6), a fraction.

    000 calls it "normalized by the root-mean sum" (after Sartori et al. 2012b).
    """
    t, e = _pair(true, est)
    if t.size == 0:
        return float("nan")
    rms = np.sqrt(np.mean(t**2))
    if rms == 0:
        raise DataError("the reference is identically zero; nRMSE is undefined")
    return float(np.sqrt(np.mean((t - e) ** 2)) / rms)


def r2(true: np.ndarray, est: np.ndarray) -> float:
    """Squared Pearson correlation between reference and estimate (000 Sec. 2.6)."""
    t, e = _pair(true, est)
    if t.size < 2 or np.std(t) == 0 or np.std(e) == 0:
        return float("nan")
    return float(np.corrcoef(t, e)[0, 1] ** 2)


def vaf(true: np.ndarray, est: np.ndarray) -> float:
    """Variance accounted for, percent: 100 (1 - var(true - est) / var(true))."""
    t, e = _pair(true, est)
    if t.size < 2:
        return float("nan")
    vt = np.var(t)
    if vt == 0:
        return float("nan")
    return float(100.0 * (1.0 - np.var(t - e) / vt))


def cr1(p_true: np.ndarray, p_est: np.ndarray) -> float:
    """Parameter criterion Cr1 = 100 ||p_hat - p|| / ||p||, percent (002:Eq.22)."""
    t = np.asarray(p_true, dtype=float).ravel()
    e = np.asarray(p_est, dtype=float).ravel()
    if t.shape != e.shape:
        raise DataError(f"parameter vectors differ in length: {t.size} vs {e.size}")
    return float(100.0 * np.linalg.norm(e - t) / np.linalg.norm(t))


def cr2(p_true: np.ndarray, p_est: np.ndarray) -> float:
    """Parameter criterion Cr2 = 100 mean |p_hat - p| / |p|, percent (002:Eq.23).

    Cr2^m (002:Eq.24 text) is this function applied to the muscle parameters only.
    """
    t = np.asarray(p_true, dtype=float).ravel()
    e = np.asarray(p_est, dtype=float).ravel()
    if t.shape != e.shape:
        raise DataError(f"parameter vectors differ in length: {t.size} vs {e.size}")
    if np.any(t == 0):
        raise DataError("Cr2 is undefined for a true parameter equal to zero")
    return float(100.0 * np.mean(np.abs(e - t) / np.abs(t)))
