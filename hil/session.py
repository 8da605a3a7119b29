"""Rig sessions: lossless recording and recovery.

:func:`record` drives a rig over a :class:`hil.link.Link`: it streams setpoints ahead of the
device within the credits the device grants (flow control, ``hil/PROTOCOL.md`` Sec. 5), appends
every received wire frame to an append-only raw log (:class:`hil.session_log.RawLog`, flushed
and fsynced at least every ``LOG_SYNC_S``), and on completion writes the dataset
(``<out>.npz`` arrays + ``<out>.json`` metadata, :class:`hil.session_data.SessionDataset`).
:func:`recover` rebuilds the same dataset from a raw log alone after a host crash.

The session file and its plan live in :mod:`hil.session_spec`, the raw log in
:mod:`hil.session_log`, the dataset in :mod:`hil.session_data`; their public names are
re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from bench.errors import DataError
from hil.link import FrameChecker, Link, LinkError, LinkStats
from hil.protocol import (
    MAX_SETPOINTS_PER_CHUNK,
    PROTOCOL_VERSION,
    Ack,
    DeviceHeartbeat,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    HelloRequest,
    MsgType,
    Nack,
    NackReason,
    Sample,
    SetpointChunk,
    Start,
    StatusFlag,
    Stop,
)
from hil.session_data import (
    DATASET_FORMAT,
    SessionDataset,
    _Assembler,
    _build_dataset,
    find_datasets,
    is_session_dataset,
    load_dataset,
    session_mapping,
    session_realizations,
)
from hil.session_log import LOG_SYNC_S, RawLog, read_raw_log
from hil.session_spec import (
    LimitsSpec,
    PerturbationSpec,
    PidSpec,
    PivotSpec,
    ResolvedSession,
    SessionError,
    SessionPlan,
    SessionSpec,
    load_session,
    plan_session,
    resolve_session,
    session_config,
)

__all__ = [
    "DATASET_FORMAT",
    "LOG_SYNC_S",
    "LimitsSpec",
    "PerturbationSpec",
    "PidSpec",
    "PivotSpec",
    "RawLog",
    "ResolvedSession",
    "SessionDataset",
    "SessionError",
    "SessionPlan",
    "SessionSpec",
    "find_datasets",
    "is_session_dataset",
    "load_dataset",
    "load_session",
    "plan_session",
    "read_raw_log",
    "record",
    "recover",
    "resolve_session",
    "session_config",
    "session_mapping",
    "session_realizations",
]

#: Tries of a request (HELLO_REQ, STOP, CONFIG, START; 0.3 s each) before giving up: a request
#: and its answer are lost together with probability ~0.3 at 1 % byte errors, so 12 tries
#: fail with probability ~5e-7.
_RETRIES = 12
#: Restarts (after an underrun, reset or reconnect) before a session gives up.
_MAX_RESTARTS = 50

# ----------------------------------------------------------------------------------------------
# Recording


@dataclass
class _Flow:
    """Host side of the credit window (PROTOCOL.md Sec. 5)."""

    capacity: int
    end: int = 0
    sent: int = 0  # next setpoint index to send
    write: int = 0  # device's write index (setpoints stored)
    read: int = 0  # device's read index (setpoints consumed)
    last_progress: float = 0.0

    def update(self, write: int, read: int, now: float) -> None:
        if write > self.write:
            self.last_progress = now
        self.write = max(self.write, write)
        self.read = max(self.read, read)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("[bold]rig"), BarColumn(), TextColumn("{task.completed}/"
                          "{task.total}"), TextColumn("{task.fields[info]}"),
                          TimeRemainingColumn())
        self.p.start()
        self.task = self.p.add_task("rig", total=total, info="")

    def update(self, done: int, info: str) -> None:
        if self.enabled:
            self.p.update(self.task, completed=done, info=info)

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def record(
    spec_path: str | os.PathLike,
    port: str,
    *,
    out: str | os.PathLike | None = None,
    baudrate: int = 1_000_000,
    progress: bool = False,
    reconnect_timeout: float = 5.0,
    silence_timeout: float = 2.0,
    on_sample: Callable[[int], None] | None = None,
) -> SessionDataset:
    """Run the session of ``spec_path`` on the rig at ``port`` and write its dataset.

    Parameters
    ----------
    spec_path : path
        Session file.
    port : str
        pyserial URL of the rig (port, pty path, ``socket://``).
    out : path, optional
        Output stem; default ``<spec dir>/<name>`` -> ``.rawlog``, ``.npz``, ``.json``. Its
        folder is created when the rig has answered the handshake (``impbench rig record``
        passes ``runs/<name>/<name>``).
    progress : bool
        Show a rich progress bar (sample rate, gaps, faults).
    reconnect_timeout : float
        How long to wait for a lost port to come back, s.
    silence_timeout : float
        Abort when nothing valid arrives for this long while connected, s.
    on_sample : callable(int), optional
        Called with the number of samples received so far (tests, UIs).

    Returns
    -------
    SessionDataset
        Also saved to ``<out>.npz`` / ``<out>.json``; the raw log is ``<out>.rawlog``.

    Raises
    ------
    ScenarioError
        Invalid session file.
    SessionError
        The device refused the session (NACK, travel limit) or the link was lost for good.
    """
    spec = load_session(spec_path)
    res = resolve_session(spec, Path(spec_path).parent, str(spec_path))
    plan = plan_session(res)
    # The default output is <spec dir>/<name>: the name is a checked path component, so the
    # files stay in the session file's folder; --out is the user's own choice.
    out = Path(out) if out is not None else Path(spec_path).with_name(spec.name)
    _check_output_folder(out.parent)
    # Deferred: nothing is created (the output folder neither) until the rig has answered the
    # handshake, so a wrong port or a rig that refuses the session leaves nothing behind and
    # a retry is not blocked by it.
    log = RawLog(out.with_suffix(".rawlog"), deferred=True, make_parent=True)
    spec_dict = spec.model_dump(mode="json")
    log.meta({"kind": "session", "spec": spec_dict, "spec_path": str(spec_path),
              "spec_dir": str(Path(spec_path).parent.resolve()), "rig_path": res.rig_path,
              "port": port, "started_wall": time.time(), "protocol_version": PROTOCOL_VERSION})
    link = Link(port, baudrate=baudrate, on_wire=log.rx, on_event=log.event)
    stats = link.stats
    asm = _Assembler(plan.total)
    bar = _Progress(plan.total, progress)
    t_start = time.time()
    ok = False
    try:
        link.open()
        _run(link, res, plan, asm, log, bar, reconnect_timeout, silence_timeout, on_sample)
        ok = True
    finally:
        bar.close()
        with contextlib.suppress(LinkError):
            if link.connected:
                link.send(Stop())
        link.close()
        log.event("done", {"ok": ok, "wall_s": time.time() - t_start,
                           "restarts": asm.restarts})
        log.close()
    ds = _build_dataset(asm, plan, res, {
        "raw_log": str(out.with_suffix(".rawlog")), "link": stats.to_dict(),
        "wall": {"started": t_start, "ended": time.time()}, "recovered": False,
    })
    ds.save(out)
    return ds


def _check_output_folder(folder: Path) -> None:
    """Refuse, before any port is opened, an output folder that cannot be made: its nearest
    existing ancestor must be a writable directory."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise SessionError(f"cannot write the session under {str(folder)!r}: {str(p)!r} is "
                           "not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise SessionError(f"cannot write the session under {str(folder)!r}: {str(p)!r} is "
                           "not writable")


def _handshake(link: Link, res: ResolvedSession, keep: Callable) -> Hello:
    r = link.request(HelloRequest(), [MsgType.HELLO], retries=_RETRIES, keep=keep)
    hello: Hello = r.msg  # type: ignore[assignment]
    if hello.protocol_version != PROTOCOL_VERSION:
        raise SessionError(f"device speaks protocol v{hello.protocol_version}; "
                           f"host speaks v{PROTOCOL_VERSION}")
    keep(r)
    # STOP first: after a reconnect the device may still be running the old START.
    link.request(Stop(), [MsgType.ACK, MsgType.NACK], keep=keep, retries=_RETRIES)
    r = link.request(session_config(res), [MsgType.ACK, MsgType.NACK], keep=keep, retries=_RETRIES)
    if isinstance(r.msg, Nack):
        raise SessionError(f"device refused CONFIG: {NackReason(r.msg.reason).name}")
    return hello


def _run(link: Link, res: ResolvedSession, plan: SessionPlan, asm: _Assembler, log: RawLog,
         bar: _Progress, reconnect_timeout: float, silence_timeout: float,
         on_sample: Callable[[int], None] | None) -> None:
    act, piv = plan.actuator.ravel(), plan.pivot.ravel()
    pending: list = []

    def keep(r: Any) -> None:
        pending.append(r)

    hello = _handshake(link, res, keep)
    log.start()  # the rig answered and accepted the session: from now on it is recorded
    segment = link.segment
    flow = _Flow(capacity=hello.buffer_capacity)
    t0 = time.monotonic()
    last_hb = last_rx = last_ui = t0
    rate_mark = (t0, 0)
    rate = 0.0
    for rep in range(plan.actuator.shape[0]):
        begin, end = rep * plan.per_rep, (rep + 1) * plan.per_rep
        flow.end = end
        resume = begin
        while True:
            # (Re)start the device at the first sample still missing in this repetition.
            flow.sent = flow.write = flow.read = resume
            flow.last_progress = time.monotonic()
            for attempt in range(2):
                r = link.request(Start(resume, end - resume), [MsgType.ACK, MsgType.NACK],
                                 keep=keep, retries=_RETRIES)
                if not isinstance(r.msg, Nack):
                    break
                if attempt or r.msg.reason != NackReason.BAD_STATE:
                    raise SessionError(
                        f"device refused START: {NackReason(r.msg.reason).name}")
                # The device lost its configuration (an unnoticed reset) or still runs an
                # old START: handshake again, then retry once.
                log.event("rehandshake", {"segment": link.segment, "index": resume})
                hello = _handshake(link, res, keep)
                flow.capacity = hello.buffer_capacity
            restart = underrun = dev_ran = False
            last_sample = time.monotonic()
            while True:
                now = time.monotonic()
                batch = pending + link.drain()
                pending.clear()
                if not batch:
                    r = link.get(0.002)
                    batch = [r] if r is not None else []
                for r in batch:
                    last_rx = now
                    m = r.msg
                    asm.add(m, r.t_host, r.segment)
                    if isinstance(m, Sample):
                        last_sample = now
                    if r.segment != segment:
                        continue  # an older segment's credits mean nothing now
                    if isinstance(m, (Ack, DeviceHeartbeat)):
                        flow.update(m.write_index, m.read_index, now)
                    if isinstance(m, Sample):
                        dev_ran = True
                        # SAMPLE i executed setpoint i: its slot is free again (a credit
                        # as soon as the sample arrives, not only at the next heartbeat).
                        if m.index + 1 > flow.read and m.index < end:
                            flow.read = m.index + 1
                            flow.write = max(flow.write, flow.read)
                    elif isinstance(m, DeviceHeartbeat):
                        # The run may have ended early with its FAULT frame lost: the
                        # heartbeat's sticky flags still say why.
                        if m.flags & StatusFlag.RUNNING:
                            dev_ran = True
                        elif dev_ran and m.read_index < end:
                            if m.flags & (StatusFlag.WATCHDOG | StatusFlag.ESTOP):
                                raise SessionError(
                                    f"device stopped at sample {m.read_index} "
                                    f"({StatusFlag(m.flags & 0x30).name})")
                            underrun = True
                    elif isinstance(m, Nack) and m.acked_type == MsgType.SETPOINTS:
                        if m.reason == NackReason.LIMIT:
                            raise SessionError(
                                f"device refused setpoints beyond its travel limits "
                                f"(at index {m.expected_index}); nothing was executed")
                        flow.sent = max(m.expected_index, flow.read)
                        flow.write = m.expected_index
                        flow.last_progress = now
                    elif isinstance(m, Fault) and m.code == FaultCode.UNDERRUN:
                        underrun = True
                    elif isinstance(m, Fault) and m.code in (FaultCode.LIMIT, FaultCode.ESTOP,
                                                             FaultCode.WATCHDOG,
                                                             FaultCode.TRAVEL):
                        raise SessionError(f"device FAULT {FaultCode(m.code).name} at sample "
                                           f"{m.index} (detail {m.detail})")
                    elif isinstance(m, Sample) and on_sample is not None:
                        on_sample(asm.received)
                # Link lost, device reset, or device silent: wait for the port, handshake
                # again, and resume at the first missing sample (a new segment after a reset
                # or reconnect; a restart either way).
                lost = link.segment != segment or not link.connected
                silent = now - last_rx > silence_timeout
                if lost or silent:
                    if lost and not link.wait_connected(reconnect_timeout):
                        raise SessionError(f"rig at {link.url!r} did not come back within "
                                           f"{reconnect_timeout} s")
                    log.event("silence" if silent and not lost else "lost",
                              {"segment": link.segment, "t": now - t0})
                    time.sleep(0.05)
                    try:
                        hello = _handshake(link, res, keep)
                    except LinkError as exc:
                        raise SessionError(f"rig at {link.url!r} stopped answering: {exc}"
                                           ) from exc
                    flow.capacity = hello.buffer_capacity
                    segment = link.segment
                    last_rx = time.monotonic()
                    missing = np.flatnonzero(~asm.valid[begin:end])
                    resume = begin + int(missing[0]) if missing.size else end
                    log.event("resume", {"segment": segment, "index": resume,
                                         "why": "lost" if lost else "silence"})
                    restart = resume < end
                    break
                # Go-back-N: setpoints sent but not acknowledged in time are sent again.
                if flow.sent > flow.write and now - flow.last_progress > 0.1:
                    flow.sent = max(flow.write, flow.read)
                    flow.last_progress = now
                try:
                    while flow.sent < flow.end and flow.sent < flow.read + flow.capacity:
                        k = min(MAX_SETPOINTS_PER_CHUNK, flow.end - flow.sent,
                                flow.read + flow.capacity - flow.sent)
                        s = flow.sent
                        link.send(SetpointChunk(s, tuple(act[s:s + k].tolist()),
                                                tuple(piv[s:s + k].tolist())))
                        flow.sent += k
                        last_hb = now
                    if now - last_hb > 0.02:
                        link.send(Heartbeat())
                        last_hb = now
                except LinkError:
                    continue
                got = asm.received
                if now - rate_mark[0] >= 0.5:
                    rate = (got - rate_mark[1]) / (now - rate_mark[0])
                    rate_mark = (now, got)
                if now - last_ui > 0.1:
                    bar.update(got, f"{rate:7.0f} S/s  gaps {asm.gaps_so_far}  "
                               f"faults {len(asm.faults)}  segment {segment}")
                    last_ui = now
                # Repetition done: every sample arrived, or the device consumed every
                # setpoint and the stream has been quiet for a while (the rest are gaps).
                if flow.read >= end and (asm.valid[begin:end].all()
                                         or now - last_sample > 0.3):
                    break
                if underrun and now - last_sample > 0.05:
                    missing = np.flatnonzero(~asm.valid[begin:end])
                    resume = begin + int(missing[0]) if missing.size else end
                    log.event("resume", {"segment": segment, "index": resume,
                                         "why": "underrun"})
                    restart = resume < end
                    break
            if not restart:
                break
            asm.restarts.append(resume)
            if len(asm.restarts) > _MAX_RESTARTS:
                raise SessionError(f"gave up after {_MAX_RESTARTS} restarts of the device "
                                   f"(underruns/resets); last at sample {resume}")
    bar.update(asm.received, f"done, {plan.total - asm.received} missing")


# ----------------------------------------------------------------------------------------------
# Recovery


def recover(log_path: str | os.PathLike, *, out: str | os.PathLike | None = None
            ) -> SessionDataset:
    """Rebuild a session dataset from its raw log alone (after a host crash).

    Every logged frame passes through the same checks as live (:class:`hil.link.FrameChecker`)
    and the same assembler; the setpoints are regenerated from the logged session spec.

    Returns
    -------
    SessionDataset
        ``meta["recovered"]`` is True; saved to ``<out>`` (default: the log's stem).
    """
    metas, rx, events, torn = read_raw_log(log_path)
    sess = [m for m in metas if isinstance(m, dict) and m.get("kind") == "session"]
    if not sess:
        raise DataError(f"{log_path}: raw log has no session metadata record")
    try:
        spec = SessionSpec.model_validate(sess[0].get("spec"))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DataError(f"{log_path}: the logged session spec is invalid: "
                        f"{'.'.join(map(str, err['loc'])) or 'spec'}: {err['msg']}") from None
    spec_dir = sess[0].get("spec_dir")
    res = resolve_session(spec, spec_dir if isinstance(spec_dir, str) else None,
                          str(log_path))
    plan = plan_session(res)
    asm = _Assembler(plan.total)
    stats = LinkStats()
    checker = FrameChecker(stats)
    seg = None
    for t_host, segment, wire in rx:
        if segment != seg:
            checker.restart()
            seg = segment
        frame = checker.check(wire)
        if frame is not None:
            checker.reset_seen = False
            asm.add(frame.msg, t_host, segment)
    asm.restarts = [e["index"] for e in events if e.get("event") == "resume"
                    and isinstance(e.get("index"), int) and 0 <= e["index"] < plan.total]
    out = Path(out) if out is not None else Path(log_path).with_suffix("")
    ds = _build_dataset(asm, plan, res, {
        "raw_log": str(log_path), "link": stats.to_dict(), "recovered": True,
        "torn_records": torn, "events": events,
        "completed": any(e.get("event") == "done" for e in events),
    })
    ds.save(out)
    return ds
