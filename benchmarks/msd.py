"""Speed and memory of the thesis MSD plant (004 Sec. III-B: 1 kHz fixed step, up to 400 s).

Usage::

    python benchmarks/msd.py [--out PATH] [--repeats 3] [--quick]

Prints a table and writes JSON (default: ``benchmarks/msd.json`` next to this script).
Times are the best of ``--repeats`` runs of ``MSDPlant(...).simulate(rng)`` (whole pipeline:
perturbation, loop, noise, decimation, cutting) and of the loop integration alone
(``closed_loop_response``); peak memory is measured in a separate run with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bench.signals import perturbation
from plants.msd import MSDPlant, closed_loop_response


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="25 and 400 s only, FGWN only")
    args = ap.parse_args(argv)

    durations = (25.0, 400.0) if args.quick else (25.0, 50.0, 100.0, 200.0, 400.0)
    kinds = ("fgwn",) if args.quick else ("fgwn", "prbs", "multisine")
    rows = []
    for kind in kinds:
        for oversample in (1, 4):
            for duration in durations:
                if oversample > 1 and duration not in (50.0, 400.0):
                    continue
                plant = MSDPlant(perturbation=kind, duration=duration, variation="KB",
                                 oversample=oversample)
                sec = _best(lambda p=plant: p.simulate(np.random.default_rng(0)), args.repeats)
                mib = _peak_mib(lambda p=plant: p.simulate(np.random.default_rng(0)))
                rows.append({"what": "simulate", "perturbation": kind, "oversample": oversample,
                             "duration_s": duration, "seconds": sec, "peak_mib": mib})
    # the loop integration alone, 400 s at 1 kHz, time-varying K and B
    n = 400_000
    t = np.arange(n) / 1000.0
    K = 100.0 + 50.0 * np.sign(np.sin(2 * np.pi * t))
    B = 2.2 + np.sin(2 * np.pi * t)
    u = perturbation("fgwn", n, 1000.0, np.random.default_rng(0), std=0.0089)

    def loop() -> None:
        closed_loop_response(u, K, B, inertia=0.02, Kc=20000.0, fs=1000.0)

    rows.append({"what": "closed_loop_response", "perturbation": "fgwn", "oversample": 1,
                 "duration_s": 400.0, "seconds": _best(loop, args.repeats),
                 "peak_mib": _peak_mib(loop)})

    print(f"{'what':<22}{'signal':<11}{'L':>3}{'duration s':>12}{'time s':>10}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['what']:<22}{r['perturbation']:<11}{r['oversample']:>3}"
              f"{r['duration_s']:>12.0f}{r['seconds']:>10.3f}{r['peak_mib']:>10.1f}")
    result = {
        "benchmark": "msd",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
