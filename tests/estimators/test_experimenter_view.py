"""Estimators see only what an experimenter has (issue 20, item 1).

The runner hands an estimator ``Realizations.experimenter_view``; the shipped check
``check_experimenter_view_only`` holds every backend, third-party ones included, to it. Here:
the view itself, the check failing on deliberately cheating estimators, and every registered
estimator passing the whole shipped suite.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from bench import registry
from bench.base import Estimator, Tags
from bench.types import ImpedanceEstimate, Realizations
from estimators.testing import (
    check_estimator,
    check_experimenter_view_only,
    iter_checks,
    make_impedance_data,
)


# --------------------------------------------------------------------------- the view
def test_experimenter_view_keeps_only_what_an_experimenter_has():
    d = make_impedance_data(R=6, N=50, seed=0, snr_db=30.0)
    d = d.replace(meta={**d.meta, "params": {"K_range": [50, 150]}, "phase": 0.3})
    v = d.experimenter_view(schedule=False)
    assert v.truth is None and v.schedule is None
    assert v.meta == {"contiguous": True}
    assert v.fs == d.fs and np.array_equal(v.u, d.u) and np.array_equal(v.y, d.y)
    assert not np.shares_memory(v.u, d.u) and not np.shares_memory(v.y, d.y)
    s = d.experimenter_view(schedule=True)
    assert np.array_equal(s.schedule, d.schedule) and not np.shares_memory(s.schedule,
                                                                          d.schedule)
    loose = d.replace(meta={"plant": "msd"})  # no contiguity flag: not contiguous
    assert loose.experimenter_view(schedule=False).meta == {"contiguous": False}


# --------------------------------------------------------------------------- cheaters
class _Base(Estimator):
    tags: ClassVar[Tags] = Tags(needs_ensemble=False, time_varying=True)

    def _honest(self, data: Realizations) -> np.ndarray:
        # least-squares stiffness per time step over the realizations (y ~ K u), honest
        return np.sum(data.u * data.y, axis=0) / np.sum(data.u**2, axis=0)


class Honest(_Base):
    """Uses u and y only."""

    name: ClassVar[str] = "honest"

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        return ImpedanceEstimate(K=self._honest(data))


class ReadsTruth(_Base):
    """Returns the ground truth whenever the data carry one (the cheat issue 20 names)."""

    name: ClassVar[str] = "reads-truth"

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        if data.truth is not None:
            return ImpedanceEstimate(K=np.asarray(data.truth.K, dtype=float).copy())
        return ImpedanceEstimate(K=self._honest(data))


class ReadsPlantParameters(_Base):
    """Clips its estimate to the plant's K range from ``meta["params"]``."""

    name: ClassVar[str] = "reads-params"

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        K = self._honest(data)
        lo, hi = data.meta.get("params", {}).get("K_range", (-np.inf, np.inf))
        return ImpedanceEstimate(K=np.clip(K, lo, hi))


class PeeksAtSchedule(_Base):
    """Uses a schedule it does not declare (``needs_schedule`` is False)."""

    name: ClassVar[str] = "peeks-schedule"

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        K = self._honest(data)
        if data.schedule is not None:
            K = K + 0.0 * data.schedule.mean(axis=0) + 1e-9 * np.ptp(data.schedule)
        return ImpedanceEstimate(K=K)


@pytest.mark.parametrize("cheat", [ReadsTruth(), ReadsPlantParameters(), PeeksAtSchedule()],
                         ids=lambda e: e.name)
def test_the_view_check_fails_a_cheating_estimator(cheat):
    with pytest.raises(AssertionError, match="false\\) truth, plant parameters"):
        check_experimenter_view_only(cheat)
    with pytest.raises(AssertionError, match="check_experimenter_view_only failed"):
        check_estimator(cheat, tolerance_pct=50.0)


def test_the_view_check_passes_an_honest_estimator():
    check_experimenter_view_only(Honest())


# --------------------------------------------------------------------------- every backend
def _instances() -> list[Estimator]:
    out = []
    for name, entry in sorted(registry.entries("estimators").items()):
        cls = entry.obj
        assert cls is not None, f"registered estimator {name!r} does not load: {entry.error}"
        out.append(cls(method="sds") if name == "aligned" else cls())
    return out


_CASES = [(type(e).name, n, c) for e in _instances() for n, c in iter_checks(e)]


@pytest.mark.parametrize(("name", "check_name", "check"), _CASES,
                         ids=[f"{a}-{b}" for a, b, _ in _CASES])
def test_every_registered_estimator_passes_the_shipped_suite(name, check_name, check):
    check()


def test_the_suite_covers_every_registered_estimator_including_the_new_ones():
    names = {n for n, _, _ in _CASES}
    assert {"tvkf", "aligned", "esm-local", "mesm-local"} <= names
    assert names == set(registry.entries("estimators"))
    assert {c for _, c, _ in _CASES} >= {"check_experimenter_view_only"}
