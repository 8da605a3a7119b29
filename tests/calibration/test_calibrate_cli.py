"""``impbench calibrate``: a dataset scenario end to end, its validation, parameter files.

The round trip: the synthetic ankle's trials written as OpenSim (trial1) and CEINMS (trial2)
files by ``scenarios/data/make_example.py`` and calibrated through the scenario must give the
same parameters as the same calibrator, seed and budget on the plant's in-memory
``MuscleData`` (differences come only from the 10 significant digits of the files and from
``dr/dtheta`` taken from a quadratic fit instead of the kinematics; both ~1e-9 relative).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.cli import main
from bench.emg import mvc_peaks, process_emg
from bench.errors import DataError
from bench.formats import read_c3d_analog
from bench.formats.mtu_params import read_params_file
from bench.grid import unit_rng, units
from bench.pipelines import with_reference_stiffness
from bench.scenario import ScenarioValidationError, load_scenario
from bench.types import MuscleData
from estimators.calibration._problem import make_problem
from estimators.calibration.annealing import AnnealingCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective
from estimators.calibration.task import cut_windows
from tests.example_data import write_example

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "calibrate-example.yaml"
GROUPS = {"gastrocnemii": ["gas_med", "gas_lat"], "peronei": ["per_long", "per_brev"]}
N_CYCLE = 213  # one task cycle at 128 Hz
ANNEALING = {"name": "annealing", "label": "SA", "params": {"seed": 3, "max_evaluations": 300}}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example dataset in a temporary copy of the scenarios layout."""
    root = tmp_path_factory.mktemp("calib")
    # six task cycles per trial (the shipped example has three): enough for SDS
    ex = write_example(root / "data" / "example", plant={"n_cycles": 6})
    return root, ex


def _scenario(root: Path, *, params: dict | None = None, **top) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["plant"]["params"].update(params or {})
    doc.update(top)
    path = root / f"s_{abs(hash(repr(sorted(map(str, (params, top))))))}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _in_memory(ex, calibrator, objective):
    """The same calibration without files: plant MuscleData, exact dr/dtheta."""
    from plants.ankle import EMG_MAP, MUSCLES
    from plants.muscle import make_params
    from plants.muscle.model import MuscleModel

    d = ex["data"]
    sl = (slice(0, 1), slice(0, N_CYCLE))
    mem = MuscleData(
        excitation=d.excitation[sl], angle=d.angle[sl], torque=d.torque[sl], fs=d.fs,
        lmt=d.lmt[sl], moment_arm=d.moment_arm[sl], stiffness=d.stiffness[sl],
        meta={"dmoment_arm": d.meta["dmoment_arm"][sl]},
    )
    init = dict(ex["initial"])
    base = make_params(init.pop("f_max"), init.pop("l_opt"), init.pop("l_ts"),
                       init.pop("phi_opt"), **init)
    model = MuscleModel(base, MUSCLES, fs=d.fs, emg_map=EMG_MAP, tendon="rigid",
                        strength_groups=GROUPS)
    space = CalibrationSpace.build(base, list(MUSCLES), strength_groups=GROUPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = calibrator.calibrate(model, mem, objective, space=space)
    res.info["initial_objective"] = float(make_problem(model, mem, objective, space).loss(
        space.x0))
    return res


def _data(path: Path):
    sc = load_scenario(path)
    u = units(sc)[0]
    plant = sc.plant.cls(**u.cell.params)
    return plant.simulate(unit_rng(u.cell.data_id, u.seed)), sc


# --------------------------------------------------------------------------- round trip


@pytest.fixture(scope="module")
def cli_run(example):
    """``impbench calibrate`` on the example files: torque + stiffness, annealing."""
    root, _ = example
    path = _scenario(root, methods=[ANNEALING], grid={
        "alpha": [1.0], "beta": [0.5], "penalty": ["hard"],
        "stiffness_reference": ["recorded"]})
    out = root / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["calibrate", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_files_calibrate_like_memory_annealing(example, cli_run):
    _, ex = example
    rec = yaml.safe_load((cli_run / "calibrated" / "SA.yaml").read_text())
    got = rec["calibration"]["parameters"]
    mem = _in_memory(ex, AnnealingCalibrator(**ANNEALING["params"]),
                     Objective(1.0, 0.5, penalty="hard"))
    assert list(got) == list(mem.params)
    np.testing.assert_allclose(list(got.values()), list(mem.params.values()), rtol=1e-6)
    assert rec["calibration"]["metrics"]["objective"] == pytest.approx(
        mem.info["objective"], rel=1e-6)
    # the calibration lowered the objective (Eq.8) well below its value at the start
    assert rec["calibration"]["metrics"]["objective"] < 0.5 * mem.info["initial_objective"]


def test_outputs_units_bounds_and_report(example, cli_run):
    _, ex = example
    out = cli_run
    rec = yaml.safe_load((out / "calibrated" / "SA.yaml").read_text())
    lines = (out / "calibrated" / "SA.csv").read_text().splitlines()
    assert lines[0] == ("name,unit,initial,value,lower,upper,change_percent,position_percent,"
                        "at_bound")
    rows = [ln.split(",") for ln in lines[1:]]
    assert len(rows) == 7 + 7 + 5 + 7
    for r in rows:
        assert float(r[4]) <= float(r[3]) <= float(r[5]), r
    assert {r[1] for r in rows} == {"m", "1"}
    assert rows[0][:2] == ["l_opt[soleus]", "m"]
    # the YAML and the per-MTU CSV are valid initial-parameter files of that model
    muscles = list(rec["mtus"])
    from_yaml = read_params_file(out / "calibrated" / "SA.yaml", muscles, 128.0)
    from_csv = read_params_file(out / "calibrated" / "SA_mtus.csv", muscles)
    for field in ("f_max", "l_opt", "l_ts", "shape"):
        np.testing.assert_allclose(from_csv[field], from_yaml[field], rtol=1e-12)
    vals = rec["calibration"]["parameters"]
    np.testing.assert_allclose(from_yaml["l_opt"], [vals[f"l_opt[{m}]"] for m in muscles])
    # strength scales f_max of its group: the gastrocnemii share one coefficient
    s = vals["strength[gastrocnemii]"]
    np.testing.assert_allclose(from_yaml["f_max"][1:3], s * ex["initial"]["f_max"][1:3])
    # held-out scores of the record, in the report with units
    m = rec["calibration"]["metrics"]
    assert 0 < m["torque_nrmse"] < 1 and 0 < m["torque_r2"] <= 1
    assert 0 < m["stiffness_nrmse"] < 1 and m["torque_rmse"] > 0
    assert m["evaluations"] == 300
    md = (out / "report.md").read_text()
    assert "torque_rmse [Nm]" in md and "l_ts[per_tert]" in md and "| SA |" in md


def test_cli_validate_and_errors(example, capsys):
    root, _ = example
    path = _scenario(root, methods=[ANNEALING])
    assert main(["calibrate", str(path), "--validate"]) == 0
    assert "OK: calibration scenario 'calibrate-example', plant dataset" in capsys.readouterr().out
    bad = root / "bad.yaml"
    bad.write_text(path.read_text().replace("name: calibrate-example", "nmae: x", 1))
    assert main(["calibrate", str(bad), "--validate"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: nmae: unknown key" in err and "name: required key is missing" in err
    imp = ROOT / "scenarios" / "quickstart.yaml"
    assert main(["calibrate", str(imp)]) == 2
    assert "a impedance scenario; impbench calibrate runs calibration" in capsys.readouterr().err


def test_reference_stiffness_from_sds(example):
    root, _ = example
    data, _ = _data(_scenario(root))
    from estimators.calibration.task import CalibrationTask

    sets = CalibrationTask()._reference(data, "sds")
    direct = with_reference_stiffness(data.sets[0], period=1.6640625)
    np.testing.assert_array_equal(sets[0].stiffness, direct.stiffness)
    cal = cut_windows(sets, data.calibration)
    assert cal.stiffness.shape == (1, N_CYCLE, 1)
    # the recorded (file) stiffness is the truth of the synthetic trials: from six cycles
    # only, SDS is noisy, but its level over the cycle is the true one within 25 %
    rec = cut_windows(data.sets, data.calibration)
    assert np.all(np.isfinite(cal.stiffness))
    assert np.mean(cal.stiffness) == pytest.approx(np.mean(rec.stiffness), rel=0.25)


def test_model_from_preset_matches_plant(example):
    root, _ = example
    data, _ = _data(_scenario(root, params={"initial": {"preset": "ankle"}}))
    from plants.ankle import default_ankle_params

    p = default_ankle_params(128.0)
    np.testing.assert_allclose(np.asarray(data.model.base_params.f_max), np.asarray(p.f_max))
    assert data.model.emg_map.shape == (7, 5) and data.model.strength_groups == GROUPS
    # a subset of the preset's MTUs, in another order
    sub, _ = _data(_scenario(root, params={
        "initial": {"preset": "ankle"}, "calibrate": {"strength_groups": {}},
        "mtus": [{"name": "tib_ant", "emg": "tib_ant"}, {"name": "soleus", "emg": "soleus"}]}))
    np.testing.assert_allclose(np.asarray(sub.model.base_params.l_opt),
                               np.asarray(p.l_opt)[[3, 0]])
    assert sub.model.emg_map.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ScenarioValidationError,
                       match=r"plant.params.initial.preset: initial.preset 'ankle' has no "
                             r"MTU\(s\) \['vastus'\]"):
        _data(_scenario(root, params={
            "initial": {"preset": "ankle"}, "calibrate": {"strength_groups": {}},
            "mtus": [{"name": "vastus", "emg": "vl"}]}))


@pytest.mark.filterwarnings("ignore:No point data:UserWarning")
def test_raw_emg_from_c3d_through_the_scenario(example):
    """emg.kind raw: C3D analog EMG + an MVC trial, processed with preset 000 (exactly
    :func:`bench.emg.process_emg`), resampled onto the model time base. The excitations follow
    the plant's processed ones, r2 > 0.7 per channel."""
    root, ex = example
    doc = yaml.safe_load(EXAMPLE.read_text())
    trial = dict(doc["plant"]["params"]["trials"]["trial1"], emg="data/example/trial1_emg.c3d")
    data, _ = _data(_scenario(root, params={
        "emg": {"kind": "raw", "preset": "000", "mvc": ["data/example/mvc.c3d"]},
        "trials": {"trial1": trial}, "calibration": ["trial1"], "validation": []}))
    got = data.sets[0]
    channels, T = list(got.channels), got.excitation.shape[1]
    raw = read_c3d_analog(root / "data" / "example" / "trial1_emg.c3d", channels)
    mvc = read_c3d_analog(root / "data" / "example" / "mvc.c3d", channels)
    exact = process_emg(raw.data, raw.fs, mvc_peaks([mvc.data], mvc.fs, "000"), preset="000",
                        t_out=np.arange(T) / 128.0)
    np.testing.assert_allclose(got.excitation[0], exact, rtol=1e-12, atol=1e-15)
    want = ex["data"].excitation[0]
    order = [list(ex["data"].channels).index(c) for c in channels]
    assert got.excitation.shape == (1, 6 * N_CYCLE, 5)
    for c, k in enumerate(order):
        r = np.corrcoef(got.excitation[0, 32:-32, c], want[32:-32, k])[0, 1]
        assert r**2 > 0.7, (channels[c], r**2)


# --------------------------------------------------------------------------- located errors


def test_scenario_errors_name_file_line_field(example):
    root, _ = example
    doc = yaml.safe_load(EXAMPLE.read_text())
    p = copy.deepcopy(doc["plant"]["params"])
    p["mtus"][1] = {"name": "soleus", "emg": "soleus"}          # duplicate MTU
    path = _scenario(root, params={"mtus": p["mtus"]})
    with pytest.raises(ScenarioValidationError,
                       match=r":\d+: plant.params.mtus\[1\].name: duplicate MTU 'soleus'"):
        load_scenario(path)
    trials = copy.deepcopy(p["trials"])
    trials["trial1"]["torque"] = "data/example/nowhere.sto"
    with pytest.raises(ScenarioValidationError,
                       match=r":\d+: plant.params.trials.trial1.torque: file not found"):
        load_scenario(_scenario(root, params={"trials": trials}))
    trials = copy.deepcopy(p["trials"])
    trials["trial1"]["lengths"] = "data/example/initial.yaml"   # not a data table
    with pytest.raises(ScenarioValidationError, match=r"trials.trial1.lengths: .* is neither an "
                                                      r"OpenSim storage file nor a CEINMS"):
        load_scenario(_scenario(root, params={"trials": trials}))
    with pytest.raises(ScenarioValidationError,
                       match=r"plant.params.calibration\[0\].window: window \[0, 99\] s lies "
                             r"outside trial 'trial1'"):
        load_scenario(_scenario(root, params={"calibration": [
            {"trial": "trial1", "window": [0.0, 99.0]}]}))
    with pytest.raises(ScenarioValidationError,
                       match=r"calibrate.strength_groups.g\[1\]: unknown MTU 'gastroc'"):
        load_scenario(_scenario(root, params={"calibrate": {
            "strength_groups": {"g": ["soleus", "gastroc"]}}}))
    with pytest.raises(ScenarioValidationError, match=r"grid: cell .*unknown EMG channel"
                                                      r"\(s\) \['nope'\]"):
        load_scenario(_scenario(root, grid={"recorded": [["soleus", "nope"]]}))
    with pytest.raises(ScenarioValidationError,
                       match=r"methods\[0\].params.learning_rate: The 'learning_rate' "
                             r"parameter of GradientCalibrator must be a float in \(0, inf\)"):
        load_scenario(_scenario(root, methods=[{"name": "adamw",
                                                "params": {"learning_rate": float("inf")}}]))
    with pytest.raises(ScenarioValidationError, match=r"plant.params.trials.trial1: unknown "
                                                      r"key|plant.params.trials.trial1.extra"):
        t = copy.deepcopy(p["trials"])
        t["trial1"]["extra"] = "x"
        load_scenario(_scenario(root, params={"trials": t}))


# --------------------------------------------------------------------------- parameter files


def test_params_file_yaml_and_csv(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("fs: 100\nmtus:\n  a: {f_max: 100, l_opt: 0.1, l_ts: 0.2, phi_opt: 0.1,"
                 " shape: -1}\n  b: {f_max: 200, l_opt: 0.05, l_ts: 0.3, phi_opt: 0,"
                 " shape: -2}\n")
    got = read_params_file(y, ["b", "a"], 100.0)
    np.testing.assert_allclose(got["f_max"], [200, 100])
    np.testing.assert_allclose(got["shape"], [-2, -1])
    assert set(got) == {"f_max", "l_opt", "l_ts", "phi_opt", "shape"}
    with pytest.raises(DataError, match=r"p.yaml:1: fs = 100 Hz \(rate of c1, c2\) differs"):
        read_params_file(y, ["a", "b"], 128.0)
    with pytest.raises(DataError, match=r"missing \['c'\], extra \['b'\]"):
        read_params_file(y, ["a", "c"], 100.0)
    c = tmp_path / "p.csv"
    c.write_text("mtu,f_max [N],l_opt [m],l_ts [m],phi_opt [rad]\na,100,0.1,0.2,0.1\n"
                 "b,200,0.05,abc,0\n")
    with pytest.raises(DataError, match=r"p.csv:3: MTU 'b': l_ts = 'abc' is not a number"):
        read_params_file(c, ["a", "b"])
    c.write_text("mtu,f_max,l_opt,l_ts\na,100,0.1,0.2\n")
    with pytest.raises(DataError, match=r"p.csv:2: MTU 'a': missing parameter\(s\) "
                                        r"\['phi_opt'\]"):
        read_params_file(c, ["a"])
    c.write_text("name,f_max\n")
    with pytest.raises(DataError, match=r"p.csv:1: the first column must be 'mtu'"):
        read_params_file(c, ["a"])
    y.write_bytes(b"mtus: {a: {f_max: 1}}\n\xff\n")
    with pytest.raises(DataError, match=r"p.yaml: not UTF-8 text \(byte 0xff at offset 22\)"):
        read_params_file(y, ["a"])


# --------------------------------------------------------------------------- CEINMS XML


def test_ceinms_subject_and_trial_xml_calibrate_like_the_files(example, cli_run):
    """The same calibration from CEINMS XML: the initial values as a CEINMS subject file (the
    example's initial.yaml written by the bench's subject writer: strength coefficient 1)
    and trial2 as a CEINMS trial file listing its tables; the calibrated subject comes out as
    CEINMS XML whose values are the run's."""
    from bench.formats.ceinms_xml import read_ceinms_subject, write_ceinms_subject

    root, ex = example
    muscles = ["soleus", "gas_med", "gas_lat", "tib_ant", "per_long", "per_brev", "per_tert"]
    init = {m: {k: float(v[i]) for k, v in ex["initial"].items()}
            for i, m in enumerate(muscles)}
    write_ceinms_subject(root / "data" / "example" / "subject.xml", init,
                         {"ankle_angle": muscles})
    (root / "data" / "example" / "trial2.xml").write_text(
        "<inputData><muscleTendonLengthFile>trial2_lmt.txt</muscleTendonLengthFile>"
        "<excitationsFile>trial2_emg.txt</excitationsFile><momentArmsFiles>"
        '<momentArmsFile dofName="ankle_angle">trial2_ma_ankle_angle.txt</momentArmsFile>'
        "</momentArmsFiles><externalTorquesFile>trial2_torque.txt</externalTorquesFile>"
        "</inputData>")
    doc = yaml.safe_load(EXAMPLE.read_text())
    trials = doc["plant"]["params"]["trials"]
    trials["trial2"] = {"ceinms": "data/example/trial2.xml",
                        "angles": "data/example/trial2_ik.mot",
                        "stiffness": "data/example/trial2_stiffness.txt"}
    path = _scenario(root, params={"initial": {"ceinms": "data/example/subject.xml"},
                                   "trials": trials},
                     methods=[ANNEALING], grid={"alpha": [1.0], "beta": [0.5],
                                                "penalty": ["hard"],
                                                "stiffness_reference": ["recorded"]})
    out = root / "run_ceinms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["calibrate", str(path), "--out", str(out), "--quiet"]) == 0
    got = yaml.safe_load((out / "calibrated" / "SA.yaml").read_text())["calibration"]
    ref = yaml.safe_load((cli_run / "calibrated" / "SA.yaml").read_text())["calibration"]
    np.testing.assert_allclose(list(got["parameters"].values()),
                               list(ref["parameters"].values()), rtol=1e-12)
    # trial2 read through its XML scores exactly as trial2 read from its files
    assert got["metrics"]["torque_nrmse"] == pytest.approx(ref["metrics"]["torque_nrmse"],
                                                           rel=1e-12)
    # the calibrated subject: strength coefficient = calibrated / initial f_max
    sub = read_ceinms_subject(out / "calibrated" / "SA_subject.xml", muscles)
    cal = read_params_file(out / "calibrated" / "SA.yaml", muscles, 128.0)
    for k in ("f_max", "l_opt", "l_ts", "shape", "c1", "c2", "delay"):
        np.testing.assert_allclose(sub.params[k], cal[k], rtol=1e-12, err_msg=k)
    import xml.etree.ElementTree as ET

    xml = ET.parse(out / "calibrated" / "SA_subject.xml").getroot()
    gm = next(m for m in xml.iter("mtu") if m.findtext("name") == "gas_med")
    assert float(gm.findtext("maxIsometricForce")) == pytest.approx(ex["initial"]["f_max"][1])
    assert float(gm.findtext("strengthCoefficient")) == pytest.approx(
        got["parameters"]["strength[gastrocnemii]"], rel=1e-12)
    assert sub.dofs == {"ankle_angle": muscles}
