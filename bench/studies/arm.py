"""002 Sec. IV study: arm identification with (M2) and without (M1) deep-muscle EMG.

Protocol (002 Sec. IV-A/C): for each plant seed, each of two movements
(:class:`plants.arm.ArmPlant`, ``"reach"`` and ``"flexion_pronation"``) and each of ``n_guesses``
initial guesses ``pi_0 ~ N(pi_gt, 0.1 pi_gt)`` (002:Eq.24,
:func:`plants.arm.truth.sample_initial_guess`; one draw on the M2 vector, M1 takes its entries),
identify the parameters with :class:`~estimators.calibration.deep_lsq.DeepMuscleIdentifier`
(M1 and M2, ``epochs`` + ``slack_epochs``, 002: 10K + 2K). The guesses of one (seed, movement,
method) run as one vmapped computation (:meth:`DeepMuscleIdentifier.fit_many`).

Scores (002:Eq.22-23, :func:`plants.arm.truth.score`; zero-truth entries left out):

* ``Cr1``, ``Cr2``, ``Cr2m`` over the 80 parameters of M1 for both methods -- 002 Sec. IV:
  "only the identifiable model parameters of M1 were used for the comparison";
* ``Cr2_own``: Cr2 over each method's own vector (115 for M2);
* ``Cr2_base``: Cr2 with the 30 raw inertial parameters replaced by their identifiable base
  combinations (:func:`plants.arm.truth.base_inertial_map`, as 002 Fig. 5 does with its 17
  dynamic coefficients), muscle and shared entries unchanged;
* ``Cr2_we``: Cr2 over the well-excited M1 parameters of the record
  (:func:`~estimators.calibration.deep_lsq.excitation_analysis` at the truth, Gauss-Newton
  Schur-complement curvature ``>= excitation_threshold`` times the largest).

Per method: median and interquartile range over all runs; M1 vs M2: Wilcoxon signed-rank test
paired on (seed, movement, guess) (:func:`scipy.stats.wilcoxon`). Curves: Cr1 and the Cr2
variants every ``record_every`` epochs (002 Fig. 4 left, median and quartiles); per-parameter
percentage errors (002 Fig. 5) with each parameter's structural identifiability without deep
EMG (002 Sec. III-D, :func:`plants.arm.truth.identifiable_mask`) and how often it was well
excited.

Run: ``python -m bench.studies.arm scenarios/arm-deep-muscle.yaml --out DIR``; writes
``results.json``, ``report.md``, ``fig4.png`` and ``fig5.png``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ScenarioError
from bench.studies._common import merge_defaults, read_scenario, study_main

__all__ = ["load_config", "main", "run_study", "scores", "write_report"]

_DEFAULTS: dict[str, Any] = {
    "name": "arm-deep-muscle",
    "seeds": [0],
    "plant": {"duration": 5.0, "fs": 100.0},
    "movements": ["reach", "flexion_pronation"],
    "methods": ["M1", "M2"],
    "n_guesses": 5,
    "rel_std": 0.1,
    "excitation_threshold": 1e-3,
    "identifier": {"epochs": 1000, "slack_epochs": 200, "learning_rate": 1e-2,
                   "record_every": 10},
}
_METRICS = ("Cr1", "Cr2", "Cr2m", "Cr2_own", "Cr2_base", "Cr2_we")


def load_config(path: str | Path | dict) -> dict:
    """Scenario dict with defaults filled in (unknown top-level keys are an error).

    ``seed: s`` (older scenarios) is read as ``seeds: [s]``.
    """
    cfg = read_scenario(path, "arm-deep-muscle", set(_DEFAULTS) | {"seed"})
    if "seed" in cfg:
        if "seeds" in cfg:
            raise ScenarioError("give either 'seed' or 'seeds', not both")
        cfg["seeds"] = [cfg.pop("seed")]
    out = merge_defaults(_DEFAULTS, cfg)
    seeds = out["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ScenarioError(f"'seeds' must be a non-empty list of ints; got {seeds!r}")
    return out


def scores(names: list[str], estimate: np.ndarray, fs: float,
           well_excited: np.ndarray | None = None) -> dict[str, float]:
    """Every score of one estimate (module docstring), percent.

    Parameters
    ----------
    names : list of str
        Layout of ``estimate`` (M1 or M2 vector of :func:`plants.arm.truth.parameter_vector`).
    estimate : ndarray, shape (len(names),)
    fs : float, Hz
    well_excited : ndarray of bool, shape (80,), optional
        Over the M1 vector; without it ``Cr2_we`` is NaN.

    Returns
    -------
    dict with ``Cr1, Cr2, Cr2m`` (M1 set), ``Cr2_own``, ``Cr2_base``, ``Cr2_we``.
    """
    from bench.metrics import cr2
    from plants.arm.truth import base_inertial_map, parameter_vector, score

    names1, gt1, mus1 = parameter_vector("M1", fs)
    _, gt_own, mus_own = parameter_vector("M2" if len(names) > len(names1) else "M1", fs)
    e = np.asarray(estimate, dtype=float)
    e1 = e[[names.index(n) for n in names1]]
    s = score(names1, gt1, e1, mus1)
    out = {k: s[k] for k in ("Cr1", "Cr2", "Cr2m")}
    out["Cr2_own"] = score(names, gt_own, e, mus_own)["Cr2"]
    P = base_inertial_map()
    t_b = np.concatenate([P @ gt1[:30], gt1[30:]])
    e_b = np.concatenate([P @ e1[:30], e1[30:]])
    k = t_b != 0
    out["Cr2_base"] = cr2(t_b[k], e_b[k])
    if well_excited is not None and np.any(well_excited):
        w = np.asarray(well_excited, dtype=bool)
        out["Cr2_we"] = cr2(gt1[w], e1[w])
    else:
        out["Cr2_we"] = float("nan")
    return out


def run_study(config: str | Path | dict, out: str | Path) -> dict:
    """Run every (seed, movement, method) batch of guesses; writes ``results.json``."""
    from estimators.calibration.deep_lsq import DeepMuscleIdentifier, excitation_analysis
    from plants.arm import ArmPlant
    from plants.arm.truth import identifiable_mask, parameter_vector, sample_initial_guess

    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs, records = [], []
    for seed in cfg["seeds"]:
        rng = np.random.default_rng(seed)
        for mv in cfg["movements"]:
            t_rec = time.perf_counter()
            data = ArmPlant(movement=mv, **cfg["plant"]).simulate(rng)
            fs = float(data.fs)
            names2, gt2, _ = parameter_vector("M2", fs)
            guesses = sample_initial_guess(gt2, rng, cfg["rel_std"], size=cfg["n_guesses"])
            exc = excitation_analysis(data, "M1", threshold=cfg["excitation_threshold"])
            we = exc["well_excited"]
            records.append({"seed": seed, "movement": mv, "names": exc["names"],
                            "relative_excitation": exc["relative"].tolist(),
                            "well_excited": we.tolist(),
                            "eigenvalues": exc["eigenvalues"].tolist(),
                            "setup_s": time.perf_counter() - t_rec})
            for method in cfg["methods"]:
                names, gt, _ = parameter_vector(method, fs)
                P0 = guesses[:, [names2.index(n) for n in names]]
                t_b = time.perf_counter()
                res = DeepMuscleIdentifier(method=method, **cfg["identifier"]).fit_many(data, P0)
                wall = time.perf_counter() - t_b
                keep = gt != 0
                for g, r in enumerate(res):
                    curves = [scores(names, p, fs, we) for p in r.trajectory]
                    pct = np.full(gt.size, np.nan)
                    pct[keep] = 100 * np.abs(r.estimate[keep] - gt[keep]) / np.abs(gt[keep])
                    every = max(1, cfg["identifier"].get("record_every", 10))
                    runs.append({
                        "seed": seed, "movement": mv, "guess": g, "method": method,
                        "initial": scores(names, r.initial, fs, we),
                        "final": scores(names, r.estimate, fs, we),
                        "curves": {k: [c[k] for c in curves] for k in _METRICS},
                        "epochs": r.snapshot_epochs.tolist(),
                        "loss": r.loss[::every].tolist(),
                        "initial_loss": r.info["initial_loss"],
                        "final_loss": r.info["final_loss"],
                        "names": names, "percent_error": pct.tolist(),
                        "identifiable": identifiable_mask(names).tolist(),
                        "epoch_time": r.epoch_time,
                        "batch_epoch_time": r.info["batch_epoch_time"],
                        "batch_wall_time": wall, "batch_size": len(res),
                    })
                f = [x["final"] for x in runs[-len(res):]]
                print(f"seed {seed} {mv} {method}: Cr2 median "
                      f"{np.median([x['Cr2'] for x in f]):.2f} % (base "
                      f"{np.median([x['Cr2_base'] for x in f]):.2f}, well-excited "
                      f"{np.median([x['Cr2_we'] for x in f]):.2f}), "
                      f"{res[0].epoch_time * 1e3:.2f} ms/epoch/guess, {wall:.0f} s", flush=True)
    results = {"config": cfg, "runs": runs, "records": records,
               "wall_time": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(results, default=float))
    return results


def _iqr(v) -> str:
    v = np.asarray(v, dtype=float)
    q1, m, q3 = np.nanpercentile(v, [25, 50, 75])
    return f"{m:.2f} [{q1:.2f}, {q3:.2f}]"


def _paired_tests(runs: list[dict]) -> dict[str, dict]:
    """Wilcoxon signed-rank M1 vs M2 on each final score, paired on (seed, movement, guess)."""
    from scipy.stats import wilcoxon

    key = lambda r: (r["seed"], r["movement"], r["guess"])  # noqa: E731
    m1 = {key(r): r["final"] for r in runs if r["method"] == "M1"}
    m2 = {key(r): r["final"] for r in runs if r["method"] == "M2"}
    common = sorted(set(m1) & set(m2))
    out = {}
    for k in _METRICS:
        a = np.array([m1[c][k] for c in common], dtype=float)
        b = np.array([m2[c][k] for c in common], dtype=float)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 2 or np.all(a[ok] == b[ok]):
            out[k] = {"n": int(ok.sum()), "p": float("nan"), "median_diff": float("nan")}
            continue
        res = wilcoxon(a[ok], b[ok])
        out[k] = {"n": int(ok.sum()), "p": float(res.pvalue),
                  "median_diff": float(np.median(a[ok] - b[ok])),
                  "m1_better": int(np.sum(a[ok] < b[ok]))}
    return out


def _param_table(runs: list[dict], records: list[dict]) -> list[str]:
    """Median final % error per parameter and method, with identifiability (002 Sec. III-D)."""
    by = {}
    for r in runs:
        for n, e, ident in zip(r["names"], r["percent_error"], r["identifiable"]):
            by.setdefault(n, {"identifiable": ident}).setdefault(r["method"], []).append(e)
    exc = {}
    for rec in records:
        for n, w, rel in zip(rec["names"], rec["well_excited"], rec["relative_excitation"]):
            exc.setdefault(n, []).append((w, rel))
    lines = ["| parameter | identifiable without deep EMG (002 III-D) | well excited "
             "(records) | median rel. curvature | M1 median % err | M2 median % err |",
             "|---|---|---|---|---|---|"]
    for n, d in by.items():
        cells = []
        for m in ("M1", "M2"):
            v = np.asarray(d.get(m, []), dtype=float)
            ok = v.size and np.isfinite(v).any()
            cells.append(f"{np.nanmedian(v):.2f}" if ok else "-")
        ident = "yes" if d["identifiable"] else "no"
        if n in exc:
            w = sum(x[0] for x in exc[n])
            we = f"{w}/{len(exc[n])}"
            rel = f"{np.median([x[1] for x in exc[n]]):.1e}"
        else:
            we, rel = "-", "-"
        lines.append(f"| {n} | {ident} | {we} | {rel} | {cells[0]} | {cells[1]} |")
    return lines


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    """``report.md``, ``fig4.png`` (Cr1 / Cr2 curves, final boxes) and ``fig5.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    runs = results["runs"]
    records = results.get("records", [])
    cfg = results["config"]
    cols = {"M1": "tab:red", "M2": "tab:green"}
    ms = [m for m in ("M1", "M2") if any(r["method"] == m for r in runs)]
    fig, axs = plt.subplots(1, 5, figsize=(19, 3.4))
    for m in ms:
        rr = [r for r in runs if r["method"] == m]
        ep = rr[0]["epochs"]
        for ax, k in zip(axs[:3], ("Cr1", "Cr2", "Cr2_base")):
            C = np.array([r["curves"][k] for r in rr], dtype=float)
            q1, med, q3 = np.nanpercentile(C, [25, 50, 75], axis=0)
            ax.plot(ep, med, color=cols[m], label=m)
            ax.fill_between(ep, q1, q3, color=cols[m], alpha=0.3)
    for ax, k in zip(axs[:3], ("Cr$_1$ (%)", "Cr$_2$ (%)", "Cr$_2$, base bone (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(k)
        ax.legend()
    for ax, k, t in ((axs[3], "Cr2", "final Cr$_2$ (%)"), (axs[4], "Cr2m", "final Cr$_2^m$ (%)")):
        ax.boxplot([[r["final"][k] for r in runs if r["method"] == m] for m in ms],
                   tick_labels=ms)
        ax.set_title(t)
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

    idc = cfg["identifier"]
    n_rec = len({(r["seed"], r["movement"]) for r in runs})
    lines = [
        f"# Arm deep-muscle identification ({cfg['name']})", "",
        f"Plant seeds {cfg['seeds']} x movements {cfg['movements']} x {cfg['n_guesses']} "
        f"initial guesses (002:Eq.24, rel. std {cfg['rel_std']}) per method; schedule "
        f"{idc.get('epochs')} + {idc.get('slack_epochs')} epochs (002: 10 000 + 2 000); "
        f"identifier settings {json.dumps(idc)}. Wall time {results['wall_time'] / 60:.1f} min "
        f"for {len(runs)} runs on {n_rec} records.", "",
        "Final scores, median [25 %, 75 %] over runs. Cr1/Cr2/Cr2^m over the 80 parameters of "
        "M1 for both methods (002 Sec. IV); Cr2 own = over each method's own vector; Cr2 base "
        "= inertial parameters as base combinations; Cr2 well-excited = over the M1 "
        f"parameters with relative Gauss-Newton curvature >= {cfg['excitation_threshold']:g} "
        "on the record.", "",
        "| method | runs | Cr1 | Cr2 | Cr2^m | Cr2 own | Cr2 base | Cr2 well-excited | "
        "ms / epoch / guess | batch wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in ms:
        rr = [r for r in runs if r["method"] == m]
        f = {k: [r["final"][k] for r in rr] for k in _METRICS}
        init = {k: [r["initial"][k] for r in rr] for k in _METRICS}
        lines.append(
            f"| {m} | {len(rr)} | " + " | ".join(_iqr(f[k]) for k in _METRICS)
            + f" | {1e3 * np.median([r['epoch_time'] for r in rr]):.2f} | "
            f"{np.median([r['batch_wall_time'] for r in rr]):.0f} |")
    lines.append("| initial guess | " + str(sum(r["method"] == ms[0] for r in runs)) + " | "
                 + " | ".join(_iqr(init[k]) for k in _METRICS) + " | - | - |")
    tests = _paired_tests(runs)
    lines += ["", "Wilcoxon signed-rank test, M1 vs M2 paired on (seed, movement, guess):", "",
              "| score | pairs | median(M1 - M2) | M1 lower in | p |", "|---|---|---|---|---|"]
    for k, t in tests.items():
        lines.append(f"| {k} | {t['n']} | {t['median_diff']:.2f} | {t.get('m1_better', '-')} | "
                     f"{t['p']:.3g} |")
    if records:
        n_we = [int(np.sum(r["well_excited"])) for r in records]
        lines += ["", f"Well-excited M1 parameters per record: {n_we} of "
                  f"{len(records[0]['names'])}."]
    lines += ["", "002 reported 0.77 s per epoch (10K + 2K epochs, 2.5 h per run).", "",
              "![Cr1 / Cr2 curves and final Cr2 / Cr2^m](fig4.png)", "",
              "![per-parameter errors](fig5.png)", "", "## Per parameter", ""]
    lines += _param_table(runs, records)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": out / "report.md", "fig4": out / "fig4.png", "fig5": out / "fig5.png",
            "tests": tests}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.studies.arm SCENARIO --out DIR``."""
    return study_main(argv, __doc__.split("\n")[0], run_study, write_report)


if __name__ == "__main__":
    raise SystemExit(main())
