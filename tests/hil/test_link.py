"""Link: sequence/gap accounting, pyserial URLs, ping and the rig CLI."""

from __future__ import annotations

import argparse
import time

import pytest

from hil import protocol as P
from hil.cli import main, register
from hil.link import FrameChecker, Link, LinkError, ping
from hil.virtual import VirtualRig


def _wire(msg, seq):
    return P.encode_frame(msg, seq)[:-1]


def test_checker_counts_gaps_duplicates_and_rejections():
    c = FrameChecker()
    hb = P.DeviceHeartbeat(0, 0, 0, 0, 0)
    seqs = [65533, 65534, 65534, 65535, 2, 3, 1, 4]  # wrap, a duplicate, 2 lost, a late one
    got = [c.check(_wire(hb, s)) for s in seqs]
    assert [g.seq for g in got if g is not None] == [65533, 65534, 65535, 2, 3, 4]
    assert c.stats.lost_frames == 2  # seq 0 and 1 (1 arrived late: dropped as old)
    assert c.stats.duplicates == 2
    bad = bytearray(_wire(hb, 5))
    bad[4] ^= 0x40
    assert c.check(bytes(bad)) is None
    assert c.check(b"\x01\x01") is None
    assert c.stats.rejected == 2 and c.stats.rx_frames == 6


def test_checker_detects_device_reset():
    c = FrameChecker()
    for s in range(10):
        c.check(_wire(P.DeviceHeartbeat(0, 0, 0, 0, 0), s))
    hello = P.Hello(1, 0, 1, 0, 1, 500, 3, 128, 56)
    assert c.check(_wire(hello, 0)) is not None
    assert c.reset_seen and c.stats.resets == 1 and c.stats.lost_frames == 0


def test_loop_url_round_trip_and_segments():
    events = []
    wires = []
    with Link("loop://", on_event=lambda k, i: events.append((k, i)),
              on_wire=lambda w, t, s: wires.append(w)) as link:
        for _ in range(50):
            link.send(P.Heartbeat())  # loop:// echoes: our own frames come back, in sequence
        got = []
        deadline = time.monotonic() + 3
        while len(got) < 50 and time.monotonic() < deadline:
            r = link.get(0.1)
            if r is not None:
                got.append(r)
        assert [r.frame.seq for r in got] == list(range(50))
        assert link.stats.lost_frames == 0 and len(wires) == 50
    assert events[0] == ("segment", {"segment": 0, "why": "open"})
    with pytest.raises(LinkError):
        link.send(P.Heartbeat())


def test_open_failure_is_a_link_error():
    with pytest.raises(LinkError, match="cannot open"):
        Link("/dev/does-not-exist-impbench").open()


def test_ping_virtual_rig_and_cli(capsys, tmp_path):
    with VirtualRig(seed=0) as rig:
        res = ping(rig.url, count=3)
        assert res.hello.protocol_version == P.PROTOCOL_VERSION
        assert len(res.latencies) == 3 and all(0 < x < 1.0 for x in res.latencies)
        assert main(["rig", "ping", rig.url, "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "protocol v1" in out and "round trip" in out
    assert main(["rig", "ping", str(tmp_path / "nope"), "--count", "1"]) == 1
    assert main(["rig", "ports"]) == 0
    assert main(["rig", "virtual", "--duration", "0.2", "--seed", "1"]) == 0
    assert "virtual rig 'default' (fast)" in capsys.readouterr().out
    assert main(["rig", "recover", str(tmp_path / "missing.rawlog")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("session: {name: x}\n")
    assert main(["rig", "record", str(bad), "--port", "loop://"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: session.pivot: required key is missing" in err
    assert f"{bad}:1: session.duration_s: required key is missing" in err


def test_register_adds_rig_group():
    parser = argparse.ArgumentParser(prog="impbench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rig", "record", "s.yaml", "--port", "/dev/ttyACM0"])
    assert args.port == "/dev/ttyACM0" and callable(args.func)
    args = parser.parse_args(["rig", "virtual", "--realtime", "--reset-at", "1,2.5"])
    assert args.realtime and args.reset_at == (1.0, 2.5)
