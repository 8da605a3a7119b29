"""Deep-muscle least-squares identification (002:Eq.12-14) on a fast, exactly consistent arm
record.

The record is built without forward integration (which costs ~30 s of compilation): the
nominal movements of :mod:`plants.arm.simulate`, smooth random EMG for all 16 muscles, the
true muscle forces through the 002:Eq.15-21 chain, and a known external torque
``tau_ext = RNEA(q, qd, qdd; pi_gt) - J_m^T f_m`` so that 002:Eq.11 holds exactly with the
true parameters. The identifier receives the arm through its model
(:class:`plants.arm.identification.ArmIdentificationModel`); it never imports ``plants``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import registry
from bench.errors import DataError, InvalidParameterError
from bench.metrics import cr2
from bench.types import CalibrationResult, MuscleData
from estimators.calibration.deep_lsq import (
    SCORES,
    DeepMuscleIdentifier,
    arm_problem,
    excitation_analysis,
    parameter_layout,
    scores,
)
from estimators.calibration.objectives import CalibrationSpace
from plants.arm import rigid
from plants.arm.identification import ArmDynamics, ArmIdentificationModel, identification_truth
from plants.arm.muscles import MUSCLES, default_muscle_params, moment_arms, mtu_length
from plants.arm.simulate import movement_plan, nominal_movement
from plants.arm.truth import (
    base_inertial_map,
    identifiable_mask,
    parameter_vector,
    sample_initial_guess,
    score,
)
from plants.muscle import first_order_activation, mtu_force, neural_activation

FS = 100.0


def _smooth(rng, T, m, fc=1.5):
    w = rng.standard_normal((T + 200, m))
    k = np.exp(-0.5 * (np.arange(-100, 101) / (FS / (2 * np.pi * fc))) ** 2)
    x = np.stack([np.convolve(w[:, j], k / k.sum(), "same") for j in range(m)], -1)[100:-100]
    return x / x.std(axis=0)


def arm_record(seed: int = 0, duration: float = 3.0) -> MuscleData:
    rng = np.random.default_rng(seed)
    T = round(duration * FS)
    t = np.arange(T) / FS
    params = default_muscle_params(FS)
    pi = jnp.asarray(rigid.default_inertial_parameters())
    cols = {k: [] for k in ("emg", "q", "qd", "qdd", "lmt", "vmt", "R", "tau", "ext")}
    for mv in ("reach", "flexion_pronation"):
        q, qd, qdd = nominal_movement(movement_plan(mv, duration, rng), t)
        lmt = np.asarray(mtu_length(jnp.asarray(q)))
        R = np.asarray(moment_arms(jnp.asarray(q)))
        vmt = -np.einsum("tmj,tj->tm", R, qd)
        emg = np.clip(0.25 + 0.12 * _smooth(rng, T, len(MUSCLES)), 0.02, 1.0)
        u = neural_activation(jnp.asarray(emg), params.c1, params.c2, params.delay, FS)
        a = first_order_activation(u, params.t_act, params.t_deact, FS)
        f = np.asarray(mtu_force(params, a, jnp.asarray(lmt), jnp.asarray(vmt), "rigid"))
        tau_m = np.einsum("tm,tmj->tj", f, R)
        tau_id = np.asarray(jax.vmap(lambda a_, b_, c_: rigid.inverse_dynamics(a_, b_, c_, pi))(
            jnp.asarray(q), jnp.asarray(qd), jnp.asarray(qdd)))
        for k, v in (("emg", emg), ("q", q), ("qd", qd), ("qdd", qdd), ("lmt", lmt),
                     ("vmt", vmt), ("R", R), ("tau", tau_m), ("ext", tau_id - tau_m)):
            cols[k].append(v)
    st = {k: np.stack(v) for k, v in cols.items()}
    return MuscleData(
        excitation=st["emg"], angle=st["q"], torque=st["tau"], fs=FS, lmt=st["lmt"],
        moment_arm=st["R"], channels=list(MUSCLES), muscles=list(MUSCLES),
        dofs=list(rigid.DOF_NAMES),
        truth=identification_truth(FS),
        meta={"qd": st["qd"], "qdd": st["qdd"], "vmt": st["vmt"], "tau_passive": st["ext"],
              "tau_control": np.zeros_like(st["ext"])},
    )


def arm_model(guesses: int = 2, seed: int = 3) -> ArmIdentificationModel:
    """The arm's model with ``guesses`` initial guesses from N(gt, 0.1 gt) (002:Eq.24)."""
    names, gt, _ = parameter_vector("M2", FS)
    P0 = sample_initial_guess(gt, np.random.default_rng(seed), size=guesses)
    return ArmIdentificationModel(ArmDynamics(FS), P0, names, default_muscle_params(FS))


@pytest.fixture(scope="module")
def record():
    return arm_record()


@pytest.fixture(scope="module")
def model():
    return arm_model()


def test_layout_matches_the_plant_vector(model):
    """The identifier builds its parameter vector from the model alone; it names the same
    parameters as the plant's truth vector (002 Sec. III-E)."""
    for method in ("M1", "M2"):
        names, is_muscle = parameter_layout(model.dynamics, method)
        ref_names, _, ref_muscle = parameter_vector(method, FS)
        assert names == ref_names
        np.testing.assert_array_equal(is_muscle, ref_muscle)
    assert ArmDynamics(FS) == model.dynamics and hash(ArmDynamics(FS)) == hash(model.dynamics)


def test_problem_index_sets(record, model):
    m1 = arm_problem(record, model, "M1")
    m2 = arm_problem(record, model, "M2")
    assert len(m1["driven"]) == 9 and len(m1["lsq"]) == 7  # 5 deep + TRIlat + BRD
    assert len(m2["driven"]) == 16 and len(m2["lsq"]) == 0
    with pytest.raises(InvalidParameterError, match="method"):
        DeepMuscleIdentifier(method="M3")._validate()
    bad = MuscleData(**{**record.__dict__, "meta": {}})
    with pytest.raises(DataError, match="qd"):
        arm_problem(bad, model, "M1")


@pytest.mark.parametrize("method", ["M1", "M2"])
def test_loss_vanishes_at_truth(record, model, method):
    _, gt, _ = parameter_vector(method, FS)
    res = DeepMuscleIdentifier(method=method, epochs=0, slack_epochs=0).fit(model, record, gt)
    # mean squared projected residual of 002:Eq.14, (rad/s^2)^2 (the Eq.14 normalization by
    # var(d) at the initial guess is meaningless here: for M2 d itself vanishes at the truth)
    assert res.loss.size == 0
    assert res.info["final_loss"] * res.info["var_d0"] < 1e-8
    if method == "M1":
        assert res.deep_force.shape == (2, 300, 7)
    # at the truth the superficial plus least-squares forces give the muscle torque
    np.testing.assert_allclose(res.torque, record.torque, rtol=0,
                               atol=1e-6 * np.abs(record.torque).max())


def test_m1_recovers_identifiable_parameters(record, model):
    """Stated case: 2 x 3 s records, one initial guess from N(gt, 0.1 gt) (002:Eq.24)."""
    names, gt, is_muscle = parameter_vector("M1", FS)
    assert identifiable_mask(names).all()
    p0 = sample_initial_guess(gt, np.random.default_rng(1))
    res = DeepMuscleIdentifier(method="M1", epochs=600, slack_epochs=100, learning_rate=1e-2
                               ).fit(model, record, p0)
    s0 = score(names, gt, p0, is_muscle)
    s1 = score(names, gt, res.estimate, is_muscle)
    # strongly excited identifiable parameters: strengths, optimal fibre lengths, shared
    sel = np.array([n.endswith((".f_max", ".l_opt")) or n.startswith("shared.")
                    for n in names])
    c0 = cr2(gt[sel], p0[sel])
    c1 = cr2(gt[sel], res.estimate[sel])
    print("before", s0, c0, "after", s1, c1, "epoch", res.epoch_time)
    assert res.loss[-1] < 1e-3 * res.loss[0]
    assert s1["Cr1"] < 0.7 * s0["Cr1"]
    assert c1 < 0.6 * c0 and c1 < 4.5


def test_fast_form_equals_eq14_as_written(record, model):
    """The regressor/null-space form of the loss equals 002:Eq.13-14 with the pseudoinverse."""
    for method in ("M1", "M2"):
        _, gt, _ = parameter_vector(method, FS)
        p0 = sample_initial_guess(gt, np.random.default_rng(4))
        b = DeepMuscleIdentifier(method=method)._builder(model, record, gt.size)
        z = jnp.asarray(np.random.default_rng(5).normal(0.0, 0.05, gt.size))
        p0j, sc = jnp.asarray(p0), jnp.abs(jnp.asarray(p0))
        direct_f, loss_f = jax.jit(b["direct"]), jax.jit(b["loss"])
        d, f_md, r, _ = direct_f(z, p0j, sc)
        vd = jnp.var(direct_f(jnp.zeros(gt.size), p0j, sc)[0])
        direct = float(jnp.sum(r**2) / (r.shape[0] * r.shape[1] * vd))
        fast = float(loss_f(z, p0j, sc, vd))
        assert direct > 0 and abs(fast - direct) <= 1e-9 * direct
        # the least-squares forces reproduce d up to the projected residual (002:Eq.13)
        if method == "M1":
            AJf = jnp.linalg.solve(
                jnp.einsum("stijp,p->stij", b["const"]["YM"], (p0j + sc * z)[:30]),
                jnp.swapaxes(b["const"]["Rl"], -1, -2))
            np.testing.assert_allclose(np.asarray(jnp.einsum("stjk,stk->stj", AJf, f_md) + r),
                                       np.asarray(d), rtol=0, atol=1e-8 * float(jnp.abs(d).max()))


def test_fit_many_matches_looped_fit(record, model):
    """Vmapped guesses give the looped ``fit`` result (same arithmetic, batched)."""
    _, gt, _ = parameter_vector("M1", FS)
    P0 = sample_initial_guess(gt, np.random.default_rng(3), size=2)
    idf = DeepMuscleIdentifier(method="M1", epochs=20, slack_epochs=10, learning_rate=1e-2,
                               record_every=10)
    many = idf.fit_many(model, record, P0)
    assert len(many) == 2
    for g in range(2):
        one = idf.fit(model, record, P0[g])
        # 1e-9 relative: batched reductions may sum in another order
        np.testing.assert_allclose(many[g].estimate, one.estimate, rtol=1e-9, atol=0)
        np.testing.assert_allclose(many[g].loss, one.loss, rtol=1e-9)
        assert many[g].trajectory.shape == one.trajectory.shape == (4, gt.size)
        assert not np.allclose(many[g].estimate, P0[g])
    assert many[0].info["batch_size"] == 2
    with pytest.raises(DataError, match="initial_guesses"):
        idf.fit_many(model, record, P0[0])


def test_excitation_analysis_flags_unidentifiable(record, model):
    """The humerus mass never enters the dynamics (its origin is the fixed shoulder): zero
    compensated curvature; the shared EMG delay is well excited."""
    _, gt, _ = parameter_vector("M1", FS)
    exc = excitation_analysis(record, model, "M1", gt)
    names = exc["names"]
    assert exc["relative"][names.index("humerus.m")] < 1e-6  # regularization floor ~1e-12 * max
    assert not exc["well_excited"][names.index("humerus.m")]
    assert exc["well_excited"][names.index("shared.delay")]
    assert exc["relative"].max() == 1.0


def test_registered_calibrator_runs_the_models_guesses(record, model):
    """``deep-lsq`` in the registry; ``calibrate`` runs every initial guess of the model as
    one batch and returns the lowest-loss one, its MTU parameters in the task's space."""
    assert registry.resolve("calibrators", "deep-lsq") is DeepMuscleIdentifier
    idf = DeepMuscleIdentifier(method="M1", epochs=10, slack_epochs=10, record_every=10,
                               learning_rate=1e-2)
    space = CalibrationSpace.build(model.base_params, list(model.muscles))
    res = idf.calibrate(model, record, None, space=space)
    assert isinstance(res, CalibrationResult)
    runs = res.info["runs"]
    assert len(runs) == 2 and res.info["n_guesses"] == 2
    best = res.info["best_guess"]
    assert res.info["objective"] == min(r.info["final_loss"] for r in runs)
    names, _ = parameter_layout(model.dynamics, "M1")
    assert list(res.params) == names
    np.testing.assert_array_equal(list(res.params.values()), runs[best].estimate)
    assert res.info["x"].shape == (space.size,)
    # strength of an identified muscle = identified / starting f_max; deep muscles stay put
    i = space.names.index("strength[PECM1]")
    f0 = float(model.base_params.f_max[list(model.muscles).index("PECM1")])
    assert res.info["x"][i] == pytest.approx(res.params["PECM1.f_max"] / f0)
    assert res.info["x"][space.names.index("l_opt[BRA]")] == space.x0[
        space.names.index("l_opt[BRA]")]
    assert res.predicted["calibration"]["torque"].shape == record.torque.shape
    assert res.history.shape == (20,)


def test_scores_match_the_plant_criteria(record, model):
    """``extra_metrics`` are the medians over the guesses of :func:`scores`, whose Cr1, Cr2
    and Cr2^m equal the plant's own 002:Eq.22-23 scoring on the M1 vector; ``extra_arrays``
    hold the per-guess values and curves."""
    idf = DeepMuscleIdentifier(method="M2", epochs=10, slack_epochs=0, record_every=5,
                               learning_rate=1e-2)
    res = idf.calibrate(model, record)
    m = idf.extra_metrics(model, None, res, record, [])
    a = idf.extra_arrays(model, None, res, record, [])
    assert set(SCORES) <= set(m) and {f"initial_{k}" for k in SCORES} <= set(m)
    names1, gt1, mus1 = parameter_vector("M1", FS)
    names2 = parameter_layout(model.dynamics, "M2")[0]
    for g, r in enumerate(res.info["runs"]):
        e1 = r.estimate[[names2.index(n) for n in names1]]
        ref = score(names1, gt1, e1, mus1)
        assert a["guess_cr1"][g] == pytest.approx(ref["Cr1"], rel=1e-12)
        assert a["guess_cr2"][g] == pytest.approx(ref["Cr2"], rel=1e-12)
        assert a["guess_cr2m"][g] == pytest.approx(ref["Cr2m"], rel=1e-12)
        assert a["curve_cr2"][g, -1] == pytest.approx(a["guess_cr2"][g])
        assert a["curve_cr2"][g, 0] == pytest.approx(a["guess_initial_cr2"][g])
    assert m["cr2"] == pytest.approx(np.median(a["guess_cr2"]))
    assert a["snapshot_epochs"].tolist() == [0, 5, 10]
    assert a["percent_error"].shape == (2, len(names2))
    assert np.isnan(a["percent_error"][0, names2.index("BIClong.phi_opt")])  # zero truth
    assert a["well_excited"].shape == (len(names1),) and a["well_excited"].any()
    assert a["deep_identifiable"].sum() == identifiable_mask(names2).sum()
    P = base_inertial_map()
    truth = dict(zip(names2, parameter_vector("M2", FS)[1]))
    s = scores(names2, res.info["runs"][0].estimate, truth, names1,
               parameter_layout(model.dynamics, "M2")[1], P, a["well_excited"])
    assert s["cr2_base"] == pytest.approx(a["guess_cr2_base"][0])
    res.info.pop("scores")  # the cached scores
    with pytest.raises(DataError, match="truth"):
        idf.extra_metrics(model, None, res, MuscleData(**{**record.__dict__, "truth": None}), [])
