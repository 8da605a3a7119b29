"""Markdown + self-contained HTML report of the ankle torque + stiffness study.

Reads ``results.json`` written by :func:`bench.studies.ankle.run_study` and writes
``report.md``, ``report.html`` (figures embedded) and ``figures/*.png``:

* Table 1 of 000: per subject, median (IQR) over the blind cycles of the nRMSE and r2 of
  torque and stiffness, "Torque only" and "Torque and stiffness" rows, next to 000's values;
* the second test: E_tau and E_tau+K of every (alpha, beta) combination with the 1.44 x min
  acceptance (000 Fig. 5) as an alpha-beta error map, the counts of accepted combinations,
  the spread of the calibrated parameters (000 Fig. 6 box plots, IQR as % of the permitted
  range) and Cr1/Cr2 to the true parameters;
* the third test (unperturbed vs perturbed stiffness);
* wall times and the optimizer used.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import _html_table, _md_table

__all__ = ["write_study_report"]

_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table{border-collapse:collapse;margin:1em 0;}td,th{border:1px solid #bbb;"
        "padding:3px 7px;text-align:right;}th{background:#eee;}img{max-width:100%;}")
_ROWS = (("torque_only", "Torque only"), ("torque_stiffness", "Torque and stiffness"))
_METRICS = ("nrmse_torque", "nrmse_stiffness", "r2_torque", "r2_stiffness")


def _f(x: float, nd: int = 2) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _mi(v: Any) -> str:
    return f"{_f(v[0])} ({_f(v[1])})"


def _ref_cell(ref: dict | None, subject: int, row: str, metric: str) -> str:
    if not ref:
        return ""
    s = ref.get("subjects", {}).get(str(subject)) or ref.get("subjects", {}).get(subject)
    if not s or row not in s:
        return ""
    r = s[row]
    iqr = r.get("iqr", {}).get(metric)
    return f"{_f(r[metric])}" + (f" ({_f(iqr)})" if iqr is not None else "")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _error_map(runs: list[dict], alphas: list[float], betas: list[float]) -> bytes:
    """alpha-beta maps of E_tau and E_tau+K per subject; accepted cells marked (000 Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 1, 5.2), squeeze=False)
    for j, run in enumerate(runs):
        for i, (key, acc_key, color, label) in enumerate(
            (("E_tau", "accepted_torque", "red", "E_tau"),
             ("E_tau_K", "accepted_total", "blue", "E_tau+K"))):
            grid = np.full((len(betas), len(alphas)), np.nan)
            acc = np.zeros_like(grid, dtype=bool)
            for (a, b), e, ok in zip(run["combos"], run[key], run[acc_key]):
                grid[betas.index(b), alphas.index(a)] = e
                acc[betas.index(b), alphas.index(a)] = ok
            ax = axes[i, j]
            im = ax.imshow(np.log10(grid), origin="lower", cmap="Greys",
                           extent=(-0.1, 1.1, -0.1, 1.1), aspect="auto")
            yy, xx = np.nonzero(acc)
            ax.scatter(np.asarray(alphas)[xx], np.asarray(betas)[yy], s=30,
                       facecolors="none", edgecolors=color)
            ax.set_title(f"S{run['subject']} {label}", fontsize=9)
            ax.set_xlabel("alpha", fontsize=8)
            if j == 0:
                ax.set_ylabel("beta", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.7, label="log10")
    fig.suptitle("Fitting errors per (alpha, beta); circles: <= 1.44 x min (000 Fig. 5)")
    return _png(fig)


def _boxplots(runs: list[dict], names: list[str], x0: np.ndarray,
              lower: np.ndarray, upper: np.ndarray) -> bytes:
    """000 Fig. 6: calibrated parameters of the 35 best calibrations per subject; true values
    as crosses; l_opt and l_ts normalized by their initial (generic) values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = ("l_opt", "l_ts", "strength", "shape")
    fig, axes = plt.subplots(len(blocks), 1, figsize=(11, 11))
    for ax, blk in zip(axes, blocks):
        idx = [k for k, nm in enumerate(names) if nm.startswith(blk + "[")]
        norm = x0[idx] if blk in ("l_opt", "l_ts") else np.ones(len(idx))
        pos, data, truth, labels = [], [], [], []
        width = len(runs) + 1
        for p, k in enumerate(idx):
            for j, run in enumerate(runs):
                xb = np.asarray(run["x_best"])[:, k] / norm[p]
                pos.append(p * width + j)
                data.append(xb)
                truth.append(run["x_true"][k] / norm[p])
            labels.append(names[k][len(blk) + 1:-1])
        ax.boxplot(data, positions=pos, widths=0.7, showfliers=False)
        ax.plot(pos, truth, "rx", label="true")
        ax.axhline(lower[idx[0]] / norm[0], color="0.7", ls=":")
        ax.axhline(upper[idx[0]] / norm[0], color="0.7", ls=":")
        ax.set_xticks([p * width + (len(runs) - 1) / 2 for p in range(len(idx))])
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(blk + (" / initial" if blk in ("l_opt", "l_ts") else ""), fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle("Calibrated parameters over all (alpha, beta), one box per subject (000 Fig. 6)")
    return _png(fig)


def _profiles(runs: list[dict]) -> bytes:
    """000 Fig. 3: mean blind-trial torque and stiffness per subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 1, 5), squeeze=False)
    for j, run in enumerate(runs):
        for i, (ref, key, unit) in enumerate((("torque_ref", "torque", "Nm"),
                                              ("stiffness_ref", "stiffness", "Nm/rad"))):
            ax = axes[i, j]
            for row, color in (("torque_only", "red"), ("torque_stiffness", "green")):
                sel = run["selected"].get(row)
                if sel is None:
                    continue
                prof = sel["mean_profiles"]
                x = np.linspace(0, 100, len(prof[ref]))
                if row == "torque_stiffness":
                    ax.plot(x, prof[ref], color="0.5", lw=3, label="reference")
                    if key == "stiffness":
                        ax.plot(x, prof["stiffness_true"], "k:", label="true K_J")
                ax.plot(x, prof[key], color=color, label=row)
            ax.set_title(f"S{run['subject']} {key} [{unit}]", fontsize=9)
            ax.set_xlabel("% cycle", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Blind-trial mean profiles: torque only (red), torque and stiffness (green)")
    return _png(fig)


def write_study_report(out: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/`` for a study directory.

    Returns
    -------
    dict
        Paths of ``md``, ``html`` and each figure.
    """
    out = Path(out)
    res = json.loads((out / "results.json").read_text())
    cfg = res["config"]
    ref = cfg.get("reference")
    names = res["parameter_names"]
    x0 = np.asarray(res["x0"])
    lower, upper = np.asarray(res["lower"]), np.asarray(res["upper"])
    alphas = list(cfg["calibration"]["alpha"])
    betas = list(cfg["calibration"]["beta"])
    tm = res["timing"]
    sources = list(dict.fromkeys(r["stiffness_source"] for r in res["runs"]))
    n_cal = len(res["runs"][0]["combos"]) * cfg["calibration"]["repetitions"] if res["runs"] else 0
    md: list[str] = []
    hp: list[str] = []

    def para(text: str) -> None:
        md.extend([text, ""])
        hp.append(f"<p>{html.escape(text)}</p>")

    def head(text: str, level: int = 2) -> None:
        md.extend(["#" * level + " " + text, ""])
        hp.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def table(hd: list[str], rows: list[list[str]]) -> None:
        md.extend([_md_table(hd, rows), ""])
        hp.append(_html_table(hd, rows))

    figs: dict[str, bytes] = {}

    def figure(key: str, png: bytes, caption: str) -> None:
        figs[key] = png
        md.extend([f"![{caption}](figures/{key}.png)", ""])
        b64 = base64.b64encode(png).decode()
        hp.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"
                  f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    title = f"impbench study: {cfg['name']}"
    para(cfg.get("description") or "")
    para(f"{len(res['subjects'])} synthetic subjects; stiffness references: "
         f"{', '.join(sources)}; {n_cal} calibrations per subject and reference "
         f"({len(res['runs'][0]['combos']) if res['runs'] else 0} (alpha, beta) combinations x "
         f"{cfg['calibration']['repetitions']} start points), calibrated model tendon: "
         f"{cfg['model']['tendon']}.")
    para(f"Optimizer: {res['environment']['optimizer']} (jax {res['environment']['jax']}, "
         f"{res['environment']['devices']}). 000 calibrated with simulated annealing, 41-80 min "
         "per calibration on 64 cores. This study runs every calibration with AdamW, batched "
         "by vmap; our compiled annealing needs about 1.6-2.2 s per calibration of this "
         "problem on one core, so the study's calibrations would take roughly 50 min with it. "
         "benchmarks/calibration.py compares the two optimizers on the same problems.")
    para(f"Wall time: total {tm['total_s']:.0f} s (simulation {tm['simulation_s']:.0f} s, SDS "
         f"{tm['sds_s']:.0f} s, calibration {tm['calibration_s']:.0f} s, evaluation "
         f"{tm['evaluation_s']:.0f} s).")
    for source in sources:
        runs = [r for r in res["runs"] if r["stiffness_source"] == source]
        label = "SDS reference stiffness" if source == "sds" else "true K_J (ablation)"
        head(f"First test: blind estimation, {label} (000 Table 1)")
        para("Median (IQR) over the blind cycles; stiffness scored against the same reference "
             "kind used in calibration" + (f"; 000's values ({ref['source']}) beside ours."
                                           if ref else "."))
        hd = ["subject", "model", "nRMSE torque", "nRMSE stiffness", "r2 torque",
              "r2 stiffness", "nRMSE K vs true", "(alpha, beta)", "Cr2 %"]
        if ref:
            hd += [f"000: {m}" for m in _METRICS]
        rows = []
        for run in runs:
            for key, name in _ROWS:
                s = run["selected"].get(key)
                if s is None:
                    continue
                row = [str(run["subject"]), name] + [_mi(s[m]) for m in _METRICS]
                row += [_mi(s["nrmse_stiffness_true"]), f"({s['combo'][0]:.1f}, "
                        f"{s['combo'][1]:.1f})", _f(s["cr2"], 1)]
                if ref:
                    row += [_ref_cell(ref, run["subject"], key, m) for m in _METRICS]
                rows.append(row)
        for key, name in _ROWS:
            sel = [r["selected"][key] for r in runs if r["selected"].get(key)]
            if sel:
                rows.append(["median", name] + [_f(float(np.median([s[m][0] for s in sel])))
                                                for m in _METRICS]
                            + [_f(float(np.median([s["nrmse_stiffness_true"][0] for s in sel]))),
                               "", _f(float(np.median([s["cr2"] for s in sel])), 1)]
                            + ([""] * len(_METRICS) if ref else []))
        table(hd, rows)
        head(f"Second test: alpha-beta sweep, {label} (000 Fig. 5-6)", 3)
        hd = ["subject", "accepted E_tau", "accepted E_tau+K", "min E_tau", "min E_tau+K",
              "IQR l_opt %", "IQR l_ts %", "IQR strength %", "IQR shape %",
              "median Cr1 %", "median Cr2 %"]
        if ref:
            hd += ["000: accepted E_tau", "000: accepted E_tau+K"]
        rows = []
        for run in runs:
            sp = run["spread_percent"]
            row = [str(run["subject"]), str(sum(run["accepted_torque"])),
                   str(sum(run["accepted_total"])), f"{min(run['E_tau']):.3g}",
                   f"{min(run['E_tau_K']):.3g}", _f(sp["l_opt"], 0), _f(sp["l_ts"], 0),
                   _f(sp["f_max"], 0), _f(sp["shape"], 0), _f(float(np.median(run["cr1"])), 1),
                   _f(float(np.median(run["cr2"])), 1)]
            if ref:
                s = str(run["subject"])
                row += [str(ref.get("accepted_torque", {}).get(s, "")),
                        str(ref.get("accepted_total", {}).get(s, ""))]
            rows.append(row)
        table(hd, rows)
        if ref and ref.get("parameter_iqr_percent"):
            para("000: median IQR of the calibrated values as % of the permitted range: "
                 + ", ".join(f"{k} {v:g} %" for k, v in ref["parameter_iqr_percent"].items())
                 + "; ours: IQR over the combinations with accepted E_tau, median over MTUs.")
        third = [r for r in runs if r.get("third_test")]
        if third:
            head(f"Third test: unperturbed vs perturbed stiffness, {label}", 3)
            t0 = third[0]["third_test"]
            para(f"Torque and stiffness model; paired t-test along the cycle ({t0['method']}, "
                 f"alpha = {cfg['third_test']['alpha']}) over {t0['cycles']} cycle pairs. "
                 "000: RMSE median 0.77 Nm/rad, r2 median 0.67, 15-57 % of the cycle different.")
            table(["subject", "RMSE [Nm/rad]", "r2", "% cycle significant", "threshold |t|"],
                  [[str(r["subject"]), _f(r["third_test"]["rmse"], 3),
                    _f(r["third_test"]["r2"]),
                    _f(100 * r["third_test"]["significant_share"], 0),
                    _f(r["third_test"]["threshold"])] for r in third])
        if runs:
            figure(f"error_map_{source}", _error_map(runs, alphas, betas),
                   f"alpha-beta error map ({label})")
            figure(f"parameters_{source}", _boxplots(runs, names, x0, lower, upper),
                   f"calibrated parameters ({label})")
            figure(f"profiles_{source}", _profiles(runs), f"blind mean profiles ({label})")
    head("Calibration cost")
    table(["subject", "reference", "calibrations", "evaluations", "wall [s]",
           "median steps"],
          [[str(r["subject"]), r["stiffness_source"], str(np.size(r["loss"])),
            str(r["evaluations"]), _f(r["calibration_wall_time_s"], 1),
            str(int(np.median(r["steps"])))] for r in res["runs"]])
    (out / "figures").mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    for key, png in figs.items():
        paths[key] = out / "figures" / f"{key}.png"
        paths[key].write_bytes(png)
    paths["md"] = out / "report.md"
    paths["md"].write_text("\n".join([f"# {title}", "", *md]))
    paths["html"] = out / "report.html"
    paths["html"].write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>" + "".join(hp)
        + "</body></html>")
    return paths
