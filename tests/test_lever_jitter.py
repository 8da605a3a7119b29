"""Lever rig pivot-schedule jitter (issue 14 item 1) and the mapping report figure (issue 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.errors import InvalidParameterError
from plants.lever import LeverPlant, default_rig_path, load_rig

KW = dict(schedule="sine_1", duration=6.0, truth="theory", nonideal=False)
FS = 100.0  # Hz after decimation (004 Sec. IV-B)


def _sim(seed: int = 3, **extra):
    return LeverPlant(**KW, **extra).simulate(np.random.default_rng(seed))


@pytest.fixture(scope="module")
def nominal():
    return _sim()


def _xcorr_lags(ref: np.ndarray, K_r: np.ndarray) -> np.ndarray:
    """Circular lag (s) of each row of ``K_r`` behind ``ref`` at the correlation peak."""
    a = ref - ref.mean()
    n = a.size
    shifts = np.arange(-n // 2, n // 2)
    rolled = np.stack([np.roll(a, s) for s in shifts])  # (n, n)
    c = (K_r - K_r.mean(axis=1, keepdims=True)) @ rolled.T
    return shifts[np.argmax(c, axis=1)] / FS


def test_zero_jitter_realizations_line_up(nominal):
    K_r = nominal.truth.K_r
    assert K_r.shape == nominal.u.shape == (6, 100)
    # all realizations see the same K(t): spread < 0.01 % of the mean (ideal rig, true pivot)
    assert np.max(np.std(K_r, axis=0)) < 1e-4 * K_r.mean()
    jit = nominal.meta["jitter"]
    assert jit["lag_s"] == [0.0] * 6 and jit["amplitude_factor"] == [1.0] * 6


def test_shift_moves_each_realization_by_its_draw(nominal):
    d = _sim(jitter_shift=0.05)
    np.testing.assert_array_equal(d.u, nominal.u)  # perturbation stream unchanged
    lag = np.asarray(d.meta["jitter"]["lag_s"])
    np.testing.assert_allclose(lag, d.meta["jitter"]["shift_s"])
    assert np.std(lag) > 0.02  # s.d. 50 ms drawn
    # the true K(t) of realization r lags the nominal one by its shift (one sample: 10 ms)
    np.testing.assert_allclose(_xcorr_lags(nominal.truth.K_r[0], d.truth.K_r), lag, atol=0.011)
    # truth.K is the ensemble mean of the (now different) realizations
    np.testing.assert_allclose(d.truth.K, d.truth.K_r.mean(axis=0))
    assert np.max(np.std(d.truth.K_r, axis=0)) > 0.05 * d.truth.K_r.mean()


def test_period_scatter_drifts_out_of_line(nominal):
    d = _sim(jitter_period=0.05)
    lag = np.asarray(d.meta["jitter"]["lag_s"])
    assert lag[0] == 0.0  # warping is anchored at the experiment's start
    assert np.max(np.abs(lag)) > 0.05  # random-walk drift of the cycle boundaries
    # within a warped cycle the lag changes linearly: the correlation peak sits at the
    # mean of the lags at the realization's two ends (within 20 ms)
    ends = np.append(lag, np.nan)
    mid = 0.5 * (ends[:-1] + ends[1:])
    got = _xcorr_lags(nominal.truth.K_r[0], d.truth.K_r)
    np.testing.assert_allclose(got[:-1], mid[:-1], atol=0.02)


def test_amplitude_scatter_scales_each_excursion(nominal):
    d = _sim(jitter_amplitude=0.2)
    fac = np.asarray(d.meta["jitter"]["amplitude_factor"])
    assert np.std(fac) > 0.05
    ratio = np.ptp(d.schedule, axis=1) / np.ptp(nominal.schedule, axis=1)
    np.testing.assert_allclose(ratio, fac, rtol=0.01)  # measured pivot excursion
    assert d.meta["jitter"]["lag_s"] == [0.0] * 6


def test_large_amplitude_jitter_stays_within_travel():
    rig = load_rig(None).ideal()
    g = rig.geometry
    plant = LeverPlant(schedule="sine_2", duration=3.0, nonideal=False, truth="theory",
                       pivot_amplitude=0.025, jitter_amplitude=2.0)
    t = np.arange(-500, 8000) / 2500.0
    ref, _, _, amp, _ = plant._reference(t, rig, np.random.default_rng(1))
    assert amp.max() * 0.025 > g.pivot_max - 0.25  # unclipped it would leave the travel
    assert ref.min() >= g.pivot_min and ref.max() <= g.pivot_max  # commanded: clipped
    d = plant.simulate(np.random.default_rng(0))
    # measured: the PID may overshoot a clipped edge, but not past the limit switches
    assert d.schedule.min() >= g.pivot_min - g.overtravel
    assert d.schedule.max() <= g.pivot_max + g.overtravel


def test_jitter_is_deterministic_per_seed():
    kw = dict(jitter_shift=0.03, jitter_period=0.05, jitter_amplitude=0.1)
    a, b, c = _sim(5, **kw), _sim(5, **kw), _sim(6, **kw)
    np.testing.assert_array_equal(a.truth.K_r, b.truth.K_r)
    assert a.meta["jitter"] == b.meta["jitter"]
    assert a.meta["jitter"]["shift_s"] != c.meta["jitter"]["shift_s"]


@pytest.mark.parametrize("name, value", [
    ("jitter_period", -0.01), ("jitter_period", 0.5), ("jitter_shift", -1.0),
    ("jitter_amplitude", -0.1), ("jitter_shift", "0.1"),
])
def test_jitter_parameter_errors_name_the_parameter(name, value):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        LeverPlant(**KW, **{name: value}).simulate(np.random.default_rng(0))


def test_report_figures_draw_the_mapping(tmp_path):
    # short mapping trials (10 s instead of the rig file's 60 s) keep this test fast
    spec = yaml.safe_load(Path(default_rig_path()).read_text())
    spec["mapping"]["duration"] = 10.0
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump(spec))
    plan = {"plant": {"name": "lever", "params": {"rig": str(rig), "truth": "mapped"}},
            "grid": {"perturbation": ["fgwn", "prbs"], "duration": [24, 50]}}
    figs = LeverPlant.report_figures(plan)
    assert list(figs) == ["mapping"] and figs["mapping"].startswith(b"\x89PNG\r\n\x1a\n")
    # a grid over the ideal switch gives one figure per rig setting
    plan["grid"]["nonideal"] = [True, False]
    figs2 = LeverPlant.report_figures(plan)
    assert list(figs2) == ["mapping_1", "mapping_2"]
    assert figs2["mapping_1"] == figs["mapping"] and figs2["mapping_2"] != figs["mapping"]
