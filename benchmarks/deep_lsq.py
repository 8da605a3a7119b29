"""Wall time per epoch and per run of the deep-muscle least-squares identification (002).

002 Sec. IV-C: about 0.77 s per epoch and 2.5 h per run (10K + 2K epochs) on an Intel Core
i9-14900KS. This script simulates one arm record with its initial guesses
(:class:`plants.arm.identification.ArmIdentificationPlant`), times
``--epochs`` epochs of M1 and M2 (:class:`estimators.calibration.deep_lsq.
DeepMuscleIdentifier`) for one initial guess (:meth:`~DeepMuscleIdentifier.fit`) and for
``--guesses`` guesses run together (:meth:`~DeepMuscleIdentifier.fit_many`, one vmapped
computation), extrapolates a 12K-epoch run per guess, prints a table, writes
``benchmarks/results/deep_lsq.json`` and adds the rows under ``"deep_lsq"`` to
``benchmarks/results/calibration.json`` (the output of ``benchmarks/calibration.py``).

``epoch_s`` is the wall time of one epoch per guess (batch time / guesses), compilation
excluded; ``overhead_s`` is the rest of the wall time (precomputation, compilation).

Usage (from the repository root; ``-m`` keeps ``benchmarks/estimators.py`` from shadowing the
package): ``python -m benchmarks.deep_lsq [--movement reach] [--duration 5] [--epochs 200]``
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

from estimators.calibration.deep_lsq import DeepMuscleIdentifier, parameter_layout
from plants.arm.identification import ArmIdentificationPlant

PAPER_EPOCH_S = 0.77  # 002 Sec. IV-C
PAPER_EPOCHS = 12_000  # 10K + 2K


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--movement", default="reach", help="reach, flexion_pronation or both")
    ap.add_argument("--duration", type=float, default=5.0, help="s per movement")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--guesses", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/deep_lsq.json")
    ap.add_argument("--calibration-json", default="benchmarks/results/calibration.json")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    unit = ArmIdentificationPlant(movement=a.movement, duration=a.duration,
                                  n_guesses=a.guesses).simulate(np.random.default_rng(0))
    t_sim = time.perf_counter() - t
    model, data = unit.model, unit.sets[0]
    rows = []
    for method in ("M1", "M2"):
        names, _ = parameter_layout(model.dynamics, method)
        P0 = model.initial_guesses[:, [model.guess_names.index(n) for n in names]]
        for G in sorted({1, a.guesses}):
            idf = DeepMuscleIdentifier(method=method, epochs=a.epochs, slack_epochs=0,
                                       record_every=max(1, a.epochs // 4))
            t, c = time.perf_counter(), time.process_time()
            res = (idf.fit(model, data, P0[0]) if G == 1
                   else idf.fit_many(model, data, P0[:G])[0])
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            ep = res.epoch_time  # per guess
            rows.append({
                "method": method, "guesses": G,
                "samples": int(data.excitation.shape[0] * data.excitation.shape[1]),
                "parameters": len(names), "epochs": a.epochs, "wall_s": wall, "cpu_s": cpu,
                "epoch_s": ep, "batch_epoch_s": res.info["batch_epoch_time"],
                "overhead_s": wall - res.info["batch_epoch_time"] * a.epochs,
                "run_12k_h": ep * PAPER_EPOCHS / 3600.0, "paper_epoch_s": PAPER_EPOCH_S,
                "speedup_vs_paper": PAPER_EPOCH_S / ep,
            })
    print("method | guesses | samples | params | s/epoch/guess | 002 s/epoch | "
          "12K-epoch run/guess [min] | 002 [h]")
    for r in rows:
        print(f"{r['method']} | {r['guesses']} | {r['samples']} | {r['parameters']} | "
              f"{r['epoch_s']:.4f} | {PAPER_EPOCH_S} | {60 * r['run_12k_h']:.1f} | 2.5")
    result = {"benchmark": "deep_lsq", "movement": a.movement,
              "duration_s_per_movement": a.duration, "simulation_s": t_sim, "rows": rows,
              "environment": {"jax": jax.__version__, "python": platform.python_version(),
                              "machine": platform.machine(),
                              "cpus": os.cpu_count()}}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    cal = Path(a.calibration_json)
    if cal.exists():
        d = json.loads(cal.read_text())
        d["deep_lsq"] = rows
        cal.write_text(json.dumps(d, indent=1))
    print(f"wrote {out}" + (f" and rows in {cal}" if cal.exists() else ""))
    return result


if __name__ == "__main__":
    main()
