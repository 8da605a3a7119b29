"""Shipped checks every plant must pass (as :mod:`estimators.testing` for estimators).

A plant is a ground-truth generator: the same seed must give the same data on any machine
(the runner's resume and the executors' bit-identical results rest on it), and its data
carry the truth the bench scores against. A new plant gets the checks with one line::

    from plants.testing import check_plant
    check_plant(MyPlant(duration=5))

The checks know the data types of :mod:`bench.types` only, so they apply to impedance
plants (:class:`~bench.types.Realizations`), calibration plants
(:class:`~bench.types.CalibrationData`) and muscle-data plants alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from bench.base import Plant
from bench.types import CalibrationData, MuscleData, Realizations

__all__ = ["check_carries_truth", "check_deterministic", "check_plant", "check_seed_matters",
           "iter_checks"]


def _arrays(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Every numeric array reachable in ``obj`` (dataclass fields, dicts, tuples), by path."""
    out: dict[str, np.ndarray] = {}
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        a = np.asarray(obj)
        if a.dtype.kind in "biufc":
            out[prefix] = a
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_arrays(v, f"{prefix}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_arrays(v, f"{prefix}[{i}]"))
    elif hasattr(obj, "__dataclass_fields__"):
        for k in obj.__dataclass_fields__:
            if k != "model":
                out.update(_arrays(getattr(obj, k), f"{prefix}.{k}"))
    return out


def check_deterministic(plant: Plant) -> None:
    """Two draws with generators of the same seed give identical data (bit for bit)."""
    a = _arrays(plant.simulate(np.random.default_rng(123)))
    b = _arrays(plant.simulate(np.random.default_rng(123)))
    assert a.keys() == b.keys(), "the data's structure depends on the draw"
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{type(plant).__name__}{k}")


def check_seed_matters(plant: Plant) -> None:
    """A stochastic plant's data change with the seed (a plant that reads recordings, whose
    ``stochastic`` attribute is False, is exempt)."""
    if not getattr(plant, "stochastic", True):
        return
    a = _arrays(plant.simulate(np.random.default_rng(1)))
    b = _arrays(plant.simulate(np.random.default_rng(2)))
    assert any(a[k].shape == b[k].shape and not np.array_equal(a[k], b[k]) for k in a), (
        f"{type(plant).__name__}: seeds 1 and 2 give the same data")


def check_carries_truth(plant: Plant) -> None:
    """The data carry what the bench scores against: the true stiffness of an impedance
    plant, the true parameters or stiffness of a synthetic calibration plant, the truth of
    muscle data (a dataset plant reading recordings has none and says so)."""
    data = plant.simulate(np.random.default_rng(0))
    if isinstance(data, Realizations):
        assert data.truth is not None and np.all(np.isfinite(data.truth.K)), "no finite truth.K"
        assert data.truth.K.shape == (data.N,)
    elif isinstance(data, CalibrationData):
        if getattr(plant, "stochastic", True):
            assert data.truth is not None or data.stiffness_is_true, "no truth"
        assert data.calibration, "no calibration window"
        for w in (*data.calibration, *data.held_out):
            T = np.shape(data.sets[w.set].torque)[1]
            assert 0 <= w.start < w.stop <= T, f"window {w} outside its trial"
    elif isinstance(data, MuscleData):
        assert data.truth is not None, "MuscleData without truth"
    else:
        raise AssertionError(f"simulate returned {type(data).__name__}")


_CHECKS: tuple[Callable[[Plant], None], ...] = (check_deterministic, check_seed_matters,
                                                check_carries_truth)


def iter_checks(plant: Plant) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for ``plant`` (one pytest case each)."""
    for fn in _CHECKS:
        yield fn.__name__, partial(fn, plant)


def check_plant(plant: Plant) -> None:
    """Run every shipped check on ``plant``."""
    for _, check in iter_checks(plant):
        check()
