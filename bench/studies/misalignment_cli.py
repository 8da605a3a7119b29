"""``impbench misalignment``: the issue-14 study in one command (added by ``register``).

``impbench misalignment [FILE] [--out DIR] [--jobs N] [--force] [--target PCT]`` runs the
scenario (default ``scenarios/misalignment.yaml``; resumable), writes the standard report
and the study's ``misalignment.md/.html/.json`` with the figures "error vs jitter" and
"repetitions needed for 15 % error vs jitter". ``--report-only DIR`` rewrites the study
report of a finished run (e.g. one made with ``impbench run``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

_DEFAULT = Path(__file__).resolve().parents[2] / "scenarios" / "misalignment.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``misalignment`` command to ``subparsers``."""
    p = subparsers.add_parser(
        "misalignment",
        help="error vs jitter of ensemble methods, raw/aligned, and tvkf (issue 14)",
    )
    p.add_argument("file", nargs="?", default=None,
                   help=f"scenario YAML (default: {_DEFAULT.name} of this checkout)")
    p.add_argument("--out", help="run directory (default: runs/<scenario name>)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--force", action="store_true", help="recompute finished cells")
    p.add_argument("--target", type=float, default=15.0,
                   help="error for the repetitions-needed figure, percent (default 15)")
    p.add_argument("--report-only", metavar="DIR",
                   help="only (re)write the study report of a finished run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_misalignment)


def cmd_misalignment(args: argparse.Namespace) -> int:
    """Run ``impbench misalignment``; returns the exit status."""
    from bench.errors import InvalidParameterError
    from bench.studies.misalignment import run_study, write_misalignment_report

    if not (0 < args.target < 1000):
        raise InvalidParameterError(f"--target must be a percentage in (0, 1000); got "
                                    f"{args.target}")
    if args.jobs is not None and args.jobs < 1:
        raise InvalidParameterError(f"--jobs must be >= 1; got {args.jobs}")
    if args.report_only:
        paths = write_misalignment_report(Path(args.report_only), target=args.target)
    else:
        from bench.scenario import load_scenario

        file = Path(args.file) if args.file else _DEFAULT
        out = Path(args.out) if args.out else Path("runs") / load_scenario(file).name
        paths = run_study(file, out, jobs=args.jobs, force=args.force,
                          progress=not args.quiet, target=args.target)
    for key in ("md", "html", "json", "error_fig", "reps_fig", "report_md"):
        if key in paths:
            print(f"{key:10s} {paths[key]}")
    return 0
