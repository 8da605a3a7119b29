"""``impbench rig ...``: serial ports, ping, record, recover and the virtual rig.

``bench/cli.py`` calls :func:`register` with its subparsers; each handler takes the parsed
arguments and returns an exit status (0 ok, 1 run-time failure, 2 bad input).
``python -m hil.cli rig ...`` runs the same commands without the bench CLI.

Two hooks let bench commands take recorded sessions: :func:`handle_report` (``impbench report
DIR`` on a session directory writes the session report, :mod:`hil.session_report`) and
:func:`handle_estimate_data` (``impbench estimate ... DATASET`` reads a session dataset).
Each returns None when the path is not a session dataset, and the bench command goes on as
usual. :func:`handle_validate` lets ``impbench validate`` check rig session files, and
:func:`handle_is_own_file` tells the bench that a file is a session file, not a scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.types import Realizations

__all__ = [
    "handle_estimate_data",
    "handle_is_own_file",
    "handle_report",
    "handle_validate",
    "main",
    "register",
]


def _print_error(exc: BaseException) -> None:
    """One line per located issue (``FILE:LINE: field: message``), else ``error: ...``."""
    issues = getattr(exc, "issues", None)
    if issues:
        for issue in issues:
            print(issue, file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}"
                                         ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rig`` and ``firmware`` command groups to ``subparsers``."""
    rig = subparsers.add_parser("rig", help="hardware-in-the-loop rig: ports, ping, record, "
                                            "recover, virtual")
    sub = rig.add_subparsers(dest="rig_command", metavar="RIG_COMMAND", required=True)

    p = sub.add_parser("ports", help="list serial ports")
    p.set_defaults(func=cmd_ports)

    p = sub.add_parser("ping", help="HELLO round trips to a rig; prints identity and latency")
    p.add_argument("port", help="serial port, pty path or pyserial URL")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--baud", type=int, default=1_000_000)
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("record", help="record a session file on a rig")
    p.add_argument("session", help="session YAML (e.g. scenarios/rig-session.yaml)")
    p.add_argument("--port", required=True, help="serial port, pty path or pyserial URL")
    p.add_argument("--out", help="output stem (default: runs/<session name>/<session name>)")
    p.add_argument("--baud", type=int, default=1_000_000)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("recover", help="rebuild a session dataset from its raw log")
    p.add_argument("log", help="the session's .rawlog file")
    p.add_argument("--out", help="output stem (default: the log's stem)")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("virtual", help="serve a virtual rig on a pseudo-terminal")
    p.add_argument("--realtime", action="store_true",
                   help="device time follows wall time (default: as fast as the host keeps up)")
    p.add_argument("--rig", help="rig description YAML (default: the shipped rig)")
    p.add_argument("--link", help="symlink to keep pointing at the pty (stable port name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--capacity", type=int, default=128, help="setpoint buffer slots")
    p.add_argument("--duration", type=float, help="stop after this much device time, s")
    p.add_argument("--corrupt", type=float, default=0.0, help="byte corruption probability")
    p.add_argument("--drop", type=float, default=0.0, help="frame drop probability")
    p.add_argument("--dup", type=float, default=0.0, help="frame duplication probability")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="latency jitter, ms")
    p.add_argument("--reset-at", type=_float_list, default=(), metavar="S[,S...]",
                   help="firmware resets, s of device time after the first START")
    p.add_argument("--disconnect-at", type=_float_list, default=(), metavar="S[,S...]",
                   help="simulated unplugs, s of device time after the first START")
    p.set_defaults(func=cmd_virtual)

    from hil.firmware_cli import register as register_firmware

    register_firmware(subparsers)  # firmware build|flash and rig emulate


def cmd_ports(args: argparse.Namespace) -> int:
    """``rig ports``."""
    from hil.link import list_ports

    ports = list_ports()
    if not ports:
        print("no serial ports found")
    for p in ports:
        print(f"{p['device']}\t{p['description']}\t{p['hwid']}")
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    """``rig ping PORT``."""
    from hil.link import LinkError, ping

    try:
        res = ping(args.port, count=args.count, baudrate=args.baud)
    except (LinkError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    h = res.hello
    ms = [x * 1e3 for x in res.latencies]
    print(f"rig {h.rig_id}: protocol v{h.protocol_version}, firmware {h.firmware_version}, "
          f"{h.loop_rate_hz} Hz, {h.n_channels} channels, buffer {h.buffer_capacity}")
    print(f"HELLO round trip over {len(ms)}: min {min(ms):.2f} ms, mean {sum(ms) / len(ms):.2f} "
          f"ms, max {max(ms):.2f} ms")
    return 0


def _summary(ds: object) -> str:
    m = ds.meta  # type: ignore[attr-defined]
    return (f"{m['received']}/{m['total']} samples, {m['gaps']['missing']} missing in "
            f"{len(m['gaps']['runs'])} gap(s), {len(m['faults'])} fault(s), "
            f"firmware {m['firmware']}, segments {m['segments']}")


def cmd_record(args: argparse.Namespace) -> int:
    """``rig record SESSION.yaml --port PORT``."""
    from bench.errors import ScenarioError
    from hil.link import LinkError
    from hil.session import SessionError, record
    from hil.session_spec import load_session

    try:
        out = args.out
        if out is None:  # outputs go under runs/, never next to the shipped session files
            name = load_session(args.session).name  # a checked path component
            out = Path("runs") / name / name  # the folder is made once the rig answers
        ds = record(args.session, args.port, out=out, baudrate=args.baud,
                    progress=not args.quiet and sys.stderr.isatty())
    except ScenarioError as exc:
        _print_error(exc)
        return 2
    except (SessionError, LinkError) as exc:
        _print_error(exc)
        return 1
    print(f"recorded {_summary(ds)}")
    stem = ds.meta["raw_log"].rsplit(".", 1)[0]
    print(f"dataset: {stem}.npz + {stem}.json (raw log {ds.meta['raw_log']})")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """``rig recover LOG``."""
    from bench.errors import DataError, ScenarioError
    from hil.session import recover

    try:
        ds = recover(args.log, out=args.out)
    except (DataError, ScenarioError, OSError) as exc:
        _print_error(exc)
        return 2
    print(f"recovered {_summary(ds)}; torn records {ds.meta['torn_records']}")
    return 0


def cmd_virtual(args: argparse.Namespace) -> int:
    """``rig virtual [--realtime]``: serve until Ctrl-C (or ``--duration``)."""
    from hil.virtual import Faults, VirtualRig

    try:
        faults = Faults(corrupt_rate=args.corrupt, drop_rate=args.drop, dup_rate=args.dup,
                        jitter_ms=args.jitter_ms, reset_at_s=args.reset_at,
                        disconnect_at_s=args.disconnect_at)
        rig = VirtualRig(args.rig, realtime=args.realtime, faults=faults, seed=args.seed,
                         capacity=args.capacity, link_path=args.link)
    except ValueError as exc:
        _print_error(exc)
        return 2
    mode = "real time" if args.realtime else "fast"
    print(f"virtual rig '{rig.rig.name}' ({mode}) on {rig.url}", flush=True)
    # Ctrl-C and SIGTERM (a background job, `kill PID`) ask the device loop to stop; it
    # returns within 0.1 s of device time, then the stats are printed and the pty closed.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: rig.request_stop())
    try:
        rig.serve(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        rig.stop()
    s = rig.stats
    print(f"served {s.samples_out} samples in {s.frames_out} frames; dropped {s.dropped}, "
          f"corrupted {s.corrupted_frames}, duplicated {s.duplicated}, resets {s.resets}")
    return 0


def _is_session_data(data: object) -> bool:
    """True when a parsed YAML document is a rig session file rather than a scenario.

    A session file holds one top-level ``session:`` mapping (the shipped form), or the
    session's fields at the top level: ``duration_s`` or ``pivot``, and none of a scenario's
    ``plant``, ``methods``, ``grid``, ``seeds``. (Here, not in :mod:`hil.session_spec`, so
    that validating a scenario imports nothing of the session machinery.)
    """
    if not isinstance(data, dict):
        return False
    if "session" in data:
        return True
    keys = set(data)
    return bool(keys & {"duration_s", "pivot"}) and not keys & {"plant", "methods", "grid",
                                                                 "seeds"}


def _session_document(path: Path) -> object | None:
    """The parsed document of ``path`` when it is a rig session file, else None.

    Reads through the hardened reader; a file it cannot read at all (not YAML, not UTF-8,
    too large) is left to the scenario loader, which reports the same problem.
    """
    from bench.errors import ScenarioError
    from bench.yamlfile import read_yaml

    if Path(path).suffix.lower() not in (".yaml", ".yml"):
        return None
    try:
        doc = read_yaml(path)
    except ScenarioError:
        return None
    return doc if _is_session_data(doc.data) else None


def handle_is_own_file(path: Path) -> bool | None:
    """True when ``path`` is a rig session file (not a scenario); None otherwise."""
    return True if _session_document(path) is not None else None


def handle_validate(path: Path) -> str | None:
    """``impbench validate FILE`` for a rig session file.

    Checks everything that can be checked without a rig: the file (hardened reader), every
    field and its bounds, the rig file it names, that the session fits that rig (sample rate,
    pivot travel, filter cut-offs, size), and every repetition's perturbation against the
    actuator limits (one repetition in memory at a time).

    Returns
    -------
    str or None
        ``"FILE: OK: rig session ..."``; None when ``path`` is not a session file.

    Raises
    ------
    bench.yamlfile.FileValidationError
        Every problem, ``FILE:LINE: field: message``.
    """
    doc = _session_document(path)
    if doc is None:
        return None
    from hil.session_spec import check_session, load_session, resolve_session

    spec = load_session(path, doc=doc)  # type: ignore[arg-type]
    res = resolve_session(spec, Path(path).parent, str(path))
    check_session(res)
    per_rep = round(spec.duration_s * res.fs) + round(spec.settle_s * res.fs)
    return (f"{path}: OK: rig session {spec.name!r}: {spec.repetitions} x {spec.duration_s:g} s "
            f"at {res.fs:g} Hz ({spec.repetitions * per_rep} samples with settling), "
            f"{spec.perturbation.signal} {spec.perturbation.level_mm:g} mm, pivot "
            f"{spec.pivot.shape} on rig {res.rig.name!r}")


def handle_report(args: argparse.Namespace) -> int | None:
    """``impbench report DIR`` when DIR (or a dataset path) holds a recorded session.

    Uses ``args.dir`` and the report options ``method``, ``param`` (dict), ``decimate``,
    ``truth`` and ``mapping_duration`` when present. Returns None when there is no session
    dataset at ``args.dir`` (a scenario run directory).
    """
    from bench.errors import DataError
    from hil.session_data import find_datasets
    from hil.session_report import write_session_reports

    if not find_datasets(args.dir):
        d = Path(args.dir)
        logs = sorted(d.glob("*.rawlog")) if d.is_dir() else []
        if logs and not (d / "scenario.json").exists():
            raise DataError(f"{d} holds the raw log {logs[0].name} but no session dataset; "
                            f"rebuild it with 'impbench rig recover {logs[0]}'")
        return None
    truth = getattr(args, "truth", "auto")
    written = write_session_reports(
        args.dir, out=getattr(args, "out", None), method=getattr(args, "method", None) or "sds",
        params=getattr(args, "param_dict", None) or {},
        decimate_by=getattr(args, "decimate", None),
        truth=None if truth == "none" else truth,
        mapping_duration=getattr(args, "mapping_duration", None))
    for paths in written:
        numbers = json.loads(paths["json"].read_text())
        err = numbers.get("stiffness_error_pct")
        print(f"session {Path(numbers['dataset']).name}: {numbers['method']} on "
              f"{numbers['realizations']} x {numbers['samples_per_realization']} at "
              f"{numbers['fs_identification']:g} Hz; stiffness error "
              + ("n/a" if err is None else f"{err:.1f} %")
              + ("" if numbers["error"] is None else f" (failed: {numbers['error']})"))
        for key in ("md", "html", "figure"):
            print(f"{key:8s} {paths[key]}")
    return 0


def handle_estimate_data(path: str | os.PathLike, period: float, decimate_by: int = 1
                         ) -> Realizations | None:
    """Estimator input of ``impbench estimate`` when ``path`` is a recorded session dataset.

    u = actuator position (m), y = force (N), schedule = pivot position (m), cut into
    realizations of ``period`` s; periods with gaps are dropped. No truth is attached.
    Returns None when ``path`` is not a session dataset.
    """
    from hil.session_data import is_session_dataset, session_realizations

    if Path(path).suffix.lower() not in (".npz", ".json", "") or not is_session_dataset(path):
        return None  # e.g. x.csv stays a CSV record even beside a session dataset x.npz/x.json
    return session_realizations(path, truth=None, period=period, decimate_by=decimate_by)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hil.cli rig ...`` (the same commands as ``impbench rig ...``)."""
    parser = argparse.ArgumentParser(prog="impbench")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
