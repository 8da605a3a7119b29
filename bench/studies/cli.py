"""``impbench study ...``: run a paper study end to end (added to the CLI by ``register``).

``impbench study ankle FILE [--out DIR] [--subjects N] [--validate]`` runs seed 000's torque +
stiffness calibration study (:mod:`bench.studies.ankle`) and writes ``results.json``,
``report.md`` and ``report.html`` into ``DIR`` (default ``runs/<name>``).
``impbench study report DIR`` rewrites the report of a finished study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command group to ``subparsers``."""
    study = subparsers.add_parser("study", help="paper studies end to end (ankle)")
    sub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)

    p = sub.add_parser("ankle", help="seed 000's torque + stiffness calibration study")
    p.add_argument("file", help="study YAML (e.g. scenarios/ankle-torque-stiffness.yaml)")
    p.add_argument("--out", help="output directory (default: runs/<name>)")
    p.add_argument("--subjects", type=int, help="override subjects.n (e.g. 1 for a quick look)")
    p.add_argument("--validate", action="store_true", help="only validate the file")
    p.set_defaults(func=cmd_ankle)

    p = sub.add_parser("report", help="rewrite the report of a finished ankle study")
    p.add_argument("out", help="study directory holding results.json")
    p.set_defaults(func=cmd_report)


def cmd_ankle(args: argparse.Namespace) -> int:
    """``study ankle``."""
    from bench.errors import InvalidParameterError
    from bench.studies.ankle import run_study
    from bench.studies.ankle_config import load_study_config

    cfg = load_study_config(args.file)
    if args.subjects is not None and args.subjects < 1:
        raise InvalidParameterError(f"--subjects must be >= 1; got {args.subjects}")
    if args.validate:
        print(f"{args.file}: OK ({len(cfg.combinations)} (alpha, beta) combinations x "
              f"{cfg.calibration.repetitions} repetitions, {cfg.subjects.n} subjects)")
        return 0
    if args.subjects is not None:
        cfg = cfg.model_copy(update={"subjects": cfg.subjects.model_copy(
            update={"n": args.subjects})})
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    run_study(cfg, out)
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``study report``."""
    from bench.studies.ankle_report import write_study_report

    paths = write_study_report(args.out)
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0
