"""The synthetic 7-MTU ankle in the dynamometer experiment (000 Sec. 2.2-2.3)."""

import numpy as np
import pytest

from bench.errors import InvalidParameterError
from bench.types import MuscleData
from plants.ankle import (
    CHANNELS,
    EMG_MAP,
    MUSCLES,
    AnklePlant,
    default_ankle_kinematics,
    gait2392_mtu_length,
    prbs,
)


@pytest.fixture(scope="module")
def unperturbed():
    return AnklePlant(n_cycles=3, perturbed=False).simulate(np.random.default_rng(7))


@pytest.fixture(scope="module")
def perturbed():
    return AnklePlant(n_cycles=3, perturbed=True).simulate(np.random.default_rng(7))


def test_output_layout(perturbed):
    d = perturbed
    assert isinstance(d, MuscleData)
    T = 3 * 213  # 128 Hz / 0.6 Hz -> 213 samples per cycle
    assert d.fs == 128.0 and d.meta["samples_per_cycle"] == 213
    assert abs(d.meta["period"] - 213 / 128) < 1e-12
    assert d.excitation.shape == (1, T, 5) and d.angle.shape == (1, T, 1)
    assert d.torque.shape == (1, T, 1) and d.stiffness.shape == (1, T, 1)
    assert d.lmt.shape == (1, T, 7) and d.moment_arm.shape == (1, T, 7, 1)
    assert d.muscles == list(MUSCLES) and d.channels == list(CHANNELS)
    assert set(d.truth["params"]) >= {"f_max", "l_opt", "l_ts", "phi_opt", "shape", "c1", "delay"}
    assert d.truth["params"]["f_max"][0] == 3549.0  # gait2392 soleus
    # PL EMG drives PL and PB; TA EMG drives TA and PT (000 Sec. 2.4)
    ta, pl = CHANNELS.index("tib_ant"), CHANNELS.index("per_long")
    assert EMG_MAP[MUSCLES.index("per_brev"), pl] == 1
    assert EMG_MAP[MUSCLES.index("per_tert"), ta] == 1
    for name in ("excitation", "angle", "torque", "lmt", "moment_arm", "stiffness"):
        assert np.all(np.isfinite(getattr(d, name))), name


def test_tracking_torque_is_about_ten_newton_metres(unperturbed):
    d = unperturbed
    tau = d.torque[0, 213:, 0]  # skip the first cycle (filter start-up)
    req = d.meta["required_torque"][213:]
    # 000 Sec. 2.2: about +-10 Nm needed; the dynamometer (1 kg m2, 2.5 Nms/rad, 60 Nm/rad)
    # with 0.15 rad at 0.6 Hz requires 7.0 Nm amplitude
    assert 6.5 < np.max(np.abs(req)) < 7.5
    assert 5.0 < tau.max() < 12.0 and -12.0 < tau.min() < -5.0
    rms = np.sqrt(np.mean((tau - req) ** 2))
    assert rms < 0.2 * np.max(np.abs(req))
    # angle follows the 0.15 rad target
    assert 0.14 < np.max(np.abs(d.angle[0, :, 0])) < 0.16


def test_fiber_lengths_stay_plausible(perturbed, unperturbed):
    for d in (perturbed, unperturbed):
        lm = d.meta["fiber_length"]
        assert lm.min() > 0.5 and lm.max() < 1.5  # 000:Eq.9 operating range


def test_true_stiffness_and_cocontraction(perturbed):
    d = perturbed
    k = d.stiffness[0, :, 0]
    assert k.min() > 5.0 and k.max() < 200.0  # Nm/rad, relaxed-to-moderate ankle
    act = d.meta["true_activation"][0]
    # realistic co-contraction: antagonists stay active throughout, no saturation
    assert act.min() > 0.0 and act.max() < 0.8
    ta, sol = MUSCLES.index("tib_ant"), MUSCLES.index("soleus")
    assert np.min(act[:, ta]) > 0.02 and np.min(act[:, sol]) > 0.005


def test_processed_emg_follows_true_excitation(unperturbed):
    d = unperturbed
    e = d.excitation[0, 213:]
    e_true = d.meta["true_excitation"][0, 213:]
    for c in range(5):
        r = np.corrcoef(e[:, c], e_true[:, c])[0, 1]
        assert r > 0.8, (CHANNELS[c], r)
    assert np.all(e >= 0) and np.max(e) < 1.0


def test_perturbation_and_determinism(perturbed):
    p = perturbed.meta["perturbation"][0]
    assert 0.025 < np.max(np.abs(p)) < 0.035
    again = AnklePlant(n_cycles=3, perturbed=True).simulate(np.random.default_rng(7))
    np.testing.assert_array_equal(again.torque, perturbed.torque)
    np.testing.assert_array_equal(again.excitation, perturbed.excitation)
    other = AnklePlant(n_cycles=3, perturbed=True).simulate(np.random.default_rng(8))
    assert not np.allclose(other.torque, perturbed.torque)


def test_kinematics_follow_gait2392_geometry():
    kin = default_ankle_kinematics()
    th = np.linspace(-0.2, 0.2, 9)
    path = gait2392_mtu_length(th)
    np.testing.assert_allclose(np.asarray(kin.lmt(th)), path, atol=1e-4)  # < 0.1 mm
    h = 1e-5
    r_path = -(gait2392_mtu_length(th + h) - gait2392_mtu_length(th - h)) / (2 * h)
    np.testing.assert_allclose(np.asarray(kin.moment_arm(th)), r_path, atol=1e-3)  # < 1 mm
    r0 = dict(zip(MUSCLES, kin.r0))
    # plantarflexors shorten with plantarflexion (theta < 0): negative moment arms
    assert -0.05 < r0["soleus"] < -0.04 and 0.035 < r0["tib_ant"] < 0.05
    assert r0["per_tert"] > 0 and r0["per_long"] < 0 and r0["per_brev"] < 0


def test_prbs_levels_and_switching():
    x = prbs(3000, 1000.0, 0.03, 0.15, np.random.default_rng(0))
    assert set(np.unique(x)) == {-0.03, 0.03}
    switches = np.flatnonzero(np.diff(x))
    assert np.all((switches + 1) % 150 == 0)


def test_bad_parameters_are_named():
    with pytest.raises(InvalidParameterError, match="'tendon'"):
        AnklePlant(tendon="stiff").simulate(np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="'n_cycles'"):
        AnklePlant(n_cycles=0).simulate(np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="fs / fs_out"):
        AnklePlant(fs=2048.0, fs_out=100.0).simulate(np.random.default_rng(0))
