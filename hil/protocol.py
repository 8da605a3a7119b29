"""Rig protocol v1: COBS framing, CRC-32, sequence numbers and the message set.

The wire format is specified in ``hil/PROTOCOL.md`` (the normative text); this module is
its Python reference implementation, and ``hil/vectors/protocol_vectors.json`` holds the
byte-exact test vectors shared with the firmware's C unit tests (issue 11).

Frame on the wire::

    COBS( type:u8 | seq:u16 | payload:0..MAX_PAYLOAD | crc32:u32 ) 0x00

All integers little-endian (the AVR's byte order).  ``crc32`` is CRC-32/ISO-HDLC
(``zlib.crc32``) over ``type | seq | payload``.  Host->device types are ``0x01..0x7F``,
device->host types ``0x81..0xFF``; each direction numbers its frames with its own 16-bit
sequence counter (wrapping), starting at 0 after power-up / link open.

Units on the wire (integers, so the Uno never touches floats in the protocol):
positions in micrometres (um), force in millinewtons (mN), time in microseconds (us),
motor command in PWM counts (signed), setpoints in units of 10 um (int16), PID gains as the
firmware's integer gains.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import astuple, dataclass, fields
from typing import ClassVar

__all__ = [
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MAX_SETPOINTS_PER_CHUNK",
    "PROTOCOL_VERSION",
    "SETPOINT_UNIT_UM",
    "Ack",
    "Config",
    "DeviceHeartbeat",
    "Estop",
    "Fault",
    "FaultCode",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Heartbeat",
    "Hello",
    "HelloRequest",
    "Message",
    "MsgType",
    "Nack",
    "NackReason",
    "Sample",
    "SetpointChunk",
    "Start",
    "StatusFlag",
    "Stop",
    "cobs_decode",
    "cobs_encode",
    "crc32",
    "decode_frame",
    "encode_frame",
]

PROTOCOL_VERSION = 1
#: Largest payload of any message, bytes (bounds the firmware's frame buffers).
MAX_PAYLOAD = 56
#: Largest un-encoded frame: type + seq + payload + crc.
MAX_FRAME = 1 + 2 + MAX_PAYLOAD + 4
#: Largest COBS-encoded frame including the 0x00 delimiter.
MAX_WIRE = MAX_FRAME + (MAX_FRAME // 254) + 2
#: Setpoints per SETPOINTS chunk (5-byte header + 12 x 4 bytes = 53 <= MAX_PAYLOAD).
MAX_SETPOINTS_PER_CHUNK = 12
#: Resolution of setpoints on the wire, um per count (int16 gives +-327.67 mm).
SETPOINT_UNIT_UM = 10


class FrameError(ValueError):
    """A frame failed COBS decoding, the CRC, or the message layout. ``reason`` says which."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class MsgType(enum.IntEnum):
    """Message type codes (bit 7 set: device -> host)."""

    HELLO_REQ = 0x01
    CONFIG = 0x02
    START = 0x03
    STOP = 0x04
    SETPOINTS = 0x05
    HEARTBEAT = 0x06
    ESTOP = 0x07
    HELLO = 0x81
    SAMPLE = 0x82
    DEVICE_HEARTBEAT = 0x83
    FAULT = 0x84
    ACK = 0x85
    NACK = 0x86


class FaultCode(enum.IntEnum):
    """FAULT codes; ``detail`` meaning in PROTOCOL.md."""

    LIMIT = 1  # setpoint beyond travel limits refused (detail: setpoint index)
    WATCHDOG = 2  # host silent longer than the watchdog timeout (detail: silence, ms)
    UNDERRUN = 3  # setpoint buffer ran empty while running (detail: read index)
    ESTOP = 4  # e-stop (host message or input) latched (detail: 0 host, 1 input)
    TRAVEL = 5  # measured position left its travel range (detail: position, um)
    RESET = 6  # device (re)booted (detail: reset cause)


class NackReason(enum.IntEnum):
    """NACK reasons."""

    BAD_INDEX = 1  # setpoint chunk does not start at or before the write index
    OVERFLOW = 2  # chunk exceeds the credits (free buffer slots)
    LIMIT = 3  # a setpoint is beyond the travel limits; nothing of the chunk is stored
    BAD_LENGTH = 4  # payload length wrong for the type
    BAD_STATE = 5  # message not allowed in the current state (e.g. START while e-stopped)
    UNKNOWN_TYPE = 6
    BAD_CONFIG = 7  # CONFIG values out of the device's range


class StatusFlag(enum.IntFlag):
    """Bits of ``Sample.flags`` and ``DeviceHeartbeat.flags``."""

    RUNNING = 0x01
    PIVOT_LIMIT = 0x02
    ACT_LIMIT = 0x04
    UNDERRUN = 0x08
    WATCHDOG = 0x10
    ESTOP = 0x20
    SATURATED = 0x40
    CONFIGURED = 0x80


# ----------------------------------------------------------------------------------------------
# Messages.  Each fixed-layout message declares its struct format (little-endian) whose fields
# follow the dataclass field order.


class Message:
    """Base of all messages; ``TYPE`` is the wire type, ``FMT`` the payload struct format."""

    TYPE: ClassVar[MsgType]
    FMT: ClassVar[str] = "<"

    def payload(self) -> bytes:
        """Payload bytes of this message."""
        return struct.pack(self.FMT, *astuple(self))

    @classmethod
    def from_payload(cls, payload: bytes) -> Message:
        """Parse a payload; raises :class:`FrameError` ``bad_length`` on a size mismatch."""
        size = struct.calcsize(cls.FMT)
        if len(payload) != size:
            raise FrameError(
                "bad_length", f"{cls.TYPE.name} payload must be {size} bytes, got {len(payload)}"
            )
        return cls(*struct.unpack(cls.FMT, payload))

    def to_dict(self) -> dict:
        """Field name -> value (setpoint lists as lists), for JSON vectors and logs."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class HelloRequest(Message):
    """Host -> device: who are you? Carries the host's protocol version."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO_REQ
    FMT: ClassVar[str] = "<B"
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Hello(Message):
    """Device -> host: identity and capabilities (answer to HELLO_REQ, and sent at boot).

    Attributes
    ----------
    protocol_version : int
    fw_major, fw_minor, fw_patch : int
    rig_id : int
        Serial number of the rig.
    loop_rate_hz : int
        Sample rate (the fastest loop), Hz; the rate CONFIG asks for may differ.
    n_channels : int
        Analogue channels sampled (actuator position, force, pivot position).
    buffer_capacity : int
        Setpoint ring-buffer slots (the flow-control window).
    max_payload : int
        Largest payload the device accepts, bytes.
    """

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    FMT: ClassVar[str] = "<BBBBHHBHB"
    protocol_version: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    rig_id: int
    loop_rate_hz: int
    n_channels: int
    buffer_capacity: int
    max_payload: int = MAX_PAYLOAD

    @property
    def firmware_version(self) -> str:
        """``"major.minor.patch"``."""
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"


@dataclass(frozen=True)
class Config(Message):
    """Host -> device: sample rate, pivot PID, travel limits and watchdog timeout.

    The pivot PID is the Uno's integer controller on the pivot potentiometer counts,
    run every ``control_divider`` samples:
    ``pwm = clamp((kp e + ki sum(e) + kd (e - e_prev)) >> shift, -pwm_max, pwm_max)``,
    ``sum(e)`` clamped to ``+-integral_limit``.  Limits are inclusive, um.  Answered with
    ACK, or NACK(BAD_CONFIG) when a value is outside the device's range; clears a latched
    e-stop or fault.
    """

    TYPE: ClassVar[MsgType] = MsgType.CONFIG
    FMT: ClassVar[str] = "<HBHHHBHiiiiiH"
    sample_rate_hz: int
    control_divider: int
    kp: int
    ki: int
    kd: int
    shift: int
    pwm_max: int
    integral_limit: int
    act_min_um: int
    act_max_um: int
    pivot_min_um: int
    pivot_max_um: int
    watchdog_ms: int


@dataclass(frozen=True)
class Start(Message):
    """Host -> device: run ``n_samples`` ticks; the first executes setpoint ``start_index``."""

    TYPE: ClassVar[MsgType] = MsgType.START
    FMT: ClassVar[str] = "<II"
    start_index: int
    n_samples: int


@dataclass(frozen=True)
class Stop(Message):
    """Host -> device: stop running, motor off (answered with ACK)."""

    TYPE: ClassVar[MsgType] = MsgType.STOP
    FMT: ClassVar[str] = "<"


@dataclass(frozen=True)
class Heartbeat(Message):
    """Host -> device: I am alive (any valid host frame also feeds the watchdog)."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    FMT: ClassVar[str] = "<"


@dataclass(frozen=True)
class Estop(Message):
    """Host -> device: emergency stop (motor off, latched until CONFIG)."""

    TYPE: ClassVar[MsgType] = MsgType.ESTOP
    FMT: ClassVar[str] = "<"


@dataclass(frozen=True)
class SetpointChunk(Message):
    """Host -> device: consecutive setpoints starting at ``first_index``.

    Attributes
    ----------
    first_index : int
        Global index of the first setpoint (= the sample index that executes it).
    actuator : tuple of int
        Perturbation actuator position setpoints, units of 10 um (int16).
    pivot : tuple of int
        Pivot position setpoints, units of 10 um (int16).
    """

    TYPE: ClassVar[MsgType] = MsgType.SETPOINTS
    first_index: int
    actuator: tuple
    pivot: tuple

    def __post_init__(self) -> None:
        if len(self.actuator) != len(self.pivot):
            raise ValueError("actuator and pivot setpoint lists must have the same length")
        if not 1 <= len(self.actuator) <= MAX_SETPOINTS_PER_CHUNK:
            raise ValueError(
                f"a chunk holds 1..{MAX_SETPOINTS_PER_CHUNK} setpoints; got {len(self.actuator)}"
            )

    @property
    def count(self) -> int:
        """Number of setpoints in the chunk."""
        return len(self.actuator)

    def payload(self) -> bytes:
        body = [v for pair in zip(self.actuator, self.pivot) for v in pair]
        return struct.pack(f"<IB{2 * self.count}h", self.first_index, self.count, *body)

    @classmethod
    def from_payload(cls, payload: bytes) -> SetpointChunk:
        if len(payload) < 5:
            raise FrameError("bad_length", "SETPOINTS payload shorter than its 5-byte header")
        first, count = struct.unpack_from("<IB", payload)
        if not 1 <= count <= MAX_SETPOINTS_PER_CHUNK or len(payload) != 5 + 4 * count:
            raise FrameError(
                "bad_length", f"SETPOINTS count {count} does not match {len(payload)} bytes"
            )
        vals = struct.unpack_from(f"<{2 * count}h", payload, 5)
        return cls(first, tuple(vals[0::2]), tuple(vals[1::2]))


@dataclass(frozen=True)
class Sample(Message):
    """Device -> host: one control-loop tick.

    Attributes
    ----------
    index : int
        Sample index (= setpoint index executed), counts from the START ``start_index``.
    time_us : int
        Device clock, us (wraps at 2**32).
    act_um : int
        Measured perturbation actuator position, um.
    force_mn : int
        Measured force at the lever end, mN.
    pivot_um : int
        Measured pivot position, um.
    motor : int
        Pivot motor command, PWM counts (+-``Config.pwm_max``; 255 = full drive on an Uno).
    flags : int
        :class:`StatusFlag` bits.
    """

    TYPE: ClassVar[MsgType] = MsgType.SAMPLE
    FMT: ClassVar[str] = "<IIiiihB"
    index: int
    time_us: int
    act_um: int
    force_mn: int
    pivot_um: int
    motor: int
    flags: int


@dataclass(frozen=True)
class DeviceHeartbeat(Message):
    """Device -> host, periodically (default every 50 ms): clock, state and credits.

    ``credits = buffer_capacity - (write_index - read_index)`` free setpoint slots.
    """

    TYPE: ClassVar[MsgType] = MsgType.DEVICE_HEARTBEAT
    FMT: ClassVar[str] = "<IBIIH"
    time_us: int
    flags: int
    write_index: int
    read_index: int
    credits: int


@dataclass(frozen=True)
class Fault(Message):
    """Device -> host: a fault (see :class:`FaultCode`) at sample ``index``."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    FMT: ClassVar[str] = "<BIi"
    code: int
    index: int
    detail: int


@dataclass(frozen=True)
class Ack(Message):
    """Device -> host: message ``acked_seq`` of type ``acked_type`` accepted; credit state."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    FMT: ClassVar[str] = "<BHIIH"
    acked_type: int
    acked_seq: int
    write_index: int
    read_index: int
    credits: int


@dataclass(frozen=True)
class Nack(Message):
    """Device -> host: message refused; ``expected_index`` is the device's write index."""

    TYPE: ClassVar[MsgType] = MsgType.NACK
    FMT: ClassVar[str] = "<BHBI"
    acked_type: int
    acked_seq: int
    reason: int
    expected_index: int


_CLASSES: dict[int, type[Message]] = {
    c.TYPE: c
    for c in (HelloRequest, Config, Start, Stop, SetpointChunk, Heartbeat, Estop,
              Hello, Sample, DeviceHeartbeat, Fault, Ack, Nack)
}


# ----------------------------------------------------------------------------------------------
# CRC and COBS


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (poly 0x04C11DB7 reflected, init and xorout 0xFFFFFFFF).

    ``crc32(b"123456789") == 0xCBF43926``.
    """
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): no 0x00 in the output.

    Each run of non-zero bytes becomes ``len + 1`` followed by the run; runs of 254 bytes
    use code 0xFF with no implied zero.  The delimiter is not appended.
    """
    out = bytearray()
    segs = bytes(data).split(b"\x00")
    last = len(segs) - 1
    for k, seg in enumerate(segs):
        while len(seg) >= 254:
            out.append(0xFF)
            out += seg[:254]
            seg = seg[254:]
            if not seg and k == last:
                return bytes(out)
        out.append(len(seg) + 1)
        out += seg
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode` (input without delimiter); :class:`FrameError` if invalid."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("cobs", f"zero byte inside a frame at offset {i}")
        end = i + code
        if end > n:
            raise FrameError("cobs", f"code {code} at offset {i} runs past the frame end")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError("cobs", "zero byte inside a COBS block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """A decoded, CRC-checked frame."""

    seq: int
    msg: Message

    @property
    def type(self) -> MsgType:
        """Wire type of the message."""
        return self.msg.TYPE


def encode_frame(msg: Message, seq: int) -> bytes:
    """Encode ``msg`` with sequence number ``seq`` into wire bytes, delimiter included."""
    payload = msg.payload()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{msg.TYPE.name} payload of {len(payload)} B exceeds {MAX_PAYLOAD} B")
    body = struct.pack("<BH", int(msg.TYPE), seq & 0xFFFF) + payload
    return cobs_encode(body + struct.pack("<I", crc32(body))) + b"\x00"


def decode_frame(wire: bytes) -> Frame:
    """Decode one frame (COBS bytes, with or without the trailing 0x00).

    Raises
    ------
    FrameError
        ``reason`` is one of ``empty``, ``too_long``, ``cobs``, ``short``, ``crc``,
        ``unknown_type``, ``bad_length``.
    """
    if wire.endswith(b"\x00"):
        wire = wire[:-1]
    if not wire:
        raise FrameError("empty")
    if len(wire) > MAX_WIRE:
        raise FrameError("too_long", f"{len(wire)} bytes")
    raw = cobs_decode(wire)
    if len(raw) < 7:
        raise FrameError("short", f"{len(raw)} bytes after COBS decoding")
    body, (crc,) = raw[:-4], struct.unpack("<I", raw[-4:])
    if crc32(body) != crc:
        raise FrameError("crc")
    mtype, seq = struct.unpack_from("<BH", body)
    cls = _CLASSES.get(mtype)
    if cls is None:
        raise FrameError("unknown_type", f"0x{mtype:02X}")
    return Frame(seq, cls.from_payload(body[3:]))


class FrameDecoder:
    """Incremental splitter: feed bytes, get the wire frames between 0x00 delimiters.

    Over-long runs without a delimiter are discarded (counted in ``overruns``) so a
    stream of garbage never grows memory.
    """

    def __init__(self, max_wire: int = MAX_WIRE) -> None:
        self._buf = bytearray()
        self._max = max_wire
        self._skipping = False
        self.overruns = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the complete wire frames (without delimiter) now available."""
        out: list[bytes] = []
        start = 0
        while True:
            j = data.find(b"\x00", start)
            if j < 0:
                break
            chunk = data[start:j]
            if self._skipping:
                self._skipping = False
            elif len(self._buf) + len(chunk) <= self._max:
                frame = bytes(self._buf) + chunk
                if frame:
                    out.append(frame)
            else:
                self.overruns += 1
            self._buf.clear()
            start = j + 1
        tail = data[start:]
        if not self._skipping:
            if len(self._buf) + len(tail) > self._max:
                self.overruns += 1
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += tail
        return out


# ----------------------------------------------------------------------------------------------
# Test vectors (hil/vectors/protocol_vectors.json, shared with the firmware's C tests)


def build_vectors() -> dict:
    """The protocol test vectors: CRC, COBS, one frame per message type, and invalid frames.

    ``python -m hil.protocol > hil/vectors/protocol_vectors.json`` regenerates the file;
    ``tests/hil/test_protocol.py`` checks that the file and this function agree.
    """
    crc_cases = [b"", b"123456789", bytes(range(256))]
    cobs_cases = [b"", b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x22\x33\x44",
                  b"\x11\x00\x00\x00", bytes(range(1, 255)), bytes(range(0, 255)),
                  bytes(range(1, 256)), bytes(range(2, 256)) + b"\x00"]
    msgs: list[tuple[Message, int]] = [
        (HelloRequest(), 0),
        (Hello(PROTOCOL_VERSION, 0, 1, 0, 42, 1000, 3, 128, MAX_PAYLOAD), 0),
        (Config(1000, 2, 600, 4, 3000, 8, 255, 8000, -30000, 30000, 200000, 300000, 50), 1),
        (Start(0, 20500), 2),
        (Stop(), 3),
        (Heartbeat(), 0xFFFF),
        (Estop(), 7),
        (SetpointChunk(0, (0, 12, -7), (25000, 25000, 25001)), 4),
        (SetpointChunk(1234567, tuple(range(-6, 6)), tuple(range(20000, 20012))), 5),
        (Sample(0, 400, 1234, -5678, 250000, -255, int(StatusFlag.RUNNING)), 0),
        (Sample(70000, 0xFFFFFFF0, -2000, 0, 219000, 17,
                int(StatusFlag.RUNNING | StatusFlag.PIVOT_LIMIT)), 0x1234),
        (DeviceHeartbeat(50000, int(StatusFlag.CONFIGURED), 128, 0, 0), 9),
        (Fault(int(FaultCode.LIMIT), 3, 350000), 10),
        (Fault(int(FaultCode.WATCHDOG), 900, 51), 11),
        (Ack(int(MsgType.SETPOINTS), 4, 3, 0, 125), 12),
        (Nack(int(MsgType.SETPOINTS), 5, int(NackReason.BAD_INDEX), 3), 13),
    ]
    frames = []
    for m, seq in msgs:
        frames.append({
            "type": m.TYPE.name, "type_code": int(m.TYPE), "seq": seq, "fields": m.to_dict(),
            "payload": m.payload().hex(), "wire": encode_frame(m, seq).hex(),
        })
    good = encode_frame(Sample(1, 2, 3, 4, 5, 6, 7), 1)
    body = bytearray(cobs_decode(good[:-1]))
    flipped = bytearray(body)
    flipped[5] ^= 0x01  # one payload bit, the CRC left as it was
    unknown = bytes([0x7E, 0, 0])
    short_body = bytes([int(MsgType.START), 0, 0, 1, 2])
    invalid = [
        {"name": "crc_bit_flip", "wire": (cobs_encode(bytes(flipped)) + b"\x00").hex(),
         "error": "crc"},
        {"name": "crc_missing", "wire": (cobs_encode(bytes(body[:-4])) + b"\x00").hex(),
         "error": "crc"},
        {"name": "zero_code", "wire": (b"\x03\x01\x00\x02" + b"\x00").hex(), "error": "cobs"},
        {"name": "code_past_end", "wire": (b"\x09\x01\x02" + b"\x00").hex(), "error": "cobs"},
        {"name": "short", "wire": (cobs_encode(b"\x01\x02\x03") + b"\x00").hex(),
         "error": "short"},
        {"name": "unknown_type",
         "wire": (cobs_encode(unknown + struct.pack("<I", crc32(unknown))) + b"\x00").hex(),
         "error": "unknown_type"},
        {"name": "bad_length",
         "wire": (cobs_encode(short_body + struct.pack("<I", crc32(short_body)))
                  + b"\x00").hex(),
         "error": "bad_length"},
        {"name": "sample_missing_byte",
         "wire": (cobs_encode(bytes(body[:-5]) + struct.pack("<I", crc32(bytes(body[:-5]))))
                  + b"\x00").hex(),
         "error": "bad_length"},
    ]
    return {
        "protocol_version": PROTOCOL_VERSION,
        "notes": "hex strings; 'wire' includes the trailing 0x00 delimiter; integers "
                 "little-endian; crc32 = CRC-32/ISO-HDLC over type|seq|payload",
        "constants": {"MAX_PAYLOAD": MAX_PAYLOAD, "MAX_FRAME": MAX_FRAME, "MAX_WIRE": MAX_WIRE,
                      "MAX_SETPOINTS_PER_CHUNK": MAX_SETPOINTS_PER_CHUNK,
                      "SETPOINT_UNIT_UM": SETPOINT_UNIT_UM},
        "crc32": [{"data": d.hex(), "crc": f"{crc32(d):08x}"} for d in crc_cases],
        "cobs": [{"data": d.hex(), "encoded": cobs_encode(d).hex()} for d in cobs_cases],
        "frames": frames,
        "invalid": invalid,
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(build_vectors(), sys.stdout, indent=1)
    sys.stdout.write("\n")
