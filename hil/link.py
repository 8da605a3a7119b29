"""Serial transport for the rig protocol: reader thread, CRC/sequence checks, reconnects.

:class:`Link` opens any pyserial URL (``serial.serial_for_url``): a real port
(``/dev/ttyACM0``, ``COM3``), a pseudo-terminal path (the virtual rig), ``socket://host:port``
or ``loop://``.  A reader thread splits the byte stream at 0x00 delimiters, hands every wire
frame to an optional ``on_wire`` sink (the session's raw log) *before* any checking, then
decodes it (COBS, CRC-32, layout; see ``hil/protocol.py``) and checks the 16-bit sequence
number of the device direction: duplicates are dropped, skipped numbers counted as lost
frames.  When the port disappears (USB unplug) or the device reboots (HELLO with sequence 0),
the link starts a new *segment* — a numbered, logged event, never a silent resumption.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import serial
import serial.tools.list_ports

from hil.protocol import (
    Frame,
    FrameDecoder,
    FrameError,
    Hello,
    HelloRequest,
    Message,
    MsgType,
    decode_frame,
    encode_frame,
)

__all__ = ["FrameChecker", "Link", "LinkError", "LinkStats", "Received", "list_ports", "ping"]


class LinkError(ConnectionError):
    """The serial link is closed, down, or a request got no answer."""


@dataclass
class LinkStats:
    """Counters of one link (all segments).

    Attributes
    ----------
    rx_bytes, rx_frames : int
        Bytes read; frames that passed all checks.
    crc_errors, cobs_errors, length_errors, unknown_types, short_frames, overruns : int
        Frames rejected, by reason.
    duplicates : int
        Frames dropped because their sequence number was not new.
    lost_frames : int
        Device frames missing from the sequence (rejected or never arrived).
    tx_frames : int
    segments : int
        Segments started (1 after open; +1 per reconnect or device reset).
    reconnects, resets : int
    internal_errors : int
        Exceptions raised while handling received bytes (kept in ``Link.last_error``).
    """

    rx_bytes: int = 0
    rx_frames: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    length_errors: int = 0
    unknown_types: int = 0
    short_frames: int = 0
    overruns: int = 0
    duplicates: int = 0
    lost_frames: int = 0
    tx_frames: int = 0
    segments: int = 0
    reconnects: int = 0
    resets: int = 0
    internal_errors: int = 0

    @property
    def rejected(self) -> int:
        """Frames rejected by COBS/CRC/layout checks."""
        return (self.crc_errors + self.cobs_errors + self.length_errors + self.unknown_types
                + self.short_frames + self.overruns)

    def to_dict(self) -> dict:
        """Counters as a plain dict (JSON-ready)."""
        return {**asdict(self), "rejected": self.rejected}


@dataclass(frozen=True)
class Received:
    """A checked frame with its host arrival time (``time.monotonic``, s) and segment."""

    frame: Frame
    t_host: float
    segment: int

    @property
    def msg(self) -> Message:
        """The decoded message."""
        return self.frame.msg


_REASON_FIELD = {
    "crc": "crc_errors", "cobs": "cobs_errors", "bad_length": "length_errors",
    "unknown_type": "unknown_types", "short": "short_frames", "empty": "short_frames",
    "too_long": "overruns",
}


class Link:
    """A protocol link over a pyserial URL, with a reader thread.

    Parameters
    ----------
    url : str
        Port name, pty path, ``socket://host:port`` or ``loop://``.
    baudrate : int
        UART rate, baud (ignored by ptys and sockets).
    reconnect : bool
        Reopen the port after it disappears (a new segment).
    on_wire : callable(bytes, float, int), optional
        Called from the reader thread with every raw wire frame (delimiter excluded), its
        arrival time (``time.monotonic``) and segment, before checking — for the raw log.
    on_event : callable(str, dict), optional
        Called on ``"segment"`` events (open, reconnect, reset, disconnect).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 1_000_000,
        reconnect: bool = True,
        on_wire: Callable[[bytes, float, int], None] | None = None,
        on_event: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.reconnect = reconnect
        self.on_wire = on_wire
        self.on_event = on_event
        self.stats = LinkStats()
        self.segment = -1
        self._ser: serial.SerialBase | None = None
        self._q: queue.Queue[Received] = queue.Queue()
        self._tx_lock = threading.Lock()
        self._tx_seq = 0
        self.checker = FrameChecker(self.stats)
        self._stop = threading.Event()
        self._up = threading.Event()
        self._thread: threading.Thread | None = None
        self._decoder = FrameDecoder()
        self.last_error: Exception | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> Link:
        """Open the port and start the reader thread; raises :class:`LinkError` if it fails."""
        try:
            self._open_port()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url!r}: {exc}") from exc
        self._new_segment("open")
        self._thread = threading.Thread(target=self._reader, name=f"link:{self.url}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the reader thread and close the port (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close_port()

    def __enter__(self) -> Link:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether the port is open now."""
        return self._up.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the port is open (after a reconnect); False on timeout."""
        return self._up.wait(timeout)

    def _open_port(self) -> None:
        ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.01,
                                    write_timeout=0.5)
        with contextlib.suppress(serial.SerialException, OSError, AttributeError):
            ser.reset_input_buffer()
        self._ser = ser
        self._decoder = FrameDecoder()
        self._up.set()

    def _close_port(self) -> None:
        self._up.clear()
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def _new_segment(self, why: str, *, keep_checker: bool = False, **info: object) -> None:
        self.segment += 1
        self.stats.segments += 1
        if not keep_checker:
            self.checker.restart()
        with self._tx_lock:
            self._tx_seq = 0
        if self.on_event is not None:
            self.on_event("segment", {"segment": self.segment, "why": why, **info})

    # -- sending ---------------------------------------------------------------------------

    def send(self, msg: Message) -> int:
        """Frame and write ``msg``; returns the sequence number used.

        Raises
        ------
        LinkError
            The port is down (unplugged, closed).
        """
        with self._tx_lock:
            ser = self._ser
            if ser is None or not self._up.is_set():
                raise LinkError(f"link {self.url!r} is down")
            seq = self._tx_seq
            try:
                ser.write(encode_frame(msg, seq))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                raise LinkError(f"write to {self.url!r} failed: {exc}") from exc
            self._tx_seq = (seq + 1) & 0xFFFF
            self.stats.tx_frames += 1
            return seq

    # -- receiving -------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Received | None:
        """Next checked frame, or None after ``timeout`` seconds."""
        try:
            return self._q.get(timeout=timeout) if timeout else self._q.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[Received]:
        """All checked frames queued now."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def request(
        self,
        msg: Message,
        reply: Iterable[MsgType],
        *,
        timeout: float = 0.3,
        retries: int = 3,
        keep: Callable[[Received], None] | None = None,
    ) -> Received:
        """Send ``msg`` and wait for a frame of a type in ``reply`` (resending on timeout).

        Frames of other types that arrive meanwhile go to ``keep`` (or are discarded).
        For ACK/NACK replies only those acknowledging this message's sequence count.

        Raises
        ------
        LinkError
            No answer after ``retries`` attempts.
        """
        want = set(reply)
        for _ in range(retries):
            try:
                seq = self.send(msg)
            except LinkError:
                if not self.reconnect:
                    raise
                self.wait_connected(timeout)  # unplugged: wait for the port, then retry
                continue
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                r = self.get(left)
                if r is None:
                    break
                if r.frame.type in want and (
                    r.frame.type not in (MsgType.ACK, MsgType.NACK)
                    or (r.msg.acked_seq == seq and r.msg.acked_type == msg.TYPE)
                ):
                    return r
                if keep is not None:
                    keep(r)
        raise LinkError(f"no {'/'.join(t.name for t in want)} answer to {msg.TYPE.name} "
                        f"from {self.url!r} after {retries} tries")

    def _reader(self) -> None:
        while not self._stop.is_set():
            ser = self._ser
            if ser is None:
                if not self.reconnect:
                    return
                try:
                    self._open_port()
                except (serial.SerialException, OSError, ValueError):
                    self._stop.wait(0.05)
                    continue
                self.stats.reconnects += 1
                self._new_segment("reconnect")
                continue
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if self._stop.is_set():
                    return
                self._close_port()
                if self.on_event is not None:
                    self.on_event("disconnect", {"segment": self.segment, "error": str(exc)})
                continue
            if data:
                try:
                    self._handle_bytes(data)
                except Exception as exc:  # a bug or a full disk must not silence the link
                    self.stats.internal_errors += 1
                    self.last_error = exc
                    if self.on_event is not None:
                        with contextlib.suppress(Exception):
                            self.on_event("error", {"error": repr(exc)})

    def _handle_bytes(self, data: bytes) -> None:
        self.stats.rx_bytes += len(data)
        now = time.monotonic()
        wires = self._decoder.feed(data)
        self.stats.overruns = self._decoder.overruns
        for wire in wires:
            if self.on_wire is not None:
                self.on_wire(wire, now, self.segment)
            self.handle_wire(wire, now)

    def handle_wire(self, wire: bytes, t_host: float) -> Received | None:
        """Check one wire frame and queue it; returns it, or None if rejected/duplicate."""
        frame = self.checker.check(wire)
        if frame is None:
            return None
        if self.checker.reset_seen:
            self.checker.reset_seen = False
            self._new_segment("device_reset", keep_checker=True)
        rec = Received(frame, t_host, self.segment)
        self._q.put(rec)
        return rec


class FrameChecker:
    """Decode and sequence-check device frames; counts every rejection in ``stats``.

    The one implementation of the checks, used by the live :class:`Link` and by raw-log
    recovery.  A HELLO with sequence 0 after other frames means the device rebooted:
    ``reset_seen`` is set and the sequence state restarts (the caller opens a new segment).
    """

    def __init__(self, stats: LinkStats | None = None) -> None:
        self.stats = stats if stats is not None else LinkStats()
        self.last: int | None = None
        self.reset_seen = False

    def restart(self) -> None:
        """Forget the sequence state (new segment)."""
        self.last = None

    def check(self, wire: bytes) -> Frame | None:
        """Return the decoded frame, or None if rejected (counted) or a duplicate (counted)."""
        st = self.stats
        try:
            frame = decode_frame(wire)
        except FrameError as err:
            name = _REASON_FIELD.get(err.reason, "cobs_errors")
            setattr(st, name, getattr(st, name) + 1)
            return None
        last = self.last
        if isinstance(frame.msg, Hello) and frame.seq == 0 and last not in (None, 0xFFFF):
            st.resets += 1
            self.reset_seen = True
            last = None
        if last is not None:
            gap = (frame.seq - last - 1) & 0xFFFF
            if gap >= 0x8000:
                st.duplicates += 1
                return None
            st.lost_frames += gap
        self.last = frame.seq
        st.rx_frames += 1
        return frame


def list_ports() -> list[dict]:
    """Serial ports of this machine (``serial.tools.list_ports``) as dicts."""
    return [
        {"device": p.device, "description": p.description, "hwid": p.hwid}
        for p in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device)
    ]


@dataclass
class PingResult:
    """HELLO round trips: the device's HELLO and latencies, s."""

    hello: Hello
    latencies: list = field(default_factory=list)


def ping(url: str, *, count: int = 5, timeout: float = 0.5, baudrate: int = 1_000_000
         ) -> PingResult:
    """Send HELLO_REQ ``count`` times; return the device identity and round-trip latencies."""
    if count < 1:
        raise ValueError(f"count must be >= 1; got {count}")
    with Link(url, baudrate=baudrate, reconnect=False) as link:
        lat: list[float] = []
        hello: Hello | None = None
        for _ in range(count):
            t0 = time.monotonic()
            r = link.request(HelloRequest(), [MsgType.HELLO], timeout=timeout, retries=1)
            lat.append(r.t_host - t0)
            hello = r.msg  # type: ignore[assignment]
        return PingResult(hello, lat)  # type: ignore[arg-type]
