"""Readers for OpenSim storage and models, CEINMS tables and XML, NMSM .osimx and C3D analog
files, on hand-made files and on the shipped real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.errors import DataError
from bench.formats import (
    FormatWarning,
    read_c3d_analog,
    read_ceinms_subject,
    read_ceinms_table,
    read_ceinms_trial,
    read_osim_muscles,
    read_osimx,
    read_storage,
    write_ceinms_subject,
    write_storage,
)
from bench.formats.osimx import apply_osimx

T = np.linspace(0.0, 1.0, 11)


@pytest.mark.parametrize("version", [1, 3])
def test_storage_round_trip_and_degrees(tmp_path, version):
    data = np.stack([np.linspace(-10, 10, 11), np.linspace(1, 2, 11)], axis=1)
    path = tmp_path / "ik.mot"
    write_storage(path, T, data, ["ankle_angle_r", "ankle_angle_r_moment"], version=version,
                  in_degrees=True)
    tab = read_storage(path)
    np.testing.assert_allclose(tab.time, T)
    np.testing.assert_allclose(tab.column("ankle_angle_r"), np.deg2rad(data[:, 0]), rtol=1e-9)
    np.testing.assert_allclose(tab.column("ankle_angle_r_moment"), data[:, 1])  # not converted
    assert tab.fs == pytest.approx(10.0)


def test_storage_reads_legacy_file_written_by_hand(tmp_path):
    path = tmp_path / "id.sto"
    path.write_text(
        "Inverse Dynamics\nversion=1\nnRows=3\nnColumns=2\ninDegrees=no\nendheader\n"
        "time\tankle_angle_r_moment\n0.0\t1.5\n0.01\t2.5\n0.02\t3.5\n"
    )
    tab = read_storage(path)
    assert tab.columns == ["ankle_angle_r_moment"]
    assert tab.header["name"] == "Inverse Dynamics"


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ("version=1\ntime\ta\n0\t1\n", "no 'endheader'"),
        ("endheader\ntime\ta\n0\t1\n0.1\tNaN\n", r":4: column 'a': value is NaN"),
        ("endheader\ntime\ta\n0\t1\n0.1\tabc\n", r":4: column 'a': 'abc' is not a number"),
        ("endheader\ntime\ta\n0\t1\n0.1\n", ":4: expected 2 values, found 1"),
        ("endheader\ntime\ta\n0.1\t1\n0.0\t2\n", "time is not strictly increasing"),
        ("endheader\nframe\ta\n0\t1\n", "first column must be 'time'"),
    ],
)
def test_storage_errors_name_file_and_line(tmp_path, body, msg):
    path = tmp_path / "bad.sto"
    path.write_text(body)
    with pytest.raises(DataError, match=msg) as exc:
        read_storage(path)
    assert "bad.sto" in str(exc.value)


def test_storage_header_counts_are_tolerated_with_a_located_warning(tmp_path):
    path = tmp_path / "counts.sto"
    path.write_text("x\nversion=1\nnRows=5\nnColumns=4\nendheader\ntime\ta\n0\t1\n0.1\t2\n")
    with pytest.warns(FormatWarning) as rec:
        tab = read_storage(path)
    msgs = [str(w.message) for w in rec]
    assert any("counts.sto:3: header says nRows=5 but the file has 2 data rows" in m
               for m in msgs)
    assert any("counts.sto:4: header says nColumns=4 but the file has 2 columns" in m
               for m in msgs)
    assert tab.columns == ["a"] and tab.data.shape == (2, 1)
    path.write_text("x\nnRows=two\nendheader\ntime\ta\n0\t1\n")
    with pytest.raises(DataError, match=r"counts.sto:2: header nRows='two' is not an integer"):
        read_storage(path)


def test_state_path_columns_are_found_by_coordinate_name(tmp_path):
    path = tmp_path / "states.sto"
    path.write_text("states\nversion=3\ninDegrees=no\nendheader\n"
                    "time\t/jointset/ankle_r/ankle_angle_r/value\t/jointset/ankle_r/ankle_angle_r/"
                    "speed\t/jointset/knee_r/ankle_angle_r/value\t/jointset/hip_r/hip_r_flexion/value"
                    "\n0\t0.1\t1\t2\t3\n0.01\t0.2\t1\t2\t3\n")
    tab = read_storage(path)
    # unique coordinate names are mapped; two columns that would both map keep their paths
    assert tab.columns == ["/jointset/ankle_r/ankle_angle_r/value",
                           "/jointset/ankle_r/ankle_angle_r/speed",
                           "/jointset/knee_r/ankle_angle_r/value", "hip_r_flexion"]
    assert tab.header["state_paths"] == {"hip_r_flexion": "/jointset/hip_r/hip_r_flexion/value"}
    np.testing.assert_allclose(tab.column("hip_r_flexion"), [3, 3])


def test_degrees_follow_the_header_and_the_rotational_columns(tmp_path):
    path = tmp_path / "ik.mot"
    path.write_text("ik\ninDegrees=yes\nendheader\ntime\tknee\tpelvis_tx\tankle_moment\n"
                    "0\t90\t1\t5\n0.1\t45\t2\t6\n")
    tab = read_storage(path)
    np.testing.assert_allclose(tab.data, [[np.pi / 2, 1, 5], [np.pi / 4, 2, 6]])
    tab = read_storage(path, rotational={"knee", "pelvis_tx"})  # as a model's types say
    np.testing.assert_allclose(tab.column("pelvis_tx"), np.deg2rad([1, 2]))
    path.write_text("ik\nendheader\ntime\tknee\n0\t1.5\n0.1\t1.0\n")  # no inDegrees: rad
    np.testing.assert_allclose(read_storage(path).column("knee"), [1.5, 1.0])


def test_storage_missing_column_lists_columns(tmp_path):
    path = tmp_path / "x.sto"
    write_storage(path, T, np.zeros((11, 1)), ["soleus"])
    with pytest.raises(DataError, match=r"missing column 'tibant'.*soleus"):
        read_storage(path).column("tibant")


def _ceinms(path, rows, extra=""):
    lines = ["datacolumns 3", f"datarows {rows}", "range 0 1", extra + "time\tsoleus\ttibant"]
    lines += [f"{t:.2f}\t{0.1 * i}\t{0.2 * i}" for i, t in enumerate(T)]
    path.write_text("\n".join(lines) + "\n")


def test_ceinms_table(tmp_path):
    path = tmp_path / "emg.txt"
    _ceinms(path, 11)
    tab = read_ceinms_table(path)
    assert tab.columns == ["soleus", "tibant"]
    np.testing.assert_allclose(tab.column("tibant"), 0.2 * np.arange(11))
    _ceinms(path, 12)
    with pytest.raises(DataError, match="datarows=12 but 11 data rows"):
        read_ceinms_table(path)
    path.write_text("columns 3\n")
    with pytest.raises(DataError, match=r"emg.txt:1: expected 'datacolumns N'"):
        read_ceinms_table(path)


@pytest.mark.filterwarnings("ignore:No point data:UserWarning")
def test_c3d_analog_round_trip(tmp_path):
    import c3d

    rate, per_frame, frames = 100.0, 10, 20
    w = c3d.Writer(point_rate=rate, analog_rate=rate * per_frame)
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((2, per_frame * frames)).astype(np.float32)
    for f in range(frames):
        w.add_frames([(np.zeros((0, 5), np.float32), sig[:, f * per_frame:(f + 1) * per_frame])])
    w.set_analog_labels(["EMG_SOL", "EMG_TA"])
    path = tmp_path / "trial.c3d"
    with open(path, "wb") as fh:
        w.write(fh)
    tab = read_c3d_analog(path, ["EMG_TA"])
    np.testing.assert_allclose(tab.column("EMG_TA"), sig[1], rtol=1e-5, atol=1e-6)
    assert tab.header["rate"] == pytest.approx(1000.0)
    with pytest.raises(DataError, match="missing analog channel"):
        read_c3d_analog(path, ["EMG_GM"])


# --------------------------------------------------------------------------- real files
# The shipped data: OpenSim's walking example (scenarios/data/opensim-walking) and the NMSM
# Pipeline's Muscle-Tendon Personalization test data (scenarios/data/nmsm-mtp); sources and
# licences in their SOURCE.md.

DATA = Path(__file__).resolve().parents[1] / "scenarios" / "data"
WALK = DATA / "opensim-walking"
MTP = DATA / "nmsm-mtp"
ANKLE_R = ["soleus_r", "gasmed_r", "gaslat_r", "tibant_r"]


def test_opensim4_coordinates_file_as_opensim_reads_it():
    with pytest.warns(FormatWarning, match=r"coordinates.sto:3: header says nColumns=40 but "
                                           r"the file has 32 columns"):
        tab = read_storage(WALK / "coordinates.sto")
    assert tab.data.shape == (1350, 31)
    assert tab.columns[:3] == ["pelvis_tilt", "pelvis_list", "pelvis_rotation"]
    assert tab.header["state_paths"]["ankle_angle_r"] == "/jointset/ankle_r/ankle_angle_r/value"
    assert tab.header["inDegrees"] == "no"
    # first row, as written in the file (radians)
    assert tab.column("ankle_angle_r")[0] == pytest.approx(0.019406447, rel=1e-6)
    assert tab.fs == pytest.approx(1000.0)


def test_inverse_dynamics_and_emg_files_of_the_walking_example():
    idt = read_storage(WALK / "id_walk.sto")
    assert "ankle_angle_r_moment" in idt.columns and idt.data.shape == (1350, 31)
    assert idt.column("ankle_angle_r_moment").min() == pytest.approx(-144.5, abs=0.5)
    emg = read_storage(WALK / "electromyography.sto")
    assert emg.data.shape == (4780, 10) and emg.fs == pytest.approx(2000.0)
    # the envelopes undershoot below zero: 230 samples, down to -0.0267 (tibialis anterior)
    assert int(np.sum(emg.data < 0)) == 230
    assert emg.column("tibialis_anterior").min() == pytest.approx(-0.026747, rel=1e-4)
    np.testing.assert_allclose(emg.data.max(axis=0), 1.0)  # normalized to their own peak


def test_osim_muscle_parameters_of_the_scaled_model():
    from bench.formats.osim import osim_coordinates

    p = read_osim_muscles(WALK / "subject_walk_scaled.osim", ANKLE_R)
    # values as written in the model file (the scaled model's properties)
    np.testing.assert_allclose(p["f_max"], [6194.8426229508204, 3115.5147540983598,
                                            1575.0590163934401, 1227.4524590163901])
    np.testing.assert_allclose(p["l_opt"][0], 0.052435365323045442)
    np.testing.assert_allclose(p["l_ts"][3], 0.28423801422249156)
    np.testing.assert_allclose(p["phi_opt"][1], 0.16568155000000001)
    np.testing.assert_allclose(p["v_max"], 10.0)
    assert "ankle_angle_r" in osim_coordinates(WALK / "subject_walk_scaled.osim")
    with pytest.raises(DataError, match=r"subject_walk_scaled.osim: no muscle\(s\) \['soleus'\] "
                                        r"in the model's ForceSet; it has 80 muscles"):
        read_osim_muscles(WALK / "subject_walk_scaled.osim", ["soleus"])


def test_nmsm_files_read_as_written():
    ox = read_osimx(MTP / "results" / "model_muscleModel.osimx",
                    ["soleus_l", "tibant_l", "not_there"])
    assert ox.found == ["soleus_l", "tibant_l"] and ox.model == "model.osim"
    np.testing.assert_allclose(ox.values["l_opt"][:2], [0.0475822, 0.0728922], rtol=1e-5)
    np.testing.assert_allclose(ox.values["l_ts"][:2], [0.2992876, 0.2566286], rtol=1e-6)
    assert np.isnan(ox.values["l_opt"][2]) and np.all(np.isnan(ox.values["f_max"]))
    assert "electromechanical_delay" in ox.ignored and "emg_scale_factor" in ox.ignored
    # OpenSim 4 .mot without nRows/inDegrees, moments named by coordinate, rates per trial
    gait = read_storage(MTP / "IDData" / "speed1_gait_1.mot")
    squat = read_storage(MTP / "IDData" / "speed2_squat_1.mot")
    assert "ankle_angle_l" in gait.columns and gait.data.shape == (101, 6)
    assert gait.fs == pytest.approx(73.684, rel=1e-4)
    assert squat.fs == pytest.approx(86.420, rel=1e-4)
    emg = read_storage(MTP / "EMGData" / "speed1_gait_1.mot")
    assert emg.time[0] < gait.time[0] and emg.time[-1] > gait.time[-1]  # pre- and post-roll
    assert 0 < int(np.sum(emg.data < 0)) and emg.data.min() > -1e-6


def test_osimx_layouts_and_errors(tmp_path):
    old = tmp_path / "old.osimx"
    old.write_text(
        '<?xml version="1.0"?><OpenSimDocument Version="40000"><OsimxModel name="m">'
        "<NCPMuscleSet><objects><RCNLMuscle name=\"a\"><optimal_fiber_length>0.1"
        "</optimal_fiber_length><slack_tendon_length>0.3</slack_tendon_length>"
        "<max_isometric_force>500</max_isometric_force></RCNLMuscle>"
        "<RCNLMuscle name=\"b\"><optimal_fiber_length_scale_factor>1.1"
        "</optimal_fiber_length_scale_factor></RCNLMuscle></objects></NCPMuscleSet>"
        "</OsimxModel></OpenSimDocument>")
    ox = read_osimx(old, ["a", "b"])
    base = {"l_opt": np.array([0.2, 0.2]), "l_ts": np.array([0.2, 0.2]),
            "f_max": np.array([100.0, 100.0])}
    out, notes = apply_osimx(base, ox)
    np.testing.assert_allclose(out["l_opt"], [0.1, 0.22])
    np.testing.assert_allclose(out["l_ts"], [0.3, 0.2])
    np.testing.assert_allclose(out["f_max"], [500.0, 100.0])
    assert "old.osimx" in notes[0] and "l_opt scaled (1 MTUs)" in notes[0]
    with pytest.raises(DataError, match=r"old.osimx: none of the MTUs \['c'\] is in the file"):
        read_osimx(old, ["c"])
    bad = tmp_path / "bad.osimx"
    bad.write_text('<?xml version="1.0"?>\n<NMSMPipelineDocument><OsimxModel>\n<RCNLMuscle')
    with pytest.raises(DataError, match=r"bad.osimx:3:\d+: not well-formed XML"):
        read_osimx(bad, ["a"])
    bomb = tmp_path / "bomb.osimx"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>')
    with pytest.raises(DataError, match="document-type declaration"):
        read_osimx(bomb, ["a"])
    other = tmp_path / "model.osim"
    other.write_text("<subject/>")
    with pytest.raises(DataError, match=r"root element <subject>; expected an NMSM"):
        read_osimx(other, ["a"])


CEINMS_SUBJECT = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<subject>
  <mtuDefault><emDelay>0.015</emDelay><percentageChange>0.15</percentageChange>
    <damping>0.1</damping>
    <curve><name>activeForceLength</name><xPoints>0 1</xPoints><yPoints>0 1</yPoints></curve>
  </mtuDefault>
  <mtuSet>
    <mtu><name>soleus_r</name><c1>-0.4</c1><c2>-0.3</c2><shapeFactor>0.101198</shapeFactor>
      <optimalFibreLength>0.05</optimalFibreLength>
      <pennationAngle unit="deg">25</pennationAngle>
      <tendonSlackLength>0.25</tendonSlackLength><maxIsometricForce>3549</maxIsometricForce>
      <strengthCoefficient>1.5</strengthCoefficient></mtu>
    <mtu><name>tib_ant_r</name><emDelay>0.03</emDelay><c1>-0.5</c1><c2>-0.5</c2>
      <shapeFactor>-1.2</shapeFactor><optimalFibreLength>0.098</optimalFibreLength>
      <pennationAngle>0.087</pennationAngle><tendonSlackLength>0.223</tendonSlackLength>
      <maxContractionVelocity>8</maxContractionVelocity>
      <maxIsometricForce>905</maxIsometricForce><strengthCoefficient>1</strengthCoefficient>
    </mtu>
  </mtuSet>
  <dofSet><dof><name>ankle_angle_r</name><mtuNameSet>soleus_r tib_ant_r</mtuNameSet></dof>
  </dofSet>
  <calibrationInfo><uncalibrated><subjectID>s1</subjectID><additionalInfo/></uncalibrated>
  </calibrationInfo>
</subject>
"""


def test_ceinms_subject_in_and_out(tmp_path):
    path = tmp_path / "subject.xml"
    path.write_text(CEINMS_SUBJECT)
    sub = read_ceinms_subject(path, ["tib_ant_r", "soleus_r"])
    np.testing.assert_allclose(sub.params["f_max"], [905.0, 3549 * 1.5])
    np.testing.assert_allclose(sub.params["phi_opt"], [0.087, np.deg2rad(25)])
    np.testing.assert_allclose(sub.params["delay"], [0.03, 0.015])  # own, else mtuDefault
    np.testing.assert_allclose(sub.params["c1"], [-0.5, -0.4])
    assert "v_max" not in sub.params  # given for one MTU only
    # CEINMS's default shape factor 0.1 is outside the bench's (-3, 0): moved inside, noted
    assert sub.params["shape"][1] == pytest.approx(-1e-3)
    assert any("soleus_r" in n and "outside (-3, 0)" in n for n in sub.notes)
    assert any("percentageChange, curve" in n for n in sub.notes)
    assert sub.dofs == {"ankle_angle_r": ["soleus_r", "tib_ant_r"]}
    # calibrated subject out: strength coefficient = calibrated / initial f_max
    cal = {m: {k: float(v[i]) for k, v in sub.params.items()}
           for i, m in enumerate(["tib_ant_r", "soleus_r"])}
    cal["soleus_r"]["f_max"] = 4000.0
    out = tmp_path / "calibrated.xml"
    write_ceinms_subject(out, cal, sub.dofs, initial_f_max={"soleus_r": 3549.0 * 1.5,
                                                           "tib_ant_r": 905.0}, fs=100.0)
    back = read_ceinms_subject(out, ["soleus_r", "tib_ant_r"])
    np.testing.assert_allclose(back.params["f_max"], [4000.0, 905.0])
    for k in ("l_opt", "l_ts", "phi_opt", "c1", "c2", "shape", "delay"):
        np.testing.assert_allclose(back.params[k], [cal["soleus_r"][k], cal["tib_ant_r"][k]])
    assert back.dofs == sub.dofs
    text = out.read_text()
    assert "<strengthCoefficient>" in text and "at 100 Hz" in text
    with pytest.raises(DataError, match=r"subject.xml: no MTU\(s\) \['gas_med_r'\] in <mtuSet>"):
        read_ceinms_subject(path, ["gas_med_r"])
    path.write_text(CEINMS_SUBJECT.replace("<optimalFibreLength>0.05</optimalFibreLength>",
                                           "<optimalFibreLength>x</optimalFibreLength>"))
    with pytest.raises(DataError, match=r"MTU 'soleus_r' <optimalFibreLength>: 'x' is not a "
                                        r"number"):
        read_ceinms_subject(path, ["soleus_r"])


def test_ceinms_trial_file(tmp_path):
    (tmp_path / "ma").mkdir()
    path = tmp_path / "trial.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<inputData>\n'
        "  <muscleTendonLengthFile> ma/lmt.mot </muscleTendonLengthFile>\n"
        "  <excitationsFile>emg.mot</excitationsFile>\n"
        '  <momentArmsFiles><momentArmsFile dofName="ankle_angle_r">ma\\ma_ankle.mot'
        "</momentArmsFile></momentArmsFiles>\n"
        "  <externalTorquesFile>/abs/id.sto</externalTorquesFile>\n</inputData>\n")
    got = read_ceinms_trial(path)
    assert got["lengths"] == tmp_path / "ma" / "lmt.mot"
    assert got["emg"] == tmp_path / "emg.mot"
    assert got["moment_arms"] == {"ankle_angle_r": tmp_path / "ma" / "ma_ankle.mot"}
    assert got["torque"] == Path("/abs/id.sto")
    path.write_text("<inputData><muscleTendonLengthFile>a</muscleTendonLengthFile>"
                    "<excitationsFile>b</excitationsFile><momentArmsFiles><momentArmsFile>c"
                    "</momentArmsFile></momentArmsFiles></inputData>")
    with pytest.raises(DataError, match=r"trial\.xml: a <momentArmsFile> without its dofName"):
        read_ceinms_trial(path)
    path.write_text("<inputData><excitationsFile>b</excitationsFile></inputData>")
    with pytest.raises(DataError, match=r"trial\.xml: no <muscleTendonLengthFile>"):
        read_ceinms_trial(path)
