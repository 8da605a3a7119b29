"""Derivatives of band-limited sampled signals.

Position perturbations are low-passed (40 Hz) and sampled at 100 Hz or faster, so their
derivatives are computed in the frequency domain: multiply the DFT by (j 2 pi f)^n.
Finite differences would lose 7-25 % of the gain at 20 Hz at 100 Hz sampling.
"""

from __future__ import annotations

import numpy as np

from bench.errors import DataError

__all__ = ["spectral_derivative"]


def spectral_derivative(
    x: np.ndarray, fs: float, order: int = 1, *, axis: int = -1, periodic: bool = False
) -> np.ndarray:
    """n-th time derivative of a band-limited signal by FFT.

    Parameters
    ----------
    x : ndarray, shape (..., T)
        Signal sampled at ``fs`` (unit U).
    fs : float
        Sampling rate, Hz.
    order : int
        Derivative order n >= 0.
    axis : int
        Time axis.
    periodic : bool
        True when ``x`` is exactly periodic over its length (no extension). Otherwise the
        record is extended by its mirror image (even reflection), which keeps the
        extension continuous; the derivative is accurate away from the first/last few
        samples.

    Returns
    -------
    ndarray, same shape as ``x``, U / s^n
    """
    if order < 0:
        raise DataError(f"derivative order must be >= 0; got {order}")
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    T = x.shape[-1]
    ext = x if periodic else np.concatenate([x, x[..., ::-1]], axis=-1)
    n = ext.shape[-1]
    f = np.fft.rfftfreq(n, d=1.0 / fs)
    mult = (2j * np.pi * f) ** order
    if n % 2 == 0 and order % 2 == 1:
        mult[-1] = 0.0  # the Nyquist bin of an odd derivative has no real representation
    d = np.fft.irfft(np.fft.rfft(ext, axis=-1) * mult, n=n, axis=-1)[..., :T]
    return np.moveaxis(d, -1, axis)
