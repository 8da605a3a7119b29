"""Channel-removal study of 001 Sec. III-D: EMG-driven vs synergy-hybrid calibration as
recorded excitations are removed, on the synthetic ankle (:class:`plants.ankle.AnklePlant`)
or the synthetic arm (:class:`plants.arm.simulate.ArmPlant`); the scenario's
``plant.kind`` (``ankle``, the default, or ``arm``) selects the plant.

Protocol (001 Sec. III-D):

1. Data. *Ankle*: simulate ``n_trials`` trials; trial 0 is the calibration trial, the others
   are held out; model :meth:`plants.muscle.model.MuscleModel.from_ankle` with the generic
   parameters. *Arm*: the calibration trial(s) are one ``ArmPlant`` simulation (``movement``,
   e.g. ``both`` = one reaching and one flexion-pronation trial) with the scenario ``seed``;
   the held-out trial(s) a second simulation with ``plant.held_out`` (its own ``seed`` and
   ``movement``); model :meth:`~plants.muscle.model.MuscleModel.from_arm` started from the
   ground truth with ``l_opt``, ``l_ts`` and ``f_max`` each multiplied by ``1 + U(-p, p)``,
   ``p = plant.init_perturbation`` (drawn from ``default_rng((seed, 2))``).
2. EMG-driven calibration (AdamW, :class:`~estimators.calibration.gradient.
   GradientCalibrator`) with every channel: the reference parameters.
3. **Ranking**: one EMG-driven calibration per channel with that channel alone removed; the
   channels are ordered from the lowest to the highest joint-moment RMSE (averaged over DoFs
   and calibration trials); ``ranking_adamw`` may override AdamW settings for these C
   calibrations (e.g. fewer steps for the 16 arm channels). A scenario may instead give the
   order (``removal_order``, a list of channel names; then no ranking is run and at most
   ``len(removal_order)`` channels are removed).
4. For k = 1 .. C - 1 channels removed in that order: EMG-driven calibration (removed
   channels give no excitation) and synergy-hybrid calibration
   (:class:`~estimators.calibration.synergy.SynergyHybridCalibrator`, 001:Eq.5).
5. Scores per method and k: moment RMSE and R2 on the calibration trial and on the held-out
   trials (EMG-driven: removed channels zero; synergy-hybrid: the held-out trial's unrecorded
   channels synthesized from its recorded ones with the calibrated weightings,
   :func:`~estimators.calibration.synergy.extrapolate_excitations`); the mean absolute
   parameter difference to the all-channels calibration, each parameter normalized by its
   allowed range (001 Sec. III-D); and the synthesized excitations against the withheld
   recorded ones and the true excitations of the simulation (RMSE, r2; all calibration
   trials concatenated), and the held-out trials' extrapolated excitations against their
   withheld recorded ones. (The arm's recorded EMG is the noise-free EMG that drove the
   simulation, so there "recorded" and "true" coincide.)

001 scored synergy-hybrid calibration on its calibration trials only (001 Discussion); the
held-out columns are ours.

Run: ``python -m bench.studies.channel_removal scenarios/channel-removal.yaml --out DIR``
(``scenarios/channel-removal-arm.yaml`` for the arm);
writes ``results.json``, ``report.md`` and ``fig5.png`` (001 Fig. 5-style panels).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConvergenceWarning, ScenarioError
from bench.metrics import r2, rmse
from bench.studies._common import merge_defaults, read_scenario, study_main
from bench.types import MuscleData
from estimators.calibration._problem import predict
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective
from estimators.calibration.synergy import (
    SynergyHybridCalibrator,
    extrapolate_excitations,
    mask_channels,
)

__all__ = ["PLANT_KINDS", "load_config", "main", "run_study", "take_trials", "write_report"]

#: Plants the study runs on (``plant.kind``).
PLANT_KINDS = ("ankle", "arm")

#: Plant defaults per kind. Ankle: :class:`plants.ankle.AnklePlant` keywords. Arm:
#: :class:`plants.arm.simulate.ArmPlant` keywords for the calibration simulation, plus
#: ``held_out`` (``seed`` and any ArmPlant keyword overriding the calibration ones) and
#: ``init_perturbation`` (relative half-width of the initial-guess perturbation).
_PLANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "ankle": {"n_cycles": 2, "n_trials": 2, "perturbed": False, "tendon": "rigid"},
    "arm": {"movement": "both", "duration": 10.0, "held_out": {"seed": 1},
            "init_perturbation": 0.03},
}
#: :class:`~plants.muscle.model.MuscleModel` defaults per kind (the arm's: its own forward
#: model, 002:Eq.17-21 with a rigid tendon).
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "ankle": {"tendon": "rigid", "activation_model": "recursive"},
    "arm": {"tendon": "rigid", "activation_model": "recursive_first_order"},
}
_STUDY_KEYS = ("held_out", "init_perturbation")

_DEFAULTS: dict[str, Any] = {
    "name": "channel-removal",
    "seed": 0,
    "plant": {"kind": "ankle"},
    "model": {},
    "adamw": {"learning_rate": 0.05, "decay_steps": 250, "decay_rate": 0.5,
              "weight_decay": 1.0e-4, "max_steps": 600, "patience": 60, "tol": 1.0e-6},
    "ranking_adamw": None,
    "synergy": {"vaf_threshold": 0.85, "w_e": 1.0, "w_s": 0.01, "range_weight": 100.0},
    "max_removed": None,
    "removal_order": None,
}


def _plant_class(kind: str):
    if kind == "ankle":
        from plants.ankle import AnklePlant

        return AnklePlant
    from plants.arm.simulate import ArmPlant

    return ArmPlant


def _check_plant(plant: dict) -> None:
    """Build the plant(s) of ``plant`` once so that bad keywords fail at load time."""
    kind = plant["kind"]
    cls = _plant_class(kind)
    kw = {k: v for k, v in plant.items() if k != "kind" and k not in _STUDY_KEYS}
    sets = [kw]
    if kind == "arm":
        held = plant["held_out"]
        if not isinstance(held, dict) or "seed" not in held:
            raise ScenarioError("channel-removal scenario: plant.held_out must be a mapping "
                                f"with a 'seed' (and optional ArmPlant keywords); got {held!r}")
        sets.append({**kw, **{k: v for k, v in held.items() if k != "seed"}})
        p = plant["init_perturbation"]
        if not (isinstance(p, (int, float)) and 0.0 <= p < 0.05):
            raise ScenarioError("channel-removal scenario: plant.init_perturbation must be a "
                                f"number in [0, 0.05) (inside the +-5 % length box); got {p!r}")
    for s in sets:
        try:
            cls(**s)._validate()
        except TypeError as err:
            raise ScenarioError(f"channel-removal scenario: bad plant keyword for "
                                f"plant.kind={kind!r} ({cls.__name__}): {err}") from err
        except ValueError as err:
            raise ScenarioError(f"channel-removal scenario: plant: {err}") from err


def load_config(path: str | Path | dict) -> dict:
    """Scenario dict with defaults filled in and the plant checked.

    Raises
    ------
    ScenarioError
        Unknown top-level keys, an unknown ``plant.kind`` (not in :data:`PLANT_KINDS`), or
        plant keywords the selected plant rejects.
    """
    cfg = read_scenario(path, "channel-removal", set(_DEFAULTS))
    plant = dict(cfg.get("plant") or {})
    kind = plant.get("kind", "ankle")
    if kind not in PLANT_KINDS:
        raise ScenarioError(
            f"channel-removal scenario: plant.kind must be one of {PLANT_KINDS}; got {kind!r}"
        )
    defaults = {**_DEFAULTS, "plant": {"kind": kind, **_PLANT_DEFAULTS[kind]},
                "model": dict(_MODEL_DEFAULTS[kind])}
    out = merge_defaults(defaults, cfg)
    if out["ranking_adamw"] is not None and not isinstance(out["ranking_adamw"], dict):
        raise ScenarioError("channel-removal scenario: ranking_adamw must be a mapping of "
                            f"AdamW settings or null; got {out['ranking_adamw']!r}")
    _check_plant(out["plant"])
    order = out["removal_order"]
    if order is not None:
        names = _channel_names(kind)
        if (not isinstance(order, list) or not order or len(set(order)) != len(order)
                or any(c not in names for c in order) or len(order) >= len(names)):
            raise ScenarioError(
                "channel-removal scenario: removal_order must be a list of distinct channel "
                f"names, fewer than all, from {list(names)}; got {order!r}")
    return out


def _channel_names(kind: str) -> tuple[str, ...]:
    if kind == "ankle":
        from plants.ankle import CHANNELS

        return tuple(CHANNELS)
    from plants.arm.muscles import MUSCLES

    return tuple(MUSCLES)


def take_trials(data: MuscleData, idx: list[int]) -> MuscleData:
    """Trials ``idx`` of ``data`` (array fields and per-trial ``meta`` arrays sliced)."""
    S = np.shape(data.excitation)[0]
    kw = {}
    for f in fields(data):
        v = getattr(data, f.name)
        if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == S:
            kw[f.name] = v[idx]
    meta = {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim >= 2 and v.shape[0] == S
                else v) for k, v in (data.meta or {}).items()}
    return replace(data, meta=meta, **kw)


def _scores(tau: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE and R2 averaged over trials and DoFs (001 Sec. III-D)."""
    S, _, D = tau.shape
    rm = [rmse(tau[s, :, d], pred[s, :, d]) for s in range(S) for d in range(D)]
    rr = [r2(tau[s, :, d], pred[s, :, d]) for s in range(S) for d in range(D)]
    return {"rmse": float(np.mean(rm)), "r2": float(np.mean(rr))}


def _distance(space: CalibrationSpace, a: dict, b: dict) -> float:
    """Mean |a - b| / allowed range over all calibrated parameters (001 Sec. III-D)."""
    xa = np.array([a[n] for n in space.names])
    xb = np.array([b[n] for n in space.names])
    return float(np.mean(np.abs(xa - xb) / (space.upper - space.lower)))


def _perturbed(params, p: float, rng: np.random.Generator):
    """``params`` with ``l_opt``, ``l_ts`` and ``f_max`` each times ``1 + U(-p, p)``."""
    def f(v):
        v = np.asarray(v, dtype=float)
        return v * (1.0 + p * rng.uniform(-1.0, 1.0, v.shape))

    return params._replace(l_opt=f(params.l_opt), l_ts=f(params.l_ts), f_max=f(params.f_max))


def _study_data(cfg: dict):
    """Calibration and held-out ``MuscleData``, the calibration model and the calibration
    trials' true excitations (S_cal, T, C) or None, for ``cfg["plant"]["kind"]``."""
    from plants.muscle.model import MuscleModel

    plant = dict(cfg["plant"])
    kind = plant.pop("kind")
    if kind == "ankle":
        from plants.ankle import AnklePlant

        data = AnklePlant(**plant).simulate(np.random.default_rng(cfg["seed"]))
        S = data.excitation.shape[0]
        if S < 2:
            raise ScenarioError("the channel-removal study needs plant.n_trials >= 2 (held-out)")
        cal, held = take_trials(data, [0]), take_trials(data, list(range(1, S)))
        model = MuscleModel.from_ankle(data.fs, **cfg["model"])
        true_exc = data.meta.get("true_excitation")
        true_cal = None if true_exc is None else np.asarray(true_exc)[:1]
        return cal, held, model, true_cal
    from plants.arm.simulate import ArmPlant

    held_cfg = dict(plant.pop("held_out"))
    p = float(plant.pop("init_perturbation"))
    held_seed = held_cfg.pop("seed")
    cal = ArmPlant(**plant).simulate(np.random.default_rng(cfg["seed"]))
    held = ArmPlant(**{**plant, **held_cfg}).simulate(np.random.default_rng(held_seed))
    truth = MuscleModel.from_arm(cal.fs, **cfg["model"])
    start = _perturbed(truth.base_params, p, np.random.default_rng((int(cfg["seed"]), 2)))
    model = MuscleModel.from_arm(cal.fs, params=start, **cfg["model"])
    # the arm's recorded EMG is the noise-free EMG that drove the simulation
    return cal, held, model, np.asarray(cal.excitation)


def _synth_scores(ref: np.ndarray, syn: np.ndarray) -> tuple[float, float]:
    """RMSE and mean per-channel r2 of synthesized (S, T, k) against reference excitations,
    the trials concatenated."""
    k = ref.shape[-1]
    a, b = ref.reshape(-1, k), syn.reshape(-1, k)
    return rmse(a, b), float(np.nanmean([r2(a[:, j], b[:, j]) for j in range(k)]))


def run_study(config: str | Path | dict, out: str | Path, *, progress: bool = False) -> dict:
    """Run the study; writes ``results.json`` under ``out`` and returns the results.

    ``progress=True`` prints one line per calibration to stderr.
    """
    def log(msg: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cal, held, model, true_exc = _study_data(cfg)
    t_data = time.perf_counter() - t_start
    log(f"data: {cal.excitation.shape} calibration, {held.excitation.shape} held out")
    space = CalibrationSpace.build(model.base_params, list(model.muscles),
                                   strength_groups=model.strength_groups)
    obj = Objective(alpha=1.0, beta=0.0, penalty="smooth")
    ad = dict(cfg["adamw"])
    ad_rank = {**ad, **(cfg["ranking_adamw"] or {})}
    channels = list(cal.channels)
    C = len(channels)

    def emg_driven(keep: list[str], settings: dict = ad):
        res = GradientCalibrator(restarts=1, **settings).calibrate(
            model, mask_channels(cal, keep), obj, space=space)
        x = res.info["x"]
        p_cal = res.predicted["calibration"]["torque"]
        p_held = predict(model, space, x, mask_channels(held, keep))["torque"]
        return res, p_cal, p_held

    ref, ref_cal, ref_held = emg_driven(channels)
    rows: list[dict] = [{"method": "emg-driven", "removed": [], "n_recorded": C,
                         **{f"cal_{k}": v for k, v in _scores(cal.torque, ref_cal).items()},
                         **{f"held_{k}": v for k, v in _scores(held.torque, ref_held).items()},
                         "distance": 0.0, "wall_time": ref.wall_time}]
    log(f"all channels: calibration RMSE {rows[0]['cal_rmse']:.4f}, held RMSE "
        f"{rows[0]['held_rmse']:.4f} ({ref.wall_time:.1f} s)")
    # 3. ranking by single-channel removal (unless the scenario gives the order)
    t_rank = time.perf_counter()
    single = {}
    for c in (channels if cfg["removal_order"] is None else []):
        res, p_cal, _ = emg_driven([k for k in channels if k != c], ad_rank)
        single[c] = _scores(cal.torque, p_cal)["rmse"]
        log(f"ranking: without {c}: calibration RMSE {single[c]:.4f}")
    t_rank = time.perf_counter() - t_rank
    if cfg["removal_order"] is None:
        order = sorted(channels, key=lambda c: single[c])
    else:
        order = list(cfg["removal_order"])
    n_max = min(C - 1, len(order))
    if cfg["max_removed"] is not None:
        n_max = min(int(cfg["max_removed"]), n_max)
    for k in range(1, n_max + 1):
        removed = order[:k]
        keep = [c for c in channels if c not in removed]
        rem_idx = [channels.index(c) for c in removed]
        res, p_cal, p_held = emg_driven(keep)
        rows.append({"method": "emg-driven", "removed": removed, "n_recorded": C - k,
                     **{f"cal_{m}": v for m, v in _scores(cal.torque, p_cal).items()},
                     **{f"held_{m}": v for m, v in _scores(held.torque, p_held).items()},
                     "distance": _distance(space, ref.params, res.params),
                     "wall_time": res.wall_time})
        log(f"{k} removed: emg-driven held RMSE {rows[-1]['held_rmse']:.4f}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            hyb = SynergyHybridCalibrator(recorded=keep, **cfg["synergy"], **ad).calibrate(
                model, cal, obj, space=space)
        rec = np.array(hyb.info["recorded"])
        held_exc = extrapolate_excitations(held.excitation, rec, hyb.info["weights"])
        p_held_h = predict(model, space, hyb.info["x"],
                           replace(held, excitation=held_exc))["torque"]
        syn = np.asarray(hyb.info["excitation"])[..., rem_idx]
        s_rmse, s_r2 = _synth_scores(np.asarray(cal.excitation)[..., rem_idx], syn)
        h_rmse, h_r2 = _synth_scores(np.asarray(held.excitation)[..., rem_idx],
                                     np.asarray(held_exc)[..., rem_idx])
        row = {"method": "synergy-hybrid", "removed": removed, "n_recorded": C - k,
               **{f"cal_{m}": v for m, v in _scores(
                   cal.torque, hyb.predicted["calibration"]["torque"]).items()},
               **{f"held_{m}": v for m, v in _scores(held.torque, p_held_h).items()},
               "distance": _distance(space, ref.params, hyb.params),
               "wall_time": hyb.wall_time, "n_synergies": hyb.info["n_synergies"],
               "vaf": hyb.info["vaf"],
               "synth_vs_recorded_rmse": s_rmse, "synth_vs_recorded_r2": s_r2,
               "held_synth_vs_recorded_rmse": h_rmse, "held_synth_vs_recorded_r2": h_r2}
        if true_exc is not None:
            row["synth_vs_true_rmse"], row["synth_vs_true_r2"] = _synth_scores(
                true_exc[..., rem_idx], syn)
        rows.append(row)
        log(f"{k} removed: synergy-hybrid held RMSE {row['held_rmse']:.4f} "
            f"({row['n_synergies']} synergies)")
    results = {"config": cfg, "channels": channels, "single_removal_rmse": single,
               "removal_order": order, "rows": rows,
               "n_calibration_trials": int(cal.excitation.shape[0]),
               "n_held_out_trials": int(held.excitation.shape[0]),
               "samples_per_trial": int(cal.excitation.shape[1]), "fs": float(cal.fs),
               "wall_time_data": t_data, "wall_time_ranking": t_rank,
               "wall_time": time.perf_counter() - t_start}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    return results


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    """``report.md`` (table) and ``fig5.png`` (001 Fig. 5-style panels) under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(out)
    rows = results["rows"]
    cfg = results["config"]
    kind = cfg["plant"].get("kind", "ankle")
    panels = (("cal_rmse", "moment RMSE (Nm), calibration"), ("cal_r2", "R$^2$, calibration"),
              ("held_rmse", "moment RMSE (Nm), held out"), ("held_r2", "R$^2$, held out"),
              ("distance", "parameter distance (range)"))
    fig, axs = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, (key, label) in zip(axs, panels):
        for meth, col in (("emg-driven", "tab:blue"), ("synergy-hybrid", "tab:red")):
            rr = sorted([r for r in rows if r["method"] == meth],
                        key=lambda r: -r["n_recorded"])
            ax.plot([r["n_recorded"] for r in rr], [r[key] for r in rr], "o-", color=col,
                    label=meth)
        ax.invert_xaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("recorded channels")
        ax.set_title(label, fontsize=9)
    axs[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig5.png", dpi=120)
    plt.close(fig)
    n_cal = results.get("n_calibration_trials", 1)
    n_held = results.get("n_held_out_trials")
    lines = [f"# Channel removal ({cfg['name']}, plant: {kind})", ""]
    if cfg.get("description"):
        lines += [cfg["description"].strip(), ""]
    if n_held is not None:
        lines += [f"{n_cal} calibration trial(s), {n_held} held-out trial(s), "
                  f"{results['samples_per_trial']} samples each at {results['fs']:g} Hz; "
                  f"wall time {results['wall_time']:.0f} s (ranking "
                  f"{results['wall_time_ranking']:.0f} s).", ""]
    lines += [
        "Removal order " + ("(lowest single-removal RMSE first)" if results["single_removal_rmse"]
                            else "(given by the scenario)")
        + f": {results['removal_order']}", "",
        "RMSE and R2: joint moments, averaged over trials and DoFs; param dist: mean "
        "|p - p_all| / allowed range over the calibrated parameters (001 Sec. III-D). 001 "
        "scored synergy-hybrid calibration on its calibration trials only (001 Discussion); "
        "the held-out columns are ours (held-out unrecorded excitations extrapolated from the "
        "recorded ones with the calibrated weightings). synth r2: synthesized vs withheld "
        "excitations of the calibration trials (rec: recorded, true: simulation input; "
        "held: extrapolated vs withheld on the held-out trials).", "",
        "| method | recorded | last removed | cal RMSE | cal R2 | held RMSE | held R2 | "
        "param dist | synth r2 (rec) | synth r2 (true) | synth r2 (held) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n_recorded']} | {(r['removed'] or ['-'])[-1]} | "
            f"{r['cal_rmse']:.3f} | {r['cal_r2']:.3f} | {r['held_rmse']:.3f} | "
            f"{r['held_r2']:.3f} | {r['distance']:.3f} | "
            f"{r.get('synth_vs_recorded_r2', float('nan')):.2f} | "
            f"{r.get('synth_vs_true_r2', float('nan')):.2f} | "
            f"{r.get('held_synth_vs_recorded_r2', float('nan')):.2f} |")
    if kind == "arm":
        lines += ["", "Arm: the recorded EMG is the noise-free EMG that drove the simulation, "
                  "so the 'rec' and 'true' columns coincide."]
    lines += ["", "![001 Fig. 5-style panels](fig5.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return {"report": out / "report.md", "figure": out / "fig5.png"}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.studies.channel_removal SCENARIO --out DIR``."""
    return study_main(argv, __doc__.split("\n")[0],
                      lambda scenario, out: run_study(scenario, out, progress=True), write_report)


if __name__ == "__main__":
    raise SystemExit(main())
