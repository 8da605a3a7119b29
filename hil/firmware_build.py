"""Build, flash and emulate the Uno rig firmware (``hil/firmware/``, issue 11).

* :func:`build` compiles the sketch ``hil/firmware/rig/rig.ino`` with avr-gcc against the
  Debian ``arduino-core-avr`` core (no Java, no Arduino IDE), writes ``rig.elf`` / ``rig.hex``
  and reports flash and RAM use (``avr-size``), and compiles the simavr harness
  ``hil/firmware/harness/harness.c`` with the host gcc.
* :func:`rig_config_header` turns a rig description (``plants.lever`` schema) into the
  firmware's ``rig_config.h``: travel limits, the Uno's analogue front end (units per ADC
  count, fixed point) and the actuator DAC scaling. The same numbers drive the emulator's
  physics adapter, so the firmware and the emulated electronics cannot disagree.
* :func:`flash` writes ``rig.hex`` to a board with avrdude (the Uno's optiboot bootloader).
* :class:`Emulator` runs the firmware in simavr through the harness and closes the loop with
  :class:`plants.lever.physics.LeverRig` in deterministic lock-step: the harness stops at each
  control tick's first ADC conversion and the physics advances by whole steps of
  ``1 / rig.sampling.fs`` of emulated time (see the harness's header comment). The firmware's
  UART is a pseudo-terminal the host opens like a USB port.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ARDUINO_CORE",
    "BuildError",
    "BuildResult",
    "Emulator",
    "FrontEnd",
    "build",
    "build_firmware",
    "build_harness",
    "build_protocol_tests",
    "default_build_dir",
    "flash",
    "front_end",
    "rig_config_header",
    "toolchain_missing",
    "write_vector_header",
]

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
SKETCH_DIR = FIRMWARE_DIR / "rig"
HARNESS_SRC = FIRMWARE_DIR / "harness" / "harness.c"
ARDUINO_CORE = Path("/usr/share/arduino/hardware/arduino/avr/cores/arduino")
ARDUINO_VARIANT = Path("/usr/share/arduino/hardware/arduino/avr/variants/standard")
SIMAVR_INCLUDE = Path("/usr/include/simavr")
F_CPU = 16_000_000
#: SRAM of the ATmega328P, bytes; the build refuses to use more than RAM_BUDGET of it.
RAM_TOTAL = 2048
RAM_BUDGET = 0.75
FLASH_TOTAL = 32256  # 32 KB minus the 512 B optiboot bootloader
ADC_FULL = 1023
ADC_VREF_MV = 5000
DAC_FULL = 65535

_MCU = ["-mmcu=atmega328p", f"-DF_CPU={F_CPU}L", "-DARDUINO=10819", "-DARDUINO_AVR_UNO",
        "-DARDUINO_ARCH_AVR"]
_OPT = ["-Os", "-flto", "-ffunction-sections", "-fdata-sections", "-Wall"]


class BuildError(RuntimeError):
    """A compiler or tool failed, or the firmware exceeds its memory budget."""


def default_build_dir() -> Path:
    """``build/firmware`` under the repository root (git-ignored)."""
    return FIRMWARE_DIR.parent.parent / "build" / "firmware"


def toolchain_missing(*, emulator: bool = True) -> list[str]:
    """Names of the tools/packages this machine lacks for building (and emulating)."""
    need = {"avr-gcc": "gcc-avr", "avr-g++": "gcc-avr", "avr-objcopy": "binutils-avr",
            "avr-size": "binutils-avr", "gcc": "gcc"}
    out = [f"{tool} ({pkg})" for tool, pkg in need.items() if shutil.which(tool) is None]
    if not (ARDUINO_CORE / "Arduino.h").exists():
        out.append(f"{ARDUINO_CORE} (arduino-core-avr)")
    if emulator and not (SIMAVR_INCLUDE / "sim_avr.h").exists():
        out.append(f"{SIMAVR_INCLUDE} (libsimavr-dev)")
    return out


# ----------------------------------------------------------------------------------------------
# Rig description -> firmware constants


@dataclass(frozen=True)
class FrontEnd:
    """The Uno's analogue front end and actuator DAC for one rig (all integers the firmware uses).

    Each ADC channel reads ``value = offset + counts * scale`` (10-bit counts, 0-1023):
    the pivot potentiometer in um, the force amplifier in mN, the actuator position in um.
    The DAC maps actuator setpoints (10 um units) linearly onto 16-bit codes over
    ``[dac_min_units, dac_min_units + dac_span_units]``.
    """

    pivot_offset_um: int
    pivot_scale_um: float
    force_offset_mn: int
    force_scale_mn: float
    act_offset_um: int
    act_scale_um: float
    dac_min_units: int
    dac_span_units: int
    pivot_hard_min_um: int
    pivot_hard_max_um: int
    act_stroke_um: int
    default_fs: int
    max_fs: int
    step_cycles: int
    constants: dict = field(default_factory=dict)

    def counts(self, channel: str, value: float) -> int:
        """Physical value (um, mN) -> the ADC count the Uno reads, clipped to 0..1023."""
        off, scale = {"pivot": (self.pivot_offset_um, self.pivot_scale_um),
                      "force": (self.force_offset_mn, self.force_scale_mn),
                      "actuator": (self.act_offset_um, self.act_scale_um)}[channel]
        return int(min(ADC_FULL, max(0, round((value - off) / scale))))

    def dac_to_m(self, code: int) -> float:
        """DAC code -> actuator position command, m."""
        units = self.dac_min_units + code * self.dac_span_units / DAC_FULL
        return units * 10e-6


def front_end(rig: Any, *, max_fs: int = 1000) -> FrontEnd:
    """Uno front end of ``rig``: the pivot potentiometer as the rig file describes it (10-bit),
    the force amplifier spanning the rig's force-sensor range, the actuator position and DAC
    spanning the actuator stroke. ``max_fs`` is the fastest sample rate the Uno sustains
    (CPU and 500 kbaud UART; CONFIG asks for more -> NACK BAD_CONFIG); HELLO reports
    ``min(sampling.fs, max_fs)``.

    Raises
    ------
    ValueError
        The rig's pivot sensor is not a 10-bit ADC channel, or a scale does not fit the
        firmware's 32-bit fixed point.
    """
    s = rig.sensors
    if s.pivot.bits != 10 or s.pivot.signed:
        raise ValueError(f"rig {rig.name!r}: sensors.pivot must be an unsigned 10-bit ADC "
                         f"channel for the Uno firmware (got bits={s.pivot.bits})")
    g, a = rig.geometry, rig.actuator
    f_lo, f_hi = s.force.count_range
    f_range = (f_lo * s.force.scale, f_hi * s.force.scale) if s.force.bits else (-100.0, 100.0)
    stroke_um = round(a.stroke * 1e6)
    fe = dict(
        pivot_offset_um=round(s.pivot.offset * 1e6), pivot_scale_um=s.pivot.scale * 1e6,
        force_offset_mn=round(f_range[0] * 1e3),
        force_scale_mn=(f_range[1] - f_range[0]) * 1e3 / (ADC_FULL + 1),
        act_offset_um=-stroke_um, act_scale_um=2 * stroke_um / (ADC_FULL + 1),
        dac_min_units=-round(stroke_um / 10), dac_span_units=2 * round(stroke_um / 10),
        pivot_hard_min_um=round((g.pivot_min - g.overtravel) * 1e6),
        pivot_hard_max_um=round((g.pivot_max + g.overtravel) * 1e6),
        act_stroke_um=stroke_um, default_fs=min(int(rig.sampling.fs), max_fs), max_fs=max_fs,
        step_cycles=round(F_CPU / rig.sampling.fs),
    )
    if abs(F_CPU / rig.sampling.fs - fe["step_cycles"]) > 1e-9:
        raise ValueError(f"rig {rig.name!r}: sampling.fs must divide {F_CPU} Hz")
    if 1_000_000 % fe["default_fs"] or fe["default_fs"] > max_fs:
        raise ValueError(f"rig {rig.name!r}: sampling.fs ({fe['default_fs']} Hz) must divide "
                         f"1 MHz and be at most {max_fs} Hz for the Uno firmware")
    c = {
        "RIG_DEFAULT_FS": fe["default_fs"], "RIG_MAX_FS": max_fs,
        "RIG_PIVOT_HARD_MIN_UM": fe["pivot_hard_min_um"],
        "RIG_PIVOT_HARD_MAX_UM": fe["pivot_hard_max_um"], "RIG_ACT_STROKE_UM": stroke_um,
        "RIG_PIVOT_OFFSET_UM": fe["pivot_offset_um"],
        "RIG_PIVOT_SCALE_Q12": round(fe["pivot_scale_um"] * 4096),
        "RIG_PIVOT_INV_Q20": round(2**20 / fe["pivot_scale_um"]),
        "RIG_FORCE_OFFSET_MN": fe["force_offset_mn"],
        "RIG_FORCE_SCALE_Q12": round(fe["force_scale_mn"] * 4096),
        "RIG_ACT_OFFSET_UM": fe["act_offset_um"],
        "RIG_ACT_SCALE_Q12": round(fe["act_scale_um"] * 4096),
        "RIG_DAC_MIN_UNITS": fe["dac_min_units"],
        "RIG_DAC_Q8": round(DAC_FULL * 256 / fe["dac_span_units"]),
    }
    for name in ("RIG_PIVOT_SCALE_Q12", "RIG_FORCE_SCALE_Q12", "RIG_ACT_SCALE_Q12"):
        if not 0 < c[name] * ADC_FULL < 2**32:
            raise ValueError(f"rig {rig.name!r}: {name} = {c[name]} overflows 32 bits")
    span_um = fe["pivot_hard_max_um"] - fe["pivot_offset_um"]
    if span_um * c["RIG_PIVOT_INV_Q20"] >= 2**32 or c["RIG_DAC_Q8"] * fe["dac_span_units"] >= 2**31:
        raise ValueError(f"rig {rig.name!r}: pivot or DAC scaling overflows 32 bits")
    return FrontEnd(**fe, constants=c)


def rig_config_header(rig: Any, *, rig_id: int = 1) -> str:
    """Text of ``rig_config.h`` for ``rig`` (see :func:`front_end`)."""
    if not 0 <= rig_id <= 0xFFFF:
        raise ValueError(f"rig_id must be in [0, 65535]; got {rig_id}")
    fe = front_end(rig)
    lines = [
        f"/* Generated by hil/firmware_build.py from rig {rig.name!r}; do not edit by hand:",
        " * impbench firmware build --rig RIG.yaml writes a fresh one into the build folder.",
        " * ADC channels: value = OFFSET + (counts * SCALE_Q12) >> 12 (um, mN);",
        " * pivot setpoint counts = ((um - OFFSET) * INV_Q20 + 2^19) >> 20;",
        " * DAC code = ((units - DAC_MIN_UNITS) * DAC_Q8) >> 8 (units of 10 um). */",
        "#ifndef RIG_CONFIG_H", "#define RIG_CONFIG_H", f"#define RIG_ID {rig_id}",
    ]
    lines += [f"#define {k} ({v}L)" for k, v in fe.constants.items()]
    lines += ["#endif", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class BuildResult:
    """Outputs of :func:`build`.

    Attributes
    ----------
    elf, hex : Path
        Firmware images.
    harness : Path or None
        The simavr harness binary (None when built without it).
    flash_bytes, ram_bytes : int
        ``.text + .data`` in flash; ``.data + .bss`` in SRAM (static; the stack comes on top).
    """

    elf: Path
    hex: Path
    harness: Path | None
    flash_bytes: int
    ram_bytes: int

    @property
    def ram_share(self) -> float:
        """Static RAM use as a share of the 2 KB SRAM."""
        return self.ram_bytes / RAM_TOTAL

    def summary(self) -> str:
        """One line: flash and RAM use."""
        return (f"flash {self.flash_bytes} B ({100 * self.flash_bytes / FLASH_TOTAL:.1f} % of "
                f"{FLASH_TOTAL}), RAM {self.ram_bytes} B ({100 * self.ram_share:.1f} % of "
                f"{RAM_TOTAL}) static")


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{cmd[0]} not found; install the Debian packages gcc-avr avr-libc "
                         f"arduino-core-avr simavr libsimavr-dev") from exc
    if p.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} ... failed:\n{p.stderr.strip()}")
    return p.stdout


def build_firmware(rig: Any = None, out_dir: str | os.PathLike | None = None, *,
                   rig_id: int = 1) -> BuildResult:
    """Compile the sketch with the rig's ``rig_config.h``; returns the images and memory use.

    Raises
    ------
    BuildError
        A tool is missing or fails, or static RAM exceeds 75 % of 2 KB.
    """
    from plants.lever.rig import load_rig

    rig = load_rig(rig)
    out = Path(out_dir) if out_dir is not None else default_build_dir()
    src = out / "sketch"
    obj = out / "obj"
    for d in (src, obj):
        d.mkdir(parents=True, exist_ok=True)
    for f in SKETCH_DIR.iterdir():
        if f.suffix in (".ino", ".c", ".h", ".cpp"):
            shutil.copy2(f, src / f.name)
    (src / "rig_config.h").write_text(rig_config_header(rig, rig_id=rig_id))
    (src / "rig.cpp").write_text('#include <Arduino.h>\n#include "rig.ino"\n')
    inc = [f"-I{ARDUINO_CORE}", f"-I{ARDUINO_VARIANT}", f"-I{src}"]
    cflags = _MCU + _OPT + inc
    objs = []
    core = sorted(p for p in ARDUINO_CORE.iterdir() if p.suffix in (".c", ".cpp", ".S"))
    for p in core:
        o = obj / f"core_{p.name}.o"
        if p.suffix == ".c":
            cmd = ["avr-gcc", "-std=gnu11", *cflags]
        elif p.suffix == ".cpp":
            cmd = ["avr-g++", "-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics",
                   "-DDECIMAL_DIG=__DECIMAL_DIG__", *cflags]
        else:
            cmd = ["avr-gcc", "-x", "assembler-with-cpp", *cflags]
        _run([*cmd, "-c", str(p), "-o", str(o)])
        objs.append(o)
    lib = obj / "core.a"
    lib.unlink(missing_ok=True)
    _run(["avr-gcc-ar", "rcs", str(lib), *map(str, objs)])
    sk = [("protocol.c", ["avr-gcc", "-std=gnu11", "-Wextra", *cflags]),
          ("rig.cpp", ["avr-g++", "-std=gnu++11", "-fno-exceptions", "-Wextra", *cflags])]
    sobjs = []
    for name, cmd in sk:
        o = obj / f"{name}.o"
        _run([*cmd, "-c", str(src / name), "-o", str(o)])
        sobjs.append(str(o))
    elf = out / "rig.elf"
    _run(["avr-gcc", *_MCU, "-Os", "-flto", "-Wl,--gc-sections", *sobjs, str(lib), "-lm",
          "-o", str(elf)])
    hexf = out / "rig.hex"
    _run(["avr-objcopy", "-O", "ihex", "-R", ".eeprom", str(elf), str(hexf)])
    sizes = _run(["avr-size", "-A", str(elf)])
    sec = {}
    for line in sizes.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    flash_b = sec.get(".text", 0) + sec.get(".data", 0)
    ram_b = sec.get(".data", 0) + sec.get(".bss", 0) + sec.get(".noinit", 0)
    res = BuildResult(elf, hexf, None, flash_b, ram_b)
    if res.ram_share > RAM_BUDGET:
        raise BuildError(f"firmware uses {ram_b} B of static RAM, over the budget of "
                         f"{RAM_BUDGET:.0%} of {RAM_TOTAL} B")
    if flash_b > FLASH_TOTAL:
        raise BuildError(f"firmware needs {flash_b} B of flash; the Uno has {FLASH_TOTAL}")
    return res


def build_harness(out_dir: str | os.PathLike | None = None) -> Path:
    """Compile the simavr harness (host gcc, ``-lsimavr -lutil``); returns the binary."""
    out = Path(out_dir) if out_dir is not None else default_build_dir()
    out.mkdir(parents=True, exist_ok=True)
    exe = out / "harness"
    _run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", f"-I{SIMAVR_INCLUDE}", str(HARNESS_SRC),
          "-o", str(exe), "-lsimavr", "-lutil"])
    return exe


def build(rig: Any = None, out_dir: str | os.PathLike | None = None, *, rig_id: int = 1,
          harness: bool = True) -> BuildResult:
    """Firmware (:func:`build_firmware`) and, with ``harness``, the emulator harness."""
    res = build_firmware(rig, out_dir, rig_id=rig_id)
    if not harness:
        return res
    return BuildResult(res.elf, res.hex, build_harness(out_dir), res.flash_bytes, res.ram_bytes)


def flash(hex_path: str | os.PathLike, port: str, *, baud: int = 115200,
          programmer: str = "arduino", dry_run: bool = False) -> list[str]:
    """Write ``hex_path`` to an Uno on ``port`` with avrdude; returns the command used.

    Parameters
    ----------
    baud : int
        Bootloader rate (115200 for optiboot on the Uno).
    programmer : str
        avrdude programmer id (``arduino`` = the bootloader over USB serial).
    dry_run : bool
        Only return the command.
    """
    hexf = Path(hex_path)
    if not hexf.is_file():
        raise BuildError(f"no firmware image at {hexf}; run 'impbench firmware build' first")
    cmd = ["avrdude", "-p", "atmega328p", "-c", programmer, "-P", port, "-b", str(baud),
           "-D", "-U", f"flash:w:{hexf}:i"]
    if not dry_run:
        _run(cmd)
    return cmd


# ----------------------------------------------------------------------------------------------
# Protocol unit tests in C against the shared vectors


def write_vector_header(vectors: dict, path: str | os.PathLike) -> Path:
    """Write ``vectors.h`` (C arrays) from the JSON protocol vectors, for ``test_protocol.c``."""
    lines = ["/* generated from hil/vectors/protocol_vectors.json */", "#include <stdint.h>",
             "typedef struct { const char *data; uint32_t crc; } crc_case_t;",
             "typedef struct { const char *data; const char *encoded; } cobs_case_t;",
             "typedef struct { const char *name; uint8_t type; uint16_t seq; const char *payload;"
             " const char *wire; int nfields; long long fields[40]; } frame_case_t;",
             "typedef struct { const char *name; const char *wire; const char *error; }"
             " invalid_case_t;"]
    crc = ", ".join(f'{{"{c["data"]}", 0x{c["crc"]}UL}}' for c in vectors["crc32"])
    lines.append(f"static const crc_case_t CRC_CASES[] = {{{crc}}};")
    cobs = ", ".join(f'{{"{c["data"]}", "{c["encoded"]}"}}' for c in vectors["cobs"])
    lines.append(f"static const cobs_case_t COBS_CASES[] = {{{cobs}}};")
    frames = []
    for f in vectors["frames"]:
        flat: list[int] = []
        fields = f["fields"]
        if f["type"] == "SETPOINTS":
            flat = [fields["first_index"], len(fields["actuator"])]
            for a, p in zip(fields["actuator"], fields["pivot"]):
                flat += [a, p]
        else:
            flat = [int(v) for v in fields.values()]
        vals = ", ".join(f"{v}LL" for v in flat) or "0"
        frames.append(f'{{"{f["type"]}", 0x{f["type_code"]:02X}, {f["seq"]}, "{f["payload"]}", '
                      f'"{f["wire"]}", {len(flat)}, {{{vals}}}}}')
    lines.append("static const frame_case_t FRAMES[] = {\n  " + ",\n  ".join(frames) + "};")
    inv = ", ".join(f'{{"{c["name"]}", "{c["wire"]}", "{c["error"]}"}}'
                    for c in vectors["invalid"])
    lines.append(f"static const invalid_case_t INVALID[] = {{{inv}}};")
    for name, key in (("N_CRC", "crc32"), ("N_COBS", "cobs"), ("N_FRAMES", "frames"),
                      ("N_INVALID", "invalid")):
        lines.append(f"#define {name} {len(vectors[key])}u")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def build_protocol_tests(out_dir: str | os.PathLike, vectors_path: str | os.PathLike | None
                         = None) -> Path:
    """Compile ``hil/firmware/tests/test_protocol.c`` + ``protocol.c`` with the host gcc."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vp = Path(vectors_path) if vectors_path else FIRMWARE_DIR.parent / "vectors" / \
        "protocol_vectors.json"
    write_vector_header(json.loads(vp.read_text()), out / "vectors.h")
    exe = out / "test_protocol"
    _run(["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{out}",
          f"-I{SKETCH_DIR}", str(FIRMWARE_DIR / "tests" / "test_protocol.c"),
          str(SKETCH_DIR / "protocol.c"), "-o", str(exe)])
    return exe


# ----------------------------------------------------------------------------------------------
# Emulator: harness (simavr) + lever physics in lock-step


_REQ = struct.Struct("<4sIQhH")  # 'S' pad | n_steps | cycle | pwm (signed 8-bit duty) | dac code
_REP = struct.Struct("<HHHBB")  # mv0 mv1 mv2 | inputs | command


def _millivolts(count: int) -> int:
    """ADC count -> the smallest input (mV) that simavr converts to that count at 5 V AVcc."""
    return min(ADC_VREF_MV, math.ceil(count * ADC_VREF_MV / ADC_FULL))


class Emulator:
    """The Uno firmware on simavr with the lever physics closing the loop; UART on a pty.

    Parameters
    ----------
    rig : path or Rig or None
        Rig description (``plants.lever.rig.load_rig``); None = the shipped default. The
        firmware is built with this rig's ``rig_config.h``.
    realtime : bool
        Keep emulated time at or behind wall time. Otherwise emulated time may run ahead of
        the wall clock by ``slack_ms`` since the host's last byte (free-running while the host
        talks, real time while it is silent, so the firmware's watchdog sees real silence).
    slack_ms : float
        See ``realtime``.
    seed : int
        Seeds the sensor noise of the physics.
    pivot0 : float, optional
        Initial pivot position, m (default: middle of the travel).
    link_path : path, optional
        Symlink the harness keeps pointing at its pty.
    build_dir : path, optional
        Where the firmware and harness are built (default ``build/firmware``).
    rebuild : bool
        Build even if the images exist.

    Notes
    -----
    Lock-step: the harness stops the emulated AVR at each control tick's first ADC
    conversion and asks this object's physics thread to advance by whole steps of
    ``1 / rig.sampling.fs``; the reply sets the ADC inputs (the Uno front end of
    :func:`front_end`) and the e-stop / limit-switch pins. Sensor values therefore depend only on
    emulated time and the firmware's outputs.
    """

    def __init__(self, rig: Any = None, *, realtime: bool = False, slack_ms: float = 20.0,
                 seed: int = 0, pivot0: float | None = None,
                 link_path: str | os.PathLike | None = None,
                 build_dir: str | os.PathLike | None = None, rebuild: bool = False) -> None:
        from plants.lever.physics import LeverRig
        from plants.lever.rig import load_rig

        if slack_ms < 0:
            raise ValueError(f"slack_ms must be >= 0; got {slack_ms}")
        self.rig = load_rig(rig)
        self.fe = front_end(self.rig)
        self.realtime = realtime
        self.slack_ms = slack_ms
        self.link_path = Path(link_path) if link_path is not None else None
        self.build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
        self.rebuild = rebuild
        self.physics = LeverRig(self.rig)
        g = self.rig.geometry
        p0 = 0.5 * (g.pivot_min + g.pivot_max) if pivot0 is None else pivot0
        self.reading = self.physics.reset(np.random.default_rng(seed), p0)
        self.dt = 1.0 / self.rig.sampling.fs
        self.estop_pressed = False
        self.port = ""
        self.stats: dict = {}
        self.log = ""
        self.steps = 0
        self.error: BaseException | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stderr: Any = None
        self._quit = False

    @property
    def url(self) -> str:
        """What a host should open: the symlink if any, else the pty path."""
        return str(self.link_path) if self.link_path is not None else self.port

    def _images(self) -> tuple[Path, Path]:
        elf, exe = self.build_dir / "rig.elf", self.build_dir / "harness"
        cfg = self.build_dir / "sketch" / "rig_config.h"
        stale = (not cfg.exists()
                 or cfg.read_text() != rig_config_header(self.rig)
                 or any(p.stat().st_mtime > elf.stat().st_mtime
                        for p in SKETCH_DIR.iterdir() if elf.exists())
                 or (exe.exists() and HARNESS_SRC.stat().st_mtime > exe.stat().st_mtime))
        if self.rebuild or stale or not elf.exists() or not exe.exists():
            build(self.rig, self.build_dir)
        return elf, exe

    def start(self) -> Emulator:
        """Build if needed, start the harness and the physics thread; returns self."""
        elf, exe = self._images()
        cmd = [str(exe), str(elf), "--step-cycles", str(self.fe.step_cycles),
               "--slack-ms", str(self.slack_ms)]
        if self.realtime:
            cmd.append("--realtime")
        if self.link_path is not None:
            cmd += ["--link", str(self.link_path)]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, bufsize=0)
        line = self._proc.stdout.readline().decode(errors="replace").split()
        if len(line) != 3 or line[0] != "IMPBENCH-HARNESS":
            self._proc.kill()
            self._stderr.seek(0)
            raise BuildError(f"the harness did not start: {self._stderr.read().decode()!r}")
        self.port = line[2]
        self._thread = threading.Thread(target=self._serve, name="emulator-physics",
                                        daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        rd, wr = proc.stdout, proc.stdin
        fe, phys, dt = self.fe, self.physics, self.dt
        try:
            while True:
                req = rd.read(_REQ.size)
                while req and len(req) < _REQ.size:
                    more = rd.read(_REQ.size - len(req))
                    if not more:
                        return
                    req += more
                if not req:
                    return
                _, n, _cycle, pwm, dac = _REQ.unpack(req)
                duty, x_cmd = pwm / 255.0, fe.dac_to_m(dac)
                r = self.reading
                for _ in range(n):
                    r = phys.step(dt, duty, x_cmd)
                self.reading = r
                self.steps += n
                mv = (_millivolts(fe.counts("pivot", r.pivot_position * 1e6)),
                      _millivolts(fe.counts("force", r.force * 1e3)),
                      _millivolts(fe.counts("actuator", r.actuator_position * 1e6)))
                inputs = (int(self.estop_pressed) | (int(r.limit_low) << 1)
                          | (int(r.limit_high) << 2))
                wr.write(_REP.pack(*mv, inputs, 1 if self._quit else 0))
        except (BrokenPipeError, ValueError, OSError):
            return
        except BaseException as exc:
            self.error = exc

    def serve(self, duration: float | None = None) -> dict:
        """Run until ``duration`` s of wall time passed (None: until interrupted); stats."""
        if self._proc is None:
            self.start()
        try:
            t_end = None if duration is None else time.monotonic() + duration
            while self._proc.poll() is None and (t_end is None or time.monotonic() < t_end):
                time.sleep(0.05)
        finally:
            self.stop()
        return self.stats

    def stop(self) -> dict:
        """Stop the harness; returns its statistics (emulated and wall seconds, speed, ticks)."""
        proc = self._proc
        if proc is None:
            return self.stats
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        self.log = text
        for line in text.splitlines()[::-1]:
            if line.startswith("{"):
                self.stats = json.loads(line)
                break
        self.stats["physics_steps_python"] = self.steps
        self.stats["returncode"] = proc.returncode
        self._proc = None
        return self.stats

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
