"""Paired two-tailed t-test along a cycle: statistical parametric mapping (000 Sec. 2.6).

000 compares the stiffness profiles of perturbed and unperturbed cycles with spm1d's paired
t-test (Pataky et al. 2013; alpha = 0.05), whose critical threshold comes from random field
theory for the smoothness of the residuals. When the ``spm1d`` package is importable it is
used; otherwise a pointwise paired t-test whose threshold is Bonferroni-corrected over the
cycle points (a conservative stand-in: with smooth residuals it finds fewer significant points
than random field theory).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from bench.errors import DataError

__all__ = ["paired_ttest_1d"]


def paired_ttest_1d(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05) -> dict[str, Any]:
    """Paired two-tailed t-test of curves ``a`` against ``b`` at every cycle point.

    Parameters
    ----------
    a, b : ndarray, shape (J, Q)
        J paired curves (cycles) of Q time-normalized points.
    alpha : float
        Type I error rate of the whole curve.

    Returns
    -------
    dict
        ``t`` (Q,) the t statistic of ``a - b``; ``threshold`` the critical |t|;
        ``significant`` (Q,) bool; ``significant_share`` the fraction of the cycle that is
        significant; ``method`` ``"spm1d"`` or ``"bonferroni"``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.ndim != 2 or a.shape != b.shape:
        raise DataError(f"paired curves must share a (J, Q) shape; got {a.shape} and {b.shape}")
    J, Q = a.shape
    if J < 3:
        raise DataError(f"a paired t-test along the cycle needs >= 3 pairs; got {J}")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be in (0, 1); got {alpha}")
    try:
        import spm1d  # optional dependency
    except ImportError:
        spm1d = None
    if spm1d is not None:
        ti = spm1d.stats.ttest_paired(a, b).inference(alpha, two_tailed=True)
        t = np.asarray(ti.z, dtype=float)
        thr = float(ti.zstar)
        method = "spm1d"
    else:
        d = a - b
        sd = d.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(sd > 0, d.mean(axis=0) / (sd / np.sqrt(J)), 0.0)
        thr = float(stats.t.ppf(1.0 - alpha / (2.0 * Q), J - 1))  # Bonferroni over Q points
        method = "bonferroni"
    sig = np.abs(t) > thr
    return {"t": t, "threshold": thr, "significant": sig,
            "significant_share": float(sig.mean()), "method": method}
