"""Hambly et al.'s channel-removal study (Sec. III-D, Fig. 5) as a report layout.

Layout ``channel-removal``, for calibration scenarios whose grid sweeps ``removed`` (the
number of recorded EMG channels removed, with a ``removal_order``), level 0 included, with
EMG-driven and synergy-hybrid calibrators as methods. Per method and number of recorded
channels (median over the seeds):

* joint-moment RMSE and R² on the calibration trials (what Hambly et al. scored) and on the
  held-out trials (ours; the synergy-hybrid method synthesizes a held-out trial's unrecorded
  excitations from its recorded ones with the calibrated weightings);
* the **parameter distance** to the all-channels calibration of the same method and seed:
  ``mean_i |p_i - p_i,all| / (upper_i - lower_i)`` over the calibrated parameters (Hambly et
  al. Sec. III-D), computed from the records' parameter arrays;
* the removal order (reconstructed from the recorded channels of each record);
* the synthesized excitations against the withheld recorded ones and the true ones
  (calibration trials), and on the held-out trials; the synergy count and its VAF;
* panels in the form of Hambly et al. Fig. 5.

Calibration RMSE and R² come from the records' ``cal_torque_rmse`` and ``cal_torque_r2``;
where a run lacks them, the calibration nRMSE is shown instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench import registry, store
from bench.layout import Layout, LayoutContext, ReferenceBase, StrictModel
from bench.layouts.table import add_runtime_and_records, partial_warning
from bench.reportkit import Report, new_figure, png_bytes
from bench.yamlfile import Collector

__all__ = ["ChannelRemovalLayout", "parameter_distance", "removal_order"]

_SYNTH = (("n_synergies", "synergies", 0), ("vaf", "VAF", 2),
          ("synth_rec_r2", "synth r2 (rec)", 2), ("synth_true_r2", "synth r2 (true)", 2),
          ("held_synth_r2", "synth r2 (held)", 2), ("synth_rec_rmse", "synth RMSE (rec)", 3),
          ("synth_true_rmse", "synth RMSE (true)", 3),
          ("held_synth_rmse", "synth RMSE (held)", 3))


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"


def parameter_distance(a: dict, ref: dict) -> float:
    """Mean over the calibrated parameters of ``|x - x_ref| / (upper - lower)`` (Hambly et
    al. Sec. III-D).

    Parameters
    ----------
    a, ref : dict
        Record arrays (:func:`bench.store.load_arrays`) with ``x``, ``lower``, ``upper`` and
        ``names``; the bounds are ``ref``'s.

    Returns
    -------
    float
        NaN when the two records calibrated different parameters.
    """
    if [str(n) for n in a["names"]] != [str(n) for n in ref["names"]]:
        return float("nan")
    width = np.asarray(ref["upper"], float) - np.asarray(ref["lower"], float)
    d = np.abs(np.asarray(a["x"], float) - np.asarray(ref["x"], float)) / width
    return float(np.mean(d))


def removal_order(records: list[dict], channels: list[str] | None) -> list[str]:
    """The channels in the order they were removed, from the ``recorded`` channels of one
    seed's and method's records (``info["recorded"]``, None = all).

    Parameters
    ----------
    records : list of dict
        Records of one seed and method, with ``factors["removed"]``.
    channels : list of str or None
        Every channel (the plant's); None: the union of the records' recorded channels.
    """
    by_k: dict[int, list[str] | None] = {}
    for r in records:
        by_k[int(r["factors"].get("removed", 0))] = r.get("info", {}).get("recorded")
    known = list(channels or [])
    if not known:
        for rec in by_k.values():
            known += [c for c in rec or [] if c not in known]
    order: list[str] = []
    for k in sorted(by_k):
        rec = by_k[k]
        gone = [c for c in known if rec is not None and c not in rec and c not in order]
        order += gone
    return order


class ChannelRemovalLayout(Layout):
    """EMG-driven vs synergy-hybrid calibration as recorded channels are removed."""

    name = "channel-removal"
    tasks = ("calibration",)
    options_model = StrictModel
    reference_model = ReferenceBase

    @classmethod
    def check(cls, ctx: LayoutContext, options: Any, col: Collector) -> dict:
        levels = ctx.grid.get("removed")
        if levels is None:
            col.add(("name",), "layout 'channel-removal' needs 'removed' as a grid factor")
        elif 0 not in levels:
            col.add(("name",), "layout 'channel-removal' needs the level removed = 0: the "
                               "all-channels calibration parameter distances are measured from")
        return options.model_dump(mode="json")

    # ------------------------------------------------------------------ data
    @staticmethod
    def _channels(plan: dict) -> list[str] | None:
        try:
            plant = registry.resolve("plants", plan["plant"]["name"])(**plan["plant"]["params"])
        except Exception:  # a report must not fail because the plant changed since the run
            return None
        names = getattr(plant, "channel_names", None)
        return list(names()) if callable(names) else None

    @staticmethod
    def _distances(out: Path, records: list[dict]) -> dict[str, float]:
        """Parameter distance of every ok record to its method's and seed's removed = 0 one."""
        ok = [r for r in records if r["status"] == "ok" and r.get("arrays")
              and (out / r["arrays"]).is_file()]
        refs = {(r["method_key"], r["seed"]): r for r in ok
                if int(r["factors"].get("removed", 0)) == 0}
        cache: dict[str, dict] = {}

        def arrays(r: dict) -> dict:
            if r["arrays"] not in cache:
                cache[r["arrays"]] = store.load_arrays(out / r["arrays"])
            return cache[r["arrays"]]

        dist = {}
        for r in ok:
            ref = refs.get((r["method_key"], r["seed"]))
            if ref is not None:
                dist[r["unit_id"] + r["method_key"]] = parameter_distance(arrays(r), arrays(ref))
        return dist

    # ------------------------------------------------------------------ report
    def write(self, out: Path, plan: dict, records: list[dict]) -> dict[str, Path]:
        out = Path(out)
        rep = Report(f"impbench report: {plan['name']}", partial_warning(plan, records))
        rep.cite("Hambly et al.")
        rep.para(plan.get("description", ""))
        channels = self._channels(plan)
        methods = plan["methods"]
        ok = [r for r in records if r["status"] == "ok"]
        n_ch = len(channels) if channels else max(
            (len(r["info"]["recorded"]) + int(r["factors"].get("removed", 0)) for r in ok
             if r.get("info", {}).get("recorded") is not None), default=None)
        rep.para(f"Plant `{plan['plant']['name']}`"
                 + (f" with {n_ch} EMG channels ({', '.join(channels)})" if channels else "")
                 + f"; seeds {plan['seeds']}; methods {', '.join(m['label'] for m in methods)}; "
                 f"{len(records)} records. Values are medians over the seeds.")
        ref = plan.get("reference")
        if ref:
            rep.cite(ref["source"])
            rep.para(f"Reference: {ref['source']}. {ref.get('note', '')}")
        dist = self._distances(out, records)
        orders = self._orders(rep, plan, ok, channels)
        rows = self._rows(plan, ok, dist, n_ch, orders)
        self._main_table(rep, rows)
        self._synth_table(rep, rows)
        if rows:
            rep.figure("fig5", self._figure(plan, rows),
                       "Hambly et al. Fig. 5-style panels: moment RMSE and R² (calibration and "
                       "held-out trials) and parameter distance against recorded channels")
        failed = [r for r in records if r["status"] != "ok"]
        if failed:
            rep.para(f"{len(failed)} record(s) did not finish, e.g. {failed[0]['label']} with "
                     f"removed = {failed[0]['factors'].get('removed')}: "
                     f"{failed[0].get('reason', '')}", css="warn")
        add_runtime_and_records(rep, plan, records)
        return rep.write(out)

    def _orders(self, rep: Report, plan: dict, ok: list[dict],
                channels: list[str] | None) -> dict[int, list[str]]:
        """Removal order per seed (from the first method's records), reported."""
        given = [v for v in plan["grid"].get("removal_order", []) if isinstance(v, list)]
        orders: dict[int, list[str]] = {}
        for seed in plan["seeds"]:
            for m in plan["methods"]:
                recs = [r for r in ok if r["seed"] == seed and r["method_key"] == m["key"]]
                if recs:
                    orders[seed] = removal_order(recs, channels)
                    break
        rep.heading("Removal order")
        if given:
            rep.para("Given by the scenario: " + "; ".join(", ".join(o) for o in given) + ".")
        else:
            rep.para("Ranked per plant draw: ascending joint-moment RMSE of EMG-driven "
                     "calibrations with each channel removed alone (Hambly et al. Sec. III-D); "
                     "the first removed first.")
        rep.bullets([f"seed {s}: {', '.join(o) or '-'}" for s, o in orders.items()])
        return orders

    def _rows(self, plan: dict, ok: list[dict], dist: dict, n_ch: int | None,
              orders: dict[int, list[str]]) -> list[dict]:
        """One row per method and number of removed channels (medians over seeds)."""
        rows = []
        for k in sorted({int(v) for v in plan["grid"].get("removed", [0])}):
            for m in plan["methods"]:
                recs = [r for r in ok if r["method_key"] == m["key"]
                        and int(r["factors"].get("removed", 0)) == k]
                if not recs:
                    continue

                def med(key: str, recs: list[dict] = recs) -> float:
                    v = [r["metrics"].get(key, np.nan) for r in recs]
                    v = np.asarray(v, dtype=float)
                    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() \
                        else float("nan")

                d = [dist.get(r["unit_id"] + r["method_key"], np.nan) for r in recs]
                d = np.asarray(d, dtype=float)
                rec0 = recs[0].get("info", {}).get("recorded")
                last = {orders[s][k - 1] for s in orders if 0 < k <= len(orders[s])}
                row = {"method": m["label"], "key": m["key"], "removed": k,
                       "n_recorded": len(rec0) if rec0 is not None else n_ch,
                       "last": ", ".join(sorted(last)) if last else "-",
                       "distance": float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any()
                       else float("nan"), "n": len(recs),
                       "wall": float(np.median([r.get("wall_time_s") or np.nan
                                                for r in recs]))}
                for key in ("cal_torque_rmse", "cal_torque_r2", "cal_torque_nrmse",
                            "torque_rmse", "torque_r2", *(s for s, _, _ in _SYNTH)):
                    row[key] = med(key)
                rows.append(row)
        return rows

    @staticmethod
    def _main_table(rep: Report, rows: list[dict]) -> None:
        rep.heading("Joint moments and parameters (Hambly et al. Fig. 5)")
        have_cal = any(math.isfinite(r["cal_torque_rmse"]) for r in rows)
        rep.para("RMSE (Nm) and R² of the joint moments, averaged over trials and DoFs; "
                 "calibration: the calibration trials (what Hambly et al. scored), held out: "
                 "the held-out trials (ours). Parameter distance: mean |p - p_all| / allowed "
                 "range over the calibrated parameters, to the same method's all-channels "
                 "calibration (Hambly et al. Sec. III-D)."
                 + ("" if have_cal else " This run's records carry no calibration RMSE/R² "
                    "(the calibration task did not compute them); the calibration nRMSE is "
                    "shown instead."))
        cal = (["cal RMSE", "cal R²"] if have_cal else ["cal nRMSE"])
        head = ["method", "recorded", "last removed", *cal, "held RMSE", "held R²",
                "param dist", "seeds", "wall [s]"]
        out = []
        for r in sorted(rows, key=lambda r: (r["removed"], r["method"])):
            cal_v = ([_f(r["cal_torque_rmse"]), _f(r["cal_torque_r2"])] if have_cal
                     else [_f(r["cal_torque_nrmse"])])
            out.append([r["method"], str(r["n_recorded"]), r["last"], *cal_v,
                        _f(r["torque_rmse"]), _f(r["torque_r2"]), _f(r["distance"]),
                        str(r["n"]), _f(r["wall"], 1)])
        rep.table(head, out)

    @staticmethod
    def _synth_table(rep: Report, rows: list[dict]) -> None:
        srows = [r for r in rows if any(math.isfinite(r[s]) for s, _, _ in _SYNTH)]
        if not srows:
            return
        rep.heading("Synthesized excitations")
        rep.para("Synthesized vs withheld excitations of the calibration trials (rec: the "
                 "recorded ones, true: the simulation's input) and, on the held-out trials, "
                 "excitations extrapolated from the recorded channels with the calibrated "
                 "weightings vs the withheld ones (held); r2 averaged over the synthesized "
                 "channels, RMSE over all their samples (excitation units). Synergies: the "
                 "smallest count whose factorization of the recorded excitations reaches the "
                 "VAF threshold (Hambly et al. Sec. III-D).")
        head = ["method", "recorded", *(n for _, n, _ in _SYNTH)]
        rep.table(head, [[r["method"], str(r["n_recorded"]),
                          *(_f(r[s], nd) for s, _, nd in _SYNTH)]
                         for r in sorted(srows, key=lambda r: (r["removed"], r["method"]))])

    @staticmethod
    def _figure(plan: dict, rows: list[dict]) -> bytes:
        from matplotlib.ticker import MaxNLocator

        have_cal = any(math.isfinite(r["cal_torque_rmse"]) for r in rows)
        panels = ([("cal_torque_rmse", "moment RMSE (Nm), calibration"),
                   ("cal_torque_r2", "R², calibration")] if have_cal
                  else [("cal_torque_nrmse", "moment nRMSE, calibration")])
        panels += [("torque_rmse", "moment RMSE (Nm), held out"),
                   ("torque_r2", "R², held out"), ("distance", "parameter distance (range)")]
        fig, (axs,) = new_figure(3.4 * len(panels), 3.2, 1, len(panels))
        colors = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")
        for ax, (key, label) in zip(axs, panels):
            for i, m in enumerate(plan["methods"]):
                rr = sorted((r for r in rows if r["key"] == m["key"]),
                            key=lambda r: -r["n_recorded"])
                ax.plot([r["n_recorded"] for r in rr], [r[key] for r in rr], "o-",
                        color=colors[i % len(colors)], label=m["label"], ms=4)
            ax.invert_xaxis()
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("recorded channels")
            ax.set_title(label, fontsize=9)
            ax.grid(alpha=0.3)
        axs[0].legend(fontsize=8)
        return png_bytes(fig)
