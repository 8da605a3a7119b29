"""Objective (000:Eq.8-9, 001:Eq.4) and parameter space, against hand-computed values."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import DataError, InvalidParameterError
from estimators.calibration.objectives import (
    CalibrationSpace,
    Objective,
    hard_penalty,
    smooth_range_penalty,
)


class P(NamedTuple):
    f_max: jnp.ndarray
    l_opt: jnp.ndarray
    l_ts: jnp.ndarray
    shape: jnp.ndarray
    c1: jnp.ndarray
    c2: jnp.ndarray


BASE = P(*(jnp.asarray(v) for v in (
    [1000.0, 2000.0, 500.0], [0.05, 0.06, 0.1], [0.25, 0.3, 0.2], [-1.0, -1.5, -0.5],
    [-0.5] * 3, [-0.4] * 3)))
MUSCLES = ["sol", "gm", "gl"]


def test_space_layout_bounds_and_unpack():
    sp = CalibrationSpace.build(BASE, MUSCLES, strength_groups={"gas": ["gm", "gl"]},
                                calibrate_filter=True)
    assert sp.names == [
        "l_opt[sol]", "l_opt[gm]", "l_opt[gl]", "l_ts[sol]", "l_ts[gm]", "l_ts[gl]",
        "strength[gas]", "strength[sol]", "shape[sol]", "shape[gm]", "shape[gl]", "c1", "c2",
    ]
    np.testing.assert_allclose(sp.lower[:3], 0.95 * np.asarray(BASE.l_opt))
    np.testing.assert_allclose(sp.upper[3:6], 1.05 * np.asarray(BASE.l_ts))
    assert (sp.lower[6], sp.upper[6]) == (0.3, 2.5)
    x = sp.x0.copy()
    x[6] = 2.0  # gas strength doubles GM and GL, not SOL
    x[11] = 0.1
    p = sp.unpack(jnp.asarray(x))
    np.testing.assert_allclose(p.f_max, [1000.0, 4000.0, 1000.0])
    np.testing.assert_allclose(p.c1, 0.1)
    np.testing.assert_allclose(p.l_opt, BASE.l_opt)
    assert sp.specs[0].unit == "m" and sp.specs[6].unit == "1"


def test_space_errors():
    with pytest.raises(InvalidParameterError, match="unknown MTU 'ta'"):
        CalibrationSpace.build(BASE, MUSCLES, strength_groups={"g": ["ta"]})
    with pytest.raises(InvalidParameterError, match="in groups"):
        CalibrationSpace.build(BASE, MUSCLES, strength_groups={"a": ["gm"], "b": ["gm"]})


def test_objective_matches_hand_computation():
    # one trial, one DoF, 4 samples, 2 MTUs
    tau = np.array([1.0, 2.0, 3.0, 4.0])[None, :, None]
    K = np.array([10.0, 20.0, 10.0, 20.0])[None, :, None]
    out = {
        "torque": jnp.asarray(tau + np.array([0.5, 0, 0, -0.5])[None, :, None]),
        "stiffness": jnp.asarray(K + 5.0),
        "lm": jnp.asarray(np.array([[1.0, 1.0], [0.4, 1.0], [1.0, 1.6], [1.0, 1.0]])[None]),
        "lt": jnp.asarray(np.array([[1.02, 1.0], [1.0, 1.0], [1.0, 1.0], [0.99, 1.0]])[None]),
    }
    obj = Objective(alpha=0.6, beta=0.4, penalty="hard")
    vt, vk = obj.reference_variances(tau, K)
    # var(tau) = 1.25, var(K) = 25
    e_tau = (0.25 + 0 + 0 + 0.25) / 4 / 1.25
    e_k = 25.0 / 25.0
    # hard penalty: samples 1 (lm 0.4), 2 (lm 1.6), 3 (lt 0.99) each one MTU -> 1000*3/4
    expected = 0.6 * e_tau + 0.4 * e_k + 750.0
    assert float(obj(out, tau, K, vt, vk)) == pytest.approx(expected)
    smooth = Objective(alpha=1.0, beta=0.0, penalty="smooth", smooth_weight=10.0)
    # lm: 10*(0.1^2) + 10*(0.1^2) over 4 samples; strain: 10*(0.01^2) at sample 3
    expected_s = e_tau + (0.1 + 0.1) / 4 + 10 * 1e-4 / 4
    assert float(smooth(out, tau, None, vt, None)) == pytest.approx(expected_s)
    errs = obj.errors({k: np.asarray(v) for k, v in out.items()}, tau, K)
    assert errs["E_tau"] == pytest.approx(np.var([0.5, 0, 0, -0.5]) / 1.25)
    assert errs["E_tau_K"] == pytest.approx(errs["E_tau"] + 0.0)


def test_penalties_zero_inside_ranges():
    lm = jnp.full((2, 5, 3), 1.0)
    lt = jnp.full((2, 5, 3), 1.03)
    assert float(hard_penalty(lm, lt)) == 0.0
    assert float(smooth_range_penalty(lm, 0.5, 1.5, 100.0)) == 0.0


def test_objective_validation():
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of Objective"):
        Objective(alpha=1.5)
    with pytest.raises(InvalidParameterError, match="'penalty'"):
        Objective(penalty="soft")
    with pytest.raises(DataError, match="needs a reference stiffness"):
        Objective(beta=0.5).reference_variances(np.ones((1, 3, 1)) * [[[1], [2], [3]]], None)
