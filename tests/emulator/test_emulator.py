"""The real Uno firmware on simavr (issue 11): handshake, a recorded session, watchdog, travel
limits and malformed frames, driven by the host's own ``hil.link`` / ``hil.session`` code.

Run with ``python -m pytest -m emulator tests/emulator`` (needs simavr, libsimavr-dev, gcc-avr,
avr-libc, arduino-core-avr). Timing assertions use the device's clock (``time_us``), never
wall time.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import yaml

from hil import protocol as P
from hil.link import Link
from hil.session import record

from .conftest import FS, collect, config, handshake

pytestmark = pytest.mark.emulator

PIVOT_MID = 25000  # 250 mm in setpoint units (10 um)


def _chunks(first: int, act: list, piv: list):
    for k in range(0, len(act), P.MAX_SETPOINTS_PER_CHUNK):
        yield P.SetpointChunk(first + k, tuple(act[k:k + 12]), tuple(piv[k:k + 12]))


def test_hello_config_handshake(rig):
    with Link(rig.url) as link:
        hello = link.request(P.HelloRequest(), [P.MsgType.HELLO], timeout=0.5, retries=10).msg
        assert (hello.protocol_version, hello.firmware_version) == (1, "0.1.0")
        assert (hello.buffer_capacity, hello.n_channels, hello.max_payload) == (128, 3, 56)
        assert hello.loop_rate_hz == 1000  # min(rig sampling.fs 2500, the Uno's 1000 Hz)
        # before CONFIG nothing may run
        r = link.request(P.Start(0, 10), [P.MsgType.ACK, P.MsgType.NACK], timeout=0.5)
        assert isinstance(r.msg, P.Nack) and r.msg.reason == P.NackReason.BAD_STATE
        for bad in (config(sample_rate_hz=3000), config(sample_rate_hz=2500),
                    config(pivot_max_um=300000), config(act_min_um=-40000),
                    config(control_divider=0), config(watchdog_ms=2)):
            r = link.request(bad, [P.MsgType.ACK, P.MsgType.NACK], timeout=0.5)
            assert isinstance(r.msg, P.Nack) and r.msg.reason == P.NackReason.BAD_CONFIG, bad
        r = link.request(config(), [P.MsgType.ACK, P.MsgType.NACK], timeout=0.5)
        assert isinstance(r.msg, P.Ack) and r.msg.credits == 128
        frames = collect(link, 0.3)
        hb = [m for m in frames if isinstance(m, P.DeviceHeartbeat)]
        assert len(hb) >= 2
        assert all(m.flags & P.StatusFlag.CONFIGURED for m in hb)
        # heartbeat every 50 ms of device time
        assert {b.time_us - a.time_us for a, b in itertools.pairwise(hb)} == {50000}
        assert link.stats.rejected == 0 and link.stats.lost_frames == 0


def test_recorded_session_is_continuous_and_tracks_the_pivot(rig, tmp_path):
    spec = {"name": "emu", "rig": "default", "sample_rate_hz": FS, "duration_s": 2.0,
            "settle_s": 0.5, "repetitions": 1, "seed": 3,
            "perturbation": {"signal": "fgwn", "level_mm": 2.0},
            "pivot": {"shape": "sine", "center_mm": 250.0, "amplitude_mm": 10.0,
                      "frequency_hz": 1.0},
            "watchdog_ms": 300}
    path = tmp_path / "emu.yaml"
    path.write_text(yaml.safe_dump({"session": spec}))
    ds = record(path, rig.url, out=tmp_path / "emu")
    stats = rig.stop()
    a, m = ds.arrays, ds.meta
    n = round(2.5 * FS)
    assert m["received"] == m["total"] == n
    assert m["gaps"]["missing"] == 0
    assert m["link"]["rejected"] == 0 and m["link"]["lost_frames"] == 0
    # A host slowed down by a busy machine may let the buffer run dry: the firmware then stops
    # with FAULT UNDERRUN and the session restarts at the first missing index (PROTOCOL.md).
    # Nothing else may go wrong.
    assert all(f["name"] == "UNDERRUN" for f in m["faults"]), m["faults"]
    # continuous: every index once, the device clock advancing exactly one period per sample
    # (a restart after an underrun is the only place where it may jump)
    assert a["valid"].all()
    dt = np.diff(a["time_us"].astype(np.int64))
    assert np.count_nonzero(dt != 1_000_000 // FS) <= len(m["faults"])
    assert np.median(dt) == 1_000_000 // FS
    # the pivot follows its 1 Hz, +-10 mm schedule under the firmware's integer PID
    rec = slice(round(0.5 * FS) + FS // 2, n)  # skip settling and the first half period
    err_mm = 1e3 * (a["pivot_m"][rec] - a["pivot_sp_m"][rec])
    assert np.sqrt(np.mean(err_mm**2)) < 2.5
    assert np.ptp(1e3 * a["pivot_m"][rec]) > 15.0  # it really moved (schedule spans 20 mm)
    # the actuator played the perturbation (10-bit front end over +-30 mm: 59 um per count)
    act_err = 1e3 * (a["act_m"][rec] - a["act_sp_m"][rec])
    assert np.corrcoef(a["act_m"][rec], a["act_sp_m"][rec])[0, 1] > 0.9
    assert np.median(np.abs(act_err)) < 1.0
    assert stats["tick_rate_hz"] == pytest.approx(FS, rel=0.1)


def test_watchdog_stops_the_run_on_host_silence(rig):
    with Link(rig.url) as link:
        # 100 Hz: the 120 buffered setpoints last 1.2 s of device time, far beyond the watchdog
        handshake(link, config(watchdog_ms=50, sample_rate_hz=100))
        assert isinstance(link.request(P.Start(0, 5000), [P.MsgType.ACK]).msg, P.Ack)
        n = 120  # pivot set-point 25 mm away: the PID drives the motor until the watchdog
        for ch in _chunks(0, [0] * n, [27500] * n):
            link.send(ch)
        frames = collect(link, 0.15)
        samples = [m for m in frames if isinstance(m, P.Sample)]
        assert samples, "the run did not start"
        # now the host falls silent (wait up to 10 s of wall time: a busy machine may run the
        # emulator slower than real time; the firmware judges silence on its own clock)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            frames += collect(link, 0.1, heartbeat=False)
            if any(isinstance(m, P.Fault) for m in frames):
                break
        frames += collect(link, 0.2, heartbeat=False)
        faults = [m for m in frames if isinstance(m, P.Fault)]
        wd = [f for f in faults if f.code == P.FaultCode.WATCHDOG]
        assert len(wd) == 1, faults
        assert 50 < wd[0].detail <= 60  # ms of silence on the device clock (10 ms ticks)
        k = frames.index(wd[0])
        after = frames[k + 1:]
        assert not any(isinstance(m, P.Sample) for m in after)  # run ended at once
        hb = [m for m in after if isinstance(m, P.DeviceHeartbeat)]
        assert hb and all(m.flags & P.StatusFlag.WATCHDOG for m in hb)
        assert not any(m.flags & P.StatusFlag.RUNNING for m in hb)
        # a new START is accepted again (the watchdog is not latched like an e-stop)
        r = link.request(P.Start(1000, 10), [P.MsgType.ACK, P.MsgType.NACK])
        assert isinstance(r.msg, P.Ack)


def test_setpoints_beyond_travel_limits_are_refused_whole(rig):
    with Link(rig.url) as link:
        handshake(link, config())
        assert isinstance(link.request(P.Start(0, 1000), [P.MsgType.ACK]).msg, P.Ack)
        ok = link.request(P.SetpointChunk(0, (0,) * 12, (PIVOT_MID,) * 12), [P.MsgType.ACK])
        assert ok.msg.write_index == 12
        piv = [PIVOT_MID] * 12
        piv[5] = 28001  # 280.01 mm: 10 um beyond pivot_max_um
        pending: list = []
        r = link.request(P.SetpointChunk(12, (0,) * 12, tuple(piv)),
                         [P.MsgType.ACK, P.MsgType.NACK], keep=pending.append)
        assert isinstance(r.msg, P.Nack) and r.msg.reason == P.NackReason.LIMIT
        assert r.msg.expected_index == 17
        fault = [x.msg for x in pending + link.drain() if isinstance(x.msg, P.Fault)]
        assert fault and (fault[0].code, fault[0].index, fault[0].detail) == (
            P.FaultCode.LIMIT, 17, 280010)
        act = [0] * 12
        act[0] = -2001  # -20.01 mm: beyond act_min_um
        r = link.request(P.SetpointChunk(12, tuple(act), (PIVOT_MID,) * 12),
                         [P.MsgType.ACK, P.MsgType.NACK])
        assert isinstance(r.msg, P.Nack) and r.msg.reason == P.NackReason.LIMIT
        # nothing of either chunk was stored: the next valid chunk still starts at 12
        r = link.request(P.SetpointChunk(12, (0,) * 12, (PIVOT_MID,) * 12), [P.MsgType.ACK])
        assert r.msg.write_index == 24
        # the limits themselves are inclusive
        r = link.request(P.SetpointChunk(24, (2000,) * 12, (28000,) * 12), [P.MsgType.ACK])
        assert r.msg.write_index == 36


def test_malformed_frames_leave_the_firmware_responsive(rig):
    rng = np.random.default_rng(11)
    with Link(rig.url) as link:
        handshake(link, config())
        good = P.encode_frame(P.Heartbeat(), 1)
        wires = []
        for k in range(300):
            kind = k % 5
            if kind == 0:  # random bytes, delimiters included
                wires.append(rng.integers(0, 256, rng.integers(1, 120), dtype=np.uint8)
                             .tobytes())
            elif kind == 1:  # a valid START with one bit flipped
                w = bytearray(P.encode_frame(P.Start(0, 100), 100 + k))
                i = int(rng.integers(0, len(w) - 1))
                w[i] ^= 1 << int(rng.integers(0, 8))
                wires.append(bytes(w))
            elif kind == 2:  # truncated frame
                w = P.encode_frame(P.Config(*[1] * 13), k)
                wires.append(w[: int(rng.integers(1, len(w) - 1))] + b"\x00")
            elif kind == 3:  # over-long run without delimiter
                wires.append(b"\x01" * 200 + b"\x00")
            else:
                wires.append(good)
        ser = link._ser
        for k, w in enumerate(wires):  # paced like a host that keeps to the line rate
            ser.write(w)
            ser.flush()
            if k % 10 == 9:
                time.sleep(0.02)
        frames = collect(link, 0.5)
        # no corrupted START was acted on: nothing runs, nothing acknowledged a START
        assert not any(isinstance(m, P.Sample) for m in frames)
        assert not any(isinstance(m, (P.Ack, P.Nack)) and m.acked_type == P.MsgType.START
                       for m in frames)
        hello = link.request(P.HelloRequest(), [P.MsgType.HELLO], timeout=0.5, retries=5).msg
        assert hello.protocol_version == 1
        # and a run still works end to end
        handshake(link, config())
        assert isinstance(link.request(P.Start(0, 40), [P.MsgType.ACK]).msg, P.Ack)
        for ch in _chunks(0, [0] * 40, [PIVOT_MID] * 40):
            link.send(ch)
        frames = collect(link, 0.5)
        idx = [m.index for m in frames if isinstance(m, P.Sample)]
        assert idx == list(range(40))
