"""Short data segments (SDS), Ludvig & Perreault 2012 (004 App. A4, Eq.23).

Computed exactly as the ensemble IRF (:mod:`estimators.impedance.eirf`, 004:Eq.13-16),
except that the auto- and cross-correlations average over a short segment of ``window``
samples around each time step as well as over the realizations (004:Eq.23)::

    phi_xy(t, k) = 1/(N_w R) sum_r sum_{i in segment(t)} x(i - k, r) y(i, r)

which trades time resolution (the IRF is an average over the segment) for fewer needed
realizations. The segment of step t is ``t - (window-1)//2 .. t + window//2``; steps whose
segment (plus lags) leaves the realization are NaN unless ``contiguous=True``.

Defaults from 004 Table VI: N_lags = 4 (read as +-4 samples, see eIRF) and N_window = 10.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bench.base import Estimator, Tags
from bench.errors import DataError
from bench.params import Interval, Options
from bench.types import ImpedanceEstimate, Realizations
from estimators.impedance import _core

__all__ = ["SDS"]


class SDS(Estimator):
    """Short-data-segment ensemble IRF per time step (004 App. A4).

    Parameters
    ----------
    n_lags : int, default 4
        Lags on each side of zero, samples (004 Table VI: 4).
    window : int, default 10
        Segment length N_window, samples (004 Table VI: 10); at most the realization length.
        10 confirmed on the tuning plant (``benchmarks/tuning.py``).
    rank : {"mdl", "full"}, default "mdl"
        Per-step MDL order or all directions the rank rule keeps (see
        :class:`~estimators.impedance.eirf.EIRF`).
    rcond : float in [0, 1), "cv" or None, default "cv"
        Rank rule of the truncated-SVD pseudo-inverse, as for
        :class:`~estimators.impedance.eirf.EIRF` (None: rank-deficient steps are NaN).
    n_folds : int, default 5
        Folds of the ``rcond="cv"`` choice.
    stiffness : {"fit", "gain"}, default "fit"
        How K, B, I are read from the IRF (see :mod:`estimators.impedance.eirf`).
    contiguous : bool or "auto", default "auto"
        Realizations are consecutive periods of one record: lags and segments may cross
        realization borders, so every step is estimated. "auto": the data's
        ``meta["contiguous"]`` flag; False: steps whose segment (plus lags) leaves the
        realization are NaN (17 % of a 100-sample period for the defaults). "auto" chosen on
        the tuning plant (``benchmarks/tuning.py``).

    Notes
    -----
    ``info``: ``lags_samples``, ``rank`` (N,) directions used per step with ``rank_min``,
    ``rank_median``, ``rank_max``, ``rcond`` used (``rcond_scores`` with "cv"), ``vaf`` (%),
    ``coverage``, ``contiguous``, ``covered``, ``warnings``.
    """

    name: ClassVar[str] = "sds"
    deviations: ClassVar[str] = (
        "steps near the period's edges are estimated across the realization boundary when the "
        "record is contiguous (contiguous='auto'), and weak directions are truncated by a "
        'held-out rank rule; on PRBS its own variance keeps it near the thesis.'
    )
    tags: ClassVar[Tags] = Tags(time_varying=True, needs_ensemble=True, min_realizations=2)
    _parameter_constraints: ClassVar[dict] = {
        "n_lags": [Interval(int, 1, 200)],
        "window": [Interval(int, 1, 10_000)],
        "rank": [Options(("mdl", "full"))],
        "rcond": [Interval(float, 0, 1, closed="left"), Options(("cv",)), None],
        "n_folds": [Interval(int, 2, 100)],
        "stiffness": [Options(("fit", "gain"))],
        "contiguous": [bool, Options(("auto",))],
    }

    def __init__(
        self,
        *,
        n_lags: int = 4,
        window: int = 10,
        rank: str = "mdl",
        rcond: float | str | None = "cv",
        n_folds: int = 5,
        stiffness: str = "fit",
        contiguous: bool | str = "auto",
    ) -> None:
        self.n_lags = n_lags
        self.window = window
        self.rank = rank
        self.rcond = rcond
        self.n_folds = n_folds
        self.stiffness = stiffness
        self.contiguous = contiguous

    def _stats(
        self, u: np.ndarray, y: np.ndarray, lags: np.ndarray, contiguous: bool,
        weights: np.ndarray | None = None, flat: _core.EnsembleStats | None = None,
    ) -> _core.EnsembleStats:
        """Segment sums of 004:Eq.23 per step (``weights``: per-realization fold mask).

        ``flat``: the whole record's per-sample sums (contiguous mode), computed once by the
        caller and shared by the folds (a fold masks its realizations' samples).
        """
        R, N = u.shape
        if not contiguous:
            ref = _core.ensemble_statistics(u, y, lags, contiguous=False)
            st = ref if weights is None else _core.ensemble_statistics(
                u, y, lags, contiguous=False, weights=weights)
            return _core.window_sum(st, self.window, reference=ref)
        # segments may cross realization borders: window over the whole record ...
        if flat is None:
            flat = _core.ensemble_statistics(u.reshape(1, -1), y.reshape(1, -1), lags)
        st = flat
        if weights is not None:
            w = np.repeat(np.asarray(weights, dtype=float), N)
            st = _core.EnsembleStats(flat.Sxx * w[:, None, None], flat.Sxy * w[:, None],
                                     flat.Syy * w, flat.n * w, lags)
        seg = _core.window_sum(st, self.window, reference=flat)
        # ... then fold the record back onto the period and sum over realizations (Eq.23)
        return _core.EnsembleStats(
            seg.Sxx.reshape(R, N, *seg.Sxx.shape[1:]).sum(0),
            seg.Sxy.reshape(R, N, -1).sum(0),
            seg.Syy.reshape(R, N).sum(0),
            seg.n.reshape(R, N).sum(0),
            lags,
        )

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        if self.window > data.N:
            raise DataError(
                f"The 'window' parameter of SDS ({self.window} samples) exceeds the "
                f"realization length N = {data.N}."
            )
        contiguous = _core.resolve_contiguous(self.contiguous, data.meta, type(self).__name__)
        lags = _core.lag_vector(self.n_lags)
        u = _core.remove_mean(data.u, "ensemble")
        y = _core.remove_mean(data.y, "ensemble")
        flat = (_core.ensemble_statistics(u.reshape(1, -1), y.reshape(1, -1), lags)
                if contiguous else None)
        stats = self._stats(u, y, lags, contiguous, flat=flat)
        K, B, I, h, info = _core.estimate_from_stats(
            stats, lambda w: self._stats(u, y, lags, contiguous, w, flat),
            R=data.R, dt=data.dt, u=u, rank=self.rank, rcond=self.rcond,
            n_folds=self.n_folds, stiffness=self.stiffness, contiguous=contiguous,
            owner=type(self).__name__,
        )
        return ImpedanceEstimate(
            K=K, B=B, I=I, irf=h, lags=lags * data.dt,
            info={**self.get_params(), "lags_samples": lags, **info},
        )
