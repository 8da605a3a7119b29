"""EMG processing presets (issue 13 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.emg import (
    PRESETS,
    delayed,
    envelope,
    excitation_range,
    mvc_peaks,
    process_emg,
    resample,
)
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


def test_excitation_range_and_delayed_envelopes():
    x = np.array([[0.5, -1e-9], [1.0 + 1e-12, 0.2], [-0.03, 1.02]])
    r = excitation_range(x, 0.05)
    assert (r["below"], r["above"], r["bad"]) == (2, 1, None)
    assert r["min"] == pytest.approx(-0.03) and r["max"] == pytest.approx(1.02)
    assert excitation_range(x, 0.01)["bad"] == (2, 0)  # first value beyond the tolerance
    t_in = np.arange(0.0, 1.0, 0.01)
    env = np.stack([t_in, 2 * t_in], 1)
    out, held = delayed(env, t_in, np.array([0.02, 0.5, 0.9]), 0.05)
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.45, 0.9], [0.85, 1.7]], atol=1e-12)
    assert held == 1  # 0.02 - 0.05 s is before the record: its first sample is held
    with pytest.raises(DataError, match=r"the record ends at 0\.99 s, before 1\.05 s"):
        delayed(env, t_in, np.array([0.5, 1.1]), 0.05)
