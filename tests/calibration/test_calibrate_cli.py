"""``impbench calibrate``: config validation, parameter files, and the files-vs-memory round trip
(issue 13 items 3-4).

The round trip: the synthetic ankle's trials written as OpenSim (trial1) and CEINMS (trial2)
files by ``scenarios/data/make_example.py`` and calibrated through the config must give the
same parameters as the same calibrator, seed and budget on the plant's in-memory
``MuscleData`` (differences come only from the 10 significant digits of the files and from
``dr/dtheta`` taken from a quadratic fit instead of the kinematics; both ~1e-9 relative).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.cli import main
from bench.emg import mvc_peaks, process_emg
from bench.errors import DataError
from bench.formats import read_c3d_analog
from bench.pipelines import with_reference_stiffness
from bench.scenario import ScenarioValidationError
from bench.types import MuscleData
from estimators.calibration.annealing import AnnealingCalibrator
from estimators.calibration.cli import build_model, load_trials, prepare_use, run_calibration
from estimators.calibration.config import (
    UseConfig,
    load_calibration_config,
    parse_calibration_config,
    read_params_file,
)
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "calibrate-example.yaml"
GROUPS = {"gastrocnemii": ["gas_med", "gas_lat"], "peronei": ["per_long", "per_brev"]}
N_CYCLE = 213  # one task cycle at 128 Hz


def _make_example_module():
    spec = importlib.util.spec_from_file_location(
        "make_example", ROOT / "scenarios" / "data" / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example dataset in a temporary copy of the scenarios layout."""
    root = tmp_path_factory.mktemp("calib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = _make_example_module().make_example(root / "data" / "example")
    return root, ex


def _config(root: Path, **changes) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    for key, value in changes.items():
        doc[key] = value
    path = root / f"cfg_{abs(hash(json.dumps(changes, sort_keys=True, default=str)))}.yaml"
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
        return calibrator.calibrate(model, mem, objective, space=space)


# --------------------------------------------------------------------------- round trip

ANNEALING = {"name": "annealing", "params": {"seed": 3, "max_evaluations": 300}}


@pytest.fixture(scope="module")
def cli_run(example):
    """``impbench calibrate`` on the example files: torque + stiffness, annealing."""
    root, _ = example
    # validation windows of one cycle each, like the calibration window: one compiled length
    cfg = _config(root, calibrator=ANNEALING,
                  objective={"alpha": 1.0, "beta": 0.5, "penalty": "hard"},
                  validation=[{"trial": "trial1", "window": [1.6640625, 3.328125]},
                              {"trial": "trial2", "window": [0.0, 1.6640625]}])
    out = root / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["calibrate", str(cfg), "--out", str(out)]) == 0
    return out


def test_files_calibrate_like_memory_annealing(example, cli_run):
    _, ex = example
    rec = yaml.safe_load((cli_run / "calibrated.yaml").read_text())
    got = {r["name"]: r["value"] for r in rec["calibration"]["parameters"]}
    mem = _in_memory(ex, AnnealingCalibrator(**ANNEALING["params"]),
                     Objective(1.0, 0.5, penalty="hard"))
    assert list(got) == list(mem.params)
    np.testing.assert_allclose(list(got.values()), list(mem.params.values()), rtol=1e-6)
    ob = rec["calibration"]["objective"]
    assert ob["value"] == pytest.approx(mem.info["objective"], rel=1e-6)
    # the calibration lowered the objective (000:Eq.8) well below its initial value
    assert ob["value"] < 0.5 * ob["initial_value"]
    assert mem.history[0] <= ob["initial_value"]


@pytest.mark.slow
def test_files_calibrate_like_memory_adamw(example, tmp_path):
    root, ex = example
    params = {"seed": 1, "restarts": 2, "max_steps": 40, "learning_rate": 0.05}
    cfg = _config(root, calibrator={"name": "adamw", "params": params},
                  objective={"alpha": 1.0, "beta": 0.5, "penalty": "smooth"})
    run = run_calibration(cfg, tmp_path / "out", report=False)
    mem = _in_memory(ex, GradientCalibrator(**params), Objective(1.0, 0.5, penalty="smooth"))
    assert list(run.result.params) == list(mem.params)
    np.testing.assert_allclose(list(run.result.params.values()), list(mem.params.values()),
                               rtol=1e-6)
    # the initial objective of the batched prediction is the calibrator's loss at x0
    from estimators.calibration._problem import make_problem

    prob = make_problem(run.model, run.calibration, Objective(1.0, 0.5, penalty="smooth"),
                        run.space)
    assert run.summary["objective"]["initial_value"] == pytest.approx(
        float(prob.loss(run.space.x0)), rel=1e-9)


def test_outputs_units_bounds_and_report(example, cli_run):
    _, ex = example
    out = cli_run
    # calibrated parameters inside their bounds, with units, in YAML and CSV
    rec = yaml.safe_load((out / "calibrated.yaml").read_text())
    rows = rec["calibration"]["parameters"]
    assert len(rows) == 7 + 7 + 5 + 7
    for r in rows:
        assert r["lower"] <= r["value"] <= r["upper"], r
    assert {r["unit"] for r in rows} == {"m", "1"}
    assert rows[0]["name"] == "l_opt[soleus]" and rows[0]["unit"] == "m"
    lines = (out / "calibrated.csv").read_text().splitlines()
    assert lines[0].startswith("name,unit,group,initial,value,lower,upper")
    assert len(lines) == 1 + len(rows)
    # calibrated.yaml / calibrated_mtus.csv are valid initial-parameter files of that model
    muscles = list(rec["mtus"])
    from_yaml = read_params_file(out / "calibrated.yaml", muscles, 128.0)
    from_csv = read_params_file(out / "calibrated_mtus.csv", muscles)
    for field in ("f_max", "l_opt", "l_ts", "shape"):
        np.testing.assert_allclose(from_csv[field], from_yaml[field], rtol=1e-10)
    vals = {r["name"]: r["value"] for r in rows}
    np.testing.assert_allclose(from_yaml["l_opt"], [vals[f"l_opt[{m}]"] for m in muscles])
    # strength scales f_max of its group: the gastrocnemii share one coefficient
    s = vals["strength[gastrocnemii]"]
    np.testing.assert_allclose(from_yaml["f_max"][1:3], s * ex["initial"]["f_max"][1:3])
    # report: fit table with nRMSE and r2 on every validation trial, parameter table, history
    md = (out / "report.md").read_text()
    assert "| trial2 | validation | 0-1.664 | ankle_angle | 213 |" in md
    assert "torque nRMSE" in md and "stiffness r2" in md and "l_ts[per_tert]" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    res = json.loads((out / "results.json").read_text())
    fits = {(f["trial"], f["role"]): f for f in res["fits"]}
    assert set(fits) == {("trial1", "calibration"), ("trial1", "validation"),
                         ("trial2", "validation")}
    for f in fits.values():
        assert 0 < f["nrmse_torque"] < 1 and 0 < f["r2_torque"] <= 1
        assert 0 < f["nrmse_stiffness"] < 1
    assert res["evaluations"] == 300 and len(res["history"]) >= 1


def test_cli_validate_and_errors(example, capsys):
    root, _ = example
    cfg = _config(root, calibrator=ANNEALING)
    assert main(["calibrate", str(cfg), "--validate"]) == 0
    assert "OK: 7 MTUs, 5 EMG channels, 1 DoF(s)" in capsys.readouterr().out
    bad = root / "bad.yaml"
    bad.write_text(cfg.read_text().replace("name: calibrate-example", "nmae: x", 1))
    assert main(["calibrate", str(bad), "--validate"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: nmae: unknown key" in err and "name: required key is missing" in err


def test_reference_stiffness_from_estimator(example):
    root, _ = example
    cfg = load_calibration_config(_config(root, stiffness={
        "source": "estimator", "estimator": "sds", "period": 1.6640625, "smooth": 20}))
    trials = load_trials(cfg)
    use = UseConfig(trial="trial1", window=(0.0, 1.6640625))
    got = prepare_use(cfg, use, trials)
    direct = with_reference_stiffness(trials["trial1"], estimator="sds", period=1.6640625,
                                      smooth=20)
    np.testing.assert_array_equal(got.stiffness, direct.stiffness[:, :N_CYCLE])
    assert got.meta["stiffness_source"] == "sds"
    # SDS leaves its edge samples empty: with beta > 0 the run refuses, naming the trial
    assert np.isnan(got.stiffness).any()
    with pytest.raises(DataError, match=r"non-finite samples \{'trial1': \d+\}"):
        run_calibration(cfg, root / "never", report=False)


def test_build_model_from_preset_matches_file(example):
    root, _ = example
    cfg = load_calibration_config(_config(root, initial={"preset": "ankle"}))
    model = build_model(cfg, 128.0)
    from plants.ankle import default_ankle_params

    p = default_ankle_params(128.0)
    np.testing.assert_allclose(np.asarray(model.base_params.f_max), np.asarray(p.f_max))
    assert model.emg_map.shape == (7, 5) and model.strength_groups == GROUPS
    # a subset of the preset's MTUs, in another order
    sub = load_calibration_config(_config(root, initial={"preset": "ankle"}, mtus=[
        {"name": "tib_ant", "emg": "tib_ant"}, {"name": "soleus", "emg": "soleus"}],
        calibrate={"strength_groups": {}}))
    m2 = build_model(sub, 128.0)
    np.testing.assert_allclose(np.asarray(m2.base_params.l_opt),
                               np.asarray(p.l_opt)[[3, 0]])
    assert m2.emg_map.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    bad = load_calibration_config(_config(root, initial={"preset": "ankle"}, mtus=[
        {"name": "vastus", "emg": "vl"}], calibrate={"strength_groups": {}}))
    with pytest.raises(DataError, match=r"initial.preset 'ankle' has no MTU\(s\) \['vastus'\]"):
        build_model(bad, 128.0)


@pytest.mark.filterwarnings("ignore:No point data:UserWarning")
def test_raw_emg_from_c3d_through_the_config(example):
    """emg.kind raw: C3D analog EMG + an MVC trial, processed with preset 000 (exactly
    :func:`bench.emg.process_emg`), resampled onto the model time base. The excitations follow
    the plant's processed ones, r2 > 0.7 per channel: the raw EMG is noise modulated by an
    already smoothed envelope and smoothed again, so the low-activity peroneus channel stays
    near 0.77."""
    root, ex = example
    doc = yaml.safe_load(EXAMPLE.read_text())
    trial = dict(doc["trials"]["trial1"], emg="data/example/trial1_emg.c3d")
    cfg = load_calibration_config(_config(
        root, emg={"kind": "raw", "preset": "000", "mvc": ["data/example/mvc.c3d"]},
        trials={"trial1": trial}, calibration=["trial1"], validation=[]))
    got = load_trials(cfg)["trial1"]
    raw = read_c3d_analog(root / "data" / "example" / "trial1_emg.c3d", cfg.channels)
    mvc = read_c3d_analog(root / "data" / "example" / "mvc.c3d", cfg.channels)
    exact = process_emg(raw.data, raw.fs, mvc_peaks([mvc.data], mvc.fs, "000"), preset="000",
                        t_out=np.arange(639) / 128.0)
    np.testing.assert_allclose(got.excitation[0], exact, rtol=1e-12, atol=1e-15)
    want = ex["data"].excitation[0]
    order = [list(ex["data"].channels).index(c) for c in cfg.channels]
    assert got.excitation.shape == (1, 639, 5)
    for c, k in enumerate(order):
        r = np.corrcoef(got.excitation[0, 32:-32, c], want[32:-32, k])[0, 1]
        assert r**2 > 0.7, (cfg.channels[c], r**2)


# --------------------------------------------------------------------------- config errors

_BAD = """\
name: bad
dofs: [ankle_angle]
mtus:
  - {name: soleus, emg: SOL}
  - {name: soleus, emg: SOL}
initial: {file: nowhere.yaml}
calibrate:
  strength_groups: {g: [soleus, gastroc]}
  shape_bounds: [-4, 0]
calibrator: {name: annealing, params: {seed: -1, T00: 3}}
objective: {alpha: 1.0, beta: 0.5}
trials:
  t1:
    torque: t1.sto
    lengths: t1_len.sto
    moment_arms: {knee: t1_ma.sto}
    emg: t1_emg.c3d
calibration: [t1, t9]
"""


def test_config_errors_name_file_line_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_BAD)
    with pytest.raises(ScenarioValidationError) as exc:
        load_calibration_config(path)
    got = {str(i) for i in exc.value.issues}
    f = str(path)
    expected = {
        f"{f}:5: mtus[1].name: duplicate MTU 'soleus' (also mtus[0])",
        f"{f}:8: calibrate.strength_groups.g[1]: unknown MTU 'gastroc'; MTUs: soleus, soleus",
        f"{f}:9: calibrate.shape_bounds: need -3 <= low < high <= 0; got [-4.0, 0.0]",
        f"{f}:18: calibration[1]: unknown trial 't9'; trials: t1",
        f"{f}:14: trials.t1.torque: file not found: {tmp_path / 't1.sto'}",
        f"{f}:16: trials.t1.moment_arms.knee: unknown DoF; dofs: ['ankle_angle']",
        f"{f}:16: trials.t1.moment_arms: no moment-arm file for DoF 'ankle_angle'",
        f"{f}:17: trials.t1.emg: C3D analog channels are raw EMG; set emg.kind: raw",
        f"{f}:6: initial.file: file not found: {tmp_path / 'nowhere.yaml'}",
        f"{f}:10: calibrator.params.T00: unknown parameter of AnnealingCalibrator; valid: "
        "seed, T0, r_T, N_S, N_T, eps, N_eps, max_evaluations",
        f"{f}:11: objective.beta: beta > 0 needs a reference stiffness: add a 'stiffness' "
        "block (source: files or estimator)",
    }
    assert expected <= got, sorted(expected - got)
    assert any(i.startswith(f"{f}:10: calibrator.params.seed: The 'seed' parameter") for i in got)


def test_config_structure_errors_stop_before_content(tmp_path):
    with pytest.raises(ScenarioValidationError) as exc:
        parse_calibration_config("name: x\ndofs: ankle\nmtus: []\nextra_key: 1\n", "c.yaml",
                                 tmp_path)
    got = [str(i) for i in exc.value.issues]
    assert "c.yaml:2: dofs: Input should be a valid list (got 'ankle')" in got
    assert any(g.startswith("c.yaml:3: mtus: List should have at least 1 item") for g in got)
    assert "c.yaml:1: trials: required key is missing" in got
    assert "c.yaml:4: extra_key: unknown key" in got
    with pytest.raises(ScenarioValidationError, match=r"c.yaml:3: <document>: invalid YAML"):
        parse_calibration_config("name: x\ndofs: [a, b\nmtus: 3\n", "c.yaml", tmp_path)


def test_adamw_with_hard_penalty_is_rejected(example):
    root, _ = example
    with pytest.raises(ScenarioValidationError, match=r"objective.penalty: the hard penalty"):
        load_calibration_config(_config(root, calibrator={"name": "adamw"},
                                        objective={"alpha": 1, "beta": 0, "penalty": "hard"}))
    cfg = load_calibration_config(_config(root, calibrator={"name": "adamw"},
                                          objective={"alpha": 1, "beta": 0}))
    assert cfg.penalty == "smooth"


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
    with pytest.raises(DataError, match=r"fs = 100 Hz \(rate of c1, c2\) differs"):
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
