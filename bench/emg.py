"""EMG processing into muscle excitations: the one place it is done.

Band-pass, full-wave rectification, low-pass linear envelope, normalization to MVC trials,
resampling onto the model's time base. Named presets reproduce the papers' settings:

``"000"`` (seed 000 Sec. 2.3)
    zero-lag 2nd-order Butterworth band-pass 20-300 Hz, rectification, zero-lag 2nd-order
    Butterworth low-pass 3 Hz, normalized by the MVC, resampled (paper: 1024 Hz).
``"001"`` (seed 001 Sec. II-C)
    3rd-order Butterworth band-pass 30-300 Hz, rectification, 4th-order Butterworth
    low-pass 5 Hz, normalized by the MVC. The paper does not say zero-lag; we apply the
    filters forward-backward (zero lag) as the usual linear-envelope practice and say so.

"Zero-lag" filters run forward and backward (``scipy.signal.sosfiltfilt``), which squares
the magnitude response; the order named is that of the designed filter, as in the papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from bench.errors import DataError

__all__ = ["PRESETS", "EMGSettings", "delayed", "envelope", "excitation_range", "mvc_peaks",
           "process_emg", "resample"]


@dataclass(frozen=True)
class EMGSettings:
    """Filter settings of a linear-envelope pipeline.

    Attributes
    ----------
    band : (float, float), Hz
        Band-pass corner frequencies.
    band_order : int
        Butterworth order of the band-pass design.
    lowpass : float, Hz
        Envelope low-pass cut-off.
    lowpass_order : int
    zero_lag : bool
        Forward-backward filtering.
    """

    band: tuple[float, float] = (20.0, 300.0)
    band_order: int = 2
    lowpass: float = 3.0
    lowpass_order: int = 2
    zero_lag: bool = True


PRESETS: dict[str, EMGSettings] = {
    "000": EMGSettings((20.0, 300.0), 2, 3.0, 2, True),
    "001": EMGSettings((30.0, 300.0), 3, 5.0, 4, True),
}


def _settings(preset: str | EMGSettings) -> EMGSettings:
    if isinstance(preset, EMGSettings):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise DataError(
            f"unknown EMG preset {preset!r}; expected one of {sorted(PRESETS)}"
        ) from None


def envelope(raw: np.ndarray, fs: float, preset: str | EMGSettings = "000") -> np.ndarray:
    """Linear envelope of raw EMG.

    Parameters
    ----------
    raw : ndarray, shape (T, C), V (or any unit)
    fs : float, Hz
    preset : str or EMGSettings

    Returns
    -------
    ndarray, shape (T, C), same unit, non-negative
    """
    s = _settings(preset)
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 1:
        raw = raw[:, None]
    if not np.all(np.isfinite(raw)):
        bad = np.argwhere(~np.isfinite(raw))[0]
        raise DataError(f"raw EMG has NaN/inf at sample {bad[0]}, channel {bad[1]}")
    nyq = fs / 2
    if s.band[1] >= nyq:
        raise DataError(
            f"band-pass upper corner {s.band[1]} Hz needs fs > {2 * s.band[1]} Hz; got {fs}"
        )
    filt = signal.sosfiltfilt if s.zero_lag else signal.sosfilt
    sos_b = signal.butter(s.band_order, [s.band[0] / nyq, s.band[1] / nyq], "bandpass",
                          output="sos")
    sos_l = signal.butter(s.lowpass_order, s.lowpass / nyq, output="sos")
    env = filt(sos_l, np.abs(filt(sos_b, raw, axis=0)), axis=0)
    return np.maximum(env, 0.0)


def mvc_peaks(mvc_raw: list[np.ndarray], fs: float, preset: str | EMGSettings = "000"):
    """Per-channel normalization value: the peak envelope over MVC trials, shape (C,)."""
    peaks = np.max(np.stack([envelope(m, fs, preset).max(axis=0) for m in mvc_raw]), axis=0)
    if np.any(peaks <= 0):
        raise DataError("an MVC trial has a zero envelope on some channel")
    return peaks


def resample(x: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation of (T, C) samples at times ``t_in`` onto ``t_out`` (s).

    Raises if ``t_out`` leaves the span of ``t_in`` (no extrapolation).
    """
    x = np.asarray(x, dtype=float)
    if t_out[0] < t_in[0] - 1e-9 or t_out[-1] > t_in[-1] + 1e-9:
        raise DataError(
            f"cannot resample onto [{t_out[0]}, {t_out[-1]}] s: the data cover "
            f"[{t_in[0]}, {t_in[-1]}] s"
        )
    if x.ndim == 1:
        return np.interp(t_out, t_in, x)
    return np.stack([np.interp(t_out, t_in, x[:, c]) for c in range(x.shape[1])], axis=1)


def process_emg(
    raw: np.ndarray,
    fs: float,
    mvc: np.ndarray,
    *,
    preset: str | EMGSettings = "000",
    t_out: np.ndarray | None = None,
    clip: bool = True,
) -> np.ndarray:
    """Raw EMG to muscle excitations: envelope / MVC peak, optionally resampled.

    Parameters
    ----------
    raw : ndarray, shape (T, C)
    fs : float, Hz
    mvc : ndarray, shape (C,)
        Normalization values (see :func:`mvc_peaks`).
    preset : str or EMGSettings
    t_out : ndarray, optional
        Model time base, s, measured from the first raw sample.
    clip : bool
        Clip to [0, 1] (excitations above the MVC envelope are set to 1).

    Returns
    -------
    ndarray, shape (T_out, C), dimensionless
    """
    env = envelope(raw, fs, preset) / np.asarray(mvc, dtype=float)[None, :]
    if t_out is not None:
        env = resample(env, np.arange(env.shape[0]) / fs, np.asarray(t_out, dtype=float))
    return np.clip(env, 0.0, 1.0) if clip else env


# --------------------------------------------------------------------------- envelopes as given


def excitation_range(x: np.ndarray, tolerance: float) -> dict:
    """How far processed excitations leave [0, 1].

    Envelopes filtered forward and backward undershoot below zero where the signal is
    quiet; such small excursions are clipped, larger ones mean the data are not
    excitations.

    Parameters
    ----------
    x : ndarray, shape (T, C)
    tolerance : float
        Excursions within [-tolerance, 1 + tolerance] are acceptable (then clipped).

    Returns
    -------
    dict
        ``below`` and ``above``: samples below 0 / above 1 (by more than 1e-9, the
        rounding of a file's digits); ``min``, ``max``; ``bad``:
        ``(row, column)`` of the first value beyond the tolerance, or None.
    """
    x = np.asarray(x, dtype=float)
    far = (x < -tolerance) | (x > 1.0 + tolerance)
    bad = None
    if far.any():
        k, c = np.argwhere(far)[0]
        bad = (int(k), int(c))
    return {"below": int(np.sum(x < 0)), "above": int(np.sum(x > 1.0 + 1e-9)),
            "min": float(x.min()),
            "max": float(x.max()), "bad": bad}


def delayed(x: np.ndarray, t_in: np.ndarray, t_model: np.ndarray,
            delay: float = 0.0) -> tuple[np.ndarray, int]:
    """Envelope samples at ``t_model - delay`` (the electromechanical delay applied to the
    data), linearly interpolated from samples at ``t_in``.

    Samples recorded before the model time base (pre-roll) supply the delayed values at the
    start; where the record does not reach back far enough, its first sample is held (as the
    model's own delay does at a record start).

    Parameters
    ----------
    x : ndarray, shape (T_in, C)
    t_in : ndarray, shape (T_in,), s
    t_model : ndarray, shape (T,), s
    delay : float, s

    Returns
    -------
    values : ndarray, shape (T, C)
    held : int
        Model samples whose delayed time falls before the first recorded sample.

    Raises
    ------
    DataError
        The record ends before ``t_model[-1] - delay`` (no extrapolation).
    """
    tq = np.asarray(t_model, dtype=float) - float(delay)
    t_in = np.asarray(t_in, dtype=float)
    if tq[-1] > t_in[-1] + 1e-9:
        raise DataError(f"the record ends at {t_in[-1]:.6g} s, before {tq[-1]:.6g} s "
                        f"(last model sample {t_model[-1]:.6g} s minus the delay {delay:g} s)")
    held = int(np.sum(tq < t_in[0] - 1e-9))
    tq = np.maximum(tq, t_in[0])
    return resample(x, t_in, tq), held
