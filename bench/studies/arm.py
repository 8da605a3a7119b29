"""002 Sec. IV study: arm identification with (M2) and without (M1) deep-muscle EMG.

Protocol (002 Sec. IV-A/C): for each of two movements (:class:`plants.arm.ArmPlant`,
``"reach"`` and ``"flexion_pronation"``) and each of ``n_guesses`` initial guesses
``pi_0 ~ N(pi_gt, 0.1 pi_gt)`` (002:Eq.24, :func:`plants.arm.truth.sample_initial_guess`),
identify the parameters with :class:`~estimators.calibration.deep_lsq.DeepMuscleIdentifier`
(M1 and M2, ``epochs`` + ``slack_epochs``, 002: 10K + 2K). Scores: Cr1 curves over the
epochs (002 Fig. 4 left, median and quartiles), final Cr2 and Cr2^m (002 Fig. 4 right,
box plots), per-parameter percentage errors (002 Fig. 5), with each parameter's
identifiability without deep EMG (002 Sec. III-D, :func:`plants.arm.truth.identifiable_mask`)
in the result table. Cr1/Cr2 are taken over the raw parameter vector of each method as in
002 (entries with a zero true value left out, :func:`plants.arm.truth.score`).

Run: ``python -m bench.studies.arm scenarios/arm-deep-muscle.yaml --out DIR``; writes
``results.json``, ``report.md``, ``fig4.png`` and ``fig5.png``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.errors import ScenarioError

__all__ = ["load_config", "main", "run_study", "write_report"]

_DEFAULTS: dict[str, Any] = {
    "name": "arm-deep-muscle",
    "seed": 0,
    "plant": {"duration": 5.0, "fs": 100.0},
    "movements": ["reach", "flexion_pronation"],
    "methods": ["M1", "M2"],
    "n_guesses": 5,
    "rel_std": 0.1,
    "identifier": {"epochs": 1000, "slack_epochs": 200, "learning_rate": 1e-2,
                   "record_every": 10},
}


def load_config(path: str | Path | dict) -> dict:
    """Scenario dict with defaults filled in (unknown top-level keys are an error)."""
    cfg = dict(path) if isinstance(path, dict) else yaml.safe_load(Path(path).read_text())
    unknown = set(cfg) - set(_DEFAULTS) - {"description", "reference"}
    if unknown:
        raise ScenarioError(f"arm-deep-muscle scenario has unknown keys {sorted(unknown)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _DEFAULTS.items()}
    for k, v in cfg.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def run_study(config: str | Path | dict, out: str | Path) -> dict:
    """Run every (movement, guess, method); writes ``results.json`` and returns the results."""
    from estimators.calibration.deep_lsq import DeepMuscleIdentifier
    from plants.arm import ArmPlant
    from plants.arm.truth import identifiable_mask, parameter_vector, sample_initial_guess, score

    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg["seed"])
    t0 = time.perf_counter()
    runs = []
    for mv in cfg["movements"]:
        data = ArmPlant(movement=mv, **cfg["plant"]).simulate(rng)
        fs = float(data.fs)
        # one draw per guess on the full (M2) vector; M1 takes its entries from it
        names2, gt2, _ = parameter_vector("M2", fs)
        guesses = sample_initial_guess(gt2, rng, cfg["rel_std"], size=cfg["n_guesses"])
        for g in range(cfg["n_guesses"]):
            for method in cfg["methods"]:
                names, gt, is_muscle = parameter_vector(method, fs)
                p0 = guesses[g][[names2.index(n) for n in names]]
                res = DeepMuscleIdentifier(method=method, **cfg["identifier"]).fit(data, p0)
                keep = gt != 0
                cr1_curve = [score(names, gt, p, is_muscle)["Cr1"] for p in res.trajectory]
                pct = np.full(gt.size, np.nan)
                pct[keep] = 100 * np.abs(res.estimate[keep] - gt[keep]) / np.abs(gt[keep])
                runs.append({
                    "movement": mv, "guess": g, "method": method,
                    "initial": score(names, gt, p0, is_muscle),
                    "final": score(names, gt, res.estimate, is_muscle),
                    "cr1_curve": cr1_curve, "epochs": res.snapshot_epochs.tolist(),
                    "loss": res.loss[:: max(1, cfg["identifier"].get("record_every", 10))]
                    .tolist(),
                    "names": names, "percent_error": pct.tolist(),
                    "identifiable": identifiable_mask(names).tolist(),
                    "epoch_time": res.epoch_time, "wall_time": res.wall_time,
                })
                print(f"{mv} guess {g} {method}: Cr1 {runs[-1]['initial']['Cr1']:.2f} -> "
                      f"{runs[-1]['final']['Cr1']:.2f} %, Cr2 {runs[-1]['final']['Cr2']:.2f} %, "
                      f"{res.epoch_time * 1e3:.1f} ms/epoch", flush=True)
    results = {"config": cfg, "runs": runs, "wall_time": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(results, default=float))
    return results


def _param_table(runs: list[dict]) -> list[str]:
    """Median final % error per parameter and method, with identifiability (002 Sec. III-D)."""
    by = {}
    for r in runs:
        for n, e, ident in zip(r["names"], r["percent_error"], r["identifiable"]):
            by.setdefault(n, {"identifiable": ident}).setdefault(r["method"], []).append(e)
    lines = ["| parameter | identifiable without deep EMG | M1 median % err | "
             "M2 median % err |", "|---|---|---|---|"]
    for n, d in by.items():
        cells = []
        for m in ("M1", "M2"):
            v = np.asarray(d.get(m, []), dtype=float)
            ok = v.size and np.isfinite(v).any()
            cells.append(f"{np.nanmedian(v):.2f}" if ok else "-")
        ident = "yes" if d["identifiable"] else "no"
        lines.append(f"| {n} | {ident} | {cells[0]} | {cells[1]} |")
    return lines


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    """``report.md``, ``fig4.png`` (Cr1 curves, Cr2 / Cr2^m boxes) and ``fig5.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    runs = results["runs"]
    cols = {"M1": "tab:red", "M2": "tab:green"}
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
    summary = {}
    for m in ("M1", "M2"):
        rr = [r for r in runs if r["method"] == m]
        if not rr:
            continue
        C = np.array([r["cr1_curve"] for r in rr])
        ep = rr[0]["epochs"]
        q1, med, q3 = np.percentile(C, [25, 50, 75], axis=0)
        axs[0].plot(ep, med, color=cols[m], label=m)
        axs[0].fill_between(ep, q1, q3, color=cols[m], alpha=0.3)
        summary[m] = {k: [r["final"][k] for r in rr] for k in ("Cr1", "Cr2", "Cr2m")}
        summary[m]["epoch_time"] = float(np.median([r["epoch_time"] for r in rr]))
    axs[0].set_xlabel("epoch")
    axs[0].set_ylabel("Cr$_1$ (%)")
    axs[0].legend()
    ms = list(summary)
    axs[1].boxplot([summary[m]["Cr2"] for m in ms], tick_labels=ms)
    axs[1].set_title("final Cr$_2$ (%)")
    axs[2].boxplot([summary[m]["Cr2m"] for m in ms], tick_labels=ms)
    axs[2].set_title("final Cr$_2^m$ (%)")
    fig.tight_layout()
    fig.savefig(out / "fig4.png", dpi=120)
    plt.close(fig)
    # 002 Fig. 5: per-parameter % error, M1 vs M2 (parameters of M1)
    names = next((r["names"] for r in runs if r["method"] == "M1"), runs[0]["names"])
    fig, ax = plt.subplots(figsize=(max(8, 0.12 * len(names)), 3.4))
    for k, m in enumerate(ms):
        E = []
        for r in (r for r in runs if r["method"] == m):
            idx = {n: i for i, n in enumerate(r["names"])}
            E.append([r["percent_error"][idx[n]] for n in names])
        E = np.asarray(E, dtype=float)
        x = np.arange(len(names)) + (k - 0.5) * 0.35
        with warnings.catch_warnings():  # zero-truth entries are NaN (not scored)
            warnings.simplefilter("ignore", RuntimeWarning)
            q1, med, q3 = np.nanpercentile(E, [25, 50, 75], axis=0)
        ax.errorbar(x, med, yerr=[med - q1, q3 - med], fmt="o", ms=2, color=cols[m], label=m)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=5)
    ax.set_ylabel("% error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig5.png", dpi=120)
    plt.close(fig)
    lines = [f"# Arm deep-muscle identification ({results['config']['name']})", "",
             "| method | runs | Cr1 final median | Cr2 final median | Cr2^m final median | "
             "ms / epoch |", "|---|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {len(s['Cr1'])} | {np.median(s['Cr1']):.2f} | "
                     f"{np.median(s['Cr2']):.2f} | {np.median(s['Cr2m']):.2f} | "
                     f"{1e3 * s['epoch_time']:.1f} |")
    lines += ["", "002 reported 0.77 s per epoch (10K + 2K epochs, 2.5 h per run).", "",
              "![Cr1 curves and final Cr2 / Cr2^m](fig4.png)", "",
              "![per-parameter errors](fig5.png)", "", "## Per parameter", ""]
    lines += _param_table(runs)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": out / "report.md", "fig4": out / "fig4.png", "fig5": out / "fig5.png"}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.studies.arm SCENARIO --out DIR``."""
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
    print(f"wrote {paths['report']} ({res['wall_time']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
