"""The arm as calibration and identification plants of the runner.

* :class:`plants.arm.calibration.ArmCalibrationPlant` (``arm-calibration``): calibration and
  held-out simulations, a starting model perturbed from the truth (Hambly et al.'s channel
  removal on the arm); :meth:`plants.muscle.model.MuscleModel.from_arm` is the arm's own
  forward model (with the true parameters it reproduces the arm's activations and muscle
  torques ``J_m^T f_m``, Sanderink et al. Eq.1; the two older activation models do not);
* :class:`plants.arm.identification.ArmIdentificationPlant` (``arm-identification``): one
  record, initial guesses from N(gt, 0.1 gt) (Sanderink et al. Eq.24) and the truth.

Both are deterministic per seed and carry their truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import registry
from bench.errors import InvalidParameterError
from bench.metrics import nrmse
from bench.types import CalibrationData
from plants.arm.calibration import ArmCalibrationPlant, perturb_params
from plants.arm.identification import ArmDynamics, ArmIdentificationPlant
from plants.arm.muscles import MUSCLES, default_muscle_params
from plants.arm.simulate import ArmPlant
from plants.arm.truth import base_inertial_map, parameter_vector
from plants.muscle.model import MuscleModel

#: Per-DoF torque nRMSE allowed with the true parameters, first and last samples excluded.
#: The only difference left is the fibre velocity: the model differentiates l_mt numerically
#: (central differences at 100 Hz; one-sided, first order, at the two end samples), the arm
#: integrates the analytic -R qd. Measured <= 0.013 (largest on the pronation DoF, whose
#: torque is ~0.03 Nm RMS).
TORQUE_NRMSE_TOL = 0.02
DUR = 1.0


@pytest.fixture(scope="module")
def arm_data():
    return ArmPlant(movement="reach", duration=2.0).simulate(np.random.default_rng(3))


@pytest.fixture(scope="module")
def cal_unit():
    plant = ArmCalibrationPlant(movement="reach", held_out_movement="flexion_pronation",
                                duration=DUR)
    return plant, plant.simulate(np.random.default_rng(5))


@pytest.fixture(scope="module")
def id_unit():
    plant = ArmIdentificationPlant(movement="reach", duration=DUR, n_guesses=3)
    return plant, plant.simulate(np.random.default_rng(5))


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


def test_plants_are_registered():
    assert registry.resolve("plants", "arm-calibration") is ArmCalibrationPlant
    assert registry.resolve("plants", "arm-identification") is ArmIdentificationPlant
    assert ArmCalibrationPlant.task == ArmIdentificationPlant.task == "calibration"
    assert ArmCalibrationPlant.channel_names() == tuple(MUSCLES)


def test_calibration_plant_windows_model_and_truth(cal_unit):
    plant, unit = cal_unit
    assert isinstance(unit, CalibrationData)
    T = round(DUR * 100)
    cal, held = unit.sets
    assert cal.excitation.shape == (1, T, 16) and held.excitation.shape == (1, T, 16)
    assert [w.name for w in unit.calibration] == ["calibration reach"]
    assert [w.name for w in unit.held_out] == ["held-out flexion_pronation"]
    assert unit.held_out[0].set == 1 and unit.segment is None
    # the arm's EMG drove the simulation: it is the true excitation
    np.testing.assert_array_equal(cal.meta["true_excitation"], cal.excitation)
    truth = MuscleModel.from_arm(100.0).base_params
    np.testing.assert_array_equal(unit.truth["l_opt"], np.asarray(truth.l_opt))
    assert unit.truth["shape"] == pytest.approx([-1e-6] * 16)
    # starting model: l_opt, l_ts, f_max within +-3 % of the truth, the rest unchanged
    start = unit.model.base_params
    for f in ("l_opt", "l_ts", "f_max"):
        rel = np.asarray(getattr(start, f)) / np.asarray(getattr(truth, f)) - 1
        assert np.all(np.abs(rel) <= plant.init_perturbation) and np.any(rel != 0)
    np.testing.assert_array_equal(np.asarray(start.v_max), np.asarray(truth.v_max))
    assert unit.model.activation_model == "recursive_first_order"
    assert unit.space == {"strength_groups": None}


def test_calibration_plant_is_deterministic_per_seed(cal_unit):
    plant, unit = cal_unit
    again = plant.simulate(np.random.default_rng(5))
    for a, b in zip(unit.sets, again.sets):
        np.testing.assert_array_equal(a.excitation, b.excitation)
        np.testing.assert_array_equal(a.angle, b.angle)
    np.testing.assert_array_equal(np.asarray(unit.model.base_params.l_opt),
                                  np.asarray(again.model.base_params.l_opt))
    other = plant.simulate(np.random.default_rng(6))
    assert not np.allclose(other.sets[0].angle, unit.sets[0].angle)
    # calibration and held-out simulations are independent draws
    assert not np.allclose(unit.sets[0].angle[0, -1], unit.sets[1].angle[0, -1])


def test_perturb_params_and_validation():
    p = default_muscle_params(100.0)
    q = perturb_params(p, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(q.l_ts), np.asarray(p.l_ts))
    with pytest.raises(InvalidParameterError, match="init_perturbation"):
        ArmCalibrationPlant(init_perturbation=0.05)._validate()
    with pytest.raises(InvalidParameterError, match="held_out_movement"):
        ArmCalibrationPlant(held_out_movement="wave")._validate()


def test_identification_plant_guesses_model_and_truth(id_unit):
    _, unit = id_unit
    data = unit.sets[0]
    names, gt, is_muscle = parameter_vector("M2", 100.0)
    assert unit.held_out == () and len(unit.calibration) == 1
    for k in ("qd", "qdd", "vmt", "tau_passive", "tau_control"):
        assert data.meta[k].shape[:2] == (1, round(DUR * 100))
    m = unit.model
    assert m.dynamics == ArmDynamics(100.0)
    assert list(m.guess_names) == names and m.initial_guesses.shape == (3, len(names))
    rel = m.initial_guesses / np.where(gt == 0, 1, gt) - 1
    assert np.all(np.abs(rel[:, gt != 0]) < 0.6) and np.all(m.initial_guesses[:, gt == 0] == 0)
    # the space's start is the first guess's MTU parameters
    i = names.index("DELT1.l_opt")
    assert float(m.base_params.l_opt[MUSCLES.index("DELT1")]) == m.initial_guesses[0, i]
    t = data.truth
    assert t["parameters"]["names"] == names
    np.testing.assert_array_equal(t["parameters"]["values"], gt)
    np.testing.assert_array_equal(t["parameters"]["is_muscle"], is_muscle)
    np.testing.assert_allclose(t["base_inertial_map"], base_inertial_map())
    assert "PECM1.f_max" in t["identifiable"] and "BRA.f_max" not in t["identifiable"]
    assert unit.truth is t and "l_opt" not in t  # no per-MTU truth: no task Cr over the space
    assert m.dynamics.unit("ulna.Ixy") == "kg m^2" and m.dynamics.unit("PQ.f_max") == "N"


def test_identification_plant_is_deterministic_per_seed(id_unit):
    plant, unit = id_unit
    again = plant.simulate(np.random.default_rng(5))
    np.testing.assert_array_equal(unit.model.initial_guesses, again.model.initial_guesses)
    np.testing.assert_array_equal(unit.sets[0].excitation, again.sets[0].excitation)
    other = plant.simulate(np.random.default_rng(6))
    assert not np.allclose(other.model.initial_guesses, unit.model.initial_guesses)
