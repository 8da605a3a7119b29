"""Tests of the variable-stiffness lever rig (004 Sec. IV, App. B; plants/lever)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import spectra as sp
from bench.errors import InvalidParameterError
from bench.signals import perturbation
from bench.types import Realizations
from plants.lever import (
    NONIDEAL_EFFECTS,
    LeverPlant,
    LeverRig,
    PivotPID,
    RigFileError,
    counts_from_position,
    default_rig_path,
    load_rig,
    mapping_figure,
    pivot_trajectory,
    simulate_record,
    theoretical_stiffness,
    true_stiffness_mapping,
)

RIG = load_rig()
FS = RIG.sampling.fs


def _static_gain(rec, n0: int) -> np.ndarray:
    """Mean |FRF| over 0.1-2.5 Hz of each row of a record (004:Eq.32-33, App. B)."""
    u, y = rec.actuator[..., n0:], rec.force[..., n0:]
    s = sp.spectra(u - u.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True), FS)
    return sp.static_gain(sp.frf(s.S_yu, s.S_uu), s.freqs, (0.1, 2.5))


# --------------------------------------------------------------------------- Eq. 34


def test_eq34_closed_form():
    # 004:Eq.34, K1 = ((r - r1) / r1)^2 K2 with r = 0.5 m, K2 = 2000 N/m
    K = theoretical_stiffness([0.25, 0.2, 0.3], RIG)
    np.testing.assert_allclose(K, [2000.0, 2.25 * 2000.0, (0.2 / 0.3) ** 2 * 2000.0], rtol=1e-12)


@pytest.mark.parametrize("kind", ["fgwn", "prbs"])
def test_ideal_mapping_matches_eq34(kind):
    # 004 App. B on the ideal rig (20 s trials here, 60 s in the rig file): both the trial
    # static gains and the quadratic fit must lie within 2 % of 004:Eq.34.
    rig = RIG.ideal()
    m = true_stiffness_mapping(rig, kind, duration=20.0)
    assert m.positions.shape == (5,)
    theory = theoretical_stiffness(m.positions, rig)
    np.testing.assert_allclose(m.stiffness, theory, rtol=0.02)
    p = np.linspace(rig.geometry.pivot_min, rig.geometry.pivot_max, 50)
    np.testing.assert_allclose(m(p), theoretical_stiffness(p, rig), rtol=0.02)


def test_nonideal_mappings_differ_and_figure():
    # With the non-idealities on, the FGWN and PRBS mappings differ (004 Sec. IV-D, V-E):
    # the PRBS (0/5 mm, mean 2.5 mm) slackens the springs more, so its mapping is lower.
    maps = {k: true_stiffness_mapping(RIG, k, duration=20.0) for k in ("fgwn", "prbs")}
    p = np.asarray(RIG.mapping.positions)
    kf, kp = maps["fgwn"](p), maps["prbs"](p)
    assert np.all(kf < theoretical_stiffness(p, RIG))
    rel = np.abs(kf - kp) / kf
    assert rel.max() > 0.05
    assert np.sqrt(np.mean(kp**2)) < np.sqrt(np.mean(kf**2))  # RMS lower for PRBS (Sec. V-D)
    fig = mapping_figure(RIG, maps)
    ax = fig.axes[0]
    assert len(ax.lines) == 5  # theory + (trials, fit) x 2


# --------------------------------------------------------------------------- PID


def test_pid_step_settles_within_300ms():
    # 20 mm pivot step at t = 0.1 s: the firmware PID (500 Hz) brings the pivot within
    # +-0.5 mm of the target within 0.3 s and overshoots by less than 5 mm.
    n = int(1.2 * FS)
    t = np.arange(n) / FS
    ref = np.where(t < 0.1, 0.25, 0.27)
    rec = simulate_record(RIG, np.zeros(n), ref, np.random.default_rng(0), backend="python")
    e = rec.pivot_true - 0.27
    after = t >= 0.1 + 0.3
    assert np.max(np.abs(e[after])) < 0.5e-3
    assert np.max(e) < 5e-3
    assert np.abs(rec.pivot_true[int(0.1 * FS) - 1] - 0.25) < 0.5e-3  # held before the step


def test_pid_integer_arithmetic():
    pid = PivotPID(RIG.controller)
    pid.reset(500)
    c = RIG.controller
    pwm = pid.update(setpoint=510, measurement=500)
    # (kp e + ki sum(e) + kd * 0) >> shift with e = 10
    assert pwm == min(c.pwm_max, (c.kp * 10 + c.ki * 10) >> c.shift)
    pwm = pid.update(setpoint=0, measurement=1000)
    assert pwm == -c.pwm_max  # saturates
    assert abs(pid.integral) <= c.integral_limit


# --------------------------------------------------------------------------- backlash


def test_backlash_makes_stiffness_amplitude_dependent():
    # Play at the pivot bearing (0.2 mm, held by 1 N of friction): small perturbations lose a
    # larger share of their motion in the play, so the apparent stiffness grows with amplitude.
    others = tuple(e for e in NONIDEAL_EFFECTS if e != "backlash")
    stds = [0.0003, 0.004]  # m
    n0, n = int(FS), int(12 * FS)
    out = {}
    for name, rig in {"play": RIG.ideal(others), "ideal": RIG.ideal()}.items():
        rng = np.random.default_rng(3)
        cmd = np.stack([perturbation("fgwn", n0 + n, FS, rng, std=s) for s in stds])
        rec = simulate_record(rig, cmd, np.full_like(cmd, 0.25), rng)
        out[name] = _static_gain(rec, n0) / theoretical_stiffness(0.25, rig)
    small, large = out["play"]
    assert small < 0.8 * large  # measured 0.66 vs 0.96
    assert large > 0.9
    np.testing.assert_allclose(out["ideal"], out["ideal"][1], rtol=0.01)  # no play: linear


# --------------------------------------------------------------------------- rig files


def _write(tmp_path, text, name="default.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_rig_loads():
    rig = load_rig(default_rig_path())
    assert rig == RIG
    assert rig.control_divider == 5
    assert rig.sensors.pivot.count_range == (0.0, 1023.0)


def test_invalid_rig_value_names_file_line_and_field(tmp_path):
    text = default_rig_path().read_text().replace("  kt: 0.02 ", "  kt: -0.02 ")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("  kt:"))
    with pytest.raises(RigFileError) as exc:
        load_rig(_write(tmp_path, text))
    msg = str(exc.value)
    assert f"default.yaml:{line}: motor.kt: must be > 0 (got -0.02)" in msg


def test_invalid_rig_unknown_and_missing_keys(tmp_path):
    text = default_rig_path().read_text()
    text = text.replace("  kd: 6000", "  kd: 6000\n  kdd: 1").replace("  lead: 0.008", "")
    with pytest.raises(RigFileError) as exc:
        load_rig(_write(tmp_path, text, "bad.yaml"))
    msg = str(exc.value)
    assert "controller.kdd: unknown key" in msg
    assert "lead_screw.lead: missing required field" in msg
    assert msg.count("bad.yaml:") == 2


def test_invalid_rig_cross_checks(tmp_path):
    d = RIG.model_dump()
    d["controller"]["rate"] = 700.0
    with pytest.raises(RigFileError, match=r"controller\.rate"):
        load_rig(d)
    d = RIG.model_dump()
    d["geometry"]["pivot_min"] = 0.3
    with pytest.raises(RigFileError, match=r"geometry: .*pivot_min"):
        load_rig(d)
    with pytest.raises(RigFileError, match="invalid YAML"):
        load_rig(_write(tmp_path, "geometry: [1, 2\n"))
    with pytest.raises(InvalidParameterError, match="unknown non-ideality"):
        RIG.ideal(("friction",))


# --------------------------------------------------------------------------- stepping


def _stepped(seed: int, n: int = 500) -> list:
    rig = LeverRig(RIG)
    r = rig.reset(np.random.default_rng(seed), pivot0=0.25)
    out = [r]
    for k in range(n):
        out.append(rig.step(1.0 / FS, 0.3, 0.002 * np.sin(k / 50.0)))
    return out


def test_stepping_is_deterministic_and_quantized():
    a, b, c = _stepped(1), _stepped(1), _stepped(2)
    assert a == b
    assert a != c
    r = a[-1]
    assert isinstance(r.pivot_counts, int) and 0 <= r.pivot_counts <= 1023
    s = RIG.sensors.pivot
    assert r.pivot_position == pytest.approx(r.pivot_counts * s.scale + s.offset, abs=1e-15)
    assert a[-1].pivot_position > a[0].pivot_position  # duty +0.3 drives the pivot up
    assert a[-1].t == pytest.approx(500 / FS)


def test_limit_switch_cuts_drive_at_end_of_travel():
    rig = LeverRig(RIG)
    rig.reset(np.random.default_rng(0), pivot0=0.25)
    for _ in range(1500):  # 0.6 s at full duty: ~0.5 m/s against a 30 mm travel
        r = rig.step(1.0 / FS, 1.0, 0.0)
    g = RIG.geometry
    assert r.limit_high and not r.limit_low
    assert g.pivot_max <= rig.state.p <= g.pivot_max + g.overtravel
    assert abs(rig.state.vp) < 1e-9  # came to rest (coasted into the hard stop)
    assert abs(r.motor_current) < 1e-6  # the switch cut the drive: no current at rest


def test_step_substeps_converge():
    # one 0.4 ms step vs the same interval in 4 sub-steps: same physics to within 1 %
    rig1, rig2 = LeverRig(RIG.ideal()), LeverRig(RIG.ideal())
    for rig in (rig1, rig2):
        rig.reset(np.random.default_rng(0), 0.25)
    for k in range(200):
        x = 0.002 * np.sin(2 * np.pi * 2 * k / FS)
        a = rig1.step(1 / FS, 0.0, x)
        for _ in range(4):
            b = rig2.step(1 / (4 * FS), 0.0, x)
    assert a.force == pytest.approx(b.force, rel=0.01, abs=0.02)


def test_batch_scan_equals_stepping_loop():
    # The compiled batch path runs the same equations as LeverRig.step (+ PivotPID).
    n = int(0.4 * FS)
    t = np.arange(n) / FS
    x = 0.002 * np.sin(2 * np.pi * 3 * t)
    p = pivot_trajectory(t, "sine", 2.0, 0.02, 0.25)
    a = simulate_record(RIG, x, p, np.random.default_rng(7))
    b = simulate_record(RIG, x, p, np.random.default_rng(7), backend="python")
    for f in ("actuator", "force", "pivot", "pivot_true", "force_true", "current", "duty"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-9, err_msg=f)


def test_counts_from_position_clips_to_adc_range():
    c = counts_from_position([0.0, 0.25, 1.0], RIG)
    assert c[0] == 0 and c[2] == 1023
    assert c[1] == np.round((0.25 - RIG.sensors.pivot.offset) / RIG.sensors.pivot.scale)


# --------------------------------------------------------------------------- plant


def test_pivot_trajectories():
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pivot_trajectory(t, "sine", 1.0, 0.02, 0.25),
                               [0.25, 0.27, 0.25, 0.23, 0.25], atol=1e-12)
    np.testing.assert_allclose(pivot_trajectory(t, "square", 1.0, 0.02, 0.25),
                               [0.27, 0.27, 0.23, 0.23, 0.27])
    np.testing.assert_allclose(pivot_trajectory(t, "custom", 1.0, profile=[0.23, 0.27]),
                               [0.23, 0.25, 0.27, 0.25, 0.23])


@pytest.mark.parametrize(
    ("schedule", "shape"), [("square_0.5", (12, 200)), ("sine_2", (48, 50))]
)
def test_plant_decimated_shapes_and_truth(schedule, shape):
    plant = LeverPlant(schedule=schedule, duration=24.0, truth="theory")
    d = plant.simulate(np.random.default_rng(0))
    assert isinstance(d, Realizations)
    assert d.fs == 100.0
    assert d.u.shape == d.y.shape == d.schedule.shape == shape
    assert d.truth.K.shape == (shape[1],) and d.truth.K_r.shape == shape
    g = RIG.geometry
    assert g.pivot_min - 0.005 < d.schedule.min() < 0.235
    assert 0.265 < d.schedule.max() < g.pivot_max + 0.005
    # theory truth is Eq. 34 at the pivot: stiff where the pivot is low
    lo = d.schedule.mean(0) < 0.25
    assert d.truth.K[lo].mean() > d.truth.K[~lo].mean()
    assert abs(d.u.std() - 0.002) < 0.0003  # FGWN std 2 mm after decimation


def test_plant_mapped_truth_is_seed_independent():
    a = LeverPlant(schedule="sine_1", duration=10.0).simulate(np.random.default_rng(1))
    b = LeverPlant(schedule="sine_1", duration=10.0).simulate(np.random.default_rng(2))
    assert a.meta["mapping"]["coef"] == b.meta["mapping"]["coef"]
    assert not np.allclose(a.u, b.u)
    assert a.truth.K.min() > 500 and a.truth.K.max() < 5000


def test_plant_parameter_errors():
    with pytest.raises(InvalidParameterError, match="not both"):
        LeverPlant(schedule="sine_1", pivot_shape="sine", pivot_freq=1.0)._validate()
    with pytest.raises(InvalidParameterError, match="pivot_amplitude"):
        LeverPlant(pivot_amplitude=0.05)._validate()
    with pytest.raises(InvalidParameterError, match="'perturbation' parameter"):
        LeverPlant(perturbation="multisine")._validate()
    with pytest.raises(InvalidParameterError, match="'disable' parameter"):
        LeverPlant(disable=["gravity"])._validate()
    with pytest.raises(InvalidParameterError, match="pivot_profile"):
        LeverPlant(schedule=None, pivot_shape="custom", pivot_freq=1.0)._validate()
    LeverPlant(schedule=None, pivot_shape="custom", pivot_freq=1.0,
               pivot_profile=[0.24, 0.26, 0.25])._validate()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fgwn", "prbs"])
def test_ideal_mapping_full_60s_trials(kind):
    rig = RIG.ideal()
    m = true_stiffness_mapping(rig, kind)
    np.testing.assert_allclose(m.stiffness, theoretical_stiffness(m.positions, rig), rtol=0.02)


def test_plant_drift_changes_device_not_truth():
    kw = dict(schedule="sine_2", duration=10.0, truth="theory", nonideal=False)
    a = LeverPlant(**kw).simulate(np.random.default_rng(4))
    b = LeverPlant(drift=0.1, **kw).simulate(np.random.default_rng(4))
    np.testing.assert_allclose(a.u, b.u)
    np.testing.assert_allclose(a.truth.K, b.truth.K)
    assert np.std(b.y) / np.std(a.y) == pytest.approx(1.1, rel=0.01)  # K2 up by 10 %
