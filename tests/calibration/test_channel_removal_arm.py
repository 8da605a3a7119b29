"""The channel-removal study of 001 Sec. III-D on the synthetic arm (002's 16 MTUs, 5 DoFs).

* :meth:`plants.muscle.model.MuscleModel.from_arm` is the arm's own forward model: with the
  ground-truth parameters it reproduces the arm's activations and muscle torques
  (``J_m^T f_m``, 002:Eq.1) - and the two older activation models do not;
* the scenario loader selects the plant by ``plant.kind`` and rejects unknown kinds and
  keywords;
* a tiny arm study runs end to end and writes its results and report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.errors import ScenarioError
from bench.metrics import nrmse
from bench.studies.channel_removal import load_config, run_study, write_report
from plants.arm.muscles import MUSCLES
from plants.arm.simulate import ArmPlant
from plants.muscle.model import MuscleModel

#: Per-DoF torque nRMSE allowed with the true parameters, first and last samples excluded.
#: The only difference left is the fibre velocity: the model differentiates l_mt numerically
#: (central differences at 100 Hz; one-sided, first order, at the two end samples), the arm
#: integrates the analytic -R qd. Measured <= 0.013 (largest on the pronation DoF, whose
#: torque is ~0.03 Nm RMS).
TORQUE_NRMSE_TOL = 0.02


@pytest.fixture(scope="module")
def arm_data():
    return ArmPlant(movement="reach", duration=2.0).simulate(np.random.default_rng(3))


def _per_dof_nrmse(data, torque) -> np.ndarray:
    """nRMSE per trial and DoF over the interior samples 1 .. T - 2."""
    S, _, D = data.torque.shape
    return np.array([[nrmse(data.torque[s, 1:-1, d], torque[s, 1:-1, d]) for d in range(D)]
                     for s in range(S)])


def test_from_arm_reproduces_arm_torque_with_true_params(arm_data):
    model = MuscleModel.from_arm(arm_data.fs)
    assert model.muscles == MUSCLES and model.emg_map is None
    assert model.activation_model == "recursive_first_order" and model.tendon == "rigid"
    out = model.simulate(model.base_params, model.inputs(arm_data))
    # activation chain 002:Eq.17-21 reproduced exactly (shape factor -1e-6 ~ identity)
    np.testing.assert_allclose(np.asarray(out["activation"]), arm_data.meta["activation"],
                               atol=1e-5)
    err = _per_dof_nrmse(arm_data, np.asarray(out["torque"]))
    assert err.max() < TORQUE_NRMSE_TOL, err


@pytest.mark.parametrize("activation_model", ["recursive", "first_order"])
def test_other_activation_models_do_not_reproduce_arm(arm_data, activation_model):
    """Neither older chain is the arm's: the recursive filter alone misses 002:Eq.17-18 and
    ``first_order`` misses the recursive filter (why ``from_arm`` defaults to
    ``recursive_first_order``)."""
    model = MuscleModel.from_arm(arm_data.fs, activation_model=activation_model)
    out = model.simulate(model.base_params, model.inputs(arm_data))
    err = _per_dof_nrmse(arm_data, np.asarray(out["torque"]))
    assert err.max() > 5 * TORQUE_NRMSE_TOL, err


def test_loader_rejects_unknown_plant_kind():
    with pytest.raises(ScenarioError, match=r"plant\.kind must be one of \('ankle', 'arm'\)"):
        load_config({"plant": {"kind": "leg"}})


def test_loader_rejects_bad_plant_keywords():
    with pytest.raises(ScenarioError, match=r"bad plant keyword.*'arm'"):
        load_config({"plant": {"kind": "arm", "n_cycles": 2}})  # an ankle keyword
    with pytest.raises(ScenarioError, match="held_out"):
        load_config({"plant": {"kind": "arm", "held_out": {"movement": "reach"}}})
    with pytest.raises(ScenarioError, match="movement"):
        load_config({"plant": {"kind": "arm", "movement": "wave"}})


def test_loader_defaults_per_kind():
    ankle = load_config({"plant": {"n_cycles": 3}})
    assert ankle["plant"] == {"kind": "ankle", "n_cycles": 3, "n_trials": 2,
                              "perturbed": False, "tendon": "rigid"}
    assert ankle["model"] == {"tendon": "rigid", "activation_model": "recursive"}
    arm = load_config({"plant": {"kind": "arm"}})
    assert arm["plant"]["held_out"] == {"seed": 1}
    assert arm["model"]["activation_model"] == "recursive_first_order"


def test_loader_rejects_bad_removal_order():
    with pytest.raises(ScenarioError, match="removal_order"):
        load_config({"plant": {"kind": "arm"}, "removal_order": ["PQ", "soleus"]})
    with pytest.raises(ScenarioError, match="removal_order"):
        load_config({"plant": {"kind": "arm"}, "removal_order": ["PQ", "PQ"]})


def _tiny_config(**extra) -> dict:
    return {
        "name": "arm-tiny",
        "seed": 0,
        "plant": {"kind": "arm", "movement": "reach", "duration": 1.0,
                  "held_out": {"seed": 1, "movement": "flexion_pronation"}},
        "adamw": {"max_steps": 4, "patience": 10},
        "ranking_adamw": {"max_steps": 2},
        "synergy": {"w_e": 100.0},
        "max_removed": 2,
        **extra,
    }


def _check_tiny_outputs(res: dict, out, order: list[str]) -> None:
    paths = write_report(res, out)
    saved = json.loads((out / "results.json").read_text())
    assert saved["channels"] == list(MUSCLES)
    assert saved["removal_order"] == order
    rows = saved["rows"]
    assert [(r["method"], r["n_recorded"]) for r in rows] == [
        ("emg-driven", 16), ("emg-driven", 15), ("synergy-hybrid", 15),
        ("emg-driven", 14), ("synergy-hybrid", 14)]
    assert [r["removed"] for r in rows] == [[], order[:1], order[:1], order[:2], order[:2]]
    for r in rows:
        assert np.isfinite([r["cal_rmse"], r["cal_r2"], r["held_rmse"], r["held_r2"],
                            r["distance"]]).all(), r
        assert 0.0 <= r["cal_r2"] <= 1.0 and r["distance"] >= 0.0
    assert rows[0]["distance"] == 0.0
    for r in rows[2::2]:
        # arm: recorded EMG = true EMG, so both comparisons agree
        assert r["synth_vs_true_r2"] == pytest.approx(r["synth_vs_recorded_r2"])
        assert np.isfinite(r["held_synth_vs_recorded_rmse"])
        assert r["n_synergies"] >= 1
    assert saved["n_calibration_trials"] == 1 and saved["n_held_out_trials"] == 1
    md = paths["report"].read_text()
    assert "plant: arm" in md and f"| synergy-hybrid | 14 | {order[1]} |" in md
    assert paths["figure"].exists()


def test_tiny_arm_study_end_to_end(tmp_path):
    """Given removal order (no ranking): 1 + 2 x 2 calibrations, a few steps each."""
    order = ["PQ", "TRIlat"]
    res = run_study(_tiny_config(removal_order=order), tmp_path)
    assert res["single_removal_rmse"] == {}
    _check_tiny_outputs(res, tmp_path, order)


@pytest.mark.slow
def test_tiny_arm_study_with_ranking(tmp_path):
    """The full protocol: 16 single-removal calibrations rank the channels."""
    res = run_study(_tiny_config(), tmp_path)
    single = res["single_removal_rmse"]
    assert set(single) == set(MUSCLES)
    order = sorted(MUSCLES, key=lambda c: single[c])
    _check_tiny_outputs(res, tmp_path, order)
