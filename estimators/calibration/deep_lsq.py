"""Arm identification without deep-muscle EMG: deep forces by least squares (002 Sec. III-D/E).

With the muscle torque split into superficial (EMG recorded) and deep (no EMG) contributions,
002:Eq.12 reads ``A (J_ms^T f_ms + J_md^T f_md) = c``, with ``A = M^-1`` and
``c = qdd + A tau_bias`` for our unconstrained chain (002:Eq.10 with no constraint rows; the
record's passive joint-limit and weak tracking torques, ``meta["tau_passive"]`` and
``meta["tau_control"]``, are known external torques and are moved to the right-hand side).
The deep forces are the least-squares solution (002:Eq.13)

    f_md = (A J_md^T)^+ (c - A J_ms^T f_ms),

and the loss is the residual of that solution (002:Eq.14), normalized by the variance of
``d = c - A J_ms^T f_ms`` at the initial guess:

    l = sum_t || (I - A J_md^T (A J_md^T)^+) d_t ||^2 / (T var(d)).

Superficial forces come from the EMG through the continuous-delay recursive filter
(002:Eq.19-21), the first-order activation dynamics (002:Eq.17-18) and rigid-tendon Hill
MTUs (002:Eq.15), with MTU lengths, velocities and moment arms as recorded (002 Sec. IV-A).
The bone inertial parameters (30) and the parameters of the identifiable muscles plus the
five shared ones are optimized together.

**Model protocol.** Estimators never import ``plants``: the arm reaches this module as the
``model`` of the data (``plants.arm.identification.ArmIdentificationModel``), which exposes

* ``dynamics`` -- hashable by value (a static argument of the jitted kernels), with
  ``fs``, ``muscles``, ``identifiable_muscles`` (superficial muscles identifiable without
  deep EMG, 002 Sec. III-D), ``inertial_names`` (30), ``muscle_fields``, ``shared_fields``,
  ``regressors(q, qd, qdd) -> (Y, dM/dpi)`` (inverse dynamics and mass matrix are linear in
  the inertial parameters), ``muscle_forces(params, emg, lmt, vmt)`` (002:Eq.15-21, one
  trial, JAX-traceable) and ``unit(name)``;
* ``base_params`` -- MTU parameters whose non-identified fields (damping, shape) are used;
* ``initial_guesses`` (G, n) and ``guess_names`` -- the start points (002:Eq.24, drawn by
  the plant from the truth, as Sanderink et al. did).

The parameter vector is ``inertial_names``, then ``"<muscle>.<field>"`` for each learned
muscle and muscle field, then ``"shared.<field>"`` (:func:`parameter_layout`).

Methods (002 Sec. IV-B):

* ``"M1"``: no deep EMG; the nine shoulder-spanning superficial muscles' parameters are
  learned (80 parameters in all). TRIlat and BRD span only the elbow, whose deep subsystem
  (TRImed, BRA, PQ) is underdetermined and absorbs any error of theirs (002 Sec. III-D), so
  here their forces are solved by least squares together with the deep ones -- the projection
  of Eq.14 is the same because their columns lie in the elbow directions the deep elbow
  muscles already span.
* ``"M2"``: all EMG; every muscle's parameters learned (115), no least-squares forces
  (Eq.14 then is the plain normalized squared residual of Eq.11).

Schedule (002 Sec. IV-C): ``epochs`` full-batch steps on every parameter except the tendon
slack lengths, then ``slack_epochs`` on the tendon slack lengths only (002: 10K + 2K).

Fast form (same value as Eq.14, no per-sample inverse or pseudoinverse): the range of
``A J_md^T`` has as orthogonal complement ``{w : J_md A w = 0} = M N`` with ``N`` an orthonormal
basis of ``null(J_md)`` (torque directions no least-squares force can give; depends on ``q``
only, so it is computed once). With ``e = M d = tau_ID(pi) - J_ms^T f_ms - tau_ext`` the
inverse-dynamics residual, the projected residual of Eq.14 is the projection of ``d`` on
``range(M N)``, whose squared norm is ``b^T (N^T M^2 N)^-1 b`` with ``b = N^T e``. Both
``tau_ID = Y(q, qd, qdd) pi`` and ``M(q) = sum_k pi_k dM/dpi_k`` are linear in the inertial
parameters, so ``Y N`` and ``(dM/dpi) N`` are precomputed per record; an epoch then costs the
muscle forces plus a k x k solve per sample (k = 1 for M1: the one shoulder direction INFSP
and SUBSC cannot act in; k = 5, N = I for M2, where Eq.14 is ``||M^-1 e||^2``). The literal
form (``_direct``: ``A``, ``(A J_md^T)^+`` by SVD, Eq.13 forces) gives ``var(d)`` and the
deep forces of the result and is tested equal.

**As a calibrator** (``deep-lsq`` in the registry, task ``calibration``): the model's
initial guesses are the start points of one vmapped run (:meth:`DeepMuscleIdentifier.
fit_many`); the result is the guess with the lowest final loss, its MTU parameters projected
on the task's parameter space (``info["x"]``) and its predicted muscle torque
``J_ms^T f_ms + J_md^T f_md``. Its scores against the truth of the data
(``MuscleData.truth``, which the identification never reads) come from
:meth:`~DeepMuscleIdentifier.extra_metrics` (Cr1, Cr2, Cr2^m, Cr2 over each method's own
vector, with base inertial combinations, over the well-excited parameters: medians over the
guesses) and :meth:`~DeepMuscleIdentifier.extra_arrays` (per guess: final and initial
scores, Cr curves over the epochs, per-parameter errors, the excitation analysis).

Optimizer (002 gives no settings; stated choices): Adam (optax) on relative coordinates
``p = p0 + |p0| z`` (z0 = 0), so one learning rate serves parameters of very different units;
zero-valued entries (un-pennated ``phi_opt``) stay zero. Positivity is kept by clipping
``z >= -0.9`` inside the model, i.e. every parameter keeps at least 10 % of its initial
magnitude and its sign. Adam's ``eps`` acts on the raw gradient, and Eq.14 starts near 1e-6
for M1 (``var(d)`` is dominated by the deep-muscle accelerations that the projection removes)
but near 5 for M2, so with the default ``eps`` the two methods are optimized differently
(M1's weak gradients are damped, M2's are normalized to full steps); ``scale_free=True``
divides the loss the optimizer sees by its initial value so that ``adam_eps`` means the same
for both. Many parameters are poorly excited (:func:`excitation_analysis`): Adam's
per-coordinate normalization moves them as fast as the well-excited ones, along loss valleys,
away from the truth; a larger ``adam_eps`` and learning rate 1e-3 limit that drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.base import Calibrator, Tags
from bench.errors import DataError, InvalidParameterError
from bench.metrics import cr1, cr2
from bench.params import Interval, Options
from bench.types import CalibrationResult, MuscleData, ParameterSpec

__all__ = ["DeepLSQResult", "DeepMuscleIdentifier", "arm_problem", "excitation_analysis",
           "parameter_layout", "scores"]

_METHODS = ("M1", "M2")
#: Scores of one estimate (:func:`scores`), percent.
SCORES = ("cr1", "cr2", "cr2m", "cr2_own", "cr2_base", "cr2_we")
_META = ("qd", "qdd", "vmt", "tau_passive", "tau_control")


@dataclass
class DeepLSQResult:
    """Outcome of :meth:`DeepMuscleIdentifier.fit` (one per guess of ``fit_many``).

    Attributes
    ----------
    names : list of str
        Parameter names (:func:`parameter_layout`).
    estimate : ndarray, shape (n,)
        Final parameters, SI units.
    initial : ndarray, shape (n,)
    loss : ndarray, shape (epochs + slack_epochs,)
        002:Eq.14 per epoch.
    trajectory : ndarray, shape (n_snap, n)
        Parameters every ``record_every`` epochs (for Cr1 curves, 002 Fig. 4).
    snapshot_epochs : ndarray of int, shape (n_snap,)
    wall_time : float, s
        Whole run (precomputation and compilation included); for ``fit_many`` the batch's.
    epoch_time : float, s
        Mean wall time of one epoch after compilation, per guess (batch time / guesses).
    deep_force : ndarray, shape (S, T, n_lsq)
        Least-squares forces (002:Eq.13) at the estimate, N (M1; empty for M2).
    torque : ndarray, shape (S, T, 5)
        Muscle torque at the estimate, ``J_ms^T f_ms + J_md^T f_md`` (002:Eq.1), Nm.
    info : dict
    """

    names: list
    estimate: np.ndarray
    initial: np.ndarray
    loss: np.ndarray
    trajectory: np.ndarray
    snapshot_epochs: np.ndarray
    wall_time: float
    epoch_time: float
    deep_force: np.ndarray
    torque: np.ndarray
    info: dict = field(default_factory=dict)


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {_METHODS}. Got {method!r} instead.")


@cache
def _layout(dyn: Any, method: str) -> dict:
    """Static index sets: learned muscles, driven (EMG) and least-squares muscles, and the
    position of each learned muscle among the driven ones."""
    _check_method(method)
    muscles = tuple(dyn.muscles)
    learned = tuple(dyn.identifiable_muscles) if method == "M1" else muscles
    driven = tuple(muscles.index(m) for m in learned)  # M1: learned = driven (module doc)
    lsq = tuple(i for i in range(len(muscles)) if i not in driven)
    pos = tuple(driven.index(muscles.index(m)) for m in learned)
    n_in = len(dyn.inertial_names)
    names = [*dyn.inertial_names,
             *(f"{m}.{f}" for m in learned for f in dyn.muscle_fields),
             *(f"shared.{f}" for f in dyn.shared_fields)]
    return {"learned": learned, "driven": driven, "lsq": lsq, "pos": np.array(pos),
            "n_in": n_in, "n_m": len(learned) * len(dyn.muscle_fields), "names": tuple(names)}


def parameter_layout(dynamics: Any, method: str) -> tuple[list[str], np.ndarray]:
    """The parameter vector of a method (module docstring, "Model protocol").

    Parameters
    ----------
    dynamics : object
        ``model.dynamics`` of the arm.
    method : {"M1", "M2"}

    Returns
    -------
    names : list of str
        Inertial, then per learned muscle and field, then shared (M1: 80, M2: 115 for the
        synthetic arm).
    is_muscle : ndarray of bool, shape (n,)
        Muscle (per-muscle and shared) entries: the set of Cr2^m (002 Sec. IV-B).
    """
    lay = _layout(dynamics, method)
    names = list(lay["names"])
    return names, np.arange(len(names)) >= lay["n_in"]


def arm_problem(data: MuscleData, model: Any, method: str = "M1") -> dict:
    """Arrays and index sets of the identification problem from an arm record.

    Parameters
    ----------
    data : MuscleData
        ``excitation`` (S, T, M) EMG, ``angle`` (S, T, 5), ``lmt`` (S, T, M),
        ``moment_arm`` (S, T, M, 5); ``meta`` with ``qd``, ``qdd``, ``vmt``, ``tau_passive``,
        ``tau_control``.
    model : object
        Its ``dynamics`` names the muscles (module docstring).
    method : {"M1", "M2"}

    Returns
    -------
    dict
        ``emg``, ``q``, ``qd``, ``qdd``, ``lmt``, ``vmt``, ``R``, ``tau_ext`` arrays; ``driven``
        (indices of muscles whose forces come from EMG) and ``lsq`` (indices solved by 002:Eq.13).
    """
    _check_method(method)
    if not isinstance(data, MuscleData):
        raise DataError(f"arm identification needs MuscleData; got {type(data).__name__}")
    dyn = model.dynamics
    meta = data.meta or {}
    for k in _META:
        if k not in meta:
            raise DataError(f"MuscleData.meta[{k!r}] is required (the arm plant records it)")
    if data.lmt is None or data.moment_arm is None:
        raise DataError("MuscleData.lmt and MuscleData.moment_arm are required")
    if list(data.muscles) != list(dyn.muscles):
        raise DataError(f"MuscleData.muscles must be the model's {list(dyn.muscles)}")
    if abs(float(data.fs) - float(dyn.fs)) > 1e-9 * float(dyn.fs):
        raise DataError(f"MuscleData.fs is {data.fs} Hz but the model runs at {dyn.fs} Hz")
    arrays = {
        "emg": np.asarray(data.excitation, dtype=float),
        "q": np.asarray(data.angle, dtype=float),
        "qd": np.asarray(meta["qd"], dtype=float),
        "qdd": np.asarray(meta["qdd"], dtype=float),
        "lmt": np.asarray(data.lmt, dtype=float),
        "vmt": np.asarray(meta["vmt"], dtype=float),
        "R": np.asarray(data.moment_arm, dtype=float),
        "tau_ext": np.asarray(meta["tau_passive"], dtype=float)
        + np.asarray(meta["tau_control"], dtype=float),
    }
    S, T, M = arrays["emg"].shape
    D = len(dyn.dofs)
    if arrays["R"].shape != (S, T, M, D):
        raise DataError(f"MuscleData.moment_arm must have shape {(S, T, M, D)}")
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise DataError(f"arm record field {k!r} contains NaN/inf")
    lay = _layout(dyn, method)
    arrays["driven"] = np.array(lay["driven"], dtype=int)
    arrays["lsq"] = np.array(lay["lsq"], dtype=int)
    return arrays


def _null_basis(J: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of the null space of ``J`` per sample, zero-padded to a fixed width.

    Parameters
    ----------
    J : ndarray, shape (S, T, n_lsq, D)
        ``J_md`` (rows: least-squares muscles, columns: DoFs), m.
    rcond : float
        Singular values below ``rcond * s_max`` count as zero.

    Returns
    -------
    N : ndarray, shape (S, T, D, k)
        Columns span ``null(J_md)`` (the torque directions no least-squares force can give);
        ``k = D - min rank``; samples of higher rank have zero columns.
    pad : ndarray, shape (S, T, k)
        1 for the zero (padding) columns.
    """
    S, T, _, D = J.shape
    if J.shape[2] == 0:
        return np.broadcast_to(np.eye(D), (S, T, D, D)).copy(), np.zeros((S, T, D))
    _, s, Vt = np.linalg.svd(J, full_matrices=True)
    rank = np.sum(s > rcond * s[..., :1], axis=-1)  # (S, T)
    k = D - int(rank.min())
    if k == 0:
        raise DataError("the least-squares muscles span every DoF at every sample: "
                        "002:Eq.14 is identically zero")
    N = np.swapaxes(Vt[..., D - k:, :], -1, -2)  # (S, T, D, k): smallest singular directions
    pad = (np.arange(k)[None, None, :] < (k - (D - rank))[..., None]).astype(float)
    return N * (1.0 - pad)[..., None, :], pad


def _precompute(model: Any, data: MuscleData, method: str, rcond: float) -> dict:
    """Parameter-independent arrays of the fast form of 002:Eq.14 (module docstring)."""
    prob = arm_problem(data, model, method)
    driven, lsq = prob["driven"], prob["lsq"]
    Y, YM = model.dynamics.regressors(prob["q"], prob["qd"], prob["qdd"])
    Y, YM = np.asarray(Y), np.asarray(YM)
    R = prob["R"]
    N, pad = _null_basis(R[:, :, lsq, :], rcond)
    template = model.base_params  # only non-learned fields are read
    return {
        "YN": jnp.asarray(np.einsum("stjp,stjk->stkp", Y, N)),  # N^T Y
        "YMN": jnp.asarray(np.einsum("stijp,stjk->stikp", YM, N)),  # (dM/dpi) N
        "RN": jnp.asarray(np.einsum("stmj,stjk->stmk", R[:, :, driven, :], N)),
        "extN": jnp.asarray(np.einsum("stj,stjk->stk", prob["tau_ext"], N)),
        "pad": jnp.asarray(pad),
        "Y": jnp.asarray(Y), "YM": jnp.asarray(YM),
        "emg": jnp.asarray(prob["emg"][:, :, driven]),
        "lmt": jnp.asarray(prob["lmt"][:, :, driven]),
        "vmt": jnp.asarray(prob["vmt"][:, :, driven]),
        "Rd": jnp.asarray(R[:, :, driven, :]), "Rl": jnp.asarray(R[:, :, lsq, :]),
        "tau_ext": jnp.asarray(prob["tau_ext"]),
        "fixed": type(template)(*(jnp.asarray(np.asarray(v)[driven]) for v in template)),
    }


def _unpack(z, p0, scale, const, dyn, method):
    """Inertial parameters (n_in,) and the driven muscles' MTU parameters from relative
    coordinates."""
    lay = _layout(dyn, method)
    n_in = lay["n_in"]
    p = p0 + scale * jnp.maximum(z, -0.9)  # relative coordinates, sign kept
    per = p[n_in:n_in + lay["n_m"]].reshape(len(lay["learned"]), len(dyn.muscle_fields))
    shared = p[n_in + lay["n_m"]:]
    fixed = const["fixed"]
    nd = len(lay["driven"])
    sub = {}
    for f in fixed._fields:
        v = getattr(fixed, f)
        if f in dyn.muscle_fields:
            v = v.at[lay["pos"]].set(per[:, dyn.muscle_fields.index(f)])
        elif f in dyn.shared_fields:
            v = jnp.full((nd,), shared[dyn.shared_fields.index(f)])
        sub[f] = v
    return p[:n_in], type(fixed)(**sub)


def _forces(mp, const, dyn):
    """Driven-muscle forces (S, T, nd), N: 002:Eq.19-21 -> Eq.17-18 -> Eq.15."""
    return jax.vmap(lambda e, lm, vm: dyn.muscle_forces(mp, e, lm, vm))(
        const["emg"], const["lmt"], const["vmt"])


def _fast_terms(z, p0, scale, const, dyn, method):
    """``b = N^T e`` (S, T, k) and ``G = N^T M^2 N`` (S, T, k, k) of the fast form."""
    pi, mp = _unpack(z, p0, scale, const, dyn, method)
    f = _forces(mp, const, dyn)
    b = (jnp.einsum("stkp,p->stk", const["YN"], pi)
         - jnp.einsum("stmk,stm->stk", const["RN"], f) - const["extN"])  # N^T e
    W = jnp.einsum("stikp,p->stik", const["YMN"], pi)  # M N
    G = jnp.einsum("stik,stil->stkl", W, W) + jax.vmap(jax.vmap(jnp.diag))(const["pad"])
    return b, G


def _residual_sq(z, p0, scale, const, dyn, method):
    """``||(I - A J_md^T (A J_md^T)^+) d_t||^2`` of 002:Eq.14 in the fast form, shape (S, T)."""
    b, G = _fast_terms(z, p0, scale, const, dyn, method)
    return jnp.sum(b * jnp.linalg.solve(G, b[..., None])[..., 0], axis=-1)


def _residual_vec(z, p0, scale, const, dyn, method):
    """A residual vector with the norm of 002:Eq.14's: ``L^-1 b`` with ``G = L L^T``
    (S, T, k); equal to the projected residual up to a rotation per sample."""
    b, G = _fast_terms(z, p0, scale, const, dyn, method)
    L = jnp.linalg.cholesky(G)
    return jax.scipy.linalg.solve_triangular(L, b[..., None], lower=True)[..., 0]


def _loss(z, p0, scale, vd, const, dyn, method):
    """002:Eq.14."""
    r2 = _residual_sq(z, p0, scale, const, dyn, method)
    return jnp.sum(r2) / (r2.size * vd)


def _direct(z, p0, scale, const, dyn, method, rcond):
    """002:Eq.12-14 as written: ``d`` (S, T, 5) rad/s^2, the least-squares forces ``f_md``
    (S, T, n_lsq) N (002:Eq.13), the projected residual (S, T, 5) rad/s^2 and the muscle
    torque ``J_ms^T f_ms + J_md^T f_md`` (S, T, 5) Nm."""
    pi, mp = _unpack(z, p0, scale, const, dyn, method)
    f = _forces(mp, const, dyn)
    M = jnp.einsum("stijp,p->stij", const["YM"], pi)
    tau_s = jnp.einsum("stmj,stm->stj", const["Rd"], f)  # J_ms^T f_ms
    e = jnp.einsum("stjp,p->stj", const["Y"], pi) - tau_s - const["tau_ext"]
    d = jnp.linalg.solve(M, e[..., None])[..., 0]  # d = c - A J_ms^T f_ms (002:Eq.10, 14)
    if const["Rl"].shape[2] == 0:
        return d, jnp.zeros((*d.shape[:2], 0)), d, tau_s
    AJ = jnp.linalg.solve(M, jnp.swapaxes(const["Rl"], -1, -2))  # A J_md^T, (S, T, 5, n_lsq)
    pinv = jnp.linalg.pinv(AJ, rtol=rcond)
    f_md = jnp.einsum("stkj,stj->stk", pinv, d)  # 002:Eq.13
    r = d - jnp.einsum("stjk,stk->stj", AJ, f_md)  # (I - AJ AJ^+) d, 002:Eq.14
    return d, f_md, r, tau_s + jnp.einsum("stmj,stm->stj", const["Rl"], f_md)


@partial(jax.jit, static_argnames=("dyn", "method", "rcond"))
def _direct_many(Z, P0, SC, const, dyn, method, rcond):
    return jax.vmap(lambda z, p, s: _direct(z, p, s, const, dyn, method, rcond))(Z, P0, SC)


@partial(jax.jit, static_argnames=("dyn", "method"))
def _loss_many(Z, P0, SC, VD, const, dyn, method):
    return jax.vmap(lambda z, p, s, v: _loss(z, p, s, v, const, dyn, method))(Z, P0, SC, VD)


def _adam(lr: float, n_ep: int, lr_decay: float, eps: float):
    sched = optax.cosine_decay_schedule(lr, n_ep, alpha=lr_decay) if lr_decay < 1 else lr
    return optax.adam(sched, eps=eps)


@partial(jax.jit, static_argnames=("dyn", "method", "k", "lr", "n_ep", "lr_decay", "eps"))
def _run_block(z, state, P0, SC, VD, NORM, mask, const, dyn, method, k, lr, n_ep, lr_decay,
               eps):
    """``k`` Adam epochs of every guess (vmapped), in one scan."""
    opt = _adam(lr, n_ep, lr_decay, eps)

    def obj(zg, p0g, sg, vdg, ng):
        return _loss(zg, p0g, sg, vdg, const, dyn, method) / ng

    vg = jax.vmap(jax.value_and_grad(obj))

    def one(carry, _):
        zc, st = carry
        f, g = vg(zc, P0, SC, VD, NORM)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * mask
        upd, st = opt.update(g, st, zc)
        return (optax.apply_updates(zc, upd * mask), st), f

    return jax.lax.scan(one, (z, state), None, length=k)


class DeepMuscleIdentifier(Calibrator):
    """Arm identification, deep-muscle forces by least squares (Sanderink et al. Eq.12-14).

    Parameters
    ----------
    method : {"M1", "M2"}
        Without (M1) or with (M2) deep-muscle EMG (module docstring).
    epochs : int
        Stage 1 epochs (all parameters but ``l_ts``; 002: 10 000).
    slack_epochs : int
        Stage 2 epochs (``l_ts`` only; 002: 2 000).
    learning_rate : float
        Adam step in relative coordinates.
    slack_learning_rate : float, optional
        Stage 2 step (default: ``learning_rate``).
    record_every : int
        Epochs between parameter snapshots (also the length of one compiled block of epochs).
    rcond : float
        Relative singular-value cut-off of the pseudoinverse (002:Eq.13).
    lr_decay : float
        Final learning rate of each stage as a fraction of its initial one, reached by a cosine
        decay over the stage (1: constant rate).
    adam_eps : float
        Adam's ``eps`` (optax default 1e-8), compared with the raw gradient of what the
        optimizer sees (see ``scale_free``).
    scale_free : bool
        If True the optimizer sees 002:Eq.14 divided by its value at the initial guess, so
        ``adam_eps`` means the same for M1 and M2 and every record (the M1 loss starts near
        1e-6, the M2 loss near 1, module docstring "Optimizer"); the reported loss is 002:Eq.14.
    excitation_threshold : float
        Scoring only (:meth:`extra_metrics`): relative Gauss-Newton curvature at or above
        which a parameter counts as well excited (:func:`excitation_analysis`).
    """

    name = "deep-lsq"
    tags = Tags(time_varying=False, needs_ensemble=False, needs_jax=True)
    _parameter_constraints = {
        "method": [Options(_METHODS)],
        "epochs": [Interval(int, 0, None)],
        "slack_epochs": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "slack_learning_rate": [None, Interval(float, 0, None, closed="neither")],
        "record_every": [Interval(int, 1, None)],
        "rcond": [Interval(float, 0, None, closed="neither")],
        "lr_decay": [Interval(float, 0, 1, closed="right")],
        "adam_eps": [Interval(float, 0, None, closed="neither")],
        "scale_free": [bool],
        "excitation_threshold": [Interval(float, 0, 1, closed="neither")],
    }

    def __init__(
        self, *, method: str = "M1", epochs: int = 2000, slack_epochs: int = 400,
        learning_rate: float = 1e-3, slack_learning_rate: float | None = None,
        record_every: int = 10, rcond: float = 1e-8, lr_decay: float = 1.0,
        adam_eps: float = 1e-8, scale_free: bool = False, excitation_threshold: float = 1e-3,
    ) -> None:
        self.method = method
        self.epochs = epochs
        self.slack_epochs = slack_epochs
        self.learning_rate = learning_rate
        self.slack_learning_rate = slack_learning_rate
        self.record_every = record_every
        self.rcond = rcond
        self.lr_decay = lr_decay
        self.adam_eps = adam_eps
        self.scale_free = scale_free
        self.excitation_threshold = excitation_threshold

    # ------------------------------------------------------------------ model
    def _builder(self, model: Any, data: MuscleData, n_params: int | None = None) -> dict:
        """The problem's precomputed arrays and its functions of ``(z, p0, scale)``.

        Returns
        -------
        dict
            ``names``, ``is_muscle``, ``slack`` (mask of ``l_ts``), ``const`` (arrays),
            ``loss(z, p0, scale, var_d)`` (002:Eq.14, fast form), ``direct(z, p0, scale)``
            (``d``, ``f_md``, projected residual, muscle torque; 002:Eq.13-14 as written).
        """
        dyn = model.dynamics
        names, is_muscle = parameter_layout(dyn, self.method)
        if n_params is not None and n_params != len(names):
            raise DataError(f"initial guess must have {len(names)} entries (method "
                            f"{self.method!r}); got {n_params}")
        const = _precompute(model, data, self.method, self.rcond)
        m, rc = self.method, float(self.rcond)
        return {
            "names": names, "is_muscle": is_muscle, "const": const, "dyn": dyn,
            "slack": np.array([n.endswith(".l_ts") for n in names]),
            "loss": lambda z, p0, sc, vd: _loss(z, p0, sc, vd, const, dyn, m),
            "direct": lambda z, p0, sc: _direct(z, p0, sc, const, dyn, m, rc),
        }

    # ------------------------------------------------------------------ fit
    def fit(self, model: Any, data: MuscleData, p0: np.ndarray) -> DeepLSQResult:
        """Identify the parameters from the initial guess ``p0``.

        Parameters
        ----------
        model : object
            The arm's model (module docstring, "Model protocol").
        data : MuscleData
            Arm record(s).
        p0 : ndarray, shape (n,)
            Initial guess in the layout of :func:`parameter_layout` (``method``).

        Returns
        -------
        DeepLSQResult
        """
        p0 = np.asarray(p0, dtype=float)
        if p0.ndim != 1:
            raise DataError(f"initial guess must be a vector; got shape {p0.shape}")
        return self.fit_many(model, data, p0[None])[0]

    def fit_many(self, model: Any, data: MuscleData,
                 initial_guesses: np.ndarray) -> list[DeepLSQResult]:
        """Identify from several initial guesses at once (one vmapped, jitted computation).

        Every guess runs the same schedule; the epochs between two snapshots run in one
        compiled :func:`jax.lax.scan` vmapped over the guesses. Kernels are compiled once per
        (model dynamics, record shape, method, number of guesses, schedule) and reused by
        later calls.

        Parameters
        ----------
        model : object
        data : MuscleData
        initial_guesses : ndarray, shape (G, n)

        Returns
        -------
        list of DeepLSQResult, length G
            ``wall_time`` is the whole batch's; ``epoch_time`` is the batch's wall time per
            epoch divided by G (``info["batch_epoch_time"]`` is the undivided one).
        """
        self._validate()
        t_start = time.perf_counter()
        P0 = np.asarray(initial_guesses, dtype=float)
        if P0.ndim != 2 or P0.shape[0] < 1:
            raise DataError(f"initial_guesses must have shape (G, n); got {P0.shape}")
        if not np.all(np.isfinite(P0)):
            raise DataError("initial_guesses contain NaN/inf")
        G, n = P0.shape
        b = self._builder(model, data, n)
        names, slack, const, dyn = b["names"], b["slack"], b["const"], b["dyn"]
        scale = np.abs(P0)
        p0j, sj = jnp.asarray(P0), jnp.asarray(scale)
        z = jnp.zeros((G, n))
        rc = float(self.rcond)
        d0 = _direct_many(z, p0j, sj, const, dyn, self.method, rc)[0]
        vd = jnp.var(d0.reshape(G, -1), axis=1)  # var(d_t) at the initial guess, 002:Eq.14
        if not np.all(np.asarray(vd) > 0):
            raise DataError("d (002:Eq.14) is constant at an initial guess")
        L0 = _loss_many(z, p0j, sj, vd, const, dyn, self.method)
        norm = L0 if self.scale_free else jnp.ones(G)
        lr2 = self.learning_rate if self.slack_learning_rate is None else self.slack_learning_rate
        losses, snaps, snap_ep = [], [P0.copy()], [0]
        block_times = []  # (seconds, epochs) of every block but each stage's first
        ep = 0
        for n_ep, stage_mask, lr in ((self.epochs, ~slack, self.learning_rate),
                                     (self.slack_epochs, slack, lr2)):
            if n_ep == 0:
                continue
            mask = jnp.asarray(stage_mask[None, :] & (scale > 0), dtype=float)
            hyper = {"lr": float(lr), "lr_decay": float(self.lr_decay),
                     "eps": float(self.adam_eps),  # n_ep matters (and is static) only if decaying
                     "n_ep": int(n_ep) if self.lr_decay < 1 else 0}
            state = _adam(**hyper).init(z)
            done, first = 0, True
            while done < n_ep:
                k = min(self.record_every - ep % self.record_every, n_ep - done)
                t0 = time.perf_counter()
                (z, state), f = _run_block(z, state, p0j, sj, vd, norm, mask, const, dyn,
                                           self.method, k, **hyper)
                f = np.asarray(f)  # waits for the block
                if not first:
                    block_times.append((time.perf_counter() - t0, k))
                first = False
                losses.append(f * np.asarray(norm)[None, :])
                done += k
                ep += k
                if ep % self.record_every == 0 or done == n_ep:
                    snaps.append(P0 + scale * np.maximum(np.asarray(z), -0.9))
                    snap_ep.append(ep)
        est = P0 + scale * np.maximum(np.asarray(z), -0.9)
        _, f_md, _, tau = (np.asarray(a) for a in _direct_many(z, p0j, sj, const, dyn,
                                                                 self.method, rc))
        final = np.asarray(_loss_many(z, p0j, sj, vd, const, dyn, self.method))
        if block_times:
            tt = np.array(block_times)
            batch_epoch = float(tt[:, 0].sum() / tt[:, 1].sum())
        else:
            batch_epoch = float("nan")
        wall = time.perf_counter() - t_start
        L = np.concatenate(losses, axis=0) if losses else np.zeros((0, G))
        traj = np.stack(snaps, axis=1)  # (G, n_snap, n)
        return [
            DeepLSQResult(
                names=list(names), estimate=est[g], initial=P0[g], loss=L[:, g],
                trajectory=traj[g], snapshot_epochs=np.asarray(snap_ep), wall_time=wall,
                epoch_time=batch_epoch / G, deep_force=f_md[g], torque=tau[g],
                info={"method": self.method, "var_d0": float(vd[g]),
                      "is_muscle": b["is_muscle"], "initial_loss": float(L0[g]),
                      "final_loss": float(final[g]), "epochs": self.epochs,
                      "slack_epochs": self.slack_epochs, "learning_rate": self.learning_rate,
                      "lr_decay": self.lr_decay, "adam_eps": self.adam_eps,
                      "scale_free": self.scale_free, "batch_size": G,
                      "batch_epoch_time": batch_epoch},
            )
            for g in range(G)
        ]

    # ------------------------------------------------------------------ calibrator
    def calibrate(self, model: Any, data: MuscleData, objective: Any = None, *,
                  space: Any = None) -> CalibrationResult:
        """Identify from every initial guess of ``model`` at once (the calibration task's
        entry point).

        Parameters
        ----------
        model : object
            With ``dynamics``, ``base_params``, ``initial_guesses`` and ``guess_names``
            (module docstring); the guesses are mapped to this method's layout by name.
        data : MuscleData
            Arm record(s).
        objective : object, optional
            Ignored: the loss is 002:Eq.14 (the task's objective weights and penalty do not
            apply).
        space : CalibrationSpace, optional
            The task's parameter space; ``info["x"]`` is the chosen estimate's MTU
            parameters in its coordinates (the estimate itself when None).

        Returns
        -------
        CalibrationResult
            Of the guess with the lowest final 002:Eq.14 loss: ``params`` (every identified
            parameter by name), ``specs``, ``history`` (its loss per epoch), ``predicted``
            calibration torque (muscle torque, Nm); ``info["runs"]`` holds every guess's
            :class:`DeepLSQResult`.
        """
        self._validate()
        names, is_muscle = parameter_layout(model.dynamics, self.method)
        gnames = list(model.guess_names)
        missing = [n for n in names if n not in gnames]
        if missing:
            raise DataError(f"the model's initial guesses lack {missing[:5]} (method "
                            f"{self.method!r})")
        P0 = np.asarray(model.initial_guesses, dtype=float)[:, [gnames.index(n)
                                                                  for n in names]]
        runs = self.fit_many(model, data, P0)
        final = np.array([r.info["final_loss"] for r in runs])
        best = int(np.argmin(np.where(np.isfinite(final), final, np.inf)))
        r = runs[best]
        dyn = model.dynamics
        specs = [ParameterSpec(n, dyn.unit(n), -np.inf, np.inf,
                               group="muscle" if m else "inertial")
                 for n, m in zip(names, is_muscle)]
        x = r.estimate if space is None else _space_vector(space, names, r.estimate)
        return CalibrationResult(
            params={n: float(v) for n, v in zip(names, r.estimate)},
            specs=specs, history=r.loss, wall_time=r.wall_time,
            evaluations=int(len(runs) * (self.epochs + self.slack_epochs)),
            predicted={"calibration": {"torque": r.torque}},
            info={"calibrator": self.name, "x": x, "objective": float(final[best]),
                  "initial_objective": r.info["initial_loss"], "best_guess": best,
                  "n_guesses": len(runs), "epoch_time": r.epoch_time,
                  "batch_epoch_time": r.info["batch_epoch_time"], "runs": runs,
                  **self.get_params()},
        )

    def extra_metrics(self, model: Any, space: Any, result: CalibrationResult,
                      calibration: MuscleData, held_out: list) -> dict[str, float]:
        """Scores against the truth of the record, medians over the guesses (each guess one
        identification run, 002 Sec. IV-C), percent: ``cr1``, ``cr2``, ``cr2m`` (over the M1
        parameters for both methods, 002 Sec. IV), ``cr2_own``, ``cr2_base``, ``cr2_we``
        (:func:`scores`), the same of the initial guesses (``initial_*``), and
        ``epoch_time`` (s per epoch per guess)."""
        sc = self._scored(model, result, calibration)
        out = {k: float(np.nanmedian(sc["final"][k])) for k in SCORES}
        out.update({f"initial_{k}": float(np.nanmedian(sc["initial"][k])) for k in SCORES})
        out["epoch_time"] = float(result.info["epoch_time"])
        return out

    def extra_arrays(self, model: Any, space: Any, result: CalibrationResult,
                     calibration: MuscleData, held_out: list) -> dict[str, np.ndarray]:
        """Per-guess arrays for reports (002 Fig. 4-5): ``deep_names`` (n,), ``deep_true``,
        ``deep_identifiable``; ``guess_initial``, ``guess_estimate`` (G, n),
        ``percent_error`` (G, n) (NaN for zero-truth entries), ``guess_loss`` (G, epochs),
        ``guess_<score>`` and ``guess_initial_<score>`` (G,), ``snapshot_epochs`` (n_snap,),
        ``curve_<score>`` (G, n_snap); and the excitation analysis of the record at the
        truth (M1 parameters): ``excitation_names``, ``excitation_relative``,
        ``well_excited``, ``excitation_eigenvalues``."""
        sc = self._scored(model, result, calibration)
        runs = result.info["runs"]
        names = list(runs[0].names)
        out: dict[str, np.ndarray] = {
            "deep_names": np.asarray(names), "deep_true": sc["true"],
            "deep_identifiable": np.asarray([n in sc["identifiable"] for n in names]),
            "guess_initial": np.stack([r.initial for r in runs]),
            "guess_estimate": np.stack([r.estimate for r in runs]),
            "guess_loss": np.stack([r.loss for r in runs]),
            "snapshot_epochs": np.asarray(runs[0].snapshot_epochs),
            "excitation_names": np.asarray(sc["excitation"]["names"]),
            "excitation_relative": np.asarray(sc["excitation"]["relative"]),
            "well_excited": np.asarray(sc["excitation"]["well_excited"]),
            "excitation_eigenvalues": np.asarray(sc["excitation"]["eigenvalues"]),
        }
        t = sc["true"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["percent_error"] = np.where(
                t != 0, 100 * np.abs(out["guess_estimate"] - t) / np.abs(t), np.nan)
        for k in SCORES:
            out[f"guess_{k}"] = np.asarray(sc["final"][k])
            out[f"guess_initial_{k}"] = np.asarray(sc["initial"][k])
            out[f"curve_{k}"] = np.asarray(sc["curves"][k])
        return out

    def _scored(self, model: Any, result: CalibrationResult, data: MuscleData) -> dict:
        """Every guess's scores (cached in ``result.info["scores"]``)."""
        if "scores" in result.info:
            return result.info["scores"]
        truth = getattr(data, "truth", None) or {}
        if "parameters" not in truth or "base_inertial_map" not in truth:
            raise DataError("scoring needs MuscleData.truth with 'parameters' and "
                            "'base_inertial_map' (the arm identification plant gives them)")
        ref = dict(zip(truth["parameters"]["names"], truth["parameters"]["values"]))
        dyn = model.dynamics
        names1, _ = parameter_layout(dyn, "M1")
        gt1 = np.array([ref[n] for n in names1], dtype=float)
        exc = excitation_analysis(data, model, "M1", gt1, threshold=self.excitation_threshold,
                                  rcond=self.rcond)
        P = np.asarray(truth["base_inertial_map"], dtype=float)
        runs = result.info["runs"]
        names = list(runs[0].names)
        own = np.array([ref[n] for n in names], dtype=float)
        mus_own = parameter_layout(dyn, self.method)[1]

        def all_scores(p: np.ndarray) -> dict:
            return scores(names, p, ref, names1, mus_own, P, exc["well_excited"])

        per = {"final": [all_scores(r.estimate) for r in runs],
               "initial": [all_scores(r.initial) for r in runs]}
        curves = [[all_scores(p) for p in r.trajectory] for r in runs]
        out = {k: {s: np.array([d[s] for d in v]) for s in SCORES} for k, v in per.items()}
        out["curves"] = {s: np.array([[d[s] for d in c] for c in curves]) for s in SCORES}
        out.update(true=own, excitation=exc, identifiable=set(truth.get("identifiable", ())))
        result.info["scores"] = out
        return out


def _space_vector(space: Any, names: list[str], estimate: np.ndarray) -> np.ndarray:
    """An arm estimate's MTU parameters in the calibration space's coordinates: ``l_opt``,
    ``l_ts`` as identified, strength = identified / base ``f_max`` (averaged over a group),
    other entries (and muscles not identified) at the space's start."""
    val = dict(zip(names, np.asarray(estimate, dtype=float)))
    x = np.array(space.x0, dtype=float)
    k = 0
    for blk in space.blocks:
        for e, idx in enumerate(blk.index):
            keys = [f"{space.muscles[i]}.{blk.field}" for i in idx]
            if all(key in val for key in keys):
                v = np.array([val[key] for key in keys])
                if blk.kind == "strength":
                    base = np.asarray(space.base.f_max, dtype=float)[list(idx)]
                    x[k + e] = float(np.mean(v / base))
                elif blk.kind == "relative":
                    x[k + e] = float(np.mean(v))
        k += len(blk.names)
    return x


def scores(names: list[str], estimate: np.ndarray, truth: dict, m1_names: list[str],
           is_muscle: np.ndarray, base_map: np.ndarray,
           well_excited: np.ndarray | None = None) -> dict[str, float]:
    """Every parameter score of one estimate, percent (002:Eq.22-23).

    Entries whose true value is zero are left out (undefined relative error; 002 Sec. IV-C
    keeps the un-pennated ``phi_opt`` at zero).

    Parameters
    ----------
    names : list of str
        Layout of ``estimate`` (M1 or M2, :func:`parameter_layout`).
    estimate : ndarray, shape (len(names),)
    truth : dict of str to float
        True value of every parameter by name.
    m1_names : list of str
        The M1 layout (a subset of ``names``).
    is_muscle : ndarray of bool, shape (len(names),)
    base_map : ndarray, shape (n_base, n_in)
        Identifiable combinations of the n_in inertial parameters (the first entries of
        both layouts).
    well_excited : ndarray of bool, shape (len(m1_names),), optional
        Without it ``cr2_we`` is NaN.

    Returns
    -------
    dict
        ``cr1``, ``cr2``, ``cr2m`` over the M1 parameters (002 Sec. IV: "only the
        identifiable model parameters of M1 were used for the comparison"); ``cr2_own``
        over ``names``; ``cr2_base`` over M1 with the inertial parameters replaced by their
        base combinations (as 002 Fig. 5 does with its dynamic coefficients); ``cr2_we``
        over the well-excited M1 parameters.
    """
    e = np.asarray(estimate, dtype=float)
    idx = {n: i for i, n in enumerate(names)}
    e1 = e[[idx[n] for n in m1_names]]
    t1 = np.array([truth[n] for n in m1_names], dtype=float)
    t_own = np.array([truth[n] for n in names], dtype=float)
    mus1 = np.asarray(is_muscle, dtype=bool)[[idx[n] for n in m1_names]]
    keep = t1 != 0
    out = {"cr1": cr1(t1[keep], e1[keep]),  # 002:Eq.22
           "cr2": cr2(t1[keep], e1[keep]),  # 002:Eq.23
           "cr2m": cr2(t1[keep & mus1], e1[keep & mus1])}  # 002 Sec. IV-B: muscles only
    k_own = t_own != 0
    out["cr2_own"] = cr2(t_own[k_own], e[k_own])
    P = np.asarray(base_map, dtype=float)
    n_in = P.shape[1]
    t_b = np.concatenate([P @ t1[:n_in], t1[n_in:]])
    e_b = np.concatenate([P @ e1[:n_in], e1[n_in:]])
    kb = t_b != 0
    out["cr2_base"] = cr2(t_b[kb], e_b[kb])
    w = None if well_excited is None else np.asarray(well_excited, dtype=bool)
    out["cr2_we"] = cr2(t1[w], e1[w]) if w is not None and w.any() else float("nan")
    return out


@partial(jax.jit, static_argnames=("dyn", "method"))
def _residual_jacobian(p, const, dyn, method):
    """Jacobian of the stacked residual of 002:Eq.14 (:func:`_residual_vec`) w.r.t. the
    relative errors ``(p' - p) / |p|``; shape (S T k, n)."""
    sc = jnp.abs(p)
    return jax.jacfwd(lambda z: _residual_vec(z, p, sc, const, dyn, method).ravel())(
        jnp.zeros(p.size))


def excitation_analysis(
    data: MuscleData, model: Any, method: str, params: np.ndarray,
    threshold: float = 1e-3, rcond: float = 1e-8,
) -> dict:
    """Local (Gauss-Newton) identifiability of every parameter on a record (002 Sec. III-D).

    With ``r`` the stacked residuals of 002:Eq.14 (:func:`_residual_vec`) and ``J`` their
    Jacobian with respect to the relative parameter errors ``(p - p*) / |p*|`` at ``p*``
    (e.g. the truth), ``H = J^T J`` is the Gauss-Newton curvature of the loss. For
    parameter i, the Schur complement ``s_i = 1 / (H^-1)_ii = ||(I - P_-i) J_i||^2`` (``P_-i``:
    projection on the other columns) is the loss curvature along ``p_i`` when every other parameter
    re-adjusts to compensate: ``s_i = 0`` means the data cannot tell ``p_i`` from a combination
    of the others (structurally non-identifiable, e.g. raw inertial parameters outside the base
    set); a small ``s_i / max_j s_j`` means poorly excited (the same relative error costs
    ``max s / s_i`` times less loss than in the best-excited parameter).

    Parameters
    ----------
    data : MuscleData
        Arm record.
    model : object
        The arm's model (module docstring).
    method : {"M1", "M2"}
    params : ndarray, shape (n,)
        Linearization point in the layout of :func:`parameter_layout`.
    threshold : float
        ``s_i / max s`` at or above which a parameter counts as well excited (stated choice).
    rcond : float
        Pseudoinverse cut-off of 002:Eq.13.

    Returns
    -------
    dict
        ``names``; ``schur`` (n,), ``relative`` (n,) = ``schur / max(schur)``; ``alone`` (n,)
        = ``H_ii`` (no compensation); ``well_excited`` (n,) bool (``relative >= threshold``
        and a non-zero value at ``params``); ``eigenvalues`` of ``H`` divided by the largest;
        ``threshold``.
    """
    names, _ = parameter_layout(model.dynamics, method)
    p = np.asarray(params, dtype=float)
    if p.shape != (len(names),):
        raise DataError(f"params must have shape ({len(names)},); got {p.shape}")
    if not (np.isfinite(threshold) and 0 < threshold < 1):
        raise InvalidParameterError(
            f"The 'threshold' parameter must be in (0, 1); got {threshold!r}")
    const = _precompute(model, data, method, rcond)
    J = np.asarray(_residual_jacobian(jnp.asarray(p), const, model.dynamics, method))
    # s_i = 1 / (H^-1)_ii, from the SVD of J (H = V diag(sigma^2) V^T), regularized by
    # delta = 1e-12 sigma_max^2 so that exactly unidentifiable parameters get s_i ~ delta
    _, sv, Vt = np.linalg.svd(J, full_matrices=False)
    w = sv**2
    delta = 1e-12 * w.max()
    schur = 1.0 / np.sum(Vt**2 / (w + delta)[:, None], axis=0)
    rel = schur / schur.max()
    return {"names": list(names), "schur": schur, "relative": rel,
            "alone": np.sum(J * J, axis=0), "well_excited": (rel >= threshold) & (p != 0),
            "eigenvalues": w / w.max(), "threshold": threshold}
