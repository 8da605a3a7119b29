"""Markdown and self-contained HTML reports of a run directory.

The main table has one block per level of the layout's ``split`` factor (the perturbation
signal), the methods as columns and a final *Median* row that takes the median over all
cells and seeds of that split level. Its rows follow ``layout.rows_mode``:

* ``one_at_a_time`` -- the thesis's Table III layout (004 Table III): the ``rows`` factors
  are varied one at a time while the other factors stay at the ``baseline`` (baseline level
  in bold);
* ``cross`` -- the thesis's Table V layout (004 Table V): one row per combination of the
  ``rows`` factors' levels (e.g. time variation x experimental time), one label column per
  row factor, the other factors at the ``baseline``.

Each entry reads ``ours (mean ± sd over seeds) | reference`` when the scenario's
``reference`` block gives a published value; failed or unavailable methods show "-" with the
reason in a footnote, as the thesis does. A plant class may contribute figures through a
``report_figures(plan) -> dict[str, bytes]`` class/static method (PNG bytes by name); they are
written to ``figures/plant_<name>.png`` and embedded.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import store
from bench.figures import plant_figures, plot_k_tracks
from bench.htmlkit import html_table
from bench.scenario import canonical_json

__all__ = ["Block", "build_blocks", "rows_mode", "write_report"]


@dataclass
class Block:
    """One table block (one split level).

    ``head`` names the label columns (``["factor", "level"]`` one at a time, the row factors
    in the cross layout); each row is ``(labels, bold, cells)`` with one label per ``head``
    entry and one cell text per method.
    """

    title: str
    head: list = field(default_factory=lambda: ["factor", "level"])
    rows: list = field(default_factory=list)  # ([label texts], bold, [cell texts])
    median: list = field(default_factory=list)


def _eq(a: object, b: object) -> bool:
    return canonical_json(a) == canonical_json(b)


def _matches(factors: dict, where: dict) -> bool:
    return all(_eq(factors.get(k), v) for k, v in where.items())


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else (f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}")


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def _summary(recs: list[dict], metric: str, label: str, notes: _Notes, median: bool) -> str:
    if not recs:
        return "n/a"
    ok = [r["metrics"][metric] for r in recs
          if r["status"] == "ok" and metric in r.get("metrics", {})]
    bad = [r for r in recs if r["status"] != "ok"]
    if not ok:
        reason = bad[0]["reason"] if bad else "no result"
        return "-" + notes.mark(f"{label}: {bad[0]['status'] if bad else 'missing'}: {reason}")
    vals = np.asarray(ok, dtype=float)
    if median:
        text = _fmt(float(np.median(vals)))
    elif vals.size > 1:
        text = f"{_fmt(float(vals.mean()))} ± {_fmt(float(vals.std(ddof=1)))}"
    else:
        text = _fmt(float(vals[0]))
    if bad:
        text += notes.mark(f"{label}: {len(bad)} of {len(recs)} runs {bad[0]['status']}: "
                           f"{bad[0]['reason']}")
    return text


def _ref_text(plan: dict, where: dict, label: str, kind: str) -> str | None:
    ref = plan.get("reference")
    if not ref or plan_metric(plan) != ref["metric"]:
        return None
    params = {**plan["plant"]["params"], **where}
    for r in ref["records"]:
        if r["kind"] == kind and r["method"] == label and _matches(params, r["where"]):
            return "-" if r["value"] is None else _fmt(float(r["value"]))
    return None


def plan_metric(plan: dict) -> str:
    """The metric of the main table: the reference's, else the first scenario metric."""
    ref = plan.get("reference")
    return ref["metric"] if ref else plan["metrics"][0]


def rows_mode(plan: dict) -> str:
    """``"one_at_a_time"`` (Table III) or ``"cross"`` (Table V); older plans lack the key."""
    return plan["layout"].get("rows_mode", "one_at_a_time")


def build_blocks(plan: dict, records: list[dict], notes: _Notes) -> list[Block]:
    """The Table III or Table V blocks of a run (see the module docstring)."""
    metric = plan_metric(plan)
    lay, grid = plan["layout"], plan["grid"]
    split = lay["split"]
    cross = rows_mode(plan) == "cross"
    methods = plan["methods"]
    by_method = {m["key"]: [r for r in records if r["method_key"] == m["key"]] for m in methods}
    levels = grid[split] if split else [None]
    blocks = []
    for slevel in levels:
        sw = {} if split is None else {split: slevel}
        block = Block(title="all cells" if split is None else f"{split} = {slevel}",
                      head=list(lay["rows"]) if cross else ["factor", "level"])

        def cell(where: dict, m: dict, median: bool) -> str:
            recs = [r for r in by_method[m["key"]] if _matches(r["factors"], where)]
            text = _summary(recs, metric, m["label"], notes, median)
            ref = _ref_text(plan, where, m["label"], "median" if median else "cell")
            return text if ref is None else f"{text} \\| {ref}"

        if cross:  # 004 Table V: every combination of the row factors' levels
            fixed = {g: lay["baseline"][g] for g in grid if g not in lay["rows"] and g != split}
            for combo in itertools.product(*(grid[f] for f in lay["rows"])):
                where = {**fixed, **sw, **dict(zip(lay["rows"], combo))}
                block.rows.append(([str(v) for v in combo], False,
                                   [cell(where, m, False) for m in methods]))
        else:  # 004 Table III: one factor at a time around the baseline
            for f in lay["rows"]:
                for level in grid[f]:
                    where = {**{g: lay["baseline"][g] for g in grid if g not in (f, split)},
                             **sw, f: level}
                    bold = _eq(level, lay["baseline"].get(f))
                    block.rows.append(([f, str(level)], bold,
                                       [cell(where, m, False) for m in methods]))
        block.median = [cell(sw, m, True) for m in methods]
        blocks.append(block)
    return blocks


def _runtime_rows(plan: dict, records: list[dict]) -> list[list[str]]:
    rows = []
    for m in plan["methods"]:
        recs = [r for r in records if r["method_key"] == m["key"]]
        wall = [r["wall_time_s"] for r in recs if r.get("wall_time_s") is not None]
        mem = [r["peak_mem_mib"] for r in recs if r.get("peak_mem_mib") is not None]
        count = {s: sum(r["status"] == s for r in recs) for s in ("ok", "failed", "unavailable")}
        rows.append([
            m["label"], m["name"], str(count["ok"]), str(count["failed"]),
            str(count["unavailable"]),
            _fmt(float(np.median(wall))) if wall else "-",
            _fmt(float(np.max(mem))) if mem else "-",
        ])
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
            *(_fmt(float(r["metrics"][k])) if k in r.get("metrics", {}) else "-"
              for k in metrics),
            _fmt(r["wall_time_s"]) if r.get("wall_time_s") is not None else "-",
            _fmt(r["peak_mem_mib"]) if r.get("peak_mem_mib") is not None else "-",
            r.get("reason", ""),
        ])
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") if "\\|" not in c else c for c in row)
              + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]], bold_rows: set[int] = frozenset()) -> str:
    # cells hold Markdown-escaped pipes; HTML shows them plain
    plain = [[c.replace(chr(92) + "|", "|") for c in row] for row in rows]
    return html_table(head, plain, row_class={i: "base" for i in bold_rows})


_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}
th{background:#eee}td:first-child,td:nth-child(2){text-align:left}
tr.base td{font-weight:bold}tr.median td{border-top:2px solid #444;font-style:italic}
img{max-width:100%}code{background:#f4f4f4;padding:0 .2rem}"""


def write_report(out: str | Path) -> dict[str, Path]:
    """Consolidate ``out`` and write ``report.md``, ``report.html`` and the figure.

    Parameters
    ----------
    out : str or Path
        A run directory written by :func:`bench.runner.run_scenario`.

    Returns
    -------
    dict
        Paths of ``parquet``, ``md``, ``html``, ``figure`` (when one was drawn) and
        ``plant_<name>`` for each figure of the plant's ``report_figures`` hook.
    """
    out = Path(out)
    plan = store.read_plan(out)
    paths = {"parquet": store.consolidate(out)}
    records = store.read_records(out, plan)
    notes = _Notes()
    blocks = build_blocks(plan, records, notes)
    metric = plan_metric(plan)
    ref = plan.get("reference")
    labels = [m["label"] for m in plan["methods"]]
    nseeds = len(plan["seeds"])
    png = plot_k_tracks(out, plan, records)
    if png is not None:
        paths["figure"] = out / "figures" / "baseline_K.png"
        store.atomic_write_bytes(paths["figure"], png)
    extra, extra_note = plant_figures(plan)
    for name, data in extra.items():
        paths[f"plant_{name}"] = out / "figures" / f"plant_{name}.png"
        store.atomic_write_bytes(paths[f"plant_{name}"], data)

    cross = rows_mode(plan) == "cross"
    title = f"impbench report: {plan['name']}"
    what = (f"{metric} per cell: ours = mean ± sd over {nseeds} seed(s)"
            + (f" \\| reference ({ref['source']})" if ref else "")
            + ("; rows: every combination of " + " x ".join(plan["layout"]["rows"])
               if cross else "")
            + "; Median row = median over all cells and seeds of the block.")
    md = [f"# {title}", "", plan.get("description", "") or "", "",
          f"Plant `{plan['plant']['name']}` with {json.dumps(plan['plant']['params'])}; "
          f"grid {', '.join(f'{k} {v}' for k, v in plan['grid'].items())}; "
          f"seeds {plan['seeds']}; {len(plan['units'])} units, {len(records)} records.", "",
          f"## Table: {metric}", "", what, ""]
    if ref and ref.get("note"):
        md += [f"Reference note: {ref['note']}", ""]
    html_blocks = []
    for b in blocks:
        head = [*b.head, *labels]
        pad = [""] * (len(b.head) - 1)
        rows = [[*lbl[:-1], f"**{lbl[-1]}**" if bold else lbl[-1], *cells]
                for lbl, bold, cells in b.rows]
        rows.append(["Median", *pad, *b.median])
        md += [f"### {b.title}", "", _md_table(head, rows), ""]
        hrows = [[*lbl, *cells] for lbl, _, cells in b.rows] + [["Median", *pad, *b.median]]
        bold = {i for i, (_, is_b, _) in enumerate(b.rows) if is_b}
        html_blocks.append(f"<h3>{html.escape(b.title)}</h3>" + _html_table(head, hrows, bold)
                           .replace("<tr><td>Median</td>", '<tr class="median"><td>Median</td>'))
    if notes.items:
        md += ["Notes:", ""] + [f"{i + 1}. {n}" for i, n in enumerate(notes.items)] + [""]
    rt_head = ["method", "backend", "ok", "failed", "unavailable", "median wall [s]",
               "max peak mem [MiB]"]
    rt_rows = _runtime_rows(plan, records)
    md += ["## Runtime", "", _md_table(rt_head, rt_rows), ""]
    if png is not None:
        md += ["## Estimated vs true K(t) in the baseline cell", "",
               "![estimated vs true K(t)](figures/baseline_K.png)", ""]
    if extra or extra_note:
        md += ["## Plant figures", "",
               f"Drawn by the plant `{plan['plant']['name']}` (its `report_figures` hook).", ""]
        md += [f"![{name}](figures/plant_{name}.png)" for name in extra]
        md += ([extra_note] if extra_note else []) + [""]
    tidy_head, tidy_rows = _tidy_rows(plan, records)
    md += ["## Appendix: all records", "", _md_table(tidy_head, tidy_rows), ""]
    paths["md"] = out / "report.md"
    store.atomic_write_bytes(paths["md"], "\n".join(md).encode())

    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
         f"<p>{html.escape(plan.get('description', '') or '')}</p>",
         f"<h2>Table: {html.escape(metric)}</h2><p>{html.escape(what.replace(chr(92), ''))}</p>"]
    if ref and ref.get("note"):
        h.append(f"<p>Reference note: {html.escape(ref['note'])}</p>")
    h += html_blocks
    if notes.items:
        h.append("<ol>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes.items) + "</ol>")
    h.append("<h2>Runtime</h2>" + _html_table(rt_head, rt_rows))
    if png is not None:
        b64 = base64.b64encode(png).decode()
        h.append("<h2>Estimated vs true K(t) in the baseline cell</h2>"
                 f"<img alt='estimated vs true K(t)' src='data:image/png;base64,{b64}'>")
    if extra or extra_note:
        h.append("<h2>Plant figures</h2><p>Drawn by the plant "
                 f"<code>{html.escape(plan['plant']['name'])}</code> (its "
                 "<code>report_figures</code> hook).</p>")
        for name, data in extra.items():
            h.append(f"<img alt='{html.escape(name)}' "
                     f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
        if extra_note:
            h.append(f"<p>{html.escape(extra_note)}</p>")
    h.append(f"<details><summary>All records ({len(tidy_rows)})</summary>"
             + _html_table(tidy_head, tidy_rows) + "</details></body></html>")
    paths["html"] = out / "report.html"
    store.atomic_write_bytes(paths["html"], "".join(h).encode())
    return paths
