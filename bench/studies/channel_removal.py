"""Channel-removal study of 001 Sec. III-D: EMG-driven vs synergy-hybrid calibration as
recorded excitations are removed, on the synthetic ankle (:class:`plants.ankle.AnklePlant`).

Protocol (001 Sec. III-D):

1. Simulate ``n_trials`` trials; trial 0 is the calibration trial, the others are held out.
2. EMG-driven calibration (AdamW, :class:`~estimators.calibration.gradient.
   GradientCalibrator`) with every channel: the reference parameters.
3. **Ranking**: one EMG-driven calibration per channel with that channel alone removed; the
   channels are ordered from the lowest to the highest joint-moment RMSE (averaged over DoFs
   and calibration trials).
4. For k = 1 .. C - 1 channels removed in that order: EMG-driven calibration (removed
   channels give no excitation) and synergy-hybrid calibration
   (:class:`~estimators.calibration.synergy.SynergyHybridCalibrator`, 001:Eq.5).
5. Scores per method and k: moment RMSE and R2 on the calibration trial and on the held-out
   trials (EMG-driven: removed channels zero; synergy-hybrid: the held-out trial's unrecorded
   channels synthesized from its recorded ones with the calibrated weightings,
   :func:`~estimators.calibration.synergy.extrapolate_excitations`); the mean absolute
   parameter difference to the all-channels calibration, each parameter normalized by its
   allowed range (001 Sec. III-D); and the synthesized excitations against the withheld
   recorded ones and the true excitations of the simulation (RMSE, r2).

Run: ``python -m bench.studies.channel_removal scenarios/channel-removal.yaml --out DIR``;
writes ``results.json``, ``report.md`` and ``fig5.png`` (001 Fig. 5-style panels).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.errors import ConvergenceWarning, ScenarioError
from bench.metrics import r2, rmse
from bench.types import MuscleData
from estimators.calibration._problem import predict
from estimators.calibration.gradient import GradientCalibrator
from estimators.calibration.objectives import CalibrationSpace, Objective
from estimators.calibration.synergy import (
    SynergyHybridCalibrator,
    extrapolate_excitations,
    mask_channels,
)

__all__ = ["load_config", "main", "run_study", "take_trials", "write_report"]

_DEFAULTS: dict[str, Any] = {
    "name": "channel-removal",
    "seed": 0,
    "plant": {"n_cycles": 2, "n_trials": 2, "perturbed": False, "tendon": "rigid"},
    "model": {"tendon": "rigid", "activation_model": "recursive"},
    "adamw": {"learning_rate": 0.05, "decay_steps": 250, "decay_rate": 0.5,
              "weight_decay": 1.0e-4, "max_steps": 600, "patience": 60, "tol": 1.0e-6},
    "synergy": {"vaf_threshold": 0.85, "w_e": 1.0, "w_s": 0.01, "range_weight": 100.0},
    "max_removed": None,
}


def load_config(path: str | Path | dict) -> dict:
    """Scenario dict with defaults filled in (unknown top-level keys are an error)."""
    cfg = dict(path) if isinstance(path, dict) else yaml.safe_load(Path(path).read_text())
    unknown = set(cfg) - set(_DEFAULTS) - {"description", "reference"}
    if unknown:
        raise ScenarioError(f"channel-removal scenario has unknown keys {sorted(unknown)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _DEFAULTS.items()}
    for k, v in cfg.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


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


def run_study(config: str | Path | dict, out: str | Path) -> dict:
    """Run the study; writes ``results.json`` under ``out`` and returns the results."""
    from plants.ankle import AnklePlant
    from plants.muscle.model import MuscleModel

    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = AnklePlant(**cfg["plant"]).simulate(np.random.default_rng(cfg["seed"]))
    S = data.excitation.shape[0]
    if S < 2:
        raise ScenarioError("the channel-removal study needs plant.n_trials >= 2 (held-out)")
    cal, held = take_trials(data, [0]), take_trials(data, list(range(1, S)))
    model = MuscleModel.from_ankle(data.fs, **cfg["model"])
    space = CalibrationSpace.build(model.base_params, list(model.muscles),
                                   strength_groups=model.strength_groups)
    obj = Objective(alpha=1.0, beta=0.0, penalty="smooth")
    ad = dict(cfg["adamw"])
    channels = list(data.channels)
    C = len(channels)

    def emg_driven(keep: list[str]):
        res = GradientCalibrator(restarts=1, **ad).calibrate(
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
    # 3. ranking by single-channel removal
    single = {}
    for c in channels:
        res, p_cal, _ = emg_driven([k for k in channels if k != c])
        single[c] = _scores(cal.torque, p_cal)["rmse"]
    order = sorted(channels, key=lambda c: single[c])
    n_max = C - 1 if cfg["max_removed"] is None else min(int(cfg["max_removed"]), C - 1)
    true_exc = data.meta.get("true_excitation")
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            hyb = SynergyHybridCalibrator(recorded=keep, **cfg["synergy"], **ad).calibrate(
                model, cal, obj, space=space)
        rec = np.array(hyb.info["recorded"])
        held_exc = extrapolate_excitations(held.excitation, rec, hyb.info["weights"])
        p_held_h = predict(model, space, hyb.info["x"],
                           replace(held, excitation=held_exc))["torque"]
        syn = hyb.info["excitation"][0][:, rem_idx]
        rec_withheld = cal.excitation[0][:, rem_idx]
        row = {"method": "synergy-hybrid", "removed": removed, "n_recorded": C - k,
               **{f"cal_{m}": v for m, v in _scores(
                   cal.torque, hyb.predicted["calibration"]["torque"]).items()},
               **{f"held_{m}": v for m, v in _scores(held.torque, p_held_h).items()},
               "distance": _distance(space, ref.params, hyb.params),
               "wall_time": hyb.wall_time, "n_synergies": hyb.info["n_synergies"],
               "vaf": hyb.info["vaf"],
               "synth_vs_recorded_rmse": rmse(rec_withheld, syn),
               "synth_vs_recorded_r2": float(np.nanmean(
                   [r2(rec_withheld[:, j], syn[:, j]) for j in range(len(rem_idx))]))}
        if true_exc is not None:
            te = np.asarray(true_exc)[0][:, rem_idx]
            row["synth_vs_true_rmse"] = rmse(te, syn)
            row["synth_vs_true_r2"] = float(np.nanmean(
                [r2(te[:, j], syn[:, j]) for j in range(len(rem_idx))]))
        rows.append(row)
    results = {"config": cfg, "channels": channels, "single_removal_rmse": single,
               "removal_order": order, "rows": rows,
               "wall_time": time.perf_counter() - t_start}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    return results


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    """``report.md`` (table) and ``fig5.png`` (001 Fig. 5-style panels) under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = results["rows"]
    panels = (("cal_rmse", "moment RMSE (Nm), calibration"), ("cal_r2", "R$^2$, calibration"),
              ("held_rmse", "moment RMSE (Nm), held out"), ("distance",
                                                            "parameter distance (range)"))
    fig, axs = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, label) in zip(axs, panels):
        for meth, col in (("emg-driven", "tab:blue"), ("synergy-hybrid", "tab:red")):
            rr = sorted([r for r in rows if r["method"] == meth],
                        key=lambda r: -r["n_recorded"])
            ax.plot([r["n_recorded"] for r in rr], [r[key] for r in rr], "o-", color=col,
                    label=meth)
        ax.invert_xaxis()
        ax.set_xlabel("recorded channels")
        ax.set_title(label, fontsize=9)
    axs[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig5.png", dpi=120)
    plt.close(fig)
    lines = [f"# Channel removal ({results['config']['name']})", "",
             f"Removal order (lowest single-removal RMSE first): {results['removal_order']}", "",
             "| method | recorded | removed | cal RMSE | cal R2 | held RMSE | held R2 | "
             "param dist | synth r2 (rec) | synth r2 (true) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n_recorded']} | {', '.join(r['removed']) or '-'} | "
            f"{r['cal_rmse']:.3f} | {r['cal_r2']:.3f} | {r['held_rmse']:.3f} | "
            f"{r['held_r2']:.3f} | {r['distance']:.3f} | "
            f"{r.get('synth_vs_recorded_r2', float('nan')):.2f} | "
            f"{r.get('synth_vs_true_r2', float('nan')):.2f} |")
    lines += ["", "![001 Fig. 5-style panels](fig5.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return {"report": out / "report.md", "figure": out / "fig5.png"}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.studies.channel_removal SCENARIO --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from OUT/results.json without running")
    a = ap.parse_args(argv)
    if a.report_only:
        res = json.loads((Path(a.out) / "results.json").read_text())
    else:
        res = run_study(a.scenario, a.out)
    paths = write_report(res, a.out)
    print(f"wrote {paths['report']} and {paths['figure']} ({res['wall_time']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
