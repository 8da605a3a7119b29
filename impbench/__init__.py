"""impbench: a test bench for joint impedance estimation and EMG-driven model calibration.

The public Python API: one import gives what the command line does.

.. code-block:: python

    import impbench as ib

    rec = ib.load_record("my_record.csv")      # u [rad], y [Nm], fs [Hz] (t, u, y columns)
    data = ib.Realizations.from_record(rec["u"], rec["y"], rec["fs"], period=1.0)
    for method in ("sds", "eirf"):
        est = ib.estimate(data, method)        # ImpedanceEstimate: K [Nm/rad] over one period
        print(method, est.K.mean())

    sc = ib.load_scenario("scenarios/quickstart.yaml")
    ib.run_scenario(sc, "runs/quickstart")     # resumable; one record per cell x seed x method
    ib.write_report("runs/quickstart")
    table = ib.read_results("runs/quickstart") # pyarrow Table (.to_pandas() with pandas)

Why a module of its own rather than ``bench``: ``bench`` is the bench's core package, one
of four (``bench``, ``plants``, ``estimators``, ``hil``) whose module layout may change
between versions; ``impbench`` is the distribution's name, and this module re-exports a
stable, documented set of names from all four with an explicit ``__all__``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import registry
from bench.errors import (
    ConvergenceWarning,
    DataError,
    EstimationError,
    InvalidParameterError,
    RegistryError,
    ScenarioError,
)
from bench.export import export_run
from bench.io import load_record, save_estimate
from bench.metrics import cr1, cr2, nan_share, nrmse, r2, rmse, stiffness_error, vaf
from bench.references import REFERENCES
from bench.report import write_report
from bench.runner import RunSummary, run_scenario
from bench.scenario import Scenario, load_scenario
from bench.store import read_records
from bench.types import (
    CalibrationData,
    CalibrationResult,
    GroundTruth,
    ImpedanceEstimate,
    MuscleData,
    Realizations,
)

__all__ = [
    "REFERENCES",
    "CalibrationData",
    "CalibrationResult",
    "ConvergenceWarning",
    "DataError",
    "EstimationError",
    "GroundTruth",
    "ImpedanceEstimate",
    "InvalidParameterError",
    "MuscleData",
    "Realizations",
    "RegistryError",
    "RunSummary",
    "Scenario",
    "ScenarioError",
    "__version__",
    "available",
    "calibrate",
    "calibrator",
    "cr1",
    "cr2",
    "estimate",
    "estimator",
    "export_run",
    "load_record",
    "load_scenario",
    "nan_share",
    "nrmse",
    "plant",
    "r2",
    "read_records",
    "read_results",
    "rmse",
    "run_scenario",
    "save_estimate",
    "stiffness_error",
    "vaf",
    "write_report",
]

try:
    __version__ = version("impbench")
except PackageNotFoundError:  # a source tree without installed metadata
    __version__ = "unknown"


def available(kind: str = "estimators") -> list[str]:
    """Registered backends of ``kind`` that load.

    Parameters
    ----------
    kind : {"estimators", "calibrators", "plants", "layouts", "tasks"}

    Returns
    -------
    list of str
        Names usable in scenarios and in :func:`estimator`, :func:`calibrator`, :func:`plant`.
    """
    return registry.available(kind)


def _build(kind: str, name: str, params: dict[str, Any]) -> Any:
    obj = registry.resolve(kind, name)(**params)
    obj._validate()
    return obj


def estimator(name: str, **params: Any) -> Any:
    """A validated impedance estimator by registry name (``"sds"``) or ``"module:Class"``.

    Raises
    ------
    RegistryError
        Unknown name (with close matches).
    InvalidParameterError
        A parameter outside its declared constraint.
    """
    return _build("estimators", name, params)


def calibrator(name: str, **params: Any) -> Any:
    """A validated calibrator by registry name (``"least-squares"``, ``"annealing"``...)."""
    return _build("calibrators", name, params)


def plant(name: str, **params: Any) -> Any:
    """A validated plant (ground-truth generator) by registry name (``"msd"``...).

    Its ``simulate(numpy.random.Generator)`` returns :class:`Realizations` (impedance plants)
    or :class:`CalibrationData` (calibration plants), with the truth attached.
    """
    return _build("plants", name, params)


def estimate(data: Realizations, method: str = "sds", **params: Any) -> ImpedanceEstimate:
    """Estimate the impedance of ``data`` with one estimator, as the bench does.

    The estimator sees only what an experimenter has (``u``, ``y``, ``fs``, the schedule when
    it needs one, the contiguity flag), never ``data.truth``.

    Parameters
    ----------
    data : Realizations
        ``u`` [rad], ``y`` [Nm], shape (R, N); see :meth:`Realizations.from_record`.
    method : str
        Registry name (see ``available("estimators")``) or ``"module:Class"``.
    **params
        The estimator's hyper-parameters (``impbench list estimators`` shows them).

    Returns
    -------
    ImpedanceEstimate
        ``K`` [Nm/rad], shape (N,), over one period (NaN where not estimable); ``B``, ``I``
        where the method estimates them; ``info``.
    """
    est = estimator(method, **params)
    return est.estimate(data.experimenter_view(schedule=bool(est.tags.needs_schedule)))


def calibrate(model: Any, data: MuscleData, method: str = "least-squares", *,
              alpha: float = 1.0, beta: float = 0.0, penalty: str = "auto",
              space: Any = None, **params: Any) -> CalibrationResult:
    """Calibrate an EMG-driven model on one set of trials.

    Parameters
    ----------
    model : object
        A forward model following the calibration model protocol (e.g. the ``model`` of a
        calibration plant's :class:`CalibrationData`, or
        ``plants.muscle.model.MuscleModel``).
    data : MuscleData
        Calibration trials: excitations (S, T, C), torque (S, T, D) [Nm], MTU lengths and
        moment arms, and a stiffness (S, T, D) [Nm/rad] when ``beta > 0``.
    method : str
        Calibrator name (``available("calibrators")``).
    alpha, beta : float
        Weights of the torque and stiffness terms of the objective (the torque-stiffness EMG
        model study's Eq.8).
    penalty : {"auto", "hard", "smooth", "both", "none"}
        Physiological penalty; ``auto``: the calibrator's own preference.
    space : CalibrationSpace, optional
        Which parameters are calibrated and their bounds (default: the model's).
    **params
        The calibrator's hyper-parameters.

    Returns
    -------
    CalibrationResult
        Named parameters with units and bounds, objective history, predictions and
        ``info["identifiability"]``.
    """
    from estimators.calibration.objectives import Objective

    cal = calibrator(method, **params)
    if penalty == "auto":
        penalty = getattr(cal, "default_penalty", "smooth")
    return cal.calibrate(model, data, Objective(alpha, beta, penalty=penalty), space=space)


def read_results(run: str | Path) -> Any:
    """The tidy results table of a run directory (one row per unit x method).

    Returns
    -------
    pyarrow.Table
        Columns: ``scenario``, ``cell_id``, ``unit_id``, ``seed``, one per grid factor,
        ``method``, ``label``, ``status``, ``reason``, one per metric, ``wall_time_s`` ...;
        ``.to_pandas()`` gives a DataFrame when pandas is installed.
    """
    from bench import store

    run = Path(run)
    if not (run / "results.parquet").is_file():
        store.consolidate(run)
    return store.read_results(run)
