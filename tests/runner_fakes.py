"""Tiny stand-in plant and estimators for the scenario/runner/report tests.

Referenced from test scenarios as ``tests.runner_fakes:Class`` (the registry resolves
``module:Class`` names), so the runner mechanics are tested without the real plugins.
"""

from __future__ import annotations

import time

import numpy as np

from bench.base import Estimator, Plant, Tags
from bench.errors import EstimationError, InvalidParameterError
from bench.params import Interval, Options
from bench.types import GroundTruth, ImpedanceEstimate, Realizations


class FakePlant(Plant):
    """Static gain y = K(t) u + noise with a square-wave K(t) (50 <-> 150) of period 1 s."""

    name = "fake"
    _parameter_constraints = {
        "perturbation": [Options(("fgwn", "prbs"))],
        "snr_db": [Interval(float, -20, 40)],
        "duration": [Interval(float, 0, None, closed="neither")],
        "period": [Interval(float, 0, None, closed="neither")],
        "fs": [Interval(float, 0, None, closed="neither")],
        "variation": [Options(("none", "K"))],
    }

    def __init__(
        self,
        *,
        perturbation: str = "fgwn",
        snr_db: float = 0.0,
        duration: float = 5.0,
        period: float = 1.0,
        fs: float = 50.0,
        variation: str = "K",
    ) -> None:
        self.perturbation = perturbation
        self.snr_db = snr_db
        self.duration = duration
        self.period = period
        self.fs = fs
        self.variation = variation

    def _validate(self) -> None:
        super()._validate()
        if self.duration < self.period:
            raise InvalidParameterError(
                f"duration ({self.duration} s) must be at least one period ({self.period} s)"
            )

    def simulate(self, rng: np.random.Generator) -> Realizations:
        self._validate()
        n = round(self.period * self.fs)
        r = int(self.duration // self.period)
        t = np.arange(n) / self.fs
        if self.variation == "K":
            k = np.where(t < self.period / 2, 150.0, 50.0)
        else:
            k = np.full(n, 100.0)
        u = rng.standard_normal((r, n))
        if self.perturbation == "prbs":
            u = np.sign(u)
        clean = k * u
        noise = rng.standard_normal((r, n)) * np.std(clean) * 10 ** (-self.snr_db / 20)
        return Realizations(u=u, y=clean + noise, fs=self.fs, truth=GroundTruth(K=k),
                            meta={"plant": "fake"})


class FakeLS(Estimator):
    """Ensemble least squares K_hat(n) = sum_r u y / sum_r u^2 (a real static-gain estimator)."""

    name = "fake_ls"
    tags = Tags(min_realizations=2)
    deviations = "a static gain per sample, not the source's method (fake)."
    _parameter_constraints = {"delay": [Interval(float, 0, 10)]}

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        if self.delay:
            time.sleep(self.delay)
        k = np.sum(data.u * data.y, axis=0) / np.sum(data.u**2, axis=0)
        return ImpedanceEstimate(K=k, info={"R": data.R})


class FakeMean(Estimator):
    """Time-invariant gain: one least-squares K over all samples, broadcast over N."""

    name = "fake_mean"
    tags = Tags(time_varying=False)
    _parameter_constraints = {}

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        k = np.sum(data.u * data.y) / np.sum(data.u**2)
        return ImpedanceEstimate(K=np.full(data.N, k))


class FakeBroken(Estimator):
    """Always raises, to test failure capture."""

    name = "fake_broken"
    _parameter_constraints = {}

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        raise EstimationError("matrix is singular (fake)")


class FakeNaN(Estimator):
    """Returns an all-NaN stiffness, to test failure capture."""

    name = "fake_nan"
    _parameter_constraints = {}

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        return ImpedanceEstimate(K=np.full(data.N, np.nan))


def register(subparsers) -> None:
    """CLI extension hook (used by tests/test_cli.py through ``bench.cli._EXTENSIONS``)."""
    p = subparsers.add_parser("fake-hello", help="print a greeting (test extension)")
    p.add_argument("who")
    p.set_defaults(func=lambda args: print(f"hello {args.who}") or 0)


class FakeCrash(Estimator):
    """Kills its own worker process (SIGKILL), to test that the runner survives a crash."""

    name = "fake_crash"
    _parameter_constraints = {}

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")
