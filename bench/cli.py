"""The ``impbench`` command line: run, validate, report, compare, list, estimate.

User errors (invalid scenario, unknown name, bad parameter, unreadable file) print one
clear message per problem to stderr and exit with status 2, without a traceback; an
unexpected error prints one line asking for a report and exits with status 1 (the traceback
only with ``--debug``); Ctrl-C stops with status 130, keeping every finished record. Other
packages add subcommands through the ``impbench.commands`` entry-point group: each entry is
a ``register(subparsers)`` function, and its module may define hooks
``handle_<command>(...)`` that take a command on data it owns (a recorded rig session).

Start-up imports only what the command needs: ``impbench --help`` and ``impbench validate``
import no JAX and no backend a scenario does not name (``python -m benchmarks.startup``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import registry
from bench.errors import (
    DataError,
    EstimationError,
    InvalidParameterError,
    RegistryError,
    ScenarioError,
)

__all__ = ["build_parser", "main"]

#: Errors caused by user input: reported in one line, exit status 2.
_USER_ERRORS = (ScenarioError, RegistryError, InvalidParameterError, DataError,
                FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError)

_REPORT_URL = "the impbench issue tracker"


class _UserError(Exception):
    """A problem with the command line itself (bad ``--param``)."""


def _hook(command: str, *args: Any) -> Any:
    """Let a command plugin take ``command`` on data it owns.

    Calls ``handle_<command>(*args)`` of the module of each ``impbench.commands`` entry that
    defines it and returns the first result that is not None (None: no plugin took it).
    """
    for entry in registry.entries("commands").values():
        module = entry.target.partition(":")[0]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        fn = getattr(mod, f"handle_{command}", None)
        if fn is not None:
            result = fn(*args)
            if result is not None:
                return result
    return None


#: Most issues printed for one file (the count of the rest follows).
MAX_ISSUES_SHOWN = 50


def _print_issues(exc: ScenarioError) -> None:
    issues = getattr(exc, "issues", None)
    if issues:
        for issue in issues[:MAX_ISSUES_SHOWN]:
            print(issue, file=sys.stderr)
        n = len(issues)
        if n > MAX_ISSUES_SHOWN:  # located at the first issue not shown
            where = re.match(r"(.+?:\d+): |(.+?): ", str(issues[MAX_ISSUES_SHOWN]))
            at = (where.group(1) or where.group(2)) + ": " if where else ""
            print(f"{at}... and {n - MAX_ISSUES_SHOWN} more issues not shown", file=sys.stderr)
        print(f"{n} error{'s' if n != 1 else ''}; nothing was run.", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- commands


def _is_scenario(path: Path) -> bool:
    """True unless a command plugin recognizes the file as its own kind (rig session)."""
    return _hook("is_own_file", path) is None


def _cmd_validate(args: argparse.Namespace) -> int:
    from bench.yamlfile import read_yaml

    status = 0
    for file in args.files:
        try:
            read_yaml(file)  # encoding, size and syntax answered before any heavy import
            own = _hook("validate", Path(file))  # a rig session file, validated by hil
            if own is not None:
                print(own)
                continue
            from bench.scenario import load_scenario

            sc = load_scenario(file)
        except ScenarioError as exc:
            _print_issues(exc)
            status = 2
            continue
        unavailable = [m.label for m in sc.methods if m.status == "unavailable"]
        n_units = sc.n_cells * len(sc.seeds)
        print(f"{file}: OK: scenario {sc.name!r} ({sc.task}), plant {sc.plant.name}, "
              f"{sc.n_cells} cells x {len(sc.seeds)} seeds = {n_units} units, "
              f"{len(sc.methods)} methods ({', '.join(m.label for m in sc.methods)}), "
              f"layout {sc.layout.get('name')}"
              + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))
    return status


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.executors import get_executor
    from bench.report import write_report
    from bench.runner import run_scenario
    from bench.scenario import load_scenario

    sc = load_scenario(args.file)
    out = Path(args.out) if args.out else Path("runs") / sc.name
    executor = get_executor(args.executor, args.jobs, address=args.address)
    if args.executor == "dask":
        out = out.resolve()  # workers elsewhere write to the same (shared) absolute path
    where = f" on the Dask scheduler {args.address}" if args.address else ""
    print(f"running {sc.name}: {sc.n_cells} cells x {len(sc.seeds)} seeds, "
          f"{len(sc.methods)} methods -> {out}{where}", file=sys.stderr)
    summary = run_scenario(sc, out, jobs=args.jobs,
                           executor=executor if args.executor != "local" else "local",
                           progress=not args.quiet, force=args.force,
                           log=lambda s: print(s, file=sys.stderr))
    c = summary.computed
    print(f"{summary.units} units ({summary.skipped_units} already finished); records written: "
          f"{c['ok']} ok, {c['failed']} failed, {c['unavailable']} unavailable; "
          f"{summary.wall_s:.1f} s ({summary.jobs} process{'es' if summary.jobs > 1 else ''})")
    if not args.no_report:
        _print_paths(write_report(out))
    if summary.crashed:
        print(f"{len(summary.crashed)} work item(s) crashed; rerun to retry them.",
              file=sys.stderr)
        return 1
    return 0


def _print_paths(paths: dict) -> None:
    for key in ("parquet", "md", "html"):
        if key in paths:
            print(f"{key:8s} {paths[key]}")


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    args.param_dict = _parse_params(args.param)
    status = _hook("report", args)  # a recorded rig session (hil.session_report)
    if status is not None:
        return int(status)
    _print_paths(write_report(Path(args.dir)))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs, write_comparison

    cmp = compare_runs(Path(args.run_a), Path(args.run_b), alpha=args.alpha)
    out = Path(args.out) if args.out else Path(args.run_b) / f"compare_{Path(args.run_a).name}"
    paths = write_comparison(cmp, out)
    for s in cmp.summary:
        c = s.counts
        print(f"{s.method:12s} {s.metric:16s} {s.verdict:22s} better {c.get('better', 0)}, "
              f"worse {c.get('worse', 0)} of {sum(c.values())} cells")
    if cmp.status_changes:
        print(f"{len(cmp.status_changes)} status change(s) (see the report)")
    for key in ("md", "html", "json"):
        print(f"{key:8s} {paths[key]}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export_run

    for kind, path in export_run(Path(args.run), args.format, args.out).items():
        print(f"{kind:8s} {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from bench.params import describe
    from bench.references import humanize

    kinds = registry.BACKEND_KINDS if args.kind is None else (args.kind,)
    for kind in kinds:
        print(f"{kind}:")
        ents = registry.entries(kind)
        if not ents:
            print("  (none registered)")
        for name in sorted(ents):
            e = ents[name]
            if not e.available:
                print(f"  {name}  [{e.target}]  not available: {e.error}")
                continue
            doc = (e.obj.__doc__ or "").strip().splitlines()
            print(f"  {name}  [{e.target}]" + (f"  {humanize(doc[0])}" if doc else ""))
            for pname, default, cons, meaning in describe(e.obj):
                print(f"      {pname} = {default!r}  ({cons or 'any'})"
                      + (f"  {humanize(meaning)}" if meaning else ""))
    return 0


def _parse_params(items: Sequence[str]) -> dict:
    from bench.yamlfile import parse_yaml

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _UserError(f"--param expects KEY=VALUE; got {item!r}")
        if len(value) > 10_000:
            raise _UserError(f"--param {key.strip()}: the value is longer than 10 000 "
                             "characters")
        try:  # the value as a YAML scalar or flow collection, through the hardened reader
            params[key.strip()] = parse_yaml(value, f"--param {key.strip()}").data
        except ScenarioError as exc:
            if "the file is empty" in str(exc):
                params[key.strip()] = None
                continue
            raise _UserError(f"--param {key.strip()}: cannot read the value "
                             f"{value[:40]!r}") from None
    return params


def _cmd_estimate(args: argparse.Namespace) -> int:
    import numpy as np

    from bench.io import load_record, save_estimate
    from bench.types import Realizations

    cls = registry.resolve("estimators", args.method)
    params = _parse_params(args.param)
    est_obj = cls(**params)
    est_obj._validate()
    if args.out:
        from bench.io import check_estimate_path

        check_estimate_path(Path(args.out))
    data = _hook("estimate_data", Path(args.file), args.period, args.decimate)
    if data is None:  # not a recorded rig session: a plain record
        from bench.signals import decimate

        rec = load_record(Path(args.file))
        sig = {k: rec[k] for k in ("u", "y", "schedule") if k in rec}
        if args.decimate > 1:
            sig = {k: decimate(v, args.decimate) for k, v in sig.items()}
        data = Realizations.from_record(sig["u"], sig["y"], rec["fs"] / args.decimate,
                                        args.period, schedule=sig.get("schedule"),
                                        meta={"source": str(args.file)})
    view = data.experimenter_view(schedule=bool(cls.tags.needs_schedule))
    t0 = time.perf_counter()
    try:
        est = est_obj.estimate(view)
    except (ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
        if isinstance(exc, _USER_ERRORS):
            raise
        raise EstimationError(f"{type(exc).__name__}: {exc}") from exc
    wall = time.perf_counter() - t0
    k = est.K
    ok = np.isfinite(k)
    print(f"{args.file}: {data.R} realizations x {data.N} samples at {data.fs:g} Hz "
          f"(period {args.period:g} s); method {args.method} ({wall:.2f} s)")
    if ok.any():
        print(f"K  mean {np.mean(k[ok]):.4g}  min {np.min(k[ok]):.4g}  max {np.max(k[ok]):.4g}"
              f"  NaN share {np.mean(~ok):.3f}")
    else:
        print("K  NaN everywhere (not estimable from these data)")
    if est.B is not None and np.isfinite(est.B).any():
        print(f"B  mean {np.nanmean(est.B):.4g}")
    if est.I is not None and np.isfinite(est.I).any():
        print(f"I  mean {np.nanmean(est.I):.4g}")
    if args.out:
        I = None
        if est.I is not None:
            I = np.broadcast_to(np.asarray(est.I, dtype=float), k.shape).copy()
        save_estimate(Path(args.out), data.t, k, B=est.B, I=I,
                      meta={"method": args.method, "params": est_obj.get_params(),
                            "source": str(args.file), "period_s": args.period,
                            "fs_hz": data.fs})
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}")
    return value


def _version() -> str:
    try:
        return version("impbench")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, command plugins included."""
    parser = argparse.ArgumentParser(
        prog="impbench",
        description="Joint impedance estimation and EMG-driven calibration test bench.",
    )
    parser.add_argument("--version", action="version", version=f"impbench {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run a scenario grid (resumes) and write the report")
    p.add_argument("file", help="scenario YAML")
    p.add_argument("--out", help="run directory (default: runs/<scenario name>)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: the first work item runs here, the rest "
                        "on one process per core when it took over 2 s; 1 = in-process)")
    p.add_argument("--executor", choices=("dask", "local", "serial"), default="local",
                   help="local processes (default), serial, or dask (a LocalCluster of --jobs "
                        "workers, or the cluster at --address)")
    p.add_argument("--address", metavar="tcp://HOST:PORT",
                   help="Dask scheduler to run on (with --executor dask)")
    p.add_argument("--force", action="store_true",
                   help="recompute finished cells too (after changing a backend's code)")
    p.add_argument("--no-report", action="store_true", help="skip the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check scenario and rig session files; exit 2 on errors")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("report", help="write report.md/report.html of a run directory or of a "
                                      "recorded rig session")
    p.add_argument("dir", metavar="DIR", help="run directory, or a directory/file holding a "
                                              "recorded rig session dataset")
    p.add_argument("--out", help="rig sessions: report folder (default: the dataset's folder, "
                                 "runs/<session name>/ for sessions recorded by rig record)")
    p.add_argument("--method", help="rig sessions: estimator (default sds)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="rig sessions: estimator hyper-parameter (repeatable)")
    p.add_argument("--decimate", type=_positive_int, default=None,
                   help="rig sessions: decimation factor (default: down to 100 Hz)")
    p.add_argument("--truth", choices=("auto", "fgwn", "prbs", "none"), default="auto",
                   help="rig sessions: perturbation of the true-stiffness mapping trials")
    p.add_argument("--mapping-duration", type=_positive_float, default=None, metavar="S",
                   help="rig sessions: length of each mapping trial (default: the rig's, 60 s)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="compare two runs of one scenario (B - A, paired tests)")
    p.add_argument("run_a", metavar="RUN_A", help="baseline run directory")
    p.add_argument("run_b", metavar="RUN_B", help="run directory compared with RUN_A")
    p.add_argument("--out", help="output folder (default: RUN_B/compare_<name of RUN_A>)")
    p.add_argument("--alpha", type=_probability, default=0.05,
                   help="significance level of the paired tests (default 0.05)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("export", help="write a run's results table and per-record arrays as "
                                      "CSV or MATLAB .mat")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--format", choices=("csv", "mat"), default="csv",
                   help="csv (results.csv + arrays/*.csv) or mat (results.mat)")
    p.add_argument("--out", help="folder to write into (default: RUN/export)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("list", help="list estimators, calibrators, plants and layouts with "
                                    "their parameters")
    p.add_argument("kind", nargs="?", choices=registry.KINDS)
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("estimate", help="estimate the impedance of your own record")
    p.add_argument("file", help="record: .npz (u, y, fs), .csv (t, u, y), .mat, or a recorded "
                                "rig session dataset (.npz + .json)")
    p.add_argument("--method", required=True, help="estimator name (see 'impbench list')")
    p.add_argument("--period", required=True, type=_positive_float,
                   help="period of the time variation, s (one realization)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="estimator hyper-parameter (repeatable)")
    p.add_argument("--decimate", type=_positive_int, default=1,
                   help="decimate by this factor before estimation (default 1: none)")
    p.add_argument("--out", help="write t, K (B, I) to .npz, .csv or .mat")
    p.set_defaults(func=_cmd_estimate)

    for entry in registry.entries("commands").values():
        try:
            register = registry.resolve("commands", entry.name)
        except RegistryError as exc:
            print(f"warning: command plugin {entry.name!r} not available: {exc}",
                  file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``impbench`` console script; returns the exit status."""
    from bench.jaxcache import enable_compilation_cache

    enable_compilation_cache()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScenarioError as exc:
        _print_issues(exc)
        return 2
    except (*_USER_ERRORS, _UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EstimationError as exc:
        print(f"error: the estimator failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished records are kept, rerun to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {first[:300]} -- this is a bug in "
              f"impbench or a plugin; please report it to {_REPORT_URL} with the command "
              "line (rerun with --debug for the traceback).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
