"""Compiled annealing vs AdamW vs Levenberg-Marquardt on the same EMG-driven calibrations.

Issue 21: a second-order least-squares calibrator must be >= 26x faster than *our compiled*
simulated annealing at equal or better held-out torque nRMSE, with its stop rule fixed on
subjects other than the reported ones.

Problems. Synthetic ankle subjects of the study (:mod:`plants.ankle_subject`): the model is
calibrated on one task cycle (213 samples) of a perturbed trial against torque and the true
joint stiffness (000:Eq.8, alpha = beta = 1; 26 parameters; 426 fit rows + 2982 range-penalty
rows) and scored blindly on the 59 unseen cycles of the other trial (median per-cycle torque
nRMSE). All three optimizers evaluate the same jitted JAX forward model (rigid tendon):

* annealing (:func:`~estimators.calibration.annealing.anneal`, CEINMS's defaults, each
  temperature stage one XLA loop) with the hard penalty of 000:Eq.9, as CEINMS, from the
  generic parameters, three seeds per subject: their median wall time and median held-out
  nRMSE are the reference of that subject;
* AdamW (:func:`~estimators.calibration.gradient.adamw_minimize`, learning rate 0.1 halving
  once over the run) with the smooth penalty of 001:Eq.4, fixed step budgets;
* Levenberg-Marquardt (:func:`~estimators.calibration.least_squares.levenberg_marquardt`)
  with the smooth penalty, stop rules ``ftol`` x starts.

Tuning, reporting, confirming. Subjects 6-10 of the generator (``--tuning``) choose each
method's setting; subjects 1-5 (``--subjects``) are reported with every candidate listed;
subjects 11-15 (``--confirm``) are run only at the chosen settings. The rule: among a method's
candidates, the cheapest (fewest Jacobians, resp. steps, median over the tuning subjects)
whose median held-out torque nRMSE difference to annealing is <= 0 *and* that is <= 0 on at
least ``--min-better`` tuning subjects. History, kept in the output: the rule declared first
asked for 4 of 5 (``--first-rule-min-better``); it chose ``ftol = 1e-2``, which on the reported
subjects came out +0.0020 (2 of 5 at or below annealing), since single-subject differences
(+-0.005) are the size of annealing's own seed-to-seed spread. The rule now asks for every
tuning subject; as it was revised after subjects 1-5 had been seen, the fresh subjects 11-15
confirm it. Both rules' choices are reported on all three sets.

Timing. Wall and process-CPU time of the optimizer call. LM and AdamW: median of
``--repeats`` calls of the same computation; annealing: median over its three seeds. The
machine is shared, so every ratio is taken inside one run. Without compile: warm calls (the
executables compiled by an earlier call in this process). With compile: (a) the first call
of each method in this process, on reported subject 1, in a fresh persistent cache; (b) the
same first calls in a second process that finds the executables in JAX's persistent
compilation cache (the one the CLI uses, :mod:`bench.jaxcache`; here a temporary directory);
(c) the whole reported run, compile included: (annealing compile + sum of annealing times) /
(method compile + sum of method times).

Costs. The compute time per evaluation of the loss, its gradient, the residual vector
(assembled by ``dynamic_update_slice`` and by ``jnp.concatenate``), the Jacobian and the
normal equations (all rows and fit rows only), each in a compiled loop.

Identifiability. For every reported subject, LM calibrations with torque only (alpha = 1,
beta = 0) and torque + stiffness (1, 1), and :func:`~estimators.calibration.
identifiability.assess` of each: condition number of the scaled Jacobian, rank, poorly
determined parameters, most correlated pair.

Usage (from the repository root; ``-m`` keeps ``benchmarks/estimators.py`` from shadowing the
package): ``python -m benchmarks.calibration [--subjects 1,2,3,4,5] [--tuning 6,7,8,9,10]
[--confirm 11,12,13,14,15] [--repeats 3] [--out benchmarks/results/calibration.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.metrics import cr2, nrmse
from bench.types import TrialWindow
from estimators.calibration._problem import ModelLoss, WeightedModelLoss
from estimators.calibration.annealing import anneal
from estimators.calibration.gradient import adamw_minimize
from estimators.calibration.identifiability import assess
from estimators.calibration.least_squares import levenberg_marquardt
from estimators.calibration.objectives import CalibrationSpace, Objective, assemble
from estimators.calibration.task import cut_windows, true_vector
from plants.ankle import AnklePlant
from plants.ankle_subject import draw_subject
from plants.muscle import params_to_dict
from plants.muscle.model import MuscleModel

#: AdamW settings; ``decay_steps`` is each step budget (the learning rate halves once).
ADAMW = {"learning_rate": 0.1, "decay_rate": 0.5, "weight_decay": 1e-4, "tol": 1e-6}
ADAMW_BUDGETS = (200, 400, 800, 1500, 3000)
#: Levenberg-Marquardt candidates: relative-decrease stop x number of starts.
LM_FTOL = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4)
LM_STARTS = (1, 2)
LM_FIXED = {"max_iterations": 50, "max_tries": 12, "damping": 1e-3, "batch_size": 1}
W11 = np.array([1.0, 1.0])


class Setup:
    """Model, parameter space and the three losses shared by every subject."""

    def __init__(self) -> None:
        self.model = MuscleModel.from_ankle(128.0, tendon="rigid")
        self.space = CalibrationSpace.build(self.model.base_params, list(self.model.muscles),
                                            strength_groups=self.model.strength_groups)
        self.smooth = WeightedModelLoss(self.model, self.space,
                                        Objective(1.0, 1.0, penalty="smooth"))
        self.hard = ModelLoss(self.model, self.space, Objective(1.0, 1.0, penalty="hard"))
        self.x0 = self.space.start_points(self.space.x0, 1, None)[0]
        self.hard_at = jax.jit(lambda x, d: self.hard(x, d))
        self.smooth_at = jax.jit(lambda x, d: self.smooth(x, jnp.asarray(W11), d))


def draw_subjects(n: int, rng: np.random.Generator) -> dict[int, dict]:
    """Subjects 1..n drawn in turn from one generator (the same draws as the study's plant,
    :func:`plants.ankle_subject.draw_subject`): index -> true parameters."""
    out = {}
    for i in range(1, n + 1):
        params, _ = draw_subject(rng, fs=128.0)
        out[i] = {"index": i, "params": params}
    return out


def make_problem(setup: Setup, subj: dict, args) -> dict:
    """One subject: calibration cycle, blind trial, prepared arrays, truth."""
    t = time.perf_counter()
    pert = AnklePlant(n_cycles=args.n_cycles, n_trials=2, perturbed=True).simulate_with(
        np.random.default_rng([args.seed, subj["index"]]), subj["params"])
    n = int(pert.meta["samples_per_cycle"])
    cal = cut_windows((pert,), (TrialWindow(0, 0, n, 2 * n),))
    truth = {k: np.asarray(v) for k, v in params_to_dict(subj["params"]).items()}
    return {"subject": subj["index"], "simulation_s": time.perf_counter() - t,
            "n": n, "cal": cal, "blind": cut_windows((pert,), (TrialWindow(0, 1, 0,
                                                                         args.n_cycles * n),)),
            "data": setup.smooth.prepare(cal), "x_true": true_vector(setup.space, truth)}


def blind_scores(setup: Setup, x: np.ndarray, P: dict) -> tuple[float, float]:
    """Median per-cycle torque and stiffness nRMSE on the blind trial (first cycle dropped)."""
    m, sp, blind, n = setup.model, setup.space, P["blind"], P["n"]
    out = m.simulate(sp.unpack(jnp.asarray(x)), m.inputs(blind))
    tq, kk = np.asarray(out["torque"])[0, :, 0], np.asarray(out["stiffness"])[0, :, 0]
    c = tq.size // n

    def cyc(a):
        return np.asarray(a)[: c * n].reshape(c, n)[1:]

    rt, rk = cyc(np.asarray(blind.torque)[0, :, 0]), cyc(np.asarray(blind.stiffness)[0, :, 0])
    return (float(np.median([nrmse(a, b) for a, b in zip(rt, cyc(tq))])),
            float(np.median([nrmse(a, b) for a, b in zip(rk, cyc(kk))])))


def score(setup: Setup, P: dict, x: np.ndarray, **extra: Any) -> dict:
    bt, bk = blind_scores(setup, x, P)
    d = P["data"]
    return {"subject": P["subject"], **extra,
            "objective_hard": float(setup.hard_at(jnp.asarray(x), d)),
            "objective_smooth": float(setup.smooth_at(jnp.asarray(x), d)),
            "blind_nrmse_torque": bt, "blind_nrmse_stiffness": bk,
            "cr2_percent": cr2(P["x_true"], x), "x": np.asarray(x).tolist()}


_WARM: set = set()


def timed(f, repeats: int, key: Any = None) -> tuple[Any, float, float]:
    """Result of the last call and the median wall and CPU time of ``repeats`` calls; a
    ``key`` not seen before (a new executable: another number of starts) gets one untimed
    warm-up call first."""
    if key is not None and key not in _WARM:
        f()
        _WARM.add(key)
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, float(np.median(walls)), float(np.median(cpus))


# --------------------------------------------------------------------------- methods


def run_annealing(setup: Setup, P: dict, args) -> dict:
    rows = []
    for k in range(args.annealing_seeds):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t, c = time.perf_counter(), time.process_time()
            ar = anneal(setup.hard, setup.x0, setup.space.lower, setup.space.upper,
                        np.random.default_rng([args.seed, k]), data=P["data"],
                        max_evaluations=args.max_evaluations)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        rows.append(score(setup, P, ar.x, method="annealing", seed=k, wall_time_s=wall,
                          cpu_time_s=cpu, evaluations=int(ar.evaluations),
                          converged=bool(ar.converged),
                          warnings=[str(w.message) for w in caught]))
    return {"rows": rows,
            "wall_time_s": float(np.median([r["wall_time_s"] for r in rows])),
            "cpu_time_s": float(np.median([r["cpu_time_s"] for r in rows])),
            "blind_nrmse_torque": float(np.median([r["blind_nrmse_torque"] for r in rows]))}


def lm_call(setup: Setup, P: dict, ftol: float, starts: int):
    """LM from ``starts`` start points (the generic parameters and points drawn with seed 0),
    one after the other; the best objective is kept."""
    X0 = setup.space.start_points(setup.x0, starts, np.random.default_rng(0))
    return levenberg_marquardt(setup.smooth, X0, setup.space.lower, setup.space.upper,
                               batch_args=np.tile(W11, (starts, 1)), data=P["data"], ftol=ftol,
                               **LM_FIXED)


def run_lm(setup: Setup, P: dict, ftol: float, starts: int, repeats: int) -> dict:
    res, wall, cpu = timed(lambda: lm_call(setup, P, ftol, starts), repeats,
                           key=("least-squares", starts))
    return score(setup, P, res.x[res.best], method="least-squares", ftol=ftol, starts=starts,
                 wall_time_s=wall, cpu_time_s=cpu, jacobians=int(res.jacobians.sum()),
                 residual_evaluations=int(res.residual_evaluations.sum()),
                 iterations=res.iterations.tolist(), status=res.reasons,
                 cost=int(res.jacobians.sum()))


def adamw_call(setup: Setup, P: dict, budget: int):
    return adamw_minimize(setup.smooth, setup.x0[None], setup.space.lower, setup.space.upper,
                          batch_args=W11[None], data=P["data"], max_steps=budget,
                          decay_steps=budget, patience=budget + 1, **ADAMW)


def run_adamw(setup: Setup, P: dict, budget: int, repeats: int) -> dict:
    res, wall, cpu = timed(lambda: adamw_call(setup, P, budget), repeats, key="adamw")
    return score(setup, P, res.x[0], method="adamw", steps=budget, wall_time_s=wall,
                 cpu_time_s=cpu, evaluations=int(res.evaluations), cost=budget)


def candidates(method: str) -> list[dict]:
    if method == "least-squares":
        return [{"ftol": f, "starts": s} for s in LM_STARTS for f in LM_FTOL]
    return [{"steps": b} for b in ADAMW_BUDGETS]


def run_candidate(setup: Setup, P: dict, method: str, cand: dict, repeats: int) -> dict:
    if method == "least-squares":
        return run_lm(setup, P, cand["ftol"], cand["starts"], repeats)
    return run_adamw(setup, P, cand["steps"], repeats)


def compare(rows: list[dict], ann: dict[int, dict]) -> dict:
    """Held-out difference and speed ratio of one candidate over subjects."""
    diff = [r["blind_nrmse_torque"] - ann[r["subject"]]["blind_nrmse_torque"] for r in rows]
    ratio = [ann[r["subject"]]["wall_time_s"] / r["wall_time_s"] for r in rows]
    cpu = [ann[r["subject"]]["cpu_time_s"] / max(r["cpu_time_s"], 1e-9) for r in rows]
    return {"per_subject": {str(r["subject"]): {"nrmse_diff": d, "speed_ratio": q,
                                                "cpu_ratio": c, "wall_time_s": r["wall_time_s"]}
                            for r, d, q, c in zip(rows, diff, ratio, cpu)},
            "median_nrmse_diff": float(np.median(diff)),
            "subjects_equal_or_better": int(np.sum(np.asarray(diff) <= 0)),
            "speed_ratio_median": float(np.median(ratio)),
            "speed_ratio_min": float(np.min(ratio)), "speed_ratio_max": float(np.max(ratio)),
            "cpu_ratio_median": float(np.median(cpu)),
            "cost_median": float(np.median([r["cost"] for r in rows]))}


def select(table: list[dict], min_better: int) -> dict | None:
    """The declared rule: cheapest candidate with median difference <= 0 and at least
    ``min_better`` subjects at or below annealing."""
    ok = [t for t in table if t["median_nrmse_diff"] <= 0
          and t["subjects_equal_or_better"] >= min_better]
    return min(ok, key=lambda t: (t["cost_median"], t["median_nrmse_diff"])) if ok else None


# --------------------------------------------------------------------------- compile, costs


def first_calls(setup: Setup, P: dict, args) -> dict:
    """First calls of each method in this process (compile included, unless the persistent
    cache has the executables) and, for AdamW and LM, the same call warm."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 2-evaluation annealing stops at its budget
        t = time.perf_counter()
        anneal(setup.hard, setup.x0, setup.space.lower, setup.space.upper,
               np.random.default_rng(0), data=P["data"], max_evaluations=2)
        out["annealing_first_call_s"] = time.perf_counter() - t
    for name, f in (("adamw", lambda: adamw_call(setup, P, ADAMW_BUDGETS[0])),
                    ("least-squares", lambda: lm_call(setup, P, args.lm_cold_ftol, 1))):
        t = time.perf_counter()
        f()
        out[f"{name}_first_call_s"] = time.perf_counter() - t
        _, out[f"{name}_warm_same_call_s"], _ = timed(f, 3)
    return out


def cold_calls(setup: Setup, P: dict, args) -> dict:
    """:func:`first_calls` in this process, with each method's compile time: the first call
    less the warm one (annealing's 2-evaluation first call is almost all compile)."""
    out = first_calls(setup, P, args)
    out["annealing_compile_s"] = out.pop("annealing_first_call_s")
    for name in ("adamw", "least-squares"):
        out[f"{name}_compile_s"] = (out[f"{name}_first_call_s"]
                                    - out[f"{name}_warm_same_call_s"])
    return out


def second_process(P: dict, cache: str, args) -> dict:
    """First calls of each method in a new process that finds the executables in the
    persistent compilation cache this process filled."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        pickle.dump(P["cal"], fh)
        path = fh.name
    try:
        cmd = [sys.executable, "-m", "benchmarks.calibration", "--second-process", path,
               "--cache-dir", cache, "--lm-cold-ftol", str(args.lm_cold_ftol)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             cwd=str(Path(__file__).resolve().parents[1]))
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.CalledProcessError, json.JSONDecodeError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {getattr(exc, 'stderr', '')}"[-2000:]}
    finally:
        os.unlink(path)


def second_process_main(path: str, args) -> None:
    setup = Setup()
    with open(path, "rb") as fh:
        cal = pickle.load(fh)
    P = {"data": setup.smooth.prepare(cal)}
    print(json.dumps(first_calls(setup, P, args)))


def compute_costs(setup: Setup, P: dict, n: int = 64) -> dict:
    """Compute time per evaluation (ms) in a compiled loop over ``n`` points."""
    d, w = P["data"], jnp.asarray(W11)
    xs = jnp.asarray(setup.space.start_points(setup.space.x0, n, np.random.default_rng(0)))
    sm = setup.smooth
    eye = jnp.eye(setup.space.size)

    def parts(x):
        fit, pen = sm.residual_parts(x, w, d)
        return fit + pen

    def jac(f):
        return lambda x: jax.vmap(lambda v: jax.jvp(f, (x,), (v,)), out_axes=(None, 1))(eye)

    def normal(f):
        def g(x):
            r, J = jac(f)(x)
            return J.T @ J, J.T @ r
        return g

    def vec(x):
        return assemble(parts(x))

    def fit_vec(x):
        return assemble(sm.residual_parts(x, w, d)[0])

    fns = {"loss": lambda x: sm(x, w, d),
           "gradient": jax.grad(lambda x: sm(x, w, d)),
           "residual_vector_assembled": vec,
           "residual_vector_concatenate": lambda x: jnp.concatenate(parts(x)),
           "jacobian": jac(vec),
           "normal_equations_all_rows": normal(vec),
           "normal_equations_fit_rows": normal(fit_vec)}
    out = {}
    for k, f in fns.items():
        loop = jax.jit(lambda X, f=f: jax.lax.map(f, X))
        jax.block_until_ready(loop(xs))
        best = np.inf
        for _ in range(10):  # the minimum: the least disturbed by other processes
            t = time.perf_counter()
            jax.block_until_ready(loop(xs))
            best = min(best, (time.perf_counter() - t) / n * 1e3)
        out[f"{k}_ms"] = best
    out["rows"] = {"fit": int(sum(a.size for a in sm.residual_parts(xs[0], w, d)[0])),
                   "penalty": int(sum(a.size for a in sm.residual_parts(xs[0], w, d)[1]))}
    return out


def identifiability_rows(setup: Setup, P: dict, ftol: float) -> dict:
    """Torque-only vs torque + stiffness: LM calibration and identifiability of each."""
    out = {}
    for label, wv in (("torque_only", (1.0, 0.0)), ("torque_stiffness", (1.0, 1.0))):
        w = np.asarray(wv)
        res = levenberg_marquardt(setup.smooth, setup.x0[None], setup.space.lower,
                                  setup.space.upper, batch_args=w[None], data=P["data"],
                                  ftol=ftol, **LM_FIXED)
        ident = assess(setup.smooth, res.x[0], setup.space, jnp.asarray(w), P["data"])
        top = ident["top_correlations"][0]
        out[label] = {"condition_number": ident["condition_number"], "rank": ident["rank"],
                      "singular_values": ident["singular_values"],
                      "poorly_determined": ident["poorly_determined"],
                      "n_poorly_determined": len(ident["poorly_determined"]),
                      "top_pair": top["pair"], "top_correlation": top["correlation"],
                      "median_se_percent_of_range": 100 * float(np.median(
                          list(ident["standard_error_scaled"].values()))),
                      "cr2_percent": cr2(P["x_true"], res.x[0])}
    return out


# --------------------------------------------------------------------------- driver


def _print_rows(title: str, rows: list[dict]) -> None:
    print(title)
    print("subject | method | setting | wall [ms] | cpu [ms] | objective (hard/smooth) | "
          "held-out nRMSE tau | held-out nRMSE K | Cr2 %")
    for r in rows:
        setting = (f"seed {r['seed']}" if r["method"] == "annealing" else
                   f"{r['steps']} steps" if r["method"] == "adamw" else
                   f"ftol {r['ftol']:g} x {r['starts']}")
        print(f"{r['subject']} | {r['method']} | {setting} | {1e3 * r['wall_time_s']:.1f} | "
              f"{1e3 * r['cpu_time_s']:.1f} | {r['objective_hard']:.4g}/"
              f"{r['objective_smooth']:.4g} | {r['blind_nrmse_torque']:.4f} | "
              f"{r['blind_nrmse_stiffness']:.4f} | {r['cr2_percent']:.1f}")


def _print_table(title: str, table: list[dict], chosen: dict | None,
                 first: dict | None = None) -> None:
    print(title)
    print("setting | median held-out diff | subjects <= annealing | speed ratio median "
          "(min-max) | CPU ratio | cost")
    for t in table:
        mark = " <- chosen" if chosen is not None and t["setting"] == chosen["setting"] else ""
        if first is not None and t["setting"] == first["setting"]:
            mark += " <- first rule"
        print(f"{t['setting']} | {t['median_nrmse_diff']:+.4f} | "
              f"{t['subjects_equal_or_better']}/{len(t['per_subject'])} | "
              f"{t['speed_ratio_median']:.1f}x ({t['speed_ratio_min']:.1f}-"
              f"{t['speed_ratio_max']:.1f}) | {t['cpu_ratio_median']:.1f}x | "
              f"{t['cost_median']:g}{mark}")


def _setting(method: str, cand: dict) -> str:
    return (f"ftol {cand['ftol']:g} x {cand['starts']} start(s)" if method == "least-squares"
            else f"{cand['steps']} steps")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="1,2,3,4,5", help="reported subjects")
    ap.add_argument("--tuning", default="6,7,8,9,10", help="subjects that choose settings")
    ap.add_argument("--confirm", default="11,12,13,14,15",
                    help="fresh subjects run at the chosen settings only ('' to skip)")
    ap.add_argument("--min-better", type=int, default=None,
                    help="tuning subjects at or below annealing a setting needs (default all)")
    ap.add_argument("--first-rule-min-better", type=int, default=4,
                    help="the same for the rule declared first (reported beside)")
    ap.add_argument("--n-cycles", type=int, default=60)
    ap.add_argument("--max-evaluations", type=int, default=200_000)
    ap.add_argument("--annealing-seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per LM/AdamW row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-cold-ftol", type=float, default=1e-4,
                    help="LM stop rule of the first-call (compile) measurements")
    ap.add_argument("--cache-dir", default=None,
                    help="persistent compilation cache (default: a fresh temporary one)")
    ap.add_argument("--second-process", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/calibration.json")
    args = ap.parse_args(argv)
    own_cache = args.cache_dir is None
    cache = tempfile.mkdtemp(prefix="impbench-jax-") if own_cache else args.cache_dir
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if args.second_process:
        second_process_main(args.second_process, args)
        return {}
    t_start = time.perf_counter()
    reported = [int(s) for s in args.subjects.split(",")]
    tuning = [int(s) for s in args.tuning.split(",")]
    confirm = [int(s) for s in args.confirm.split(",") if s.strip()]
    min_better = len(tuning) if args.min_better is None else args.min_better
    setup = Setup()
    subjects = draw_subjects(max(reported + tuning + confirm), np.random.default_rng(args.seed))
    probs = {}
    for i in reported + tuning + confirm:
        probs[i] = make_problem(setup, subjects[i], args)
    print(f"simulated {len(probs)} subjects", flush=True)
    cold = cold_calls(setup, probs[reported[0]], args)
    print(f"first calls: {json.dumps({k: round(v, 3) for k, v in cold.items()})}", flush=True)

    ann = {}
    for i in tuning + reported + confirm:
        ann[i] = run_annealing(setup, probs[i], args)
        print(f"subject {i}: annealing {ann[i]['wall_time_s']:.2f} s, held-out nRMSE "
              f"{ann[i]['blind_nrmse_torque']:.4f}", flush=True)

    result: dict[str, Any] = {"methods": {}}
    for method in ("least-squares", "adamw"):
        tabs = {}
        rows = {"tuning": [], "reported": [], "confirm": []}
        for part, ids in (("tuning", tuning), ("reported", reported)):
            table = []
            for cand in candidates(method):
                rs = [run_candidate(setup, probs[i], method, cand, args.repeats) for i in ids]
                rows[part] += rs
                table.append({"setting": _setting(method, cand), **cand, **compare(rs, ann)})
            tabs[part] = table
        entry: dict[str, Any] = {"tuning_table": tabs["tuning"],
                                 "reported_table": tabs["reported"], "rows": rows}
        for key, need in (("chosen", min_better), ("first_rule", args.first_rule_min_better)):
            chosen = select(tabs["tuning"], need)
            entry[f"{key}_on_tuning"] = chosen
            entry[f"reported_at_{key}"] = None if chosen is None else next(
                t for t in tabs["reported"] if t["setting"] == chosen["setting"])
            entry[f"confirm_at_{key}"] = None
            if chosen is not None and confirm:
                cand = {k: chosen[k] for k in candidates(method)[0]}
                rs = [run_candidate(setup, probs[i], method, cand, args.repeats)
                      for i in confirm]
                rows["confirm"] += [r | {"rule": key} for r in rs]
                entry[f"confirm_at_{key}"] = {"setting": chosen["setting"], **compare(rs, ann)}
        result["methods"][method] = entry
        names = [None if entry[f"{k}_on_tuning"] is None else entry[f"{k}_on_tuning"]["setting"]
                 for k in ("chosen", "first_rule")]
        print(f"{method}: chosen on the tuning subjects: {names[0]} (first rule: {names[1]})",
              flush=True)

    # with compile: first calls (fresh cache), second process (persistent cache), whole run
    lm_rep = result["methods"]["least-squares"]["reported_at_chosen"]
    ad_rep = result["methods"]["adamw"]["reported_at_chosen"]
    s1 = str(reported[0])
    ann_sum = sum(ann[i]["wall_time_s"] for i in reported)
    second = second_process(probs[reported[0]], cache, args)
    with_compile = {"first_call": {}, "second_process": {}, "whole_reported_run": {}}
    for name, rep in (("least-squares", lm_rep), ("adamw", ad_rep)):
        if rep is None:
            continue
        wall1 = rep["per_subject"][s1]["wall_time_s"]
        comp = cold[f"{name}_compile_s"]
        with_compile["first_call"][name] = (
            (ann[reported[0]]["wall_time_s"] + cold["annealing_compile_s"]) / (wall1 + comp))
        if "error" not in second:
            ann_second = second["annealing_first_call_s"] + ann[reported[0]]["wall_time_s"]
            m_second = (second[f"{name}_first_call_s"] - second[f"{name}_warm_same_call_s"]
                        + wall1)
            with_compile["second_process"][name] = ann_second / m_second
        m_sum = sum(v["wall_time_s"] for v in rep["per_subject"].values())
        with_compile["whole_reported_run"][name] = (
            (ann_sum + cold["annealing_compile_s"]) / (m_sum + comp))

    costs = compute_costs(setup, probs[reported[0]])
    ftol = lm_rep["ftol"] if lm_rep is not None else args.lm_cold_ftol
    ident = {str(i): identifiability_rows(setup, probs[i], ftol) for i in reported}

    def _ok(m: str) -> bool:
        rep = result["methods"][m]["reported_at_chosen"]
        return rep is not None and rep["median_nrmse_diff"] <= 0

    pool = [m for m in ("least-squares", "adamw") if _ok(m)] or [
        m for m in ("least-squares", "adamw")
        if result["methods"][m]["reported_at_chosen"] is not None]
    best = max(pool, default=None,
               key=lambda m: result["methods"][m]["reported_at_chosen"]["speed_ratio_median"])
    brep = None if best is None else result["methods"][best]["reported_at_chosen"]
    bconf = None if best is None else result["methods"][best]["confirm_at_chosen"]
    result.update({
        "problem": {"calibration_samples": int(probs[reported[0]]["data"]["torque"].shape[1]),
                    "blind_cycles": args.n_cycles - 1, "parameters": setup.space.size,
                    "rows": costs["rows"],
                    "objective": "000:Eq.8, alpha = beta = 1, true K_J reference",
                    "model": "rigid-tendon MuscleModel, 7 MTUs, 5 EMGs, 128 Hz"},
        "subjects": {"reported": reported, "tuning": tuning, "confirm": confirm},
        "selection_rule": (f"cheapest candidate (median cost over the tuning subjects) with "
                           f"median held-out torque nRMSE difference <= 0 and >= "
                           f"{min_better} of {len(tuning)} tuning subjects <= annealing"),
        "first_rule": (f"the same with >= {args.first_rule_min_better} of {len(tuning)} "
                       "(declared first; see the module docstring)"),
        "annealing": {str(i): ann[i] for i in tuning + reported + confirm},
        "best_method": best,
        "speed_ratio_median": None if brep is None else brep["speed_ratio_median"],
        "headline": None if brep is None else {
            "method": best, "setting": brep["setting"],
            "speed_ratio_median": brep["speed_ratio_median"],
            "speed_ratio_min": brep["speed_ratio_min"],
            "speed_ratio_max": brep["speed_ratio_max"],
            "median_nrmse_diff": brep["median_nrmse_diff"],
            "subjects_equal_or_better": brep["subjects_equal_or_better"],
            "meets_goal": bool(brep["median_nrmse_diff"] <= 0
                               and brep["speed_ratio_median"] >= 26.0),
            "confirm": bconf},
        "compile": {"this_process": cold, "second_process_persistent_cache": second,
                    "ratios_with_compile": with_compile},
        "costs_ms": costs,
        "identifiability": ident,
        "settings": {"adamw": ADAMW, "least_squares": LM_FIXED, "repeats": args.repeats,
                     "annealing_seeds": args.annealing_seeds},
        "environment": {"jax": jax.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": os.cpu_count(),
                        "load_average": list(os.getloadavg())},
        "wall_time_s": time.perf_counter() - t_start,
    })

    for method in ("least-squares", "adamw"):
        m = result["methods"][method]
        _print_table(f"\n{method}, tuning subjects {args.tuning}:", m["tuning_table"],
                     m["chosen_on_tuning"], m["first_rule_on_tuning"])
        _print_table(f"{method}, reported subjects {args.subjects} (every setting listed; "
                     "the chosen one was fixed on the tuning subjects):",
                     m["reported_table"], m["chosen_on_tuning"], m["first_rule_on_tuning"])
    print("\nchosen settings on the fresh confirmation subjects " + args.confirm + ":")
    for method in ("least-squares", "adamw"):
        for key in ("chosen", "first_rule"):
            c = result["methods"][method][f"confirm_at_{key}"]
            if c is not None:
                print(f"{method} [{key}] {c['setting']}: median held-out diff "
                      f"{c['median_nrmse_diff']:+.4f}, {c['subjects_equal_or_better']}/"
                      f"{len(confirm)} <= annealing, speed ratio {c['speed_ratio_median']:.1f}x "
                      f"({c['speed_ratio_min']:.1f}-{c['speed_ratio_max']:.1f})")
    rows = [r for i in reported for r in ann[i]["rows"]]
    for method in ("least-squares", "adamw"):
        ch = result["methods"][method]["chosen_on_tuning"]
        if ch is not None:
            rows += [r for r in result["methods"][method]["rows"]["reported"]
                     if _setting(method, r) == ch["setting"]]
    _print_rows("\nreported subjects at the chosen settings:", sorted(
        rows, key=lambda r: (r["subject"], r["method"])))
    print("\nper subject (reported), chosen settings: annealing wall / method wall, "
          "held-out nRMSE difference (method - annealing)")
    for method in ("least-squares", "adamw"):
        rep = result["methods"][method]["reported_at_chosen"]
        if rep is not None:
            print(method + ": " + ", ".join(
                f"S{k} {v['speed_ratio']:.0f}x ({v['nrmse_diff']:+.4f})"
                for k, v in rep["per_subject"].items()))
    print("with compile: " + json.dumps(
        {k: {m: round(v, 2) for m, v in d.items()} for k, d in with_compile.items()}))
    print("compile [s]: annealing {:.2f}, AdamW {:.2f}, least-squares {:.2f}; second process "
          "(persistent cache) first calls: {}".format(
              cold["annealing_compile_s"], cold["adamw_compile_s"],
              cold["least-squares_compile_s"], json.dumps(
                  {k: round(v, 3) for k, v in second.items() if isinstance(v, float)})))
    print("cost per evaluation [ms]: " + ", ".join(
        f"{k[:-3]} {v:.3f}" for k, v in costs.items() if k.endswith("_ms")))
    print("\nidentifiability (LM solution, scaled Jacobian): subject | torque only: cond, "
          "poorly determined, top pair | torque + stiffness: same")
    for i, d in ident.items():
        a, b = d["torque_only"], d["torque_stiffness"]
        print(f"{i} | {a['condition_number']:.3g}, {a['n_poorly_determined']}/26, "
              f"{'/'.join(a['top_pair'])} ({a['top_correlation']:+.4f}) | "
              f"{b['condition_number']:.3g}, {b['n_poorly_determined']}/26, "
              f"{'/'.join(b['top_pair'])} ({b['top_correlation']:+.4f})")
    if brep is not None:
        print(f"\nheadline: {best} ({brep['setting']}), median speed ratio annealing / "
              f"{best} {brep['speed_ratio_median']:.1f}x (range {brep['speed_ratio_min']:.1f}-"
              f"{brep['speed_ratio_max']:.1f}), median held-out nRMSE difference "
              f"{brep['median_nrmse_diff']:+.4f}, {brep['subjects_equal_or_better']}/"
              f"{len(reported)} subjects at or below annealing (goal: >= 26x, <= 0)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the rows benchmarks/deep_lsq.py adds
        old = json.loads(out.read_text())
        if "deep_lsq" in old:
            result["deep_lsq"] = old["deep_lsq"]
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out} ({result['wall_time_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
