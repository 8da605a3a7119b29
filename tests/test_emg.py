"""EMG processing presets (issue 13 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.emg import PRESETS, envelope, mvc_peaks, process_emg, resample
from bench.errors import DataError

FS = 2048.0


def _raw(amplitude, seconds=4.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    carrier = rng.standard_normal(t.size)
    return (amplitude(t) * carrier)[:, None], t


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_envelope_tracks_slow_amplitude(preset):
    amp = lambda t: 0.5 + 0.4 * np.sin(2 * np.pi * 0.5 * t)  # noqa: E731
    raw, t = _raw(amp)
    env = envelope(raw, FS, preset)[:, 0]
    mid = slice(int(0.5 * FS), int(3.5 * FS))
    # envelope of |white noise| is proportional to the amplitude (mean |N(0,1)| ~ 0.8 after
    # the band-pass keeps part of the band); the shape correlation is what matters
    assert np.corrcoef(env[mid], amp(t[mid]))[0, 1] > 0.95


def test_normalization_to_mvc_and_resampling():
    raw, _ = _raw(lambda t: 0.3 + 0 * t)
    mvc, _ = _raw(lambda t: 1.0 + 0 * t, seed=1)
    peaks = mvc_peaks([mvc], FS)
    exc = process_emg(raw, FS, peaks, t_out=np.arange(0.5, 3.5, 1 / 128))
    assert exc.shape == (384, 1)
    assert 0.2 < np.median(exc) < 0.4  # 30 % of MVC amplitude
    assert exc.min() >= 0 and exc.max() <= 1


def test_errors():
    with pytest.raises(DataError, match="unknown EMG preset"):
        envelope(np.zeros((100, 1)), FS, "999")
    with pytest.raises(DataError, match="NaN"):
        envelope(np.array([[0.0], [np.nan]] * 50), FS)
    with pytest.raises(DataError, match="needs fs"):
        envelope(np.zeros((100, 1)), 500.0)
    with pytest.raises(DataError, match="cannot resample"):
        resample(np.zeros((10, 1)), np.arange(10.0), np.array([0.0, 20.0]))
