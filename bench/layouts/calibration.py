"""The default report of calibration scenarios: fits, parameters, identifiability.

Layout ``calibration``. For every method: each scenario metric as median [IQR] over all
records; how many calibrations stopped at their budget and how far from their stop
criterion; warnings (negative modelled joint stiffness, optimizer warnings); what the plant
did to the data (resampling, clipping, delays: the data notes); the held-out fit of one unit
per window and DoF (RMSE in Nm, nRMSE over the trial and over the window, r2) with a
figure of the held-out torque; the primary metric per cell (the ``table`` layout's blocks:
one factor at a time around the baseline); the calibrated parameters of one unit beside
their initial values, bounds and (synthetic plants) true values; the identifiability of
that solution (condition number of the scaled Jacobian, the most correlated parameter
pairs, standard errors); runtime and every record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench import store
from bench.layout import Layout, LayoutContext, ReferenceBase
from bench.layouts.table import (
    _check_options,
    _Notes,
    _Options,
    add_runtime_and_records,
    build_blocks,
    partial_warning,
)
from bench.reportkit import Report, fmt, new_figure, png_bytes
from bench.yamlfile import Collector

__all__ = ["CalibrationLayout", "med_iqr", "parameter_rows"]


def med_iqr(values: list[float]) -> str:
    """``median [IQR]`` of the finite values, "-" when none."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "-"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{fmt(q2)} [{fmt(q3 - q1)}]" if v.size > 1 else fmt(q2)


def parameter_rows(arr: dict) -> tuple[list[str], list[list[str]]]:
    """Rows name | unit | initial | calibrated | true | error | bounds | std. error of one
    record's arrays (true columns only when the truth is known)."""
    names = [str(n) for n in arr["names"]]
    units = [str(u) for u in arr.get("units", [""] * len(names))]
    x, x0 = np.asarray(arr["x"], float), np.asarray(arr["x0"], float)
    lo, hi = np.asarray(arr["lower"], float), np.asarray(arr["upper"], float)
    xt = np.asarray(arr["x_true"], float) if "x_true" in arr else None
    se = np.asarray(arr["ident_stderr"], float) if "ident_stderr" in arr else None
    head = ["parameter", "unit", "initial", "calibrated"]
    if xt is not None:
        head += ["true", "error [%]"]
    head += ["bounds"] + (["std. error"] if se is not None else [])
    rows = []
    for i, n in enumerate(names):
        row = [n, units[i], fmt(x0[i], 4), fmt(x[i], 4)]
        if xt is not None:
            err = 100 * abs(x[i] - xt[i]) / abs(xt[i]) if xt[i] != 0 else math.nan
            row += [fmt(xt[i], 4), fmt(err, 2)]
        row.append(f"[{fmt(lo[i], 4)}, {fmt(hi[i], 4)}]")
        if se is not None:
            row.append(fmt(se[i], 2))
        rows.append(row)
    return head, rows


class CalibrationLayout(Layout):
    """Calibration fits per method and cell, parameters and their identifiability."""

    name = "calibration"
    tasks = ("calibration",)
    options_model = _Options
    reference_model = ReferenceBase

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        return _check_options(ctx, options, col)

    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        info = plan.get("metric_info", {})
        metrics = list(plan["metrics"])
        methods = plan["methods"]
        rep = Report(f"impbench report: {plan['name']}", partial_warning(plan, records))
        rep.para(plan.get("description", ""))
        rep.para(f"Plant `{plan['plant']['name']}`; grid "
                 f"{', '.join(f'{k} {v}' for k, v in plan['grid'].items()) or 'none'}; seeds "
                 f"{plan['seeds']} (one plant draw each); {len(plan['units'])} units, "
                 f"{len(records)} records.")
        ref = plan.get("reference")
        if ref:
            rep.cite(ref["source"])
            rep.para(f"Reference: {ref['source']}. {ref.get('note', '')}")

        def unit(m: str) -> str:
            u = info.get(m, {}).get("unit", "")
            return f" [{u}]" if u else ""

        rep.heading("Summary")
        rep.para("Each metric: median [IQR] over every record of the method (all cells and "
                 "seeds); held-out metrics are medians over the held-out segments (task "
                 "cycles) of each record.")
        head = ["method", *(f"{m}{unit(m)}" for m in metrics), "wall [s]", "stopped at budget"]
        rows = []
        for m in methods:
            recs = [r for r in records if r["method_key"] == m["key"] and r["status"] == "ok"]
            budget = sum(1 for r in recs if r.get("metrics", {}).get("converged") == 0.0)
            rows.append([m["label"],
                         *(med_iqr([r["metrics"].get(k) for r in recs]) for k in metrics),
                         med_iqr([r.get("wall_time_s") for r in recs]),
                         f"{budget} of {len(recs)}"])
        rep.table(head, rows)
        for m in methods:
            warned = [r for r in records if r["method_key"] == m["key"]
                      and r.get("info", {}).get("warning")]
            if warned:
                rep.para(f"{m['label']}: {len(warned)} calibration(s) warned, e.g. "
                         f"\"{warned[0]['info']['warning']}\"", css="warn")
            self._budget(rep, m, records)
            neg = [r for r in records if r["method_key"] == m["key"]
                   and r.get("info", {}).get("negative_stiffness")]
            if neg:
                rep.para(f"{m['label']}: in {len(neg)} calibration(s) the "
                         f"{neg[0]['info']['negative_stiffness']} (e.g. seed {neg[0]['seed']})."
                         " Read the modelled stiffness there with care: check the moment-arm "
                         "derivatives (dr/dtheta) and the tendon model.",
                         css="warn")
        self._data_notes(rep, records)
        self._held_out(rep, out, plan, records)
        if plan["grid"]:
            notes = _Notes()
            metric = metrics[0]
            plan_t = {**plan, "reference": None}
            rep.heading(f"Per cell: {metric}{unit(metric)}")
            rep.para("Mean ± sd over seeds; one factor varied at a time around the baseline "
                     "(bold).")
            for b in build_blocks(plan_t, records, notes):
                rows = [[*lbl, *(c[m["label"]][0] for m in methods)] for lbl, _, c in b.rows]
                rows.append(["Median", *[""] * (len(b.head) - 1),
                             *(b.median[m["label"]][0] for m in methods)])
                bold = {i for i, (_, is_b, _) in enumerate(b.rows) if is_b}
                rep.heading(b.title, 3)
                rep.table([*b.head, *(m["label"] for m in methods)], rows, bold_rows=bold,
                          bold_col=len(b.head) - 1)
            if notes.items:
                rep.bullets(notes.items, ordered=True)
        self._parameters(rep, out, plan, records)
        add_runtime_and_records(rep, plan, records)
        return rep.write(out)

    @staticmethod
    def _budget(rep: Report, m: dict, records: list[dict]) -> None:
        """Calibrations that stopped at their budget, with their distance from the stop
        criterion where the method reports it."""
        stopped = [r for r in records if r["method_key"] == m["key"] and r["status"] == "ok"
                   and r.get("metrics", {}).get("converged") == 0.0]
        if not stopped:
            return
        info = stopped[0].get("info", {})
        text = (f"{m['label']}: {len(stopped)} calibration(s) stopped at their budget before "
                "meeting their stop criterion")
        if "stop_measure" in info and info.get("stop_eps"):
            text += (f"; e.g. seed {stopped[0]['seed']}: change measure "
                     f"{fmt(info['stop_measure'])} against eps = {fmt(info['stop_eps'])} "
                     f"({fmt(info['stop_measure'] / info['stop_eps'])} x)")
        elif "warning" not in info:
            text += "; the method reports no distance from its criterion"
        rep.para(text + ". Its solution may still improve with a larger budget.", css="warn")

    @staticmethod
    def _data_notes(rep: Report, records: list[dict]) -> None:
        notes = next((r["info"]["data_notes"] for r in records
                      if r.get("info", {}).get("data_notes")), None)
        if not notes:
            return
        rep.heading("Data")
        rep.para("What was done to the recorded data before calibration (every conversion, "
                 "resampling, clipping and delay):")
        rep.bullets([str(n) for n in notes])

    @staticmethod
    def _held_out(rep: Report, out: Path, plan: dict, records: list[dict]) -> None:
        """Per held-out window and DoF: RMSE, nRMSE over the trial and the window, r2 (the
        first unit's record of each method), and the held-out torque traces."""
        first_unit = {u["unit_id"]: i for i, u in enumerate(plan["units"])}
        rows, traces = [], []
        for m in plan["methods"]:
            recs = sorted((r for r in records if r["method_key"] == m["key"]
                           and r["status"] == "ok" and r.get("info", {}).get("held_out_scores")),
                          key=lambda r: first_unit.get(r["unit_id"], 0))
            if not recs:
                continue
            r = recs[0]
            for row in r["info"]["held_out_scores"]:
                rows.append([m["label"], str(row["window"]), str(row["dof"]),
                             fmt(row.get("rmse")), fmt(row.get("nrmse_trial")),
                             fmt(row.get("nrmse")), fmt(row.get("r2"))])
            if r.get("arrays") and (out / r["arrays"]).is_file():
                arr = store.load_arrays(out / r["arrays"])
                if "held_torque_0" in arr:
                    traces.append((m["label"], arr))
        if not rows:
            return
        rep.heading("Held-out fit per window and DoF")
        rep.para("Whole held-out windows, first unit of each method. Read the RMSE (Nm) and "
                 "nRMSE (trial) = RMSE / RMS of the reference torque over the window's whole "
                 "trial; nRMSE (window) divides by the window's own RMS and explodes where the "
                 "reference torque is near zero (e.g. the swing phase of gait).")
        rep.table(["method", "window", "DoF", "RMSE [Nm]", "nRMSE (trial)", "nRMSE (window)",
                   "r2"], rows)
        if traces:
            rep.figure("held_out_torque", _torque_png(traces),
                       "held-out torque: reference (grey) and calibrated models")


    @staticmethod
    def _parameters(rep: Report, out: Path, plan: dict, records: list[dict]) -> None:
        first_unit = {u["unit_id"]: i for i, u in enumerate(plan["units"])}
        for m in plan["methods"]:
            recs = sorted((r for r in records if r["method_key"] == m["key"]
                           and r["status"] == "ok" and r.get("arrays")
                           and (out / r["arrays"]).is_file()),
                          key=lambda r: first_unit.get(r["unit_id"], 0))
            if not recs:
                continue
            r = recs[0]
            arr = store.load_arrays(out / r["arrays"])
            where = ", ".join(f"{k} = {v}" for k, v in r["factors"].items())
            rep.heading(f"Parameters: {m['label']}")
            rep.para(f"Seed {r['seed']}{', ' + where if where else ''}. "
                     + ("Error: |calibrated - true| / |true|. " if "x_true" in arr else "")
                     + ("Std. error: Gauss-Newton standard error at the solution (large: "
                        "the data do not determine the parameter)." if "ident_stderr" in arr
                        else ""))
            head, rows = parameter_rows(arr)
            rep.table(head, rows)
            ident = r.get("info", {}).get("identifiability")
            if ident and "condition_number" in ident:
                pairs = ident.get("top_correlations") or []
                txt = "; ".join(f"{p['pair'][0]} ~ {p['pair'][1]} ({p['correlation']:+.3f})"
                                for p in pairs[:5])
                poor = ident.get("poorly_determined") or []
                rep.para(f"Identifiability: condition number of the scaled Jacobian "
                         f"{fmt(ident['condition_number'])}, rank {ident.get('rank')} of "
                         f"{len(rows)}; {len(poor)} poorly determined "
                         "(standard error above 10 % of the permitted range)"
                         + (f"; most correlated pairs: {txt}" if txt else "") + ".")


def _torque_png(traces: list[tuple[str, dict]]) -> bytes:
    """The first held-out window's torque, reference and each method's model (per DoF)."""
    ref = np.asarray(traces[0][1]["held_torque_ref_0"], dtype=float)
    D = ref.shape[1]
    fig, axes = new_figure(6.0, 2.4 * D, D, 1)
    axes = axes[:, 0]
    x = np.arange(ref.shape[0])
    for j, ax in enumerate(axes):
        ax.plot(x, ref[:, j], color="0.6", lw=3, label="reference")
        for label, arr in traces:
            ax.plot(x, np.asarray(arr["held_torque_0"], dtype=float)[:, j], lw=1, label=label)
        names = traces[0][1].get("dofs")
        ax.set_ylabel(f"{names[j] if names is not None else j} [Nm]", fontsize=8)
    axes[-1].set_xlabel("sample of the held-out window", fontsize=8)
    axes[0].legend(fontsize=7)
    return png_bytes(fig, dpi=90)
