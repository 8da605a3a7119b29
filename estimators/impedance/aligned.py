"""Alignment before ensemble estimation: a meta-estimator around any registered method.

Ensemble and short-segment estimators assume every realization shows the same time
variation at the same instant (004 Sec. VI-B, VI-F); in people the repetitions drift and
stretch, and the thesis expects 200-400 repetitions instead of 25-50 for that reason. This
wrapper registers the realizations to a common phase with :func:`bench.align.align_realizations`
(shift registration, optionally refined by dynamic time warping) from an *observed*
scheduling signal, runs the inner estimator on the aligned :class:`~bench.types.Realizations`,
and maps the phase stiffness back onto every realization's own time axis with
:func:`bench.align.phase_to_time`.

Scheduling signal. Only ``signal="schedule"`` (``data.schedule``) is implemented: on the MSD
plant the normalized K/B shape, on the lever rig the pivot position. Other observed signals
that carry the phase of the time variation and could be aligned on, once a plant or a
recording provides them as an (R, N) array: the EMG envelope (rectified, low-passed EMG of
the co-contracting muscles, whose level drives stiffness) and the low-frequency torque
(the torque low-passed well below the perturbation band, i.e. the voluntary background
torque). All alignment assumptions of :mod:`bench.align` apply (consecutive periods of one
record; same shape of the signal in each realization up to shift/warp and scale; dynamics
time-scaled by the local stretch, negligible for a static gain such as K).

Resampling (``resample``)
    ``"record"`` (default): one continuous, monotone time warp of the whole record, from
    anchors (matching common-phase and record positions). First pass, both registrations:
    :func:`bench.align.align_realizations` shift registration, one anchor per realization at
    the centre of its shifted window (the shifts unwrapped over realizations, so that a drift
    beyond half a period keeps counting cycles). With ``align="dtw"`` a second pass warps the
    whole record's signal onto the first pass's phase-averaged template by banded dynamic
    time warping (band +-``band`` periods around the first-pass warp) and takes one anchor
    per landmark, a run of path points where the template changes (the path is arbitrary
    where the template is flat): for a square-wave schedule, one per transition. The warp is
    piecewise linear through the anchors and continues the end slopes beyond them. The
    record is resampled (band-limited, :func:`bench.align.bandlimited_interp`) on the uniform
    common-phase grid and cut into whole periods, so the aligned realizations are again
    consecutive periods of one record (``meta["contiguous"]`` stays True: estimators that
    use the previous realization's samples for their lags, or wrap windows periodically,
    keep every time step). The stiffness is mapped back by inverting the warp at every
    record sample (periodic interpolation in phase), so no sample is left uncovered.
    Residual: a per-realization shift that *jumps* at realization boundaries (the plant's
    ``jitter_shift``) is represented only at the anchors and linearly in between.
    ``"rows"``: the realizations :func:`bench.align.align_realizations` returns (each
    window re-cut at its own shift, or resampled along its own DTW path), mapped back with
    :func:`bench.align.phase_to_time` (NaN where no aligned realization covers a sample).
    The rows are no longer consecutive periods, so they carry ``meta["contiguous"] = False``
    and an inner ``contiguous=True`` hyper-parameter is rejected. Exact for pure shifts; the
    raw DTW path is arbitrary where the signal is flat (e.g. a square-wave schedule), which
    time-warps u and y non-uniformly there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from bench import registry
from bench.align import Alignment, align_realizations, bandlimited_interp, phase_to_time
from bench.base import Estimator, Tags
from bench.errors import DataError, InvalidParameterError, RegistryError
from bench.params import Interval, Options
from bench.types import ImpedanceEstimate, Realizations, scalar_info

__all__ = ["Aligned"]


class Aligned(Estimator):
    """Register realizations to a common phase, then run an ensemble estimator.

    Parameters
    ----------
    method : str
        Registry name (or ``module:Class``) of the inner impedance estimator, e.g. ``"birf"``.
    method_params : dict, optional
        Hyper-parameters of the inner estimator (validated by it).
    align : {"dtw", "shift", "none"}
        Registration: one cross-correlation time shift per realization (``"shift"``), shift
        followed by dynamic time warping (``"dtw"``), or none (the inner estimator on the raw
        data; its K broadcast to every realization, for like-for-like comparisons).
    signal : {"schedule"}
        Observed signal the realizations are registered on: ``data.schedule``.
    band : float
        DTW band, fraction of the period in (0, 0.5]: the largest correction the warp may
        make to the shift registration (``"record"``: +-band around the first-pass warp;
        ``"rows"``: the local stretch :func:`bench.align.align_realizations` allows). 0.2
        (default) covers the first-pass errors of 10 % period scatter (up to ~0.2 period at
        cycles that differ most from their neighbours).
    resample : {"record", "rows"}
        How the aligned realizations are formed (module docstring): one continuous warp of
        the whole record (default) or per-realization windows.

    Notes
    -----
    :meth:`estimate` returns the inner estimator's ``K`` (N,), Nm/rad, on the common phase
    (the phase of the median realization; ``B``, ``I``, ``irf`` likewise) and in ``info``:
    ``K_record`` (R, N), that stiffness at the phase of every sample of every original
    realization (with ``resample="rows"`` NaN where no aligned window covers a sample), the
    quantity to score against ``truth.K_r`` when realizations differ; ``B_record`` likewise;
    ``shifts_s`` (R,) the first-pass shifts, s; ``kept`` the aligned realizations passed to
    the inner method and ``dropped`` those whose window left the record (``"rows"``);
    ``anchors`` the number of warp anchors (``"record"``); ``inner`` the inner method's
    scalar info. A schedule that is constant over the whole record carries no phase: the
    realizations are then used unaligned (with a warning in ``info``). The schedule is
    required (tag ``needs_schedule``) even with ``align="none"``, so that raw and aligned
    runs accept the same data.
    """

    name: ClassVar[str] = "aligned"
    tags: ClassVar[Tags] = Tags(
        time_varying=True, needs_ensemble=True, needs_schedule=True, min_realizations=2
    )
    _parameter_constraints: ClassVar[dict] = {
        "method": [str],
        "method_params": [dict, None],
        "align": [Options(("dtw", "shift", "none"))],
        "signal": [Options(("schedule",))],
        "band": [Interval(float, 0, 0.5, closed="right")],
        "resample": [Options(("record", "rows"))],
    }

    def __init__(
        self,
        *,
        method: str = "birf",
        method_params: dict | None = None,
        align: str = "dtw",
        signal: str = "schedule",
        band: float = 0.2,
        resample: str = "record",
    ) -> None:
        self.method = method
        self.method_params = method_params
        self.align = align
        self.signal = signal
        self.band = band
        self.resample = resample

    def _validate(self) -> None:
        super()._validate()
        if self.method == self.name or self.method.endswith(":Aligned"):
            raise InvalidParameterError(
                f"The 'method' parameter of Aligned must name an inner estimator other than "
                f"'aligned'. Got {self.method!r} instead."
            )
        self._inner()
        rows = self.align != "none" and self.resample == "rows"
        if rows and (self.method_params or {}).get("contiguous") is True:
            raise InvalidParameterError(
                "The 'method_params' parameter of Aligned cannot set contiguous=True with "
                "resample='rows': aligned realizations are not consecutive periods."
            )

    def _inner(self) -> Estimator:
        """The inner estimator, resolved and validated (errors name the Aligned parameter)."""
        try:
            cls = registry.resolve("estimators", self.method)
        except RegistryError as exc:
            raise InvalidParameterError(
                f"The 'method' parameter of Aligned must name a registered estimator: {exc}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise InvalidParameterError(
                f"The 'method' parameter of Aligned must name an impbench Estimator. "
                f"Got {self.method!r} ({cls!r}) instead."
            )
        try:
            inner = cls(**dict(self.method_params or {}))
            inner._validate()
        except (InvalidParameterError, TypeError) as exc:
            raise InvalidParameterError(
                f"The 'method_params' parameter of Aligned is invalid for {self.method!r}: {exc}"
            ) from None
        return inner

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        inner = self._inner()
        R, N = data.R, data.N
        flat = self.align != "none" and np.ptp(data.schedule) == 0
        if self.align == "none" or flat:
            est = inner.estimate(data)
            rec = est.info.get("K_record")
            K_rec = (
                np.asarray(rec, dtype=float)
                if rec is not None and np.shape(rec) == (R, N)
                else np.broadcast_to(est.K, (R, N)).copy()
            )
            info = {"align": "none", "method": self.method, "K_record": K_rec,
                    "inner": scalar_info(est.info)}
            if flat:
                info["warnings"] = [
                    "the schedule is constant over the whole record (no time variation to "
                    "align on): realizations were used as they are"
                ]
            return ImpedanceEstimate(K=est.K, B=est.B, I=est.I, irf=est.irf, lags=est.lags,
                                     frf=est.frf, freqs=est.freqs, info=info)
        if self.resample == "rows":
            al = align_realizations(
                data, signal=data.schedule, method=self.align, band=self.band
            )
            aligned = al.data.replace(meta={**al.data.meta, "contiguous": False})
            est = self._run_inner(inner, aligned, R)
            K_rec = phase_to_time(est.K, al, R, N)
            B_rec = (phase_to_time(est.B, al, R, N)
                     if est.B is not None and np.shape(est.B) == (N,) else None)
            kept, dropped, n_anchors = int(al.kept.size), int(al.dropped.size), 0
        else:
            # first pass: one shift per realization (bench.align), one anchor each
            al = align_realizations(data, signal=data.schedule, method="shift")
            p_anc, q_anc = _extend(*_shift_anchors(al, R, N, data.fs), N)
            if self.align == "dtw":
                # second pass: the whole record's signal onto the first-pass template
                first = _warp_record(data, p_anc, q_anc)
                ref = _standardize(first.schedule.mean(axis=0))
                x = _standardize(data.schedule.ravel())
                phi = np.interp(np.arange(R * N, dtype=float), q_anc, p_anc)
                p_d, q_d = _dtw_anchors(x, ref, phi, max(1, round(self.band * N)))
                p_anc, q_anc = _extend(p_d, q_d, N)
            aligned = _warp_record(data, p_anc, q_anc)
            est = self._run_inner(inner, aligned, R)
            K_rec = _phase_values_at_record(est.K, p_anc, q_anc, R, N)
            B_rec = (_phase_values_at_record(est.B, p_anc, q_anc, R, N)
                     if est.B is not None and np.shape(est.B) == (N,) else None)
            kept, dropped, n_anchors = aligned.R, 0, int(p_anc.size - 2)
        info: dict[str, Any] = {
            "align": self.align,
            "resample": self.resample,
            "method": self.method,
            "signal": self.signal,
            "band": float(self.band),
            "kept": kept,
            "dropped": dropped,
            "anchors": n_anchors,
            "shift_sd_s": float(np.std(al.shifts)),
            "shifts_s": al.shifts,
            "K_record": K_rec,
            "inner": scalar_info(est.info),
        }
        if B_rec is not None:
            info["B_record"] = B_rec
        return ImpedanceEstimate(K=est.K, B=est.B, I=est.I, irf=est.irf, lags=est.lags,
                                 frf=est.frf, freqs=est.freqs, info=info)

    @staticmethod
    def _run_inner(inner: Estimator, aligned: Realizations, R: int) -> ImpedanceEstimate:
        if aligned.R < inner.tags.min_realizations:
            raise DataError(
                f"only {aligned.R} of {R} realizations remain after alignment; "
                f"{type(inner).__name__} needs at least {inner.tags.min_realizations}."
            )
        return inner.estimate(aligned)


def _shift_anchors(al: Alignment, R: int, N: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """One warp anchor per realization: the centre of its shifted window.

    Returns
    -------
    p, q : ndarray, shape (R,), samples
        Common-phase positions ``p`` (centre of period r: ``r N + (N - 1) / 2``) and record
        positions ``q`` of the same phase.
    """
    c = 0.5 * (N - 1)
    # circular shifts lie in (-N/2, N/2]: unwrap so a drift beyond half a period keeps
    # counting cycles (consecutive realizations differ by far less than half a period)
    s = np.unwrap(al.shifts * fs, period=N)
    s -= N * np.round(np.median(s) / N)
    rows = np.arange(R, dtype=float)
    return rows * N + c, rows * N + s + c


def _dtw_anchors(
    x: np.ndarray, ref: np.ndarray, phi: np.ndarray, W: int
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark anchors from dynamic time warping of the whole record onto the template.

    The record signal ``x`` (T,) is warped onto the periodic template ``ref`` (N,) tiled
    along the phase axis, inside a band of +-``W`` phase samples around a first-pass warp
    ``phi`` (T,) (steps (1, 1), (1, 0), (0, 1); open start and end inside the band). Where
    the template is flat the path is arbitrary, so only path points whose template slope
    ``|d ref / d phase|`` is at least a quarter of its maximum count, and each run of
    consecutive such phase samples gives one anchor (mean phase, mean record position):
    for a square-wave schedule, one anchor per transition.

    Returns
    -------
    p, q : ndarray, shape (A,), samples
        Common-phase and record positions of the anchors, increasing in ``p``.
    """
    T, N = x.size, ref.size
    centers = np.round(phi).astype(int)
    d = np.arange(-W, W + 1)
    nb = d.size
    cost = (x[:, None] - ref[np.mod(centers[:, None] + d[None, :], N)]) ** 2
    D = np.empty((T, nb))
    D[0] = cost[0]
    for i in range(1, T):
        shift = centers[i] - centers[i - 1]
        k_diag = d + shift - 1 + W  # (i-1, j-1) in row i-1's band
        k_vert = d + shift + W  # (i-1, j)
        prev = D[i - 1]
        best = np.minimum(
            np.where((k_diag >= 0) & (k_diag < nb), prev[np.clip(k_diag, 0, nb - 1)], np.inf),
            np.where((k_vert >= 0) & (k_vert < nb), prev[np.clip(k_vert, 0, nb - 1)], np.inf),
        )
        # horizontal steps (i, j-1): D[k] = C[k] + min_{m <= k} (best[m] - C[m-1])
        C = np.cumsum(cost[i])
        D[i] = C + np.minimum.accumulate(best - np.concatenate([[0.0], C[:-1]]))
    k, i = int(np.argmin(D[-1])), T - 1
    path_i, path_j = [i], [centers[i] + d[k]]
    while i > 0:
        j = centers[i] + d[k]
        cands = [(D[i, k - 1], i, k - 1)] if k > 0 else []
        for jj in (j - 1, j):
            kk = jj - centers[i - 1] + W
            if 0 <= kk < nb:
                cands.append((D[i - 1, kk], i - 1, kk))
        _, i, k = min(cands)
        path_i.append(i)
        path_j.append(centers[i] + d[k])
    pi = np.asarray(path_i[::-1], dtype=float)
    pj = np.asarray(path_j[::-1])
    w = np.abs(np.gradient(ref))
    if w.max() == 0:
        raise DataError("the alignment template is constant: nothing to align on")
    keep = w[np.mod(pj, N)] >= 0.25 * w.max()
    pj, pi = pj[keep], pi[keep]
    grp = np.concatenate([[0], np.cumsum(np.diff(pj) > 1)])
    cnt = np.bincount(grp)
    return np.bincount(grp, weights=pj) / cnt, np.bincount(grp, weights=pi) / cnt


def _extend(p: np.ndarray, q: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Make the anchors strictly increasing and extend them three periods beyond each end.

    The extension continues the mean slope of the last period of anchors at each end.
    """
    q = np.maximum.accumulate(q + np.arange(q.size) * 1e-6)
    if p.size < 2:
        s0 = s1 = 1.0
    else:
        k0 = min(int(np.searchsorted(p, p[0] + N)), p.size - 1)
        k1 = max(int(np.searchsorted(p, p[-1] - N)) - 1, 0)
        s0 = (q[k0] - q[0]) / (p[k0] - p[0])
        s1 = (q[-1] - q[k1]) / (p[-1] - p[k1])
    p = np.concatenate([[p[0] - 3 * N], p, [p[-1] + 3 * N]])
    q = np.concatenate([[q[0] - 3 * N * s0], q, [q[-1] + 3 * N * s1]])
    return p, q


def _warp_record(
    data: Realizations, p: np.ndarray, q: np.ndarray
) -> Realizations:
    """Resample the whole record on the common-phase grid and cut it into whole periods.

    Returns
    -------
    Realizations
        Consecutive common-phase periods inside the record, shape (R', N);
        ``meta["alignment"]["first_period"]`` is the common-phase index of the first.
    """
    R, N = data.R, data.N
    T = R * N
    lo = float(np.interp(0.0, q, p))  # phase position of the first record sample
    hi = float(np.interp(T - 1.0, q, p))
    first, last = int(np.ceil(lo / N - 1e-9)), int(np.floor((hi + 1) / N + 1e-9)) - 1
    if last < first:
        raise DataError("no whole period of the common phase lies inside the record")
    grid = np.arange(first * N, (last + 1) * N, dtype=float)
    pos = np.clip(np.interp(grid, p, q), 0.0, T - 1.0)
    rows = last - first + 1

    def res(x: np.ndarray) -> np.ndarray:
        return bandlimited_interp(x.ravel(), pos).reshape(rows, N)

    meta = dict(data.meta)
    meta["alignment"] = {"resample": "record", "first_period": first, "periods": rows}
    aligned = Realizations(
        u=res(data.u), y=res(data.y), fs=data.fs,
        schedule=None if data.schedule is None else res(data.schedule),
        truth=data.truth, meta=meta,
    )
    return aligned


def _standardize(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    if sd == 0:
        raise DataError("the alignment signal is constant: nothing to align on")
    return (x - np.mean(x)) / sd


def _phase_values_at_record(
    values: np.ndarray, p: np.ndarray, q: np.ndarray, R: int, N: int
) -> np.ndarray:
    """A common-phase trajectory (N,) at every sample of the record, shape (R, N).

    Inverts the warp (record position -> common-phase position) and interpolates
    ``values`` periodically in phase; NaN in ``values`` stays NaN next to it.
    """
    phase = np.interp(np.arange(R * N, dtype=float), q, p)
    out = np.interp(np.mod(phase, N), np.arange(N), np.asarray(values, dtype=float), period=N)
    return out.reshape(R, N)


