"""Perturbation and noise signals (004 Sec. III-B): spectra, hold times, exact scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from bench import signals as sg
from bench.errors import InvalidParameterError

FS = 1000.0


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _runs(x: np.ndarray) -> np.ndarray:
    """Lengths of the constant runs of ``x`` (samples)."""
    edges = np.flatnonzero(np.diff(x)) + 1
    return np.diff(np.concatenate([[0], edges, [x.size]]))


# --------------------------------------------------------------------------- FGWN


def test_fgwn_perturbation_power_below_10hz_and_suppressed_above_40hz():
    x = sg.perturbation("fgwn", 200_000, FS, _rng(), std=1.0)
    f, p = sps.welch(x, fs=FS, nperseg=4096)
    total = p.sum()
    # 2nd-order 5 Hz Butterworth: ~96 % of the power below 10 Hz
    assert p[f <= 10].sum() / total > 0.93
    # plus the 4th-order 40 Hz low-pass: < 0.03 % of the power above 40 Hz
    assert p[f >= 40].sum() / total < 3e-4
    # ~ (5/60)^4 (40/60)^8 ~ 2e-6 at 60 Hz relative to 1 Hz
    assert p[np.argmin(abs(f - 60))] / p[np.argmin(abs(f - 1))] < 1e-5


def test_fgwn_shape_follows_the_butterworth_response():
    x = sg.fgwn(400_000, FS, _rng(1))
    f, p = sps.welch(x, fs=FS, nperseg=4096)
    sos = sps.butter(2, 5.0, fs=FS, output="sos")
    _, h = sps.sosfreqz(sos, worN=f, fs=FS)
    # unit-variance white noise in: two-sided PSD 1/fs, one-sided 2/fs times |H|^2
    expected = 2.0 / FS * np.abs(h) ** 2
    for lo, hi in [(0.5, 2.0), (4.0, 6.0), (9.0, 12.0), (18.0, 25.0)]:
        band = (f >= lo) & (f <= hi)
        ratio = p[band].mean() / expected[band].mean()
        assert abs(ratio - 1.0) < 0.15, (lo, hi, ratio)


# --------------------------------------------------------------------------- PRBS


@pytest.mark.parametrize("sequence", ["random", "mls"])
def test_prbs_holds_are_multiples_of_147_ms(sequence):
    x = sg.prbs(60_000, FS, _rng(2), sequence=sequence)
    assert set(np.unique(x)) == {-1.0, 1.0}
    runs = _runs(x)
    # all complete runs (the last one may be cut by the record end) are k * 147 samples
    assert np.all(runs[:-1] % 147 == 0)
    assert runs[-1] <= runs.max()
    assert abs(x.mean()) < 0.1


def test_prbs_random_switches_with_probability_one_half():
    x = sg.prbs(147 * 2000, FS, _rng(3))
    levels = x[::147]
    switched = np.mean(levels[1:] != levels[:-1])
    # 1999 Bernoulli(1/2) boundaries: s.d. 0.011, tolerance ~ 4.5 s.d.
    assert abs(switched - 0.5) < 0.05


def test_prbs_grid_stays_on_sample_zero_after_lowpass_transient_removal():
    # lowpass disabled: the raw levels must still switch on the 147-sample grid
    x = sg.perturbation("prbs", 20_000, FS, _rng(4), std=1.0, lowpass=None)
    edges = np.flatnonzero(np.diff(x)) + 1
    assert edges.size > 10
    assert np.all(edges % 147 == 0)


def test_prbs_non_integral_interval_holds_within_one_sample():
    x = sg.prbs(10_000, 100.0, _rng(5))  # 14.7 samples per interval
    runs = _runs(x)[:-1]
    k = np.round(runs / 14.7)
    assert np.all(np.abs(runs - 14.7 * k) <= 1.0)


# --------------------------------------------------------------------------- multisine


def test_multisine_thesis_lines():
    f = sg.THESIS_MULTISINE_FREQS
    assert f.size == 25
    assert f[0] == pytest.approx(0.1) and f[-1] == pytest.approx(19.3)
    np.testing.assert_allclose(np.diff(f), 0.8, atol=1e-12)


@pytest.mark.parametrize("lowpass", [None, 40.0])
def test_multisine_power_only_at_its_lines(lowpass):
    # 20 s = two periods of the 0.1 Hz grid: every line falls on an FFT bin
    x = sg.perturbation("multisine", 20_000, FS, _rng(6), std=1.0, lowpass=lowpass)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / FS)
    on = np.isin(np.round(freqs, 6), np.round(sg.THESIS_MULTISINE_FREQS, 6))
    assert on.sum() == 25
    assert spec[~on].sum() / spec.sum() < 1e-12
    # equal amplitudes (the 40 Hz low-pass changes them by < 0.3 % below 20 Hz)
    amp = spec[on]
    assert amp.max() / amp.min() < 1.01


def test_multisine_schroeder_phases_have_lower_crest_factor():
    crest = {}
    for phases in ("random", "schroeder"):
        x = sg.multisine(20_000, FS, _rng(7), phases=phases)
        crest[phases] = np.abs(x).max() / x.std()
    assert crest["schroeder"] < 2.1 < crest["random"]


def test_multisine_explicit_phases_and_freqs():
    x = sg.multisine(1000, FS, _rng(), freqs=[10.0], phases=[0.0])
    np.testing.assert_allclose(x, np.cos(2 * np.pi * 10.0 * np.arange(1000) / FS), atol=1e-12)


# --------------------------------------------------------------------------- scaling, seeds


@pytest.mark.parametrize("kind", sg.KINDS)
def test_perturbation_exact_std_zero_mean_and_deterministic(kind):
    a = sg.perturbation(kind, 5000, FS, _rng(8), std=0.0089)
    b = sg.perturbation(kind, 5000, FS, _rng(8), std=0.0089)
    c = sg.perturbation(kind, 5000, FS, _rng(9), std=0.0089)
    assert a.shape == (5000,)
    assert a.std() == pytest.approx(0.0089, rel=1e-12)
    assert abs(a.mean()) < 1e-15
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0, 20.0])
def test_measurement_noise_exact_snr(snr_db):
    y = sg.perturbation("fgwn", 50_000, FS, _rng(10), std=3.0)
    v = sg.measurement_noise(y, snr_db, FS, _rng(11))
    assert v.shape == y.shape
    assert 10 * np.log10(y.var() / v.var()) == pytest.approx(snr_db, abs=1e-10)
    assert abs(v.mean()) < 1e-12


def test_measurement_noise_is_lowpassed_at_40hz_and_works_on_2d():
    y = np.sin(np.arange(3 * 40_000) / 10.0).reshape(3, 40_000)
    v = sg.measurement_noise(y, 0.0, FS, _rng(12))
    assert v.shape == (3, 40_000)
    f, p = sps.welch(v, fs=FS, nperseg=2048, axis=-1)
    p = p.mean(axis=0)
    # 2nd-order Butterworth at 40 Hz: < (40/200)^4 = 1.6e-3 above 200 Hz, flat below 10 Hz
    assert p[f > 200].mean() / p[f < 10].mean() < 2e-3
    assert p[(f > 30) & (f < 35)].mean() / p[f < 10].mean() > 0.5


def test_measurement_noise_white_when_cutoff_none():
    y = np.sin(np.arange(100_000) / 10.0)
    v = sg.measurement_noise(y, 0.0, FS, _rng(13), cutoff=None)
    f, p = sps.welch(v, fs=FS, nperseg=1024)
    assert p[f > 300].mean() / p[(f > 1) & (f < 100)].mean() == pytest.approx(1.0, abs=0.1)


# --------------------------------------------------------------------------- decimate


def test_decimate_keeps_passband_zero_phase_and_removes_alias():
    t = np.arange(20_000) / FS
    low = np.sin(2 * np.pi * 5.0 * t)
    d = sg.decimate(low, 10)
    assert d.shape == (2000,)
    # zero phase: d[j] matches the sine at t = j / 100 (0.05 dB Chebyshev ripple, two passes)
    np.testing.assert_allclose(d[50:-50], low[::10][50:-50], atol=0.01)
    alias = sg.decimate(np.sin(2 * np.pi * 70.0 * t), 10)  # would fold to 30 Hz
    assert np.abs(alias[50:-50]).max() < 1e-4


def test_decimate_axis_and_factor_one():
    x = _rng(14).standard_normal((3, 1000))
    np.testing.assert_array_equal(sg.decimate(x, 1), x)
    d0 = sg.decimate(x.T, 5, axis=0)
    d1 = sg.decimate(x, 5)
    np.testing.assert_allclose(d0.T, d1, atol=1e-12)
    assert d1.shape == (3, 200)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sg.perturbation("chirp", 100, FS, _rng(), std=1.0), "'kind'"),
        (lambda: sg.perturbation("fgwn", 100, FS, _rng(), std=0.0), "'std'"),
        (lambda: sg.perturbation("fgwn", 1, FS, _rng(), std=1.0), "'n'"),
        (lambda: sg.perturbation("fgwn", 100, FS, _rng(), std=1.0, phases="x"), "'phases'"),
        (lambda: sg.perturbation("fgwn", 100, FS, _rng(), std=1.0, lowpass=600.0), "'lowpass'"),
        (lambda: sg.fgwn(100, FS, 0), "'rng'"),
        (lambda: sg.fgwn(100, FS, _rng(), cutoff=-1.0), "'cutoff'"),
        (lambda: sg.prbs(100, FS, _rng(), sequence="lfsr"), "'sequence'"),
        (lambda: sg.prbs(100, FS, _rng(), switch_interval=1e-4), "'switch_interval'"),
        (lambda: sg.multisine(100, FS, _rng(), freqs=[10.0, 600.0]), "'freqs'"),
        (lambda: sg.multisine(100, FS, _rng(), phases=[0.0, 1.0]), "'phases'"),
        (lambda: sg.measurement_noise(np.ones(10) * np.arange(10), "0", FS, _rng()), "'snr_db'"),
        (lambda: sg.decimate(np.zeros(100), 0), "'factor'"),
    ],
)
def test_bad_arguments_name_the_parameter(call, match):
    with pytest.raises(InvalidParameterError, match=match):
        call()
