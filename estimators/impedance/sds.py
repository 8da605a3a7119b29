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
    rank : {"mdl", "full"}, default "mdl"
        Per-step MDL order or all excited lag directions; NaN where rank deficient (see
        :class:`~estimators.impedance.eirf.EIRF`).
    stiffness : {"fit", "gain"}, default "fit"
        How K, B, I are read from the IRF (see :mod:`estimators.impedance.eirf`).
    contiguous : bool, default False
        Realizations are consecutive periods of one record (lags and segments may cross
        realization borders).

    Notes
    -----
    ``info``: ``lags_samples``, ``order`` (N,), ``vaf`` (%), ``warnings``.
    """

    name: ClassVar[str] = "sds"
    tags: ClassVar[Tags] = Tags(time_varying=True, needs_ensemble=True, min_realizations=2)
    _parameter_constraints: ClassVar[dict] = {
        "n_lags": [Interval(int, 1, 200)],
        "window": [Interval(int, 1, 10_000)],
        "rank": [Options(("mdl", "full"))],
        "stiffness": [Options(("fit", "gain"))],
        "contiguous": [bool],
    }

    def __init__(
        self,
        *,
        n_lags: int = 4,
        window: int = 10,
        rank: str = "mdl",
        stiffness: str = "fit",
        contiguous: bool = False,
    ) -> None:
        self.n_lags = n_lags
        self.window = window
        self.rank = rank
        self.stiffness = stiffness
        self.contiguous = contiguous

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        if self.window > data.N:
            raise DataError(
                f"The 'window' parameter of SDS ({self.window} samples) exceeds the "
                f"realization length N = {data.N}."
            )
        lags = _core.lag_vector(self.n_lags)
        u = _core.remove_mean(data.u, "ensemble")
        y = _core.remove_mean(data.y, "ensemble")
        if self.contiguous:
            # segments may cross realization borders: window over the whole record
            flat = _core.ensemble_statistics(
                u.reshape(1, -1), y.reshape(1, -1), lags, contiguous=False
            )
            seg = _core.window_sum(flat, self.window)
            # fold the record back onto the period and sum over realizations (004:Eq.23)
            R, N = data.R, data.N
            stats = _core.EnsembleStats(
                seg.Sxx.reshape(R, N, *seg.Sxx.shape[1:]).sum(0),
                seg.Sxy.reshape(R, N, -1).sum(0),
                seg.Syy.reshape(R, N).sum(0),
                seg.n.reshape(R, N).sum(0),
                lags,
            )
        else:
            stats = _core.window_sum(
                _core.ensemble_statistics(u, y, lags, contiguous=False), self.window
            )
        h, order, warns, vaf = _core.solve_projected(stats, data.dt, self.rank)
        _core.require_estimate(h[:, 0], warns, type(self).__name__)
        K, B, I = _core.impedance_from_irf(h, lags, data.dt, u, self.stiffness)
        return ImpedanceEstimate(
            K=K, B=B, I=I, irf=h, lags=lags * data.dt,
            info={
                **self.get_params(),
                "lags_samples": lags,
                "order": order,
                "vaf": vaf,
                "nan_steps": int(np.sum(~np.isfinite(K))),
                "warnings": warns,
            },
        )
