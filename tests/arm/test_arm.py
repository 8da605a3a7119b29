"""Synthetic 16-muscle arm (002 Sec. III/IV-A): kinematics, EMG chain, forward simulation,
ground truth and initial-guess sampler.

One short simulation per movement is shared by the module (JIT compile dominates the cost);
every test compares numbers against an independent computation or a stated tolerance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import InvalidParameterError
from bench.types import MuscleData
from plants.arm import rigid
from plants.arm.muscles import (
    DEFAULT_MUSCLE_GEOMETRY,
    MUSCLES,
    SPANS,
    default_muscle_params,
    moment_arms,
    mtu_length,
)
from plants.arm.simulate import (
    JOINT_RANGES,
    MOVEMENTS,
    ArmPlant,
    design_activations,
    invert_activation,
    invert_excitation,
    simulate_arm,
)
from plants.arm.truth import (
    identifiable_mask,
    parameter_vector,
    sample_initial_guess,
    score,
)
from plants.muscle import first_order_activation, mtu_force, neural_activation

DURATION = 2.0
FS = 100.0
SEED = 7
PI = jnp.asarray(rigid.default_inertial_parameters())
#: independent inverse dynamics (RNEA of rigid.py), compiled once for the module
_ID = jax.jit(jax.vmap(lambda q, qd, qdd: rigid.inverse_dynamics(q, qd, qdd, PI)))


@pytest.fixture(scope="module")
def trials():
    rng = np.random.default_rng(SEED)
    return {m: simulate_arm(rng, movement=m, duration=DURATION, fs=FS) for m in MOVEMENTS}


# --------------------------------------------------------------------------- kinematics
def test_moment_arm_sparsity_is_002_fig2():
    q = np.random.default_rng(1).uniform(JOINT_RANGES[:, 0], JOINT_RANGES[:, 1], (20, 5))
    R = np.asarray(moment_arms(jnp.asarray(q)))
    assert R.shape == (20, 16, 5)
    assert np.all(R[:, ~SPANS] == 0.0)  # exact zeros where a muscle does not span
    assert np.all(np.abs(R[:, SPANS]) > 0.0)
    # deep shoulder subsystem 3x2 of rank 2 (overdetermined), elbow 2x3 of rank 2 (under-)
    Rd = R[:, [MUSCLES.index(m) for m in ("INFSP", "SUBSC", "TRImed", "BRA", "PQ")]]
    assert np.all(np.linalg.matrix_rank(Rd[:, :2, :3]) == 2)
    assert np.all(np.linalg.matrix_rank(Rd[:, 2:, 3:]) == 2)
    # plausible magnitudes at the reference posture: 0.5-5 cm
    r0 = np.abs(np.asarray(moment_arms(DEFAULT_MUSCLE_GEOMETRY.q_ref)))[SPANS]
    assert r0.min() >= 0.005 and r0.max() <= 0.05


def test_moment_arms_equal_minus_dl_dq_finite_differences():
    q = jnp.asarray(np.random.default_rng(2).uniform(-1.0, 1.5, (6, 5)))
    R = np.asarray(moment_arms(q))
    h = 1e-6
    fd = np.stack(
        [
            -(np.asarray(mtu_length(q + h * e)) - np.asarray(mtu_length(q - h * e))) / (2 * h)
            for e in np.eye(5)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(R, fd, atol=1e-9)  # quadratic lengths: central FD is exact


# --------------------------------------------------------------------------- EMG chain
@pytest.mark.parametrize("delay", [0.040, 0.047])  # gamma ~ 1 (forward) and 0.3 (backward)
def test_emg_inversion_roundtrip(delay):
    rng = np.random.default_rng(3)
    T, fs = 300, 100.0
    a = 0.3 + 0.2 * np.sin(2 * np.pi * np.arange(T)[:, None] / fs * np.array([0.5, 0.8, 1.1]))
    a = a + 0.01 * rng.standard_normal((1, 3))
    u = invert_activation(a, 0.01, 0.04, fs)
    a_back = np.asarray(first_order_activation(jnp.asarray(u), 0.01, 0.04, fs, a0=a[0]))
    np.testing.assert_allclose(a_back, a, atol=1e-12)  # 002:Eq.17-18 inverted exactly
    e = invert_excitation(u, -0.55, -0.55, delay, fs)
    u_back = np.asarray(neural_activation(jnp.asarray(e), -0.55, -0.55, delay, fs))
    # the first samples depend on EMG before the record (held at e[0]; the filter forgets it
    # as 0.55^k), the last ones on EMG beyond its end
    k = int(np.ceil(delay * fs)) + 1
    np.testing.assert_allclose(u_back[50 : T - k], u[50 : T - k], atol=1e-9)  # 002:Eq.19-21


def test_static_optimization_reproduces_required_torque():
    params = default_muscle_params(FS)
    q = np.tile(DEFAULT_MUSCLE_GEOMETRY.q_ref, (4, 1)) + 0.1 * np.arange(4)[:, None]
    qd = np.zeros_like(q)
    tau_req = np.array([[3.0, -1.0, 0.2, 1.0, 0.01]] * 4)
    floor = np.full((4, 16), 0.02)
    a = design_activations(q, qd, tau_req, floor, params)
    assert np.all(a >= floor - 1e-12) and np.all(a <= 1.0)
    lmt = mtu_length(jnp.asarray(q))
    f = np.asarray(mtu_force(params, jnp.asarray(a), lmt, jnp.zeros_like(lmt), "rigid"))
    tau = np.einsum("tmj,tm->tj", np.asarray(moment_arms(jnp.asarray(q))), f)
    np.testing.assert_allclose(tau, tau_req, atol=2e-3)  # Nm (penalty weight rho = 1e6)


# --------------------------------------------------------------------------- simulation
@pytest.mark.parametrize("movement", MOVEMENTS)
def test_inverse_dynamics_reproduces_applied_torques(trials, movement):
    tr = trials[movement]
    tau_id = np.asarray(_ID(tr.q, tr.qd, tr.qdd))
    applied = tr.tau_muscle + tr.tau_passive + tr.tau_control
    scale = np.abs(applied).max()
    np.testing.assert_allclose(tau_id, applied, atol=1e-9 * scale)
    # the muscles do the work: the PD tracking stays a small correction
    assert np.linalg.norm(tr.tau_control) < 0.2 * np.linalg.norm(tr.tau_muscle)


@pytest.mark.parametrize("movement", MOVEMENTS)
def test_recorded_muscle_quantities_are_consistent(trials, movement):
    tr = trials[movement]
    params = default_muscle_params(FS)
    np.testing.assert_allclose(tr.lmt, np.asarray(mtu_length(tr.q)), atol=1e-14)
    np.testing.assert_allclose(tr.moment_arm, np.asarray(moment_arms(tr.q)), atol=1e-14)
    np.testing.assert_allclose(
        tr.vmt, -np.einsum("tmj,tj->tm", tr.moment_arm, tr.qd), atol=1e-14
    )
    f = np.asarray(mtu_force(params, jnp.asarray(tr.activation), tr.lmt, tr.vmt, "rigid"))
    np.testing.assert_allclose(tr.force, f, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(
        tr.tau_muscle, np.einsum("tmj,tm->tj", tr.moment_arm, tr.force), rtol=1e-10, atol=1e-9
    )
    # activations come from the recorded EMG through 002:Eq.19-21 and Eq.17-18
    u = neural_activation(jnp.asarray(tr.emg), params.c1, params.c2, params.delay, FS)
    a = first_order_activation(u, params.t_act, params.t_deact, FS)
    np.testing.assert_allclose(tr.activation, np.asarray(a), atol=1e-12)
    assert 0.0 <= tr.emg.min() and tr.emg.max() <= 1.0
    # irregular EMG of all 16 muscles: every channel varies
    assert np.all(tr.emg.std(axis=0) > 1e-3)


@pytest.mark.parametrize("movement", MOVEMENTS)
def test_integration_is_consistent(trials, movement):
    tr = trials[movement]
    dt = 1.0 / FS
    # central differences of the recorded states agree with the recorded derivatives
    dq = (tr.q[2:] - tr.q[:-2]) / (2 * dt)
    assert np.sqrt(np.mean((dq - tr.qd[1:-1]) ** 2)) < 0.02 * np.sqrt(np.mean(tr.qd**2))
    # (looser for accelerations: at 100 Hz central differences miss part of the fast forearm
    # dynamics; 10 RK4 sub-steps per sample resolve them)
    dqd = (tr.qd[2:] - tr.qd[:-2]) / (2 * dt)
    assert np.sqrt(np.mean((dqd - tr.qdd[1:-1]) ** 2)) < 0.2 * np.sqrt(np.mean(tr.qdd**2))
    dl = (tr.lmt[2:] - tr.lmt[:-2]) / (2 * dt)
    assert np.sqrt(np.mean((dl - tr.vmt[1:-1]) ** 2)) < 0.02 * np.sqrt(np.mean(tr.vmt**2))


@pytest.mark.parametrize("movement", MOVEMENTS)
def test_joint_angles_stay_within_ranges(trials, movement):
    tr = trials[movement]
    assert np.all(tr.q >= JOINT_RANGES[:, 0]) and np.all(tr.q <= JOINT_RANGES[:, 1])
    assert np.abs(tr.q - tr.q_nominal).max() < 0.5  # rad: follows the nominal movement
    assert np.ptp(tr.q, axis=0).max() > 0.3  # and it does move


def test_movements_differ(trials):
    r, fp = trials["reach"], trials["flexion_pronation"]
    # reaching moves the shoulder more; flexion-pronation moves elbow and forearm more
    assert np.ptp(r.q[:, 0]) > np.ptp(fp.q[:, 0])
    assert np.ptp(fp.q[:, 4]) > 0.5


def test_deterministic_per_seed(trials):
    rng = np.random.default_rng(SEED)
    again = simulate_arm(rng, movement=MOVEMENTS[0], duration=DURATION, fs=FS)
    ref = trials[MOVEMENTS[0]]
    for name in ("q", "qd", "qdd", "emg", "force", "tau_control"):
        np.testing.assert_array_equal(getattr(again, name), getattr(ref, name))
    other = simulate_arm(np.random.default_rng(SEED + 1), movement=MOVEMENTS[0],
                         duration=DURATION, fs=FS)
    assert not np.allclose(other.q, ref.q)


def test_plant_returns_muscle_data_and_validates():
    plant = ArmPlant(movement="both", duration=DURATION, fs=FS)
    data = plant.simulate(np.random.default_rng(SEED))
    assert isinstance(data, MuscleData)
    T = round(DURATION * FS)
    assert data.excitation.shape == (2, T, 16) and data.angle.shape == (2, T, 5)
    assert data.moment_arm.shape == (2, T, 16, 5) and data.torque.shape == (2, T, 5)
    assert data.meta["movements"] == list(MOVEMENTS)
    assert len(data.truth["muscle_params"]["f_max"]) == 16
    with pytest.raises(InvalidParameterError, match="'movement' parameter of ArmPlant"):
        ArmPlant(movement="run").simulate(np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="'substeps'"):
        ArmPlant(substeps=0).simulate(np.random.default_rng(0))


# --------------------------------------------------------------------------- truth
def test_parameter_vectors_and_identifiability():
    names, values, is_muscle = parameter_vector("M1")
    assert len(names) == 80 and is_muscle.sum() == 50  # 002 Sec. III-E: pi_b 30, pi_ms 50
    names2, values2, _ = parameter_vector("M2")
    assert len(names2) == 115
    mask = identifiable_mask(names2)
    unident = {n.split(".")[0] for n, ok in zip(names2, mask) if not ok}
    assert unident == {"TRIlat", "BRD", "INFSP", "SUBSC", "TRImed", "BRA", "PQ"}
    assert np.all(identifiable_mask(names))
    # M1 is the identifiable part of M2, value for value
    sel = np.array([n in names for n in names2])
    np.testing.assert_array_equal(values2[sel], values)
    with pytest.raises(InvalidParameterError, match="'method'"):
        parameter_vector("M3")


def test_initial_guess_sampler_statistics():
    names, values, is_muscle = parameter_vector("M1")
    n = 4000
    draws = sample_initial_guess(values, np.random.default_rng(11), size=n)
    assert draws.shape == (n, values.size)
    sd = 0.1 * np.abs(values)
    nz = values != 0
    # mean: within 4 standard errors; std: within 6 % (SE of a std is ~1.1 % at n = 4000)
    assert np.all(np.abs(draws.mean(0) - values)[nz] < 4 * sd[nz] / np.sqrt(n))
    np.testing.assert_allclose(draws.std(0)[nz] / sd[nz], 1.0, atol=0.06)
    np.testing.assert_array_equal(draws[:, ~nz], 0.0)
    np.testing.assert_array_equal(
        sample_initial_guess(values, np.random.default_rng(11), size=n), draws
    )
    # Cr criteria: zero at the truth; E|N(0, 0.1)| = 7.98 % for Cr2 of a random guess
    assert score(names, values, values, is_muscle) == {
        "Cr1": 0.0, "Cr2": 0.0, "Cr2m": 0.0, "n_scored": 78
    }
    cr2s = [score(names, values, d, is_muscle)["Cr2"] for d in draws[:200]]
    assert abs(np.mean(cr2s) - 100 * 0.1 * np.sqrt(2 / np.pi)) < 0.5


@pytest.mark.slow
def test_base_parameter_vector_has_23_entries():
    names, _, is_muscle = parameter_vector("M1", bone="base")
    assert len(names) == 23 + 50 and is_muscle.sum() == 50
