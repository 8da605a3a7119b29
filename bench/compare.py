"""Run-to-run comparison: did the methods get better or worse between two result sets?

``impbench compare RUN_A RUN_B`` reads two run directories of the *same* scenario (same
plant, fixed plant parameters, grid factors and levels, hence the same cell ids and the same
simulated data per seed; typically the same YAML run with different code or method settings)
and reports, per cell, method and metric, the change ``B - A`` with a paired test across
seeds, plus a summary of what got better or worse.

Statistics
----------
Pairs are (cell, seed) with an ``ok`` record and a finite metric in both runs: the same seed
simulates the same data in both runs (:func:`bench.grid.unit_rng`), so the difference
``d_s = m_B(s) - m_A(s)`` removes the seed-to-seed variation of the data.

* **Per cell: paired t-test** (:func:`scipy.stats.ttest_rel`, two-sided) on the ``d_s`` of
  that cell, with the 95 % t confidence interval of the mean change. Chosen over the
  Wilcoxon signed-rank test because scenarios use few seeds per cell: with ``n`` pairs the
  exact Wilcoxon test cannot give a two-sided p below ``2 / 2**n`` (0.0625 at ``n = 5``), so
  it could never flag a change at the 5 % level with five or fewer seeds, while the t-test
  can. Its assumption, roughly normal ``d_s``, is reasonable within one cell (the same
  method on noise realizations of one setting). With fewer than 3 pairs no test is made
  ("n/a"), and a change that is exactly zero for every seed is reported as "identical".
* **Per method over all cells: Wilcoxon signed-rank test**
  (:func:`scipy.stats.wilcoxon`, two-sided) on all pairs pooled. Across cells the changes
  are not identically distributed (a change of 2 points in a cell at 15 % error is not the
  same as in a cell at 120 %), so the rank test, which needs no normality and resists the
  heavy tails of pooled cells, is the right one there, and with many pairs it has power.

Per-cell p-values are not corrected for multiple comparisons: the summary also counts the
cells still significant after the Benjamini-Hochberg false discovery rate control
(:func:`scipy.stats.false_discovery_control`) over the tested cells of each method and
metric.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from bench import store
from bench.errors import DataError
from bench.htmlkit import html_table
from bench.scenario import canonical_json

__all__ = [
    "HIGHER_IS_BETTER",
    "Change",
    "Comparison",
    "ComparisonError",
    "MethodSummary",
    "compare_runs",
    "write_comparison",
]

#: Metrics for which a larger value is better; every other metric is better when smaller
#: (stiffness_error, rmse, nrmse, nan_share).
HIGHER_IS_BETTER = frozenset({"r2", "vaf"})

#: Fewest pairs for a test.
MIN_PAIRS = 3


class ComparisonError(DataError):
    """Two run directories cannot be compared; the message says what differs."""


@dataclass(frozen=True)
class Change:
    """The change of one metric of one method in one cell, ``B - A``.

    Attributes
    ----------
    cell_id, factors : str, dict
        The cell.
    method, metric : str
        Method label and metric name.
    n : int
        Seeds with an ``ok`` record and a finite metric in both runs (the pairs).
    mean_a, mean_b : float
        Mean metric over those seeds in run A and run B (NaN when ``n == 0``).
    delta : float
        Mean of the per-seed change ``m_B - m_A``.
    ci_low, ci_high : float
        95 % t confidence interval of ``delta`` (NaN when not tested).
    p : float
        Two-sided paired t-test p-value (NaN when not tested).
    verdict : str
        ``better``, ``worse``, ``no significant change``, ``identical`` or
        ``n/a (n < 3)``.
    """

    cell_id: str
    factors: dict
    method: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    p: float
    verdict: str


@dataclass(frozen=True)
class MethodSummary:
    """One method and metric over all cells.

    Attributes
    ----------
    method, metric : str
    pairs : int
        (cell, seed) pairs pooled.
    median_delta : float
        Median per-pair change ``B - A``.
    p : float
        Two-sided Wilcoxon signed-rank p-value over all pairs (NaN when not tested).
    verdict : str
        As :attr:`Change.verdict`, for the pooled pairs.
    counts : dict
        Cells per verdict.
    significant_fdr : int
        Cells whose change stays significant after Benjamini-Hochberg control.
    """

    method: str
    metric: str
    pairs: int
    median_delta: float
    p: float
    verdict: str
    counts: dict
    significant_fdr: int


@dataclass
class Comparison:
    """Everything ``impbench compare`` reports (see :func:`compare_runs`)."""

    run_a: Path
    run_b: Path
    scenario: str
    factors: list
    seeds: list
    metrics: list
    methods: list
    alpha: float
    changes: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    status_changes: list = field(default_factory=list)
    only_a: list = field(default_factory=list)
    only_b: list = field(default_factory=list)
    seeds_only: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    higher: frozenset = HIGHER_IS_BETTER  # metrics for which a larger value is better


def _diff_plans(a: dict, b: dict) -> list[str]:
    """What makes two plans incomparable, one line each (empty when comparable)."""
    out = []
    if a["plant"]["name"] != b["plant"]["name"]:
        out.append(f"plant: {a['plant']['name']!r} in A, {b['plant']['name']!r} in B")
    pa_, pb_ = a["plant"]["params"], b["plant"]["params"]
    for k in sorted(set(pa_) | set(pb_)):
        va, vb = pa_.get(k, "(not set)"), pb_.get(k, "(not set)")
        if canonical_json(va) != canonical_json(vb):
            out.append(f"plant parameter {k!r}: {va!r} in A, {vb!r} in B")
    ga, gb = a["grid"], b["grid"]
    if set(ga) != set(gb):
        only_a, only_b = sorted(set(ga) - set(gb)), sorted(set(gb) - set(ga))
        out.append(f"grid factors differ: only in A {only_a}, only in B {only_b}")
    for f in [f for f in ga if f in gb]:
        la = {canonical_json(v): v for v in ga[f]}
        lb = {canonical_json(v): v for v in gb[f]}
        if set(la) != set(lb):
            out.append(f"levels of grid factor {f!r}: only in A "
                       f"{[la[k] for k in la if k not in lb]}, only in B "
                       f"{[lb[k] for k in lb if k not in la]}")
    if out:
        return out
    cells_a = {canonical_json(u["factors"]): u for u in a["units"]}
    cells_b = {canonical_json(u["factors"]): u["cell_id"] for u in b["units"]}
    for key, u in cells_a.items():
        if key in cells_b and cells_b[key] != u["cell_id"]:
            out.append(f"cell {u['factors']} has id {u['cell_id']} in A but {cells_b[key]} in "
                       "B (the plant's resolved parameters differ, e.g. a changed default)")
    return out


def _pairs(recs_a: dict, recs_b: dict, keys: list, metric: str) -> tuple[np.ndarray, ...]:
    va, vb = [], []
    for k in keys:
        ra, rb = recs_a.get(k), recs_b.get(k)
        if ra is None or rb is None or ra["status"] != "ok" or rb["status"] != "ok":
            continue
        xa, xb = ra["metrics"].get(metric), rb["metrics"].get(metric)
        if xa is None or xb is None or not (math.isfinite(xa) and math.isfinite(xb)):
            continue
        va.append(float(xa))
        vb.append(float(xb))
    return np.asarray(va), np.asarray(vb)


def _verdict(d: np.ndarray, p: float, metric: str, alpha: float, center=np.mean,
             higher: frozenset = HIGHER_IS_BETTER) -> str:
    """Verdict of the changes ``d``; the sign of ``center(d)`` gives the direction."""
    if d.size and np.all(d == 0):
        return "identical"
    if d.size < MIN_PAIRS or not math.isfinite(p):
        return f"n/a (n < {MIN_PAIRS})"
    if p >= alpha:
        return "no significant change"
    up = float(center(d)) > 0
    return "better" if up == (metric in higher) else "worse"


def _cell_change(cell: dict, label: str, metric: str, a: np.ndarray, b: np.ndarray,
                 alpha: float, higher: frozenset = HIGHER_IS_BETTER) -> Change:
    d = b - a
    nan = float("nan")
    p = lo = hi = nan
    if d.size >= MIN_PAIRS and not np.all(d == 0):
        res = stats.ttest_rel(b, a)  # paired t-test on d = b - a
        p = float(res.pvalue)
        ci = res.confidence_interval(0.95)
        lo, hi = float(ci.low), float(ci.high)
    return Change(
        cell_id=cell["cell_id"], factors=cell["factors"], method=label, metric=metric,
        n=int(d.size), mean_a=float(a.mean()) if a.size else nan,
        mean_b=float(b.mean()) if b.size else nan, delta=float(d.mean()) if d.size else nan,
        ci_low=lo, ci_high=hi, p=p, verdict=_verdict(d, p, metric, alpha, higher=higher),
    )


def compare_runs(run_a: str | Path, run_b: str | Path, *, alpha: float = 0.05) -> Comparison:
    """Compare the results of two runs of the same scenario (see the module docstring).

    Parameters
    ----------
    run_a, run_b : str or Path
        Run directories written by :func:`bench.runner.run_scenario`; changes are ``B - A``.
    alpha : float
        Significance level of the paired tests, in (0, 1).

    Returns
    -------
    Comparison

    Raises
    ------
    ComparisonError
        The runs differ in plant, fixed plant parameters, grid factors, levels or cell ids
        (each difference named), or share no seed, method label or metric.
    FileNotFoundError
        A directory is not a run directory.
    """
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ComparisonError(f"alpha must be in (0, 1); got {alpha!r}")
    run_a, run_b = Path(run_a), Path(run_b)
    pa_, pb_ = store.read_plan(run_a), store.read_plan(run_b)
    diffs = _diff_plans(pa_, pb_)
    if diffs:
        raise ComparisonError(
            f"{run_a} and {run_b} are not results of the same scenario:\n  "
            + "\n  ".join(diffs))
    seeds_a, seeds_b = list(pa_["seeds"]), list(pb_["seeds"])
    seeds = [s for s in seeds_a if s in seeds_b]
    labels_a = {m["label"]: m for m in pa_["methods"]}
    labels_b = {m["label"]: m for m in pb_["methods"]}
    methods = [m for m in labels_a if m in labels_b]
    metrics = [m for m in pa_["metrics"] if m in pb_["metrics"]]
    missing = [what for what, items in (("seed", seeds), ("method label", methods),
                                        ("metric", metrics)) if not items]
    if missing:
        raise ComparisonError(
            f"{run_a} and {run_b} have no {', no '.join(missing)} in common "
            f"(seeds {seeds_a} vs {seeds_b}; methods {list(labels_a)} vs {list(labels_b)}; "
            f"metrics {pa_['metrics']} vs {pb_['metrics']})")
    cmp = Comparison(
        run_a=run_a, run_b=run_b, scenario=pb_["name"], factors=list(pa_["grid"]), seeds=seeds,
        metrics=metrics, methods=methods, alpha=float(alpha),
        only_a=[m for m in labels_a if m not in labels_b],
        only_b=[m for m in labels_b if m not in labels_a],
        seeds_only={"A": [s for s in seeds_a if s not in seeds_b],
                    "B": [s for s in seeds_b if s not in seeds_a]},
        higher=frozenset(m for m, i in pb_.get("metric_info", {}).items()
                         if i.get("better") == "higher") or HIGHER_IS_BETTER,
    )
    if pa_["name"] != pb_["name"]:
        cmp.notes.append(f"scenario names differ: {pa_['name']!r} (A), {pb_['name']!r} (B)")
    for lab in methods:
        ma, mb = labels_a[lab], labels_b[lab]
        if ma["name"] != mb["name"] or canonical_json(ma["params"]) != canonical_json(
                mb["params"]):
            cmp.settings[lab] = {"A": {"name": ma["name"], "params": ma["params"]},
                                 "B": {"name": mb["name"], "params": mb["params"]}}

    def index(run: Path, plan: dict) -> dict:
        out = {}
        for r in store.read_records(run, plan):
            out[(r["unit_id"], r["label"])] = r
        return out

    recs_a, recs_b = index(run_a, pa_), index(run_b, pb_)
    cells: dict[str, dict] = {}
    for u in pa_["units"]:
        if u["seed"] in seeds:
            c = cells.setdefault(u["cell_id"], {"cell_id": u["cell_id"],
                                                "factors": u["factors"], "units": []})
            c["units"].append(u["unit_id"])
    for lab in methods:
        for c in cells.values():
            for uid in c["units"]:
                ra, rb = recs_a.get((uid, lab)), recs_b.get((uid, lab))
                sa = "missing" if ra is None else ra["status"]
                sb = "missing" if rb is None else rb["status"]
                if sa != sb:
                    seed = (ra or rb)["seed"]
                    cmp.status_changes.append({
                        "factors": c["factors"], "seed": seed, "method": lab, "A": sa,
                        "B": sb, "reason_A": "" if ra is None else ra.get("reason", ""),
                        "reason_B": "" if rb is None else rb.get("reason", "")})
        for metric in metrics:
            cell_changes, all_d = [], []
            for c in cells.values():
                keys = [(uid, lab) for uid in c["units"]]
                a, b = _pairs(recs_a, recs_b, keys, metric)
                cell_changes.append(_cell_change(c, lab, metric, a, b, alpha, cmp.higher))
                all_d.append(b - a)
            cmp.changes.extend(cell_changes)
            cmp.summary.append(_summarize(lab, metric, cell_changes, cmp.higher,
                                          np.concatenate(all_d), alpha))
    return cmp


def _summarize(label: str, metric: str, changes: list[Change], higher: frozenset,
               d: np.ndarray,
               alpha: float) -> MethodSummary:
    p = float("nan")
    if d.size >= MIN_PAIRS and np.any(d != 0):
        p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    tested = np.array([c.p for c in changes if math.isfinite(c.p)])
    fdr = int(np.sum(stats.false_discovery_control(tested) < alpha)) if tested.size else 0
    return MethodSummary(
        method=label, metric=metric, pairs=int(d.size),
        median_delta=float(np.median(d)) if d.size else float("nan"), p=p,
        verdict=_verdict(d, p, metric, alpha, center=np.median, higher=higher),
        counts=counts,
        significant_fdr=fdr,
    )


# --------------------------------------------------------------------------- output


def _fmt(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:+.3g}" if signed else f"{x:.3g}"
    return text if abs(x) < 1000 else (f"{x:+.0f}" if signed else f"{x:.0f}")


def _p(x: float) -> str:
    return "n/a" if not math.isfinite(x) else ("<0.001" if x < 1e-3 else f"{x:.3f}")


def _cells(factors: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in factors.items())


def _tables(cmp: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, head, rows) of every table of the report."""
    direction = {m: "higher is better" if m in cmp.higher else "lower is better"
                 for m in cmp.metrics}
    head = ["method", "metric", "pairs", "median Δ (B-A)", "Wilcoxon p", "overall",
            "cells better", "cells worse", "no sig. change", "identical", "n/a",
            f"sig. after BH (q<{cmp.alpha:g})"]
    rows = []
    for s in cmp.summary:
        c = s.counts
        rows.append([s.method, f"{s.metric} ({direction[s.metric]})", str(s.pairs),
                     _fmt(s.median_delta, True), _p(s.p), s.verdict,
                     str(c.get("better", 0)), str(c.get("worse", 0)),
                     str(c.get("no significant change", 0)), str(c.get("identical", 0)),
                     str(sum(v for k, v in c.items() if k.startswith("n/a"))),
                     str(s.significant_fdr)])
    out = [("Summary", head, rows)]
    for metric in cmp.metrics:
        head = [*cmp.factors, "method", "n", "mean A", "mean B", "Δ (B-A)", "95 % CI",
                "paired t p", "verdict"]
        rows = []
        for c in (c for c in cmp.changes if c.metric == metric):
            ci = ("n/a" if not math.isfinite(c.ci_low)
                  else f"[{_fmt(c.ci_low, True)}, {_fmt(c.ci_high, True)}]")
            rows.append([*(str(c.factors.get(f)) for f in cmp.factors), c.method, str(c.n),
                         _fmt(c.mean_a), _fmt(c.mean_b), _fmt(c.delta, True), ci, _p(c.p),
                         c.verdict])
        out.append((f"{metric} per cell ({direction[metric]})", head, rows))
    if cmp.status_changes:
        head = [*cmp.factors, "seed", "method", "status A", "status B", "reason A", "reason B"]
        rows = [[*(str(s["factors"].get(f)) for f in cmp.factors), str(s["seed"]), s["method"],
                 s["A"], s["B"], s["reason_A"], s["reason_B"]] for s in cmp.status_changes]
        out.append(("Status changes", head, rows))
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    return html_table(head, rows,
                      cell_class=lambda c: c if c in ("better", "worse") else None)


def _headline(cmp: Comparison) -> list[str]:
    lines = []
    for s in cmp.summary:
        c = s.counts
        cells = sum(c.values())
        word = {"better": "better", "worse": "worse"}.get(s.verdict, s.verdict)
        lines.append(
            f"{s.method}, {s.metric}: overall {word} (median Δ {_fmt(s.median_delta, True)} "
            f"over {s.pairs} pairs, Wilcoxon p {_p(s.p)}); {c.get('better', 0)} of {cells} "
            f"cells better, {c.get('worse', 0)} worse.")
    fixed = sum(s["A"] != "ok" and s["B"] == "ok" for s in cmp.status_changes)
    broke = sum(s["A"] == "ok" and s["B"] != "ok" for s in cmp.status_changes)
    if fixed or broke:
        lines.append(f"Status: {fixed} result(s) now ok that were not, {broke} result(s) "
                     "no longer ok (see Status changes).")
    return lines


_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}th{background:#eee}
td.better{background:#d9f2d9}td.worse{background:#f7d4d4}code{background:#f4f4f4}"""

_METHOD_TEXT = (
    "Changes are B - A per seed, paired on the same simulated data (same cell and seed). "
    "Per cell: two-sided paired t-test over the seeds (with fewer than 3 pairs: n/a), chosen "
    "over the Wilcoxon signed-rank test because its exact p-value cannot go below 2/2^n "
    "(0.0625 with 5 seeds). Overall per method: two-sided Wilcoxon signed-rank test over all "
    "(cell, seed) pairs, robust to the unequal spread of changes across cells. "
    "Verdicts at alpha = {alpha:g}; per-cell p-values are not corrected for multiple "
    "comparisons (the Summary also counts the cells significant after Benjamini-Hochberg)."
)


def _to_json(cmp: Comparison) -> dict:
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    d = asdict(cmp)
    d["run_a"], d["run_b"] = str(cmp.run_a), str(cmp.run_b)
    d["higher"] = sorted(cmp.higher)
    return clean(d)


def write_comparison(cmp: Comparison, out: str | Path) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.html`` and ``compare.json`` into ``out``.

    Parameters
    ----------
    cmp : Comparison
        From :func:`compare_runs`.
    out : str or Path
        Output folder (created).

    Returns
    -------
    dict
        Paths by key ``md``, ``html``, ``json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"impbench comparison: {cmp.scenario}"
    intro = [f"A = `{cmp.run_a}`, B = `{cmp.run_b}`; seeds {cmp.seeds}; methods "
             f"{', '.join(cmp.methods)}; metrics {', '.join(cmp.metrics)}."]
    if cmp.only_a or cmp.only_b:
        intro.append(f"Not compared: methods only in A {cmp.only_a}, only in B {cmp.only_b}.")
    if cmp.seeds_only["A"] or cmp.seeds_only["B"]:
        intro.append(f"Not compared: seeds only in A {cmp.seeds_only['A']}, only in B "
                     f"{cmp.seeds_only['B']}.")
    for lab, s in cmp.settings.items():
        intro.append(f"Settings of {lab} changed: A {s['A']['name']} {s['A']['params']}, "
                     f"B {s['B']['name']} {s['B']['params']}.")
    intro += cmp.notes
    how = _METHOD_TEXT.format(alpha=cmp.alpha)
    tables = _tables(cmp)
    md = [f"# {title}", "", *intro, "", "## What changed", "",
          *[f"* {ln}" for ln in _headline(cmp)], "", how, ""]
    for name, head, rows in tables:
        md += [f"## {name}", "", _md_table(head, rows), ""]
    paths = {"md": out / "compare.md", "html": out / "compare.html",
             "json": out / "compare.json"}
    store.atomic_write_bytes(paths["md"], "\n".join(md).encode())
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
         f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
         *[f"<p>{html.escape(p)}</p>" for p in intro], "<h2>What changed</h2><ul>",
         *[f"<li>{html.escape(ln)}</li>" for ln in _headline(cmp)], "</ul>",
         f"<p>{html.escape(how)}</p>"]
    for name, head, rows in tables:
        h.append(f"<h2>{html.escape(name)}</h2>" + _html_table(head, rows))
    h.append("</body></html>")
    store.atomic_write_bytes(paths["html"], "".join(h).encode())
    store.atomic_write_bytes(paths["json"], json.dumps(_to_json(cmp), indent=1).encode())
    return paths
