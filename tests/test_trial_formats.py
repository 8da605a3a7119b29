"""Trials from OpenSim / CEINMS / C3D files into MuscleData (issue 13 items 1, 3).

A small hand-made trial with exact quadratic kinematics (L = L0 - r0 theta - r1 theta^2 / 2,
r = r0 + r1 theta, dr/dtheta = r1) is written in both layouts and read back; malformed files
must be rejected with messages naming the file, the line and the column.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from bench.emg import mvc_peaks, process_emg
from bench.errors import DataError
from bench.formats import FormatWarning, read_c3d_analog, write_storage
from bench.formats.trial import (
    TrialSpec,
    fit_moment_arm_derivative,
    read_trial,
    stack_trials,
    window_trial,
    write_ceinms_table,
    write_trial,
)
from bench.types import MuscleData

FS = 100.0
T = 120
MUSCLES = ["sol", "ta"]
CHANNELS = ["EMG_SOL", "EMG_TA"]
DOFS = ["ankle"]
R0 = np.array([-0.045, 0.04])
R1 = np.array([0.01, -0.008])
L0 = np.array([0.30, 0.32])


def _trial(seed: int = 0, n: int = T) -> MuscleData:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    theta = 0.2 * np.sin(2 * np.pi * 0.7 * t) + 0.02 * rng.standard_normal(n)
    lmt = L0 - R0 * theta[:, None] - 0.5 * R1 * theta[:, None] ** 2
    r = (R0 + R1 * theta[:, None])[..., None]
    exc = np.clip(0.3 + 0.2 * np.sin(2 * np.pi * 1.1 * t[:, None] + np.array([0.0, 1.0])),
                  0, 1)
    torque = np.sin(2 * np.pi * 0.7 * t)[:, None] * 10.0
    stiff = 50.0 + 10.0 * np.cos(2 * np.pi * 0.7 * t)[:, None]
    return MuscleData(
        excitation=exc[None], angle=theta[None, :, None], torque=torque[None], fs=FS,
        lmt=lmt[None], moment_arm=r[None], stiffness=stiff[None], channels=list(CHANNELS),
        muscles=list(MUSCLES), dofs=list(DOFS), meta={"time": t},
    )


def _spec(paths: dict, name: str = "t1", **kw) -> TrialSpec:
    return TrialSpec(name=name, torque=paths["torque"], lengths=paths["lengths"],
                     moment_arms=paths["moment_arms"], emg=paths["emg"],
                     angles=paths.get("angles"), stiffness=paths.get("stiffness"), **kw)


def _read(spec: TrialSpec, **kw) -> MuscleData:
    return read_trial(spec, muscles=MUSCLES, dofs=DOFS, channels=CHANNELS, **kw)


@pytest.mark.parametrize(("fmt", "version"), [("opensim", 1), ("opensim", 3), ("ceinms", 1)])
def test_written_trial_reads_back(tmp_path, fmt, version):
    data = _trial()
    paths = write_trial(data, tmp_path, fmt=fmt, version=version, prefix="t1")
    got = _read(_spec(paths))
    # 10 significant digits in the files; angles pass through degrees
    np.testing.assert_allclose(got.angle, data.angle, rtol=1e-9, atol=1e-12)
    for field in ("torque", "lmt", "moment_arm", "excitation", "stiffness"):
        np.testing.assert_allclose(getattr(got, field), getattr(data, field), rtol=1e-9,
                                   atol=1e-12, err_msg=field)
    np.testing.assert_allclose(got.meta["time"], data.meta["time"], atol=1e-12)
    assert got.fs == pytest.approx(FS, rel=1e-9)
    assert got.channels == CHANNELS and got.muscles == MUSCLES and got.dofs == DOFS
    # dr/dtheta of 000:Eq.7 from the quadratic fit equals r1 of the exact kinematics
    np.testing.assert_allclose(got.meta["dmoment_arm"][0, :, :, 0],
                               np.broadcast_to(R1, (T, 2)), atol=1e-7)


def test_muscle_columns_and_no_angles(tmp_path):
    data = _trial()
    paths = write_trial(data, tmp_path, prefix="t1", muscle_columns=["soleus_r", "tibant_r"])
    spec = dataclasses.replace(_spec(paths), angles=None)
    got = _read(spec, muscle_columns=["soleus_r", "tibant_r"])
    np.testing.assert_allclose(got.lmt, data.lmt, rtol=1e-9)
    assert np.all(np.isnan(got.angle))
    assert np.all(got.meta["dmoment_arm"] == 0.0)
    with pytest.raises(DataError, match=r"MomentArm_ankle.sto: missing column 'sol'; the file "
                                        r"has: soleus_r, tibant_r|Length.sto: missing column"):
        _read(spec)


def test_fit_moment_arm_derivative_two_dofs():
    rng = np.random.default_rng(1)
    th = rng.uniform(-0.3, 0.3, (200, 2))
    # r_m,d = a + b th1 + c th2 + e th1 th2 + f th2^2  (quadratic: recovered exactly)
    a, b, c, e, f = (rng.standard_normal((2, 2)) * 0.01 for _ in range(5))
    r = (a + b * th[:, 0, None, None] + c * th[:, 1, None, None]
         + e * (th[:, 0] * th[:, 1])[:, None, None] + f * (th[:, 1] ** 2)[:, None, None])
    dr = fit_moment_arm_derivative(th, r)
    np.testing.assert_allclose(dr[:, :, 0], b[:, 0] + e[:, 0] * th[:, 1, None], atol=1e-10)
    np.testing.assert_allclose(dr[:, :, 1], c[:, 1] + e[:, 1] * th[:, 0, None]
                               + 2 * f[:, 1] * th[:, 1, None], atol=1e-10)
    with pytest.warns(UserWarning, match="barely move"):
        out = fit_moment_arm_derivative(np.zeros((50, 1)), np.ones((50, 2, 1)))
    assert np.all(out == 0)


def test_mismatched_time_base_names_both_files_or_resamples(tmp_path):
    data = _trial()
    paths = write_trial(data, tmp_path, prefix="t1")
    # the length file sampled at 200 Hz over the same span
    t2 = np.arange(2 * (T - 1) + 1) / (2 * FS)
    th2 = np.interp(t2, data.meta["time"], data.angle[0, :, 0])
    lmt2 = L0 - R0 * th2[:, None] - 0.5 * R1 * th2[:, None] ** 2
    write_storage(paths["lengths"], t2, lmt2, MUSCLES)
    with pytest.raises(DataError) as exc:
        _read(_spec(paths))
    msg = str(exc.value)
    assert "time bases differ" in msg
    assert "t1_MuscleAnalysis_Length.sto has 239 samples over [0, 1.19] s" in msg
    assert "t1_id.sto: 120 samples over [0, 1.19] s" in msg.replace(") has", ":")
    assert "resample: true" in msg
    got = _read(_spec(paths), resample_to_model=True)
    # linear interpolation of a smooth length at every other sample is exact on the grid
    np.testing.assert_allclose(got.lmt, data.lmt, rtol=1e-9)
    # a file that does not cover the model time base cannot be resampled
    write_storage(paths["lengths"], t2[:100], lmt2[:100], MUSCLES)
    with pytest.raises(DataError, match=r"does not cover it"):
        _read(_spec(paths), resample_to_model=True)


def test_model_rate_mismatch(tmp_path):
    paths = write_trial(_trial(), tmp_path, prefix="t1")
    with pytest.raises(DataError, match=r"sampled at 100 Hz .* model runs at fs = 50 Hz"):
        _read(_spec(paths), fs=50.0)
    got = _read(_spec(paths), fs=50.0, resample_to_model=True)
    assert got.fs == 50.0 and got.torque.shape[1] == 60
    np.testing.assert_allclose(got.meta["time"], np.arange(60) / 50.0)


@pytest.mark.parametrize(
    ("target", "line", "value", "msg"),
    [
        ("lengths", 12, "nan", r"t1_MuscleAnalysis_Length.sto:12: column 'ta': value is nan"),
        ("emg", 9, "x1", r"t1_emg.sto:9: column 'EMG_SOL': 'x1' is not a number"),
        ("torque", 10, None, r"t1_id.sto: time is not strictly increasing at data row 3"),
    ],
)
def test_malformed_storage_names_file_line_column(tmp_path, target, line, value, msg):
    paths = write_trial(_trial(), tmp_path, prefix="t1")
    p = paths[target]
    lines = p.read_text().splitlines()
    parts = lines[line - 1].split("\t")
    if value is None:  # unsorted time: repeat the previous time stamp
        parts[0] = lines[line - 2].split("\t")[0]
    else:
        parts[2 if target == "lengths" else 1] = value
    lines[line - 1] = "\t".join(parts)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=msg):
        _read(_spec(paths))


def test_malformed_ceinms_names_file_line_column(tmp_path):
    paths = write_trial(_trial(), tmp_path, fmt="ceinms", prefix="t1")
    p = paths["moment_arms"]["ankle"]
    lines = p.read_text().splitlines()
    lines[10] = lines[10].rsplit("\t", 1)[0] + "\tinf"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"t1_ma_ankle.txt:11: column 'ta': value is inf"):
        _read(_spec(paths))


def test_missing_torque_and_stiffness_columns(tmp_path):
    paths = write_trial(_trial(), tmp_path, prefix="t1")
    with pytest.raises(DataError, match=r"t1_id.sto: missing torque column for DoF 'knee' "
                                        r"\(looked for 'knee_moment' and 'knee'\); the file "
                                        r"has: ankle_moment"):
        read_trial(dataclasses.replace(_spec(paths), moment_arms={"knee": paths["moment_arms"][
            "ankle"]}), muscles=MUSCLES, dofs=["knee"], channels=CHANNELS)
    with pytest.raises(DataError, match=r"t1_emg.sto: missing column 'EMG_GM'"):
        read_trial(_spec(paths), muscles=MUSCLES, dofs=DOFS, channels=["EMG_SOL", "EMG_GM"])


def test_excitation_outside_unit_interval(tmp_path):
    data = _trial()
    exc = data.excitation.copy()
    exc[0, 30, 1] = 1.7
    paths = write_trial(dataclasses.replace(data, excitation=exc), tmp_path, prefix="t1")
    with pytest.raises(DataError, match=r"t1_emg.sto: column 'EMG_TA': excitation 1.7 at "
                                        r"t = 0.3 s is outside \[0, 1\]"):
        _read(_spec(paths))


@pytest.mark.filterwarnings("ignore:No point data:UserWarning")
def test_raw_emg_from_c3d_is_processed_with_the_preset(tmp_path):
    import c3d

    data = _trial()
    rate, per_frame = 1000.0, 10
    rng = np.random.default_rng(3)
    n = int((T - 1) / FS * rate) + per_frame  # covers the model time base

    def write(path, raw):
        w = c3d.Writer(point_rate=rate / per_frame, analog_rate=rate)
        for f in range(raw.shape[0] // per_frame):
            w.add_frames([(np.zeros((0, 5), np.float32),
                           raw[f * per_frame:(f + 1) * per_frame].T.astype(np.float32))])
        w.set_analog_labels(CHANNELS)
        with open(path, "wb") as fh:
            w.write(fh)

    t_raw = np.arange(n) / rate
    env = np.stack([np.interp(t_raw, data.meta["time"], data.excitation[0, :, c])
                    for c in range(2)], 1)
    raw = env * rng.standard_normal((n, 2))
    mvc = rng.standard_normal((2000, 2))
    write(tmp_path / "emg.c3d", raw)
    write(tmp_path / "mvc.c3d", mvc)
    paths = write_trial(data, tmp_path, prefix="t1")
    spec = dataclasses.replace(_spec(paths), emg=tmp_path / "emg.c3d", emg_kind="raw",
                               mvc=(tmp_path / "mvc.c3d",), emg_preset="001")
    got = _read(spec)
    # exactly bench.emg's pipeline (preset 001) on what the C3D reader returns
    raw_f = read_c3d_analog(tmp_path / "emg.c3d", CHANNELS).data
    mvc_f = read_c3d_analog(tmp_path / "mvc.c3d", CHANNELS).data
    expect = process_emg(raw_f, rate, mvc_peaks([mvc_f], rate, "001"), preset="001",
                         t_out=data.meta["time"])
    np.testing.assert_allclose(got.excitation[0], expect, rtol=1e-12)
    # and it follows the envelope it was made from
    for c in range(2):
        assert np.corrcoef(got.excitation[0, 20:-20, c], data.excitation[0, 20:-20, c])[
            0, 1] ** 2 > 0.8
    with pytest.raises(DataError, match="needs MVC trials"):
        _read(dataclasses.replace(spec, mvc=()))
    with pytest.raises(DataError, match=r"emg.c3d .* does not cover the model time base"):
        _read(dataclasses.replace(spec, emg_offset=0.5))


def test_window_and_stack(tmp_path):
    a = _read(_spec(write_trial(_trial(0), tmp_path / "a", prefix="a"), name="a"))
    b = _read(_spec(write_trial(_trial(1), tmp_path / "b", prefix="b"), name="b"))
    wa = window_trial(a, (0.1, 0.6))
    assert wa.torque.shape[1] == 50
    np.testing.assert_allclose(wa.meta["time"][[0, -1]], [0.1, 0.59])
    np.testing.assert_allclose(wa.lmt, a.lmt[:, 10:60])
    assert wa.meta["dmoment_arm"].shape == (1, 50, 2, 1)
    both = stack_trials([wa, window_trial(b, (0.5, 1.0))])
    assert both.torque.shape == (2, 50, 1) and both.meta["trials"] == ["a", "b"]
    with pytest.raises(DataError, match=r"same number of samples .* 'a': 50, 'b': 70"):
        stack_trials([wa, window_trial(b, (0.0, 0.7))])
    with pytest.raises(DataError, match=r"window \[2.0, 3.0\] s keeps 0 samples"):
        window_trial(a, (2.0, 3.0))


def test_ceinms_writer_round_trip(tmp_path):
    from bench.formats import read_ceinms_table

    t = np.arange(5) / 10
    write_ceinms_table(tmp_path / "x.txt", t, np.arange(10.0).reshape(5, 2), ["a", "b"])
    tab = read_ceinms_table(tmp_path / "x.txt")
    assert tab.columns == ["a", "b"]
    np.testing.assert_allclose(tab.column("b"), [1, 3, 5, 7, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="does not match"):
            write_ceinms_table(tmp_path / "y.txt", t, np.zeros((4, 2)), ["a", "b"])


# --------------------------------------------------------------------------- processed EMG


def test_small_excitation_excursions_are_clipped_and_counted(tmp_path):
    data = _trial()
    exc = data.excitation.copy()
    exc[0, 10:13, 0] = [-1.6e-9, -0.02, -0.001]   # filter undershoot
    exc[0, 40, 1] = 1.01
    paths = write_trial(dataclasses.replace(data, excitation=exc), tmp_path, prefix="t1")
    with pytest.warns(FormatWarning, match=r"t1_emg.sto: 3 below 0 \(down to -0.02\) and 1 above "
                                           r"1 \(up to 1.01\) of 240 excitation samples clipped "
                                           r"to \[0, 1\] \(within the tolerance 0.05\)"):
        got = _read(_spec(paths))
    assert got.excitation.min() == 0.0 and got.excitation.max() <= 1.0
    np.testing.assert_allclose(got.excitation[0, 10:13, 0], 0.0)
    assert any("3 below 0" in n for n in got.meta["notes"])
    # a tighter tolerance refuses the same file, naming file, column, value and time
    with pytest.raises(DataError, match=r"t1_emg.sto: column 'EMG_SOL': excitation -0.02 at "
                                        r"t = 0.11 s is outside \[0, 1\] by more than the "
                                        r"tolerance 0.01"):
        _read(_spec(paths, emg_tolerance=0.01))


def test_peak_normalization_per_trial_and_given_peaks(tmp_path):
    data = _trial()
    scaled = dataclasses.replace(data, excitation=data.excitation * np.array([2.0, 5.0]))
    paths = write_trial(scaled, tmp_path, prefix="t1")
    got = _read(_spec(paths, emg_normalize="trial_peak"))
    np.testing.assert_allclose(got.excitation[0].max(axis=0), 1.0)
    np.testing.assert_allclose(got.excitation[0], data.excitation[0]
                               / data.excitation[0].max(axis=0), rtol=1e-9)
    assert any("divided by their peak in this trial" in n for n in got.meta["notes"])
    peaks = tuple(2.0 * data.excitation[0].max(axis=0) * np.array([1.0, 2.5]))
    got = _read(_spec(paths, emg_peaks=peaks))
    np.testing.assert_allclose(got.excitation[0], scaled.excitation[0] / np.asarray(peaks),
                               rtol=1e-9)
    with pytest.raises(DataError, match=r"column 'EMG_SOL' has no positive value"):
        zero = dataclasses.replace(data, excitation=data.excitation * np.array([0.0, 1.0]))
        _read(_spec(write_trial(zero, tmp_path / "z", prefix="z"), emg_normalize="trial_peak"))


def test_delay_uses_the_pre_roll_and_other_rates_are_interpolated(tmp_path):
    data = _trial()
    paths = write_trial(data, tmp_path, prefix="t1")
    # the EMG recorded at 400 Hz from 0.3 s before the motion (pre-roll) to its end
    t_emg = np.arange(-0.3, (T - 1) / FS + 1e-9, 1 / 400.0)
    env = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * 0.9 * t_emg + k) for k in (0.0, 1.0)], 1)
    write_storage(paths["emg"], t_emg, env, CHANNELS)
    got = _read(_spec(paths, emg_delay=0.04))
    t = data.meta["time"]
    expect = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * 0.9 * (t - 0.04) + k)
                       for k in (0.0, 1.0)], 1)
    np.testing.assert_allclose(got.excitation[0], expect, atol=2e-5)  # linear interpolation
    note = next(n for n in got.meta["notes"] if "t1_emg.sto" in n)
    assert "interpolated onto the model time base" in note and "400 Hz" in note
    assert "at t - 0.04 s" in note and "0.04 s of pre-roll" in note
    # without pre-roll the first sample is held, and the note says for how many samples
    write_storage(paths["emg"], t_emg[120:], env[120:], CHANNELS)
    got = _read(_spec(paths, emg_delay=0.04))
    np.testing.assert_allclose(got.excitation[0, :4], np.repeat(env[120:121], 4, 0))
    assert any("first sample held for 4 samples" in n for n in got.meta["notes"])
    # an EMG that ends before the model time base (minus the delay) cannot be used
    write_storage(paths["emg"], t_emg[:300], env[:300], CHANNELS)
    with pytest.raises(DataError, match=r"the EMG .*t1_emg.sto .* does not cover the model time "
                                        r"base .* the record ends at"):
        _read(_spec(paths, emg_delay=0.04))
