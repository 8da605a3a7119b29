"""Synergy-hybrid calibration (001 Sec. III-C, Eq. 5) on a small differentiable toy model.

The toy has six rigid-tendon MTUs on two DoFs, each MTU driven by its own channel; the true
excitations are mixtures of two synergies, so a synergy model can synthesize a withheld
channel from the recorded ones.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from bench import registry
from bench.errors import ConvergenceWarning, InvalidParameterError
from bench.metrics import r2, rmse
from bench.types import MuscleData
from estimators.calibration._problem import predict
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective
from estimators.calibration.synergy import (
    SynergyHybridCalibrator,
    channel_indices,
    extrapolate_excitations,
    initial_synergies,
    mask_channels,
    synergy_count,
    synthesis_scores,
)

M = 6
NAMES = [f"m{i}" for i in range(M)]


class P(NamedTuple):
    f_max: jnp.ndarray
    l_opt: jnp.ndarray
    l_ts: jnp.ndarray
    shape: jnp.ndarray


class Toy:
    """F = f_max a(e; A) f_L(l_m), l_m = (l_mt - l_ts) / l_opt, tau = R F (rigid tendon)."""

    muscles = tuple(NAMES)
    strength_groups = None

    def __init__(self, base: P) -> None:
        self.base_params = base

    def inputs(self, data: MuscleData):
        return {"excitation": jnp.asarray(data.excitation), "lmt": jnp.asarray(data.lmt),
                "moment_arm": jnp.asarray(data.moment_arm)}

    def simulate(self, p: P, inp):
        e = inp["excitation"]
        a = (jnp.exp(p.shape * e) - 1) / (jnp.exp(p.shape) - 1)
        lm = (inp["lmt"] - p.l_ts) / p.l_opt
        F = p.f_max * a * jnp.exp(-jnp.square((lm - 1) / 0.45))
        torque = jnp.einsum("stm,stmd->std", F, inp["moment_arm"])
        return {"torque": torque, "stiffness": torque, "lm": lm, "lt": jnp.ones_like(lm)}


TRUE = P(jnp.array([900.0, 700.0, 500.0, 800.0, 600.0, 400.0]),
         jnp.array([0.060, 0.050, 0.070, 0.055, 0.065, 0.045]),
         jnp.array([0.200, 0.250, 0.220, 0.240, 0.210, 0.230]),
         jnp.array([-1.5, -0.8, -1.2, -2.0, -1.0, -0.6]))
BASE = P(jnp.full(M, 650.0), TRUE.l_opt * jnp.array([1.02, 0.98, 1.01, 0.99, 1.02, 0.98]),
         TRUE.l_ts * jnp.array([0.99, 1.01, 1.0, 1.01, 0.99, 1.0]), jnp.full(M, -1.0))
#: synergy weights (2 synergies x 6 channels) and moment arms (6 MTUs x 2 DoFs), m
W_TRUE = np.array([[1.0, 0.8, 0.1, 0.0, 0.6, 0.2], [0.0, 0.2, 0.9, 1.0, 0.3, 0.7]])
R = np.array([[0.04, 0.0], [0.03, 0.02], [-0.035, 0.0], [-0.03, -0.02], [0.02, 0.03],
              [0.0, -0.03]])


def _data(seed: int = 0, S: int = 2, T: int = 100) -> MuscleData:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 100.0
    # alternating bursts (one synergy at a time) on a small baseline
    H = np.stack([np.stack([0.05 + 0.9 * np.clip(
        np.sin(2 * np.pi * (0.9 + 0.15 * s) * t + np.pi * k), 0, None) for k in range(2)], -1)
        for s in range(S)])  # (S, T, 2)
    e = np.clip(H @ W_TRUE + 0.01 * rng.standard_normal((S, T, M)), 0, 1)
    ang = np.stack([0.2 * np.sin(2 * np.pi * 0.5 * t + s) for s in range(S)])[..., None]
    lmt = np.asarray(TRUE.l_ts + TRUE.l_opt) - R[:, 0] * ang  # (S, T, M)
    r = np.broadcast_to(R, (S, T, M, 2)).copy()
    model = Toy(TRUE)
    out = model.simulate(TRUE, {"excitation": jnp.asarray(e), "lmt": jnp.asarray(lmt),
                                "moment_arm": jnp.asarray(r)})
    return MuscleData(excitation=e, angle=ang, torque=np.asarray(out["torque"]), fs=100.0,
                      lmt=lmt, moment_arm=r, channels=list(NAMES), muscles=list(NAMES),
                      dofs=["q1", "q2"])


OBJ = Objective(alpha=1.0, beta=0.0, penalty="smooth")


def _space() -> CalibrationSpace:
    return CalibrationSpace.build(BASE, NAMES)


def _normalized_distance(space: CalibrationSpace, a: dict, b: dict) -> float:
    """001 Sec. III-D: |difference| / allowed range, averaged over all parameters."""
    xa = np.array([a[n] for n in space.names])
    xb = np.array([b[n] for n in space.names])
    return float(np.mean(np.abs(xa - xb) / (space.upper - space.lower)))


def test_synergy_count_and_initial_factors():
    data = _data()
    E = data.excitation.reshape(-1, M)
    k, vafs = synergy_count(E, 0.85)
    assert k == 2 and vafs[-1] >= 0.85 and vafs[0] < 0.85
    rec = channel_indices(data, ["m0", "m1", "m2", "m3"])
    H, W, vaf = initial_synergies(data.excitation, rec, 2, np.random.default_rng(0))
    assert H.shape == (2, 100, 2) and W.shape == (2, M)
    assert H.min() >= 0 and H.max() <= 1 and W.min() >= 0 and W.max() <= 1
    assert vaf > 0.95
    recon = np.einsum("stk,kc->stc", H, W)[..., rec]
    assert np.sqrt(np.mean((recon - data.excitation[..., rec]) ** 2)) < 0.06


def test_extrapolation_from_true_weights_recovers_withheld_channels():
    data = _data(seed=3)
    rec = np.array([0, 3])  # one channel dominated by each synergy
    full = extrapolate_excitations(data.excitation, rec, W_TRUE)
    np.testing.assert_array_equal(full[..., rec], data.excitation[..., rec])
    assert np.max(np.abs(full - data.excitation)) < 0.06


def test_mask_and_channel_errors():
    data = _data()
    m = mask_channels(data, ["m1"])
    assert np.all(m.excitation[..., [0, 2, 3, 4, 5]] == 0)
    np.testing.assert_array_equal(m.excitation[..., 1], data.excitation[..., 1])
    with pytest.raises(InvalidParameterError, match="'nope'"):
        channel_indices(data, ["nope"])
    with pytest.raises(InvalidParameterError, match="w_s"):
        SynergyHybridCalibrator(w_s=-1.0).calibrate(Toy(BASE), data, OBJ)


def test_all_channels_matches_emg_driven():
    """With every channel recorded the model parameters follow the EMG-driven trajectory:
    the synergy terms do not involve them and AdamW is per-coordinate."""
    data = _data()
    kw = dict(learning_rate=0.05, max_steps=200, patience=200, tol=0.0)
    emg = GradientCalibrator(restarts=1, **kw).calibrate(Toy(BASE), data, OBJ, space=_space())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hyb = SynergyHybridCalibrator(**kw).calibrate(Toy(BASE), data, OBJ, space=_space())
    assert hyb.info["synthesized"] == []
    a = np.array(list(emg.params.values()))
    b = np.array(list(hyb.params.values()))
    np.testing.assert_allclose(b, a, rtol=1e-5)  # float32 JAX
    np.testing.assert_allclose(hyb.info["objective"], emg.info["objective"], rtol=1e-4)


def test_removed_channels_degrade_emg_driven_more():
    """Stated case: channels m1 and m4 (both weighted on the two synergies) withheld."""
    data = _data()
    kw = dict(learning_rate=0.05, max_steps=800, patience=100, tol=1e-7)
    sp = _space()
    ref = GradientCalibrator(restarts=1, **kw).calibrate(Toy(BASE), data, OBJ, space=sp)
    keep = ["m0", "m2", "m3", "m5"]
    emg = GradientCalibrator(restarts=1, **kw).calibrate(
        Toy(BASE), mask_channels(data, keep), OBJ, space=sp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hyb = SynergyHybridCalibrator(recorded=keep, **kw).calibrate(
            Toy(BASE), data, OBJ, space=sp)
    tau = data.torque
    tau_emg = emg.predicted["calibration"]["torque"]
    tau_hyb = hyb.predicted["calibration"]["torque"]
    e_emg, e_hyb = rmse(tau, tau_emg), rmse(tau, tau_hyb)
    print("RMSE emg/hyb", e_emg, e_hyb, "R2", r2(tau, tau_emg), r2(tau, tau_hyb))
    d_emg = _normalized_distance(sp, ref.params, emg.params)
    d_hyb = _normalized_distance(sp, ref.params, hyb.params)
    print("dist emg/hyb", d_emg, d_hyb)
    syn = hyb.info["excitation"][..., [1, 4]]
    # shape of the synthesized excitations (their scale trades off against strength)
    r2_syn = [r2(data.excitation[..., c], syn[..., j]) for j, c in enumerate((1, 4))]
    print("synth exc r2", r2_syn)
    assert e_hyb < 0.5 * e_emg
    assert r2(tau, tau_hyb) > r2(tau, tau_emg)
    assert d_hyb < d_emg
    assert min(r2_syn) > 0.8


def test_task_hooks_predict_and_extra_metrics():
    """``predict`` synthesizes a held-out trial's unrecorded channels from its recorded ones
    with the calibrated weightings (their values in the data are never read);
    ``extra_metrics`` scores the synthesized excitations against the withheld recorded and
    the true ones (calibration trials) and on the held-out trials."""
    assert registry.resolve("calibrators", "synergy-hybrid") is SynergyHybridCalibrator
    data, held = _data(seed=0), _data(seed=5, S=1)
    keep = ["m0", "m2", "m3", "m5"]
    sp = _space()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cal = SynergyHybridCalibrator(recorded=keep, max_steps=60, patience=60)
        res = cal.calibrate(Toy(BASE), data, OBJ, space=sp)
    rec, W = np.array(res.info["recorded"]), res.info["weights"]
    full = extrapolate_excitations(held.excitation, rec, W)
    ref = predict(Toy(BASE), sp, res.info["x"], MuscleData(**{**held.__dict__,
                                                               "excitation": full}))
    masked = mask_channels(held, keep)
    out = cal.predict(Toy(BASE), sp, res, masked)
    np.testing.assert_allclose(out["torque"], ref["torque"], rtol=1e-12)
    garbage = MuscleData(**{**masked.__dict__, "excitation": np.where(
        np.isin(np.arange(M), rec), masked.excitation, 0.77)})
    np.testing.assert_allclose(cal.predict(Toy(BASE), sp, res, garbage)["torque"],
                               out["torque"], rtol=1e-12)
    true = MuscleData(**{**data.__dict__, "meta": {"true_excitation": data.excitation * 0.5}})
    m = cal.extra_metrics(Toy(BASE), sp, res, true, [held])
    syn = [1, 4]
    drive = res.info["excitation"][..., syn]
    assert m["synth_rec_r2"] == pytest.approx(
        synthesis_scores(data.excitation[..., syn], drive)[1])
    assert m["synth_true_rmse"] == pytest.approx(
        synthesis_scores(0.5 * data.excitation[..., syn], drive)[0])
    assert m["synth_true_r2"] == pytest.approx(m["synth_rec_r2"])  # r2 ignores the scale
    assert m["held_synth_rmse"] == pytest.approx(
        synthesis_scores(held.excitation[..., syn], full[..., syn])[0])
    assert m["n_synergies"] == res.info["n_synergies"] and 0 < m["vaf"] <= 1
    # every channel recorded: nothing synthesized, the plain model prediction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res_all = SynergyHybridCalibrator(max_steps=5).calibrate(Toy(BASE), data, OBJ, space=sp)
    m_all = SynergyHybridCalibrator().extra_metrics(Toy(BASE), sp, res_all, data, [held])
    assert set(m_all) == {"n_synergies", "vaf"}
    np.testing.assert_allclose(
        SynergyHybridCalibrator().predict(Toy(BASE), sp, res_all, held)["torque"],
        predict(Toy(BASE), sp, res_all.info["x"], held)["torque"], rtol=1e-12)


def test_synthesis_scores():
    ref = np.stack([np.sin(np.linspace(0, 6, 50)), np.cos(np.linspace(0, 6, 50))], -1)
    e, c = synthesis_scores(ref[None], 2 * ref[None])
    assert c == pytest.approx(1.0) and e == pytest.approx(float(np.sqrt(np.mean(ref**2))))
