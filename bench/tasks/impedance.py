"""Impedance estimation as a task of the runner (:mod:`bench.task`).

For each (cell, method) of a work item the adapter hands the estimator only what an
experimenter has (:meth:`bench.types.Realizations.experimenter_view`: ``u``, ``y``, ``fs``,
the schedule where the method needs one and the contiguity flag; never the truth or the
plant's parameters), times it, saves the estimate next to the truth
(``arrays/<unit>__<method>.npz``: ``t``, ``K``, ``K_true``, ``B``, ``B_true``, ``I``) and
scores it.

Scoring: against ``truth.K`` (N,), or, when the plant reports per-realization truth
``truth.K_r`` (R, N) (jitter, time warping), per realization (:func:`scored_pair`). Each
metric is computed over the samples the method estimated (finite ``K``); ``nan_share`` says
how many it left out. Reports that compare methods score them again on the samples every
method estimated (the common support, :mod:`bench.layouts.table`).

An exception raised by the estimator, an all-NaN stiffness or a NaN primary metric gives
``status="failed"`` with the reason (exception type and message) and the run goes on.
Per method the adapter measures the wall time (:func:`time.perf_counter`) and the peak of
traced Python/numpy allocations (:mod:`tracemalloc`, MiB).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import metrics as _metrics
from bench import registry, store
from bench.errors import failure_reason
from bench.task import CellWork, MetricInfo, Outcome, Task
from bench.types import Realizations, scalar_info

__all__ = ["ImpedanceTask", "metric_status", "scored_pair"]


def scored_pair(data: Realizations, est: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """True and estimated K to score, and which pair it is.

    When the realizations differ (``truth.K_r`` (R, N), e.g. jittered or warped time
    variation) the metrics compare per-realization arrays: the estimate's
    ``info["K_record"]`` (R, N) when it has one (alignment, single-record estimators), else
    its phase trajectory ``K`` broadcast to every realization. That is the honest error under
    misalignment. Otherwise ``truth.K`` (N,) against ``K`` (N,).
    """
    truth = data.truth
    K_r = getattr(truth, "K_r", None)
    if K_r is not None and np.shape(K_r) == (data.R, data.N):
        rec = est.info.get("K_record") if isinstance(est.info, dict) else None
        if rec is not None and np.shape(rec) == (data.R, data.N):
            return np.asarray(K_r, dtype=float), np.asarray(rec, dtype=float), "K_record"
        return (np.asarray(K_r, dtype=float),
                np.broadcast_to(np.asarray(est.K, dtype=float), (data.R, data.N)),
                "K_broadcast")
    return np.asarray(truth.K, dtype=float), est.K, "K"


def metric_status(names: list[str], values: dict) -> tuple[str, str, str | None]:
    """Status from the metric values: the scenario's first metric is the primary one.

    A NaN primary metric fails the record. A NaN secondary metric does not: some are
    undefined for a valid estimate (r2 against a constant true stiffness, the "none" and
    "B" variations), so it stays NaN in the table with a note.

    Returns
    -------
    (status, reason, note)
    """
    nan = [k for k in names if not np.isfinite(values.get(k, np.nan))]
    if names and names[0] in nan:
        return "failed", f"metric {', '.join(nan)} is NaN", None
    return "ok", "", (f"undefined (NaN): {', '.join(nan)}" if nan else None)


def _score(names: list[str], k_true: np.ndarray, k_est: np.ndarray) -> dict[str, float]:
    out = {}
    for name in names:
        fn = getattr(_metrics, name)
        out[name] = fn(k_est) if name == "nan_share" else fn(k_true, k_est)
    return out


class ImpedanceTask(Task):
    """Estimate the joint impedance of simulated or recorded realizations (004)."""

    name = "impedance"
    method_kind = "estimators"
    metrics = {
        "stiffness_error": MetricInfo("lower", "%", "100 RMSE(K_hat - K) / RMS(K) (004:Eq.6-7)"),
        "nan_share": MetricInfo("lower", "", "share of samples without an estimate (0-1)"),
        "rmse": MetricInfo("lower", "Nm/rad", "RMSE of K_hat"),
        "nrmse": MetricInfo("lower", "", "RMSE of K_hat / RMS(K)"),
        "r2": MetricInfo("higher", "", "squared Pearson correlation of K_hat and K"),
        "vaf": MetricInfo("higher", "%", "variance of K accounted for by K_hat"),
    }
    default_metrics = ("stiffness_error", "nan_share")
    default_layout = "table"

    def run(self, data: Any, cells: list[CellWork], out: Path,
            metrics: list[str]) -> Iterator[Outcome]:
        if not isinstance(data, Realizations) or data.truth is None:
            raise TypeError(f"the plant returned {type(data).__name__} without ground truth; "
                            "impedance scenarios need Realizations with truth.K")
        for cell in cells:
            for m in cell.methods:
                yield self._one(data, cell, m, out, metrics)

    def _one(self, data: Realizations, cell: CellWork, m: Any, out: Path,
             names: list[str]) -> Outcome:
        oc = Outcome(cell, m)
        tracemalloc.start()
        tracemalloc.clear_traces()
        t0 = time.perf_counter()
        try:
            cls = registry.resolve("estimators", m.name)
            view = data.experimenter_view(schedule=bool(cls.tags.needs_schedule))
            est = cls(**m.params).estimate(view)
            oc.wall_time_s = time.perf_counter() - t0
            oc.peak_mem_mib = tracemalloc.get_traced_memory()[1] / 2**20
        except Exception as exc:  # failure capture: recorded, the run goes on
            oc.wall_time_s = time.perf_counter() - t0
            oc.status, oc.reason = "failed", failure_reason(exc)
            return oc
        finally:
            tracemalloc.stop()
        oc.info = scalar_info(est.info)
        truth = data.truth
        apath = store.array_path(out, cell.unit_id, m.key)
        store.save_arrays(
            apath, t=data.t, K=est.K, K_true=truth.K, B=est.B, B_true=truth.B,
            I=None if est.I is None else np.asarray(est.I, dtype=float),
            K_r=getattr(truth, "K_r", None),
            K_record=est.info.get("K_record") if isinstance(est.info, dict) else None,
        )
        oc.arrays = str(apath.relative_to(out))
        if not np.any(np.isfinite(est.K)):
            oc.status, oc.reason = "failed", "estimate K is NaN everywhere"
            return oc
        k_true, k_est, oc.info["scored_on"] = scored_pair(data, est)
        try:
            oc.metrics = _score(names, k_true, k_est)
        except Exception as exc:
            oc.status, oc.reason = "failed", f"metric: {failure_reason(exc)}"
            return oc
        oc.status, oc.reason, note = metric_status(names, oc.metrics)
        if note:
            oc.info["metric_note"] = note
        return oc
