"""Alignment of misaligned realizations (issue 14 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.align import align_realizations, bandlimited_interp, phase_to_time
from bench.errors import DataError
from bench.types import Realizations

FS, R, N = 100.0, 60, 100


def _warped_record(profile, sd=0.08, seed=1):
    """Cycles with jittered boundaries b_c = c + N(0, sd) s: continuous, warped phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(R * N) / FS
    b = np.arange(R + 2) + np.r_[0.0, rng.normal(0.0, sd, R + 1)]
    phase = np.interp(t, b, np.arange(R + 2)) % 1.0
    K = profile(phase)
    u = rng.standard_normal(t.size)
    sched = K + rng.normal(0.0, 2.0, t.size)  # observed schedule, 2 % noise
    return Realizations.from_record(u, K * u, FS, 1.0, schedule=sched), K.reshape(R, N)


def _err(K_true, K_time):
    ok = np.isfinite(K_time)
    return 100 * np.sqrt(np.mean((K_time[ok] - K_true[ok]) ** 2)) / np.sqrt(np.mean(K_true**2))


@pytest.mark.parametrize(
    ("profile", "bound"),
    [
        (lambda p: 100 + 50 * np.tanh(3 * np.sin(2 * np.pi * p)), 3.0),  # measured 1.7 %
        (lambda p: np.where(p < 0.5, 150.0, 50.0), 7.0),  # measured 4.5 %
    ],
)
def test_dtw_alignment_restores_phase_average(profile, bound):
    data, K = _warped_record(profile)
    naive = _err(K, np.broadcast_to(K.mean(axis=0), K.shape))
    al = align_realizations(data, method="dtw")
    # phase-average the true K along the aligned sample positions, map back to time
    K_aligned = np.interp(al.source_time * FS, np.arange(R * N), K.ravel())
    back = phase_to_time(K_aligned.mean(axis=0), al, R, N)
    assert naive > 14.0
    assert _err(K, back) < bound
    assert np.isfinite(back).mean() > 0.9


def test_shift_registration_recovers_pure_shifts():
    rng = np.random.default_rng(3)
    shifts = rng.integers(-8, 9, R)
    t = np.arange(R * N + 40)
    base = np.sin(2 * np.pi * t / N) + 0.5 * np.sin(4 * np.pi * t / N)
    rec = np.concatenate([base[20 + s + r * N: 20 + s + (r + 1) * N] for r, s in enumerate(shifts)])
    data = Realizations.from_record(rec, rec, FS, 1.0, schedule=rec)
    al = align_realizations(data, method="shift")
    est = al.shifts * FS
    # shifts are relative to the median realization
    np.testing.assert_allclose(est - est[0], -(shifts - shifts[0]), atol=0.05)


def test_bandlimited_interp_is_exact_for_band_limited_signal():
    t = np.arange(2000)
    x = np.sin(2 * np.pi * 0.13 * t) + 0.3 * np.cos(2 * np.pi * 0.31 * t)
    q = np.linspace(100, 1900, 777) + 0.37
    ref = np.sin(2 * np.pi * 0.13 * q) + 0.3 * np.cos(2 * np.pi * 0.31 * q)
    np.testing.assert_allclose(bandlimited_interp(x, q), ref, atol=5e-3)


def test_alignment_errors():
    d = Realizations(u=np.ones((3, 10)), y=np.ones((3, 10)), fs=FS)
    with pytest.raises(DataError, match="scheduling signal"):
        align_realizations(d)
    with pytest.raises(DataError, match="constant"):
        align_realizations(d, signal=np.ones((3, 10)))
    with pytest.raises(DataError, match="unknown alignment method"):
        align_realizations(d, method="warp")
