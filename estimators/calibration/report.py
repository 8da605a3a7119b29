"""Markdown + self-contained HTML report of one ``impbench calibrate`` run.

Sections:

* **Fit**: per trial (calibration and validation) and DoF, nRMSE and r2 (000 Sec. 2.6,
  :func:`bench.metrics.nrmse`, :func:`bench.metrics.r2`) of the joint torque and, where a
  reference stiffness exists, of the joint stiffness, for the calibrated and the initial
  model; figures of the torque and stiffness on each validation trial.
* **Parameters**: initial and calibrated value of every calibrated parameter with its unit,
  its bounds, the relative change and the position inside the bounds (values within 1 % of a
  bound are flagged: the bound, not the data, decided them).
* **Convergence**: the optimizer's history (best objective per temperature stage for
  annealing, loss per step for AdamW), evaluations, wall time, warnings.

Figures are PNGs in ``figures/`` and embedded (base64) in ``report.html``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.htmlkit import html_table as _html_table

__all__ = ["write_calibration_report"]

_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table{border-collapse:collapse;margin:1em 0;}td,th{border:1px solid #bbb;"
        "padding:3px 7px;text-align:right;}th{background:#eee;}td:first-child{text-align:left}"
        "img{max-width:100%;}.warn{color:#a00}")


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "-"
    return f"{v:.{nd}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{nd}f}"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fig_trial(arr: dict, dofs: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = arr["time"]
    D = len(dofs)
    fig, axes = plt.subplots(2, D, figsize=(5 * D + 3, 5.5), squeeze=False)
    for j, d in enumerate(dofs):
        ax = axes[0, j]
        ax.plot(t, arr["torque"][:, j], "k", lw=1.2, label="reference")
        ax.plot(t, arr["torque_initial"][:, j], color="0.6", lw=0.9, ls="--", label="initial")
        ax.plot(t, arr["torque_pred"][:, j], "C0", lw=1.0, label="calibrated")
        ax.set_ylabel(f"{d} torque (Nm)")
        ax.legend(fontsize=7, loc="upper right")
        ax = axes[1, j]
        if arr["stiffness"] is not None:
            ax.plot(t, arr["stiffness"][:, j], "k", lw=1.2, label="reference")
        ax.plot(t, arr["stiffness_initial"][:, j], color="0.6", lw=0.9, ls="--", label="initial")
        ax.plot(t, arr["stiffness_pred"][:, j], "C3", lw=1.0, label="calibrated")
        ax.set_ylabel(f"{d} stiffness (Nm/rad)")
        ax.set_xlabel("time (s)")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{arr['role']} trial {arr['trial']}")
    return _png(fig)


def _fig_history(history: np.ndarray, label: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    h = np.asarray(history, dtype=float)
    ok = np.isfinite(h) & (h > 0)
    x = np.arange(1, h.size + 1)
    if ok.any():
        ax.semilogy(x[ok], h[ok], "o-" if h.size < 40 else "-", ms=3)
    ax.set_xlabel("temperature stage" if "temperature" in label else "step")
    ax.set_ylabel("objective (000:Eq.8)")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fig_parameters(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, ax = plt.subplots(figsize=(7, 0.25 * n + 1.2))
    y = np.arange(n)[::-1]
    pos0 = [100 * (r["initial"] - r["lower"]) / (r["upper"] - r["lower"]) for r in rows]
    pos = [r["position_percent"] for r in rows]
    ax.hlines(y, 0, 100, color="0.85", lw=6)
    ax.plot(pos0, y, "o", color="0.5", ms=4, label="initial")
    ax.plot(pos, y, "D", color="C0", ms=4, label="calibrated")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
    ax.set_xlim(-3, 103)
    ax.set_xlabel("position inside the bounds (%)")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _fit_rows(fits: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["trial", "role", "window (s)", "DoF", "samples", "torque nRMSE", "torque r2",
            "stiffness nRMSE", "stiffness r2", "initial torque nRMSE", "initial torque r2",
            "initial stiffness nRMSE"]
    rows = []
    for f in fits:
        w = "all" if f["window"] is None else f"{f['window'][0]:.4g}-{f['window'][1]:.4g}"
        rows.append([f["trial"], f["role"], w, f["dof"], str(f["samples"]),
                     _f(f["nrmse_torque"]), _f(f["r2_torque"]), _f(f["nrmse_stiffness"]),
                     _f(f["r2_stiffness"]), _f(f["initial_nrmse_torque"]),
                     _f(f["initial_r2_torque"]), _f(f["initial_nrmse_stiffness"])])
    return head, rows


def _param_rows(params: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["parameter", "unit", "initial", "calibrated", "lower", "upper", "change (%)",
            "position (%)", "at bound"]
    rows = [[p["name"], p["unit"], _f(p["initial"], 4), _f(p["value"], 4), _f(p["lower"], 4),
             _f(p["upper"], 4), _f(p["change_percent"], 2), _f(p["position_percent"], 1),
             "yes" if p["at_bound"] else ""] for p in params]
    return head, rows


def write_calibration_report(out: str | Path, summary: dict, arrays: list[dict]
                             ) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out``.

    Parameters
    ----------
    out : path-like
        Run directory.
    summary : dict
        The run record of :func:`estimators.calibration.cli.run_calibration` (``fits``,
        ``parameters``, ``history``, ``objective``, ...).
    arrays : list of dict
        Per used trial: ``role``, ``trial``, ``time`` (T,) s, ``torque``/``torque_pred``/
        ``torque_initial`` (T, D) Nm, ``stiffness`` (T, D) or None, ``stiffness_pred``/
        ``stiffness_initial`` (T, D) Nm/rad.

    Returns
    -------
    dict
        ``md``, ``html`` -> paths.
    """
    from estimators.calibration.cli import write_atomic

    out = Path(out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    dofs = list(summary["dofs"])
    figures: list[tuple[str, str, bytes]] = []
    for k, arr in enumerate(a for a in arrays if a["role"] == "validation"):
        figures.append((f"validation_{k}_{arr['trial']}.png",
                        f"Validation trial {arr['trial']}: torque and stiffness", _fig_trial(
                            arr, dofs)))
    cal = [a for a in arrays if a["role"] == "calibration"]
    if cal:
        figures.append(("calibration_0.png", f"Calibration trial {cal[0]['trial']}",
                        _fig_trial(cal[0], dofs)))
    figures.append(("convergence.png", "Convergence", _fig_history(
        np.asarray(summary["history"], dtype=float), summary["history_label"])))
    figures.append(("parameters.png", "Calibrated parameters inside their bounds",
                    _fig_parameters(summary["parameters"])))
    for name, _, png in figures:
        (figdir / name).write_bytes(png)

    ob = summary["objective"]
    info = [
        ("calibrator", f"{summary['calibrator']} {summary['calibrator_params']}"),
        ("objective", f"000:Eq.8 alpha = {ob['alpha']}, beta = {ob['beta']}, penalty "
                      f"{ob['penalty']}; initial {_f(ob['initial_value'], 4)} -> calibrated "
                      f"{_f(ob['value'], 4)}"),
        ("reference stiffness", str(summary["stiffness_source"] or "none")),
        ("evaluations", str(summary["evaluations"])),
        ("calibration wall time", f"{summary['calibration_wall_time_s']:.2f} s"),
        ("converged", str(summary["converged"])),
        ("MTUs / EMG channels / DoFs", f"{len(summary['muscles'])} / "
                                       f"{len(summary['channels'])} / {len(dofs)}"),
        ("model rate", f"{summary['fs']:.6g} Hz"),
    ]
    fh, fr = _fit_rows(summary["fits"])
    ph, pr = _param_rows(summary["parameters"])
    hist = np.asarray(summary["history"], dtype=float)
    conv = (f"{summary['history_label']}: {hist.size} values, first {_f(hist[0], 4)}, "
            f"last {_f(hist[-1], 4)}." if hist.size else "no history recorded.")
    warn = summary.get("warnings") or []

    md = [f"# Calibration report: {summary['name']}", ""]
    if summary.get("description"):
        md += [summary["description"], ""]
    md += [f"- **{k}**: {v}" for k, v in info] + [""]
    md += ["## Fit (nRMSE, r2: 000 Sec. 2.6)", "", _md_table(fh, fr), ""]
    md += ["## Calibrated parameters", "", _md_table(ph, pr), ""]
    md += ["## Convergence", "", conv, ""]
    md += [f"- warning: {w}" for w in warn] + ([""] if warn else [])
    md += ["## Figures", ""] + [f"![{cap}](figures/{name})" for name, cap, _ in figures]

    def img(png: bytes) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    doc = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Calibration "
           f"{html.escape(summary['name'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>Calibration report: {html.escape(summary['name'])}</h1>"]
    if summary.get("description"):
        doc.append(f"<p>{html.escape(summary['description'])}</p>")
    doc.append("<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                                for k, v in info) + "</ul>")
    doc += ["<h2>Fit (nRMSE, r2: 000 Sec. 2.6)</h2>", _html_table(fh, fr)]
    doc += [f"<h3>{html.escape(cap)}</h3>{img(png)}" for name, cap, png in figures
            if name.startswith(("validation", "calibration"))]
    doc += ["<h2>Calibrated parameters</h2>", _html_table(ph, pr)]
    doc += [img(png) for name, _, png in figures if name == "parameters.png"]
    doc += ["<h2>Convergence</h2>", f"<p>{html.escape(conv)}</p>"]
    doc += [f"<p class='warn'>warning: {html.escape(w)}</p>" for w in warn]
    doc += [img(png) for name, _, png in figures if name == "convergence.png"]
    doc.append("</body></html>")
    return {"md": write_atomic(out / "report.md", "\n".join(md) + "\n"),
            "html": write_atomic(out / "report.html", "\n".join(doc) + "\n")}
