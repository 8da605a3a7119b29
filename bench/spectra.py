"""Shared spectral maths: tapers, auto/cross spectra, FRF, static gain, I-B-K fit.

Used by the spectral impedance estimators (time-invariant FRF, ESM, mESM) and by the
lever-rig plant's true-stiffness mapping (004 App. B). The API is small on purpose:

* :func:`hann_window`, :func:`dpss_tapers` — data tapers (004:Eq.28; Slepian multitapers).
* :func:`spectra` — auto- and cross-spectra of tapered segments (004:Eq.26/33).
* :func:`frf` — frequency response ``H = S_yu / S_uu`` (004:Eq.24/32).
* :func:`coherence` — squared coherence of averaged spectra.
* :func:`static_gain` — mean ``|H|`` over a band (004 App. B: 0.1-2.5 Hz).
* :func:`ibk_response`, :func:`fit_ibk` — the second-order joint impedance
  ``H(f) = K + j 2 pi f B - (2 pi f)^2 I`` (004:Eq.4-5) and its weighted least-squares fit.
* :func:`fit_ibk_spectra` — the same fit done on spectra of the tapered input derivatives,
  free of the taper's leakage bias (for short windows).

Conventions: the input ``u`` is a position (rad or m), the output ``y`` a torque or force
(Nm or N), so ``H`` is an impedance in output unit per input unit. Spectra are one-sided DFT
products scaled as in the thesis, ``S_yu = (1/L) Y U*`` (004:Eq.26/33): this scale cancels in
every ratio (FRF, coherence) and is *not* a power spectral density in unit^2/Hz.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal.windows import dpss

from bench.errors import DataError, EstimationError

__all__ = [
    "IBK",
    "Spectra",
    "coherence",
    "dpss_tapers",
    "fit_ibk",
    "fit_ibk_spectra",
    "frf",
    "hann_window",
    "ibk_response",
    "spectra",
    "static_gain",
]


class Spectra(NamedTuple):
    """Auto- and cross-spectra on the one-sided DFT grid.

    Attributes
    ----------
    freqs : ndarray, shape (F,), Hz
        ``numpy.fft.rfftfreq(L, 1/fs)``.
    S_uu : ndarray, shape (..., F), real
        Input auto-spectrum, input unit^2 (DFT scaling ``|U|^2 / L``).
    S_yy : ndarray, shape (..., F), real
        Output auto-spectrum, output unit^2.
    S_yu : ndarray, shape (..., F), complex
        Cross-spectrum ``Y U* / L``, output unit x input unit.
    """

    freqs: np.ndarray
    S_uu: np.ndarray
    S_yy: np.ndarray
    S_yu: np.ndarray


class IBK(NamedTuple):
    """Inertia, damping and stiffness of a second-order impedance fit.

    Attributes
    ----------
    I : ndarray, shape (...), output unit s^2 per input unit (kg m^2 for Nm/rad)
    B : ndarray, shape (...), output unit s per input unit (Nms/rad)
    K : ndarray, shape (...), output unit per input unit (Nm/rad)
    """

    I: np.ndarray
    B: np.ndarray
    K: np.ndarray


def hann_window(L: int) -> np.ndarray:
    """Symmetric Hanning window ``w(k) = 1/2 (1 - cos(2 pi k / (L - 1)))`` (004:Eq.28).

    Parameters
    ----------
    L : int
        Window length in samples (>= 3; the end points are zero).

    Returns
    -------
    ndarray, shape (L,)
    """
    L = _length(L, minimum=3)
    k = np.arange(L)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * k / (L - 1)))  # 004:Eq.28


def dpss_tapers(L: int, nw: float, n_tapers: int | None = None) -> np.ndarray:
    """Discrete prolate spheroidal (Slepian) tapers for multitaper spectra.

    Parameters
    ----------
    L : int
        Taper length in samples.
    nw : float
        Time-half-bandwidth product ``N W`` (the thesis's spectral smoothing parameter
        ``N_w``, 004 Table VI); the spectral smoothing half-width is ``nw * fs / L`` Hz.
    n_tapers : int, optional
        Number of tapers K; default ``max(1, round(2 nw) - 1)``, the usual count of
        well-concentrated tapers (MATLAB ``pmtm``'s default).

    Returns
    -------
    ndarray, shape (K, L)
        Unit-energy tapers (``sum(v**2) == 1``), ordered by decreasing concentration.
    """
    L = _length(L, minimum=3)
    nw = float(nw)
    if not (np.isfinite(nw) and 0 < nw < L / 2):
        raise DataError(f"nw must be in (0, L/2) = (0, {L / 2:g}); got {nw!r}.")
    K = max(1, round(2 * nw) - 1) if n_tapers is None else int(n_tapers)
    if not 1 <= K <= L:
        raise DataError(f"n_tapers must be in [1, L] = [1, {L}]; got {n_tapers!r}.")
    return np.atleast_2d(dpss(L, nw, Kmax=K, sym=True, norm=2))


def spectra(
    u: np.ndarray, y: np.ndarray, fs: float, *, taper: np.ndarray | None = None
) -> Spectra:
    """Auto- and cross-spectra of segments along the last axis (004:Eq.26/33).

    ``S_yu = (1/L) Y_h U_h*`` with ``U_h, Y_h`` the DFTs of the tapered segments
    (004:Eq.26-27); without a taper this is the periodogram of 004:Eq.33. With a stack of
    K tapers (multitaper), the K tapered products are averaged.

    Parameters
    ----------
    u, y : ndarray, shape (..., L)
        Input and output segments (equal shapes); the last axis is time.
    fs : float
        Sampling rate, Hz.
    taper : ndarray, shape (L,) or (K, L), optional
        Data taper (e.g. :func:`hann_window`) or K multitapers (:func:`dpss_tapers`);
        default rectangular.

    Returns
    -------
    Spectra
        ``freqs`` (F,), ``S_uu``, ``S_yy`` (..., F) real and ``S_yu`` (..., F) complex,
        F = L // 2 + 1. Average over segments (realizations) with ``mean(axis=...)``
        before forming ratios.
    """
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    if u.shape != y.shape:
        raise DataError(f"u and y must have the same shape; got {u.shape} and {y.shape}.")
    if u.ndim < 1 or u.shape[-1] < 2:
        raise DataError(f"segments need at least 2 samples on the last axis; got {u.shape}.")
    if not (np.isfinite(fs) and fs > 0):
        raise DataError(f"fs must be a positive sampling rate in Hz; got {fs!r}.")
    L = u.shape[-1]
    freqs = np.fft.rfftfreq(L, d=1.0 / fs)
    if taper is None:
        U, Y = np.fft.rfft(u, axis=-1), np.fft.rfft(y, axis=-1)
        return Spectra(
            freqs, (U.real**2 + U.imag**2) / L, (Y.real**2 + Y.imag**2) / L, Y * U.conj() / L
        )  # 004:Eq.33
    w = np.asarray(taper, dtype=float)
    if w.ndim not in (1, 2) or w.shape[-1] != L:
        raise DataError(f"taper must have shape ({L},) or (K, {L}); got {w.shape}.")
    w2 = np.atleast_2d(w)
    S_uu = np.zeros((*u.shape[:-1], freqs.size))
    S_yy = np.zeros_like(S_uu)
    S_yu = np.zeros((*u.shape[:-1], freqs.size), dtype=complex)
    for wk in w2:  # K is small (1-7 tapers); the loop keeps memory at one taper's DFTs
        U = np.fft.rfft(u * wk, axis=-1)  # 004:Eq.27 (tapered segment)
        Y = np.fft.rfft(y * wk, axis=-1)
        S_uu += U.real**2 + U.imag**2
        S_yy += Y.real**2 + Y.imag**2
        S_yu += Y * U.conj()  # 004:Eq.26
    scale = 1.0 / (L * w2.shape[0])
    return Spectra(freqs, S_uu * scale, S_yy * scale, S_yu * scale)


def frf(S_yu: np.ndarray, S_uu: np.ndarray) -> np.ndarray:
    """Frequency response ``H = S_yu / S_uu`` (004:Eq.24/32).

    Parameters
    ----------
    S_yu : ndarray, shape (..., F), complex
        (Averaged) cross-spectrum.
    S_uu : ndarray, shape (..., F), real
        (Averaged) input auto-spectrum, same shape.

    Returns
    -------
    ndarray, shape (..., F), complex
        Output unit per input unit; NaN where ``S_uu`` is zero or not finite.
    """
    S_yu = np.asarray(S_yu)
    S_uu = np.asarray(S_uu, dtype=float)
    if S_yu.shape != S_uu.shape:
        raise DataError(f"S_yu and S_uu must have the same shape; got {S_yu.shape}, {S_uu.shape}")
    ok = np.isfinite(S_uu) & (S_uu > 0)
    H = np.full(S_yu.shape, np.nan + 0j)
    np.divide(S_yu, S_uu, out=H, where=ok)  # 004:Eq.24/32
    return H


def coherence(S_uu: np.ndarray, S_yy: np.ndarray, S_yu: np.ndarray) -> np.ndarray:
    """Squared coherence ``|S_yu|^2 / (S_uu S_yy)`` in [0, 1] of averaged spectra.

    Returns
    -------
    ndarray, shape (..., F)
        NaN where an auto-spectrum is zero. Equals 1 for unaveraged (single-segment) spectra.
    """
    den = np.asarray(S_uu, dtype=float) * np.asarray(S_yy, dtype=float)
    S_yu = np.asarray(S_yu)
    out = np.full(den.shape, np.nan)
    np.divide(S_yu.real**2 + S_yu.imag**2, den, out=out, where=den > 0)
    return out


def static_gain(
    H: np.ndarray, freqs: np.ndarray, band: tuple[float, float] = (0.1, 2.5)
) -> np.ndarray:
    """Static gain as the mean FRF magnitude over a low-frequency band (004 App. B).

    The thesis takes the stiffness of a time-invariant trial as the mean of ``|H(f)|`` for
    0.1 Hz <= f <= 2.5 Hz, where the inertial and viscous terms are small.

    Parameters
    ----------
    H : ndarray, shape (..., F), complex
        FRF (impedance).
    freqs : ndarray, shape (F,), Hz
    band : (float, float), Hz
        Inclusive band ``(f_lo, f_hi)``.

    Returns
    -------
    ndarray, shape (...)
        Mean magnitude over the bins in the band, ignoring NaN bins.

    Raises
    ------
    EstimationError
        If no frequency bin falls in ``band`` (too short a segment for this band).
    """
    sel = _band(freqs, band, np.shape(H)[-1], name="band")
    mag = np.abs(np.asarray(H)[..., sel])
    with np.errstate(invalid="ignore"):
        n = np.sum(np.isfinite(mag), axis=-1)
        return np.where(n > 0, np.nansum(mag, axis=-1) / np.maximum(n, 1), np.nan)


def ibk_response(
    freqs: np.ndarray, I: np.ndarray | float, B: np.ndarray | float, K: np.ndarray | float
) -> np.ndarray:
    """Impedance of a mass-spring-damper ``H(f) = K + j w B - w^2 I``, ``w = 2 pi f``.

    The Fourier transform of ``y = I u'' + B u' + K u`` (004:Eq.4-5, impedance = 1 / H_joint).

    Parameters
    ----------
    freqs : ndarray, shape (F,), Hz
    I, B, K : float or ndarray, shape (...)
        Broadcast against each other; the result gets a trailing frequency axis.

    Returns
    -------
    ndarray, shape (..., F), complex
    """
    w = 2.0 * np.pi * np.asarray(freqs, dtype=float)
    I, B, K = (np.asarray(v, dtype=float)[..., None] for v in (I, B, K))
    return K - w**2 * I + 1j * w * B


def fit_ibk(
    H: np.ndarray,
    freqs: np.ndarray,
    *,
    band: tuple[float, float] | None = None,
    weights: np.ndarray | None = None,
) -> IBK:
    """Weighted least-squares fit of ``H(f) ~ K + j 2 pi f B - (2 pi f)^2 I``.

    Minimizes ``sum_f w_f |H(f) - K - j w B + w^2 I|^2`` over the band, which splits into
    the real part ``Re H = K - w^2 I`` (two unknowns) and the imaginary part
    ``Im H = w B`` (one unknown). Weights ``S_uu(f)`` turn this into the output-error
    criterion ``sum_f |S_yu - H_model S_uu|^2 / S_uu``, which ignores bins without input
    power. Vectorized over the leading axes (e.g. one fit per time step).

    Parameters
    ----------
    H : ndarray, shape (..., F), complex
        FRF (impedance), output unit per input unit.
    freqs : ndarray, shape (F,), Hz
    band : (float, float), optional
        Inclusive frequency band, Hz; default all bins with f > 0.
    weights : ndarray, broadcastable to H's shape, optional
        Non-negative weights per bin (e.g. the averaged input spectrum); default uniform.
        NaN ``H`` bins get weight 0.

    Returns
    -------
    IBK
        ``I``, ``B``, ``K`` of shape ``H.shape[:-1]``; NaN where a row has fewer than two
        usable bins (three parameters need two complex bins).

    Raises
    ------
    EstimationError
        If the band holds fewer than two bins.
    """
    H = np.asarray(H)
    freqs = np.asarray(freqs, dtype=float)
    if freqs.ndim != 1 or freqs.size != H.shape[-1]:
        raise DataError(f"freqs must have shape ({H.shape[-1]},); got {freqs.shape}.")
    if band is None:
        sel = freqs > 0
    else:
        sel = _band(freqs, band, H.shape[-1], name="band")
    if int(np.count_nonzero(sel)) < 2:
        raise EstimationError(
            f"fit_ibk needs at least 2 frequency bins in the band; got {int(np.sum(sel))} "
            f"(band {band}, bin spacing {freqs[1] - freqs[0] if freqs.size > 1 else 0:g} Hz)."
        )
    Hb = H[..., sel]
    wgt = np.ones(Hb.shape) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=float), H.shape
    )[..., sel]
    if np.any(wgt < 0):
        raise DataError("weights must be non-negative.")
    ok = np.isfinite(Hb) & np.isfinite(wgt)
    wgt = np.where(ok, wgt, 0.0)
    Hb = np.where(ok, Hb, 0.0)
    w = 2.0 * np.pi * freqs[sel]
    x = (w / w.max()) ** 2  # scaled regressor: Re H = K - (w_max^2 I) x
    # Real part: weighted normal equations of [1, -x] @ [K, I'] (vectorized 2x2 solve).
    s0 = wgt.sum(-1)
    s1 = (wgt * x).sum(-1)
    s2 = (wgt * x**2).sum(-1)
    r0 = (wgt * Hb.real).sum(-1)
    r1 = (wgt * x * Hb.real).sum(-1)
    det = s0 * s2 - s1**2
    npos = np.count_nonzero(wgt > 0, axis=-1)
    good = (npos >= 2) & (det > 1e-12 * np.maximum(s0 * s2, np.finfo(float).tiny))
    with np.errstate(divide="ignore", invalid="ignore"):
        K = np.where(good, (s2 * r0 - s1 * r1) / det, np.nan)
        I_scaled = np.where(good, (s1 * r0 - s0 * r1) / det, np.nan)
        I = I_scaled / w.max() ** 2
        # Imaginary part: Im H = w B (one unknown).
        B = np.where(good, (wgt * w * Hb.imag).sum(-1) / (wgt * w**2).sum(-1), np.nan)
    return IBK(I=np.asarray(I), B=np.asarray(B), K=np.asarray(K))


def fit_ibk_spectra(
    S_yu: np.ndarray,
    S_uu: np.ndarray,
    S_vu: np.ndarray,
    S_au: np.ndarray,
    freqs: np.ndarray,
    *,
    band: tuple[float, float] | None = None,
) -> IBK:
    """I-B-K fit on cross-spectra of the tapered input derivatives (leakage-free).

    A taper ``w`` does not commute with differentiation, so the FRF of short tapered
    segments is the true impedance smoothed by the taper's spectral kernel: for
    ``H = K + j w B - w^2 I`` this lowers ``Re H`` by ``I`` times the kernel's second
    moment (1.7 Nm/rad for a 40-sample Hanning window at 100 Hz and I = 0.02 kg m^2) and
    bends the FRF where the input spectrum ends. Tapering the model equation instead,
    ``w y = I (w u'') + B (w u') + K (w u)`` (004:Eq.4), gives the exact spectral identity

        S_yu(f) = I S_au(f) + B S_vu(f) + K S_uu(f),

    with ``v = u'`` (velocity), ``a = u''`` (acceleration) and ``S_xu = X_w U_w* / L`` built
    with the same taper and averages as ``S_yu``. The fit minimizes
    ``sum_f |S_yu - I S_au - B S_vu - K S_uu|^2 / S_uu`` over real I, B, K, i.e. the FRF
    misfit ``|H - H_model|^2`` weighted by ``S_uu`` (as :func:`fit_ibk` with
    ``weights=S_uu``), with ``H_model`` the model FRF seen through the same taper.

    Parameters
    ----------
    S_yu, S_vu, S_au : ndarray, shape (..., F), complex
        Averaged cross-spectra of torque, velocity and acceleration with the position.
    S_uu : ndarray, shape (..., F), real
        Averaged input auto-spectrum.
    freqs : ndarray, shape (F,), Hz
    band : (float, float), optional
        Inclusive band, Hz; default all bins with f > 0.

    Returns
    -------
    IBK
        Shapes ``S_yu.shape[:-1]``; NaN rows where the normal equations are singular or
        the spectra are NaN.
    """
    S_yu = np.asarray(S_yu)
    F = S_yu.shape[-1]
    freqs = np.asarray(freqs, dtype=float)
    if freqs.ndim != 1 or freqs.size != F:
        raise DataError(f"freqs must have shape ({F},); got {freqs.shape}.")
    for name, a in (("S_uu", S_uu), ("S_vu", S_vu), ("S_au", S_au)):
        if np.shape(a) != S_yu.shape:
            raise DataError(f"{name} must have the shape of S_yu {S_yu.shape}; got {np.shape(a)}.")
    sel = freqs > 0 if band is None else _band(freqs, band, F, name="band")
    if int(np.count_nonzero(sel)) < 2:
        raise EstimationError(
            f"fit_ibk_spectra needs at least 2 frequency bins in the band; got "
            f"{int(np.count_nonzero(sel))} (band {band})."
        )
    w_max = 2.0 * np.pi * freqs[sel].max()
    Suu = np.asarray(S_uu, dtype=float)[..., sel]
    # Regressors scaled to comparable size: (a / w_max^2, v / w_max, u) -> (I', B', K).
    X = np.stack(
        [np.asarray(S_au)[..., sel] / w_max**2, np.asarray(S_vu)[..., sel] / w_max,
         Suu.astype(complex)], axis=-2,
    )  # (..., 3, F')
    Y = S_yu[..., sel]
    ok = np.isfinite(Suu) & (Suu > 0) & np.isfinite(Y) & np.all(np.isfinite(X), axis=-2)
    inv = np.where(ok, 1.0 / np.where(ok, Suu, 1.0), 0.0)
    X = np.where(ok[..., None, :], X, 0.0)
    Y = np.where(ok, Y, 0.0)
    A = np.einsum("...jf,...kf,...f->...jk", X, X.conj(), inv).real  # normal matrix (3 x 3)
    b = np.einsum("...jf,...f,...f->...j", X.conj(), Y, inv).real
    npos = np.count_nonzero(ok, axis=-1)
    diag = np.einsum("...jj->...j", A)
    scale = np.sqrt(np.where(diag > 0, diag, 1.0))
    An = A / (scale[..., :, None] * scale[..., None, :])
    good = (npos >= 2) & np.all(diag > 0, axis=-1)
    An = np.where(good[..., None, None], An, np.eye(3))
    cond_ok = np.linalg.cond(An) < 1e10
    theta = np.linalg.solve(An, (b / scale)[..., None])[..., 0] / scale
    theta = np.where((good & cond_ok)[..., None], theta, np.nan)
    return IBK(I=theta[..., 0] / w_max**2, B=theta[..., 1] / w_max, K=theta[..., 2])


def _length(L: int, minimum: int) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < minimum:
        raise DataError(f"window length L must be an int >= {minimum}; got {L!r}.")
    return int(L)


def _band(freqs: np.ndarray, band: tuple[float, float], F: int, name: str) -> np.ndarray:
    freqs = np.asarray(freqs, dtype=float)
    if freqs.ndim != 1 or freqs.size != F:
        raise DataError(f"freqs must have shape ({F},); got {freqs.shape}.")
    try:
        lo, hi = (float(v) for v in band)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a pair (f_lo, f_hi) in Hz; got {band!r}.") from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
        raise DataError(f"{name} must satisfy 0 <= f_lo <= f_hi; got {band!r}.")
    sel = (freqs >= lo) & (freqs <= hi)
    if not sel.any():
        df = freqs[1] - freqs[0] if freqs.size > 1 else float("nan")
        raise EstimationError(
            f"no frequency bin in {name} [{lo:g}, {hi:g}] Hz (bin spacing {df:g} Hz); "
            "use longer segments or a wider band."
        )
    return sel
