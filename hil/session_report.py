"""Report of a recorded rig session: estimated stiffness beside the rig's true mapping.

``impbench report DIR`` on a directory holding a session dataset (written by
``impbench rig record`` or ``impbench rig recover``) lands here. The report (Markdown +
self-contained HTML, figure embedded as base64 PNG) shows

* the stiffness K(t) over one pivot cycle estimated by a registered estimator (SDS by default,
  004 App. A4) beside the true K(t) = K_map(pivot position(t)), the rig's true-stiffness mapping
  (004 App. B, :func:`plants.lever.mapping.true_stiffness_mapping`) evaluated at the measured
  pivot position of each realization and averaged over the realizations;
* the stiffness error, 100 RMSE(K_hat) / RMS(K) (004:Eq.6-7, :func:`bench.metrics.stiffness_error`),
  its NaN share and r2;
* sample counts, gap runs, faults, firmware version, segments, link statistics, and the wall
  and device clocks.

As in the thesis's mechanical study the data are decimated to 100 Hz before identification
(004 Sec. IV-B: "The collected data were decimated to 100Hz before the identification
algorithms were applied"), unless another factor is asked for.

The mapping's time-invariant trials (5 x 60 s of simulated rig time by default) take seconds;
their result is cached beside the dataset in ``<stem>.mapping.json``, keyed by a hash of the
rig description, the perturbation and the trial length.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench import registry, store
from bench.errors import DataError, EstimationError
from bench.htmlkit import html_table as _html_table
from bench.metrics import nan_share, r2, stiffness_error
from bench.reportkit import CSS as _CSS
from bench.reportkit import md_table as _md_table
from bench.types import ImpedanceEstimate, Realizations
from hil.session_data import (
    SessionDataset,
    find_datasets,
    load_dataset,
    session_mapping,
    session_realizations,
)

__all__ = ["SessionAnalysis", "analyze_session", "write_session_report", "write_session_reports"]

#: Identification rate of the thesis's mechanical study, Hz (004 Sec. IV-B).
IDENTIFY_HZ = 100.0
#: Gap runs listed one by one in the report (the rest are summarized).
_MAX_GAP_ROWS = 20


@dataclass
class SessionAnalysis:
    """Everything a session report shows.

    Attributes
    ----------
    stem : Path
        Dataset stem (``<stem>.npz`` / ``<stem>.json``).
    dataset : SessionDataset
    data : Realizations
        Estimator input, shape (R, N), at ``data.fs`` (after decimation); ``truth`` holds the
        mapped true stiffness when a mapping was available.
    estimate : ImpedanceEstimate or None
        None when the estimator failed (``error`` says why).
    method : str
        Estimator name as given.
    params : dict
        Hyper-parameters passed to the estimator.
    decimate_by : int
    mapping : StiffnessMapping or None
    mapping_note : str
        How the mapping was obtained (or why there is none).
    metrics : dict
        ``stiffness_error_pct``, ``nan_share``, ``r2``, ``K_true_mean``, ``K_est_mean`` (N/m;
        NaN when not available), ``wall_s`` of the estimate.
    error : str or None
    """

    stem: Path
    dataset: SessionDataset
    data: Realizations
    estimate: ImpedanceEstimate | None
    method: str
    params: dict
    decimate_by: int
    mapping: Any
    mapping_note: str
    metrics: dict
    error: str | None


# ----------------------------------------------------------------------------------------------
# Analysis


def _cached_mapping(ds: SessionDataset, stem: Path, truth: str, duration: float | None
                    ) -> tuple[Any, str]:
    """The session's true-stiffness mapping, from ``<stem>.mapping.json`` when cached there."""
    from plants.lever.mapping import StiffnessMapping

    key_src = json.dumps({"rig": ds.meta.get("rig_description") or ds.meta.get("rig"),
                          "spec": ds.meta.get("spec"), "truth": truth, "duration": duration},
                         sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = stem.with_name(stem.name + ".mapping.json")
    entries: dict = {}
    if cache.is_file():
        try:
            entries = json.loads(cache.read_text())
        except (OSError, ValueError):
            entries = {}
    if key in entries:
        d = entries[key]
        m = StiffnessMapping(d["perturbation"], np.asarray(d["coef"], float),
                             np.asarray(d["positions"], float),
                             np.asarray(d["stiffness"], float), tuple(d["band"]))
        return m, f"cached in {cache.name}"
    t0 = time.perf_counter()
    m = session_mapping(ds, truth, duration=duration, source=str(stem))
    wall = time.perf_counter() - t0
    entries[key] = m.to_dict()
    try:
        store.atomic_write_bytes(cache, json.dumps(entries, indent=1).encode())
    except OSError:
        pass  # a read-only dataset directory: the report still works, uncached
    return m, f"computed in {wall:.1f} s"


def analyze_session(
    path: str | os.PathLike,
    *,
    method: str = "sds",
    params: dict | None = None,
    decimate_by: int | None = None,
    truth: str | None = "auto",
    mapping_duration: float | None = None,
) -> SessionAnalysis:
    """Estimate the stiffness of a recorded session and score it against the rig's mapping.

    Parameters
    ----------
    path : path
        Session dataset (``.npz``, ``.json`` or their stem).
    method : str
        Registered estimator name (``impbench list estimators``) or ``module:Class``.
    params : dict, optional
        Estimator hyper-parameters.
    decimate_by : int, optional
        Decimation before identification (default: down to 100 Hz, 004 Sec. IV-B;
        ``round(fs / 100)``, at least 1).
    truth : {"auto", "fgwn", "prbs"} or None
        Perturbation of the mapping trials (``"auto"``: the session's own; None: no truth).
        A session whose perturbation has no mapping (multisine) is reported without truth.
    mapping_duration : float, optional
        Length of each mapping trial, s (default: the rig file's ``mapping.duration``, 60 s).

    Returns
    -------
    SessionAnalysis

    Raises
    ------
    DataError
        Not a session dataset, or no complete period without gaps.
    RegistryError, InvalidParameterError
        Unknown method or bad hyper-parameter.
    """
    stem = Path(path)
    if stem.suffix.lower() in (".npz", ".json"):
        stem = stem.with_suffix("")
    ds = load_dataset(stem)
    fs = float(ds.meta["fs"])
    if decimate_by is None:
        decimate_by = max(1, round(fs / IDENTIFY_HZ))
    if int(decimate_by) != decimate_by or decimate_by < 1:
        raise DataError(f"decimate_by must be an integer >= 1; got {decimate_by!r}")
    decimate_by = int(decimate_by)
    cls = registry.resolve("estimators", method)
    params = dict(params or {})
    est_obj = cls(**params)
    est_obj._validate()

    mapping, note = None, "no truth requested"
    if truth is not None:
        try:
            mapping, note = _cached_mapping(ds, stem, truth, mapping_duration)
        except DataError as exc:
            note = f"no true mapping: {exc}"
    data = session_realizations(stem, truth=mapping, decimate_by=decimate_by)
    est, error = None, None
    t0 = time.perf_counter()
    try:
        est = est_obj.estimate(data)
    except (EstimationError, DataError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    nan = float("nan")
    metrics = {"stiffness_error_pct": nan, "nan_share": nan, "r2": nan,
               "K_true_mean": nan, "K_est_mean": nan, "wall_s": wall}
    if est is not None:
        k = np.asarray(est.K, float)
        metrics["nan_share"] = nan_share(k)
        if np.isfinite(k).any():
            metrics["K_est_mean"] = float(np.nanmean(k))
        if data.truth is not None and data.truth.K is not None:
            kt = np.asarray(data.truth.K, float)
            metrics["K_true_mean"] = float(np.mean(kt))
            metrics["stiffness_error_pct"] = stiffness_error(kt, k)  # 004:Eq.6-7
            metrics["r2"] = r2(kt, k)
    elif data.truth is not None and data.truth.K is not None:
        metrics["K_true_mean"] = float(np.mean(data.truth.K))
    return SessionAnalysis(stem, ds, data, est, method, params, decimate_by, mapping, note,
                           metrics, error)


# ----------------------------------------------------------------------------------------------
# Figure


def session_figure(an: SessionAnalysis) -> bytes:
    """PNG: estimated vs true K(t) over the pivot cycle, and K against the pivot position.

    Left: K(t) within one period (s); the true K(t) is the mapping at the measured pivot
    position, mean over realizations, with the spread over realizations shaded. Right: the
    mapping K(p) (curve), its time-invariant trials (points) and the estimate plotted at the
    mean pivot position of each time step.
    """
    d = an.data
    t = d.t
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    k_est = None if an.estimate is None else np.asarray(an.estimate.K, float)
    label = an.method.upper() if ":" not in an.method else an.method
    if d.truth is not None:
        ax1.plot(t, d.truth.K, "k--", lw=2.0, label="true K (mapping of pivot)")
        if d.truth.K_r is not None and d.R > 1:
            ax1.fill_between(t, d.truth.K_r.min(axis=0), d.truth.K_r.max(axis=0),
                             color="0.8", label="true K, min-max over realizations")
    if k_est is not None:
        ax1.plot(t, k_est, lw=1.4, color="C0", label=f"{label} estimate")
    ax1.set_xlabel("time within one pivot period [s]")
    ax1.set_ylabel("K [N/m]")
    ax1.set_title(f"{an.dataset.meta.get('name')}: K(t), {d.R} realizations", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="best")
    piv = d.schedule.mean(axis=0) * 1e3
    if an.mapping is not None:
        lo = min(piv.min(), float(np.min(an.mapping.positions)) * 1e3)
        hi = max(piv.max(), float(np.max(an.mapping.positions)) * 1e3)
        p = np.linspace(lo, hi, 200)
        ax2.plot(p, an.mapping(p * 1e-3), "k-", lw=1.5, label="true mapping K(p)")
        ax2.plot(an.mapping.positions * 1e3, an.mapping.stiffness, "ks", ms=5,
                 label="time-invariant trials")
    if k_est is not None:
        ok = np.isfinite(k_est)
        ax2.scatter(piv[ok], k_est[ok], s=8, c=t[ok], cmap="viridis",
                    label=f"{label} estimate vs mean pivot")
    ax2.set_xlabel("pivot position [mm]")
    ax2.set_ylabel("K [N/m]")
    ax2.set_title("stiffness against pivot position", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Tables


def _f(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{x:.{digits}g}"


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), tz=timezone.utc).isoformat(timespec="milliseconds")


def _tables(an: SessionAnalysis) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of every table of the report, in order."""
    m, d, mt = an.dataset.meta, an.data, an.metrics
    a = an.dataset.arrays
    params = ", ".join(f"{k}={v!r}" for k, v in an.params.items()) or "defaults"
    stiff = [[an.method, params, _f(d.fs), f"{d.R} x {d.N}",
              _f(mt["stiffness_error_pct"], 3), _f(mt["nan_share"], 3), _f(mt["r2"], 3),
              _f(mt["K_true_mean"]), _f(mt["K_est_mean"]), _f(mt["wall_s"], 3)]]
    stiff_head = ["method", "parameters", "fs id [Hz]", "R x N", "stiffness error [%]",
                  "NaN share", "r2", "mean true K [N/m]", "mean est. K [N/m]", "wall [s]"]
    total, received = int(m["total"]), int(m["received"])
    runs = m["gaps"]["runs"]
    samples = [
        ["total (settling + recorded)", str(total)],
        ["recorded per repetition", f"{m['n_run']} (+ {m['n_settle']} settling)"],
        ["repetitions", str(m["repetitions"])],
        ["received", str(received)],
        ["missing", str(m["gaps"]["missing"])],
        ["gap runs", str(len(runs))],
        ["periods used / dropped (gaps, restarts)",
         f"{d.R} / {d.meta.get('dropped_periods', 0)}"],
        ["samples beyond the session / repeated", f"{m.get('samples_out_of_range', 0)} / "
                                                  f"{m.get('samples_repeated', 0)}"],
        ["device restarts at index", ", ".join(map(str, m.get("restarts", []))) or "none"],
    ]
    fs = float(m["fs"])
    per_rep = int(m["n_settle"]) + int(m["n_run"])
    gap_rows = [[str(s), str(n), _f(s / fs, 5), str(s // per_rep)]
                for s, n in runs[:_MAX_GAP_ROWS]]
    if len(runs) > _MAX_GAP_ROWS:
        rest = runs[_MAX_GAP_ROWS:]
        gap_rows.append([f"... {len(rest)} more", str(sum(n for _, n in rest)), "", ""])
    fault_rows = [[str(f.get("name")), str(f.get("code")), str(f.get("index")),
                   str(f.get("detail")), str(f.get("segment"))] for f in m.get("faults", [])]
    clocks = m.get("clocks", {})
    wall = m.get("wall", {})
    valid = a["valid"]
    t_us = a["time_us"][valid]
    device = [
        ["firmware", str(m.get("firmware"))],
        ["rig id", str(m.get("rig_id"))],
        ["rig file", str(m.get("rig"))],
        ["sample rate [Hz]", _f(fs)],
        ["pivot period [s]", _f(m["period_s"])],
        ["segments (reconnects/resets start a new one)", ", ".join(map(str, m["segments"]))],
        ["recovered from raw log", str(bool(m.get("recovered")))],
        ["raw log", str(m.get("raw_log"))],
    ]
    clock_rows = [
        ["wall clock start (UTC)", _iso(wall.get("started"))],
        ["wall clock end (UTC)", _iso(wall.get("ended"))],
        ["wall duration [s]", _f(wall["ended"] - wall["started"]) if wall else "-"],
        ["device clock first / last sample [us]",
         f"{int(t_us.min())} / {int(t_us.max())}" if t_us.size else "-"],
        ["device span [s]", _f(clocks.get("device_span_s"))],
        ["host span [s]", _f(clocks.get("host_span_s"))],
        ["host vs device drift [ppm]", _f(clocks.get("drift_ppm"))],
    ]
    link = [[k, _f(v) if isinstance(v, (int, float)) else str(v)]
            for k, v in sorted(m.get("link", {}).items())]
    out = [("Stiffness", stiff_head, stiff),
           ("Samples", ["quantity", "value"], samples),
           ("Gaps", ["first index", "length", "time [s]", "repetition"], gap_rows),
           ("Faults", ["fault", "code", "index", "detail", "segment"], fault_rows),
           ("Device", ["item", "value"], device),
           ("Clocks", ["clock", "value"], clock_rows),
           ("Link", ["counter", "value"], link)]
    if an.mapping is not None:
        mp = an.mapping
        out.append(("True-stiffness mapping (004 App. B)", ["pivot [mm]", "K trial [N/m]",
                                                            "K fit [N/m]"],
                    [[_f(p * 1e3), _f(k), _f(an.mapping(p))]
                     for p, k in zip(mp.positions, mp.stiffness)]))
    return out


def _summary_lines(an: SessionAnalysis) -> list[str]:
    m, d = an.dataset.meta, an.data
    lines = [
        f"Session `{m.get('name')}` on rig `{m.get('rig_id')}` (firmware {m.get('firmware')}): "
        f"{m['received']}/{m['total']} samples, {m['gaps']['missing']} missing in "
        f"{len(m['gaps']['runs'])} gap run(s), {len(m.get('faults', []))} fault(s).",
        f"Identification: {an.method} on {d.R} realizations x {d.N} samples at {d.fs:g} Hz "
        f"(decimated by {an.decimate_by}, 004 Sec. IV-B); u = actuator position [m], "
        f"y = force [N], schedule = pivot position [m].",
    ]
    if an.mapping is not None:
        lines.append(f"True K(t) = the rig's {an.mapping.perturbation.upper()} mapping "
                     f"K(p) = {an.mapping.coef[0]:.6g} p^2 + {an.mapping.coef[1]:.6g} p + "
                     f"{an.mapping.coef[2]:.6g} (p in m, 004 App. B) at the measured pivot "
                     f"position, averaged over the realizations ({an.mapping_note}).")
    else:
        lines.append(f"No true stiffness: {an.mapping_note}.")
    lines.append("Stiffness error = 100 RMSE(K_hat) / RMS(K) over valid samples (004:Eq.6-7).")
    if an.error:
        lines.append(f"The estimator failed: {an.error}")
    return lines


# ----------------------------------------------------------------------------------------------
# Writing


def write_session_report(an: SessionAnalysis, out: str | os.PathLike, *,
                         name: str = "report") -> dict[str, Path]:
    """Write ``<out>/<name>.md``, ``<out>/<name>.html`` (figure embedded), the figure PNG
    ``<out>/figures/<name>_K.png`` and the numbers ``<out>/<name>.json``.

    Returns
    -------
    dict
        Paths under ``md``, ``html``, ``figure``, ``json``.
    """
    out = Path(out)
    png = session_figure(an)
    paths = {"figure": out / "figures" / f"{name}_K.png", "md": out / f"{name}.md",
             "html": out / f"{name}.html", "json": out / f"{name}.json"}
    store.atomic_write_bytes(paths["figure"], png)
    title = f"impbench rig session report: {an.dataset.meta.get('name')}"
    summary = _summary_lines(an)
    tables = _tables(an)
    md = [f"# {title}", "", *[f"{s}  " for s in summary], ""]
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
         "".join(f"<p>{html.escape(s)}</p>" for s in summary)]
    fig_title = "Estimated K(t) over the pivot cycle beside the rig's true mapping"
    for i, (ttl, head, rows) in enumerate(tables):
        md += [f"## {ttl}", ""]
        h.append(f"<h2>{html.escape(ttl)}</h2>")
        if rows:
            md += [_md_table(head, rows), ""]
            h.append(_html_table(head, rows))
        else:
            md += ["none", ""]
            h.append("<p>none</p>")
        if i == 0:
            rel = paths["figure"].relative_to(out).as_posix()
            md += [f"## {fig_title}", "", f"![{fig_title}]({rel})", ""]
            b64 = base64.b64encode(png).decode()
            h.append(f"<h2>{html.escape(fig_title)}</h2>"
                     f"<img alt='{html.escape(fig_title)}' src='data:image/png;base64,{b64}'>")
    h.append("</body></html>")
    store.atomic_write_bytes(paths["md"], "\n".join(md).encode())
    store.atomic_write_bytes(paths["html"], "".join(h).encode())
    numbers = {
        "dataset": str(an.stem), "method": an.method, "params": an.params,
        "decimate_by": an.decimate_by, "fs_identification": an.data.fs,
        "realizations": an.data.R, "samples_per_realization": an.data.N,
        "dropped_periods": an.data.meta.get("dropped_periods", 0),
        "total": an.dataset.meta["total"], "received": an.dataset.meta["received"],
        "gaps": an.dataset.meta["gaps"], "faults": an.dataset.meta.get("faults", []),
        "firmware": an.dataset.meta.get("firmware"), "error": an.error,
        "mapping": None if an.mapping is None else an.mapping.to_dict(),
        **{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
           for k, v in an.metrics.items()},
    }
    store.atomic_write_bytes(paths["json"], json.dumps(numbers, indent=1, default=str).encode())
    return paths


def write_session_reports(path: str | os.PathLike, *, out: str | os.PathLike | None = None,
                          **kwargs: Any) -> list[dict[str, Path]]:
    """Report every session dataset at ``path`` (a directory, a dataset file or its stem).

    One dataset gives ``report.md`` / ``report.html`` in ``out`` (default: the dataset's
    directory); several give ``<stem>.report.md`` / ``.html`` each.

    Parameters
    ----------
    path : path
    out : path, optional
        Output directory.
    **kwargs
        Passed to :func:`analyze_session` (``method``, ``params``, ``decimate_by``, ``truth``,
        ``mapping_duration``).

    Returns
    -------
    list of dict
        The paths of each report (see :func:`write_session_report`).

    Raises
    ------
    DataError
        No session dataset at ``path``.
    """
    stems = find_datasets(path)
    if not stems:
        raise DataError(f"{path}: no session dataset (<name>.npz + <name>.json) found")
    written = []
    for stem in stems:
        an = analyze_session(stem, **kwargs)
        where = Path(out) if out is not None else stem.parent
        name = "report" if len(stems) == 1 else f"{stem.name}.report"
        written.append(write_session_report(an, where, name=name))
    return written
