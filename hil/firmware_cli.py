"""``impbench firmware build|flash`` and ``impbench rig emulate``: the Uno rig firmware.

``bench/cli.py`` calls :func:`register` with its subparsers (after ``hil.cli``, whose ``rig``
group gets the ``emulate`` command); each handler returns an exit status (0 ok, 1 run-time
failure, 2 bad input). ``python -m hil.firmware_cli ...`` runs the same commands.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "register"]


def _print_error(exc: BaseException) -> None:
    """One line per located issue of an input file (a rig file), else ``error: ...``."""
    issues = getattr(exc, "issues", None)
    for line in (issues or [f"error: {exc}"]):
        print(line, file=sys.stderr)


def _subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``firmware build|flash`` and ``rig emulate`` to ``subparsers``."""
    fw = subparsers.add_parser("firmware", help="Arduino Uno rig firmware: build, flash")
    sub = fw.add_subparsers(dest="firmware_command", metavar="FIRMWARE_COMMAND", required=True)
    p = sub.add_parser("build", help="compile the firmware (avr-gcc) and the emulator harness")
    p.add_argument("--rig", help="rig description YAML (default: the shipped rig)")
    p.add_argument("--rig-id", type=int, default=1, help="rig serial number reported in HELLO")
    p.add_argument("--out", help="build folder (default: build/firmware)")
    p.add_argument("--no-harness", action="store_true", help="firmware only (no simavr needed)")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("flash", help="write the built firmware to an Uno with avrdude")
    p.add_argument("--port", required=True, help="serial port of the Uno (e.g. /dev/ttyACM0)")
    p.add_argument("--hex", help="image to write (default: build/firmware/rig.hex)")
    p.add_argument("--baud", type=int, default=115200, help="bootloader rate")
    p.add_argument("--programmer", default="arduino", help="avrdude programmer id")
    p.add_argument("--dry-run", action="store_true", help="print the avrdude command only")
    p.set_defaults(func=cmd_flash)

    rig = subparsers.choices.get("rig")
    rig_sub = _subparsers_of(rig) if rig is not None else None
    if rig_sub is None:
        rig = subparsers.add_parser("rig", help="hardware-in-the-loop rig")
        rig_sub = rig.add_subparsers(dest="rig_command", metavar="RIG_COMMAND", required=True)
    p = rig_sub.add_parser("emulate", help="run the firmware in simavr on a pseudo-terminal, "
                                           "the lever physics closing the loop")
    p.add_argument("--realtime", action="store_true",
                   help="emulated time never runs ahead of wall time (default: free-running "
                        "while the host talks, real time while it is silent)")
    p.add_argument("--rig", help="rig description YAML (default: the shipped rig)")
    p.add_argument("--link", help="symlink to keep pointing at the pty (stable port name)")
    p.add_argument("--seed", type=int, default=0, help="sensor-noise seed")
    p.add_argument("--pivot0", type=float, help="initial pivot position, m")
    p.add_argument("--slack-ms", type=float, default=20.0,
                   help="how far emulated time may run ahead of the host's last byte, ms")
    p.add_argument("--duration", type=float, help="stop after this many wall seconds")
    p.add_argument("--build-dir", help="firmware build folder (default: build/firmware)")
    p.add_argument("--stats", help="write the emulator statistics (JSON) here at exit")
    p.set_defaults(func=cmd_emulate)


def cmd_build(args: argparse.Namespace) -> int:
    """``firmware build``."""
    from hil.firmware_build import BuildError, build, toolchain_missing

    missing = toolchain_missing(emulator=not args.no_harness)
    if missing:
        print("error: missing " + ", ".join(missing) + "; apt-get install -y simavr "
              "libsimavr-dev gcc-avr avr-libc arduino-core-avr", file=sys.stderr)
        return 1
    try:
        res = build(args.rig, args.out, rig_id=args.rig_id, harness=not args.no_harness)
    except (ValueError, OSError) as exc:
        _print_error(exc)
        return 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"firmware {res.hex}: {res.summary()}")
    if res.harness is not None:
        print(f"harness {res.harness}")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    """``firmware flash --port PORT``."""
    from hil.firmware_build import BuildError, default_build_dir, flash

    hexf = Path(args.hex) if args.hex else default_build_dir() / "rig.hex"
    try:
        cmd = flash(hexf, args.port, baud=args.baud, programmer=args.programmer,
                    dry_run=args.dry_run)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(("would run: " if args.dry_run else "flashed: ") + " ".join(cmd))
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    """``rig emulate [--realtime]``: serve until Ctrl-C / SIGTERM (or ``--duration``)."""
    from hil.firmware_build import BuildError, Emulator

    try:
        emu = Emulator(args.rig, realtime=args.realtime, slack_ms=args.slack_ms, seed=args.seed,
                       pivot0=args.pivot0, link_path=args.link, build_dir=args.build_dir)
        emu.start()
    except (ValueError, OSError) as exc:
        _print_error(exc)
        return 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mode = "real time" if args.realtime else "lock-step, host-paced"
    print(f"emulated rig '{emu.rig.name}' ({mode}) on {emu.url}", flush=True)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        stats = emu.serve(args.duration)
    except KeyboardInterrupt:
        stats = emu.stop()
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=1))
    print(f"emulated {stats.get('emulated_s', 0):.3f} s in {stats.get('wall_s', 0):.3f} s wall "
          f"(x{stats.get('speed', 0):.2f}); control loop {stats.get('tick_rate_hz', 0):.1f} Hz, "
          f"tick {stats.get('tick_mean_us', 0):.0f} us mean / {stats.get('tick_max_us', 0):.0f} "
          f"us max", flush=True)
    return 0 if emu.error is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hil.firmware_cli ...`` (the same commands as ``impbench ...``)."""
    parser = argparse.ArgumentParser(prog="impbench")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
