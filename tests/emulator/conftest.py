"""Fixtures of the emulator tests: the real Uno firmware on simavr, served by ``impbench rig
emulate`` in a child process (so the host code under test has its own interpreter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil import protocol as P
from hil.firmware_build import build, default_build_dir, toolchain_missing
from hil.link import Link

FS = 500  # Hz: the rig's controller rate (control_divider 1), well inside the Uno's budget


@pytest.fixture(scope="session")
def firmware():
    """Build the firmware and harness once (``build/firmware``)."""
    missing = toolchain_missing()
    if missing:
        pytest.skip("emulator toolchain missing: " + ", ".join(missing))
    return build(None, default_build_dir())


class EmulatedRig:
    """``impbench rig emulate`` in a child process; ``url`` is its pty symlink."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.url = str(tmp / "rig")
        self.stats_path = tmp / "stats.json"
        cmd = [sys.executable, "-m", "hil.firmware_cli", "rig", "emulate", "--link", self.url,
               "--stats", str(self.stats_path), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        if "emulated rig" not in line or not os.path.exists(self.url):
            self.proc.kill()
            raise RuntimeError(f"rig emulate did not start: {line!r}")
        self.stats: dict = {}

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stats_path.exists():
            self.stats = json.loads(self.stats_path.read_text())
        return self.stats


@pytest.fixture
def rig(firmware, tmp_path):
    r = EmulatedRig(tmp_path)
    yield r
    r.stop()


def config(watchdog_ms: int = 200, **over) -> P.Config:
    """CONFIG of the shipped rig at FS with software limits of the default rig."""
    from plants.lever.rig import load_rig

    c = load_rig().controller
    kw = dict(sample_rate_hz=FS, control_divider=1, kp=c.kp, ki=c.ki, kd=c.kd, shift=c.shift,
              pwm_max=c.pwm_max, integral_limit=c.integral_limit, act_min_um=-20000,
              act_max_um=20000, pivot_min_um=220000, pivot_max_um=280000,
              watchdog_ms=watchdog_ms)
    kw.update(over)
    return P.Config(**kw)


def handshake(link: Link, cfg: P.Config) -> P.Hello:
    """HELLO_REQ, STOP, CONFIG (acknowledged)."""
    hello = link.request(P.HelloRequest(), [P.MsgType.HELLO], timeout=0.5, retries=10).msg
    link.request(P.Stop(), [P.MsgType.ACK], timeout=0.5, retries=5)
    r = link.request(cfg, [P.MsgType.ACK, P.MsgType.NACK], timeout=0.5, retries=5)
    assert isinstance(r.msg, P.Ack), r.msg
    return hello


def collect(link: Link, seconds: float, *, heartbeat: bool = True) -> list:
    """Frames received for ``seconds`` of wall time (sending HEARTBEATs every 20 ms)."""
    out, t_end, last = [], time.monotonic() + seconds, 0.0
    while time.monotonic() < t_end:
        if heartbeat and time.monotonic() - last > 0.02:
            link.send(P.Heartbeat())
            last = time.monotonic()
        r = link.get(0.01)
        if r is not None:
            out.append(r.msg)
    return out
