"""Time-invariant impedance: one two-sided IRF for all data, and a direct I, B, K fit.

:class:`TimeInvariantIRF` treats all realizations as one stationary record: the lagged-input
correlations of 004:Eq.15-17 are averaged over the realizations *and* all time steps and
the single IRF of 004:Eq.14 is solved (the classical correlation / Toeplitz method of
Hunter & Kearney, with the NLID pseudo-inverse option). K, B and I are read from the IRF as
in the eIRF (:func:`estimators.impedance._core.impedance_from_irf`) and broadcast to (N,).

:class:`IBKFit` fits ``y(t) = I u''(t) + B u'(t) + K u(t) + c`` (004:Eq.4 with constant
parameters and a torque offset c) by linear least squares on the samples. The derivatives
come from an equiripple FIR differentiator (Parks-McClellan, ``scipy.signal.remez`` with
``type="differentiator"``) of ``2 half_width + 1`` taps designed over ``[0, band * fs]``;
with the defaults (16, 0.4) its gain is within 2e-5 of the ideal ``j w`` up to 40 Hz at
100 Hz, i.e. over the thesis perturbation band (signals low-pass filtered at 40 Hz,
004 Sec. III-B). The second derivative applies it twice; the first/last ``2 half_width``
samples of each realization (of the record when ``contiguous``) are dropped.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage, signal

from bench.base import Estimator, Tags
from bench.errors import DataError, EstimationError
from bench.params import Interval, Options
from bench.types import ImpedanceEstimate, Realizations
from estimators.impedance import _core

__all__ = ["IBKFit", "TimeInvariantIRF", "fir_differentiator"]


class TimeInvariantIRF(Estimator):
    """One two-sided IRF from all realizations as a stationary record; constant K.

    Parameters
    ----------
    n_lags : int, default 4
        Lags on each side of zero, samples (L = 2 n_lags + 1).
    rank : {"mdl", "full"}, default "mdl"
        MDL order or all excited lag directions (see :class:`~estimators.impedance.eirf.EIRF`);
        EstimationError when the input has no power.
    stiffness : {"fit", "gain"}, default "fit"
        How K, B, I are read from the IRF (see :mod:`estimators.impedance.eirf`).
    contiguous : bool, default False
        Realizations are consecutive pieces of one record (lags may cross borders).

    Notes
    -----
    The overall mean (not the ensemble mean) is removed from u and y, so one realization
    suffices. ``irf`` is the single IRF repeated for every time step, shape (N, L).
    """

    name: ClassVar[str] = "irf"
    tags: ClassVar[Tags] = Tags(time_varying=False, needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "n_lags": [Interval(int, 1, 1000)],
        "rank": [Options(("mdl", "full"))],
        "stiffness": [Options(("fit", "gain"))],
        "contiguous": [bool],
    }

    def __init__(
        self,
        *,
        n_lags: int = 4,
        rank: str = "mdl",
        stiffness: str = "fit",
        contiguous: bool = False,
    ) -> None:
        self.n_lags = n_lags
        self.rank = rank
        self.stiffness = stiffness
        self.contiguous = contiguous

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        lags = _core.lag_vector(self.n_lags)
        if lags.size >= data.R * data.N:
            raise DataError(
                f"TimeInvariantIRF with n_lags={self.n_lags} needs more than {lags.size} "
                f"samples; got {data.R * data.N}."
            )
        u = _core.remove_mean(data.u, "mean")
        y = _core.remove_mean(data.y, "mean")
        stats = _core.ensemble_statistics(u, y, lags, contiguous=self.contiguous).total()
        h, order, warns, vaf = _core.solve_projected(stats, data.dt, self.rank)
        _core.require_estimate(h[:, 0], warns, type(self).__name__)
        K, B, I = _core.impedance_from_irf(h, lags, data.dt, u, self.stiffness)
        N = data.N
        return ImpedanceEstimate(
            K=np.full(N, K[0]), B=np.full(N, B[0]), I=float(I[0]),
            irf=np.repeat(h, N, axis=0), lags=lags * data.dt,
            info={
                **self.get_params(),
                "lags_samples": lags,
                "order": int(order[0]),
                "vaf": vaf,
                "warnings": warns,
            },
        )


def fir_differentiator(half_width: int, band: float, fs: float) -> np.ndarray:
    """Equiripple type-III FIR differentiator, shape (2 half_width + 1,), units 1/s.

    ``np.convolve(x, d, "valid")[i]`` is dx/dt at sample ``i + half_width``; the gain is
    ``j w`` over ``[0, band * fs]`` Hz (Parks-McClellan design, ``scipy.signal.remez``).
    """
    taps = 2 * int(half_width) + 1
    b = signal.remez(taps, [0.0, band * fs], [1.0], type="differentiator", fs=fs)
    # remez's differentiator has gain w / (2 pi fs) in rad/s; rescale to d/dt
    return b * 2.0 * np.pi * fs


class IBKFit(Estimator):
    """Least-squares fit of constant inertia, damping and stiffness to the samples.

    Parameters
    ----------
    half_width : int, default 16
        Differentiator half length, samples (2 half_width + 1 taps).
    band : float, default 0.4
        Differentiator pass band edge as a fraction of fs (< 0.5).
    contiguous : bool, default False
        Realizations are consecutive pieces of one record (differentiate across borders).

    Notes
    -----
    ``info``: ``vaf`` (%), ``offset`` c (Nm), ``n_samples`` used.
    """

    name: ClassVar[str] = "ibk"
    tags: ClassVar[Tags] = Tags(time_varying=False, needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "half_width": [Interval(int, 2, 500)],
        "band": [Interval(float, 0.0, 0.5, closed="neither")],
        "contiguous": [bool],
    }

    def __init__(self, *, half_width: int = 16, band: float = 0.4, contiguous: bool = False):
        self.half_width = half_width
        self.band = band
        self.contiguous = contiguous

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        M = self.half_width
        u, y = (data.u.reshape(1, -1), data.y.reshape(1, -1)) if self.contiguous else (
            data.u, data.y
        )
        if u.shape[1] <= 4 * M:
            raise DataError(
                f"IBKFit with half_width={M} needs realizations longer than {4 * M} samples "
                f"(or contiguous=True); got {u.shape[1]}."
            )
        # convolution with the differentiator = correlation with its reverse
        d = fir_differentiator(M, self.band, data.fs)[::-1]
        du = ndimage.correlate1d(u, d, axis=1, mode="constant")
        d2u = ndimage.correlate1d(du, d, axis=1, mode="constant")
        sl = slice(2 * M, u.shape[1] - 2 * M)
        A = np.stack(
            [d2u[:, sl].ravel(), du[:, sl].ravel(), u[:, sl].ravel(), np.ones(d2u[:, sl].size)],
            axis=1,
        )  # 004:Eq.4 regressors [u'', u', u, 1]
        b = y[:, sl].ravel()
        scale = np.linalg.norm(A, axis=0)
        if np.any(scale[:3] == 0):
            raise EstimationError(
                "IBKFit: the input has no power (u, u' or u'' is identically zero); "
                "I, B, K are not identifiable"
            )
        coef, *_ = np.linalg.lstsq(A / scale, b, rcond=None)
        cond = np.linalg.cond(A / scale)
        if not np.isfinite(cond) or cond > 1e10:
            raise EstimationError(f"IBKFit: regressors are singular (condition {cond:.3g})")
        I, B, K, c = coef / scale
        resid = b - A @ (coef / scale)
        N = data.N
        return ImpedanceEstimate(
            K=np.full(N, K), B=np.full(N, B), I=float(I),
            info={
                **self.get_params(),
                "offset": float(c),
                "vaf": float(100.0 * (1.0 - np.var(resid) / np.var(b))),
                "n_samples": int(b.size),
                "condition": float(cond),
            },
        )
