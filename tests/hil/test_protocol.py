"""Protocol v1: test vectors, round trips, COBS/CRC properties, decoder robustness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hil import protocol as P

VECTORS = Path(P.__file__).parent / "vectors" / "protocol_vectors.json"


@pytest.fixture(scope="module")
def vectors() -> dict:
    return json.loads(VECTORS.read_text())


def test_vector_file_matches_implementation(vectors):
    # The shipped file is exactly what the reference implementation generates.
    assert vectors == json.loads(json.dumps(P.build_vectors()))


def test_crc32_check_value(vectors):
    # CRC-32/ISO-HDLC catalogue check value.
    assert P.crc32(b"123456789") == 0xCBF43926
    for case in vectors["crc32"]:
        assert P.crc32(bytes.fromhex(case["data"])) == int(case["crc"], 16)


def test_cobs_vectors_and_canonical_long_runs(vectors):
    for case in vectors["cobs"]:
        data, enc = bytes.fromhex(case["data"]), bytes.fromhex(case["encoded"])
        assert P.cobs_encode(data) == enc
        assert P.cobs_decode(enc) == data
    # Published COBS examples (Cheshire & Baker): 254 non-zero bytes need no trailing code.
    assert P.cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))
    assert P.cobs_encode(b"\x00") == b"\x01\x01"
    assert P.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"


def test_frame_vectors_encode_and_decode(vectors):
    assert len({f["type"] for f in vectors["frames"]}) == len(P.MsgType)
    for f in vectors["frames"]:
        wire = bytes.fromhex(f["wire"])
        frame = P.decode_frame(wire)
        assert frame.seq == f["seq"]
        assert frame.msg.TYPE.name == f["type"]
        assert frame.msg.to_dict() == f["fields"]
        assert P.encode_frame(frame.msg, frame.seq) == wire
        assert wire.count(0) == 1 and wire[-1] == 0
        assert len(wire) <= P.MAX_WIRE + 1


def test_invalid_vectors_raise_named_reason(vectors):
    for case in vectors["invalid"]:
        with pytest.raises(P.FrameError) as err:
            P.decode_frame(bytes.fromhex(case["wire"]))
        assert err.value.reason == case["error"], case["name"]


def test_cobs_roundtrip_random():
    rng = np.random.default_rng(3)
    for n in range(0, 700, 7):
        d = rng.integers(0, 256, n, dtype=np.uint8)
        d[rng.random(n) < 0.1] = 0
        enc = P.cobs_encode(d.tobytes())
        assert 0 not in enc
        assert P.cobs_decode(enc) == d.tobytes()


def test_every_single_bit_flip_is_rejected():
    # CRC-32 detects every 1-bit error; COBS/length checks catch the structural ones.
    wire = P.encode_frame(P.Sample(7, 1000, -3, 12345, 250000, -40, 1), 99)
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            if 0 in bad[:-1]:
                continue  # a flip to 0x00 splits the frame; each part fails on its own below
            with pytest.raises(P.FrameError):
                P.decode_frame(bytes(bad))


def test_setpoint_chunk_limits():
    with pytest.raises(ValueError, match=r"1\.\.12"):
        P.SetpointChunk(0, tuple(range(13)), tuple(range(13)))
    with pytest.raises(ValueError, match="same length"):
        P.SetpointChunk(0, (1, 2), (1,))
    full = P.SetpointChunk(0, (32767,) * 12, (-32768,) * 12)
    assert len(full.payload()) <= P.MAX_PAYLOAD
    assert P.decode_frame(P.encode_frame(full, 1)).msg == full


def test_decoder_splits_stream_and_bounds_garbage():
    frames = [P.encode_frame(P.Heartbeat(), s) for s in range(3)]
    dec = P.FrameDecoder()
    stream = b"".join(frames)
    got = []
    for i in range(0, len(stream), 3):  # byte-dribbled
        got += dec.feed(stream[i:i + 3])
    assert [P.decode_frame(w).seq for w in got] == [0, 1, 2]
    # A long run without delimiter is dropped (bounded memory) and counted; the next frame
    # after a delimiter decodes again.
    out = dec.feed(b"\x05" * 5000 + b"\x00" + frames[0])
    assert dec.overruns >= 1
    assert [P.decode_frame(w).seq for w in out] == [0]
