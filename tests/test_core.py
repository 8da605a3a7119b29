"""Core types, parameter validation, registry and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bench import metrics
from bench.base import Estimator, Tags
from bench.errors import DataError, InvalidParameterError, RegistryError
from bench.params import ArrayLike, Interval, Options, describe, validate_params
from bench.registry import resolve
from bench.types import GroundTruth, ImpedanceEstimate, Realizations, cut_record


class _Const(Estimator):
    """Returns a constant stiffness (test double)."""

    name = "const"
    tags = Tags(time_varying=False, needs_ensemble=False, min_realizations=2)
    _parameter_constraints = {"value": [Interval(float, 0, None, closed="neither")]}

    def __init__(self, *, value: float = 1.0) -> None:
        self.value = value

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        return ImpedanceEstimate(K=np.full(data.N, self.value))


def test_realizations_from_record_cuts_whole_periods():
    fs, period = 100.0, 1.0
    x = np.arange(1050, dtype=float)
    data = Realizations.from_record(x, 2 * x, fs, period)
    assert (data.R, data.N) == (10, 100)
    np.testing.assert_array_equal(data.u[3], x[300:400])
    np.testing.assert_array_equal(data.y, 2 * data.u)
    assert data.dt == pytest.approx(0.01)
    np.testing.assert_allclose(data.t[-1], 0.99)


@pytest.mark.parametrize(
    ("u", "y", "msg"),
    [
        (np.zeros((2, 5)), np.zeros((2, 6)), "same shape"),
        (np.array([[0.0, np.nan, 1.0]]), np.zeros((1, 3)), "non-finite"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), r"shape \(R, N\)"),
    ],
)
def test_realizations_rejects_bad_arrays(u, y, msg):
    with pytest.raises(DataError, match=msg):
        Realizations(u=u, y=y, fs=100.0)


def test_realizations_rejects_bad_fs_and_truth():
    with pytest.raises(DataError, match="fs"):
        Realizations(u=np.zeros((1, 4)), y=np.zeros((1, 4)), fs=0.0)
    with pytest.raises(DataError, match=r"truth\.K"):
        Realizations(u=np.zeros((1, 4)), y=np.zeros((1, 4)), fs=1.0,
                     truth=GroundTruth(K=np.zeros(3)))


def test_cut_record_errors():
    with pytest.raises(DataError, match="shorter than one period"):
        cut_record(np.zeros(50), 100.0, 1.0)
    with pytest.raises(DataError, match="period"):
        cut_record(np.zeros(50), 100.0, -1.0)


def test_interval_and_options_messages():
    cons = {"window": [Interval(int, 4, 400)], "kind": [Options(("a", "b"))],
            "profile": [Options(("sine",)), ArrayLike()]}
    validate_params("SDS", cons, {"window": 10, "kind": "a", "profile": [1.0, 2.0]})
    with pytest.raises(InvalidParameterError) as exc:
        validate_params("SDS", cons, {"window": 2})
    assert str(exc.value) == (
        "The 'window' parameter of SDS must be an int in [4, 400]. Got 2 instead."
    )
    with pytest.raises(InvalidParameterError, match="one of \\{'a', 'b'\\}"):
        validate_params("SDS", cons, {"kind": "c"})
    with pytest.raises(InvalidParameterError, match="has no parameter 'windw'"):
        validate_params("SDS", cons, {"windw": 3})
    # bools are not ints, floats are not ints, NaN is never in an interval
    for bad in (True, 10.0, float("nan")):
        with pytest.raises(InvalidParameterError):
            validate_params("SDS", cons, {"window": bad})
    with pytest.raises(InvalidParameterError, match="finite 1-D array"):
        validate_params("SDS", cons, {"profile": [1.0, float("nan")]})


def test_estimator_base_validates_and_checks_output():
    data = Realizations(u=np.ones((3, 5)), y=np.ones((3, 5)), fs=10.0)
    est = _Const(value=2.0).estimate(data)
    np.testing.assert_array_equal(est.K, 2.0)
    assert _Const(value=2.0).get_params() == {"value": 2.0}
    assert "value=2.0" in repr(_Const(value=2.0))
    with pytest.raises(InvalidParameterError, match="'value' parameter of _Const"):
        _Const(value=-1.0).estimate(data)
    with pytest.raises(DataError, match="at least 2 realizations"):
        _Const().estimate(Realizations(u=np.ones((1, 5)), y=np.ones((1, 5)), fs=10.0))
    assert describe(_Const)[0][:2] == ("value", 1.0)


def test_registry_module_class_and_unknown_names():
    assert resolve("estimators", "tests.test_core:_Const") is _Const
    with pytest.raises(RegistryError, match="unknown estimator 'nope'"):
        resolve("estimators", "nope")
    with pytest.raises(RegistryError, match="cannot load"):
        resolve("estimators", "no.such.module:X")
    with pytest.raises(RegistryError, match="unknown registry kind"):
        resolve("widgets", "x")


def test_stiffness_error_matches_hand_computation():
    K = np.array([50.0, 150.0, 50.0, 150.0])
    K_hat = np.array([60.0, 140.0, 50.0, np.nan])
    # finite samples 0..2: errors 10, 10, 0 -> RMSE sqrt(200/3);
    # RMS of K over the same samples sqrt((2500*2+22500)/3)
    expected = 100 * np.sqrt(200 / 3) / np.sqrt((2500 * 2 + 22500) / 3)
    assert metrics.stiffness_error(K, K_hat) == pytest.approx(expected, rel=1e-12)
    assert metrics.nan_share(K_hat) == pytest.approx(0.25)
    # a constant estimate at the mean of a symmetric square wave: 004 says "about 100 %"
    sq = np.repeat([50.0, 150.0], 50)
    assert metrics.stiffness_error(sq, np.full(100, 100.0)) == pytest.approx(
        100 * 50 / np.sqrt((50**2 + 150**2) / 2)
    )


def test_other_metrics():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.rmse(t, t + 1) == pytest.approx(1.0)
    assert metrics.nrmse(t, t + 1) == pytest.approx(1 / np.sqrt(np.mean(t**2)))
    assert metrics.r2(t, 2 * t + 5) == pytest.approx(1.0)
    assert metrics.vaf(t, t) == pytest.approx(100.0)
    assert metrics.vaf(t, np.full(4, t.mean())) == pytest.approx(0.0)
    p = np.array([1.0, 2.0, 4.0])
    assert metrics.cr1(p, p * 1.1) == pytest.approx(10.0)
    assert metrics.cr2(p, np.array([1.1, 2.0, 4.0])) == pytest.approx(100 * 0.1 / 3)
    with pytest.raises(DataError, match="zero"):
        metrics.cr2(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(DataError, match="shape"):
        metrics.rmse(t, t[:2])
