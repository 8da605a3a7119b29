"""Misaligned realizations (issue 14): period scatter in the MSD plant, alignment before
ensemble methods, per-realization scoring, and the single-record estimator.

Measured values (seed, setting) are quoted beside each bound; the bounds leave a margin
for platform differences, not for a different behaviour.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.base import Estimator, Tags
from bench.errors import DataError, InvalidParameterError
from bench.metrics import stiffness_error
from bench.runner import run_scenario
from bench.scenario import load_scenario
from bench.signals import decimate, perturbation
from bench.store import read_records
from bench.tasks.impedance import scored_pair as _scored_pair
from bench.types import ImpedanceEstimate, Realizations
from estimators.impedance.aligned import Aligned
from estimators.impedance.kalman import KalmanSmoother
from estimators.impedance.sds import SDS
from plants.msd import MSDPlant, closed_loop_response, cycle_boundaries, profile_shape, warp_time


class ScheduleOracle(Estimator):
    """Alignment-only probe: K from the phase average of the (aligned) true K shape.

    On MSD data the schedule is the normalized true K shape, so ``50 + 100 * mean_r s(r, n)``
    is what a perfect estimator would return on these realizations: its error after mapping
    back to record time measures the alignment alone.
    """

    name = "schedule_oracle"
    tags = Tags(needs_schedule=True, min_realizations=2)
    _parameter_constraints: dict = {}

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        return ImpedanceEstimate(K=50.0 + 100.0 * data.schedule.mean(axis=0))


def _k_r(data: Realizations) -> np.ndarray:
    K_r = data.truth.K_r
    return np.broadcast_to(data.truth.K, data.u.shape) if K_r is None else K_r


def _record_error(data: Realizations, est: ImpedanceEstimate) -> float:
    return stiffness_error(_k_r(data), est.info["K_record"])


# --------------------------------------------------------------------------- plant


def test_period_scatter_truth_and_output_are_exact():
    R = 10
    plant = MSDPlant(variation="KB", K_profile="sine", B_profile="triangle", snr_db=None,
                     duration=float(R), jitter_period=0.08)
    data = plant.simulate(np.random.default_rng(4))
    b = data.meta["cycle_boundaries_s"]
    assert b[0] == 0.0 and b[-2] < R <= b[-1]
    dur = np.diff(b)
    assert 0.03 < dur.std() < 0.15 and dur.min() >= 0.5 and dur.max() <= 1.5
    # the truth from the cycle boundaries alone: phase = fraction of the current cycle
    t = np.arange(R * 1000) / 1000.0
    c = np.searchsorted(b, t, side="right") - 1
    frac = (t - b[c]) / (b[c + 1] - b[c])
    K = 100.0 + 100.0 * (profile_shape("sine", frac) - 0.5)
    B = 2.2 + 2.0 * (profile_shape("triangle", frac) - 0.5)
    np.testing.assert_allclose(data.truth.K_r, K[::10].reshape(R, 100), rtol=0, atol=1e-9)
    np.testing.assert_allclose(data.meta["B_r"], B[::10].reshape(R, 100), rtol=0, atol=1e-12)
    # ... and it is what drove the loop: same input stream (first child), loop from rest at
    # the record start (transient gone after 1 s), decimated; measured 1.1e-8 relative
    u = perturbation("fgwn", (R + 2) * 1000, 1000.0, np.random.default_rng(4).spawn(3)[0],
                     std=0.0089)[1000:(R + 1) * 1000]
    _, torque = closed_loop_response(u, K, B, inertia=0.02, Kc=20000.0, fs=1000.0)
    y = decimate(torque, 10).reshape(R, 100)
    np.testing.assert_allclose(y[1:-1], data.y[1:-1], rtol=0, atol=1e-6 * np.abs(data.y).max())
    # the realizations drift out of line: the schedule is the warped shape, not the nominal
    assert np.abs(data.schedule - data.meta["K_shape"]).max() > 0.3


def test_period_scatter_keeps_input_and_zero_level_unchanged():
    a = MSDPlant(duration=10.0).simulate(np.random.default_rng(2))
    z = MSDPlant(duration=10.0, jitter_period=0.0).simulate(np.random.default_rng(2))
    w = MSDPlant(duration=10.0, jitter_period=0.05).simulate(np.random.default_rng(2))
    np.testing.assert_array_equal(a.y, z.y)
    assert z.truth.K_r is None and w.truth.K_r.shape == (10, 100)
    np.testing.assert_array_equal(a.u, w.u)  # common random numbers across jitter levels


def test_warp_helpers():
    b = cycle_boundaries(2.0, 0.0, np.ones(3), np.ones(2))
    np.testing.assert_allclose(b, [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0])
    b = cycle_boundaries(1.0, 0.5, np.array([1.0, -3.0]), np.array([0.0]))
    np.testing.assert_allclose(b, [-1.0, 0.0, 1.5, 2.0])  # factors 1.5 and clipped 0.5
    np.testing.assert_allclose(warp_time(np.array([0.75, 1.5, 1.75]), b, 1.0), [0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="leave the warped cycles"):
        warp_time(np.array([2.5]), b, 1.0)


def test_jitter_period_is_validated():
    with pytest.raises(InvalidParameterError, match="'jitter_period' parameter of MSDPlant"):
        MSDPlant(jitter_period=0.5).simulate(np.random.default_rng(0))


# --------------------------------------------------------------------------- alignment


@pytest.mark.parametrize(("align", "bound"), [("dtw", 5.0), ("shift", 15.0)])
def test_alignment_alone_recovers_the_warped_phase(align, bound):
    # 10 % period scatter over 50 cycles (seed 0): the raw phase average misses by 32.2 %;
    # measured after alignment: dtw 3.7 %, shift 12.3 % (one anchor per realization cannot
    # follow the kinks of the warp at the cycle boundaries inside a realization)
    data = MSDPlant(jitter_period=0.1).simulate(np.random.default_rng(0))
    raw = Aligned(method="tests.test_misalignment:ScheduleOracle", align="none").estimate(data)
    est = Aligned(method="tests.test_misalignment:ScheduleOracle", align=align).estimate(data)
    assert _record_error(data, raw) > 30.0
    assert _record_error(data, est) < bound
    assert np.isfinite(est.info["K_record"]).all()
    assert est.info["kept"] >= 49 and est.info["anchors"] > (95 if align == "dtw" else 45)


@pytest.mark.parametrize(
    ("method", "jitter", "margin"),
    [
        # seed 0, 50 s, 0 dB, measured: raw unjittered | raw jittered | dtw jittered
        ("sds", {"jitter_period": 0.05}, 3.0),  # 9.6 | 19.6 | 11.0
        ("sds", {"jitter_period": 0.1}, 3.0),  # 9.6 | 30.1 | 11.2
        ("eirf", {"jitter_period": 0.05}, 3.0),  # 19.2 | 27.8 | 16.7
        ("sds", {"jitter_shift": 0.05}, 3.0),  # 9.6 | 17.8 | 9.6
    ],
)
def test_alignment_restores_ensemble_error(method, jitter, margin):
    clean = MSDPlant().simulate(np.random.default_rng(0))
    jit = MSDPlant(**jitter).simulate(np.random.default_rng(0))
    # the period's edges left to the windows that cover them in all three (the estimate of
    # the edges across the period boundary is not what alignment is tested on)
    mp = {"contiguous": False}
    e_clean = _record_error(clean, Aligned(method=method, align="none",
                                           method_params=mp).estimate(clean))
    e_raw = _record_error(jit, Aligned(method=method, align="none",
                                       method_params=mp).estimate(jit))
    e_dtw = _record_error(jit, Aligned(method=method, align="dtw",
                                       method_params=mp).estimate(jit))
    assert e_raw > e_clean + 7.0  # misalignment hurts the raw ensemble
    assert e_dtw < e_clean + margin  # alignment restores it to within the margin


def test_alignment_costs_nothing_on_aligned_data():
    # seed 0: raw 9.6 %, shift 9.4 %, dtw 9.4 %
    data = MSDPlant().simulate(np.random.default_rng(0))
    raw = SDS().estimate(data)
    for align in ("shift", "dtw"):
        est = Aligned(method="sds", align=align).estimate(data)
        assert abs(_record_error(data, est) - stiffness_error(data.truth.K, raw.K)) < 1.0


def test_rows_resampling_maps_back_with_nan_outside():
    # per-realization shifts (s.d. 50 ms, seed 3): raw 19.8 %, rows/shift 9.6 % with 5.8 %
    # of the samples uncovered (NaN) by the re-cut windows
    data = MSDPlant(jitter_shift=0.05, duration=30.0).simulate(np.random.default_rng(3))
    oracle = "tests.test_misalignment:ScheduleOracle"
    raw = Aligned(method=oracle, align="none").estimate(data)
    est = Aligned(method=oracle, align="shift", resample="rows").estimate(data)
    K_rec = est.info["K_record"]
    assert K_rec.shape == (30, 100)
    assert 0.0 < np.isnan(K_rec).mean() < 0.1
    assert _record_error(data, est) < 0.6 * _record_error(data, raw)


def test_aligned_parameters_and_data_errors():
    with pytest.raises(InvalidParameterError, match="'align' parameter of Aligned"):
        Aligned(align="warp").estimate(MSDPlant(duration=5.0).simulate(np.random.default_rng(0)))
    with pytest.raises(InvalidParameterError, match="other than 'aligned'"):
        Aligned(method="aligned")._validate()
    with pytest.raises(InvalidParameterError, match="contiguous=True"):
        Aligned(method="sds", method_params={"contiguous": True}, resample="rows")._validate()
    data = MSDPlant(duration=5.0).simulate(np.random.default_rng(0))
    with pytest.raises(DataError, match="schedul"):
        Aligned(method="sds").estimate(data.replace(schedule=None))
    part = data.schedule.copy()
    part[2] = 0.5  # one realization without variation: nothing to align it on
    with pytest.raises(DataError, match="constant"):
        Aligned(method="sds").estimate(data.replace(schedule=part))
    # a schedule constant over the whole record: used unaligned, with a warning
    flat = Aligned(method="sds").estimate(data.replace(schedule=np.ones_like(data.u)))
    np.testing.assert_array_equal(flat.K, SDS().estimate(data).K)
    assert "constant" in flat.info["warnings"][0]


def test_aligned_passes_the_shipped_estimator_checks():
    from estimators.testing import check_estimator

    check_estimator(Aligned(method="sds"))
    with pytest.raises(InvalidParameterError, match="'method' parameter of Aligned"):
        Aligned(method="no_such_method")._validate()
    with pytest.raises(InvalidParameterError, match="'method_params' parameter of Aligned"):
        Aligned(method="sds", method_params={"no_such_param": 1})._validate()


def test_aligned_passes_inner_params_and_keeps_input():
    data = MSDPlant(jitter_period=0.05, duration=20.0).simulate(np.random.default_rng(5))
    u0, y0 = data.u.copy(), data.y.copy()
    est = Aligned(method="sds", method_params={"window": 11}).estimate(data)
    assert est.info["inner"]["window"] == 11  # SDS reports the window it used
    np.testing.assert_array_equal(data.u, u0)
    np.testing.assert_array_equal(data.y, y0)
    again = Aligned(method="sds", method_params={"window": 11}).estimate(data)
    np.testing.assert_array_equal(est.info["K_record"], again.info["K_record"])


# --------------------------------------------------------------------------- single record


def test_single_record_estimator_tracks_slow_sine():
    # one 20 s record, K(t) sinusoidal 50-150 Nm/rad with a 5 s period and 10 % cycle
    # scatter, 10 dB: measured 7.2 % (seed 0) against the per-sample truth
    data = MSDPlant(duration=20.0, K_profile="sine", period=5.0, snr_db=10.0,
                    jitter_period=0.1).simulate(np.random.default_rng(0))
    est = KalmanSmoother().estimate(data)
    assert _record_error(data, est) < 10.0
    # the phase-averaged trajectory of the same ensemble (what an ensemble method sees) is
    # blurred by the scatter: the record-level estimate is better than its phase average
    assert _record_error(data, est) < stiffness_error(
        data.truth.K_r, np.broadcast_to(est.K, data.u.shape)
    )


# --------------------------------------------------------------------------- runner scoring


def test_scored_pair_prefers_k_record():
    data = MSDPlant(jitter_period=0.05, duration=5.0).simulate(np.random.default_rng(0))
    rec = np.full(data.u.shape, 100.0)
    t, e, how = _scored_pair(data, ImpedanceEstimate(K=np.zeros(100), info={"K_record": rec}))
    assert how == "K_record" and t.shape == (5, 100) and e is not None and np.all(e == 100.0)
    t, e, how = _scored_pair(data, ImpedanceEstimate(K=np.arange(100.0)))
    assert how == "K_broadcast" and e.shape == (5, 100) and np.all(e[3] == np.arange(100.0))
    plain = MSDPlant(duration=5.0).simulate(np.random.default_rng(0))
    t, e, how = _scored_pair(plain, ImpedanceEstimate(K=np.arange(100.0)))
    assert how == "K" and t.shape == (100,)


def test_runner_scores_per_realization_under_jitter(tmp_path):
    f = tmp_path / "mis.yaml"
    f.write_text(
        "name: mis\nplant: {name: msd, params: {duration: 10, jitter_period: 0.1}}\n"
        "methods:\n  - {name: sds, label: SDS}\n"
        "  - {name: 'estimators.impedance.aligned:Aligned', label: SDS+dtw,"
        " params: {method: sds}}\nseeds: [0]\nmetrics: [stiffness_error, nan_share]\n"
    )
    sc = load_scenario(f)
    run_scenario(sc, tmp_path / "out", jobs=1, progress=False)
    recs = {r["label"]: r for r in read_records(tmp_path / "out")}
    assert {r["status"] for r in recs.values()} == {"ok"}
    from bench.grid import unit_rng, units

    u = units(sc)[0]
    data = MSDPlant(duration=10.0, jitter_period=0.1).simulate(unit_rng(u.cell.data_id, u.seed))
    raw = SDS().estimate(data)
    al = Aligned(method="sds").estimate(data)
    assert recs["SDS"]["info"]["scored_on"] == "K_broadcast"
    assert recs["SDS+dtw"]["info"]["scored_on"] == "K_record"
    np.testing.assert_allclose(recs["SDS"]["metrics"]["stiffness_error"],
                               stiffness_error(data.truth.K_r, np.broadcast_to(raw.K, (10, 100))))
    np.testing.assert_allclose(recs["SDS+dtw"]["metrics"]["stiffness_error"],
                               stiffness_error(data.truth.K_r, al.info["K_record"]))


# --------------------------------------------------------------------------- study report


def test_repetitions_needed_interpolates_log_log():
    from bench.layouts.misalignment import repetitions_needed

    R = np.array([25.0, 50.0, 100.0, 200.0, 400.0])
    # error ~ 60 / sqrt(R / 25): 15 % exactly at R = 400; 30 % at 100
    err = 60.0 / np.sqrt(R / 25.0)
    val, text = repetitions_needed(R, err, 30.0)
    np.testing.assert_allclose(val, 100.0)
    assert text == "100"
    val, text = repetitions_needed(R, err * 1.0001, 15.0)
    assert math.isinf(val) and text == "> 400"
    val, text = repetitions_needed(R, err, 70.0)
    assert val == 25.0 and text == "<= 25"
    # between two runs: 20 % at 50 and 10 % at 100 -> 15 % at 50 * 2**(log(4/3)/log 2)
    val, _ = repetitions_needed(np.array([50.0, 100.0]), np.array([20.0, 10.0]), 15.0)
    np.testing.assert_allclose(val, 50.0 * 2 ** (np.log(20 / 15) / np.log(2)))
    val, text = repetitions_needed(R, np.full(5, np.nan))
    assert math.isnan(val) and text == "n/a"


def test_study_report_from_a_small_run(tmp_path):
    import json

    from bench.layouts.misalignment import summarize
    from bench.report import write_report
    from bench.store import read_plan

    f = tmp_path / "mis.yaml"
    f.write_text(
        "name: mis-small\nplant: {name: msd, params: {snr_db: 0}}\n"
        "grid: {jitter_period: [0.0, 0.1], duration: [5, 10]}\n"
        "methods:\n  - {name: sds, label: SDS}\n"
        "  - {name: 'estimators.impedance.aligned:Aligned', label: SDS+dtw,"
        " params: {method: sds}}\nseeds: [0]\nmetrics: [stiffness_error, nan_share]\n"
        "layout: {name: misalignment, target: 20}\n"
    )
    out = tmp_path / "out"
    run_scenario(load_scenario(f), out, jobs=1, progress=False)
    s = summarize(read_plan(out), read_records(out))
    assert s.jitter == ["jitter_period"] and s.levels["duration"] == [5.0, 10.0]
    assert [(m.family, m.variant) for m in s.methods] == [("sds", "raw"),
                                                          ("sds", "aligned (dtw)")]
    recs = read_records(out)
    r = next(r for r in recs if r["label"] == "SDS" and r["factors"]["jitter_period"] == 0.1
             and r["factors"]["duration"] == 10)
    assert s.table[("SDS", (0.1,), 10.0)][0] == r["metrics"]["stiffness_error"]
    paths = write_report(out)
    for key in ("md", "html", "json", "figure_error_vs_jitter", "figure_reps_vs_jitter"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    data = json.loads(paths["json"].read_text())
    assert data["levels"]["duration"] == [5.0, 10.0] and len(data["errors"]) == 8
    assert data["target_pct"] == 20.0  # the layout option
    md = paths["md"].read_text()
    assert "Repetitions needed for 20 % error" in md and "| SDS+dtw | aligned (dtw) |" in md
