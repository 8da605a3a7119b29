"""The torque-stiffness EMG model study's Table 1 and its second and third tests (layout).

Layout ``ankle-table1``, for calibration scenarios whose grid sweeps ``alpha`` and ``beta``
(and optionally ``stiffness_reference``), one seed per synthetic subject. Per method, per
stiffness reference and per subject (seed):

* **First test (Table 1):** the "Torque only" calibration (``beta = 0``, the largest
  ``alpha``) and the "Torque and stiffness" one (the (alpha, beta) with the lowest
  ``e_tau_k`` on the calibration window) scored blindly on the held-out trial: median (IQR)
  over its cycles of the nRMSE and r2 of torque and stiffness, beside the published values
  (``reference.subjects``, keyed by seed);
* **Second test:** the combinations whose E_tau (E_tau+K) is within ``acceptance`` times the
  minimum (the study's 20 % RMSE rule: 1.2^2 = 1.44), the spread of the accepted calibrated
  parameters (IQR as % of the permitted range, median over MTUs; the study's Fig. 6), Cr1/Cr2
  to the true parameters, and the conditioning of the torque-only and torque-and-stiffness
  solutions (condition number of the scaled Jacobian: the stiffness term should shrink the
  feasible set);
* **Third test:** the torque-and-stiffness model's stiffness on the unperturbed trial against
  the perturbed one (RMSE, r2 of the mean profiles, share of the cycle where the paired
  t-test is significant);
* a comparison of the methods (blind scores of the selected calibrations, wall time per
  calibration), figures of the (alpha, beta) error maps, parameter spreads and mean profiles.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, StrictInt, StrictStr

from bench import store
from bench.layout import Layout, LayoutContext, StrictModel
from bench.layouts.calibration import med_iqr
from bench.layouts.table import add_runtime_and_records, partial_warning
from bench.reportkit import Report, fmt, new_figure, png_bytes
from bench.yamlfile import Collector

__all__ = ["AnkleTable1Layout", "select"]

_METRICS = (("torque_nrmse", "nRMSE torque"), ("stiffness_nrmse", "nRMSE stiffness"),
            ("torque_r2", "r2 torque"), ("stiffness_r2", "r2 stiffness"))
_ROWS = (("torque_only", "Torque only"), ("torque_stiffness", "Torque and stiffness"))
_REQUIRED = ("torque_nrmse", "torque_r2", "stiffness_nrmse", "stiffness_r2", "e_tau",
             "e_tau_k")


class _Options(StrictModel):
    acceptance: float = Field(1.44, ge=1.0, le=100.0)


class _RefRow(StrictModel):
    torque_nrmse: float
    stiffness_nrmse: float
    torque_r2: float
    stiffness_r2: float
    iqr: dict[StrictStr, float] = Field(default_factory=dict)


class _RefSubject(StrictModel):
    torque_only: _RefRow
    torque_stiffness: _RefRow


class _Reference(StrictModel):
    source: StrictStr = Field(min_length=1)
    note: StrictStr = ""
    subjects: dict[StrictInt, _RefSubject] = Field(default_factory=dict)
    accepted_torque: dict[StrictInt, StrictInt] = Field(default_factory=dict)
    accepted_total: dict[StrictInt, StrictInt] = Field(default_factory=dict)
    parameter_iqr_percent: dict[StrictStr, float] = Field(default_factory=dict)
    third_test: StrictStr = ""
    wall_time_min_per_calibration: list[float] = Field(default_factory=list)


def _f(x: Any, nd: int = 2) -> str:
    return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"


def select(recs: list[dict]) -> dict[str, dict]:
    """The study's two selected calibrations among one subject's (alpha, beta) records:
    ``torque_only`` (beta = 0, largest alpha) and ``torque_stiffness`` (lowest E_tau+K on
    the calibration window)."""
    ok = [r for r in recs if r["status"] == "ok"]
    out = {}
    t_only = [r for r in ok if float(r["factors"].get("beta", 0.0)) == 0.0]
    if t_only:
        out["torque_only"] = max(t_only, key=lambda r: float(r["factors"].get("alpha", 1.0)))
    with_k = [r for r in ok if np.isfinite(r["metrics"].get("e_tau_k", np.nan))]
    if with_k:
        out["torque_stiffness"] = min(with_k, key=lambda r: r["metrics"]["e_tau_k"])
    return out


class AnkleTable1Layout(Layout):
    """Table 1 and the second and third tests of the torque-stiffness EMG model study."""

    name = "ankle-table1"
    tasks = ("calibration",)
    options_model = _Options
    reference_model = _Reference

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        for f in ("alpha", "beta"):
            if f not in ctx.grid:
                col.add(("name",), f"layout 'ankle-table1' needs {f!r} as a grid factor")
        missing = [m for m in _REQUIRED if m not in ctx.metrics]
        if missing:
            col.add(("name",), f"layout 'ankle-table1' needs the metrics {missing}")
        return options.model_dump(mode="json")

    @classmethod
    def check_reference(cls, ctx: LayoutContext, options: dict, reference: Any,
                        col: Collector) -> dict:
        for s in [*reference.subjects, *reference.accepted_torque, *reference.accepted_total]:
            if s not in ctx.seeds:
                col.add(("subjects", s), f"subject {s} is not a seed of this scenario "
                                         f"{list(ctx.seeds)} (subjects are keyed by seed)")
        return reference.model_dump(mode="json")

    # ------------------------------------------------------------------ report
    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        acc = float(plan["layout"].get("acceptance", 1.44))
        ref = plan.get("reference") or {}
        rep = Report(f"impbench report: {plan['name']}", partial_warning(plan, records))
        rep.cite("Torque-stiffness EMG model study")
        rep.para(plan.get("description", ""))
        grid = plan["grid"]
        refs = grid.get("stiffness_reference", [None])
        methods = plan["methods"]
        n_comb = len({(r["factors"].get("alpha"), r["factors"].get("beta")) for r in records})
        rep.para(f"{len(plan['seeds'])} synthetic subjects (one per seed), {n_comb} (alpha, "
                 f"beta) combinations per subject and stiffness reference; methods "
                 f"{', '.join(m['label'] for m in methods)}. Our subjects are synthetic with "
                 "known truth; the study's five were people, calibrated by simulated "
                 "annealing on a SDS reference stiffness.")
        if ref.get("note"):
            rep.para(f"Reference note: {ref['note']}")
        self._comparison(rep, plan, records, refs)
        for m in methods:
            for sr in refs:
                recs = [r for r in records if r["method_key"] == m["key"]
                        and (sr is None or r["factors"].get("stiffness_reference") == sr)]
                if recs:
                    self._tables(rep, out, plan, recs, m, sr, acc, ref)
        add_runtime_and_records(rep, plan, records)
        return rep.write(out)

    @staticmethod
    def _label(sr: str | None) -> str:
        return {"sds": "SDS reference stiffness", "truth": "true K_J (ablation)",
                "recorded": "recorded stiffness", None: ""}.get(sr, str(sr))

    def _comparison(self, rep: Report, plan: dict, records: list[dict], refs: list) -> None:
        rep.heading("Methods compared")
        rep.para("Median over subjects of the torque-and-stiffness selection's blind scores, "
                 "and the wall time per calibration (median over all calibrations; a batched "
                 "method's batch time is divided by its calibrations).")
        rows = []
        for m in plan["methods"]:
            for sr in refs:
                sel = []
                for seed in plan["seeds"]:
                    recs = [r for r in records if r["method_key"] == m["key"]
                            and r["seed"] == seed
                            and (sr is None or r["factors"].get("stiffness_reference") == sr)]
                    s = select(recs).get("torque_stiffness")
                    if s is not None:
                        sel.append(s)
                walls = [r["wall_time_s"] for r in records if r["method_key"] == m["key"]
                         and r.get("wall_time_s") is not None and r["status"] == "ok"]
                rows.append([m["label"], self._label(sr) or "-",
                             *(_f(np.median([s["metrics"][k] for s in sel])) if sel else "-"
                               for k, _ in _METRICS),
                             _f(np.median([s["metrics"].get("cr2", np.nan) for s in sel]), 1)
                             if sel else "-",
                             f"{np.median(walls):.3g}" if walls else "-"])
        rep.table(["method", "stiffness reference", *(n for _, n in _METRICS), "Cr2 [%]",
                   "wall per calibration [s]"], rows)
        for m in plan["methods"]:
            if m.get("cells"):
                where = "; ".join(f"{f} in {v}" for f, v in m["cells"].items())
                rep.para(f"{m['label']} ran only on the cells with {where}: its "
                         "torque-and-stiffness selection and its second test are taken among "
                         "those combinations.")

    def _tables(self, rep: Report, out: Path, plan: dict, recs: list[dict], m: dict,
                sr: str | None, acc: float, ref: dict) -> None:
        label = self._label(sr)
        title = f"{m['label']}" + (f", {label}" if label else "")
        subjects = sorted({r["seed"] for r in recs})
        rep.heading(f"First test: blind estimation ({title})")
        rep.para("Median (IQR) over the held-out trial's cycles (the first dropped); stiffness "
                 "scored against the reference the calibration fitted; the published values "
                 "beside ours.")
        head = ["subject", "model", *(n for _, n in _METRICS), "nRMSE K vs true",
                "(alpha, beta)", "Cr2 [%]", "cond(J)"]
        pub = ref.get("subjects", {})
        if pub:
            head += [f"published {n}" for _, n in _METRICS]
        rows = []
        chosen: dict[int, dict] = {}
        for seed in subjects:
            sel = select([r for r in recs if r["seed"] == seed])
            chosen[seed] = sel
            for key, name in _ROWS:
                r = sel.get(key)
                if r is None:
                    continue
                mt, inf = r["metrics"], r.get("info", {})
                row = [str(seed), name,
                       *(f"{_f(mt.get(k))} ({_f(inf.get(f'{k}_iqr'))})" for k, _ in _METRICS),
                       _f(mt.get("stiffness_true_nrmse")),
                       f"({float(r['factors']['alpha']):.1f}, {float(r['factors']['beta']):.1f})",
                       _f(mt.get("cr2"), 1), fmt(mt.get("condition_number"))]
                if pub:
                    p = pub.get(str(seed)) or pub.get(seed) or {}
                    pr = p.get(key) if isinstance(p, dict) else None
                    row += [("" if not pr else _f(pr[k]) if pr.get("iqr", {}).get(k) is None
                             else f"{_f(pr[k])} ({_f(pr['iqr'][k])})") for k, _ in _METRICS]
                rows.append(row)
        for key, name in _ROWS:
            sel = [chosen[s][key] for s in subjects if key in chosen[s]]
            if sel:
                rows.append(["median", name,
                             *(_f(np.median([r["metrics"][k] for r in sel])) for k, _ in _METRICS),
                             _f(np.median([r["metrics"].get("stiffness_true_nrmse", np.nan)
                                           for r in sel])), "",
                             _f(np.median([r["metrics"].get("cr2", np.nan) for r in sel]), 1),
                             fmt(np.median([r["metrics"].get("condition_number", np.nan)
                                            for r in sel]))]
                            + ([""] * len(_METRICS) if pub else []))
        rep.table(head, rows)
        self._second(rep, out, recs, subjects, acc, ref, title)
        self._third(rep, chosen, subjects, ref, title)
        self._figures(rep, out, recs, chosen, subjects, acc, title, sr)

    def _second(self, rep: Report, out: Path, recs: list[dict], subjects: list, acc: float,
                ref: dict, title: str) -> None:
        rep.heading(f"Second test: (alpha, beta) sweep ({title})", 3)
        rep.para(f"Accepted: E within {acc:g} x the subject's minimum over the combinations "
                 "(E_tau: torque only; E_tau+K: torque and stiffness). Parameter IQR: over the "
                 "combinations accepted by E_tau, as % of the permitted range, median over "
                 "MTUs. Accepted by both terms: E_tau within the band of E_tau and the "
                 "stiffness error E_K = E_tau+K - E_tau within the band of E_K. cond(J): median "
                 "condition number of the scaled Jacobian over the torque-only (beta = 0) and "
                 "the stiffness-weighted (beta > 0) solutions.")
        rep.para("Reading the counts: a band of 1.44 x the minimum is narrow when the minimum "
                 "is small (E_tau of a model fitted to one cycle) and wide when one term "
                 "dominates the sum (E_tau+K, where the reference stiffness error outweighs "
                 "the torque error), so 'accepted E_tau+K' can exceed 'accepted E_tau' although "
                 "the stiffness term narrows the parameters (compare cond(J) and the "
                 "parameter IQR). 'Accepted by both terms' asks each error to stay in its "
                 "own band, the reading closest to the study's.")
        head = ["subject", "accepted E_tau", "accepted E_tau+K", "accepted by both terms",
                "min E_tau", "min E_tau+K",
                "IQR l_opt %", "IQR l_ts %", "IQR strength %", "IQR shape %", "median Cr1 %",
                "median Cr2 %", "cond(J), beta = 0", "cond(J), beta > 0"]
        if ref.get("accepted_torque"):
            head += ["published accepted E_tau", "published accepted E_tau+K"]
        rows = []
        for seed in subjects:
            rs = [r for r in recs if r["seed"] == seed and r["status"] == "ok"]
            e_t = np.array([r["metrics"]["e_tau"] for r in rs])
            e_k = np.array([r["metrics"].get("e_tau_k", np.nan) for r in rs])
            a_t = e_t <= acc * np.nanmin(e_t) if e_t.size else e_t.astype(bool)
            a_k = e_k <= acc * np.nanmin(e_k) if np.isfinite(e_k).any() else np.zeros(
                len(rs), bool)
            e_only_k = e_k - e_t  # the stiffness term E_K alone
            both = (a_t & (e_only_k <= acc * np.nanmin(e_only_k))
                    if np.isfinite(e_only_k).any() else np.zeros(len(rs), bool))
            spread = self._spread(out, [r for r, ok in zip(rs, a_t) if ok])
            cond0 = [r["metrics"].get("condition_number", np.nan) for r in rs
                     if float(r["factors"].get("beta", 0)) == 0.0]
            cond1 = [r["metrics"].get("condition_number", np.nan) for r in rs
                     if float(r["factors"].get("beta", 0)) > 0.0]
            row = [str(seed), str(int(a_t.sum())), str(int(a_k.sum())), str(int(both.sum())),
                   f"{np.nanmin(e_t):.3g}" if e_t.size else "-",
                   f"{np.nanmin(e_k):.3g}" if np.isfinite(e_k).any() else "-",
                   *(_f(spread.get(b), 0) for b in ("l_opt", "l_ts", "strength", "shape")),
                   _f(np.median([r["metrics"].get("cr1", np.nan) for r in rs]), 1),
                   _f(np.median([r["metrics"].get("cr2", np.nan) for r in rs]), 1),
                   fmt(np.nanmedian(cond0)) if np.isfinite(cond0).any() else "-",
                   fmt(np.nanmedian(cond1)) if np.isfinite(cond1).any() else "-"]
            if ref.get("accepted_torque"):
                row += [str(ref["accepted_torque"].get(str(seed), "")),
                        str(ref.get("accepted_total", {}).get(str(seed), ""))]
            rows.append(row)
        rep.table(head, rows)
        if ref.get("parameter_iqr_percent"):
            rep.para("Published median IQR of the calibrated values as % of the permitted "
                     "range: " + ", ".join(f"{k} {v:g} %"
                                           for k, v in ref["parameter_iqr_percent"].items()))

    @staticmethod
    def _spread(out: Path, recs: list[dict]) -> dict[str, float]:
        xs, names, width = [], None, None
        for r in recs:
            if not r.get("arrays") or not (out / r["arrays"]).is_file():
                continue
            a = store.load_arrays(out / r["arrays"])
            xs.append(np.asarray(a["x"], float))
            names = [str(n) for n in a["names"]]
            width = np.asarray(a["upper"], float) - np.asarray(a["lower"], float)
        if len(xs) < 2 or names is None:
            return {}
        X = np.stack(xs)
        iqr = np.percentile(X, 75, axis=0) - np.percentile(X, 25, axis=0)
        out_: dict[str, float] = {}
        for blk in ("l_opt", "l_ts", "strength", "shape"):
            idx = [i for i, n in enumerate(names) if n.startswith(blk + "[")]
            if idx:
                out_[blk] = float(np.median(100 * iqr[idx] / width[idx]))
        return out_

    def _third(self, rep: Report, chosen: dict, subjects: list, ref: dict, title: str) -> None:
        rows = []
        for seed in subjects:
            r = chosen[seed].get("torque_stiffness")
            if r is not None and "third_rmse" in r["metrics"]:
                mt = r["metrics"]
                rows.append([str(seed), _f(mt["third_rmse"], 3), _f(mt.get("third_r2")),
                             _f(100 * mt.get("third_significant_share", np.nan), 0)])
        if not rows:
            return
        rep.heading(f"Third test: unperturbed vs perturbed stiffness ({title})", 3)
        rep.para("The torque-and-stiffness model's stiffness on the unperturbed trial against "
                 "the perturbed held-out trial: RMSE and r2 of the mean cycle profiles, and the "
                 "share of the cycle where a paired t-test along the cycle is significant "
                 "(alpha = 0.05)." + (f" Published: {ref['third_test']}"
                                     if ref.get("third_test") else ""))
        rep.table(["subject", "RMSE [Nm/rad]", "r2", "% cycle significant"], rows)

    def _figures(self, rep: Report, out: Path, recs: list[dict], chosen: dict,
                 subjects: list, acc: float, title: str, sr: str | None) -> None:
        key = f"{recs[0]['method_key'].split('-')[0]}_{sr or 'data'}"
        alphas = sorted({float(r["factors"]["alpha"]) for r in recs})
        betas = sorted({float(r["factors"]["beta"]) for r in recs})
        n = len(subjects)
        fig, axes = new_figure(2.6 * n + 1, 5.2, 2, n)
        for j, seed in enumerate(subjects):
            rs = [r for r in recs if r["seed"] == seed and r["status"] == "ok"]
            for i, (mk, color, lab) in enumerate((("e_tau", "red", "E_tau"),
                                                  ("e_tau_k", "blue", "E_tau+K"))):
                g = np.full((len(betas), len(alphas)), np.nan)
                for r in rs:
                    g[betas.index(float(r["factors"]["beta"])),
                      alphas.index(float(r["factors"]["alpha"]))] = r["metrics"].get(mk, np.nan)
                ax = axes[i, j]
                if np.isfinite(g).any():
                    im = ax.imshow(np.log10(g), origin="lower", cmap="Greys", aspect="auto",
                                   extent=(alphas[0] - 0.1, alphas[-1] + 0.1, betas[0] - 0.1,
                                           betas[-1] + 0.1))
                    ok = g <= acc * np.nanmin(g)
                    yy, xx = np.nonzero(ok)
                    ax.scatter(np.asarray(alphas)[xx], np.asarray(betas)[yy], s=30,
                               facecolors="none", edgecolors=color)
                    fig.colorbar(im, ax=ax, shrink=0.7, label="log10")
                ax.set_title(f"S{seed} {lab}", fontsize=9)
                ax.set_xlabel("alpha", fontsize=8)
                if j == 0:
                    ax.set_ylabel("beta", fontsize=8)
        rep.figure(f"error_map_{key}", png_bytes(fig, dpi=90),
                   f"fitting errors per (alpha, beta), circles within {acc:g} x min ({title})")
        prof = []
        for seed in subjects:
            for k in ("torque_only", "torque_stiffness"):
                r = chosen[seed].get(k)
                if r is not None and r.get("arrays") and (out / r["arrays"]).is_file():
                    prof.append((seed, k, store.load_arrays(out / r["arrays"])))
        if prof:
            fig, axes = new_figure(2.6 * n + 1, 5.0, 2, n)
            for seed, k, a in prof:
                j = subjects.index(seed)
                color = "red" if k == "torque_only" else "green"
                for i, (q, unit) in enumerate((("torque", "Nm"), ("stiffness", "Nm/rad"))):
                    ax = axes[i, j]
                    if f"profile_{q}" not in a:
                        continue
                    y = np.asarray(a[f"profile_{q}"])[:, 0]
                    x = np.linspace(0, 100, y.size)
                    if k == "torque_stiffness" and f"profile_{q}_ref" in a:
                        ax.plot(x, np.asarray(a[f"profile_{q}_ref"])[:, 0], color="0.5", lw=3,
                                label="reference")
                        if q == "stiffness" and "profile_stiffness_true" in a:
                            ax.plot(x, np.asarray(a["profile_stiffness_true"])[:, 0], "k:",
                                    label="true K_J")
                    ax.plot(x, y, color=color, label=k.replace("_", " "))
                    ax.set_title(f"S{seed} {q} [{unit}]", fontsize=9)
                    ax.set_xlabel("% cycle", fontsize=8)
            axes[0, 0].legend(fontsize=7)
            rep.figure(f"profiles_{key}", png_bytes(fig, dpi=90),
                       f"held-out mean cycle: torque only (red), torque and stiffness (green) "
                       f"({title})")
        walls = med_iqr([r.get("wall_time_s") for r in recs])
        rep.para(f"Calibration wall time per record: {walls} s (median [IQR]).")
