"""Sanderink et al.'s arm identification with and without deep-muscle EMG (M1 vs M2) as a
report layout.

Layout ``arm-cr``, for calibration scenarios whose methods identify the arm's parameters
from several initial guesses each (the ``deep-lsq`` calibrator with ``method: M1`` and
``method: M2``) on ``arm-identification`` records. Every initial guess is one
identification run (Sanderink et al. Sec. IV-C); the report gives

* the **Cr table**: per method, median [25 %, 75 %] over all runs (seeds x records x
  guesses) of Cr1, Cr2, Cr2^m (over the M1 parameters for both methods, Sanderink et al.
  Sec. IV), Cr2 over each method's own vector, Cr2 with base inertial combinations and Cr2
  over the well-excited parameters; the initial guesses' scores; the time per epoch and
  guess beside the published one;
* **paired Wilcoxon signed-rank tests** of the first two methods on each score, paired on
  (seed, record, guess) (:func:`scipy.stats.wilcoxon`);
* the well-excited parameter count per record, the **per-parameter errors** (median % error
  per method, structural identifiability without deep EMG, how often well excited);
* figures: Cr1 / Cr2 / Cr2-base curves over the epochs (median and quartiles, Sanderink et
  al. Fig. 4 left), final Cr2 and Cr2^m box plots, per-parameter errors (their Fig. 5).

Per-run values come from the records' arrays (``guess_*``, ``curve_*``, ``percent_error``,
``well_excited`` ...: the calibrator's ``extra_arrays``). Records without them are
summarized by their metrics (the medians over their guesses) and the curves are left out.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, StrictStr

from bench import store
from bench.layout import Layout, LayoutContext, StrictModel
from bench.layouts.table import add_runtime_and_records, partial_warning
from bench.reportkit import Report, new_figure, png_bytes
from bench.yamlfile import Collector

__all__ = ["ArmCrLayout", "collect_runs", "paired_tests"]

SCORES = ("cr1", "cr2", "cr2m", "cr2_own", "cr2_base", "cr2_we")
_NAMES = {"cr1": "Cr1", "cr2": "Cr2", "cr2m": "Cr2^m", "cr2_own": "Cr2 own",
          "cr2_base": "Cr2 base", "cr2_we": "Cr2 well-excited"}
_COLORS = ("tab:red", "tab:green", "tab:blue", "tab:purple")


class _Reference(StrictModel):
    source: StrictStr = Field(min_length=1)
    note: StrictStr = ""
    epoch_time_s: float | None = Field(None, gt=0)
    run_time_h: float | None = Field(None, gt=0)


def _iqr(values: Any) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "-"
    q1, m, q3 = np.percentile(v, [25, 50, 75])
    return f"{m:.2f} [{q1:.2f}, {q3:.2f}]"


def collect_runs(out: Path, records: list[dict]) -> list[dict]:
    """One entry per identification run (record x guess) of the ok records.

    Each has ``label``, ``method_key``, ``seed``, ``record`` (the record's factors as a
    string), ``guess``, ``final`` and ``initial`` (score -> value), ``wall`` (the record's),
    ``epoch_time``, and from the arrays when present ``curves`` (score -> (n_snap,)),
    ``epochs``, ``names``, ``percent_error``, ``identifiable``, and the record's excitation
    analysis (``excitation``: names, relative, well_excited). Records without per-guess
    arrays give one run (guess -1) with their metrics.
    """
    runs = []
    for r in records:
        if r["status"] != "ok":
            continue
        where = ", ".join(f"{k}={v}" for k, v in sorted(r["factors"].items()))
        base = {"label": r["label"], "method_key": r["method_key"], "seed": r["seed"],
                "record": where, "wall": r.get("wall_time_s"),
                "epoch_time": r["metrics"].get("epoch_time", np.nan)}
        a = None
        if r.get("arrays") and (out / r["arrays"]).is_file():
            a = store.load_arrays(out / r["arrays"])
        if a is None or "guess_cr2" not in a:
            runs.append({**base, "guess": -1,
                         "final": {k: r["metrics"].get(k, np.nan) for k in SCORES},
                         "initial": {k: r["metrics"].get(f"initial_{k}", np.nan)
                                     for k in SCORES}})
            continue
        G = int(np.asarray(a["guess_cr2"]).size)
        exc = {"names": [str(n) for n in a["excitation_names"]],
               "relative": np.asarray(a["excitation_relative"], float),
               "well_excited": np.asarray(a["well_excited"], bool)}
        for g in range(G):
            runs.append({
                **base, "guess": g,
                "final": {k: float(a[f"guess_{k}"][g]) for k in SCORES},
                "initial": {k: float(a[f"guess_initial_{k}"][g]) for k in SCORES},
                "curves": {k: np.asarray(a[f"curve_{k}"][g], float) for k in SCORES},
                "epochs": np.asarray(a["snapshot_epochs"], float),
                "names": [str(n) for n in a["deep_names"]],
                "percent_error": np.asarray(a["percent_error"][g], float),
                "identifiable": np.asarray(a["deep_identifiable"], bool),
                "excitation": exc if g == 0 else None,
            })
    return runs


def paired_tests(runs: list[dict], a: str, b: str) -> dict[str, dict]:
    """Wilcoxon signed-rank test of methods ``a`` vs ``b`` (labels) on each final score,
    paired on (seed, record, guess).

    Returns
    -------
    dict
        score -> ``n`` pairs, ``p``, ``median_diff`` (a - b), ``a_lower`` (pairs where a is
        lower); NaN ``p`` with fewer than two finite pairs or all pairs equal.
    """
    from scipy.stats import wilcoxon

    def key(r: dict) -> tuple:
        return r["seed"], r["record"], r["guess"]

    ra = {key(r): r["final"] for r in runs if r["label"] == a}
    rb = {key(r): r["final"] for r in runs if r["label"] == b}
    common = sorted(set(ra) & set(rb))
    out = {}
    for k in SCORES:
        x = np.array([ra[c][k] for c in common], dtype=float)
        y = np.array([rb[c][k] for c in common], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 2 or np.all(x[ok] == y[ok]):
            out[k] = {"n": int(ok.sum()), "p": float("nan"), "median_diff": float("nan"),
                      "a_lower": int(np.sum(x[ok] < y[ok]))}
            continue
        res = wilcoxon(x[ok], y[ok])
        out[k] = {"n": int(ok.sum()), "p": float(res.pvalue),
                  "median_diff": float(np.median(x[ok] - y[ok])),
                  "a_lower": int(np.sum(x[ok] < y[ok]))}
    return out


class ArmCrLayout(Layout):
    """Cr table, paired tests, per-parameter errors and curves of the arm identification."""

    name = "arm-cr"
    tasks = ("calibration",)
    options_model = StrictModel
    reference_model = _Reference

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        if len(ctx.labels) < 1:
            col.add(("name",), "layout 'arm-cr' needs at least one method")
        return options.model_dump(mode="json")

    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        out = Path(out)
        ref = plan.get("reference") or {}
        rep = Report(f"impbench report: {plan['name']}", partial_warning(plan, records))
        rep.cite("Sanderink et al.")
        rep.para(plan.get("description", ""))
        labels = [m["label"] for m in plan["methods"]]
        runs = collect_runs(out, records)
        per_guess = any(r["guess"] >= 0 for r in runs)
        n_rec = len({(r["seed"], r["record"]) for r in runs})
        rep.para(f"Plant `{plan['plant']['name']}` {plan['plant']['params']}; grid "
                 f"{plan['grid'] or 'none'}; seeds {plan['seeds']}; methods "
                 f"{', '.join(labels)}; {len(runs)} identification runs on {n_rec} records.")
        if ref.get("note"):
            rep.para(f"Reference note: {ref['note']}")
        self._table(rep, labels, runs, per_guess, ref)
        if len(labels) >= 2:
            self._tests(rep, labels[0], labels[1], runs)
        if per_guess:
            self._excitation(rep, runs)
            rep.figure("cr_curves", self._curves_figure(labels, runs),
                       "Cr1, Cr2 and Cr2 (base inertial) over the epochs, median and "
                       "quartiles over the runs; final Cr2 and Cr2^m")
            fig = self._param_figure(labels, runs)
            if fig is not None:
                rep.figure("parameter_errors", fig, "per-parameter % error, median and "
                                                    "quartiles over the runs")
            self._param_table(rep, labels, runs)
        else:
            rep.para("The records carry no per-guess arrays (the calibration task did not "
                     "save the calibrator's extra arrays): the table summarizes each record "
                     "by the medians over its guesses, and the curves and per-parameter "
                     "errors are left out.", css="warn")
        failed = [r for r in records if r["status"] != "ok"]
        if failed:
            rep.para(f"{len(failed)} record(s) did not finish, e.g. {failed[0]['label']}: "
                     f"{failed[0].get('reason', '')}", css="warn")
        add_runtime_and_records(rep, plan, records)
        return rep.write(out)

    # ------------------------------------------------------------------ sections
    @staticmethod
    def _table(rep: Report, labels: list[str], runs: list[dict], per_guess: bool,
               ref: dict) -> None:
        rep.heading("Parameter criteria (Sanderink et al. Eq.22-23)")
        rep.para("Final scores, median [25 %, 75 %] over the runs"
                 + (" (one per initial guess)" if per_guess else
                    " (here: one per record, each its guesses' median)")
                 + ", percent. Cr1, Cr2, Cr2^m over the M1 parameters for every method "
                 "(Sanderink et al. Sec. IV: only the parameters identifiable in M1 are "
                 "compared); Cr2 own: over each method's own vector; Cr2 base: inertial "
                 "parameters replaced by their identifiable base combinations; Cr2 "
                 "well-excited: over the M1 parameters whose relative Gauss-Newton curvature "
                 "at the truth reaches the identifier's threshold on the record. Entries with "
                 "a zero true value are left out.")
        head = ["method", "runs", *(_NAMES[k] for k in SCORES), "ms / epoch / guess",
                "wall per record [s]"]
        rows = []
        for lab in labels:
            rr = [r for r in runs if r["label"] == lab]
            if not rr:
                continue
            walls = [r["wall"] for r in rr if r["wall"] is not None]
            ept = np.asarray([r["epoch_time"] for r in rr], dtype=float)
            ept = ept[np.isfinite(ept)]
            rows.append([lab, str(len(rr)),
                         *(_iqr([r["final"][k] for r in rr]) for k in SCORES),
                         f"{1e3 * np.median(ept):.2f}" if ept.size else "-",
                         f"{np.median(walls):.0f}" if walls else "-"])
        first = [r for r in runs if r["label"] == labels[0]] if labels else []
        if first:
            rows.append(["initial guess", str(len(first)),
                         *(_iqr([r["initial"][k] for r in first]) for k in SCORES), "-", "-"])
        rep.table(head, rows)
        if ref.get("epoch_time_s") or ref.get("run_time_h"):
            rep.para(f"{ref.get('source', 'Published')}: "
                     + (f"{ref['epoch_time_s']:g} s per epoch" if ref.get("epoch_time_s")
                        else "")
                     + (f", {ref['run_time_h']:g} h per run" if ref.get("run_time_h") else "")
                     + ". Model and sample counts differ, so the comparison is indicative.")

    @staticmethod
    def _tests(rep: Report, a: str, b: str, runs: list[dict]) -> None:
        tests = paired_tests(runs, a, b)
        rep.heading(f"{a} vs {b}: paired tests", 3)
        rep.para(f"Wilcoxon signed-rank test on each final score, {a} vs {b} paired on "
                 "(seed, record, guess).")
        rep.table(["score", "pairs", f"median({a} - {b})", f"{a} lower in", "p"],
                  [[_NAMES[k], str(t["n"]),
                    "-" if not math.isfinite(t["median_diff"]) else f"{t['median_diff']:.2f}",
                    str(t["a_lower"]), "-" if not math.isfinite(t["p"]) else f"{t['p']:.3g}"]
                   for k, t in tests.items()])

    @staticmethod
    def _excitation(rep: Report, runs: list[dict]) -> None:
        recs = {}
        for r in runs:
            if r.get("excitation") is not None:
                recs.setdefault((r["seed"], r["record"]), r["excitation"])
        if not recs:
            return
        counts = [f"seed {s}, {w}: {int(np.sum(e['well_excited']))} of {len(e['names'])}"
                  for (s, w), e in sorted(recs.items())]
        rep.para("Well-excited M1 parameters per record: " + "; ".join(counts) + ".")

    @staticmethod
    def _curves_figure(labels: list[str], runs: list[dict]) -> bytes:
        fig, (axs,) = new_figure(19, 3.4, 1, 5)
        for i, lab in enumerate(labels):
            rr = [r for r in runs if r["label"] == lab and "curves" in r]
            if not rr:
                continue
            ep = rr[0]["epochs"]
            col = _COLORS[i % len(_COLORS)]
            for ax, k in zip(axs[:3], ("cr1", "cr2", "cr2_base")):
                C = np.array([r["curves"][k] for r in rr if len(r["curves"][k]) == len(ep)],
                             dtype=float)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    q1, med, q3 = np.nanpercentile(C, [25, 50, 75], axis=0)
                ax.plot(ep, med, color=col, label=lab)
                ax.fill_between(ep, q1, q3, color=col, alpha=0.3)
        for ax, t in zip(axs[:3], ("Cr$_1$ (%)", "Cr$_2$ (%)", "Cr$_2$, base inertial (%)")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(t)
            ax.legend(fontsize=8)
        present = [lab for lab in labels if any(r["label"] == lab for r in runs)]
        for ax, k, t in ((axs[3], "cr2", "final Cr$_2$ (%)"),
                         (axs[4], "cr2m", "final Cr$_2^m$ (%)")):
            ax.boxplot([[r["final"][k] for r in runs if r["label"] == lab] for lab in present],
                       tick_labels=present)
            ax.set_title(t, fontsize=10)
        return png_bytes(fig)

    @staticmethod
    def _param_errors(labels: list[str], runs: list[dict]) -> tuple[list[str], dict]:
        """Parameter names of the first method and each method's % errors on them."""
        first = next((r for r in runs if r["label"] == labels[0] and "names" in r), None)
        if first is None:
            return [], {}
        names = first["names"]
        errs = {}
        for lab in labels:
            E = []
            for r in runs:
                if r["label"] != lab or "names" not in r:
                    continue
                idx = {n: i for i, n in enumerate(r["names"])}
                E.append([r["percent_error"][idx[n]] if n in idx else np.nan for n in names])
            if E:
                errs[lab] = np.asarray(E, dtype=float)
        return names, errs

    def _param_figure(self, labels: list[str], runs: list[dict]) -> bytes | None:
        names, errs = self._param_errors(labels, runs)
        if not names:
            return None
        fig, ((ax,),) = new_figure(max(8.0, 0.12 * len(names)), 3.4)
        for k, (lab, E) in enumerate(errs.items()):
            x = np.arange(len(names)) + (k - 0.5) * 0.35
            with warnings.catch_warnings():  # zero-truth entries are NaN (not scored)
                warnings.simplefilter("ignore", RuntimeWarning)
                q1, med, q3 = np.nanpercentile(E, [25, 50, 75], axis=0)
            ax.errorbar(x, med, yerr=[med - q1, q3 - med], fmt="o", ms=2,
                        color=_COLORS[k % len(_COLORS)], label=lab)
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=5)
        ax.set_ylabel("% error")
        ax.legend(fontsize=8)
        return png_bytes(fig)

    def _param_table(self, rep: Report, labels: list[str], runs: list[dict]) -> None:
        names, errs = self._param_errors(labels, runs)
        if not names:
            return
        ident = {}
        for r in runs:
            if "names" in r:
                ident.update(zip(r["names"], r["identifiable"]))
        exc: dict[str, list] = {}
        seen = set()
        for r in runs:  # one excitation analysis per record (every method repeats it)
            e = r.get("excitation")
            if e is not None and (r["seed"], r["record"]) not in seen:
                seen.add((r["seed"], r["record"]))
                for n, w, rel in zip(e["names"], e["well_excited"], e["relative"]):
                    exc.setdefault(n, []).append((bool(w), float(rel)))
        rep.heading("Per parameter", 3)
        rep.para("Median final % error per parameter and method (NaN: zero true value, not "
                 "scored); identifiable without deep EMG: Sanderink et al. Sec. III-D; well "
                 "excited: records where the parameter's relative Gauss-Newton curvature "
                 "reaches the threshold, and the median relative curvature.")
        head = ["parameter", "identifiable without deep EMG", "well excited (records)",
                "median rel. curvature", *(f"{lab} median % err" for lab in errs)]
        rows = []
        for i, n in enumerate(names):
            cells = []
            for E in errs.values():
                v = E[:, i]
                cells.append(f"{np.nanmedian(v):.2f}" if np.isfinite(v).any() else "-")
            if n in exc:
                w = sum(x[0] for x in exc[n])
                we, rel = f"{w}/{len(exc[n])}", f"{np.median([x[1] for x in exc[n]]):.1e}"
            else:
                we, rel = "-", "-"
            rows.append([n, "yes" if ident.get(n, False) else "no", we, rel, *cells])
        rep.table(head, rows, collapsed=f"All {len(rows)} parameters")
