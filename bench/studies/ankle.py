"""Seed 000's torque + stiffness calibration study, simulated end to end with known truth.

Protocol (000 Sec. 2.5-2.6), per synthetic subject:

1. **Subjects.** Each subject's true MTU parameters are drawn around the generic ankle
   parameters (:func:`plants.ankle.default_ankle_params`): optimal fibre length and tendon
   slack length scaled by ``1 + U(-w, w)`` (w < 5 %, inside the calibration bounds of 000
   Fig. 2), one strength coefficient per strength group ``U(lo, hi)`` (within (0.3, 2.5)),
   shape factor generic ``+ U(-s, s)`` clipped to (-3, 0). The calibration starts from the
   generic parameters, as 000 started from the scaled generic model.
2. **Trials.** Two perturbed trials (PRBS, 000 Sec. 2.2) of ``plant.n_cycles`` task cycles
   and one unperturbed trial, simulated by :class:`plants.ankle.AnklePlant` with the subject's
   parameters. Trial 0 gives the calibration data, trial 1 (unseen, ~100 s for 60 cycles)
   the blind test, the unperturbed trial the third test.
3. **Reference stiffness.** SDS on the perturbed trials cut at the task cycle, smoothed over
   20 samples (000 Sec. 2.3, :func:`bench.pipelines.with_reference_stiffness`); as an
   ablation the true joint stiffness K_J(t) (000:Eq.7) of the simulation.
4. **Calibration** on one task cycle (~1.6 s) of trial 0 with the objective 000:Eq.8 for
   every (alpha, beta) in the grid with alpha + beta > 0 (35 combinations for 0:0.2:1),
   ``repetitions`` start points each (000: five annealing runs). All 175 calibrations of a
   subject run as **one** vmapped, jitted AdamW computation
   (:func:`estimators.calibration.gradient.adamw_minimize` with the weights as batched
   arguments): 000:Eq.8 is linear in alpha and beta, so the loss is
   ``alpha J_tau + beta J_K + P`` with J_tau, J_K the normalized torque and stiffness errors
   and P the smooth range penalty of 001:Eq.4. Simulated annealing (000's optimizer) is far
   too slow for 175 x 5 calibrations on 2 cores; ``benchmarks/calibration.py`` compares it
   with AdamW on one problem.
5. **Selection** (000 Sec. 2.5): per combination the repetition with the lowest objective;
   "Torque only" = alpha = 1, beta = 0; "Torque and stiffness" = the combination with the
   lowest E_tau+K on the calibration cycle.
6. **Tests** (000 Sec. 2.6). First: per-cycle nRMSE and r2 of torque and stiffness on the
   blind trial (cycles time-normalized, the first cycle dropped as the filters' transient),
   summarized as median (IQR) per subject (000 Table 1). Second: E_tau and E_tau+K of every
   combination's best calibration and the combinations within ``acceptance`` (1.44) times the
   minimum (000 Fig. 5); the spread of the calibrated parameters (IQR as % of the permitted
   range, 000 Fig. 6) and their distance to the true parameters (Cr1, Cr2, 002:Eq.22-23).
   Third: the "Torque and stiffness" model's stiffness on the unperturbed trial against that
   on the perturbed trial: RMSE and r2 of the mean profiles and the share of the cycle where
   a paired t-test along the cycle (statistical parametric mapping) is significant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import plants.ankle as _ankle
from bench.errors import DataError
from bench.metrics import cr1, cr2, nrmse, r2
from bench.pipelines import with_reference_stiffness
from bench.studies.ankle_config import AnkleStudyConfig, load_study_config
from bench.studies.spm import paired_ttest_1d
from bench.types import MuscleData
from estimators.calibration._problem import WeightedModelLoss
from estimators.calibration.gradient import adamw_minimize
from estimators.calibration.objectives import CalibrationSpace, Objective
from plants.muscle import MTUParams
from plants.muscle.model import ANKLE_STRENGTH_GROUPS, MuscleModel

__all__ = [
    "BatchCalibration",
    "Subject",
    "calibrate_batch",
    "cut_cycles",
    "draw_subjects",
    "evaluate_subject",
    "make_weighted_loss",
    "run_study",
    "simulate_subject",
    "true_vector",
    "weighted_loss",
]

#: The generic ankle parameters (captured before :func:`_subject_parameters` swaps them).
_generic_params = _ankle.default_ankle_params

_PER_SAMPLE_META = ("dmoment_arm", "perturbation", "true_excitation", "true_activation",
                    "true_torque", "fiber_length", "true_stiffness")


# --------------------------------------------------------------------------- subjects


@dataclasses.dataclass(frozen=True)
class Subject:
    """Ground truth of one synthetic subject, relative to the generic ankle parameters.

    Attributes
    ----------
    index : int
        1-based subject number.
    l_opt_scale, l_ts_scale : ndarray, shape (7,)
        True / generic optimal fibre length and tendon slack length.
    strength : ndarray, shape (7,)
        True / generic maximum isometric force (equal within a strength group).
    shape : ndarray, shape (7,)
        True activation shape factor A (000:Eq.1).
    """

    index: int
    l_opt_scale: np.ndarray
    l_ts_scale: np.ndarray
    strength: np.ndarray
    shape: np.ndarray

    def params(self, fs: float = 128.0) -> MTUParams:
        """True :class:`MTUParams` with ``c1, c2`` expressed at ``fs``."""
        g = _generic_params(fs)
        return g._replace(
            l_opt=g.l_opt * self.l_opt_scale,
            l_ts=g.l_ts * self.l_ts_scale,
            f_max=g.f_max * self.strength,
            shape=jnp.asarray(self.shape),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in dataclasses.asdict(self).items()}


def draw_subjects(n: int, rng: np.random.Generator, *, l_opt: float = 0.04,
                  l_ts: float = 0.04, strength: tuple[float, float] = (0.7, 1.4),
                  shape: float = 0.5) -> list[Subject]:
    """Draw ``n`` subjects around the generic ankle (see the module docstring, step 1)."""
    muscles = list(_ankle.MUSCLES)
    M = len(muscles)
    generic_shape = np.asarray(_generic_params().shape)
    out = []
    for i in range(n):
        s_l_opt = 1.0 + rng.uniform(-l_opt, l_opt, M)
        s_l_ts = 1.0 + rng.uniform(-l_ts, l_ts, M)
        st = np.empty(M)
        grouped = {m for mem in ANKLE_STRENGTH_GROUPS.values() for m in mem}
        for mem in ANKLE_STRENGTH_GROUPS.values():
            st[[muscles.index(m) for m in mem]] = rng.uniform(*strength)
        for j, m in enumerate(muscles):
            if m not in grouped:
                st[j] = rng.uniform(*strength)
        sh = np.clip(generic_shape + rng.uniform(-shape, shape, M), -2.9, -0.1)
        out.append(Subject(i + 1, s_l_opt, s_l_ts, st, sh))
    return out


@contextlib.contextmanager
def _subject_parameters(subject: Subject) -> Iterator[None]:
    """Make :class:`plants.ankle.AnklePlant` simulate ``subject``'s parameters.

    ``AnklePlant`` always simulates the generic parameters (it has no parameter argument), so
    the study swaps :func:`plants.ankle.default_ankle_params` for the subject's while it
    simulates; the neutral MTU lengths follow (they are derived from the parameters).
    """
    with mock.patch.object(_ankle, "default_ankle_params", subject.params):
        yield


def simulate_subject(
    subject: Subject, plant_params: dict[str, Any], rng: np.random.Generator,
    *, unperturbed: bool = True,
) -> tuple[MuscleData, MuscleData | None]:
    """Two perturbed trials and (optionally) one unperturbed trial of ``subject``.

    Returns
    -------
    perturbed : MuscleData
        S = 2 trials (calibration, blind), true K_J in ``stiffness``.
    unperturbed : MuscleData or None
        S = 1 trial.
    """
    with _subject_parameters(subject):
        pert = _ankle.AnklePlant(**plant_params, n_trials=2, perturbed=True).simulate(rng)
        unp = (_ankle.AnklePlant(**plant_params, n_trials=1, perturbed=False).simulate(rng)
               if unperturbed else None)
    return pert, unp


def cut_cycles(data: MuscleData, trial: int, start: int, count: int) -> MuscleData:
    """Trial ``trial``, task cycles ``start .. start + count - 1``, as a one-trial MuscleData."""
    n = int(data.meta["samples_per_cycle"])
    a, b = start * n, (start + count) * n
    T = data.torque.shape[1]
    if start < 0 or count < 1 or b > T:
        raise DataError(f"cycles {start}..{start + count - 1} exceed the trial ({T // n} cycles)")
    sl = (slice(trial, trial + 1), slice(a, b))

    def cut(x):
        return None if x is None else np.asarray(x)[sl]

    meta = dict(data.meta)
    for k in _PER_SAMPLE_META:
        if k in meta and np.ndim(meta[k]) >= 2:
            meta[k] = np.asarray(meta[k])[sl]
    return dataclasses.replace(
        data, excitation=cut(data.excitation), angle=cut(data.angle), torque=cut(data.torque),
        lmt=cut(data.lmt), moment_arm=cut(data.moment_arm), stiffness=cut(data.stiffness),
        meta=meta,
    )


def true_vector(subject: Subject, space: CalibrationSpace) -> np.ndarray:
    """The subject's true parameters as a vector of ``space`` (physical units)."""
    p = subject.params()
    out = []
    for b in space.blocks:
        if b.field in ("l_opt", "l_ts", "shape"):
            v = np.asarray(getattr(p, b.field))
            out.extend(float(v[idx[0]]) for idx in b.index)
        elif b.field == "f_max":
            out.extend(float(subject.strength[idx[0]]) for idx in b.index)
        else:
            out.extend(float(np.mean(getattr(p, b.field))) for _ in b.index)
    return np.asarray(out)


# --------------------------------------------------------------------------- calibration


def weighted_loss(
    model: MuscleModel, space: CalibrationSpace, penalty: str = "smooth",
) -> WeightedModelLoss:
    """000:Eq.8 with the weights and the data as arguments: ``loss(x, w, data)``.

    ``w[0] J_tau + w[1] J_K + P`` with P the penalty alone (001:Eq.4 for ``"smooth"``; plus
    000:Eq.9 for ``"both"``); ``data`` from ``loss.prepare(muscle_data)``. The function is
    hashable by the identity of ``model`` and ``space``, so the AdamW step compiled for the
    first subject is reused for every other one (same shapes).
    """
    return WeightedModelLoss(model, space, Objective(1.0, 1.0, penalty=penalty))


def make_weighted_loss(
    model: MuscleModel, data: MuscleData, space: CalibrationSpace, penalty: str = "smooth",
) -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """:func:`weighted_loss` bound to ``data``: ``loss(x, w) = w[0] J_tau + w[1] J_K + P``.

    The objective is linear in alpha and beta, so this equals ``Objective(alpha, beta,
    penalty)``.
    """
    fn = weighted_loss(model, space, penalty)
    d = fn.prepare(data)  # needs a finite reference stiffness

    def loss(x, w):
        return fn(x, w, d)

    return loss


@dataclasses.dataclass
class BatchCalibration:
    """All calibrations of one subject and reference.

    Attributes
    ----------
    combos : ndarray, shape (C, 2)
        (alpha, beta) pairs.
    x : ndarray, shape (C, R, n)
        Calibrated parameter vectors (physical units) per combination and repetition.
    loss : ndarray, shape (C, R)
        Final objective (000:Eq.8 with the smooth penalty).
    steps : ndarray, shape (C, R)
    x0 : ndarray, shape (R, n)
        Start points (repetition 0: the generic parameters).
    evaluations : int
        Loss-and-gradient evaluations over the whole batch.
    wall_time : float, s
    """

    combos: np.ndarray
    x: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    x0: np.ndarray
    evaluations: int
    wall_time: float

    @property
    def best_rep(self) -> np.ndarray:
        """Index of the lowest-objective repetition per combination, shape (C,)."""
        return np.argmin(np.where(np.isfinite(self.loss), self.loss, np.inf), axis=1)

    @property
    def x_best(self) -> np.ndarray:
        """Best calibration per combination, shape (C, n)."""
        return self.x[np.arange(len(self.combos)), self.best_rep]


def calibrate_batch(
    model: MuscleModel, data: MuscleData, space: CalibrationSpace,
    combos: list[tuple[float, float]], repetitions: int, rng: np.random.Generator,
    *, penalty: str = "smooth", **adamw: Any,
) -> BatchCalibration:
    """Every (alpha, beta) combination x repetition as one vmapped, jitted AdamW run.

    Repetition 0 starts at the generic parameters (``space.x0``), the others at points drawn
    uniformly inside the bounds (the same start points for every combination).
    ``adamw`` are keyword arguments of :func:`adamw_minimize`.
    """
    fn = weighted_loss(model, space, penalty)
    d = fn.prepare(data)  # needs a finite reference stiffness
    C = len(combos)
    x0 = space.start_points(space.x0, repetitions, rng)
    X0 = np.tile(x0, (C, 1))  # row c * R + r
    W = np.repeat(np.asarray(combos, dtype=float), repetitions, axis=0)
    res = adamw_minimize(fn, X0, space.lower, space.upper, batch_args=W, data=d, **adamw)
    R = repetitions
    return BatchCalibration(
        combos=np.asarray(combos, dtype=float),
        x=res.x.reshape(C, R, space.size),
        loss=res.fun.reshape(C, R),
        steps=res.steps.reshape(C, R),
        x0=x0,
        evaluations=res.evaluations,
        wall_time=res.wall_time,
    )


# --------------------------------------------------------------------------- evaluation


def _predict_many(model: MuscleModel, space: CalibrationSpace, X: np.ndarray,
                  data: MuscleData) -> dict[str, np.ndarray]:
    """Model outputs for each row of ``X`` (K, n): arrays (K, S, T, .)."""
    key = (id(model), id(space))
    f = _PREDICTORS.get(key)
    if f is None:
        f = jax.jit(jax.vmap(lambda x, inp: model.simulate(space.unpack(x), inp),
                             in_axes=(0, None)))
        _PREDICTORS.clear()  # one model/space at a time: no growth over a study
        _PREDICTORS[key] = f
    out = f(jnp.asarray(X), model.inputs(data))
    return {k: np.asarray(out[k]) for k in ("torque", "stiffness", "lm", "lt")}


_PREDICTORS: dict[tuple[int, int], Any] = {}


def _cycles(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """(T,) -> (cycles, n), dropping cycles before ``first`` and a trailing partial cycle."""
    c = x.size // n
    return x[: c * n].reshape(c, n)[first:]


def _per_cycle(ref: np.ndarray, est: np.ndarray) -> dict[str, np.ndarray]:
    return {"nrmse": np.array([nrmse(a, b) for a, b in zip(ref, est)]),
            "r2": np.array([r2(a, b) for a, b in zip(ref, est)])}


def _med_iqr(v: np.ndarray) -> tuple[float, float]:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return float(q2), float(q3 - q1)


def evaluate_subject(
    cfg: AnkleStudyConfig, subject: Subject, model: MuscleModel, space: CalibrationSpace,
    batch: BatchCalibration, cal: MuscleData, blind: MuscleData, unpert: MuscleData | None,
    stiffness_source: str,
) -> dict[str, Any]:
    """First, second and third tests of 000 Sec. 2.6 for one subject and reference."""
    n = int(cal.meta["samples_per_cycle"])
    combos = batch.combos
    xb = batch.x_best
    # second test: fitting errors of every combination's best calibration (000 Fig. 5)
    pred = _predict_many(model, space, xb, cal)
    obj = Objective(1.0, 1.0)
    errs = [obj.errors({"torque": pred["torque"][c], "stiffness": pred["stiffness"][c]},
                       np.asarray(cal.torque), np.asarray(cal.stiffness))
            for c in range(len(combos))]
    e_tau = np.array([e["E_tau"] for e in errs])
    e_tot = np.array([e["E_tau_K"] for e in errs])
    acc_tau = e_tau <= cfg.acceptance * e_tau.min()
    acc_tot = e_tot <= cfg.acceptance * e_tot.min()
    sel_ts = int(np.argmin(e_tot))
    torque_only = [i for i, (a, b) in enumerate(combos) if b == 0.0]
    sel_to = (max(torque_only, key=lambda i: combos[i][0]) if torque_only else None)
    # parameters: distance to the truth and spread of the accepted calibrations (000 Fig. 6)
    x_true = true_vector(subject, space)
    crit = {"cr1": [cr1(x_true, x) for x in xb], "cr2": [cr2(x_true, x) for x in xb]}
    width = space.upper - space.lower
    spread = {}
    for b in space.blocks:
        idx = [space.names.index(nm) for nm in b.names]
        sub = xb[acc_tau][:, idx]
        iqr = np.percentile(sub, 75, axis=0) - np.percentile(sub, 25, axis=0)
        spread[b.field] = float(np.median(100.0 * iqr / width[idx]))
    # first test: blind estimation on the unseen trial, per cycle
    selected = {"torque_only": sel_to, "torque_stiffness": sel_ts}
    rows: dict[str, Any] = {}
    keys = [k for k, v in selected.items() if v is not None]
    bl_pred = _predict_many(model, space, xb[[selected[k] for k in keys]], blind)
    tq_ref = _cycles(np.asarray(blind.torque)[0, :, 0], n, 1)
    k_ref = _cycles(np.asarray(blind.stiffness)[0, :, 0], n, 1)
    k_true = _cycles(np.asarray(blind.meta.get("true_stiffness", blind.stiffness))[0, :, 0],
                     n, 1)
    for j, k in enumerate(keys):
        tq = _cycles(bl_pred["torque"][j, 0, :, 0], n, 1)
        kk = _cycles(bl_pred["stiffness"][j, 0, :, 0], n, 1)
        pt, pk, pkt = _per_cycle(tq_ref, tq), _per_cycle(k_ref, kk), _per_cycle(k_true, kk)
        c = selected[k]
        rows[k] = {
            "combo": combos[c].tolist(),
            "E_tau": float(e_tau[c]), "E_tau_K": float(e_tot[c]),
            "cr1": crit["cr1"][c], "cr2": crit["cr2"][c],
            "nrmse_torque": _med_iqr(pt["nrmse"]), "r2_torque": _med_iqr(pt["r2"]),
            "nrmse_stiffness": _med_iqr(pk["nrmse"]), "r2_stiffness": _med_iqr(pk["r2"]),
            "nrmse_stiffness_true": _med_iqr(pkt["nrmse"]),
            "r2_stiffness_true": _med_iqr(pkt["r2"]),
            "cycles": int(tq.shape[0]),
            "per_cycle": {"nrmse_torque": pt["nrmse"].tolist(),
                          "nrmse_stiffness": pk["nrmse"].tolist(),
                          "r2_torque": pt["r2"].tolist(), "r2_stiffness": pk["r2"].tolist()},
            "mean_profiles": {"torque_ref": tq_ref.mean(0).tolist(),
                              "torque": tq.mean(0).tolist(),
                              "stiffness_ref": k_ref.mean(0).tolist(),
                              "stiffness_true": k_true.mean(0).tolist(),
                              "stiffness": kk.mean(0).tolist()},
        }
    third = None
    if cfg.third_test.enabled and unpert is not None:
        third = _third_test(model, space, xb[sel_ts], blind, unpert, n, cfg.third_test.alpha)
    return {
        "subject": subject.index,
        "stiffness_source": stiffness_source,
        "combos": combos.tolist(),
        "loss": batch.loss.tolist(),
        "steps": batch.steps.tolist(),
        "best_rep": batch.best_rep.tolist(),
        "x_best": xb.tolist(),
        "x_true": x_true.tolist(),
        "E_tau": e_tau.tolist(),
        "E_tau_K": e_tot.tolist(),
        "accepted_torque": acc_tau.tolist(),
        "accepted_total": acc_tot.tolist(),
        "cr1": crit["cr1"],
        "cr2": crit["cr2"],
        "spread_percent": spread,
        "selected": rows,
        "third_test": third,
        "calibration_wall_time_s": batch.wall_time,
        "evaluations": batch.evaluations,
    }


def _third_test(model, space, x, blind, unpert, n, alpha) -> dict[str, Any]:
    """000 Sec. 2.6 third test: the calibrated model's stiffness, unperturbed vs perturbed."""
    kp = _cycles(_predict_many(model, space, x[None], blind)["stiffness"][0, 0, :, 0], n, 1)
    ku = _cycles(_predict_many(model, space, x[None], unpert)["stiffness"][0, 0, :, 0], n, 1)
    c = min(kp.shape[0], ku.shape[0])
    kp, ku = kp[:c], ku[:c]
    mp, mu = kp.mean(0), ku.mean(0)
    spm = paired_ttest_1d(kp, ku, alpha=alpha)
    return {
        "rmse": float(np.sqrt(np.mean((mp - mu) ** 2))),
        "r2": r2(mp, mu),
        "significant_share": spm["significant_share"],
        "method": spm["method"],
        "threshold": spm["threshold"],
        "cycles": c,
        "mean_perturbed": mp.tolist(),
        "mean_unperturbed": mu.tolist(),
        "t": spm["t"].tolist(),
    }


# --------------------------------------------------------------------------- driver


def run_study(config: AnkleStudyConfig | str | Path, out: str | Path,
              *, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the whole study and write ``out/results.json`` and the report.

    Parameters
    ----------
    config : AnkleStudyConfig or path to its YAML
    out : directory (created)
    log : callable or None
        Progress messages.

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from bench.studies.ankle_report import write_study_report

    cfg = config if isinstance(config, AnkleStudyConfig) else load_study_config(config)
    say = log or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    sc = cfg.subjects
    subjects = draw_subjects(sc.n, rng, l_opt=sc.l_opt, l_ts=sc.l_ts, strength=sc.strength,
                             shape=sc.shape)
    plant_params = {"n_cycles": 20, **cfg.plant}
    fs = float(plant_params.get("fs_out", 128.0))
    model = MuscleModel.from_ankle(fs, tendon=cfg.model.tendon,
                                   activation_model=cfg.model.activation_model)
    space = CalibrationSpace.build(model.base_params, list(model.muscles),
                                   strength_groups=model.strength_groups)
    combos = cfg.combinations
    runs = []
    timing = {"simulation_s": 0.0, "sds_s": 0.0, "calibration_s": 0.0, "evaluation_s": 0.0}
    n_cycles = int(plant_params["n_cycles"])
    for subj in subjects:
        srng = np.random.default_rng([cfg.seed, subj.index])
        t = time.perf_counter()
        pert, unp = simulate_subject(subj, plant_params, srng,
                                     unperturbed=cfg.third_test.enabled)
        timing["simulation_s"] += time.perf_counter() - t
        t = time.perf_counter()
        pert_sds = with_reference_stiffness(pert) if "sds" in cfg.stiffness_references else None
        timing["sds_s"] += time.perf_counter() - t
        for source in cfg.stiffness_references:
            data = pert_sds if source == "sds" else pert
            cal = cut_cycles(data, 0, cfg.calibration.cycle, 1)
            blind = cut_cycles(data, 1, 0, n_cycles)
            un = None if unp is None else cut_cycles(unp, 0, 0, n_cycles)
            t = time.perf_counter()
            batch = calibrate_batch(
                model, cal, space, combos, cfg.calibration.repetitions,
                np.random.default_rng([cfg.seed, subj.index, 7]),
                penalty=cfg.calibration.penalty, **cfg.calibration.adamw.model_dump(),
            )
            timing["calibration_s"] += time.perf_counter() - t
            t = time.perf_counter()
            res = evaluate_subject(cfg, subj, model, space, batch, cal, blind, un, source)
            timing["evaluation_s"] += time.perf_counter() - t
            runs.append(res)
            ts = res["selected"]["torque_stiffness"]
            say(f"subject {subj.index} [{source}]: {len(combos)} x "
                f"{cfg.calibration.repetitions} calibrations in {batch.wall_time:.1f} s; "
                f"T+S blind nRMSE torque {ts['nrmse_torque'][0]:.2f}, "
                f"stiffness {ts['nrmse_stiffness'][0]:.2f}")
    results = {
        "config": cfg.model_dump(mode="json"),
        "subjects": [s.as_dict() for s in subjects],
        "parameter_names": space.names,
        "lower": space.lower.tolist(),
        "upper": space.upper.tolist(),
        "x0": space.x0.tolist(),
        "runs": runs,
        "timing": {**timing, "total_s": time.perf_counter() - t0},
        "environment": {"jax": jax.__version__, "devices": str(jax.devices()),
                        "optimizer": "AdamW (optax), vmapped over alpha/beta x repetitions"},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    write_study_report(out)
    say(f"study done in {results['timing']['total_s']:.0f} s; report in {out}")
    return results


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
