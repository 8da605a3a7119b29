"""Throughput, loss under fault injection, and crash-recovery loss of the HIL host (issue 10).

Every case records a session from ``tests``-style session files against the virtual rig
(:class:`hil.virtual.VirtualRig`) over a pseudo-terminal, exactly as ``impbench rig record``:

* ``fast``      — fast mode (device time runs as fast as host and rig allow): sustained
  samples/s end to end (rig physics + protocol + host checks + raw log), both in one process.
* ``realtime-R`` — real-time mode at R Hz: the host must keep up without gaps.
* ``faults``    — fast mode with 1 % corrupted bytes (both ways), 0.1 % dropped and 0.1 %
  duplicated frames, 2 ms latency jitter: frames, rejections, lost samples, gap report.
* ``recovery``  — the host (``python -m hil.cli rig record``) is killed with SIGKILL mid-session;
  ``rig recover`` rebuilds the dataset; loss = samples the rig had sent before the kill that
  the recovered dataset lacks, in samples and ms.
* ``codec``     — encode + check of SAMPLE frames per second (protocol code alone).

Usage::

    python -m benchmarks.rig_link [--quick] [--out benchmarks/results/rig_link.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hil import protocol as P
from hil.link import FrameChecker
from hil.session import record, recover
from hil.virtual import Faults, VirtualRig

REPO = Path(__file__).resolve().parents[1]


def _session(directory: Path, name: str, rate: int, duration: float, watchdog_ms: int = 50
             ) -> Path:
    spec = {"session": {
        "name": name, "rig": "default", "sample_rate_hz": rate, "duration_s": duration,
        "settle_s": 0.2, "seed": 1, "perturbation": {"signal": "fgwn", "level_mm": 2.0},
        "pivot": {"shape": "sine", "center_mm": 250.0, "amplitude_mm": 25.0,
                  "frequency_hz": 1.0},
        "watchdog_ms": watchdog_ms}}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _record_case(d: Path, name: str, rate: int, duration: float, *, realtime: bool,
                 faults: Faults = Faults()) -> dict:  # noqa: B008
    path = _session(d, name, rate, duration, watchdog_ms=200 if realtime else 50)
    with VirtualRig(seed=3, realtime=realtime, faults=faults, record_sends=True) as rig:
        t0 = time.perf_counter()
        ds = record(path, rig.url, out=d / name)
        wall = time.perf_counter() - t0
    m, st = ds.meta, rig.stats
    lost_by_rig = st.damaged_samples - set(st.samples)
    return {
        "case": name, "rate_hz": rate, "samples": m["total"], "received": m["received"],
        "wall_s": round(wall, 3), "samples_per_s": round(m["received"] / wall, 1),
        "frames_out": st.frames_out, "corrupted_frames": st.corrupted_frames,
        "dropped_frames": st.dropped, "duplicated_frames": st.duplicated,
        "host_rejected": m["link"]["rejected"], "host_lost_frames": m["link"]["lost_frames"],
        "host_duplicates": m["link"]["duplicates"],
        "missing_samples": m["gaps"]["missing"], "gap_runs": len(m["gaps"]["runs"]),
        "samples_lost_by_rig": len(lost_by_rig), "faults": len(m["faults"]),
        "fault_kinds": sorted({f["name"] for f in m["faults"]}), "restarts": len(m["restarts"]),
        "bad_samples_accepted": sum(
            1 for i in range(m["total"]) if ds.arrays["valid"][i] and i not in st.samples),
    }


def _recovery_case(d: Path, rate: int) -> dict:
    path = _session(d, "killed", rate, 20.0, watchdog_ms=1000)
    rig = VirtualRig(seed=2, realtime=True, record_sends=True).start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "rig", "record", str(path),
                             "--port", rig.url, "--out", str(d / "killed"), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while len(rig.stats.sample_wall) < 2 * rate:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait(10)
    finally:
        rig.stop()
    ds = recover(d / "killed.rawlog")
    sent = [i for i, t in rig.stats.sample_wall.items() if t <= t_kill]
    lost = [i for i in sent if not ds.arrays["valid"][i]]
    return {"case": "recovery", "rate_hz": rate, "sent_before_kill": len(sent),
            "recovered": ds.meta["received"], "lost_samples": len(lost),
            "lost_ms": round(1000.0 * len(lost) / rate, 1),
            "torn_records": ds.meta["torn_records"]}


def _codec_case(n: int = 20000) -> dict:
    msgs = [P.Sample(i, 400 * i, 1234 - i, -5678 + i, 250000 + i, -(i % 255), 1)
            for i in range(n)]
    t0 = time.perf_counter()
    wires = [P.encode_frame(m, i & 0xFFFF)[:-1] for i, m in enumerate(msgs)]
    t1 = time.perf_counter()
    chk = FrameChecker()
    ok = sum(chk.check(w) is not None for w in wires)
    t2 = time.perf_counter()
    return {"case": "codec", "frames": n, "encode_per_s": round(n / (t1 - t0)),
            "check_per_s": round(ok / (t2 - t1))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter sessions")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rig_link.json"))
    args = ap.parse_args(argv)
    dur = 2.0 if args.quick else 8.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows.append(_record_case(d, "fast", 2500, dur, realtime=False))
        for rate in (1000, 2500):
            rows.append(_record_case(d, f"realtime-{rate}", rate, max(2.0, dur / 2),
                                     realtime=True))
        rows.append(_record_case(
            d, "faults", 2500, dur, realtime=False,
            faults=Faults(corrupt_rate=0.01, drop_rate=0.001, dup_rate=0.001, jitter_ms=2.0)))
        rows.append(_recovery_case(d, 2500))
    rows.append(_codec_case())
    for r in rows:
        print(" | ".join(f"{k}={v}" for k, v in r.items()))
    out = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                       "cpus": os.cpu_count(), "load": os.getloadavg()},
           "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
