"""Virtual firmware behaviour, driven directly in device time (no pty)."""

from __future__ import annotations

import numpy as np
import pytest

from hil import protocol as P
from hil.virtual import VirtualFirmware
from plants.lever.rig import load_rig

FS = 1000


def _config(rig, watchdog_ms: int = 50) -> P.Config:
    c, g = rig.controller, rig.geometry
    return P.Config(FS, int(FS / c.rate), c.kp, c.ki, c.kd, c.shift, c.pwm_max,
                    c.integral_limit, -20000, 20000, round(g.pivot_min * 1e6),
                    round(g.pivot_max * 1e6), watchdog_ms)


PMAX = 28000  # units of 10 um: the default rig's pivot_max (280 mm)


def _chunks(first: int, act, piv):
    for k in range(0, len(act), P.MAX_SETPOINTS_PER_CHUNK):
        sl = slice(k, k + P.MAX_SETPOINTS_PER_CHUNK)
        yield P.SetpointChunk(first + k, tuple(act[sl]), tuple(piv[sl]))


@pytest.fixture
def fw():
    rig = load_rig()
    f = VirtualFirmware(rig, np.random.default_rng(0), pivot0=0.225, capacity=64)
    assert isinstance(f.handle(P.Frame(0, _config(rig)), 0.0)[0], P.Ack)
    return f


def _start_and_fill(fw, n: int, pivot_units: int, t: float = 0.0):
    assert isinstance(fw.handle(P.Frame(1, P.Start(0, n)), t)[0], P.Ack)
    out = []
    for ch in _chunks(0, [0] * min(n, 60), [pivot_units] * min(n, 60)):
        out += fw.handle(P.Frame(2, ch), t)
    return out


def test_host_silence_stops_motor_within_100ms(fw):
    # Pivot set-point 50 mm away: the PID drives the motor hard until the watchdog trips.
    _start_and_fill(fw, 10_000, 27500)
    t, last_host = 0.0, 0.0
    motors, faults = [], []
    fed = 60
    for k in range(400):
        t = (k + 1) / FS
        if t <= 0.1:  # the host feeds setpoints for 100 ms, then goes silent
            while fed - fw.read < 48:
                fw.handle(P.Frame(3, P.SetpointChunk(fed, (0,) * 12, (27500,) * 12)), t)
                fed += 12
        msgs = fw.tick(t)
        motors.append((t, fw.motor))
        if t <= 0.1:
            last_host = fw.last_host
        faults += [(t, m) for m in msgs if isinstance(m, P.Fault)]
    assert any(abs(m) > 0 for tt, m in motors if tt <= 0.1), "motor never ran"
    assert [m.code for _, m in faults] == [P.FaultCode.WATCHDOG]
    t_fault = faults[0][0]
    stopped = [tt for tt, m in motors if tt > last_host and m == 0]
    assert stopped and stopped[0] - last_host <= 0.1
    assert 0.05 <= t_fault - last_host <= 0.1
    assert all(m == 0 for tt, m in motors if tt >= t_fault)
    assert not fw.running


def test_setpoints_beyond_limits_are_refused_and_never_executed(fw):
    fw.handle(P.Frame(1, P.Start(0, 100)), 0.0)
    for first in (0, 12, 24):
        ok = fw.handle(P.Frame(2, P.SetpointChunk(first, (0,) * 12, (25000,) * 12)), 0.0)
        assert isinstance(ok[0], P.Ack) and ok[0].write_index == first + 12
    bad_piv = [25000] * 12
    bad_piv[5] = PMAX + 50  # 280.5 mm > pivot_max 280 mm
    out = fw.handle(P.Frame(3, P.SetpointChunk(36, (0,) * 12, tuple(bad_piv))), 0.0)
    fault = [m for m in out if isinstance(m, P.Fault)]
    nack = [m for m in out if isinstance(m, P.Nack)]
    assert fault and fault[0].code == P.FaultCode.LIMIT and fault[0].index == 41
    assert fault[0].detail == (PMAX + 50) * 10
    assert nack and nack[0].reason == P.NackReason.LIMIT and nack[0].expected_index == 41
    assert fw.write == 36  # nothing of the refused chunk was stored
    out = fw.handle(P.Frame(4, P.SetpointChunk(36, (2001,) + (0,) * 11, (25000,) * 12)), 0.0)
    assert any(isinstance(m, P.Fault) and m.code == P.FaultCode.LIMIT for m in out)
    for k in range(200):
        fw.tick(k / FS)
    assert fw.executed == list(range(36))  # ran the good ones, then underran; never 36..47
    assert np.all(fw.sp_piv <= PMAX * 10)


def test_duplicate_and_out_of_order_chunks(fw):
    fw.handle(P.Frame(1, P.Start(0, 100)), 0.0)
    ch = P.SetpointChunk(0, (1,) * 12, (25000,) * 12)
    assert fw.handle(P.Frame(2, ch), 0.0)[0].write_index == 12
    assert fw.handle(P.Frame(3, ch), 0.0)[0].write_index == 12  # duplicate: ACK, not stored
    nack = fw.handle(P.Frame(4, P.SetpointChunk(24, (1,), (25000,))), 0.0)[0]
    assert isinstance(nack, P.Nack) and nack.reason == P.NackReason.BAD_INDEX
    assert nack.expected_index == 12
    over = fw.handle(P.Frame(5, P.SetpointChunk(6, (3,) * 12, (25000,) * 12)), 0.0)[0]
    assert isinstance(over, P.Ack) and over.write_index == 18  # overlap: only the new tail


def test_credits_never_overflow(fw):
    fw.handle(P.Frame(1, P.Start(0, 1000)), 0.0)
    w = 0
    while True:
        out = fw.handle(P.Frame(2, P.SetpointChunk(w, (0,) * 12, (25000,) * 12)), 0.0)[0]
        if isinstance(out, P.Nack):
            assert out.reason == P.NackReason.OVERFLOW
            break
        w += 12
    assert fw.write - fw.read <= fw.capacity


def test_estop_latches_until_config(fw):
    rig = fw.rig
    _start_and_fill(fw, 1000, 25000)
    for k in range(10):
        fw.tick(k / FS)
    out = fw.handle(P.Frame(5, P.Estop()), 0.01)
    assert any(isinstance(m, P.Fault) and m.code == P.FaultCode.ESTOP for m in out)
    assert fw.motor == 0 and not fw.running
    nack = fw.handle(P.Frame(6, P.Start(0, 10)), 0.01)[0]
    assert isinstance(nack, P.Nack) and nack.reason == P.NackReason.BAD_STATE
    assert isinstance(fw.handle(P.Frame(7, _config(rig)), 0.01)[0], P.Ack)
    assert isinstance(fw.handle(P.Frame(8, P.Start(0, 10)), 0.01)[0], P.Ack)


def test_bad_config_refused(fw):
    c = _config(fw.rig)
    bad = P.Config(**{**c.to_dict(), "pivot_max_um": 900000})  # beyond the hard end stop
    nack = fw.handle(P.Frame(9, bad), 0.0)[0]
    assert isinstance(nack, P.Nack) and nack.reason == P.NackReason.BAD_CONFIG


def test_pivot_tracks_schedule(fw):
    # 250 mm set-point from 225 mm: the integer PID on the lever physics gets there.
    n = 3000
    fw.handle(P.Frame(1, P.Start(0, n)), 0.0)
    w, piv = 0, []
    for k in range(n + 40):
        while w < n and fw.credits >= 12:
            fw.handle(P.Frame(2, P.SetpointChunk(w, (0,) * 12, (25000,) * 12)), k / FS)
            w += 12
        fw.handle(P.Frame(3, P.Heartbeat()), k / FS)
        piv += [m.pivot_um for m in fw.tick(k / FS) if isinstance(m, P.Sample)]
    assert len(piv) == n
    assert abs(np.mean(piv[-500:]) - 250000) < 1500  # within 1.5 mm after 2.5 s
