"""Time-invariant frequency response and static-gain stiffness (004 App. B, Eq.32-33).

The thesis maps the lever device's true stiffness from time-invariant trials: the FRF
``H = S_yu / S_uu`` (004:Eq.32) from the spectra ``S_yu = (1/N) Y U*`` (004:Eq.33), and the
stiffness as the static gain, the mean ``|H|`` over 0.1-2.5 Hz (004 App. B).

Here the spectra are averaged over segments before the ratio (Welch / H1 estimator): by
default one segment per realization (N samples each, ``1/(N/fs)`` Hz bins: 1 Hz for the
thesis's 1 s realizations, so bins 1 and 2 Hz fall in the band). With ``segment`` set, the
realizations are joined into one record (they must be contiguous periods, as
``Realizations.from_record`` produces) and cut into segments of that many samples with 50 %
overlap; a single segment as long as the record reproduces 004:Eq.32-33 literally (with
``taper="boxcar"``). Each segment's mean is removed first (a torque or position offset
would otherwise leak into the low bins).

``stiffness="ibk"`` instead fits ``H(f) = K + j w B - w^2 I`` over 0 < f <= ``f_max``
weighted by ``S_uu``, which also returns B and I and is free of the viscous bias of ``|H|``
(|H(2 Hz)| of K = 50, B = 3.2 is 10 % above K). The fit is done on the spectra of the
tapered input derivatives (:func:`bench.spectra.fit_ibk_spectra`, exact under the taper);
the derivatives are spectral (:func:`bench.differentiate.spectral_derivative`) on the joined
record, or per realization when ``data.meta["contiguous"]`` is False.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bench import spectra as sp
from bench.base import Estimator, Tags
from bench.differentiate import spectral_derivative
from bench.errors import EstimationError
from bench.params import Interval, Options
from bench.types import ImpedanceEstimate, Realizations

__all__ = ["FRFEstimator"]


class FRFEstimator(Estimator):
    """Time-invariant FRF over all realizations; stiffness as static gain (004 App. B).

    Parameters
    ----------
    stiffness : {"gain", "ibk"}
        ``"gain"`` (default): mean ``|H|`` over ``gain_band`` (004 App. B);
        ``"ibk"``: K of the weighted I-B-K least-squares fit over 0 < f <= ``f_max``.
    gain_lo, gain_hi : float, Hz
        Static-gain band; default 0.1-2.5 Hz (004 App. B).
    f_max : float, Hz
        Upper edge of the I-B-K fit band; default 20 Hz.
    segment : int or None, samples
        Welch segment length on the joined record (50 % overlap); ``None``: one segment
        per realization.
    taper : {"hann", "boxcar"}
        Segment taper; default Hanning (004:Eq.28), ``"boxcar"`` = 004:Eq.33 unwindowed.

    Returns (``estimate``)
    ----------------------
    ImpedanceEstimate
        ``K`` (N,) constant (Nm/rad); with ``"ibk"`` also ``B`` (N,) and ``I``; ``frf``
        (N, F) (the same FRF on every row) with ``freqs``; ``info`` with the segment length,
        number of segments, band and coherence (F,).
    """

    name: ClassVar[str] = "frf"
    tags: ClassVar[Tags] = Tags(time_varying=False, needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "stiffness": [Options(("gain", "ibk"))],
        "gain_lo": [Interval(float, 0, None, closed="left")],
        "gain_hi": [Interval(float, 0, None, closed="neither")],
        "f_max": [Interval(float, 0, None, closed="neither")],
        "segment": [Interval(int, 4, None), None],
        "taper": [Options(("hann", "boxcar"))],
    }

    def __init__(
        self,
        *,
        stiffness: str = "gain",
        gain_lo: float = 0.1,
        gain_hi: float = 2.5,
        f_max: float = 20.0,
        segment: int | None = None,
        taper: str = "hann",
    ) -> None:
        self.stiffness = stiffness
        self.gain_lo = gain_lo
        self.gain_hi = gain_hi
        self.f_max = f_max
        self.segment = segment
        self.taper = taper

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        if self.gain_lo > self.gain_hi:
            raise EstimationError(
                f"FRFEstimator: gain_lo ({self.gain_lo:g} Hz) exceeds "
                f"gain_hi ({self.gain_hi:g} Hz)."
            )
        contiguous = data.meta.get("contiguous", True) is not False
        xs = [data.u, data.y]
        if self.stiffness == "ibk":
            for order in (1, 2):
                if contiguous:
                    d = spectral_derivative(data.u.ravel(), data.fs, order)
                    xs.append(d.reshape(data.R, data.N))
                else:
                    xs.append(spectral_derivative(data.u, data.fs, order))
        if self.segment is None:
            segs = xs  # (R, N): one segment per realization
        else:
            L = int(self.segment)
            T = data.R * data.N
            if L > T:
                raise EstimationError(
                    f"FRFEstimator: segment = {L} samples exceeds the record ({T} samples)."
                )
            hop = max(1, L // 2)
            segs = [sliding_window_view(x.ravel(), L)[::hop] for x in xs]
        # Remove each segment's mean from every signal (scipy's detrend="constant"); the
        # model is linear, so y = I u'' + B u' + K u still holds for the demeaned signals.
        segs = [x - x.mean(-1, keepdims=True) for x in segs]
        u_seg, y_seg = segs[0], segs[1]
        L = u_seg.shape[-1]
        taper = sp.hann_window(L) if (self.taper == "hann" and L >= 3) else None
        s = sp.spectra(u_seg, y_seg, data.fs, taper=taper)  # 004:Eq.33 per segment
        S_uu, S_yy, S_yu = s.S_uu.mean(0), s.S_yy.mean(0), s.S_yu.mean(0)
        H = sp.frf(S_yu, S_uu)  # 004:Eq.32
        f = s.freqs
        info = {
            "segment": L, "n_segments": int(u_seg.shape[0]), "taper": self.taper,
            "stiffness": self.stiffness, "coherence": sp.coherence(S_uu, S_yy, S_yu),
        }
        B = I = None
        sel = (f > 0) & (f <= self.f_max)
        if self.stiffness == "gain":
            K = float(sp.static_gain(H, f, (self.gain_lo, self.gain_hi)))  # 004 App. B
            info["band"] = (self.gain_lo, self.gain_hi)
        else:
            S_vu = sp.spectra(u_seg, segs[2], data.fs, taper=taper).S_yu.mean(0)
            S_au = sp.spectra(u_seg, segs[3], data.fs, taper=taper).S_yu.mean(0)
            fit = sp.fit_ibk_spectra(S_yu[sel], S_uu[sel], S_vu[sel], S_au[sel], f[sel])
            K, B, I = float(fit.K), float(fit.B), float(fit.I)
            info["band"] = (float(f[sel][0]), float(f[sel][-1]))
        if not np.isfinite(K):
            raise EstimationError(
                "FRFEstimator: the FRF is undefined in the band (no input power there)."
            )
        N = data.N
        return ImpedanceEstimate(
            K=np.full(N, K),
            B=None if B is None else np.full(N, B),
            I=I,
            frf=np.tile(H, (N, 1)),
            freqs=f,
            info=info,
        )
