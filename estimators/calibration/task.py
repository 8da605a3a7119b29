"""EMG-driven model calibration as a task of the runner (:mod:`bench.task`).

A calibration unit is one plant draw (:class:`bench.types.CalibrationData`: a synthetic
subject with known truth, or a user's recordings): every calibrator of the scenario runs on
the same calibration windows, and every calibrated model is scored on the same held-out
windows.

**Settings** (grid factors of a calibration scenario):

* ``alpha``, ``beta`` -- weights of the torque and stiffness terms of the objective (the
  torque-stiffness EMG model study's Eq.8); ``alpha + beta > 0``;
* ``penalty`` -- physiological penalty (``hard``: the study's Eq.9, ``smooth``: Hambly et
  al.'s Eq.4, ``both``, ``none``, or ``auto``: the method's own preference);
* ``stiffness_reference`` -- what the stiffness term fits and the stiffness scores compare
  with: ``recorded`` (the data's stiffness as given), ``sds`` (estimated from the perturbed
  trials by the SDS estimator of the registry, cut at the task cycle and smoothed over 20
  samples, as the study did), ``truth`` (the true joint stiffness of a synthetic plant) or
  ``none``;
* ``recorded`` -- the EMG channels recorded (``all`` or a list of names); the others give no
  excitation (EMG-driven) or are synthesized (methods that take a ``recorded`` parameter,
  synergy-hybrid, get it);
* ``removed`` with ``removal_order`` -- remove the first ``removed`` channels of an order
  (a list of names, or ``ranked``: ascending joint-moment RMSE of EMG-driven AdamW
  calibrations with one channel removed, ``ranking_steps`` steps each, computed once per
  plant draw; Hambly et al. Sec. III-D).

Cells that differ only in ``alpha``/``beta`` are handed to a method in one call
(``Calibrator.calibrate_many``) when its ``tags.batch_factors`` say it can batch them; one
record is still written per cell.

A calibrator may add its own scores (``extra_metrics(model, space, result, calibration,
held_out) -> dict``) and predict held-out trials its own way (``predict(model, space,
result, data) -> dict``, e.g. synergy-hybrid synthesizes the unrecorded excitations).

**Metrics** (each the median over the held-out segments, task cycles when the plant gives
them, of the mean over DoFs): ``torque_nrmse`` (RMSE / RMS of the segment's reference: it
explodes on a segment where the reference torque is near zero, e.g. the swing phase of
gait), ``torque_nrmse_trial`` (RMSE / RMS of the reference over the held-out window's whole
recorded trial, whole window: read this one on such data), ``torque_rmse`` (Nm), ``torque_r2``,
``stiffness_nrmse``, ``stiffness_rmse`` (Nm/rad), ``stiffness_r2`` (against the
``stiffness_reference``), ``stiffness_true_nrmse`` (against the true stiffness); on the
calibration windows ``cal_torque_nrmse``, ``cal_torque_rmse`` (Nm), ``cal_torque_r2``,
``e_tau`` and ``e_tau_k`` (the study's fitting errors, second test) and ``objective``;
against the true parameters ``cr1`` and ``cr2`` (%, Sanderink et al. Eq.22-23); the third
test (``third_rmse``, ``third_r2``, ``third_significant_share``: the calibrated model's
stiffness on the unperturbed window against the perturbed held-out one, paired t-test along
the cycle) when the plant gives an ``unperturbed`` window; ``evaluations``, ``converged``
and ``condition_number`` of the scaled Jacobian at the solution;
``negative_stiffness_share`` (calibration and held-out samples where the modelled joint
stiffness is negative, with a warning in the record's ``info["negative_stiffness"]``).
``info["held_out_scores"]`` holds nRMSE, nRMSE over the trial, RMSE and r2 per held-out
window and DoF (whole window); ``info["data_notes"]`` what the plant did to the data
(resampling, clipping, delays).

Calibration windows of different lengths are stacked padded (:func:`cut_windows`); windows
at different rates are an error (the model runs at one rate: the dataset plant resamples
such trials explicitly and says so).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import registry, store
from bench.errors import ConvergenceWarning, DataError, InvalidParameterError, failure_reason
from bench.metrics import cr1, cr2, nrmse, r2, rmse
from bench.params import Interval, Options
from bench.task import CellWork, MethodWork, MetricInfo, Outcome, Task
from bench.types import CalibrationData, CalibrationResult, MuscleData
from estimators.calibration._problem import predict
from estimators.calibration.objectives import CalibrationSpace, Objective
from estimators.calibration.synergy import mask_channels

__all__ = ["CalibrationTask", "build_space", "cut_windows", "true_vector"]

_BATCH_FREE = ("alpha", "beta")
#: Longest held-out window whose torque traces a record keeps for the report's figure.
_TRACE_SAMPLES = 5000


# --------------------------------------------------------------------------- data


def _pad(a: np.ndarray, n: int, linear: bool = False) -> np.ndarray:
    """``a`` (T, ...) extended to ``n`` samples along axis 0: the last sample repeated, or
    (``linear``) continued by the last step, so that a central difference at the last
    sample equals the one-sided difference it had before padding."""
    T = a.shape[0]
    if n == T:
        return a
    k = np.arange(1, n - T + 1).reshape((-1,) + (1,) * (a.ndim - 1))
    step = a[-1] - a[-2] if (linear and T > 1) else np.zeros_like(a[-1])
    return np.concatenate([a, a[-1] + k * step], axis=0)


def cut_windows(sets: tuple, windows: tuple) -> MuscleData:
    """The windows of ``sets`` stacked as trials of one :class:`MuscleData`.

    Windows of different lengths are padded at their end to the longest (MTU lengths
    continued linearly, everything else holding its last sample; time continued at the
    rate) and ``meta["valid"]`` (S, T) marks each window's own samples: the calibration
    loss averages each window over its own samples (000:Eq.8's 1/N_s per trial,
    :meth:`~estimators.calibration.objectives.Objective.reference_variances`), and
    ``meta["window_lengths"]`` lists them. The padding cannot reach back into a window: the
    forward model is causal (activation filters, tendon states), and the fibre velocity at a
    window's last sample is its one-sided difference either way.

    Parameters
    ----------
    sets : tuple of MuscleData
    windows : tuple of TrialWindow
        From sets of one rate.

    Raises
    ------
    DataError
        Windows of different rates (the model runs at one rate), or outside their trial.
    """
    if not windows:
        raise DataError("no window to cut")
    rates = {float(sets[w.set].fs) for w in windows}
    if len(rates) > 1:
        raise DataError("windows at different rates cannot be calibrated together (the model "
                        "runs at one rate): "
                        + ", ".join(f"{w.name or w.trial}: {sets[w.set].fs:g} Hz"
                                    for w in windows))
    parts = []
    for w in windows:
        d = sets[w.set]
        T = np.shape(d.torque)[1]
        if not (0 <= w.start < w.stop <= T) or not 0 <= w.trial < np.shape(d.torque)[0]:
            raise DataError(f"window {w} lies outside its trial set ({np.shape(d.torque)})")
        parts.append(w)
    lengths = [w.stop - w.start for w in parts]
    n = max(lengths)
    padded = len(set(lengths)) > 1

    def stack(get, linear=False):
        arrs = [get(sets[w.set]) for w in parts]
        if any(a is None for a in arrs):
            return None
        return np.stack([_pad(np.asarray(a)[w.trial, w.start:w.stop], n, linear)
                         for a, w in zip(arrs, parts)])

    base = sets[parts[0].set]
    meta = {k: v for k, v in base.meta.items() if np.ndim(v) < 2 and k != "time"}
    if all("time" in sets[w.set].meta for w in parts):
        times = [np.asarray(sets[w.set].meta["time"], float) for w in parts]
        times = [t[w.trial] if t.ndim == 2 else t for t, w in zip(times, parts)]
        cut = [_pad(t[w.start:w.stop], n, linear=True) for t, w in zip(times, parts)]
        meta["time"] = cut[0] if len(cut) == 1 else np.stack(cut)
    for k, v in base.meta.items():
        if np.ndim(v) >= 2 and all(k in sets[w.set].meta for w in parts):
            meta[k] = stack(lambda d, k=k: d.meta[k])
    if padded:
        meta["valid"] = np.arange(n)[None, :] < np.asarray(lengths)[:, None]
        meta["window_lengths"] = lengths
    return dataclasses.replace(
        base, excitation=stack(lambda d: d.excitation), angle=stack(lambda d: d.angle),
        torque=stack(lambda d: d.torque), lmt=stack(lambda d: d.lmt, linear=True),
        moment_arm=stack(lambda d: d.moment_arm), stiffness=stack(lambda d: d.stiffness),
        meta=meta)


def true_vector(space: CalibrationSpace, truth: dict) -> np.ndarray | None:
    """The true parameters in ``space``'s coordinates (physical units), or None.

    ``truth`` holds per-MTU arrays (``l_opt``, ``l_ts``, ``f_max``, ``shape``, ...);
    strength entries are true / initial ``f_max``, averaged over the group's MTUs.
    """
    out = []
    for b in space.blocks:
        if b.field not in truth:
            return None
        v = np.asarray(truth[b.field], dtype=float)
        if b.kind == "strength":
            base = np.asarray(space.base.f_max, dtype=float)
            out.extend(float(np.mean(v[list(idx)] / base[list(idx)])) for idx in b.index)
        else:
            out.extend(float(np.mean(v[list(idx)])) for idx in b.index)
    return np.asarray(out)


def build_space(model: Any, spec: dict) -> CalibrationSpace:
    """The calibrated-parameter space a plant asks for: ``CalibrationSpace.build`` keyword
    arguments, plus ``blocks`` (model fields to calibrate, e.g. ``["l_opt", "f_max"]``) to
    keep only some of its blocks."""
    spec = dict(spec)
    keep = spec.pop("blocks", None)
    space = CalibrationSpace.build(model.base_params, list(model.muscles), **spec)
    if keep is None:
        return space
    blocks = tuple(b for b in space.blocks if b.field in set(keep))
    if not blocks:
        raise InvalidParameterError(f"no calibrated parameter left of blocks {keep}")
    return dataclasses.replace(
        space, blocks=blocks, lower=np.concatenate([b.lower for b in blocks]),
        upper=np.concatenate([b.upper for b in blocks]),
        x0=np.concatenate([b.x0 for b in blocks]))


def _segments(x: np.ndarray, seg: int | None, skip: int) -> np.ndarray:
    """(T, D) -> (n, L, D) scoring segments."""
    if seg is None or seg >= x.shape[0]:
        return x[None]
    n = x.shape[0] // seg
    return x[: n * seg].reshape(n, seg, x.shape[1])[skip:]


def _scores(ref: np.ndarray, est: np.ndarray, seg: int | None, skip: int) -> dict:
    """Per-segment nRMSE, RMSE and r2 (mean over DoFs); median and IQR over segments."""
    R, E = _segments(ref, seg, skip), _segments(est, seg, skip)
    per = {"nrmse": [], "rmse": [], "r2": []}
    for a, b in zip(R, E):
        ok = np.all(np.isfinite(a), axis=1)
        if ok.sum() < 3:
            continue
        a, b = a[ok], b[ok]
        per["nrmse"].append(np.mean([nrmse(a[:, d], b[:, d]) for d in range(a.shape[1])]))
        per["rmse"].append(np.mean([rmse(a[:, d], b[:, d]) for d in range(a.shape[1])]))
        per["r2"].append(np.mean([r2(a[:, d], b[:, d]) for d in range(a.shape[1])]))
    out = {}
    for k, v in per.items():
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            q1, q2, q3 = np.percentile(v, [25, 50, 75])
            out[k], out[f"{k}_iqr"], out[f"{k}_per_segment"] = float(q2), float(q3 - q1), v
    return out


def _per_dof(ref: np.ndarray, est: np.ndarray, rms_trial: np.ndarray) -> dict:
    """Whole-window scores per DoF, arrays (D,): ``nrmse`` (RMSE / RMS of the window's
    reference), ``nrmse_trial`` (RMSE / RMS of the reference over the whole recorded trial,
    which does not explode on a window where the reference is near zero), ``rmse`` (Nm)
    and ``r2``."""
    D = ref.shape[1]
    out = {k: np.full(D, np.nan) for k in ("nrmse", "nrmse_trial", "rmse", "r2")}
    for j in range(D):
        a, b = ref[:, j], est[:, j]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 3:
            continue
        a, b = a[ok], b[ok]
        e = rmse(a, b)
        out["rmse"][j] = e
        rms = np.sqrt(np.mean(a ** 2))
        out["nrmse"][j] = e / rms if rms > 0 else np.nan
        out["nrmse_trial"][j] = e / rms_trial[j] if rms_trial[j] > 0 else np.nan
        out["r2"][j] = r2(a, b) if np.std(a) > 0 and np.std(b) > 0 else np.nan
    return out


def _negative_stiffness(k: np.ndarray, lengths, names: list[str], dofs: list[str]) -> dict:
    """Samples where the modelled joint stiffness (S, T, D) is negative, per window (its own
    ``lengths[s]`` samples): ``{name: {samples, of, min, dof}}``."""
    out = {}
    for s, name in enumerate(names):
        ks = k[s, : int(lengths[s])]
        neg = ks < 0
        j = int(np.argmin(np.min(ks, axis=0))) if ks.size else 0
        out[name or f"window {s}"] = {"samples": int(neg.sum()), "of": int(ks.size),
                                      "min": float(ks.min()) if ks.size else 0.0,
                                      "dof": dofs[j] if j < len(dofs) else str(j)}
    return out


# --------------------------------------------------------------------------- the task


class CalibrationTask(Task):
    """Calibrate EMG-driven musculoskeletal models and score them on held-out trials."""

    name = "calibration"
    method_kind = "calibrators"
    _parameter_constraints = {
        "alpha": [Interval(float, 0, 1)],
        "beta": [Interval(float, 0, 1)],
        "penalty": [Options(("auto", "hard", "smooth", "both", "none"))],
        "stiffness_reference": [Options(("recorded", "sds", "truth", "none"))],
        "recorded": [Options(("all",)), list],
        "removed": [Interval(int, 0, 1000)],
        "removal_order": [Options(("ranked",)), list],
        "ranking_steps": [Interval(int, 1, 100_000)],
    }
    metrics = {
        "torque_nrmse": MetricInfo("lower", "", "held-out torque RMSE / RMS of the reference"),
        "torque_rmse": MetricInfo("lower", "Nm", "held-out torque RMSE"),
        "torque_r2": MetricInfo("higher", "", "held-out torque r2 (squared Pearson)"),
        "torque_nrmse_trial": MetricInfo("lower", "", "held-out torque RMSE / RMS of the "
                                                      "reference over its whole trial"),
        "negative_stiffness_share": MetricInfo("lower", "", "share of calibration and "
                                                            "held-out samples where the "
                                                            "modelled joint stiffness < 0"),
        "stiffness_nrmse": MetricInfo("lower", "", "held-out stiffness nRMSE vs the reference"),
        "stiffness_rmse": MetricInfo("lower", "Nm/rad", "held-out stiffness RMSE vs the "
                                                        "reference"),
        "stiffness_r2": MetricInfo("higher", "", "held-out stiffness r2 vs the reference"),
        "stiffness_true_nrmse": MetricInfo("lower", "", "held-out stiffness nRMSE vs the true "
                                                        "joint stiffness"),
        "cal_torque_nrmse": MetricInfo("lower", "", "torque nRMSE on the calibration windows"),
        "e_tau": MetricInfo("lower", "", "Var(tau_hat - tau) / Var(tau), calibration windows"),
        "e_tau_k": MetricInfo("lower", "", "E_tau + Var(K_hat - K) / Var(K), calibration "
                                          "windows"),
        "objective": MetricInfo("lower", "", "calibration objective at the solution"),
        "cr1": MetricInfo("lower", "%", "100 ||p_hat - p|| / ||p|| against the truth"),
        "cr2": MetricInfo("lower", "%", "100 mean |p_hat - p| / |p| against the truth"),
        "third_rmse": MetricInfo("lower", "Nm/rad", "mean stiffness, unperturbed vs perturbed"),
        "third_r2": MetricInfo("higher", "", "r2 of the mean stiffness profiles, unperturbed "
                                             "vs perturbed"),
        "third_significant_share": MetricInfo("lower", "", "share of the cycle where the "
                                                           "paired t-test is significant"),
        "evaluations": MetricInfo("lower", "", "forward-model evaluations"),
        "converged": MetricInfo("higher", "", "1 when the optimizer met its stop criterion"),
        "condition_number": MetricInfo("lower", "", "condition number of the scaled Jacobian "
                                                    "at the solution"),
        "cal_torque_rmse": MetricInfo("lower", "Nm", "torque RMSE on the calibration windows"),
        "cal_torque_r2": MetricInfo("higher", "", "torque r2 on the calibration windows"),
        # calibrator-specific scores (their ``extra_metrics``)
        "n_synergies": MetricInfo("lower", "", "synergy-hybrid: number of synergies"),
        "vaf": MetricInfo("higher", "", "synergy-hybrid: VAF of the recorded excitations by "
                                        "the initial synergies"),
        "synth_rec_rmse": MetricInfo("lower", "", "synergy-hybrid: synthesized vs withheld "
                                                  "recorded excitations, calibration trials"),
        "synth_rec_r2": MetricInfo("higher", "", "synergy-hybrid: r2 of synthesized vs "
                                                 "withheld recorded excitations"),
        "synth_true_rmse": MetricInfo("lower", "", "synergy-hybrid: synthesized vs true "
                                                   "excitations, calibration trials"),
        "synth_true_r2": MetricInfo("higher", "", "synergy-hybrid: r2 of synthesized vs true "
                                                  "excitations"),
        "held_synth_rmse": MetricInfo("lower", "", "synergy-hybrid: extrapolated vs withheld "
                                                   "recorded excitations, held-out trials"),
        "held_synth_r2": MetricInfo("higher", "", "synergy-hybrid: r2 of extrapolated vs "
                                                  "withheld excitations, held-out trials"),
        "cr2m": MetricInfo("lower", "%", "Cr2 over the muscle parameters (Sanderink et al.)"),
        "cr2_own": MetricInfo("lower", "%", "Cr2 over the method's own parameter vector"),
        "cr2_base": MetricInfo("lower", "%", "Cr2 with the inertial parameters as their base "
                                             "combinations"),
        "cr2_we": MetricInfo("lower", "%", "Cr2 over the well-excited parameters"),
        "initial_cr1": MetricInfo("lower", "%", "Cr1 of the initial guesses"),
        "initial_cr2": MetricInfo("lower", "%", "Cr2 of the initial guesses"),
        "initial_cr2m": MetricInfo("lower", "%", "Cr2^m of the initial guesses"),
        "initial_cr2_own": MetricInfo("lower", "%", "Cr2 (own vector) of the initial guesses"),
        "initial_cr2_base": MetricInfo("lower", "%", "Cr2 (base inertial) of the initial "
                                                     "guesses"),
        "initial_cr2_we": MetricInfo("lower", "%", "Cr2 (well excited) of the initial guesses"),
        "epoch_time": MetricInfo("lower", "s", "wall time per epoch and start point"),
    }
    default_metrics = ("torque_nrmse", "torque_rmse", "torque_r2")
    default_layout = "calibration"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._refs: dict[str, tuple] = {}  # per work item: trial sets by stiffness reference
        self._orders: dict[tuple, list[str]] = {}  # per work item: ranked removal orders

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"alpha": 1.0, "beta": 0.0, "penalty": "auto", "stiffness_reference": "recorded",
                "recorded": "all", "removed": 0, "removal_order": "ranked",
                "ranking_steps": 600}

    @classmethod
    def check_cell(cls, plant: Any, settings: dict, methods: list[Any]) -> str | None:
        if settings["alpha"] + settings["beta"] <= 0:
            return "alpha + beta must be > 0 (exclude the cell alpha = beta = 0)"
        if settings["removed"] and settings["recorded"] != "all":
            return "give either 'recorded' or 'removed', not both"
        channels = getattr(plant, "channel_names", None)
        names = channels() if callable(channels) else None
        if names is not None:
            wanted = [] if settings["recorded"] == "all" else list(settings["recorded"])
            if isinstance(settings["removal_order"], list):
                wanted += list(settings["removal_order"])
            bad = [c for c in wanted if c not in names]
            if bad:
                return f"unknown EMG channel(s) {bad}; the plant records {list(names)}"
            if settings["removed"] >= len(names):
                return f"removed {settings['removed']} of {len(names)} channels leaves none"
        return None

    # ------------------------------------------------------------------ run
    def run(self, data: Any, cells: list[CellWork], out: Path,
            metrics: list[str]) -> Iterator[Outcome]:
        if not isinstance(data, CalibrationData):
            raise TypeError(f"the plant returned {type(data).__name__}; calibration scenarios "
                            "need CalibrationData")
        self._refs, self._orders = {}, {}
        space = build_space(data.model, data.space)
        groups: dict[str, list[CellWork]] = {}
        for c in cells:
            key = repr(sorted((k, v) for k, v in c.settings.items() if k not in _BATCH_FREE))
            groups.setdefault(key, []).append(c)
        for group in groups.values():
            yield from self._group(data, space, group, out, metrics)

    def _group(self, data: CalibrationData, space: CalibrationSpace, group: list[CellWork],
               out: Path, names: list[str]) -> Iterator[Outcome]:
        st = group[0].settings
        try:
            sets = self._reference(data, st["stiffness_reference"])
            cal = cut_windows(sets, data.calibration)
            recorded = self._recorded(data, cal, space, st)
        except Exception as exc:  # bad data for these settings: every pair fails
            for c in group:
                for m in c.methods:
                    yield Outcome(c, m, status="failed", reason=f"data: {failure_reason(exc)}")
            return
        cal_m = mask_channels(cal, recorded)
        # one call per method (and its parameters) over the group's weights
        by_method: dict[tuple, list[tuple[CellWork, MethodWork]]] = {}
        for c in group:
            for m in c.methods:
                by_method.setdefault((m.name, repr(sorted(m.params.items()))), []).append(
                    (c, m))
        for pairs in by_method.values():
            yield from self._method(data, space, sets, cal, cal_m, recorded, pairs, out, names)

    def _method(self, data, space, sets, cal_full, cal, recorded, pairs, out,
                names) -> Iterator[Outcome]:
        m0 = pairs[0][1]
        t0 = time.perf_counter()
        try:
            cls = registry.resolve("calibrators", m0.name)
            params = dict(m0.params)
            if "recorded" in getattr(cls, "_parameter_constraints", {}):
                params["recorded"] = recorded
            inst = cls(**params)
            penalty = pairs[0][0].settings["penalty"]
            if penalty == "auto":
                penalty = getattr(cls, "default_penalty", "smooth")
            objectives = [Objective(float(c.settings["alpha"]), float(c.settings["beta"]),
                                    penalty=penalty) for c, _ in pairs]
            need_k = any(o.beta > 0 for o in objectives)
            if need_k and (cal.stiffness is None or not np.all(np.isfinite(cal.stiffness))):
                raise DataError("beta > 0 needs a finite reference stiffness on the "
                                "calibration windows (stiffness_reference)")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                batch = set(_BATCH_FREE) <= set(getattr(cls.tags, "batch_factors", ()))
                if batch and len(objectives) > 1:
                    results = inst.calibrate_many(data.model, cal, objectives, space=space)
                else:
                    results = [inst.calibrate(data.model, cal, o, space=space)
                               for o in objectives]
            warned = [str(w.message) for w in caught if issubclass(w.category,
                                                                   ConvergenceWarning)]
        except Exception as exc:  # failure capture: every pair of the call fails
            wall = (time.perf_counter() - t0) / len(pairs)
            for c, m in pairs:
                yield Outcome(c, m, status="failed", reason=failure_reason(exc), wall_time_s=wall)
            return
        wall = (time.perf_counter() - t0) / len(pairs)
        for (c, m), res, obj in zip(pairs, results, objectives):
            oc = Outcome(c, m, wall_time_s=wall)
            try:
                self._score(oc, inst, data, space, sets, cal, recorded, res, obj, out)
                self._extra(oc, inst, data, space, sets, cal_full, res, out)
                if warned:
                    oc.info["warning"] = warned[0][:300]
            except Exception as exc:
                oc.status, oc.reason = "failed", f"scoring: {failure_reason(exc)}"
            if oc.status == "ok":
                nan = [k for k in names if not np.isfinite(oc.metrics.get(k, np.nan))]
                if names and names[0] in nan:
                    oc.status, oc.reason = "failed", f"metric {', '.join(nan)} is NaN"
                elif nan:
                    oc.info["metric_note"] = f"undefined (NaN): {', '.join(nan)}"
            yield oc

    # ------------------------------------------------------------------ data preparation
    def _reference(self, data: CalibrationData, kind: str) -> tuple:
        """The trial sets with the stiffness the objective fits (cached per kind)."""
        if kind in self._refs:
            return self._refs[kind]
        sets = []
        for d in data.sets:
            true_k = d.meta.get("true_stiffness", d.stiffness if data.stiffness_is_true
                                else None)
            meta = dict(d.meta)
            if true_k is not None:
                meta["true_stiffness"] = true_k
            if kind == "sds":
                if d.meta.get("perturbed", True):
                    from bench.pipelines import with_reference_stiffness

                    d = with_reference_stiffness(d)
                    meta = {**d.meta, **meta}
                else:  # no perturbation, no SDS: the third test needs no reference
                    d = dataclasses.replace(d, stiffness=None)
            elif kind == "truth":
                if true_k is None:
                    raise DataError("stiffness_reference 'truth' needs a synthetic plant with "
                                    "a true joint stiffness")
                d = dataclasses.replace(d, stiffness=true_k)
            elif kind == "none":
                d = dataclasses.replace(d, stiffness=None)
            sets.append(dataclasses.replace(d, meta=meta))
        self._refs[kind] = tuple(sets)
        return self._refs[kind]

    def _recorded(self, data: CalibrationData, cal: MuscleData, space: CalibrationSpace,
                  st: dict) -> list[str] | None:
        """The recorded channels of these settings (None: all)."""
        channels = list(cal.channels) or [str(i) for i in range(np.shape(cal.excitation)[-1])]
        if st["recorded"] != "all":
            return list(st["recorded"])
        k = int(st["removed"])
        if k == 0:
            return None
        order = st["removal_order"]
        if order == "ranked":
            key = (st["stiffness_reference"], int(st["ranking_steps"]))
            if key not in self._orders:
                self._orders[key] = self._rank(data, cal, space, channels,
                                               int(st["ranking_steps"]))
            order = self._orders[key]
        if k >= len(channels):
            raise InvalidParameterError(f"removed {k} of {len(channels)} channels leaves none")
        return [c for c in channels if c not in order[:k]]

    def _rank(self, data: CalibrationData, cal: MuscleData, space: CalibrationSpace,
              channels: list[str], steps: int) -> list[str]:
        """Channels by ascending joint-moment RMSE of an EMG-driven calibration without each
        (Hambly et al. Sec. III-D)."""
        cls = registry.resolve("calibrators", "adamw")
        inst = cls(restarts=1, max_steps=steps, patience=max(10, steps // 10))
        obj = Objective(1.0, 0.0, penalty="smooth")
        score = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for c in channels:
                keep = [k for k in channels if k != c]
                res = inst.calibrate(data.model, mask_channels(cal, keep), obj, space=space)
                tau = np.asarray(res.predicted["calibration"]["torque"])
                ref = np.asarray(cal.torque)
                if cal.meta.get("valid") is not None:  # windows' own samples only
                    keep = np.asarray(cal.meta["valid"], dtype=bool)
                    ref, tau = ref[keep], tau[keep]
                score[c] = rmse(ref.ravel(), tau.ravel())
        return sorted(channels, key=lambda c: score[c])

    # ------------------------------------------------------------------ scoring
    def _predict(self, inst: Any, model: Any, space: CalibrationSpace,
                 res: CalibrationResult, d: MuscleData) -> dict:
        hook = getattr(inst, "predict", None)
        if callable(hook):
            return hook(model, space, res, d)
        return predict(model, space, res.info["x"], d)

    def _score(self, oc: Outcome, inst: Any, data: CalibrationData, space: CalibrationSpace,
               sets: tuple, cal: MuscleData, recorded: list[str] | None,
               res: CalibrationResult, obj: Objective, out: Path) -> None:
        x = np.asarray(res.info["x"], dtype=float)
        M: dict[str, float] = {}
        arrays: dict[str, Any] = {"x": x, "x0": space.x0, "lower": space.lower,
                                  "upper": space.upper, "names": np.asarray(space.names),
                                  "units": np.asarray([p.unit for p in space.specs]),
                                  "history": np.asarray(res.history, dtype=float)}
        calibrated = space.unpack(x)  # the model's per-MTU parameters (writable files)
        for f in getattr(calibrated, "_fields", ()):
            v = np.asarray(getattr(calibrated, f), dtype=float)
            if v.shape == (len(data.model.muscles),):
                arrays[f"mtu_{f}"] = v
        arrays["muscles"] = np.asarray(list(data.model.muscles))
        arrays["fs"] = np.asarray(float(getattr(data.model, "fs", cal.fs)))
        if data.meta.get("emg_delay"):  # an electromechanical delay applied to the data
            arrays["data_emg_delay"] = np.asarray(float(data.meta["emg_delay"]))
        base_f = np.asarray(getattr(space.base, "f_max", []), dtype=float)
        if base_f.shape == (len(data.model.muscles),):
            arrays["mtu_initial_f_max"] = base_f
        if cal.dofs:
            arrays["dofs"] = np.asarray(list(cal.dofs))
            r = np.asarray(cal.moment_arm, dtype=float)
            if r.ndim == 3:
                r = r[..., None]
            arrays["mtu_dof_mask"] = np.any(np.abs(r) > 1e-9, axis=(0, 1))  # (M, D)
        pc = res.predicted.get("calibration") or self._predict(inst, data.model, space, res, cal)
        tq = np.asarray(cal.torque, dtype=float)
        valid = cal.meta.get("valid")
        n_own = (np.full(tq.shape[0], tq.shape[1]) if valid is None
                 else np.asarray(valid).sum(axis=1))
        pt = np.asarray(pc["torque"], dtype=float)
        # each window over its own samples, mean over windows and DoFs
        pairs = [(tq[s, :n_own[s], j], pt[s, :n_own[s], j])
                 for s in range(tq.shape[0]) for j in range(tq.shape[2])]
        for key, fn in (("cal_torque_nrmse", nrmse), ("cal_torque_rmse", rmse),
                        ("cal_torque_r2", r2)):
            M[key] = float(np.mean([fn(a, b) for a, b in pairs]))
        err = obj.errors(pc, tq, None if cal.stiffness is None else np.asarray(cal.stiffness),
                         valid)
        neg = ({} if "stiffness" not in pc else  # deep-lsq predicts no stiffness
               _negative_stiffness(np.asarray(pc["stiffness"], dtype=float), n_own,
                                   [w.name for w in data.calibration], list(cal.dofs)))
        M["e_tau"] = err["E_tau"]
        if "E_tau_K" in err:
            M["e_tau_k"] = err["E_tau_K"]
        for k in ("objective",):
            if k in res.info:
                M[k] = float(res.info[k])
        M["evaluations"] = float(res.evaluations)
        conv = res.info.get("converged")
        if conv is not None:
            M["converged"] = float(bool(conv))
        if data.truth is not None:
            xt = true_vector(space, data.truth)
            if xt is not None:
                arrays["x_true"] = xt
                M["cr1"], M["cr2"] = cr1(xt, x), cr2(xt, x)
        ident = res.info.get("identifiability")
        if isinstance(ident, dict) and "condition_number" in ident:
            M["condition_number"] = float(ident["condition_number"])
            arrays["ident_singular_values"] = np.asarray(ident["singular_values"], float)
            se = ident.get("standard_error", {})
            arrays["ident_stderr"] = np.asarray([se.get(n, np.nan) for n in space.names],
                                                float)
            oc.info["identifiability"] = {
                "condition_number": float(ident["condition_number"]),
                "rank": ident.get("rank"), "poorly_determined": ident.get("poorly_determined"),
                "top_correlations": ident.get("top_correlations", [])[:5]}
        elif isinstance(ident, dict) and "error" in ident:
            oc.info["identifiability"] = {"error": str(ident["error"])[:300]}
        self._held_out(oc, M, arrays, inst, data, space, sets, recorded, res, neg)
        total = sum(n["of"] for n in neg.values())
        n_neg = sum(n["samples"] for n in neg.values())
        M["negative_stiffness_share"] = n_neg / total if total else 0.0
        if n_neg:
            worst = min(neg.items(), key=lambda kv: kv[1]["min"])
            oc.info["negative_stiffness"] = (
                f"modelled joint stiffness is negative at {n_neg} of {total} samples (worst "
                f"{worst[1]['min']:.4g} Nm/rad in {worst[0]}): sum(K_mtu r^2 - dr/dtheta F) "
                "< 0 there (negative fibre stiffness or a large dr/dtheta F term)")
        oc.info["negative_stiffness_by_window"] = {
            k: {"samples": v["samples"], "of": v["of"], "min": v["min"]} for k, v in neg.items()}
        oc.metrics = M
        oc.info.update({"recorded": recorded, "penalty": obj.penalty,
                        "windows": [w.name for w in data.calibration]})
        if cal.meta.get("window_lengths") is not None:
            oc.info["window_lengths"] = [int(v) for v in cal.meta["window_lengths"]]
        notes = data.meta.get("notes")
        if notes:
            oc.info["data_notes"] = [str(n)[:400] for n in notes][:40]
        for k, v in res.info.items():
            if isinstance(v, (str, bool, int, float)) and k not in oc.info and k != "x":
                oc.info[k] = v
        apath = store.array_path(out, oc.cell.unit_id, oc.method.key)
        store.save_arrays(apath, **arrays)
        oc.arrays = str(apath.relative_to(out))

    def _extra(self, oc: Outcome, inst: Any, data: CalibrationData, space: CalibrationSpace,
               sets: tuple, cal_full: MuscleData, res: CalibrationResult, out: Path) -> None:
        """Method-specific results: a calibrator may define ``extra_metrics(model, space,
        result, calibration, held_out) -> dict`` of scores (e.g. synthesized vs withheld
        excitations) and ``extra_arrays(...)`` (same arguments) -> dict of arrays added to the
        record's array file (e.g. per-guess scores and curves for a layout); both receive the
        windows with every channel, recorded or not."""
        metrics_hook = getattr(inst, "extra_metrics", None)
        arrays_hook = getattr(inst, "extra_arrays", None)
        if not callable(metrics_hook) and not callable(arrays_hook):
            return
        held = [cut_windows(sets, (w,)) for w in data.held_out]
        if callable(metrics_hook):
            for k, v in metrics_hook(data.model, space, res, cal_full, held).items():
                oc.metrics[str(k)] = float(v)
        if callable(arrays_hook) and oc.arrays:
            extra = {str(k): np.asarray(v)
                     for k, v in arrays_hook(data.model, space, res, cal_full, held).items()}
            path = out / oc.arrays
            store.save_arrays(path, **{**store.load_arrays(path), **extra})

    def _held_out(self, oc, M, arrays, inst, data, space, sets, recorded, res, neg) -> None:
        if not data.held_out:
            return
        seg, skip = data.segment, data.skip_segments
        scores: dict[str, list] = {}
        rows = []
        for i, w in enumerate(data.held_out):
            d = mask_channels(cut_windows(sets, (w,)), recorded)
            p = self._predict(inst, data.model, space, res, d)
            tq, pt = np.asarray(d.torque, float)[0], np.asarray(p["torque"], float)[0]
            ks = np.asarray(p["stiffness"], float)[0]
            label = w.name or f"held-out {i}"
            neg[label] = _negative_stiffness(ks[None], [ks.shape[0]], [label],
                                             list(d.dofs))[label]
            full = np.asarray(sets[w.set].torque, float)[w.trial]
            rms_trial = np.sqrt(np.mean(full ** 2, axis=0))  # (D,)
            for name, ref in (("torque", tq),
                              ("stiffness", None if d.stiffness is None else
                               np.asarray(d.stiffness, float)[0]),
                              ("stiffness_true", None if "true_stiffness" not in d.meta else
                               np.asarray(d.meta["true_stiffness"], float)[0])):
                if ref is None:
                    continue
                est = pt if name == "torque" else ks
                s = _scores(ref, est, seg, skip)
                for k, v in s.items():
                    scores.setdefault(f"{name}_{k}", []).append(v)
            per = _per_dof(tq, pt, rms_trial)
            ok = np.isfinite(per["nrmse_trial"])
            if ok.any():
                scores.setdefault("torque_nrmse_trial", []).append(
                    float(np.mean(per["nrmse_trial"][ok])))
            dofs = list(d.dofs) or [str(j) for j in range(tq.shape[1])]
            for j, dof in enumerate(dofs):
                rows.append({"window": label, "dof": dof,
                             **{k: float(v[j]) for k, v in per.items()}})
            if i == 0 and seg is not None:
                arrays["profile_torque_ref"] = _segments(tq, seg, skip).mean(0)
                arrays["profile_torque"] = _segments(pt, seg, skip).mean(0)
                arrays["profile_stiffness"] = _segments(ks, seg, skip).mean(0)
                if d.stiffness is not None:
                    arrays["profile_stiffness_ref"] = np.nanmean(
                        _segments(np.asarray(d.stiffness, float)[0], seg, skip), axis=0)
                if "true_stiffness" in d.meta:
                    arrays["profile_stiffness_true"] = _segments(
                        np.asarray(d.meta["true_stiffness"], float)[0], seg, skip).mean(0)
                if "unperturbed" in data.extra:
                    self._third(M, arrays, inst, data, space, sets, recorded, res, ks)
            if i == 0 and tq.shape[0] <= _TRACE_SAMPLES:  # the report's figure (short windows)
                arrays["held_torque_ref_0"] = tq
                arrays["held_torque_0"] = pt
                arrays["held_stiffness_0"] = ks
        for k, vals in scores.items():
            if k.endswith("_per_segment"):
                arrays[k] = np.concatenate(vals)
            elif k.endswith("_iqr"):
                oc.info[k] = float(np.mean(vals))
            else:
                M[k] = float(np.mean(vals))  # windows weigh equally
        oc.info["held_out_scores"] = rows[:200]

    def _third(self, M, arrays, inst, data, space, sets, recorded, res, k_pert) -> None:
        """The study's third test: stiffness unperturbed vs perturbed, paired along the cycle."""
        from bench.spm import paired_ttest_1d

        seg, skip = data.segment, data.skip_segments
        (w,) = data.extra["unperturbed"][:1]
        d = mask_channels(cut_windows(sets, (w,)), recorded)
        ku = np.asarray(self._predict(inst, data.model, space, res, d)["stiffness"], float)[0]
        a, b = _segments(k_pert, seg, skip)[..., 0], _segments(ku, seg, skip)[..., 0]
        n = min(a.shape[0], b.shape[0])
        a, b = a[:n], b[:n]
        ma, mb = a.mean(0), b.mean(0)
        spm = paired_ttest_1d(a, b, alpha=0.05)
        M["third_rmse"] = float(np.sqrt(np.mean((ma - mb) ** 2)))
        M["third_r2"] = r2(ma, mb)
        M["third_significant_share"] = float(spm["significant_share"])
        arrays["third_mean_perturbed"], arrays["third_mean_unperturbed"] = ma, mb
        arrays["third_t"] = np.asarray(spm["t"], float)
        arrays["third_threshold"] = np.asarray(float(spm["threshold"]))
