"""Throughput of the synthetic 16-muscle arm simulation (:mod:`plants.arm.simulate`).

For each movement and each record length this measures, after a warm-up call of the same shape
(so JIT compilation is excluded; the warm-up time is reported as ``first_call_s``):

* ``wall_s`` - best of ``--repeats`` calls of :func:`plants.arm.simulate_arm`;
* ``sim_s_per_wall_s`` - simulated seconds per wall-clock second (the issue's closing number);
* ``design_s`` - of that, the static optimization that designs the EMG (scipy NNLS per sample);
* ``integrate_s`` - the rest (EMG chain, RK4 forward dynamics in ``lax.scan``, recording);
* ``sim_s_per_cpu_s`` - simulated seconds per second of process CPU time (all threads), a
  figure less sensitive to other jobs on a shared machine.

Usage::

    python benchmarks/arm.py [--durations 5 20 60] [--substeps 10] [--repeats 2] [--out PATH]

Prints a table and writes JSON (default ``benchmarks/results/arm.json``). The machine's load
average is recorded with the numbers: on a shared machine they scale with the CPU share.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from plants.arm import simulate as sim


def _timed_run(movement: str, duration: float, substeps: int, seed: int) -> dict[str, float]:
    design_t = []
    orig = sim.design_activations

    def timed_design(*args, **kwargs):
        t0 = time.perf_counter()
        out = orig(*args, **kwargs)
        design_t.append(time.perf_counter() - t0)
        return out

    sim.design_activations = timed_design
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        tr = sim.simulate_arm(np.random.default_rng(seed), movement=movement,
                              duration=duration, substeps=substeps)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        sim.design_activations = orig
    return {"wall_s": wall, "cpu_s": cpu, "design_s": design_t[0],
            "q_max_abs": float(np.abs(tr.q).max())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--durations", type=float, nargs="+", default=[5.0, 20.0, 60.0])
    ap.add_argument("--substeps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "arm.json")
    args = ap.parse_args(argv)

    rows = []
    for movement in sim.MOVEMENTS:
        for duration in args.durations:
            t0 = time.perf_counter()
            sim.simulate_arm(np.random.default_rng(0), movement=movement, duration=duration,
                             substeps=args.substeps)
            first = time.perf_counter() - t0
            runs = [_timed_run(movement, duration, args.substeps, seed)
                    for seed in range(1, args.repeats + 1)]
            best = min(runs, key=lambda r: r["wall_s"])
            rows.append({
                "movement": movement, "duration_s": duration, "substeps": args.substeps,
                "first_call_s": first, "wall_s": best["wall_s"],
                "design_s": best["design_s"], "integrate_s": best["wall_s"] - best["design_s"],
                "sim_s_per_wall_s": duration / best["wall_s"],
                "cpu_s": best["cpu_s"], "sim_s_per_cpu_s": duration / best["cpu_s"],
            })
            r = rows[-1]
            print(f"{movement:18s} {duration:6.1f} s  first {first:7.2f} s  wall {r['wall_s']:6.2f}"
                  f" s  (design {r['design_s']:5.2f}, integrate {r['integrate_s']:5.2f})  "
                  f"{r['sim_s_per_wall_s']:6.2f} sim-s/wall-s  {r['sim_s_per_cpu_s']:6.2f} "
                  "sim-s/cpu-s", flush=True)
    result = {
        "benchmark": "arm",
        "fs_hz": 100.0,
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
