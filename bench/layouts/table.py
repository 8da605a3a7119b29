"""The thesis's method-comparison tables (Kraaijevanger 2018, Table III and Table V).

Layout ``table`` (the default of impedance scenarios). The main table has one block per level
of the ``split`` factor (the perturbation signal) and, within it, one panel per level of the
``panels`` factor (e.g. the profile ``phase``: the first level is the headline); the columns
are the methods (ours, and the published value beside it when the reference gives one).
Its rows follow ``rows_mode``:

* ``one_at_a_time`` -- Table III: the ``rows`` factors are varied one at a time while the
  other factors stay at the ``baseline`` (baseline level in bold);
* ``cross`` -- Table V: one row per combination of the ``rows`` factors' levels, the other
  factors at the ``baseline``.

**One support for all methods.** A cell's value is the mean ± sd over seeds of the metric
computed, per unit, on the samples *every* method of the table estimated (the intersection
of their finite ``K``); below each panel the **Coverage** row gives each method's median
share of the samples it estimated and **Median, own support** its median metric on all of
its own samples (what each record holds). Under each panel: per method, the rows at or below
the reference and the rows worse than it by more than 20 % (relative), and a "why ours
differs" note built from what the run knows. A figure plots ours against the reference, cell
by cell. Failed or unavailable methods show "-" with the reason in a footnote, as the thesis
does.

A plant class may contribute figures through a ``report_figures(plan) -> dict[str, bytes]``
class/static method (PNG bytes by name).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, StrictStr

from bench import metrics as _metrics
from bench import registry, store
from bench.layout import Layout, LayoutContext, StrictModel
from bench.reportkit import Report, fmt, new_figure, png_bytes
from bench.scenario import canonical_json
from bench.yamlfile import Collector

__all__ = ["Block", "TableLayout", "add_runtime_and_records", "build_blocks",
           "common_support_metric"]

#: Metrics computed from K that can be rescored on a common support.
_K_METRICS = ("stiffness_error", "rmse", "nrmse", "r2", "vaf")
#: A row is "worse" than the reference when ours exceeds it by more than this (relative).
WORSE_BY = 0.20


class _Options(StrictModel):
    split: StrictStr | None = None
    rows: list[StrictStr] | None = None
    rows_mode: Literal["one_at_a_time", "cross"] = "one_at_a_time"
    columns: Literal["method"] = "method"
    baseline: dict[StrictStr, Any] = Field(default_factory=dict)
    panels: StrictStr | None = None


class _Reference(StrictModel):
    source: StrictStr = Field(min_length=1)
    metric: StrictStr = "stiffness_error"
    note: StrictStr = ""
    values: list[dict[StrictStr, Any]] = Field(default_factory=list)
    table: dict[Any, Any] = Field(default_factory=dict)


def _eq(a: object, b: object) -> bool:
    return canonical_json(a) == canonical_json(b)


def _level_index(levels: list, value: Any) -> int | None:
    key = canonical_json(value)
    return next((i for i, lv in enumerate(levels) if canonical_json(lv) == key), None)


def _matches(factors: dict, where: dict) -> bool:
    return all(_eq(factors.get(k), v) for k, v in where.items())


# --------------------------------------------------------------------------- validation


def _check_options(ctx: LayoutContext, o: _Options, col: Collector) -> dict:
    grid = ctx.grid
    split = o.split
    if split is not None and split not in grid:
        col.add(("split",), f"{split!r} is not a grid factor ({', '.join(grid)})")
        split = None
    panels = o.panels
    if panels is not None and (panels not in grid or panels == split):
        col.add(("panels",), f"{panels!r} is not a grid factor other than the split "
                             f"({', '.join(grid)})")
        panels = None
    if o.rows is None:
        rows = tuple(f for f in grid if f not in (split, panels))
    else:
        rows = []
        for i, f in enumerate(o.rows):
            if f not in grid:
                col.add(("rows", i), f"{f!r} is not a grid factor ({', '.join(grid)})")
            elif f in (split, panels):
                col.add(("rows", i), f"{f!r} is the split or panels factor")
            else:
                rows.append(f)
        rows = tuple(rows)
    baseline: dict = {}
    for f, level in o.baseline.items():
        if f not in grid:
            col.add(("baseline", f), f"{f!r} is not a grid factor")
        elif _level_index(grid[f], level) is None:
            col.add(("baseline", f), f"{level!r} is not a level of {f} {grid[f]!r}")
        else:
            baseline[f] = level
    for f, levels in grid.items():
        if f not in baseline and f != split and levels:
            baseline[f] = levels[0]
    if o.rows_mode == "cross" and not rows:
        col.add(("rows_mode",), "'cross' needs at least one row factor in layout.rows")
    return {"split": split, "rows": list(rows), "rows_mode": o.rows_mode, "baseline": baseline,
            "panels": panels}


def _check_reference(ctx: LayoutContext, lay: dict, ref: _Reference, col: Collector) -> dict:
    if ref.metric not in ctx.metrics:
        col.add(("metric",), f"{ref.metric!r} is not among the scenario's metrics")
    grid = ctx.grid
    known = set(grid) | set(ctx.plant_params)
    labels = set(ctx.labels)
    records: list[dict] = []

    def check_value(path: tuple, value: Any) -> float | bool | None:
        if value is None:
            return None
        try:
            ok = not isinstance(value, bool) and math.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            col.add(path, f"a reference value must be a finite number or null; got {shown}")
            return False
        return float(value)

    def check_method(path: tuple, method: Any) -> bool:
        if not isinstance(method, str) or method not in labels:
            col.add(path, f"{method!r} is not a method label of this scenario "
                          f"({', '.join(sorted(labels))})")
            return False
        return True

    def check_where(path: tuple, where: dict) -> bool:
        ok = True
        for f, level in where.items():
            if f not in known:
                col.add((*path, f), f"{f!r} is neither a grid factor nor a plant parameter")
                ok = False
            elif f in grid and _level_index(grid[f], level) is None:
                col.add((*path, f), f"{level!r} is not a level of {f} {grid[f]!r}")
                ok = False
            elif f in ctx.plant_params and not _eq(ctx.plant_params[f], level):
                col.add((*path, f), f"{level!r} never matches: plant.params.{f} is "
                                    f"{ctx.plant_params[f]!r}")
                ok = False
        return ok

    for i, rec in enumerate(ref.values):
        path = ("values", i)
        rec = dict(rec)
        if "method" not in rec or "value" not in rec:
            col.add(path, "each record needs 'method' and 'value' (plus factor: level keys)")
            continue
        method, value = rec.pop("method"), rec.pop("value")
        checks = (check_value((*path, "value"), value), check_method((*path, "method"), method),
                  check_where(path, rec))
        if checks[0] is not False and all(checks[1:]):
            records.append({"where": rec, "method": method, "value": checks[0], "kind": "cell"})

    def method_map(path: tuple, mapping: Any, where: dict, kind: str) -> None:
        if not isinstance(mapping, dict):
            col.add(path, "expected a mapping 'method: value'")
            return
        for method, value in mapping.items():
            v = check_value((*path, method), value)
            if check_method((*path, method), method) and v is not False:
                records.append({"where": dict(where), "method": method, "value": v,
                                "kind": kind})

    def row_block(path: tuple, block: Any, split_where: dict) -> None:
        if not isinstance(block, dict):
            col.add(path, "expected a mapping 'factor: {level: {method: value}}'")
            return
        for f, levels in block.items():
            if f == "median":
                method_map((*path, f), levels, split_where, "median")
                continue
            if lay["rows_mode"] == "cross":
                col.add((*path, f), "with layout.rows_mode 'cross' give cell values under "
                                    "reference.values (the table form holds only 'median')")
                continue
            if f not in lay["rows"]:
                col.add((*path, f), f"{f!r} is not a row factor of the layout "
                                    f"({', '.join(lay['rows'])})")
                continue
            if not isinstance(levels, dict):
                col.add((*path, f), "expected a mapping 'level: {method: value}'")
                continue
            for level, mapping in levels.items():
                if _level_index(grid[f], level) is None:
                    col.add((*path, f, level), f"{level!r} is not a level of {f} {grid[f]!r}")
                    continue
                where = {**split_where,
                         **{g: lay["baseline"][g] for g in grid
                            if g not in (f, lay["split"], lay["panels"])}, f: level}
                method_map((*path, f, level), mapping, where, "cell")

    if ref.table:
        if lay["split"] is None:
            row_block(("table",), ref.table, {})
        else:
            for level, block in ref.table.items():
                if _level_index(grid[lay["split"]], level) is None:
                    col.add(("table", level), f"{level!r} is not a level of the split factor "
                                              f"{lay['split']} {grid[lay['split']]!r}")
                    continue
                row_block(("table", level), block, {lay["split"]: level})
    return {"source": ref.source, "metric": ref.metric, "note": ref.note, "records": records}


# --------------------------------------------------------------------------- common support


def _scored(arr: dict) -> tuple[np.ndarray, np.ndarray]:
    """The (true, estimate) pair a record was scored on, as the task scored it."""
    if "K_record" in arr and "K_r" in arr:
        return np.asarray(arr["K_r"], float), np.asarray(arr["K_record"], float)
    if "K_r" in arr:
        k_r = np.asarray(arr["K_r"], float)
        return k_r, np.broadcast_to(np.asarray(arr["K"], float), k_r.shape)
    return np.asarray(arr["K_true"], float), np.asarray(arr["K"], float)


def common_support_metric(out: Path, plan: dict, records: list[dict], metric: str) -> dict:
    """The metric of every ok record recomputed on its unit's common support.

    Per unit, the support is the set of samples where every method of the scenario with an
    ``ok`` record has a finite estimate. Returns ``{(unit_id, method_key): (value,
    coverage)}`` with coverage the share of samples the record's own method estimated; empty
    when the metric is not computed from K or a record has no arrays.
    """
    if metric not in _K_METRICS:
        return {}
    fn = getattr(_metrics, metric)
    by_unit: dict[str, list[dict]] = {}
    for r in records:
        if r["status"] == "ok" and r.get("arrays"):
            by_unit.setdefault(r["unit_id"], []).append(r)
    out_vals: dict = {}
    for uid, recs in by_unit.items():
        pairs = []
        for r in recs:
            path = out / r["arrays"]
            if not path.is_file():
                return {}
            pairs.append((r, *_scored(store.load_arrays(path))))
        shapes = {p[1].shape for p in pairs}
        if len(shapes) != 1:
            continue
        common = np.logical_and.reduce([np.isfinite(e) for _, _, e in pairs])
        for r, true, est in pairs:
            cov = float(np.mean(np.isfinite(est)))
            val = fn(true[common], est[common]) if common.any() else float("nan")
            out_vals[(uid, r["method_key"])] = (float(val), cov)
    return out_vals


# --------------------------------------------------------------------------- blocks


@dataclass
class Block:
    """One table panel (one split level, one panels level).

    ``head`` names the label columns; each row is ``(labels, bold, {label: (ours, ref)})``.
    ``pairs`` holds (ours, reference) numbers per method for the counts and the figure.
    """

    title: str
    head: list = field(default_factory=lambda: ["factor", "level"])
    rows: list = field(default_factory=list)
    median: dict = field(default_factory=dict)
    own_median: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)
    spread: list = field(default_factory=list)
    panel: Any = None


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def _ref_value(plan: dict, where: dict, label: str, kind: str) -> tuple[bool, float | None]:
    ref = plan.get("reference")
    if not ref or plan_metric(plan) != ref["metric"]:
        return False, None
    params = {**plan["plant"]["params"], **where}
    for r in ref["records"]:
        if r["kind"] == kind and r["method"] == label and _matches(params, r["where"]):
            return True, r["value"]
    return False, None


def plan_metric(plan: dict) -> str:
    """The metric of the main table: the reference's, else the first scenario metric."""
    ref = plan.get("reference")
    return ref["metric"] if ref else plan["metrics"][0]


def build_blocks(plan: dict, records: list[dict], notes: _Notes,
                 support: dict | None = None) -> list[Block]:
    """The Table III or Table V panels of a run (see the module docstring)."""
    metric = plan_metric(plan)
    lay, grid = plan["layout"], plan["grid"]
    split, panels = lay.get("split"), lay.get("panels")
    cross = lay.get("rows_mode", "one_at_a_time") == "cross"
    methods = plan["methods"]
    support = support or {}
    by_method = {m["key"]: [r for r in records if r["method_key"] == m["key"]] for m in methods}

    def value(r: dict, own: bool = False) -> float | None:
        if r["status"] != "ok" or metric not in r.get("metrics", {}):
            return None
        key = (r.get("unit_id"), r["method_key"])
        if not own and key in support:
            return support[key][0]
        return r["metrics"][metric]

    blocks = []
    for slevel, plevel in itertools.product(grid[split] if split else [None],
                                            grid[panels] if panels else [None]):
        sw = {} if split is None else {split: slevel}
        pw = {} if panels is None else {panels: plevel}
        title = ", ".join(f"{f} = {v}" for f, v in ({**sw, **pw}).items()) or "all cells"
        block = Block(title=title, head=list(lay["rows"]) if cross else ["factor", "level"],
                      panel=plevel)

        def cell(where: dict, m: dict, median: bool, block=block) -> tuple[str, str]:
            recs = [r for r in by_method[m["key"]] if _matches(r["factors"], where)]
            vals = [v for v in (value(r) for r in recs) if v is not None]
            bad = [r for r in recs if r["status"] != "ok"]
            has_ref, ref = _ref_value(plan, where, m["label"], "median" if median else "cell")
            ref_txt = ("-" if ref is None else fmt(ref)) if has_ref else ""
            if not recs:
                return "n/a", ref_txt
            if not vals:
                why = bad[0]["reason"] if bad else "no result"
                return "-" + notes.mark(f"{m['label']}: {bad[0]['status'] if bad else 'missing'}"
                                        f": {why}"), ref_txt
            v = np.asarray(vals, float)
            if median:
                text = fmt(float(np.median(v)))
            elif v.size > 1:
                text = f"{fmt(float(v.mean()))} ± {fmt(float(v.std(ddof=1)))}"
                if v.mean() > 0:
                    block.spread.append(float(v.std(ddof=1) / v.mean()))
            else:
                text = fmt(float(v[0]))
            if bad:
                text += notes.mark(f"{m['label']}: {len(bad)} of {len(recs)} runs "
                                   f"{bad[0]['status']}: {bad[0]['reason']}")
            if not median and has_ref and ref is not None:
                block.pairs.setdefault(m["label"], []).append((float(v.mean()), float(ref)))
            return text, ref_txt

        fixed = {g: lay["baseline"][g] for g in grid
                 if g not in lay["rows"] and g not in (split, panels)}
        if cross:
            for combo in itertools.product(*(grid[f] for f in lay["rows"])):
                where = {**fixed, **sw, **pw, **dict(zip(lay["rows"], combo))}
                block.rows.append(([str(v) for v in combo], False,
                                   {m["label"]: cell(where, m, False) for m in methods}))
        else:
            for f in lay["rows"]:
                for level in grid[f]:
                    where = {**{g: lay["baseline"][g] for g in grid
                                if g not in (f, split, panels)}, **sw, **pw, f: level}
                    bold = _eq(level, lay["baseline"].get(f))
                    block.rows.append(([f, str(level)], bold,
                                       {m["label"]: cell(where, m, False) for m in methods}))
        where = {**sw, **pw}
        for m in methods:
            block.median[m["label"]] = cell(where, m, True)
            recs = [r for r in by_method[m["key"]] if _matches(r["factors"], where)]
            own = [v for v in (value(r, own=True) for r in recs) if v is not None]
            block.own_median[m["label"]] = fmt(float(np.median(own))) if own else "-"
            cov = [1.0 - r["metrics"]["nan_share"] for r in recs
                   if r["status"] == "ok" and "nan_share" in r.get("metrics", {})]
            if not cov:
                cov = [support[(r.get("unit_id"), r["method_key"])][1] for r in recs
                       if (r.get("unit_id"), r["method_key"]) in support]
            block.coverage[m["label"]] = f"{100 * float(np.median(cov)):.0f} %" if cov else "-"
        blocks.append(block)
    return blocks


# --------------------------------------------------------------------------- report


def _counts(block: Block, labels: list[str]) -> list[list[str]]:
    rows = []
    for lab in labels:
        pairs = block.pairs.get(lab, [])
        if not pairs:
            continue
        at = sum(o <= r for o, r in pairs)
        worse = sum(o > (1 + WORSE_BY) * r for o, r in pairs)
        rows.append([lab, f"{at} of {len(pairs)}", str(worse)])
    return rows


def _edges_note(plan: dict, records: list[dict]) -> str:
    """Which methods estimated the period's edges across the realization boundary
    (``info["contiguous"]`` of their records), or ``""`` when no record says."""
    said = []
    for m in plan["methods"]:
        flags = [r.get("info", {}).get("contiguous") for r in records
                 if r["method_key"] == m["key"] and r["status"] == "ok"]
        flags = [f for f in flags if isinstance(f, bool)]
        if flags:
            n = sum(flags)
            said.append(f"{m['label']} {'in all' if n == len(flags) else f'in {n} of'} "
                        f"{len(flags)} records" if n else f"{m['label']} in none")
    if not said:
        return ""
    return ("Edges of the period estimated across the realization boundary (contiguous "
            "records; contiguous=True, or 'auto' on contiguous data): " + "; ".join(said)
            + ". Methods not listed do not use the flag.")


def _why_note(plan: dict, block: Block, has_support: bool) -> list[str]:
    """Facts the run knows that make ours differ from the reference (no free text)."""
    ref = plan.get("reference") or {}
    facts = [f"Ours is the mean ± sd over {len(plan['seeds'])} seed(s) per cell, each seed a "
             f"new simulation; the source ({ref.get('source', 'the reference')}) reports "
             "one number per cell."]
    if block.spread:
        facts.append(f"The seed scatter alone is a median {100 * np.median(block.spread):.0f} %"
                     " of our mean (sd / mean over this panel's cells).")
    if has_support:
        facts.append("Ours is scored on the samples every method in the table estimated "
                     "(the common support; coverage row); the source scored each method on "
                     "its own samples.")
    return facts


def _deviations(plan: dict) -> list[str]:
    """Each method's own statement of where it departs from its source (``deviations``)."""
    out = []
    for m in plan["methods"]:
        try:
            cls = registry.resolve("estimators" if plan.get("task", "impedance") == "impedance"
                                   else "calibrators", m["name"])
        except Exception:  # an unavailable method states nothing
            continue
        dev = getattr(cls, "deviations", "")
        if dev:
            out.append(f"{m['label']}: {dev}")
    return out


def _count_totals(blocks: list[Block], labels: list[str], panels: str | None
                  ) -> tuple[list[str], list[list[str]]]:
    """Counts against the reference summed over the panels (per ``panels`` level)."""
    levels = list(dict.fromkeys(b.panel for b in blocks))
    head = ["method"]
    for lv in levels:
        name = "" if panels is None else f", {panels} = {lv}"
        head += [f"at or below{name}", f"worse > {100 * WORSE_BY:.0f} %{name}"]
    rows, tot = [], {lv: [0, 0, 0] for lv in levels}
    for lab in labels:
        row, any_ = [lab], False
        for lv in levels:
            pairs = [p for b in blocks if b.panel == lv for p in b.pairs.get(lab, [])]
            at = sum(o <= r for o, r in pairs)
            worse = sum(o > (1 + WORSE_BY) * r for o, r in pairs)
            any_ |= bool(pairs)
            tot[lv][0] += at
            tot[lv][1] += worse
            tot[lv][2] += len(pairs)
            row += [f"{at} of {len(pairs)}" if pairs else "-", str(worse) if pairs else "-"]
        if any_:
            rows.append(row)
    total = ["all methods"]
    for lv in levels:
        at, worse, n = tot[lv]
        total += [f"{at} of {n} ({100 * at / n:.1f} %)" if n else "-", str(worse) if n else "-"]
    rows.append(total)
    return head, rows


def _figure_ours_vs_ref(blocks: list[Block]) -> bytes | None:
    panels = [b for b in blocks if b.pairs]
    if not panels:
        return None
    rows, cols = (len(panels) + 2) // 3, min(3, len(panels))
    fig, axes = new_figure(4.2 * cols, 4.0 * rows, rows, cols)
    axes = axes.ravel()
    markers = "osD^v<>pP*XhH"
    labels = sorted({lab for b in panels for lab in b.pairs})
    for ax, b in zip(axes, panels):
        lo, hi = np.inf, 0.0
        for i, lab in enumerate(labels):
            p = np.asarray(b.pairs.get(lab, []), float)
            p = p[(p > 0).all(axis=1)] if p.size else p
            if p.size:
                ax.scatter(p[:, 1], p[:, 0], marker=markers[i % len(markers)], s=22, label=lab)
                lo, hi = min(lo, p.min()), max(hi, p.max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.plot([lo, hi], [lo * (1 + WORSE_BY), hi * (1 + WORSE_BY)], "k:", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("reference")
        ax.set_ylabel("ours")
        ax.set_title(b.title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return png_bytes(fig, dpi=90)


def partial_warning(plan: dict, records: list[dict]) -> str:
    """"Partial run: ..." when records are missing, else ""."""
    expected = len(store.expected_pairs(plan))
    if len(records) >= expected:
        return ""
    return (f"Partial run: {len(records)} of {expected} records exist; missing cells show "
            "'n/a'. Run the scenario again to finish it.")


class TableLayout(Layout):
    """Method comparison tables in the thesis's Table III / Table V form."""

    name = "table"
    tasks = ("impedance", "calibration")
    options_model = _Options
    reference_model = _Reference

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        return _check_options(ctx, options, col)

    @classmethod
    def check_reference(cls, ctx: LayoutContext, options: dict, reference: Any,
                        col: Collector) -> dict:
        return _check_reference(ctx, options, reference, col)

    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        from bench.figures import plant_figures, plot_k_tracks

        metric = plan_metric(plan)
        info = plan.get("metric_info", {}).get(metric, {})
        unit = f" [{info['unit']}]" if info.get("unit") else ""
        ref = plan.get("reference")
        labels = [m["label"] for m in plan["methods"]]
        support = common_support_metric(out, plan, records, metric)
        notes = _Notes()
        blocks = build_blocks(plan, records, notes, support)
        rep = Report(f"impbench report: {plan['name']}", partial_warning(plan, records))
        rep.para(plan.get("description", ""))
        fixed = plan["plant"]["params"]
        rep.para(f"Plant `{plan['plant']['name']}`"
                 + (f" with {json.dumps(fixed)}" if fixed else "") + "; "
                 f"grid {', '.join(f'{k} {v}' for k, v in plan['grid'].items())}; seeds "
                 f"{plan['seeds']}; {len(plan['units'])} units, {len(records)} records.")
        rep.heading(f"Table: {metric}{unit}")
        what = [f"{metric}{unit} ({info.get('text', '')}) per cell: ours = mean ± sd over "
                f"{len(plan['seeds'])} seed(s)"]
        if support:
            what.append("on the common support of all methods (see the Coverage row)")
        if ref:
            what.append(f"the reference ({ref['source']}) in its own column")
        if plan["layout"].get("rows_mode") == "cross":
            what.append("rows: every combination of " + " x ".join(plan["layout"]["rows"]))
        what.append("Median row = median over all cells and seeds of the panel.")
        rep.para("; ".join(what[:-1]) + ". " + what[-1])
        if ref and ref.get("note"):
            rep.para(f"Reference note: {ref['note']}")
        edges = _edges_note(plan, records)
        if edges:
            rep.para(edges)
        has_ref = {lab for b in blocks for row in b.rows for lab, (_, r) in row[2].items() if r}
        has_ref |= {lab for b in blocks for lab, (_, r) in b.median.items() if r}
        head_m = []
        for lab in labels:
            head_m.append(f"{lab}{unit}")
            if lab in has_ref:
                head_m.append(f"{lab} ref")
        for b in blocks:
            rep.heading(b.title, 3)

            def cells(d: dict) -> list[str]:
                out_ = []
                for lab in labels:
                    ours, r = d.get(lab, ("n/a", ""))
                    out_.append(ours)
                    if lab in has_ref:
                        out_.append(r)
                return out_

            pad = [""] * (len(b.head) - 1)
            rows = [[*lbl, *cells(c)] for lbl, _, c in b.rows]
            bold = {i for i, (_, is_b, _) in enumerate(b.rows) if is_b}
            rows.append(["Median", *pad, *cells(b.median)])
            if support and any(c not in ("100 %", "-") for c in b.coverage.values()):
                rows.append(["Median, own support", *pad,
                             *cells({lab: (b.own_median[lab], "") for lab in labels})])
            rows.append(["Coverage", *pad, *cells({lab: (b.coverage[lab], "") for lab in labels})])
            n = len(b.rows)
            rep.table([*b.head, *head_m], rows, bold_rows=bold, bold_col=len(b.head) - 1,
                      row_class={n: "median"})
            counts = _counts(b, labels)
            if counts:
                rep.para(f"Against the reference in this panel (rows where both exist): "
                         f"at or below it, and worse by more than {100 * WORSE_BY:.0f} %:")
                rep.table(["method", "at or below", f"worse > {100 * WORSE_BY:.0f} %"], counts)
            if ref:
                rep.para("Why ours differs: " + " ".join(
                    _why_note(plan, b, bool(support))))
        if ref and any(b.pairs for b in blocks):
            rep.heading("Against the reference, all panels")
            head, rows = _count_totals(blocks, labels, plan["layout"].get("panels"))
            rep.para("Rows where both exist, summed over the panels: at or below the reference, "
                     f"and worse by more than {100 * WORSE_BY:.0f} %.")
            rep.table(head, rows)
            devs = _deviations(plan)
            if devs:
                rep.para("Where our methods depart from the source (each method's own "
                         "statement):")
                rep.bullets(devs)
        if notes.items:
            rep.para("Notes:")
            rep.bullets(notes.items, ordered=True)
        png = _figure_ours_vs_ref(blocks)
        if png is not None:
            rep.heading("Ours against the reference, cell by cell")
            rep.para("One marker per method and cell (log axes); the solid line is equality, "
                     f"the dotted line {100 * WORSE_BY:.0f} % worse.")
            rep.figure("ours_vs_reference", png, "ours vs reference")
        k_png = plot_k_tracks(out, plan, records) if plan.get("task", "impedance") == (
            "impedance") else None
        if k_png is not None:
            rep.heading("Estimated vs true K(t) in the baseline cell")
            rep.figure("baseline_K", k_png, "estimated vs true K(t)")
        extra, extra_note = plant_figures(plan)
        if extra or extra_note:
            rep.heading("Plant figures")
            rep.para(f"Drawn by the plant `{plan['plant']['name']}` (its `report_figures` hook).")
            for name, data in extra.items():
                rep.figure(f"plant_{name}", data, name)
            rep.para(extra_note)
        add_runtime_and_records(rep, plan, records)
        paths = rep.write(out)
        if "figure_baseline_K" in paths:
            paths["figure"] = paths["figure_baseline_K"]
        for name in extra:
            paths[f"plant_{name}"] = paths[f"figure_plant_{name}"]
        return paths


def add_runtime_and_records(rep: Report, plan: dict, records: list[dict]) -> None:
    """The sections every layout ends with: runtime per method and all records."""
    rep.heading("Runtime")
    rep.table(["method", "backend", "ok", "failed", "unavailable", "median wall [s]",
               "max peak mem [MiB]"], _runtime_rows(plan, records))
    head, rows = _tidy_rows(plan, records)
    rep.heading("Appendix: all records")
    rep.table(head, rows, collapsed=f"All records ({len(rows)})")


def _runtime_rows(plan: dict, records: list[dict]) -> list[list[str]]:
    rows = []
    for m in plan["methods"]:
        recs = [r for r in records if r["method_key"] == m["key"]]
        wall = [r["wall_time_s"] for r in recs if r.get("wall_time_s") is not None]
        mem = [r["peak_mem_mib"] for r in recs if r.get("peak_mem_mib") is not None]
        count = {s: sum(r["status"] == s for r in recs) for s in ("ok", "failed", "unavailable")}
        rows.append([m["label"], m["name"], str(count["ok"]), str(count["failed"]),
                     str(count["unavailable"]),
                     fmt(float(np.median(wall))) if wall else "-",
                     fmt(float(np.max(mem))) if mem else "-"])
    return rows


def _tidy_rows(plan: dict, records: list[dict]) -> tuple[list[str], list[list[str]]]:
    factors = list(plan["grid"])
    metrics = plan["metrics"]
    head = [*factors, "seed", "method", "status", *metrics, "wall [s]", "peak [MiB]", "reason"]
    order = {m["key"]: i for i, m in enumerate(plan["methods"])}
    units = {u["unit_id"]: i for i, u in enumerate(plan["units"])}
    rows = []
    for r in sorted(records, key=lambda r: (units.get(r["unit_id"], 0),
                                            order.get(r["method_key"], 0))):
        rows.append([
            *(str(r["factors"].get(f)) for f in factors), str(r["seed"]), r["label"], r["status"],
            *(fmt(float(r["metrics"][k])) if k in r.get("metrics", {}) else "-"
              for k in metrics),
            fmt(r["wall_time_s"]) if r.get("wall_time_s") is not None else "-",
            fmt(r["peak_mem_mib"]) if r.get("peak_mem_mib") is not None else "-",
            r.get("reason", ""),
        ])
    return head, rows
