"""Register realizations to a common phase before ensemble estimation.

Ensemble and short-segment estimators assume every realization has the same time
variation at the same instant (004 Sec. VI-F). In people, and on a rig whose schedule
jitters, it does not. This stage estimates, for each realization, where each common-phase
sample lies in the original record, from an *observed* scheduling signal (pivot position,
EMG envelope, low-frequency torque) — never from the truth — and resamples the input and
output onto the common phase. Estimators then run on the aligned :class:`Realizations`;
:func:`phase_to_time` maps their stiffness back onto each realization's own time axis.

Two registrations:

``"shift"``
    One time shift per realization, by circular cross-correlation of its scheduling
    signal with the ensemble mean (sub-sample by parabolic interpolation of the
    correlation peak), iterated a few times with the reference re-estimated from the
    aligned ensemble. Realizations are re-cut from the contiguous record at shifted
    boundaries, so no sample is invented.
``"dtw"``
    Shift first, then dynamic time warping of each realization's scheduling signal onto
    the reference (a warping band limits the local stretch), giving a monotone map from
    common phase to record time; u and y are resampled along it by band-limited
    (Lanczos-windowed sinc) interpolation.

Assumptions (documented because they matter):

* the realizations are consecutive periods of one continuous record (as
  ``Realizations.from_record`` cuts them); realizations whose shifted window would leave
  the record are dropped and listed in ``Alignment.dropped``;
* the scheduling signal's shape is the same in each realization up to time shift/warp
  and amplitude (it is standardized per realization first);
* warping resamples u and y together, so a realization stretched by a factor s has its
  dynamics time-scaled by s: for stretches of a few percent the effect on stiffness (a
  static gain) is negligible, on damping and inertia it is of order s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import DataError
from bench.types import Realizations

__all__ = ["Alignment", "align_realizations", "bandlimited_interp", "phase_to_time"]


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align_realizations`.

    Attributes
    ----------
    data : Realizations
        Aligned ensemble, shape (R_kept, N), on the common phase grid.
    source_time : ndarray, shape (R_kept, N), s
        Record time (from the start of the record) of each aligned sample.
    kept : ndarray of int, shape (R_kept,)
        Original realization indices kept.
    dropped : ndarray of int
        Realizations dropped because their window left the record.
    shifts : ndarray, shape (R,), s
        Estimated time shift of each original realization (positive: late).
    method : str
    """

    data: Realizations
    source_time: np.ndarray
    kept: np.ndarray
    dropped: np.ndarray
    shifts: np.ndarray
    method: str


def bandlimited_interp(x: np.ndarray, idx: np.ndarray, a: int = 16) -> np.ndarray:
    """Evaluate a band-limited sampled signal at fractional sample positions.

    Lanczos-windowed sinc with ``a`` lobes: accurate for content well below Nyquist.

    Parameters
    ----------
    x : ndarray, shape (T,)
    idx : ndarray, any shape
        Fractional sample positions in [0, T - 1].
    a : int
        Half-width of the kernel, samples.
    """
    x = np.asarray(x, dtype=float)
    idx = np.asarray(idx, dtype=float)
    if np.any(idx < 0) or np.any(idx > x.size - 1):
        raise DataError("interpolation positions fall outside the record")
    base = np.floor(idx).astype(int)
    k = base[..., None] + np.arange(-a + 1, a + 1)
    d = idx[..., None] - k
    w = np.sinc(d) * np.sinc(d / a)
    valid = (k >= 0) & (k < x.size)
    w = np.where(valid, w, 0.0)
    vals = x[np.clip(k, 0, x.size - 1)]
    return np.sum(w * vals, axis=-1) / np.sum(w, axis=-1)


def _standardize(s: np.ndarray) -> np.ndarray:
    s = s - s.mean(axis=-1, keepdims=True)
    sd = s.std(axis=-1, keepdims=True)
    if np.any(sd == 0):
        raise DataError("a realization's scheduling signal is constant: nothing to align on")
    return s / sd


def _circular_shifts(S: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Sub-sample lag (samples) maximizing the circular cross-correlation of each row."""
    N = S.shape[1]
    xc = np.fft.irfft(np.fft.rfft(S, axis=1) * np.conj(np.fft.rfft(ref))[None], n=N, axis=1)
    i = np.argmax(xc, axis=1)
    ym, y0, yp = xc[np.arange(len(i)), i - 1], xc[np.arange(len(i)), i], xc[
        np.arange(len(i)), (i + 1) % N
    ]
    denom = ym - 2 * y0 + yp
    frac = np.where(np.abs(denom) > 1e-12, 0.5 * (ym - yp) / denom, 0.0)
    lag = i + frac
    return np.where(lag > N / 2, lag - N, lag)


def _subsequence_dtw(seg: np.ndarray, ref: np.ndarray, margin: int, band: int) -> np.ndarray:
    """Open-ended dynamic time warping of ``ref`` (N,) into ``seg`` (N + 2 margin,).

    The reference must be matched completely; its first sample may start anywhere in the
    first 2 margin + 1 samples of ``seg`` and its last end anywhere in the last
    2 margin + 1, so a realization cut too early or too late is still matched whole.
    A band of ``margin + band`` around the shifted diagonal limits local stretching.

    Returns
    -------
    ndarray, shape (N,)
        For each reference sample j, the mean matched position in ``seg``.
    """
    N, L = ref.size, seg.size
    big = np.inf
    jj, ii = np.indices((N, L))
    cost = (ref[:, None] - seg[None, :]) ** 2
    cost = np.where(np.abs(ii - jj - margin) <= margin + band, cost, big)
    D = np.full((N, L), big)
    D[0, : 2 * margin + 1] = cost[0, : 2 * margin + 1]  # free start
    for j in range(1, N):
        diag = np.concatenate([[big], D[j - 1, :-1]])
        tmp = cost[j] + np.minimum(diag, D[j - 1])
        C = np.cumsum(np.where(np.isfinite(cost[j]), cost[j], 0.0))
        # D[j, i] = min(tmp[i], D[j, i-1] + cost[j, i]) = C[i] + min_{k<=i}(tmp[k] - C[k])
        with np.errstate(invalid="ignore"):
            row = C + np.minimum.accumulate(tmp - C)
        D[j] = np.where(np.isfinite(cost[j]), row, big)
    end_lo = L - 1 - 2 * margin
    i = end_lo + int(np.argmin(D[N - 1, end_lo:]))
    j = N - 1
    pairs = [(j, i)]
    while j > 0:
        cands = [(D[j - 1, i], j - 1, i)]
        if i > 0:
            cands.append((D[j - 1, i - 1], j - 1, i - 1))
            cands.append((D[j, i - 1], j, i - 1))
        _, j, i = min(cands)
        pairs.append((j, i))
    pairs = np.array(pairs[::-1])
    sums = np.bincount(pairs[:, 0], weights=pairs[:, 1], minlength=N)
    counts = np.bincount(pairs[:, 0], minlength=N)
    return sums / counts


def align_realizations(
    data: Realizations,
    *,
    signal: np.ndarray | None = None,
    method: str = "shift",
    iterations: int = 3,
    max_shift: float | None = None,
    band: float = 0.1,
) -> Alignment:
    """Register the realizations of ``data`` to a common phase.

    Parameters
    ----------
    data : Realizations
        Consecutive periods of one record, shape (R, N).
    signal : ndarray, shape (R, N), optional
        Observed scheduling signal to align on; defaults to ``data.schedule``.
    method : {"shift", "dtw"}
    iterations : int
        Reference re-estimation rounds for the shift registration.
    max_shift : float, optional
        Largest shift considered, s (default: half a period).
    band : float
        DTW warping band as a fraction of the period.

    Returns
    -------
    Alignment
    """
    if method not in ("shift", "dtw"):
        raise DataError(f"unknown alignment method {method!r}; expected 'shift' or 'dtw'")
    s = data.schedule if signal is None else np.asarray(signal, dtype=float)
    if s is None:
        raise DataError(
            "alignment needs an observed scheduling signal: data.schedule is None and no "
            "signal was given"
        )
    if s.shape != data.u.shape:
        raise DataError(f"alignment signal must have shape {data.u.shape}; got {s.shape}")
    R, N = data.u.shape
    fs = data.fs
    S = _standardize(s)
    rec_s = s.ravel()
    rec_u, rec_y = data.u.ravel(), data.y.ravel()
    lim = N / 2 if max_shift is None else max_shift * fs
    shifts = np.zeros(R)
    ref = S.mean(axis=0)
    for _ in range(max(1, iterations)):
        shifts = np.clip(_circular_shifts(S, ref), -lim, lim)
        shifts -= np.median(shifts)  # the common phase is defined by the typical realization
        starts = np.arange(R) * N + shifts
        ok = (starts >= 0) & (starts + N - 1 <= R * N - 1)
        pos = starts[ok, None] + np.arange(N)
        ref = _standardize(bandlimited_interp(rec_s, pos)).mean(axis=0)
    starts = np.arange(R) * N + shifts
    ok = (starts >= 0) & (starts + N - 1 <= R * N - 1)
    kept = np.flatnonzero(ok)
    if kept.size == 0:
        raise DataError("no realization stays inside the record after alignment")
    pos = starts[kept, None] + np.arange(N)
    if method == "dtw":
        w = max(1, round(band * N))
        margin = w
        warped = np.empty_like(pos)
        for n, r in enumerate(kept):
            lo = max(0.0, starts[r] - margin)
            hi = min(R * N - 1.0, starts[r] + N - 1 + margin)
            seg_pos = np.linspace(lo, hi, round(hi - lo) + 1)
            seg = bandlimited_interp(rec_s, seg_pos)
            seg = (seg - seg.mean()) / seg.std()
            m = round(starts[r] - lo)
            pad_l, pad_r = margin - m, margin - (seg.size - N - m)
            seg = np.pad(seg, (pad_l, pad_r), mode="edge")
            matched = _subsequence_dtw(seg, ref, margin, w) - pad_l
            # strictly increasing map; positions in record samples
            matched = np.maximum.accumulate(matched + np.arange(N) * 1e-6)
            warped[n] = seg_pos[0] + matched
        pos = np.clip(warped, 0, R * N - 1)
    u = bandlimited_interp(rec_u, pos)
    y = bandlimited_interp(rec_y, pos)
    sched = bandlimited_interp(rec_s, pos)
    meta = dict(data.meta)
    meta["alignment"] = {"method": method, "kept": kept.tolist()}
    aligned = Realizations(u=u, y=y, fs=fs, schedule=sched, truth=data.truth, meta=meta)
    return Alignment(
        data=aligned,
        source_time=pos / fs,
        kept=kept,
        dropped=np.flatnonzero(~ok),
        shifts=shifts / fs,
        method=method,
    )


def phase_to_time(values: np.ndarray, alignment: Alignment, R: int, N: int) -> np.ndarray:
    """Map a common-phase trajectory back onto each realization's own time axis.

    Parameters
    ----------
    values : ndarray, shape (N,)
        E.g. the stiffness an estimator returned for the aligned ensemble.
    alignment : Alignment
    R, N : int
        Shape of the original (unaligned) realizations.

    Returns
    -------
    ndarray, shape (R, N)
        ``values`` at the phase of every original sample (NaN where no aligned
        realization covers that sample).
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (alignment.data.N,):
        raise DataError(f"values must have shape ({alignment.data.N},); got {values.shape}")
    out = np.full(R * N, np.nan)
    for row in alignment.source_time * alignment.data.fs:
        lo, hi = int(np.ceil(row[0])), int(np.floor(row[-1]))
        if hi < lo:
            continue
        target = np.arange(lo, hi + 1)
        out[target] = np.interp(target, row, values)
    return out.reshape(R, N)
