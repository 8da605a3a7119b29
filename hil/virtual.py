"""Virtual rig: the firmware's behaviour around the lever physics, served on a pseudo-terminal.

:class:`VirtualFirmware` is the device side of ``hil/PROTOCOL.md`` as the Uno firmware
implements it (issue 11): HELLO/CONFIG handshake, setpoint ring buffer with credits, a run
armed by START that begins once the buffer is full, the integer pivot PID
(:class:`plants.lever.physics.PivotPID`) every ``control_divider`` samples, perturbation
playback from the buffer, the host-silence watchdog (motor off), software travel limits
(out-of-range setpoints are refused with FAULT and never stored), e-stop, and underrun
detection.  It drives :class:`plants.lever.physics.LeverRig` one sample period per tick.

:class:`VirtualRig` runs it under a simpy clock — ``simpy.rt.RealtimeEnvironment`` (device
time = wall time) or ``simpy.Environment`` ("fast": as fast as the host keeps up) — and
serves the byte stream on a pseudo-terminal (``os.openpty``, raw mode via ``tty.setraw``)
that pyserial opens like a USB port.  A stable symlink (``link_path``) points at the current
pty so a host can reconnect after a simulated unplug.  Fault injection (:class:`Faults`):
byte corruption, dropped and duplicated frames, latency jitter, device resets, disconnects.

Fast mode and time: device time runs ahead of wall time, so a run never starves for lack of
host speed: whenever the firmware waits for setpoints (armed, or buffer empty), the server
blocks on the pty for up to ``stall_s`` of wall time before letting device time advance, and
the watchdog judges host silence on the wall clock (timeout at least ``FAST_WATCHDOG_S``,
since a busy machine can pause the host for longer than 50 ms).  In real-time mode both use
device time, as the firmware does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simpy
import simpy.rt

from hil.protocol import (
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SETPOINT_UNIT_UM,
    Ack,
    Config,
    DeviceHeartbeat,
    Estop,
    Fault,
    FaultCode,
    Frame,
    FrameDecoder,
    FrameError,
    Heartbeat,
    Hello,
    HelloRequest,
    Message,
    Nack,
    NackReason,
    Sample,
    SetpointChunk,
    Start,
    StatusFlag,
    Stop,
    decode_frame,
    encode_frame,
)

__all__ = ["FIRMWARE_VERSION", "Faults", "RigStats", "VirtualFirmware", "VirtualRig"]

#: Version the virtual firmware reports in HELLO.
FIRMWARE_VERSION = (0, 1, 0)
#: Fast mode: smallest host-silence watchdog timeout, s of wall time.  Device time and wall
#: time are decoupled there, and on a loaded machine the host process can be descheduled for
#: seconds; the 50 ms device-time watchdog is exercised in real-time mode and in the tests
#: that drive :class:`VirtualFirmware` directly.
FAST_WATCHDOG_S = 5.0
#: Measured pivot beyond a software limit by more than this raises FAULT(TRAVEL), um.
TRAVEL_MARGIN_UM = 5000


class VirtualFirmware:
    """Device-side protocol handling and control loop, driven by :meth:`handle` and :meth:`tick`.

    Parameters
    ----------
    rig : plants.lever.rig.Rig
        Rig description (physics, sensors, default controller).
    rng : numpy.random.Generator
        Sensor noise of the physics.
    pivot0 : float, optional
        Initial pivot position, m (default: middle of the travel).
    capacity : int
        Setpoint ring-buffer slots (the credit window).
    rig_id : int
    heartbeat_s : float
        Device heartbeat period, s of device time.
    physics : plants.lever.physics.LeverRig, optional
        Already-running physics to keep (a firmware reset does not move the rig).
    """

    def __init__(
        self,
        rig: Any,
        rng: np.random.Generator,
        *,
        pivot0: float | None = None,
        capacity: int = 128,
        rig_id: int = 1,
        heartbeat_s: float = 0.05,
        physics: Any = None,
    ) -> None:
        from plants.lever.physics import LeverRig, counts_from_position

        self.rig = rig
        self._counts = counts_from_position
        if not 4 <= capacity <= 4096:
            raise ValueError(f"capacity must be in [4, 4096] setpoints; got {capacity}")
        self.capacity = capacity
        self.rig_id = rig_id
        self.heartbeat_s = heartbeat_s
        g = rig.geometry
        if physics is None:
            physics = LeverRig(rig)
            p0 = 0.5 * (g.pivot_min + g.pivot_max) if pivot0 is None else pivot0
            self.reading = physics.reset(rng, p0)
        else:
            self.reading = physics._read(rng.standard_normal(3))
        self.physics = physics
        self.default_fs = int(rig.sampling.fs)
        self.config: Config | None = None
        self.pid: Any = None
        self.sp_act = np.zeros(capacity, np.int64)
        self.sp_piv = np.zeros(capacity, np.int64)
        self.write = self.read = 0
        self.remaining = 0
        self.armed = self.running = self.estop = False
        self.flags = 0
        self.time_us = 0
        self.ticks = 0
        self.motor = 0
        self.act_cmd_m = 0.0
        self.last_host: float | None = None
        self._run: tuple[int, int] | None = None
        #: Smallest watchdog timeout, s (fast mode: host silence is judged on the wall clock,
        #: where a busy host machine can pause a process for longer than a 50 ms timeout).
        self.watchdog_floor_s = 0.0
        self._next_hb = 0.0
        self.executed: list[int] = []  # setpoint indices executed (tests: never a refused one)

    # -- protocol ---------------------------------------------------------------------------

    @property
    def fs(self) -> int:
        """Sample rate now, Hz."""
        return self.config.sample_rate_hz if self.config else self.default_fs

    @property
    def credits(self) -> int:
        """Free setpoint slots."""
        return self.capacity - (self.write - self.read)

    def hello(self) -> Hello:
        """The HELLO this device sends."""
        return Hello(PROTOCOL_VERSION, *FIRMWARE_VERSION, self.rig_id, self.default_fs, 3,
                     self.capacity, MAX_PAYLOAD)

    def _ack(self, msg: Message, seq: int) -> Ack:
        return Ack(int(msg.TYPE), seq, self.write, self.read, self.credits)

    def _nack(self, msg: Message | int, seq: int, reason: NackReason, expected: int = 0) -> Nack:
        t = msg if isinstance(msg, int) else int(msg.TYPE)
        return Nack(t, seq, int(reason), expected)

    def handle(self, frame: Frame, host_now: float) -> list[Message]:
        """React to one valid host frame; returns the replies."""
        self.last_host = host_now
        m, seq = frame.msg, frame.seq
        if isinstance(m, HelloRequest):
            return [self.hello()]
        if isinstance(m, Heartbeat):
            return []
        if isinstance(m, Estop):
            self._halt()
            self.estop = True
            self.flags |= StatusFlag.ESTOP
            return [self._ack(m, seq), Fault(FaultCode.ESTOP, self.read, 0)]
        if isinstance(m, Stop):
            self._halt()
            return [self._ack(m, seq)]
        if isinstance(m, Config):
            return [self._configure(m, seq)]
        if isinstance(m, Start):
            if (self.armed or self.running) and self._run == (m.start_index, m.n_samples):
                return [self._ack(m, seq)]  # the same START again (its ACK was lost)
            if self.config is None or self.estop or self.running or self.armed:
                return [self._nack(m, seq, NackReason.BAD_STATE, self.write)]
            self._run = (m.start_index, m.n_samples)
            self.write = self.read = m.start_index
            self.remaining = m.n_samples
            self.armed = m.n_samples > 0
            self.flags &= ~(StatusFlag.WATCHDOG | StatusFlag.UNDERRUN)
            return [self._ack(m, seq)]
        if isinstance(m, SetpointChunk):
            return self._setpoints(m, seq)
        return [self._nack(int(m.TYPE), seq, NackReason.UNKNOWN_TYPE, self.write)]

    def _configure(self, m: Config, seq: int) -> Message:
        from plants.lever.rig import Controller

        g, a = self.rig.geometry, self.rig.actuator
        lo_p = (g.pivot_min - g.overtravel) * 1e6
        hi_p = (g.pivot_max + g.overtravel) * 1e6
        ok = (
            not self.running and not self.armed
            and 100 <= m.sample_rate_hz <= 10000 and 1 <= m.control_divider <= 100
            and 0 < m.pwm_max <= 1023 and m.shift <= 24 and m.integral_limit >= 0
            and m.act_min_um < m.act_max_um and m.pivot_min_um < m.pivot_max_um
            and m.act_min_um >= -a.stroke * 1e6 and m.act_max_um <= a.stroke * 1e6
            and m.pivot_min_um >= lo_p and m.pivot_max_um <= hi_p and m.watchdog_ms >= 5
        )
        if not ok:
            reason = NackReason.BAD_STATE if (self.running or self.armed) else NackReason.BAD_CONFIG
            return self._nack(m, seq, reason, self.write)
        self.config = m
        self.pid = _make_pid(Controller(
            rate=m.sample_rate_hz / m.control_divider, kp=m.kp, ki=m.ki, kd=m.kd,
            shift=m.shift, pwm_max=m.pwm_max, integral_limit=m.integral_limit))
        self.pid.reset(int(self.reading.pivot_counts))
        self.estop = False
        self.flags = int(StatusFlag.CONFIGURED)
        return self._ack(m, seq)

    def _setpoints(self, m: SetpointChunk, seq: int) -> list[Message]:
        c = self.config
        if c is None or not (self.armed or self.running):
            return [self._nack(m, seq, NackReason.BAD_STATE, self.write)]
        if m.first_index > self.write:
            return [self._nack(m, seq, NackReason.BAD_INDEX, self.write)]
        skip = self.write - m.first_index
        if skip >= m.count:
            return [self._ack(m, seq)]  # a duplicate or resent chunk: already stored
        act = np.asarray(m.actuator[skip:], np.int64) * SETPOINT_UNIT_UM
        piv = np.asarray(m.pivot[skip:], np.int64) * SETPOINT_UNIT_UM
        n = act.size
        if n > self.credits:
            return [self._nack(m, seq, NackReason.OVERFLOW, self.write)]
        bad = ((act < c.act_min_um) | (act > c.act_max_um)
               | (piv < c.pivot_min_um) | (piv > c.pivot_max_um))
        if bad.any():
            k = int(np.argmax(bad))
            value = int(act[k]) if not c.act_min_um <= act[k] <= c.act_max_um else int(piv[k])
            return [Fault(FaultCode.LIMIT, self.write + k, value),
                    self._nack(m, seq, NackReason.LIMIT, self.write + k)]
        slots = np.arange(self.write, self.write + n) % self.capacity
        self.sp_act[slots] = act
        self.sp_piv[slots] = piv
        self.write += n
        return [self._ack(m, seq)]

    def _halt(self) -> None:
        self.armed = self.running = False
        self.remaining = 0
        self.motor = 0
        self.act_cmd_m = 0.0
        self.flags &= ~StatusFlag.RUNNING

    # -- control loop -----------------------------------------------------------------------

    def waiting_for_host(self) -> bool:
        """Armed and not yet half filled, or running with an empty buffer."""
        if self.armed:
            return self.write - self.read < min(self.capacity // 2, self.remaining)
        return self.running and self.write == self.read and self.remaining > 0

    def tick(self, host_now: float) -> list[Message]:
        """One sample period: watchdog, setpoint, PID, physics, SAMPLE; returns messages out."""
        out: list[Message] = []
        c = self.config
        dt = 1.0 / self.fs
        active = self.armed or self.running
        if active and c is not None and self.last_host is not None:
            silence = host_now - self.last_host
            if silence > max(c.watchdog_ms / 1000.0, self.watchdog_floor_s):
                self._halt()
                self.flags |= StatusFlag.WATCHDOG
                out.append(Fault(FaultCode.WATCHDOG, self.read, int(silence * 1000)))
        if self.armed and not self.waiting_for_host():
            self.armed, self.running = False, True
            self.flags |= StatusFlag.RUNNING
        sample = None
        if self.running:
            if self.write == self.read:
                self._halt()
                self.flags |= StatusFlag.UNDERRUN
                out.append(Fault(FaultCode.UNDERRUN, self.read, 0))
            else:
                slot = self.read % self.capacity
                self.act_cmd_m = self.sp_act[slot] * 1e-6
                if self.ticks % c.control_divider == 0:
                    sp = int(self._counts(self.sp_piv[slot] * 1e-6, self.rig))
                    self.motor = self.pid.update(sp, int(self.reading.pivot_counts))
                sample = self.read
        r = self.physics.step(dt, self.motor / (c.pwm_max if c else 255), self.act_cmd_m)
        self.reading = r
        self.ticks += 1
        self.time_us = (self.time_us + round(1e6 / self.fs)) & 0xFFFFFFFF
        flags = self.flags
        if r.limit_low or r.limit_high:
            flags |= StatusFlag.PIVOT_LIMIT
        if c is not None and abs(self.motor) >= c.pwm_max:
            flags |= StatusFlag.SATURATED
        if c is not None and not c.act_min_um <= r.actuator_position * 1e6 <= c.act_max_um:
            flags |= StatusFlag.ACT_LIMIT
        if sample is not None:
            self.executed.append(sample)
            out.append(Sample(sample, self.time_us, round(r.actuator_position * 1e6),
                              round(r.force * 1e3), round(r.pivot_position * 1e6),
                              int(self.motor), int(flags)))
            self.read += 1
            self.remaining -= 1
            piv_um = r.pivot_position * 1e6
            if c is not None and not (c.pivot_min_um - TRAVEL_MARGIN_UM <= piv_um
                                      <= c.pivot_max_um + TRAVEL_MARGIN_UM):
                self._halt()
                out.append(Fault(FaultCode.TRAVEL, sample, int(piv_um)))
            if self.remaining <= 0:
                self._halt()
        t = self.ticks * dt
        if t >= self._next_hb:
            self._next_hb = t + self.heartbeat_s
            out.append(DeviceHeartbeat(self.time_us, int(flags), self.write, self.read,
                                       self.credits))
        return out


def _make_pid(controller: Any) -> Any:
    from plants.lever.physics import PivotPID

    return PivotPID(controller)


# ----------------------------------------------------------------------------------------------
# Server


@dataclass(frozen=True)
class Faults:
    """Fault injection of the virtual rig.

    Attributes
    ----------
    corrupt_rate : float
        Probability that a byte is corrupted (XOR with a random non-zero byte), both directions.
    drop_rate, dup_rate : float
        Probability that an outgoing frame is dropped / sent twice.
    jitter_ms : float
        Extra delivery latency of outgoing frames, uniform in [0, jitter_ms] (order kept).
    reset_at_s : tuple of float
        Times (s of device time after the first START) at which the firmware reboots
        (state lost, HELLO with seq 0).
    disconnect_at_s : tuple of float
        Times (s of device time after the first START) at which the port vanishes for
        ``disconnect_s`` (wall) and comes back (a new pty behind the same ``link_path``).
    disconnect_s : float
    """

    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    dup_rate: float = 0.0
    jitter_ms: float = 0.0
    reset_at_s: tuple = ()
    disconnect_at_s: tuple = ()
    disconnect_s: float = 0.3

    def __post_init__(self) -> None:
        for name in ("corrupt_rate", "drop_rate", "dup_rate"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"Faults.{name} must be in [0, 1); got {v!r}")
        if self.jitter_ms < 0 or self.disconnect_s < 0:
            raise ValueError("Faults.jitter_ms and Faults.disconnect_s must be >= 0")


@dataclass
class RigStats:
    """What the virtual rig did (ground truth for the host's gap accounting)."""

    frames_out: int = 0
    samples_out: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted_frames: int = 0
    corrupted_bytes_in: int = 0
    overflow_dropped: int = 0
    rx_rejected: int = 0
    resets: int = 0
    disconnects: int = 0
    damaged_samples: set = field(default_factory=set)  # indices dropped or corrupted
    sample_wall: dict = field(default_factory=dict)  # index -> wall time sent (record_sends)
    samples: dict = field(default_factory=dict)  # index -> Sample sent intact (record_sends)


class VirtualRig:
    """Serve a :class:`VirtualFirmware` on a pseudo-terminal under a simpy clock.

    Parameters
    ----------
    rig : path or Rig or None
        Rig description (``plants.lever.rig.load_rig``); None = the shipped default.
    realtime : bool
        Device time follows wall time (``simpy.rt.RealtimeEnvironment``); else fast mode.
    faults : Faults
    seed : int
        Seeds sensor noise and fault injection.
    capacity : int
        Setpoint buffer slots.
    link_path : path, optional
        Symlink kept pointing at the current pty (stable name across disconnects).
    stall_s : float
        Fast mode: wall time to wait for the host before device time moves on, s.
    record_sends : bool
        Keep every intact SAMPLE sent and its wall time in :attr:`stats` (tests).
    """

    def __init__(
        self,
        rig: Any = None,
        *,
        realtime: bool = False,
        faults: Faults = Faults(),
        seed: int = 0,
        capacity: int = 128,
        link_path: str | os.PathLike | None = None,
        stall_s: float = 1.0,
        record_sends: bool = False,
    ) -> None:
        from plants.lever.rig import load_rig

        self.rig = load_rig(rig)
        self.realtime = realtime
        self.faults = faults
        self.capacity = capacity
        self.link_path = Path(link_path) if link_path is not None else None
        self.stall_s = stall_s
        self.record_sends = record_sends
        self._rng = np.random.default_rng([seed, 1])
        self.fw = VirtualFirmware(self.rig, np.random.default_rng([seed, 0]), capacity=capacity)
        self.fw.watchdog_floor_s = 0.0 if realtime else FAST_WATCHDOG_S
        self.stats = RigStats()
        self._decoder = FrameDecoder()
        self._tx_seq = 0
        self._out: deque = deque()  # (release device time, bytes)
        self._last_release = 0.0
        self._master = self._slave = -1
        self.port = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resets = sorted(faults.reset_at_s)
        self._disconnects = sorted(faults.disconnect_at_s)
        self.error: BaseException | None = None
        self._t_run0: float | None = None  # device time of the first START (fault schedule)
        self._open_pty()

    # -- pty --------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.port)
            os.replace(tmp, self.link_path)
        self._decoder = FrameDecoder()

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    @property
    def url(self) -> str:
        """What a host should open: the symlink if any, else the pty path."""
        return str(self.link_path) if self.link_path is not None else self.port

    # -- byte I/O ---------------------------------------------------------------------------

    def _corrupt(self, data: bytes) -> tuple[bytes, int]:
        p = self.faults.corrupt_rate
        if p <= 0 or not data:
            return data, 0
        hit = self._rng.random(len(data)) < p
        if not hit.any():
            return data, 0
        arr = np.frombuffer(data, np.uint8).copy()
        arr[hit] ^= self._rng.integers(1, 256, int(hit.sum()), dtype=np.uint8)
        return arr.tobytes(), int(hit.sum())

    def _host_now(self, env: simpy.Environment) -> float:
        return env.now if self.realtime else time.monotonic()

    def _poll_input(self, env: simpy.Environment, timeout: float) -> bool:
        """Read and handle host bytes, waiting up to ``timeout`` s; True if any arrived."""
        if self._master < 0:
            if timeout > 0:
                time.sleep(timeout)
            return False
        if timeout > 0:
            r, _, _ = select.select([self._master], [], [], timeout)
            if not r:
                return False
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: nothing to read
                return False
            raise
        if not data:
            return False
        data, nbad = self._corrupt(data)
        self.stats.corrupted_bytes_in += nbad
        for wire in self._decoder.feed(data):
            try:
                frame = decode_frame(wire)
            except FrameError:
                self.stats.rx_rejected += 1
                continue
            self._emit(self.fw.handle(frame, self._host_now(env)), env)
        return True

    def _emit(self, msgs: list[Message], env: simpy.Environment) -> None:
        f = self.faults
        for m in msgs:
            wire = encode_frame(m, self._tx_seq)
            self._tx_seq = (self._tx_seq + 1) & 0xFFFF
            self.stats.frames_out += 1
            is_sample = isinstance(m, Sample)
            if is_sample:
                self.stats.samples_out += 1
            if f.drop_rate and self._rng.random() < f.drop_rate:
                self.stats.dropped += 1
                if is_sample:
                    self.stats.damaged_samples.add(m.index)
                continue
            copies = 2 if f.dup_rate and self._rng.random() < f.dup_rate else 1
            self.stats.duplicated += copies - 1
            for _ in range(copies):
                data, nbad = self._corrupt(wire)
                if nbad:
                    self.stats.corrupted_frames += 1
                    if is_sample:
                        self.stats.damaged_samples.add(m.index)
                elif is_sample and self.record_sends:
                    self.stats.samples[m.index] = m
                delay = self._rng.uniform(0, f.jitter_ms) / 1000.0 if f.jitter_ms else 0.0
                rel = max(self._last_release, env.now + delay)
                self._last_release = rel
                self._out.append((rel, data, m.index if is_sample else -1))

    def _flush_out(self, env: simpy.Environment, *, force: bool = False) -> None:
        """Write the frames due by now (``force``: all of them) to the pty."""
        buf = bytearray()
        idx: list[int] = []
        while self._out and (force or self._out[0][0] <= env.now + 1e-12):
            _, data, i = self._out.popleft()
            buf += data
            if i >= 0:
                idx.append(i)
        if not buf:
            return
        if self._master < 0:
            self.stats.overflow_dropped += len(idx)
            return
        view = memoryview(bytes(buf))
        deadline = time.monotonic() + (0.0 if self.realtime else self.stall_s)
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                select.select([], [self._master], [], min(left, 0.01))
            except OSError:
                break
        if view:  # UART with no reader: the rest is lost, as on the wire
            self.stats.overflow_dropped += 1
        if self.record_sends:
            now = time.monotonic()
            for i in idx:
                self.stats.sample_wall[i] = now

    # -- device process ---------------------------------------------------------------------

    def _reset_device(self, env: simpy.Environment) -> None:
        self.stats.resets += 1
        self.fw = VirtualFirmware(self.rig, np.random.default_rng([len(self._resets), 7]),
                                  capacity=self.capacity, physics=self.fw.physics)
        self.fw.watchdog_floor_s = 0.0 if self.realtime else FAST_WATCHDOG_S
        self._tx_seq = 0
        self._out.clear()
        self._emit([self.fw.hello()], env)

    def _device(self, env: simpy.Environment) -> Any:
        fw = self.fw
        while not self._stop.is_set():
            fw = self.fw
            dt = 1.0 / fw.fs
            if self._t_run0 is None and (fw.armed or fw.running):
                self._t_run0 = env.now
            t_run = -1.0 if self._t_run0 is None else env.now - self._t_run0
            if self._resets and t_run >= self._resets[0]:
                self._resets.pop(0)
                self._reset_device(env)
                fw = self.fw
            if self._disconnects and t_run >= self._disconnects[0]:
                self._disconnects.pop(0)
                self.stats.disconnects += 1
                self._close_pty()
                self._out.clear()
                time.sleep(self.faults.disconnect_s)
                self._open_pty()
            self._poll_input(env, 0.0)
            if not self.realtime:
                if fw.waiting_for_host():
                    deadline = time.monotonic() + self.stall_s
                    while fw.waiting_for_host() and time.monotonic() < deadline:
                        self._poll_input(env, min(0.01, max(0.0, deadline - time.monotonic())))
                        self._flush_out(env, force=True)  # device time stands still here
                elif not (fw.armed or fw.running):
                    self._poll_input(env, dt)  # idle: pace like real time
            self._emit(fw.tick(self._host_now(env)), env)
            self._flush_out(env)
            yield env.timeout(dt)

    def serve(self, duration: float | None = None) -> None:
        """Run the device until :meth:`stop` (or ``duration`` s of device time); blocking."""
        env = (simpy.rt.RealtimeEnvironment(factor=1.0, strict=False) if self.realtime
               else simpy.Environment())
        env.process(self._device(env))
        end = float("inf") if duration is None else float(duration)
        try:
            # in 0.1 s slices of device time, so that request_stop() ends it promptly
            while not self._stop.is_set() and env.now < end:
                env.run(until=min(env.now + 0.1, end))
        finally:
            self._flush_out(env)

    def request_stop(self) -> None:
        """Ask :meth:`serve` to return after the current 0.1 s of device time.

        Only sets a flag, so it is safe in a signal handler (``rig virtual`` ends on SIGINT
        and SIGTERM this way rather than by an exception raised at an arbitrary point).
        """
        self._stop.set()

    def start(self) -> VirtualRig:
        """Serve in a daemon thread; returns self (open :attr:`url` with pyserial)."""
        def run() -> None:
            try:
                self.serve()
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, name="virtual-rig", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close_pty()
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()

    def __enter__(self) -> VirtualRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
