"""Speed of the lever-rig plant (004 Sec. IV: 2500 Hz records of 24-400 s, App. B mapping).

Usage::

    python benchmarks/lever.py [--out PATH] [--repeats 3] [--quick]

Prints a table and writes JSON (default: ``benchmarks/results/lever.json``):

* ``step``: one real-time ``LeverRig.step`` at 1/2500 s plus a ``PivotPID.update`` every 5th
  step (the virtual rig's inner loop), microseconds per step;
* ``scan``: the compiled batch path ``simulate_record`` (jax.lax.scan), first call (includes
  compilation) and best warm call, samples per second;
* ``mapping``: the App. B mapping (5 trials x 60 s at 2500 Hz) per perturbation;
* ``plant``: ``LeverPlant(...).simulate`` for each experimental time of Table IV (mapping
  cached), whole pipeline (perturbation, scan, decimation, cutting, truth).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from plants.lever import LeverPlant, LeverRig, PivotPID, load_rig, simulate_record
from plants.lever.mapping import true_stiffness_mapping
from plants.lever.plant import cached_mapping


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _step_loop(rig, n: int) -> None:
    lr = LeverRig(rig)
    r = lr.reset(np.random.default_rng(0), 0.25)
    pid = PivotPID(rig.controller)
    pid.reset(r.pivot_counts)
    duty, sp = 0.0, r.pivot_counts + 20
    dt = 1.0 / rig.sampling.fs
    for k in range(n):
        if k % rig.control_divider == 0:
            duty = pid.update(sp, r.pivot_counts) / pid.pwm_max
        r = lr.step(dt, duty, 0.002 * np.sin(k * 0.01))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "lever.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="24 and 100 s only, FGWN only")
    args = ap.parse_args(argv)
    rig = load_rig()
    fs = rig.sampling.fs
    result: dict = {"machine": platform.platform(), "python": platform.python_version(),
                    "rig": rig.name, "fs": fs}

    n_step = 5000
    t = _best(lambda: _step_loop(rig, n_step), args.repeats)
    result["step"] = {"us_per_step": 1e6 * t / n_step,
                      "realtime_factor_at_2500Hz": (n_step / fs) / t}

    n = int(60 * fs)
    x = np.zeros(n)
    p = np.full(n, 0.25)
    t0 = time.perf_counter()
    simulate_record(rig, x, p, np.random.default_rng(0))
    first = time.perf_counter() - t0
    warm = _best(lambda: simulate_record(rig, x, p, np.random.default_rng(0)), args.repeats)
    result["scan"] = {"seconds_simulated": 60.0, "first_call_s": first, "warm_s": warm,
                      "samples_per_s": n / warm}

    kinds = ("fgwn",) if args.quick else ("fgwn", "prbs")
    result["mapping"] = {}
    for kind in kinds:
        t0 = time.perf_counter()
        true_stiffness_mapping(rig, kind)
        result["mapping"][kind] = time.perf_counter() - t0

    durations = (24.0, 100.0) if args.quick else (24.0, 50.0, 100.0, 200.0, 400.0)
    rows = []
    for kind in kinds:
        cached_mapping(rig, kind)
        for duration in durations:
            plant = LeverPlant(perturbation=kind, schedule="sine_1", duration=duration)
            t0 = time.perf_counter()
            plant.simulate(np.random.default_rng(0))
            first = time.perf_counter() - t0
            best = _best(lambda pl=plant: pl.simulate(np.random.default_rng(0)),
                         max(1, args.repeats - 1))
            rows.append({"perturbation": kind, "duration_s": duration, "first_s": first,
                         "warm_s": best})
    result["plant"] = rows

    print(f"step: {result['step']['us_per_step']:.1f} us/step "
          f"({result['step']['realtime_factor_at_2500Hz']:.1f}x real time at 2500 Hz)")
    sc = result["scan"]
    print(f"scan 60 s: first {sc['first_call_s']:.2f} s, warm {sc['warm_s']:.2f} s "
          f"({sc['samples_per_s'] / 1e6:.2f} M samples/s)")
    for kind, s in result["mapping"].items():
        print(f"mapping {kind}: {s:.2f} s (5 x 60 s trials)")
    print(f"{'perturbation':>12} {'T [s]':>6} {'first [s]':>10} {'warm [s]':>9}")
    for r in rows:
        print(f"{r['perturbation']:>12} {r['duration_s']:>6.0f} {r['first_s']:>10.2f} "
              f"{r['warm_s']:>9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
