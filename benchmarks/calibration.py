"""Simulated annealing vs AdamW on the same EMG-driven calibration problem (000 vs 001).

One synthetic ankle subject of the study (:mod:`bench.studies.ankle`), calibrated on one
task cycle of a perturbed trial against torque and the true joint stiffness (000:Eq.8 with
alpha = beta = 1), then scored blindly on the unseen 60-cycle trial. Both optimizers
evaluate the **same** jitted JAX forward model (rigid-tendon :class:`MuscleModel`):

* annealing (:func:`estimators.calibration.annealing.anneal`, CEINMS defaults: T0 = 20,
  r_T = 0.3, N_S = 15, N_T = 5, eps = 1e-3, N_eps = 4, <= 200 000 evaluations) with the hard
  penalty of 000:Eq.9, as CEINMS;
* AdamW (:func:`estimators.calibration.gradient.adamw_minimize`, the study's settings) with
  the smooth penalty of 001:Eq.4, one start point (the generic parameters, as annealing), and
  the same with 5 start points batched by ``vmap``.

Reported per optimizer: wall and process CPU time (jit compilation included for both; on a
shared machine the CPU time is the steadier figure), model evaluations
(annealing: forward passes; AdamW: forward + backward passes), the final 000:Eq.8 objective
with the hard penalty (the common yardstick), E_tau and E_tau+K on the calibration cycle, and
the held-out torque and stiffness nRMSE (median over the blind cycles). The speed ratio is
annealing wall time / AdamW wall time, measured in the same run (001 reports 13-26x).

Usage (from the repository root; ``-m`` keeps ``benchmarks/estimators.py`` from shadowing the
package): ``python -m benchmarks.calibration [--subject 1] [--max-evaluations 200000]
[--out benchmarks/results/calibration.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bench.metrics import cr2, nrmse
from bench.studies.ankle import (
    cut_cycles,
    draw_subjects,
    make_weighted_loss,
    simulate_subject,
    true_vector,
)
from estimators.calibration.annealing import anneal
from estimators.calibration.gradient import adamw_minimize
from estimators.calibration.objectives import CalibrationSpace, Objective
from plants.muscle.model import MuscleModel

ADAMW = {"learning_rate": 0.05, "decay_steps": 250, "decay_rate": 0.5, "weight_decay": 1e-4,
         "max_steps": 800, "patience": 100, "tol": 1e-6}


def _blind_scores(model, space, x, blind, n):
    out = model.simulate(space.unpack(jnp.asarray(x)), model.inputs(blind))
    tq = np.asarray(out["torque"])[0, :, 0]
    kk = np.asarray(out["stiffness"])[0, :, 0]
    c = tq.size // n
    ref_t = np.asarray(blind.torque)[0, : c * n, 0].reshape(c, n)[1:]
    ref_k = np.asarray(blind.stiffness)[0, : c * n, 0].reshape(c, n)[1:]
    est_t, est_k = tq[: c * n].reshape(c, n)[1:], kk[: c * n].reshape(c, n)[1:]
    return (float(np.median([nrmse(a, b) for a, b in zip(ref_t, est_t)])),
            float(np.median([nrmse(a, b) for a, b in zip(ref_k, est_k)])))


def batch_throughput(sizes: list[int], args) -> dict:
    """Calibrations per second when N calibrations run as one vmapped, jitted AdamW batch.

    The batch cycles through the 35 (alpha, beta) combinations of 000 (0:0.2:1, not both 0)
    and start points drawn inside the bounds, on one subject's calibration cycle, for a fixed
    number of steps (``--batch-steps``; plateau stopping off, so every size does the same
    work per calibration). Cold = first call, warm = a second call; both include tracing and
    compiling, because :func:`adamw_minimize` builds its jitted step per call (about 7 s on
    the 2-core CPU here, most of a single calibration). Runs on whatever JAX device is
    present.
    """
    subj = draw_subjects(args.subject, np.random.default_rng(args.seed))[-1]
    pert, _ = simulate_subject(subj, {"n_cycles": 2},
                               np.random.default_rng([args.seed, subj.index]), unperturbed=False)
    cal = cut_cycles(pert, 0, 1, 1)
    model = MuscleModel.from_ankle(pert.fs, tendon="rigid")
    space = CalibrationSpace.build(model.base_params, list(model.muscles),
                                   strength_groups=model.strength_groups)
    smooth = make_weighted_loss(model, cal, space, "smooth")
    grid = np.round(np.arange(0, 1.01, 0.2), 1)
    combos = np.array([(a, b) for a in grid for b in grid if a + b > 0])
    margin = 1e-6 * (space.upper - space.lower)
    opts = {**ADAMW, "max_steps": args.batch_steps, "patience": args.batch_steps + 1}
    rows = []
    for n in sizes:
        rng = np.random.default_rng(args.seed + n)
        starts = space.lower + margin + rng.uniform(size=(n, space.size)) * (
            space.upper - space.lower - 2 * margin)
        weights = combos[np.arange(n) % len(combos)]
        times = []
        for _ in range(2):
            t = time.perf_counter()
            adamw_minimize(smooth, starts, space.lower, space.upper, batch_args=weights, **opts)
            times.append(time.perf_counter() - t)
        rows.append({"batch": n, "steps": args.batch_steps, "cold_s": times[0],
                     "warm_s": times[1], "calibrations_per_s_warm": n / times[1],
                     "calibrations_per_s_cold": n / times[0]})
    result = {"device": str(jax.devices()[0]), "jax": jax.__version__,
              "problem": {"parameters": space.size,
                          "calibration_samples": int(cal.torque.shape[1])},
              "rows": rows}
    print(f"AdamW batches on {result['device']} ({args.batch_steps} steps per calibration)")
    print("batch | cold [s] | warm [s] | calibrations/s (warm) | calibrations/s (cold)")
    for r in rows:
        print(f"{r['batch']} | {r['cold_s']:.2f} | {r['warm_s']:.2f} | "
              f"{r['calibrations_per_s_warm']:.2f} | {r['calibrations_per_s_cold']:.2f}")
    out = Path(args.out).with_name("calibration_batch.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subject", type=int, default=1)
    ap.add_argument("--n-cycles", type=int, default=60)
    ap.add_argument("--max-evaluations", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/calibration.json")
    ap.add_argument("--batch", default=None,
                    help="comma-separated batch sizes, e.g. 1,8,64,175: report calibrations "
                         "per second of the vmapped AdamW batch instead of the comparison")
    ap.add_argument("--batch-steps", type=int, default=200,
                    help="AdamW steps per calibration in --batch mode (no early stop)")
    args = ap.parse_args(argv)
    if args.batch:
        return batch_throughput([int(b) for b in args.batch.split(",")], args)

    subj = draw_subjects(args.subject, np.random.default_rng(args.seed))[-1]
    t = time.perf_counter()
    pert, _ = simulate_subject(subj, {"n_cycles": args.n_cycles},
                               np.random.default_rng([args.seed, subj.index]), unperturbed=False)
    t_sim = time.perf_counter() - t
    n = int(pert.meta["samples_per_cycle"])
    cal, blind = cut_cycles(pert, 0, 1, 1), cut_cycles(pert, 1, 0, args.n_cycles)
    model = MuscleModel.from_ankle(pert.fs, tendon="rigid")
    space = CalibrationSpace.build(model.base_params, list(model.muscles),
                                   strength_groups=model.strength_groups)
    w = jnp.array([1.0, 1.0])
    hard = jax.jit(lambda x: make_weighted_loss(model, cal, space, "hard")(x, w))
    smooth = make_weighted_loss(model, cal, space, "smooth")
    x_true = true_vector(subj, space)
    obj = Objective(1.0, 1.0)
    margin = 1e-6 * (space.upper - space.lower)
    x0 = np.clip(space.x0, space.lower + margin, space.upper - margin)

    rows = []

    def record(name, x, wall, cpu, evals, extra):
        out = model.simulate(space.unpack(jnp.asarray(x)), model.inputs(cal))
        e = obj.errors({k: np.asarray(v) for k, v in out.items()}, np.asarray(cal.torque),
                       np.asarray(cal.stiffness))
        bt, bk = _blind_scores(model, space, x, blind, n)
        rows.append({"optimizer": name, "wall_time_s": wall, "cpu_time_s": cpu,
                     "evaluations": int(evals),
                     "objective": float(hard(jnp.asarray(x))), "E_tau": e["E_tau"],
                     "E_tau_K": e["E_tau_K"], "blind_nrmse_torque": bt,
                     "blind_nrmse_stiffness": bk, "cr2_percent": cr2(x_true, x), **extra})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t, c = time.perf_counter(), time.process_time()
        ar = anneal(lambda x: float(hard(x)), x0, space.lower, space.upper,
                    np.random.default_rng(args.seed), max_evaluations=args.max_evaluations)
        t_ann, c_ann = time.perf_counter() - t, time.process_time() - c
    record("annealing (CEINMS defaults, hard penalty)", ar.x, t_ann, c_ann, ar.evaluations,
           {"converged": ar.converged, "temperatures": ar.temperatures,
            "warnings": [str(c.message) for c in caught]})
    t, c = time.perf_counter(), time.process_time()
    r1 = adamw_minimize(smooth, x0[None], space.lower, space.upper,
                        batch_args=np.asarray(w)[None], **ADAMW)
    t_adam, c_adam = time.perf_counter() - t, time.process_time() - c
    record("AdamW, 1 start (smooth penalty)", r1.x[0], t_adam, c_adam, r1.evaluations,
           {"steps": int(r1.steps[0])})
    rng = np.random.default_rng(args.seed + 1)
    starts = np.vstack([x0, space.lower + margin + rng.uniform(size=(4, space.size))
                        * (space.upper - space.lower - 2 * margin)])
    t, c = time.perf_counter(), time.process_time()
    r5 = adamw_minimize(smooth, starts, space.lower, space.upper,
                        batch_args=np.tile(np.asarray(w), (5, 1)), **ADAMW)
    t_adam5, c_adam5 = time.perf_counter() - t, time.process_time() - c
    record("AdamW, 5 starts vmapped (best)", r5.x[r5.best], t_adam5, c_adam5, r5.evaluations,
           {"steps": r5.steps.tolist()})

    ratio = t_ann / t_adam
    result = {
        "problem": {"subject": subj.index, "calibration_samples": int(cal.torque.shape[1]),
                    "blind_cycles": args.n_cycles - 1, "parameters": space.size,
                    "objective": "000:Eq.8, alpha = beta = 1, true K_J reference",
                    "model": "rigid-tendon MuscleModel, 7 MTUs, 5 EMGs, 128 Hz"},
        "rows": rows,
        "speed_ratio_annealing_over_adamw": ratio,
        "speed_ratio_annealing_over_adamw5": t_ann / t_adam5,
        "cpu_ratio_annealing_over_adamw": c_ann / c_adam,
        "cpu_ratio_annealing_over_adamw5": c_ann / c_adam5,
        "simulation_s": t_sim,
        "adamw_settings": ADAMW,
        "environment": {"jax": jax.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": jax.device_count()},
    }
    hd = ("optimizer", "wall [s]", "cpu [s]", "evals", "objective", "E_tau", "E_tau+K",
          "blind nRMSE tau", "blind nRMSE K", "Cr2 %")
    print(" | ".join(hd))
    for r in rows:
        print(" | ".join([r["optimizer"], f"{r['wall_time_s']:.1f}", f"{r['cpu_time_s']:.1f}",
                          str(r["evaluations"]),
                          f"{r['objective']:.4g}", f"{r['E_tau']:.3f}", f"{r['E_tau_K']:.3f}",
                          f"{r['blind_nrmse_torque']:.3f}", f"{r['blind_nrmse_stiffness']:.3f}",
                          f"{r['cr2_percent']:.1f}"]))
    print(f"speed ratio annealing / AdamW (1 start): {ratio:.1f}x; "
          f"annealing / AdamW (5 starts): {t_ann / t_adam5:.1f}x (001: 13-26x); CPU-time "
          f"ratios {c_ann / c_adam:.1f}x and {c_ann / c_adam5:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
