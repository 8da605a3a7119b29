"""Misalignment curves: stiffness error vs jitter, and repetitions needed (layout).

Layout ``misalignment``. The thesis (Kraaijevanger 2018, Sec. VI-B, VI-F) names the weakness
every ensemble and short-segment method shares: it assumes each realization shows the same
time variation at the same instant. In people it does not, and the thesis expects 200-400
repetitions instead of 25-50 for that reason, without measuring it. A misalignment scenario
measures it on the MSD plant at the thesis baseline (FGWN, 0 dB, K varying as a 1 Hz square
wave) with period scatter (``jitter_period``) and per-realization shifts (``jitter_shift``),
for each ensemble method raw and through :class:`estimators.impedance.aligned.Aligned`, and
for the single-record Kalman smoother (``tvkf``). Errors are scored per realization against
``truth.K_r`` (the impedance task does this whenever the plant reports it).

The report (``report.md``/``report.html``) holds the error-vs-jitter and repetitions-needed
tables and figures (``figures/error_vs_jitter.png``, ``figures/reps_vs_jitter.png``, the
repetitions interpolated log-log between the durations run, R = duration / period), and
``misalignment.json`` the numbers behind them. Options: ``target`` (error the repetitions
are counted for, percent; default 15) and ``metric`` (default ``stiffness_error``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, StrictStr

from bench import store
from bench.errors import DataError
from bench.layout import Layout, LayoutContext, StrictModel
from bench.layouts.table import partial_warning
from bench.reportkit import Report, new_figure, png_bytes
from bench.yamlfile import Collector

__all__ = [
    "JITTER_FACTORS",
    "MethodKey",
    "MisalignmentLayout",
    "Summary",
    "repetitions_needed",
    "summarize",
]

#: Jitter factors of the MSD plant the study knows, with their display unit and scale.
JITTER_FACTORS = {
    "jitter_period": ("period scatter s.d.", "%", 100.0),
    "jitter_shift": ("shift s.d.", "ms", 1000.0),
    "jitter_amplitude": ("amplitude scatter s.d.", "%", 100.0),
}

#: Plant defaults used where a factor is neither in the grid nor in plant.params.
_DEFAULTS = {"jitter_period": 0.0, "jitter_shift": 0.0, "jitter_amplitude": 0.0,
             "duration": 50.0, "period": 1.0}


@dataclass(frozen=True)
class MethodKey:
    """A method column classified for the study.

    Attributes
    ----------
    label : str
        Scenario label.
    family : str
        Inner estimator (``eirf``, ``sds``, ...) or the method itself.
    variant : str
        ``"raw"``, ``"aligned (dtw)"`` / ``"aligned (shift)"`` or ``"single record"``.
    """

    label: str
    family: str
    variant: str


def _classify(method: dict) -> MethodKey:
    name, params = method["name"], method.get("params") or {}
    if name == "aligned" or name.endswith(":Aligned"):
        inner = str(params.get("method", "birf"))
        align = str(params.get("align", "dtw"))
        return MethodKey(method["label"], inner,
                         "raw" if align == "none" else f"aligned ({align})")
    if name == "tvkf" or name.endswith(":KalmanSmoother"):
        return MethodKey(method["label"], "tvkf", "single record")
    return MethodKey(method["label"], name, "raw")


@dataclass
class Summary:
    """Errors of a run, grouped.

    Attributes
    ----------
    metric : str
    methods : list of MethodKey
    jitter : list of str
        Jitter factors that take more than one level in the run.
    levels : dict
        Levels per factor (sorted), for ``jitter`` factors and ``duration``.
    period : float
        Period of the time variation, s (R = duration / period).
    table : dict
        ``(label, jitter levels tuple, duration) -> (mean, sd, n_ok, n_total)``.
    scored_on : dict
        ``label -> set`` of what the runner scored (``"K"``: the phase trajectory against
        ``truth.K``, where the plant reports no per-realization truth, i.e. without jitter;
        ``"K_record"`` / ``"K_broadcast"``: per realization against ``truth.K_r``).
    """

    metric: str
    methods: list
    jitter: list
    levels: dict
    period: float
    table: dict
    scored_on: dict


def _value(rec: dict, plan: dict, factor: str) -> float:
    f = rec.get("factors", {})
    if factor in f:
        return float(f[factor])
    return float(plan["plant"]["params"].get(factor, _DEFAULTS[factor]))


def summarize(plan: dict, records: list[dict], metric: str = "stiffness_error") -> Summary:
    """Group the records of a run by method, jitter levels and duration.

    Parameters
    ----------
    plan : dict
        ``scenario.json`` of a misalignment scenario.
    records : list of dict
        Its result records.
    metric : str
        Metric to summarize (a scenario metric).

    Returns
    -------
    Summary
        Means and standard deviations over seeds of the ``ok`` records; failed runs count
        in ``n_total`` only.
    """
    if not records:
        raise DataError("the run holds no result records of its scenario; run it first")
    methods = [_classify(m) for m in plan["methods"]]
    by_key = {m["key"]: mk for m, mk in zip(plan["methods"], methods)}
    factors = [f for f in JITTER_FACTORS
               if f in plan["grid"] and len(plan["grid"][f]) > 1]
    if not factors:
        factors = [f for f in JITTER_FACTORS if f in plan["grid"]] or ["jitter_period"]
    levels = {f: sorted({_value(r, plan, f) for r in records}) for f in factors}
    levels["duration"] = sorted({_value(r, plan, "duration") for r in records})
    period = float(plan["plant"]["params"].get("period", _DEFAULTS["period"]))
    groups: dict = defaultdict(list)
    for r in records:
        mk = by_key.get(r["method_key"])
        if mk is None:
            continue
        jl = tuple(_value(r, plan, f) for f in factors)
        groups[(mk.label, jl, _value(r, plan, "duration"))].append(r)
    scored_on: dict = defaultdict(set)
    for r in records:
        if r["status"] == "ok" and "scored_on" in r.get("info", {}):
            scored_on[r["label"]].add(r["info"]["scored_on"])
    table = {}
    for k, recs in groups.items():
        vals = np.array([r["metrics"][metric] for r in recs
                         if r["status"] == "ok" and metric in r.get("metrics", {})], dtype=float)
        mean = float(vals.mean()) if vals.size else float("nan")
        sd = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
        table[k] = (mean, sd, int(vals.size), len(recs))
    return Summary(metric, methods, factors, levels, period, table, dict(scored_on))


def repetitions_needed(
    R: np.ndarray, err: np.ndarray, target: float = 15.0
) -> tuple[float, str]:
    """Fewest repetitions reaching ``target`` error, interpolated log-log.

    The first R at which the error is at or below ``target`` and the R before it are
    joined by a straight line in (log R, log error); its crossing of ``target`` is the
    answer.

    Parameters
    ----------
    R : ndarray, shape (D,)
        Repetitions (realizations) of the runs, increasing.
    err : ndarray, shape (D,)
        Error at each R, percent (NaN: no result).
    target : float
        Error to reach, percent.

    Returns
    -------
    value : float
        Interpolated R (``R[0]`` when the first run already reaches the target; ``inf`` when
        none does).
    text : str
        ``"37"``, ``"<= 25"`` or ``"> 400"``.
    """
    R = np.asarray(R, dtype=float)
    err = np.asarray(err, dtype=float)
    ok = np.isfinite(err)
    R, err = R[ok], err[ok]
    if R.size == 0:
        return float("nan"), "n/a"
    hit = np.flatnonzero(err <= target)
    if hit.size == 0:
        return math.inf, f"> {R[-1]:g}"
    i = int(hit[0])
    if i == 0:
        return float(R[0]), f"<= {R[0]:g}"
    lr = np.log(R[i - 1 : i + 1])
    le = np.log(err[i - 1 : i + 1])
    x = lr[0] + (np.log(target) - le[0]) * (lr[1] - lr[0]) / (le[1] - le[0])
    value = float(np.exp(x))
    return value, f"{value:.0f}"


# --------------------------------------------------------------------------- figures


def _levels_text(s: Summary, factor: str, v: float) -> str:
    _, unit, scale = JITTER_FACTORS[factor]
    return f"{v * scale:g} {unit}"


def _baseline_duration(s: Summary) -> float:
    d = s.levels["duration"]
    return 50.0 if 50.0 in d else d[len(d) // 2]


def _one_factor_levels(s: Summary, factor: str) -> list[tuple]:
    """Jitter-level tuples that vary ``factor`` with every other jitter factor at 0."""
    i = s.jitter.index(factor)
    out = []
    for v in s.levels[factor]:
        jl = tuple(v if k == i else 0.0 for k in range(len(s.jitter)))
        out.append(jl)
    return out


def _families(s: Summary) -> list[str]:
    fam = []
    for m in s.methods:
        if m.variant != "single record" and m.family not in fam:
            fam.append(m.family)
    return fam


def _style(variant: str) -> dict:
    if variant == "raw":
        return {"ls": "-", "marker": "o"}
    if variant.startswith("aligned"):
        return {"ls": "--", "marker": "s"}
    return {"ls": ":", "marker": "^", "color": "k"}


def plot_error_vs_jitter(s: Summary) -> bytes:
    """PNG: error vs each jitter factor (rows) per method family (columns)."""
    dur = _baseline_duration(s)
    fams = _families(s) or ["tvkf"]
    single = [m for m in s.methods if m.variant == "single record"]
    fig, axes = new_figure(3.0 * len(fams), 2.8 * len(s.jitter), len(s.jitter), len(fams))
    for row, factor in enumerate(s.jitter):
        name, unit, scale = JITTER_FACTORS[factor]
        jls = _one_factor_levels(s, factor)
        x = np.array(s.levels[factor]) * scale
        for col, fam in enumerate(fams):
            ax = axes[row, col]
            for m in [m for m in s.methods if m.family == fam] + single:
                y = [s.table.get((m.label, jl, dur), (np.nan,))[0] for jl in jls]
                ax.plot(x, y, label=f"{m.label}", **_style(m.variant))
            ax.axhline(15.0, color="0.6", lw=0.8)
            ax.set_ylim(bottom=0.0)
            ax.set_title(f"{fam}, {dur:g} s (R = {dur / s.period:g})", fontsize=9)
            ax.set_xlabel(f"{name} [{unit}]")
            if col == 0:
                ax.set_ylabel(f"{s.metric} [%]")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return png_bytes(fig)


def reps_table(s: Summary, target: float) -> dict:
    """``{label: {factor: [(level, value, text), ...]}}`` of repetitions needed."""
    out: dict = {}
    durs = np.array(s.levels["duration"])
    R = durs / s.period
    for m in s.methods:
        per: dict = {}
        for factor in s.jitter:
            rows = []
            for jl, v in zip(_one_factor_levels(s, factor), s.levels[factor]):
                err = np.array([s.table.get((m.label, jl, d), (np.nan,))[0] for d in durs])
                val, text = repetitions_needed(R, err, target)
                rows.append((v, val, text))
            per[factor] = rows
        out[m.label] = per
    return out


def plot_reps_vs_jitter(s: Summary, reps: dict, target: float) -> bytes:
    """PNG: repetitions needed for ``target`` error vs jitter (one panel per factor)."""
    R_max = max(s.levels["duration"]) / s.period
    R_min = min(s.levels["duration"]) / s.period
    fig, (axes,) = new_figure(5.5 * len(s.jitter), 3.6, 1, len(s.jitter))
    for ax, factor in zip(axes, s.jitter):
        name, unit, scale = JITTER_FACTORS[factor]
        for m in s.methods:
            rows = reps[m.label][factor]
            x = np.array([v for v, _, _ in rows]) * scale
            y = np.array([val for _, val, _ in rows])
            st = _style(m.variant)
            ycap = np.where(np.isinf(y), R_max * 1.5, y)  # "> R_max" drawn above the top
            ax.plot(x, ycap, label=m.label, **st)
        ax.axhline(R_max, color="0.6", lw=0.8)
        ax.text(ax.get_xlim()[0], R_max * 1.55, f"> {R_max:g} (never reached)", fontsize=7,
                va="bottom")
        ax.set_yscale("log")
        ax.set_ylim(R_min / 1.3, R_max * 2.5)
        ticks = [d / s.period for d in s.levels["duration"]]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"{name} [{unit}]")
        ax.set_ylabel(f"repetitions for {target:g} % error")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    return png_bytes(fig)


# --------------------------------------------------------------------------- report


def _fmt(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.1f}" + (f" ± {sd:.1f}" if math.isfinite(sd) else "")




class _Options(StrictModel):
    target: float = Field(15.0, gt=0, lt=1000)
    metric: StrictStr = "stiffness_error"


class MisalignmentLayout(Layout):
    """Error vs jitter and repetitions needed, raw vs aligned ensemble methods and tvkf."""

    name = "misalignment"
    tasks = ("impedance",)
    options_model = _Options

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        if options.metric not in ctx.metrics:
            col.add(("metric",), f"{options.metric!r} is not among the scenario's metrics "
                                 f"({', '.join(ctx.metrics)})")
        if "duration" not in ctx.grid and "duration" not in ctx.plant_params:
            col.add(("name",), "the misalignment layout needs 'duration' as a grid factor")
        return options.model_dump(mode="json")

    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        lay = plan["layout"]
        target, metric = float(lay.get("target", 15.0)), lay.get("metric", "stiffness_error")
        s = summarize(plan, records, metric)
        dur = _baseline_duration(s)
        reps = reps_table(s, target)
        rep = Report(f"Misalignment study: {plan['name']}", partial_warning(plan, records))
        rep.cite("Kraaijevanger 2018")
        rep.para("Stiffness error of ensemble methods when realizations do not line up "
                 "(Kraaijevanger 2018, Sec. VI-F), raw and after alignment "
                 "(estimators.impedance.aligned), and of the single-record Kalman smoother "
                 "(tvkf). Errors are scored per realization against the true K of that "
                 "realization (truth.K_r), Eq.6-7 of the thesis.")
        rep.para(plan.get("description", ""))
        mixed = [m.label for m in s.methods if m.variant == "single record"
                 and {"K", "K_record"} <= s.scored_on.get(m.label, set())]
        if mixed:
            rep.para("Scoring note: without jitter the plant reports no per-realization truth, "
                     "so there the phase trajectory K is scored against truth.K; under jitter "
                     "each realization is scored. For ensemble methods, raw or aligned, both "
                     "coincide; for the single-record " + ", ".join(mixed) + " the 0-jitter "
                     "entry is the error of its phase average over the lined-up realizations, "
                     "not of its per-realization trajectory.")
        for factor in s.jitter:
            jls = _one_factor_levels(s, factor)
            levels = [_levels_text(s, factor, v) for v in s.levels[factor]]
            name = JITTER_FACTORS[factor][0]
            rep.heading(f"{metric} [%] vs {name}, {dur:g} s (R = {dur / s.period:g})")
            rep.para("Mean ± sd over seeds, scored per realization.")
            rep.table(["method", "variant", *levels],
                      [[m.label, m.variant,
                        *(_fmt(*s.table.get((m.label, jl, dur), (np.nan, np.nan))[:2])
                          for jl in jls)] for m in s.methods])
            rep.heading(f"Repetitions needed for {target:g} % error vs {name}")
            rep.para(f"Durations {', '.join(f'{d:g}' for d in s.levels['duration'])} s, "
                     "log-log interpolation.")
            rep.table(["method", "variant", *levels],
                      [[m.label, m.variant, *(t for _, _, t in reps[m.label][factor])]
                       for m in s.methods])
        rep.heading("Error vs jitter")
        rep.figure("error_vs_jitter", plot_error_vs_jitter(s), "Error vs jitter")
        rep.heading(f"Repetitions needed for {target:g} % error vs jitter")
        rep.figure("reps_vs_jitter", plot_reps_vs_jitter(s, reps, target),
                   "Repetitions needed vs jitter")
        payload = {
            "metric": metric, "target_pct": target, "period_s": s.period,
            "jitter_factors": s.jitter, "levels": s.levels, "baseline_duration_s": dur,
            "methods": [m.__dict__ for m in s.methods],
            "scored_on": {k: sorted(v) for k, v in s.scored_on.items()},
            "errors": [{"label": k[0], "jitter": dict(zip(s.jitter, k[1])), "duration": k[2],
                        "mean": v[0], "sd": v[1], "n_ok": v[2], "n": v[3]}
                       for k, v in sorted(s.table.items(), key=lambda kv: str(kv[0]))],
            "repetitions_needed": {
                lab: {f: [{"level": v, "R": (None if not math.isfinite(val) else val),
                           "text": t} for v, val, t in rows] for f, rows in per.items()}
                for lab, per in reps.items()},
        }
        paths = rep.write(out)
        paths["json"] = out / "misalignment.json"
        store.atomic_write_bytes(paths["json"], json.dumps(payload, indent=1).encode())
        return paths
