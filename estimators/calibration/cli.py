"""``impbench calibrate CONFIG.yaml [--out DIR]``: calibrate an EMG-driven model on users' files.

The pipeline (issue 13 item 3):

1. load and validate the config (:mod:`estimators.calibration.config`; every problem
   reported as ``FILE:LINE: field: message`` before any data are read);
2. read each trial's files into :class:`~bench.types.MuscleData`
   (:func:`bench.formats.trial.read_trial`), add the reference stiffness (from files, or
   from an impedance estimator on the perturbed trial, :func:`bench.pipelines.
   with_reference_stiffness`, 000 Sec. 2.3), cut the requested windows;
3. build the model (a class following the calibration model protocol, named by
   ``model.target``, default :class:`plants.muscle.model.MuscleModel`, loaded by name so
   that ``estimators`` does not import ``plants``), the calibrated-parameter space and the
   objective of 000:Eq.8 with the penalty of 000:Eq.9 / 001:Eq.4;
4. run the calibrator (``annealing`` or ``adamw``, from the registry);
5. score the calibrated (and the initial) model on the calibration and validation trials
   (nRMSE and r2 of 000 Sec. 2.6) and write, each atomically, into ``DIR``:
   ``calibrated.yaml`` (per-MTU parameters, readable as ``initial.file``, and the calibration
   record), ``calibrated.csv`` (calibrated parameters with units, bounds, change),
   ``calibrated_mtus.csv``, ``results.json``, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.errors import DataError, InvalidParameterError
from bench.formats.trial import TrialSpec, read_trial, stack_trials, window_trial
from bench.metrics import nrmse, r2
from bench.registry import resolve
from bench.types import CalibrationResult, MuscleData
from estimators.calibration.config import (
    BLOCKS,
    PARAMETER_FIELDS,
    PARAMETER_UNITS,
    CalibrateConfig,
    UseConfig,
    load_calibration_config,
    read_params_file,
)
from estimators.calibration.objectives import CalibrationSpace, Objective

__all__ = [
    "CalibrationRun",
    "build_model",
    "build_space",
    "load_trials",
    "predict_many",
    "prepare_use",
    "register",
    "run_calibration",
    "write_atomic",
]


# --------------------------------------------------------------------------- building blocks


def _load_target(target: str, field: str) -> Any:
    module, _, attr = target.partition(":")
    if not attr:
        raise InvalidParameterError(f"{field}: {target!r} is not of the form 'module:name'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterError(f"{field}: cannot load {target!r}: {exc}") from None


def build_model(cfg: CalibrateConfig, fs: float) -> Any:
    """The forward model with the config's MTUs, EMG map and initial parameters.

    Parameters
    ----------
    cfg : CalibrateConfig
    fs : float, Hz
        Model rate (that of the trials).
    """
    model_cls = _load_target(cfg.model.target, "model.target")
    muscles = cfg.muscles
    if cfg.initial.preset is not None:
        preset = model_cls.from_ankle(fs, tendon=cfg.model.tendon,
                                      activation_model=cfg.model.activation_model)
        names = list(preset.muscles)
        unknown = [m for m in muscles if m not in names]
        if unknown:
            raise DataError(f"initial.preset {cfg.initial.preset!r} has no MTU(s) {unknown}; "
                            f"it has {names}")
        idx = np.array([names.index(m) for m in muscles])
        base = type(preset.base_params)(*(np.asarray(f)[idx] for f in preset.base_params))
        base = type(base)(*(_as_jax(f) for f in base))
    else:
        factory = _load_target(cfg.model.params_factory, "model.params_factory")
        vals = read_params_file(cfg.path(cfg.initial.file), muscles, fs)
        base = factory(vals.pop("f_max"), vals.pop("l_opt"), vals.pop("l_ts"),
                       vals.pop("phi_opt"), **vals)
    groups = dict(cfg.calibrate.strength_groups) or None
    return model_cls(base, muscles, fs=fs, emg_map=cfg.emg_map, tendon=cfg.model.tendon,
                     activation_model=cfg.model.activation_model, strength_groups=groups)


def _as_jax(x: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(x)


def build_space(cfg: CalibrateConfig, model: Any) -> CalibrationSpace:
    """Calibrated-parameter space with only the blocks named in ``calibrate.parameters``."""
    c = cfg.calibrate
    space = CalibrationSpace.build(
        model.base_params, list(model.muscles),
        strength_groups=dict(c.strength_groups) or None, length_tolerance=c.length_tolerance,
        strength_bounds=tuple(c.strength_bounds), shape_bounds=tuple(c.shape_bounds),
        calibrate_filter="c1c2" in c.parameters,
    )
    keep = {f for p in c.parameters for f in BLOCKS[p]}
    blocks = tuple(b for b in space.blocks if b.field in keep)
    return dataclasses.replace(
        space, blocks=blocks, lower=np.concatenate([b.lower for b in blocks]),
        upper=np.concatenate([b.upper for b in blocks]),
        x0=np.concatenate([b.x0 for b in blocks]),
    )


def load_trials(cfg: CalibrateConfig) -> dict[str, MuscleData]:
    """Every trial used for calibration or validation, read once (full length)."""
    names = dict.fromkeys(cfg.use(u).trial for u in [*cfg.calibration, *cfg.validation])
    out = {}
    for name in names:
        tr = cfg.trials[name]
        spec = TrialSpec(
            name=name, torque=cfg.path(tr.torque), lengths=cfg.path(tr.lengths),
            moment_arms={d: cfg.path(p) for d, p in tr.moment_arms.items()},
            emg=cfg.path(tr.emg), angles=None if tr.angles is None else cfg.path(tr.angles),
            stiffness=(cfg.path(tr.stiffness) if tr.stiffness is not None
                       and cfg.stiffness is not None and cfg.stiffness.source == "files"
                       else None),
            emg_kind=cfg.emg.kind, mvc=tuple(cfg.path(m) for m in cfg.emg.mvc),
            emg_preset=cfg.emg.preset, emg_offset=float(cfg.emg.offset),
        )
        out[name] = read_trial(
            spec, muscles=cfg.muscles, dofs=cfg.dofs, channels=cfg.channels,
            muscle_columns=cfg.muscle_columns, fs=cfg.fs, resample_to_model=cfg.resample,
            dmoment_arm=cfg.model.dmoment_arm,
        )
    rates = {n: d.fs for n, d in out.items()}
    first = next(iter(rates.values()))
    odd = {n: r for n, r in rates.items() if abs(r - first) > 1e-6 * first}
    if odd:
        raise DataError(f"trials are sampled at different rates {rates}; set 'fs' and "
                        "'resample: true' to bring them onto one model time base")
    return out


def prepare_use(cfg: CalibrateConfig, use: UseConfig, trials: dict[str, MuscleData]
                ) -> MuscleData:
    """One trial as used: reference stiffness (files or estimator) added, window cut."""
    data = trials[use.trial]
    st = cfg.stiffness
    if st is not None and st.source == "estimator":
        from bench.pipelines import with_reference_stiffness

        ref = np.full(data.torque.shape, np.nan)
        for j in range(len(cfg.dofs)):
            est = with_reference_stiffness(
                data, estimator=st.estimator, estimator_params=dict(st.params), dof=j,
                smooth=st.smooth, period=st.period)
            ref[..., j] = est.stiffness[..., j]
        data = dataclasses.replace(data, stiffness=ref,
                                   meta={**data.meta, "stiffness_source": st.estimator})
    return window_trial(data, use.window)


# --------------------------------------------------------------------------- scoring


def _scores(ref: np.ndarray | None, pred: np.ndarray) -> tuple[float, float]:
    """nRMSE and r2 (000 Sec. 2.6) over the samples where the reference is finite."""
    if ref is None:
        return float("nan"), float("nan")
    ref = np.asarray(ref, dtype=float).ravel()
    pred = np.asarray(pred, dtype=float).ravel()
    ok = np.isfinite(ref)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    return nrmse(ref[ok], pred[ok]), r2(ref[ok], pred[ok])


def _fit(role: str, use: UseConfig, data: MuscleData, pred: dict, pred0: dict,
         dofs: list[str]) -> tuple[list[dict], dict]:
    rows = []
    for j, d in enumerate(dofs):
        kref = None if data.stiffness is None else data.stiffness[0, :, j]
        nt, rt = _scores(data.torque[0, :, j], pred["torque"][0, :, j])
        nt0, rt0 = _scores(data.torque[0, :, j], pred0["torque"][0, :, j])
        nk, rk = _scores(kref, pred["stiffness"][0, :, j])
        nk0, rk0 = _scores(kref, pred0["stiffness"][0, :, j])
        rows.append({
            "role": role, "trial": use.trial,
            "window": None if use.window is None else list(use.window), "dof": d,
            "samples": int(data.torque.shape[1]),
            "nrmse_torque": nt, "r2_torque": rt, "nrmse_stiffness": nk, "r2_stiffness": rk,
            "initial_nrmse_torque": nt0, "initial_r2_torque": rt0,
            "initial_nrmse_stiffness": nk0, "initial_r2_stiffness": rk0,
        })
    arrays = {
        "role": role, "trial": use.trial, "time": np.asarray(data.meta["time"]).ravel(),
        "torque": data.torque[0], "torque_pred": pred["torque"][0],
        "torque_initial": pred0["torque"][0],
        "stiffness": None if data.stiffness is None else data.stiffness[0],
        "stiffness_pred": pred["stiffness"][0], "stiffness_initial": pred0["stiffness"][0],
    }
    return rows, arrays


# --------------------------------------------------------------------------- outputs


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return p


def _per_mtu(params: Any, muscles: list[str]) -> dict[str, dict[str, float]]:
    d = {k: np.asarray(v, dtype=float) for k, v in params._asdict().items()}
    return {m: {k: float(d[k][i]) for k in PARAMETER_FIELDS if k in d}
            for i, m in enumerate(muscles)}


def _parameter_rows(space: CalibrationSpace, x0: np.ndarray, x: np.ndarray) -> list[dict]:
    rows = []
    for spec, a, b in zip(space.specs, x0, x):
        width = spec.upper - spec.lower
        pos = (b - spec.lower) / width
        rows.append({
            "name": spec.name, "unit": spec.unit, "group": spec.group,
            "initial": float(a), "value": float(b), "lower": spec.lower, "upper": spec.upper,
            "change_percent": float(100.0 * (b - a) / abs(a)) if a != 0 else float("nan"),
            "position_percent": float(100.0 * pos),
            "at_bound": bool(pos < 0.01 or pos > 0.99),
        })
    return rows


def _csv(rows: list[dict], keys: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.10g}"
        return "" if v is None else str(v)

    return "\n".join([",".join(keys)] + [",".join(fmt(r[k]) for k in keys) for r in rows]) + "\n"


def _mtu_csv(per_mtu: dict[str, dict[str, float]]) -> str:
    """Per-MTU parameters, header with units (``f_max [N]``), readable as ``initial.file``."""
    fields = list(next(iter(per_mtu.values())))
    head = ",".join(["mtu", *(f"{k} [{PARAMETER_UNITS[k]}]" for k in fields)])
    body = [",".join([m, *(f"{v[k]:.12g}" for k in fields)]) for m, v in per_mtu.items()]
    return "\n".join([head, *body]) + "\n"


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


@dataclasses.dataclass
class CalibrationRun:
    """What :func:`run_calibration` produced.

    Attributes
    ----------
    result : CalibrationResult
    space : CalibrationSpace
    model : object
        The model (initial parameters in ``model.base_params``).
    calibration : MuscleData
        The stacked calibration data.
    summary : dict
        JSON-able record (also ``results.json``).
    paths : dict of str to Path
        Files written.
    """

    result: CalibrationResult
    space: CalibrationSpace
    model: Any
    calibration: MuscleData
    summary: dict
    paths: dict


def run_calibration(cfg: CalibrateConfig | str | Path, out: str | Path, *,
                    report: bool = True) -> CalibrationRun:
    """Run a calibration config end to end and write its outputs into ``out``.

    Parameters
    ----------
    cfg : CalibrateConfig or path
    out : path-like
        Output directory (created).
    report : bool
        Also write ``report.md`` / ``report.html``.
    """
    if not isinstance(cfg, CalibrateConfig):
        cfg = load_calibration_config(cfg)
    out = Path(out)
    t_start = time.perf_counter()
    trials = load_trials(cfg)
    fs = next(iter(trials.values())).fs
    model = build_model(cfg, fs)
    space = build_space(cfg, model)
    objective = Objective(cfg.objective.alpha, cfg.objective.beta, penalty=cfg.penalty)
    uses = [("calibration", cfg.use(u)) for u in cfg.calibration]
    uses += [("validation", cfg.use(u)) for u in cfg.validation]
    prepared = [(role, use, prepare_use(cfg, use, trials)) for role, use in uses]
    cal = stack_trials([d for role, _, d in prepared if role == "calibration"])
    cal_fit = cal
    if cfg.objective.beta == 0:
        cal_fit = dataclasses.replace(cal, stiffness=None)
    elif cal.stiffness is None or not np.all(np.isfinite(cal.stiffness)):
        bad = {n: int(np.sum(~np.isfinite(k))) for n, k in zip(
            cal.meta["trials"], np.full(cal.torque.shape, np.nan) if cal.stiffness is None
            else cal.stiffness)}
        raise DataError(
            f"beta > 0 but the reference stiffness of the calibration trials has non-finite "
            f"samples {bad} (an estimator leaves samples it cannot estimate - edges, the part "
            "after the last whole task cycle - empty): choose calibration windows where the "
            "reference is defined, or beta = 0")
    cal_cls = resolve("calibrators", cfg.calibrator.name)
    calibrator = cal_cls(**cfg.calibrator.params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = calibrator.calibrate(model, cal_fit, objective, space=space)
    warned = [str(w.message) for w in caught]
    x = np.asarray(result.info["x"], dtype=float)
    x0 = space.x0

    preds = predict_many(model, space, np.stack([x, x0]), [d for _, _, d in prepared])
    fits, arrays = [], []
    for (role, use, data), (pred, pred0) in zip(prepared, preds):
        rows, arr = _fit(role, use, data, pred, pred0, cfg.dofs)
        fits += rows
        arrays.append(arr)
    n_cal = sum(role == "calibration" for role, _, _ in prepared)
    initial_value = _objective_value(
        objective, [p0 for _, p0 in preds[:n_cal]], cal_fit)

    calibrated = space.unpack(_as_jax(x))
    per_mtu = _per_mtu(calibrated, cfg.muscles)
    prows = _parameter_rows(space, x0, x)
    history = np.asarray(result.history, dtype=float)
    summary = {
        "name": cfg.name, "description": cfg.description, "fs": fs,
        "muscles": cfg.muscles, "channels": cfg.channels, "dofs": cfg.dofs,
        "calibrator": cfg.calibrator.name, "calibrator_params": calibrator.get_params(),
        "objective": {"alpha": cfg.objective.alpha, "beta": cfg.objective.beta,
                      "penalty": cfg.penalty, "value": result.info.get("objective"),
                      "initial_value": initial_value},
        "stiffness_source": None if cfg.stiffness is None else (
            "files" if cfg.stiffness.source == "files" else cfg.stiffness.estimator),
        "evaluations": result.evaluations, "calibration_wall_time_s": result.wall_time,
        "total_wall_time_s": None,
        "converged": result.info.get("converged"),
        "history": history,
        "history_label": ("best objective at the end of each temperature stage"
                          if cfg.calibrator.name == "annealing" else "loss per AdamW step"),
        "parameters": prows, "mtus": per_mtu, "fits": fits, "warnings": warned,
        "errors": {k: v for k, v in result.info.items() if k.startswith("E_")},
    }
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "name": cfg.name, "fs": fs,
        "mtus": per_mtu,
        "units": dict(PARAMETER_UNITS),
        "calibration": {
            "calibrator": cfg.calibrator.name,
            "calibrator_params": _jsonable(calibrator.get_params()),
            "objective": _jsonable(summary["objective"]),
            "evaluations": int(result.evaluations),
            "wall_time_s": float(result.wall_time),
            "trials": [u.trial for r, u in uses if r == "calibration"],
            "parameters": [
                {k: _jsonable(r[k]) for k in ("name", "unit", "initial", "value", "lower",
                                              "upper", "group")} for r in prows],
        },
    }
    paths = {
        "yaml": write_atomic(out / "calibrated.yaml", yaml.safe_dump(record, sort_keys=False)),
        "csv": write_atomic(out / "calibrated.csv", _csv(
            prows, ["name", "unit", "group", "initial", "value", "lower", "upper",
                    "change_percent", "position_percent", "at_bound"])),
        "mtus_csv": write_atomic(out / "calibrated_mtus.csv", _mtu_csv(per_mtu)),
    }
    summary["total_wall_time_s"] = time.perf_counter() - t_start
    paths["json"] = write_atomic(out / "results.json",
                                 json.dumps(_jsonable(summary), indent=1))
    if report:
        from estimators.calibration.report import write_calibration_report

        paths.update(write_calibration_report(out, summary, arrays))
    return CalibrationRun(result, space, model, cal, summary, paths)


def predict_many(model: Any, space: CalibrationSpace, X: np.ndarray,
                 datasets: list[MuscleData]) -> list[list[dict]]:
    """Model outputs for several parameter vectors on several datasets, jitted once per
    trial length.

    Datasets with the same number of samples T are stacked along the trial axis and run
    in one jitted, parameter-vmapped call (trials are independent in the model). Lengths
    are not padded: the model differentiates MTU lengths with central differences, so a
    padded tail would change the last sample.

    Parameters
    ----------
    X : ndarray, shape (P, n)
        Parameter vectors of ``space``.
    datasets : list of MuscleData

    Returns
    -------
    list (per dataset) of list (per parameter vector) of dict
        ``torque``/``stiffness`` (S, T, D), ``lm``/``lt`` (S, T, M), numpy.
    """
    import jax

    f = jax.jit(jax.vmap(lambda x, inp: model.simulate(space.unpack(x), inp),
                         in_axes=(0, None)))
    inputs = [model.inputs(d) for d in datasets]
    res: list = [None] * len(datasets)
    for T in dict.fromkeys(d.torque.shape[1] for d in datasets):
        idx = [i for i, d in enumerate(datasets) if d.torque.shape[1] == T]
        batch = {k: np.concatenate([np.asarray(inputs[i][k]) for i in idx], axis=0)
                 for k in inputs[idx[0]]}
        out = {k: np.asarray(v) for k, v in f(_as_jax(X), batch).items()}
        s0 = 0
        for i in idx:
            S = datasets[i].torque.shape[0]
            res[i] = [{k: v[p, s0:s0 + S] for k, v in out.items()} for p in range(X.shape[0])]
            s0 += S
    return res


def _objective_value(objective: Objective, preds: list[dict], data: MuscleData) -> float:
    """000:Eq.8 (+ penalty) of stacked per-trial predictions against ``data``."""
    out = {k: np.concatenate([p[k] for p in preds], axis=0)
           for k in ("torque", "stiffness", "lm", "lt")}
    vt, vk = objective.reference_variances(data.torque, data.stiffness)
    return float(objective(out, data.torque, data.stiffness, vt, vk))


# --------------------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``impbench calibrate`` to the ``impbench`` command line."""
    p = subparsers.add_parser(
        "calibrate", help="calibrate an EMG-driven model on OpenSim/CEINMS/C3D trial files")
    p.add_argument("config", help="calibration config YAML (see scenarios/calibrate-example.yaml)")
    p.add_argument("--out", help="output directory (default: runs/<name>)")
    p.add_argument("--validate", action="store_true", help="only validate the config")
    p.add_argument("--no-report", action="store_true", help="skip report.md / report.html")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``impbench calibrate``."""
    cfg = load_calibration_config(args.config)
    if args.validate:
        print(f"{args.config}: OK: {len(cfg.mtus)} MTUs, {len(cfg.channels)} EMG channels, "
              f"{len(cfg.dofs)} DoF(s), {len(cfg.calibration)} calibration and "
              f"{len(cfg.validation)} validation trial(s), calibrator {cfg.calibrator.name}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    run = run_calibration(cfg, out, report=not args.no_report)
    for w in run.summary["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    val = [f for f in run.summary["fits"] if f["role"] == "validation"]
    for f in val:
        print(f"{f['trial']} {f['dof']}: torque nRMSE {f['nrmse_torque']:.3f} "
              f"r2 {f['r2_torque']:.3f}")
    written = ", ".join(str(p) for p in run.paths.values())
    print(f"calibrated in {run.result.wall_time:.1f} s ({run.result.evaluations} evaluations); "
          f"wrote {written}")
    return 0
