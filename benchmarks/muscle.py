"""Forward-model throughput and gradient cost of the differentiable Hill-type model.

For the 7-MTU ankle (:mod:`plants.ankle` parameters and kinematics) driven by random smooth
excitations, for each tendon model (rigid, equilibrium, Rosenbrock) this measures:

* ``fwd_muscle_samples_per_s`` - muscle-samples per second of ``simulate_torque`` (S trials x
  T samples x 7 MTUs) jitted (compile excluded, best of ``--repeats``);
* ``grad_over_fwd`` - time of ``jax.grad`` of a mean-squared torque loss with respect to the
  whole parameter pytree, divided by the forward time (both jitted);
* ``compile_s`` - first-call time of the jitted forward (compile + run);
* the same without jit (``jax.disable_jit()``: op-by-op, scans run as Python loops) on a short
  record (``--eager-T`` samples, one trial), reported as muscle-samples per second;
* for the Rosenbrock tendon, the ``lax.scan`` unroll factors in ``--unrolls``.

Usage::

    python benchmarks/muscle.py [--T 2048] [--trials 8] [--repeats 3] [--out PATH] [--quick]

Prints a table and writes JSON (default ``benchmarks/results/muscle.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import plants.muscle as pm
from plants.ankle import EMG_MAP, default_ankle_kinematics, default_ankle_params

M = 7


def _inputs(S: int, T: int, fs: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fs
    th = 0.15 * np.sin(2 * np.pi * 0.6 * t)[None] + 0.02 * rng.standard_normal((S, 1))
    phase = rng.uniform(0, 6, (S, 1, 5))
    exc = 0.05 + 0.1 * (1 + np.sin(2 * np.pi * 0.6 * t[None, :, None] + phase))
    kin = default_ankle_kinematics()
    return (
        jnp.asarray(exc),
        kin.lmt(jnp.asarray(th)),
        kin.moment_arm(jnp.asarray(th)),
        kin.dmoment_arm(jnp.asarray(th)),
    )


def _best(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def _make(params, fs, tendon, unroll):
    def one(p, e, l, r, d):
        return pm.simulate_torque(
            p, e, l, r, fs, dmoment_arm=d, emg_map=EMG_MAP, tendon=tendon, unroll=unroll
        ).torque

    fwd = jax.vmap(one, in_axes=(None, 0, 0, 0, 0))

    def loss(p, e, l, r, d):
        return jnp.mean(fwd(p, e, l, r, d) ** 2)

    return fwd, jax.grad(loss)


def run(
    T: int, S: int, repeats: int, eager_T: int, unrolls: tuple[int, ...], on_row=None
) -> list[dict]:
    fs = 128.0
    params = default_ankle_params(fs)
    e, l, r, d = _inputs(S, T, fs)
    rows = []
    for tendon in ("rigid", "equilibrium", "rosenbrock"):
        for unroll in unrolls if tendon == "rosenbrock" else (1,):
            fwd, grad = _make(params, fs, tendon, unroll)
            fwd_j, grad_j = jax.jit(fwd), jax.jit(grad)
            t0 = time.perf_counter()
            jax.block_until_ready(fwd_j(params, e, l, r, d))
            compile_s = time.perf_counter() - t0
            jax.block_until_ready(grad_j(params, e, l, r, d))
            t_fwd = _best(lambda fwd_j=fwd_j: fwd_j(params, e, l, r, d), repeats)
            t_grad = _best(lambda grad_j=grad_j: grad_j(params, e, l, r, d), repeats)
            row = {
                "tendon": tendon,
                "unroll": unroll,
                "S": S,
                "T": T,
                "compile_s": compile_s,
                "fwd_s": t_fwd,
                "fwd_muscle_samples_per_s": S * T * M / t_fwd,
                "grad_s": t_grad,
                "grad_over_fwd": t_grad / t_fwd,
            }
            if unroll == unrolls[0]:
                es, ls, rs, ds = (x[:1, :eager_T] for x in (e, l, r, d))
                args = (params, es, ls, rs, ds)
                with jax.disable_jit():
                    t_eager = _best(partial(fwd, *args), 1)
                    t_eager_g = _best(partial(grad, *args), 1)
                row.update(
                    eager_T=eager_T,
                    eager_fwd_muscle_samples_per_s=eager_T * M / t_eager,
                    eager_grad_over_fwd=t_eager_g / t_eager,
                )
            rows.append(row)
            print(f"  done {tendon} unroll={unroll}", flush=True)
            if on_row is not None:
                on_row(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=2048, help="samples per trial")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager-T", type=int, default=32)
    ap.add_argument("--unrolls", default="1,4")
    ap.add_argument("--quick", action="store_true", help="T=256, 2 trials, 1 repeat")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "muscle.json"
    )
    a = ap.parse_args(argv)
    if a.quick:
        a.T, a.trials, a.repeats, a.eager_T = 256, 2, 1, 8
    unrolls = tuple(int(u) for u in a.unrolls.split(","))
    settings = {"T": a.T, "trials": a.trials, "repeats": a.repeats, "eager_T": a.eager_T,
                "unrolls": list(unrolls), "fs": 128.0}
    env = {"jax": jax.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "devices": [str(dv) for dv in jax.devices()]}
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows):  # written after every row, so a long run keeps what it measured
        a.out.write_text(json.dumps({"settings": settings, "env": env, "rows": rows}, indent=2))

    rows = run(a.T, a.trials, a.repeats, a.eager_T, unrolls, on_row=save)
    hdr = (f"{'tendon':<12}{'unroll':>6}{'compile s':>10}{'fwd Msamp/s':>12}"
           f"{'grad/fwd':>9}{'eager samp/s':>14}{'eager g/f':>10}")
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, S={a.trials} trials x "
          f"T={a.T} samples x {M} MTUs")
    print(hdr)
    for row in rows:
        eag = row.get("eager_fwd_muscle_samples_per_s")
        eg = row.get("eager_grad_over_fwd")
        print(
            f"{row['tendon']:<12}{row['unroll']:>6}{row['compile_s']:>10.2f}"
            f"{row['fwd_muscle_samples_per_s'] / 1e6:>12.3f}{row['grad_over_fwd']:>9.2f}"
            + (f"{eag:>14.2f}{eg:>10.2f}" if eag is not None else f"{'':>14}{'':>10}")
        )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
