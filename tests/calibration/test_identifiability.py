"""Identifiability at a solution: singular values, correlated pairs, Gauss-Newton standard
errors, against closed-form linear least squares and a duplicated parameter."""

from __future__ import annotations

import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from bench.errors import DataError
from estimators.calibration.annealing import AnnealingCalibrator
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.identifiability import (
    SUMMARY_HEADER,
    identifiability_from,
    jacobian_at,
    markdown_rows,
    summary_row,
)
from estimators.calibration.least_squares import LeastSquaresCalibrator
from estimators.calibration.objectives import Objective
from tests.calibration.test_calibrators import BASE, ToyModel, _data

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * RNG.normal(size=40)
LO, HI = np.array([-5.0, -4.0, 0.0]), np.array([5.0, 0.0, 2.0])
NAMES = ["a", "b", "c"]


def test_standard_errors_equal_ordinary_least_squares():
    """Linear rows r = X theta - y: the Gauss-Newton covariance is the OLS one,
    sigma^2 (X^T X)^-1 with sigma^2 = RSS / (m - n)."""
    theta = np.linalg.lstsq(X, Y, rcond=None)[0]
    r, J, n_fit = jacobian_at(lambda t: jnp.asarray(X) @ t - jnp.asarray(Y), theta)
    assert n_fit == 40
    np.testing.assert_allclose(J, X, rtol=1e-12)
    ident = identifiability_from(r, J, LO, HI, NAMES, units=["m", "1", "1"], n_fit=n_fit)
    rss = float(np.sum((X @ theta - Y) ** 2))
    cov = rss / (40 - 3) * np.linalg.inv(X.T @ X)
    se = np.sqrt(np.diag(cov))
    np.testing.assert_allclose([ident["standard_error"][k] for k in NAMES], se, rtol=1e-8)
    np.testing.assert_allclose([ident["standard_error_scaled"][k] for k in NAMES],
                               se / (HI - LO), rtol=1e-8)
    s = np.linalg.svd(X * (HI - LO), compute_uv=False)
    np.testing.assert_allclose(ident["singular_values"], s, rtol=1e-10)
    np.testing.assert_allclose(ident["condition_number"], s[0] / s[-1], rtol=1e-10)
    corr = cov / np.outer(se, se)
    top = ident["top_correlations"][0]
    i, j = NAMES.index(top["pair"][0]), NAMES.index(top["pair"][1])
    np.testing.assert_allclose(top["correlation"], corr[i, j], rtol=1e-8)
    assert abs(top["correlation"]) == pytest.approx(np.max(np.abs(corr[np.triu_indices(3, 1)])))
    assert ident["rank"] == 3 and ident["poorly_determined"] == []
    json.dumps(ident)


def test_duplicated_parameter_pair_is_reported():
    """Parameters a and b only enter as a + b: the pair is the most correlated one
    (correlation -1), the scaled Jacobian is rank deficient with a huge condition number,
    and both are poorly determined while c is not."""
    Xd = np.column_stack([X[:, 0], X[:, 0], X[:, 2]])
    Yd = Xd @ np.array([0.4, 0.6, 0.5]) + 0.01 * RNG.normal(size=40)

    def rows(t):
        return jnp.asarray(Xd) @ t - jnp.asarray(Yd)

    r, J, n_fit = jacobian_at(rows, np.array([0.4, 0.6, 0.5]))
    ident = identifiability_from(r, J, np.full(3, -1.0), np.full(3, 1.0), NAMES, n_fit=n_fit)
    assert ident["top_correlations"][0]["pair"] == ["a", "b"]
    assert ident["top_correlations"][0]["correlation"] == pytest.approx(-1.0, abs=1e-6)
    assert ident["condition_number"] > 1e10
    assert ident["rank"] == 2
    assert set(ident["poorly_determined"]) == {"a", "b"}
    assert set(ident["weakest_direction"]) >= {"a", "b"}
    assert abs(ident["weakest_direction"]["a"]) == pytest.approx(2 ** -0.5, rel=1e-6)
    json.dumps(ident)


def test_markdown_helpers():
    r, J, n_fit = jacobian_at(lambda t: jnp.asarray(X) @ t - jnp.asarray(Y), np.zeros(3))
    ident = identifiability_from(r, J, LO, HI, NAMES, n_fit=n_fit)
    rows = markdown_rows(ident)
    assert len(rows) == 2 + 3 and rows[2].startswith("| a |")
    line = summary_row(ident, "torque only")
    assert line.startswith("| torque only |") and line.count("|") == SUMMARY_HEADER.split(
        "\n")[0].count("|")


def test_bad_input():
    with pytest.raises(DataError, match="r \\(m,\\), J \\(m, n\\)"):
        identifiability_from(np.zeros(4), np.zeros((3, 2)), LO[:2], HI[:2], NAMES[:2])
    with pytest.raises(DataError, match="NaN"):
        identifiability_from(np.array([np.nan, 0.0]), np.eye(2), LO[:2], HI[:2], NAMES[:2])


@pytest.mark.parametrize("calibrator", [
    AnnealingCalibrator(max_evaluations=200),
    GradientCalibrator(restarts=1, max_steps=50),
    LeastSquaresCalibrator(),
], ids=["annealing", "adamw", "least-squares"])
def test_every_calibrator_reports_identifiability(calibrator):
    obj = Objective(1.0, 0.5, penalty="hard" if calibrator.name == "annealing" else "smooth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # annealing stops at its small budget
        res = calibrator.calibrate(ToyModel(BASE), _data(), obj)
    ident = res.info["identifiability"]
    n = len(res.params)
    assert ident["names"] == list(res.params)
    assert len(ident["singular_values"]) == n and ident["condition_number"] >= 1.0
    assert set(ident["standard_error"]) == set(res.params)
    assert all(v >= 0 for v in ident["standard_error"].values())
    assert len(ident["top_correlations"]) == 5
    json.dumps(ident)
