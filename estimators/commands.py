"""``impbench calibrate FILE [--out DIR]``: the short form of a calibration scenario.

A calibration of one's own recordings is a scenario like any other (plant ``dataset``,
usually one cell and one seed, see ``scenarios/calibrate-example.yaml``); this command runs it
exactly as ``impbench run FILE`` does (resumable records, the report) and then writes each
method's calibrated parameters into ``DIR/calibrated/`` (:mod:`estimators.calibration.export`),
printing the held-out fit. This module only registers the command (it sits outside
``estimators.calibration``, whose import switches JAX on); everything heavy is imported when
the command runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["cmd_calibrate", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``impbench calibrate`` to the ``impbench`` command line."""
    p = subparsers.add_parser(
        "calibrate", help="calibrate an EMG-driven model (a calibration scenario, e.g. on your "
                          "own OpenSim/CEINMS/C3D files) and write the calibrated parameters")
    p.add_argument("file", metavar="FILE",
                   help="calibration scenario YAML (see scenarios/calibrate-example.yaml)")
    p.add_argument("--out", help="run directory (default: runs/<scenario name>)")
    p.add_argument("--validate", action="store_true", help="only validate the file")
    p.add_argument("--force", action="store_true", help="recompute finished records")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``impbench calibrate``: validate, run, report, export."""
    from bench.errors import ScenarioError
    from bench.report import write_report
    from bench.runner import run_scenario
    from bench.scenario import load_scenario
    from estimators.calibration.export import export_calibrated

    sc = load_scenario(args.file)
    if sc.task != "calibration":
        raise ScenarioError(f"{args.file}: a {sc.task} scenario; impbench calibrate runs "
                            "calibration scenarios (use impbench run)")
    if args.validate:
        print(f"{args.file}: OK: calibration scenario {sc.name!r}, plant {sc.plant.name}, "
              f"{sc.n_cells} cell(s) x {len(sc.seeds)} seed(s), methods "
              f"{', '.join(m.label for m in sc.methods)}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / sc.name
    summary = run_scenario(sc, out, jobs=1, progress=not args.quiet, force=args.force,
                           log=lambda s: print(s, file=sys.stderr))
    paths = write_report(out)
    exported = export_calibrated(out)
    from bench import store

    for r in store.read_records(out, store.read_plan(out)):
        if r["status"] != "ok":
            print(f"{r['label']}: {r['status']}: {r['reason']}", file=sys.stderr)
            continue
        mt = r["metrics"]
        trial = (f" (over the trial's RMS {mt['torque_nrmse_trial']:.3f})"
                 if math.isfinite(mt.get("torque_nrmse_trial", math.nan)) else "")
        held = (f"held-out torque nRMSE {mt['torque_nrmse']:.3f}{trial}, RMSE "
                f"{mt.get('torque_rmse', float('nan')):.3g} Nm, r2 {mt.get('torque_r2'):.3f}"
                if "torque_nrmse" in mt else "no held-out trials")
        info = r.get("info", {})
        notes = [f"warning: {info['warning']}"] if info.get("warning") else []
        if info.get("negative_stiffness"):
            notes.append(info["negative_stiffness"])
        print(f"{r['label']}: calibration torque nRMSE {mt.get('cal_torque_nrmse', 0):.3f}; "
              f"{held}; {r['wall_time_s']:.1f} s"
              + "".join(f" ({n})" for n in notes))
    c = summary.computed
    print(f"{c['ok']} ok, {c['failed']} failed; report {paths['md']}; calibrated parameters "
          + ", ".join(str(p) for p in exported.values()))
    return 0 if c["failed"] == 0 else 1
