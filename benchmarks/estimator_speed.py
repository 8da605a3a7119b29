"""Speed and memory of the impedance estimators versus record length.

For each estimator name and duration D (s), one cell builds the thesis simulation baseline
(004 Sec. III-A and Table II: 1 Hz square-wave K 50-150 Nm/rad, B = 2 Nms/rad,
I = 0.02 kg m^2, 0 dB SNR, 100 Hz, R = D realizations of N = 100 samples) with
``estimators.testing.make_impedance_data`` and runs the estimator with its default
hyper-parameters. Every cell runs in its own Python process, so one method's memory cannot
spill into another's and a cell that exhausts memory or time fails alone (the thesis's "-"
for LPV and KBR at >= 200 s, 004 Table III). Per cell:

* ``wall_s`` — wall time of the first ``estimate`` call (includes JIT compilation for JAX);
* ``cpu_s`` — CPU time of that call, all threads of the process (``time.process_time``),
  less sensitive than ``wall_s`` to other load on a shared machine;
* ``peak_traced_mb`` — peak of Python/numpy allocations (``tracemalloc``) during a second call;
* ``maxrss_delta_mb`` — growth of the process's peak resident set during the first call
  (``resource.getrusage``), which also sees allocations ``tracemalloc`` misses (BLAS, XLA);
* ``error_pct`` — stiffness error (004:Eq.6-7) as a sanity check, and the NaN share.

Usage::

    python -m benchmarks.estimator_speed --methods esm,mesm,frf --durations 25,50 \\
        --out benchmarks/results/estimator_speed.json

Prints a table and writes JSON (a list of cell records plus the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_METHODS = ("eirf", "sds", "birf", "esm", "mesm", "frf", "irf", "lpv", "kbr")
DEFAULT_DURATIONS = (25, 50, 100, 200, 400)
FS = 100.0
N = 100


def _resolve(name: str) -> type:
    """Registry first (entry points), then the built-in module path."""
    from bench.errors import RegistryError
    from bench.registry import resolve

    try:
        return resolve("estimators", name)
    except RegistryError as exc:
        direct = {
            "eirf": "estimators.impedance.eirf:EIRF", "sds": "estimators.impedance.sds:SDS",
            "birf": "estimators.impedance.birf:BIRF", "esm": "estimators.impedance.esm:ESM",
            "mesm": "estimators.impedance.mesm:MESM",
            "frf": "estimators.impedance.frf:FRFEstimator",
            "irf": "estimators.impedance.irf:TimeInvariantIRF",
            "lpv": "estimators.impedance.lpv:LPV", "kbr": "estimators.impedance.kbr:KBR",
        }.get(name)
        if direct is None:
            raise
        try:
            return resolve("estimators", direct)
        except RegistryError:
            raise exc from None


def _worker(name: str, duration: int, seed: int, snr_db: float) -> dict:
    """Run one cell in this process and return its record."""
    import resource
    import tracemalloc

    import numpy as np

    from bench.metrics import nan_share, stiffness_error
    from estimators.testing import make_impedance_data

    cls = _resolve(name)
    K_t = np.where(np.arange(N) / FS < 0.5, 150.0, 50.0)  # 004 Sec. III-A, Fig. 3
    data = make_impedance_data(
        B=2.0, I=0.02, R=int(duration), N=N, fs=FS, seed=seed, snr_db=snr_db, K_t=K_t
    )
    est = cls()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    out = est.estimate(data)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    est.estimate(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    to_mb = 1.0 / 2**20 if sys.platform == "darwin" else 1.0 / 1024.0  # bytes vs KiB
    return {
        "method": name, "duration_s": int(duration), "R": int(duration), "N": N,
        "status": "ok", "wall_s": wall, "cpu_s": cpu, "peak_traced_mb": peak / 2**20,
        "maxrss_delta_mb": (rss1 - rss0) * to_mb,
        "error_pct": stiffness_error(K_t, out.K), "nan_share": nan_share(out.K),
        "reason": None,
    }


def _run_cell(name: str, duration: int, seed: int, snr_db: float, timeout: float) -> dict:
    base = {"method": name, "duration_s": int(duration), "R": int(duration), "N": N,
            "wall_s": None, "cpu_s": None, "peak_traced_mb": None, "maxrss_delta_mb": None,
            "error_pct": None, "nan_share": None}
    cmd = [sys.executable, __file__, "--worker", name, str(duration), str(seed), str(snr_db)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get(
        "PYTHONPATH", "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "reason": f"exceeded {timeout:g} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        status = "unavailable" if "RegistryError" in last else "failed"
        if proc.returncode < 0:
            last = f"killed by signal {-proc.returncode} (out of memory?)"
        return {**base, "status": status, "reason": last[:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated estimator names (registry) or module:Class")
    p.add_argument("--durations", default=",".join(map(str, DEFAULT_DURATIONS)),
                   help="comma-separated record lengths, s (R = duration realizations of 1 s)")
    p.add_argument("--snr-db", type=float, default=0.0, help="output SNR, dB (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="per cell, s")
    p.add_argument("--out", default="benchmarks/results/estimator_speed.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the other methods' cells already in --out, replace these")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        name, dur, seed, snr = a.worker
        print(json.dumps(_worker(name, int(dur), int(seed), float(snr))))
        return 0
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    durations = [int(d) for d in a.durations.split(",") if d.strip()]
    if any(d < 1 for d in durations):
        p.error("--durations must be positive integers (seconds)")
    records = []
    head = (f"{'method':<8} {'dur s':>6} {'status':<11} {'wall s':>9} {'cpu s':>8} "
            f"{'traced MB':>10} {'dRSS MB':>9} {'err %':>7} {'NaN':>5}")
    print(head)
    print("-" * len(head))
    for m in methods:
        for d in durations:
            r = _run_cell(m, d, a.seed, a.snr_db, a.timeout)
            records.append(r)
            print(f"{m:<8} {d:>6} {r['status']:<11} {_fmt(r['wall_s'], '9.3f')} "
                  f"{_fmt(r.get('cpu_s'), '8.3f')} "
                  f"{_fmt(r['peak_traced_mb'], '10.1f')} {_fmt(r['maxrss_delta_mb'], '9.1f')} "
                  f"{_fmt(r['error_pct'], '7.1f')} {_fmt(r['nan_share'], '5.2f')}"
                  + (f"  {r['reason']}" if r.get("reason") else ""), flush=True)
            if r["status"] == "unavailable":
                break  # the other durations would fail the same way
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.merge and out.exists():
        new = {(r["method"], r["duration_s"]) for r in records}
        old = [r for r in json.loads(out.read_text()).get("cells", [])
               if (r["method"], r["duration_s"]) not in new]
        records = old + records
    out.write_text(json.dumps({
        "settings": {"fs_hz": FS, "N": N, "snr_db": a.snr_db, "seed": a.seed,
                     "plant": "closed-form MSD, square-wave K 50-150, B=2, I=0.02",
                     "python": platform.python_version(), "machine": platform.machine(),
                     "cpus": os.cpu_count()},
        "cells": records,
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
