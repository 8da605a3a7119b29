"""Every registered plant and calibrator passes its kind's shipped check suite
(:mod:`plants.testing`, :mod:`estimators.calibration.testing`; the estimators' suite runs
over the registry in ``tests/estimators/test_experimenter_view.py``). A backend registered
without an entry here fails :func:`test_every_registered_backend_is_covered`: small
settings that keep its checks fast must be added when it is registered."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bench import registry
from tests.example_data import write_example

ROOT = Path(__file__).resolve().parents[1]

#: Settings of each registered plant for its checks (small and fast).
PLANT_PARAMS = {
    "msd": {"duration": 5.0},
    "lever": {"duration": 4.0},
    "ankle": {"n_cycles": 2},
    "arm": {"duration": 1.0},
    "ankle-subject": {"n_cycles": 3, "unperturbed": False},
    "arm-calibration": {"duration": 1.0},
    "arm-identification": {"duration": 1.0, "n_guesses": 2},
    "dataset": "example",  # the calibration example's files, written into a temporary folder
}

#: Settings of each registered calibrator: a budget that solves the toy problem.
CALIBRATOR_PARAMS = {
    "annealing": {"max_evaluations": 20_000},
    "adamw": {"restarts": 1, "max_steps": 500},
    "least-squares": {},
    "synergy-hybrid": {"max_steps": 500},
}
#: Calibrators of a different problem than the generic model protocol (they carry checks of
#: their own in their test modules).
OWN_PROBLEM = {"deep-lsq"}


def test_every_registered_backend_is_covered():
    assert set(registry.entries("plants")) == set(PLANT_PARAMS)
    assert set(registry.entries("calibrators")) == set(CALIBRATOR_PARAMS) | OWN_PROBLEM


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    write_example(root / "data" / "example", raw_emg=False)
    return root


def _plant(name: str, example_dir: Path):
    cls = registry.resolve("plants", name)
    params = PLANT_PARAMS[name]
    if params == "example":
        import yaml

        doc = yaml.safe_load((ROOT / "scenarios" / "calibrate-example.yaml").read_text())
        params = {**doc["plant"]["params"], "base_dir": str(example_dir)}
    return cls(**params)


def _plant_cases():
    from plants.testing import iter_checks

    for name in sorted(PLANT_PARAMS):
        for check, _ in iter_checks(None):
            yield pytest.param(name, check, id=f"{name}-{check}")


@pytest.mark.parametrize("name, check", list(_plant_cases()))
def test_registered_plant_passes_the_shipped_suite(name, check, example_dir):
    import plants.testing as pt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(pt, check)(_plant(name, example_dir))


def _calibrator_cases():
    from estimators.calibration.testing import iter_checks

    for name in sorted(CALIBRATOR_PARAMS):
        for check, _ in iter_checks(None):
            yield pytest.param(name, check, id=f"{name}-{check}")


@pytest.mark.parametrize("name, check", list(_calibrator_cases()))
def test_registered_calibrator_passes_the_shipped_suite(name, check):
    import estimators.calibration.testing as ct

    cal = registry.resolve("calibrators", name)(**CALIBRATOR_PARAMS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ct, check)(cal)


def test_the_calibrator_suite_fails_a_calibrator_that_does_not_fit():
    from bench.base import Calibrator
    from estimators.calibration._problem import make_problem, result_from
    from estimators.calibration.testing import check_recovers_truth

    class StaysPut(Calibrator):
        """Returns the initial parameters: must fail the recovery check."""

        def __init__(self) -> None:
            pass

        def calibrate(self, model, data, objective, *, space=None):
            prob = make_problem(model, data, objective, space)
            return result_from(prob, model, data, objective, prob.space.x0, [0.0], 0.0, 1, {},
                               identifiability=False)

    with pytest.raises(AssertionError, match="objective"):
        check_recovers_truth(StaysPut())


def test_the_plant_suite_fails_a_plant_that_ignores_its_generator():
    import numpy as np

    from bench.types import GroundTruth, Realizations
    from plants.testing import check_deterministic
    from tests.runner_fakes import FakePlant

    class Unseeded(FakePlant):
        def simulate(self, rng):
            return Realizations(u=np.random.default_rng().standard_normal((3, 10)),
                                y=np.zeros((3, 10)), fs=10.0, truth=GroundTruth(K=np.ones(10)))

    with pytest.raises(AssertionError):
        check_deterministic(Unseeded())
