"""Calibration on real recordings: the frictions a new user met, each with the test that
shows it gone.

Data shipped in ``scenarios/data`` (sources and licences in their SOURCE.md): OpenSim's walking
example (Rajagopal et al. 2016 data; ``opensim-walking/``) and two trials of the NMSM
Pipeline's Muscle-Tendon Personalization test data (``nmsm-mtp/``: a gait and a squat trial
at different rates, with EMG pre-roll, MuscleAnalysis files and an ``.osimx`` file).

* the OpenSim model (``.osim``) as the source of MTU kinematics and initial values: the
  kinematics against OpenSim's own path lengths, the message naming the extra without it, the
  walking example end to end (``slow``, needs ``impbench[opensim]``);
* trials of different rates and lengths calibrating together, each window averaged over its
  own samples (000:Eq.8 exactly, penalties included), with what was done stated;
* reports: per-DoF, per-window held-out scores, negative modelled stiffness counted, the
  annealing's distance from its stop criterion.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from bench.cli import main
from bench.errors import ConvergenceWarning, DataError
from bench.types import TrialWindow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "scenarios" / "data"
WALK = DATA / "opensim-walking"
MTP = DATA / "nmsm-mtp"
HAS_OPENSIM = importlib.util.find_spec("opensim") is not None

#: Held-out fit the shipped walking example must reach (least-squares, equilibrium tendon;
#: measured 0.252 / 13.3 Nm / 0.931): swing and the next heel strike, calibrated on stance.
WALK_BOUNDS = {"torque_nrmse_trial": 0.35, "torque_rmse": 18.0, "torque_r2": 0.85}
#: Held-out fit of the NMSM trials (rigid tendon, least-squares; measured 0.309 / 14.0 Nm /
#: 0.727): the end of the squat, calibrated on the gait trial and the squat's start.
MTP_BOUNDS = {"torque_nrmse_trial": 0.4, "torque_r2": 0.65}


# --------------------------------------------------------------------------- 4: lengths


def _ankle():
    from plants.ankle import AnklePlant
    from plants.muscle.model import MuscleModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = AnklePlant(n_cycles=2, n_trials=1, tendon="rigid").simulate(
            np.random.default_rng(0))
    d.meta["time"] = np.arange(d.torque.shape[1]) / d.fs
    return d, MuscleModel.from_ankle(d.fs, tendon="rigid")


@pytest.mark.parametrize("penalty", ["hard", "smooth", "both"])
def test_windows_of_different_lengths_average_each_over_its_own_samples(penalty):
    """000:Eq.8 averages each trial over its own N_s samples: the loss of windows of 150, 113
    and 60 samples stacked (padded) is the mean of their losses taken one by one, torque,
    stiffness and penalty terms alike (the start point puts some MTUs outside their range)."""
    from estimators.calibration._problem import ModelLoss, WeightedModelLoss, make_problem
    from estimators.calibration.objectives import CalibrationSpace, Objective
    from estimators.calibration.task import cut_windows

    d, model = _ankle()
    space = CalibrationSpace.build(model.base_params, list(model.muscles))
    ws = (TrialWindow(0, 0, 0, 150), TrialWindow(0, 0, 100, 213), TrialWindow(0, 0, 200, 260))
    both = cut_windows((d,), ws)
    assert both.torque.shape == (3, 150, 1) and both.meta["window_lengths"] == [150, 113, 60]
    np.testing.assert_array_equal(both.meta["valid"].sum(axis=1), [150, 113, 60])
    obj = Objective(1.0, 0.5, penalty=penalty)
    fn = ModelLoss(model, space, obj)
    # tendon slack lengths 5 % longer: short fibres (l_m < 0.5) at some samples
    x = jnp.asarray(np.where((np.arange(space.size) >= 7) & (np.arange(space.size) < 14),
                             space.upper, space.x0))
    one = [float(fn(x, fn.prepare(cut_windows((d,), (w,))))) for w in ws]
    pen = [float(ModelLoss(model, space, Objective(0.0, 0.0, penalty=penalty))(
        x, fn.prepare(cut_windows((d,), (w,))))) for w in ws]
    assert min(pen) > 0 and max(pen) > 1.05 * min(pen)  # active, and not alike everywhere
    full = fn.prepare(both)
    np.testing.assert_allclose(float(fn(x, full)), np.mean(one), rtol=1e-12)
    np.testing.assert_allclose(float(jnp.sum(fn.residuals(x, full) ** 2)), np.mean(one),
                               rtol=1e-10)
    w = WeightedModelLoss(model, space, obj)
    np.testing.assert_allclose(float(w(x, jnp.asarray([1.0, 0.5]), w.prepare(both))),
                               np.mean(one), rtol=1e-12)
    # equal lengths keep the unpadded arrays (no weights, the compiled loss of before)
    same = cut_windows((d,), (*ws[:1], TrialWindow(0, 0, 50, 200)))
    assert "valid" not in same.meta and fn.prepare(same)["sample_weight"] is None
    # E_tau of the study over the windows' own samples
    prob = make_problem(model, both, obj, space)
    assert prob.valid is not None and prob.valid.sum() == 323



def test_padded_windows_count_only_their_own_samples_in_adamw_and_synergy_terms():
    """The AdamW sweep's E_tau and the synergy-hybrid tracking term average each window over
    its own samples (the padding of a short window never enters)."""
    from estimators.calibration.gradient import GradientCalibrator
    from estimators.calibration.objectives import CalibrationSpace, Objective
    from estimators.calibration.synergy import SynergyHybridCalibrator
    from estimators.calibration.task import cut_windows

    d, model = _ankle()
    space = CalibrationSpace.build(model.base_params, list(model.muscles))
    both = cut_windows((d,), (TrialWindow(0, 0, 0, 150), TrialWindow(0, 0, 200, 260)))
    valid = both.meta["valid"]
    # the padding differs from the samples it pads: a leak would show in the numbers
    assert not valid.all()
    objs = [Objective(1.0, 0.0), Objective(1.0, 0.5)]
    res = GradientCalibrator(restarts=1, max_steps=3).calibrate_many(model, both, objs,
                                                                     space=space)
    for r in res:
        pred = r.predicted["calibration"]
        ref = np.asarray(both.torque)[valid]
        est = np.asarray(pred["torque"])[valid]
        assert r.info["E_tau"] == pytest.approx(np.var(est - ref) / np.var(ref), rel=1e-9)
    syn = SynergyHybridCalibrator(recorded=[0, 1, 2], n_synergies=2, max_steps=3)
    with warnings.catch_warnings():  # 3 steps: the terms are what is checked here
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = syn.calibrate(model, both, objs[0], space=space)
    H, W = r.info["primitives"], r.info["weights"]
    exc = np.asarray(both.excitation, float)[..., [0, 1, 2]]
    sq = (exc - np.einsum("stk,kc->stc", H, W)[..., [0, 1, 2]]) ** 2
    per_window = [sq[i][valid[i]].mean() for i in range(2)]
    assert r.info["loss_terms"]["recorded_tracking"] == pytest.approx(
        syn.w_e * np.mean(per_window), rel=1e-5)


def test_trials_at_other_rates_need_an_explicit_resample(tmp_path):
    from bench.grid import unit_rng, units
    from bench.scenario import load_scenario

    # the model rate is the first calibration trial's (gait, 73.7 Hz); the squat's differs
    path = _mtp_scenario(tmp_path, resample=False, fs=None)
    sc = load_scenario(path)
    u = units(sc)[0]
    plant = sc.plant.cls(**u.cell.params)
    with pytest.raises(DataError, match=r"trial 'squat': .*speed2_squat_1.mot is sampled at "
                                        r"86.4198 Hz .* the model runs at fs = 73.6842 Hz; set "
                                        r"'resample: true'"):
        plant.simulate(unit_rng(u.cell.data_id, u.seed))


# --------------------------------------------------------------------------- NMSM trials


def _mtp_scenario(tmp: Path, *, resample: bool = True, tendon: str = "rigid",
                  fs: float | None = 100.0) -> Path:
    def trial(name: str) -> dict:
        return {"angles": str(MTP / "IKData" / f"{name}.mot"),
                "torque": str(MTP / "IDData" / f"{name}.mot"),
                "emg": str(MTP / "EMGData" / f"{name}.mot"),
                "lengths": str(MTP / "MAData" / name / f"{name}_Length.sto"),
                "moment_arms": {"ankle_angle_l": str(MTP / "MAData" / name /
                                                     f"{name}_MomentArm_ankle_angle_l.sto")}}

    doc = {
        "name": "nmsm-mtp-ankle",
        "plant": {"name": "dataset", "params": {
            "dofs": ["ankle_angle_l"],
            "mtus": [{"name": "soleus_l", "emg": "LSol"}, {"name": "gasmed_l", "emg": "LGasMed"},
                     {"name": "gaslat_l", "emg": "LGasMed"},
                     {"name": "tibant_l", "emg": "LTibAnt"}],
            "fs": fs, "resample": resample,
            "emg": {"kind": "excitation", "normalize": "peak", "delay": 0.04},
            # forces and pennation of the walking subject's left leg; lengths personalized by
            # the NMSM Pipeline for this subject
            "initial": {"osim": str(WALK / "subject_walk_scaled.osim"),
                        "osimx": str(MTP / "results" / "model_muscleModel.osimx")},
            "model": {"tendon": tendon},
            "calibrate": {"strength_bounds": [0.1, 3.0],
                          "strength_groups": {"gastrocnemii": ["gasmed_l", "gaslat_l"]}},
            "trials": {"gait": trial("speed1_gait_1"), "squat": trial("speed2_squat_1")},
            "calibration": ["gait", {"trial": "squat", "window": [1.51, 2.2]}],
            "validation": [{"trial": "squat", "window": [2.2, 2.67]}]}},
        "grid": {"alpha": [1.0], "beta": [0.0], "stiffness_reference": ["none"]},
        "methods": [{"name": "least-squares", "label": "LM", "params": {}}],
        "seeds": [0],
        "metrics": ["torque_nrmse_trial", "torque_rmse", "torque_r2", "torque_nrmse",
                    "negative_stiffness_share"],
    }
    path = tmp / f"mtp_{int(resample)}_{tendon}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def mtp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mtp")
    out = tmp / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["calibrate", str(_mtp_scenario(tmp)), "--out", str(out), "--quiet"]) == 0
    from bench import store

    (rec,) = store.read_records(out, store.read_plan(out))
    return out, rec


def test_nmsm_trials_of_different_rates_and_lengths_calibrate_together(mtp_run):
    """The gait trial (73.7 Hz) and the squat's first 0.69 s (86.4 Hz), interpolated onto
    100 Hz (136 and 69 samples), calibrate one model; the end of the squat is held out."""
    out, rec = mtp_run
    assert rec["status"] == "ok", rec["reason"]
    m, info = rec["metrics"], rec["info"]
    assert info["window_lengths"] == [136, 69]
    assert m["torque_nrmse_trial"] < MTP_BOUNDS["torque_nrmse_trial"]
    assert m["torque_r2"] > MTP_BOUNDS["torque_r2"]
    notes = "\n".join(info["data_notes"])
    for text in ("101 samples at 73.684 Hz (speed1_gait_1.mot) linearly interpolated onto 136 "
                 "samples at the model rate 100 Hz",
                 "101 samples at 86.42 Hz (speed2_squat_1.mot) linearly interpolated onto 116",
                 "channels divided by their peaks over all trials",
                 "at t - 0.04 s (electromechanical delay; 0.04 s of pre-roll",
                 "excitation samples clipped to [0, 1]",
                 "calibration windows of different lengths (gait: 136, squat 1.51-2.2 s: 69",
                 "initial values from model_muscleModel.osimx: l_opt (4 MTUs), l_ts (4 MTUs)",
                 "the model's own delay parameter set to 0"):
        assert text in notes, text
    # the report states it, and gives the held-out fit per window and DoF
    md = (out / "report.md").read_text()
    assert "## Data" in md and "## Held-out fit per window and DoF" in md
    (row,) = info["held_out_scores"]
    assert row["window"] == "squat 2.2-2.67 s" and row["dof"] == "ankle_angle_l"
    assert row["rmse"] == pytest.approx(m["torque_rmse"], rel=1e-9)
    assert f"| LM | squat 2.2-2.67 s | ankle_angle_l | {row['rmse']:.3g}" in md
    assert (out / "figures" / "held_out_torque.png").is_file()


def test_osimx_lengths_are_the_initial_values(mtp_run):
    from bench.formats import read_osim_muscles, read_osimx

    out, rec = mtp_run
    names = ["soleus_l", "gasmed_l", "gaslat_l", "tibant_l"]
    arr = np.load(out / rec["arrays"], allow_pickle=False)
    ox = read_osimx(MTP / "results" / "model_muscleModel.osimx", names)
    osim = read_osim_muscles(WALK / "subject_walk_scaled.osim", names)
    x0 = dict(zip(arr["names"].tolist(), arr["x0"]))
    np.testing.assert_allclose([x0[f"l_opt[{n}]"] for n in names], ox.values["l_opt"])
    np.testing.assert_allclose([x0[f"l_ts[{n}]"] for n in names], ox.values["l_ts"])
    np.testing.assert_allclose(arr["mtu_initial_f_max"], osim["f_max"])


def test_negative_modelled_stiffness_is_counted_and_reported(mtp_run):
    from estimators.calibration.task import _negative_stiffness

    k = np.array([[[5.0], [-1.0], [-3.0], [-9.0]], [[2.0], [-4.0], [1.0], [1.0]]])
    got = _negative_stiffness(k, [3, 4], ["a", "b"], ["ankle"])
    # window a counts its own 3 samples only (the 4th is padding)
    assert got["a"] == {"samples": 2, "of": 3, "min": -3.0, "dof": "ankle"}
    assert got["b"]["samples"] == 1 and got["b"]["min"] == -4.0
    out, rec = mtp_run
    by = rec["info"]["negative_stiffness_by_window"]
    n = sum(v["samples"] for v in by.values())
    assert rec["metrics"]["negative_stiffness_share"] == pytest.approx(
        n / sum(v["of"] for v in by.values()))
    md = (out / "report.md").read_text()
    if n:  # the rigid-tendon model of this subject has some: a warning in the record and report
        assert f"negative at {n} of" in rec["info"]["negative_stiffness"]
        assert "modelled joint stiffness is negative" in md


# --------------------------------------------------------------------------- 6: budgets


def test_annealing_reports_its_distance_from_the_stop_criterion():
    from estimators.calibration.annealing import anneal

    def f(x):
        return jnp.sum((x - 0.3) ** 2)

    lo, hi = np.zeros(3), np.ones(3)
    with pytest.warns(ConvergenceWarning, match=r"stopped at the evaluation budget \(500\) "
                                                r"before meeting its eps/N_eps criterion: its "
                                                r"change measure [\d.e+-]+ is [\d.e+-]+ x eps = "
                                                r"0.001 \(over the 3 end-of-temperature values "
                                                r"it had; the criterion compares N_eps = 4\)"):
        res = anneal(f, np.full(3, 0.9), lo, hi, np.random.default_rng(0), max_evaluations=500)
    assert not res.converged and res.info["stop_eps"] == 1e-3
    assert np.isfinite(res.info["stop_measure"]) and res.info["stop_measure"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = anneal(f, np.full(3, 0.9), lo, hi, np.random.default_rng(0))
    assert res.converged and res.info["stop_measure"] <= 1e-3


# --------------------------------------------------------------------------- 1: .osim


def test_missing_opensim_names_the_extra(monkeypatch, tmp_path):
    """Without OpenSim's package a scenario that needs it fails with the install command;
    validation does not need it."""
    from bench.formats.osim import require_opensim
    from bench.scenario import load_scenario

    monkeypatch.setitem(sys.modules, "opensim", None)
    with pytest.raises(DataError, match=r"needs OpenSim's Python package: pip install "
                                        r"'impbench\[opensim\]'"):
        require_opensim()
    sc = load_scenario(ROOT / "scenarios" / "opensim-walking.yaml")  # validates without it
    assert sc.plant.params["osim"].endswith("subject_walk_scaled.osim")
    doc = yaml.safe_load((ROOT / "scenarios" / "opensim-walking.yaml").read_text())
    doc["plant"]["params"]["base_dir"] = str(ROOT / "scenarios")
    doc["methods"] = doc["methods"][:1]
    path = tmp_path / "walk.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["run", str(path), "--out", str(out), "--quiet"])  # records the failure
    from bench import store

    (rec,) = store.read_records(out, store.read_plan(out))
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("plant: DataError: computing MTU lengths and moment arms "
                                    "from an OpenSim model needs OpenSim's Python package: pip "
                                    "install 'impbench[opensim]'")


@pytest.mark.skipif(not HAS_OPENSIM, reason="needs the opensim extra")
def test_osim_kinematics_agree_with_the_model_path_lengths():
    """Over 25 frames of the walking trial: the moment arm is -dL/dtheta of OpenSim's path
    length, and dr/dtheta the derivative of the moment arm (central differences at 0.01 rad,
    independent of the 1e-3 rad the function uses)."""
    import dataclasses

    from bench.formats import osim_kinematics, read_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = read_storage(WALK / "coordinates.sto", degrees_to_radians=False)
    tab = dataclasses.replace(tab, time=tab.time[::54], data=tab.data[::54])
    model = WALK / "subject_walk_scaled.osim"
    names = ["soleus_r", "gasmed_r", "gaslat_r", "tibant_r"]
    k = osim_kinematics(model, tab, names, ["ankle_angle_r"])
    assert k["lmt"].shape == (25, 4) and k["moment_arm"].shape == (25, 4, 1)
    assert k["ignored"] == [] and "knee_angle_r_beta" in k["set"]
    j = tab.columns.index("ankle_angle_r")
    h = 0.01

    def at(dq):
        data = tab.data.copy()
        data[:, j] += dq
        return osim_kinematics(model, dataclasses.replace(tab, data=data), names,
                               ["ankle_angle_r"])

    plus, minus = at(h), at(-h)
    r_fd = -(plus["lmt"] - minus["lmt"]) / (2 * h)
    np.testing.assert_allclose(k["moment_arm"][:, :, 0], r_fd, atol=2e-4)
    dr_fd = (plus["moment_arm"] - minus["moment_arm"])[:, :, 0] / (2 * h)
    np.testing.assert_allclose(k["dmoment_arm"][:, :, 0], dr_fd, atol=2e-3)
    # plantarflexors have negative, tibialis anterior positive moment arms (m)
    assert np.all(k["moment_arm"][:, :3, 0] < -0.03) and np.all(k["moment_arm"][:, 3, 0] > 0.03)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPENSIM, reason="needs the opensim extra")
def test_opensim_walking_example_end_to_end(tmp_path):
    """``impbench calibrate scenarios/opensim-walking.yaml`` as shipped: no script, no edited
    file. The least-squares calibration reaches :data:`WALK_BOUNDS` on the held-out swing;
    the report shows the fit, what was done to the data and the annealing's budget stop."""
    out = tmp_path / "walk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["calibrate", str(ROOT / "scenarios" / "opensim-walking.yaml"), "--out",
                     str(out), "--quiet"]) == 0
    from bench import store

    recs = {r["method_key"]: r for r in store.read_records(out, store.read_plan(out))}
    lm = next(r for r in recs.values() if r["label"].startswith("least-squares"))
    m = lm["metrics"]
    assert m["torque_nrmse_trial"] < WALK_BOUNDS["torque_nrmse_trial"], m
    assert m["torque_rmse"] < WALK_BOUNDS["torque_rmse"], m
    assert m["torque_r2"] > WALK_BOUNDS["torque_r2"], m
    notes = "\n".join(lm["info"]["data_notes"])
    assert "computed with OpenSim from subject_walk_scaled.osim (1350 frames" in notes
    assert "166 below 0 (down to -0.0267)" in notes
    assert "header says nColumns=40 but the file has 32 columns" in notes
    md = (out / "report.md").read_text()
    assert "## Held-out fit per window and DoF" in md and "walk 1.125-1.8 s" in md
    assert "stopped at their budget" in md
    assert (out / "calibrated" / "least-squares_subject.xml").is_file()
