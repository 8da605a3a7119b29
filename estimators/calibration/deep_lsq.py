"""Arm identification without deep-muscle EMG: deep forces by least squares (002 Sec. III-D/E).

With the muscle torque split into superficial (EMG recorded) and deep (no EMG) contributions,
002:Eq.12 reads ``A (J_ms^T f_ms + J_md^T f_md) = c``, with ``A = M^-1`` and
``c = qdd + A tau_bias`` for our unconstrained chain (002:Eq.10 with no constraint rows; the
weak PD and joint-limit torques of :mod:`plants.arm.simulate` are known external torques and
are moved to the right-hand side). The deep forces are the least-squares solution (002:Eq.13)

    f_md = (A J_md^T)^+ (c - A J_ms^T f_ms),

and the loss is the residual of that solution (002:Eq.14), normalized by the variance of
``d = c - A J_ms^T f_ms`` at the initial guess:

    l = sum_t || (I - A J_md^T (A J_md^T)^+) d_t ||^2 / (T var(d)).

Superficial forces come from the EMG through the continuous-delay recursive filter
(002:Eq.19-21, :func:`plants.muscle.neural_activation`), the first-order activation dynamics
(002:Eq.17-18) and rigid-tendon Hill MTUs (002:Eq.15), with MTU lengths, velocities and
moment arms as recorded (002 Sec. IV-A). The bone inertial parameters (30) and the
parameters of the identifiable muscles plus the five shared ones are optimized together.

Methods (002 Sec. IV-B, :func:`plants.arm.truth.parameter_vector`):

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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.errors import DataError, InvalidParameterError
from bench.types import MuscleData

__all__ = ["DeepLSQResult", "DeepMuscleIdentifier", "arm_problem", "excitation_analysis"]

_METHODS = ("M1", "M2")


@dataclass
class DeepLSQResult:
    """Outcome of :meth:`DeepMuscleIdentifier.fit` (one per guess of ``fit_many``).

    Attributes
    ----------
    names : list of str
        Parameter names (:func:`plants.arm.truth.parameter_vector` layout).
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
    info: dict = field(default_factory=dict)


def arm_problem(data: MuscleData, method: str = "M1"):
    """Arrays and index sets of the identification problem from an arm record.

    Parameters
    ----------
    data : MuscleData
        From :class:`plants.arm.ArmPlant`: ``excitation`` (S, T, 16) EMG, ``angle`` (S, T, 5),
        ``lmt`` (S, T, 16), ``moment_arm`` (S, T, 16, 5); ``meta`` with ``qd``, ``qdd``,
        ``vmt``, ``tau_passive``, ``tau_control``.
    method : {"M1", "M2"}

    Returns
    -------
    dict
        ``emg``, ``q``, ``qd``, ``qdd``, ``lmt``, ``vmt``, ``R``, ``tau_ext`` arrays; ``driven``
        (indices of muscles whose forces come from EMG) and ``lsq`` (indices solved by 002:Eq.13).
    """
    from plants.arm.muscles import MUSCLES
    from plants.arm.truth import IDENTIFIABLE_MUSCLES

    if method not in _METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {_METHODS}. Got {method!r} instead."
        )
    if not isinstance(data, MuscleData):
        raise DataError(f"arm identification needs MuscleData; got {type(data).__name__}")
    meta = data.meta or {}
    for k in ("qd", "qdd", "vmt", "tau_passive", "tau_control"):
        if k not in meta:
            raise DataError(f"MuscleData.meta[{k!r}] is required (ArmPlant records it)")
    if data.lmt is None or data.moment_arm is None:
        raise DataError("MuscleData.lmt and MuscleData.moment_arm are required")
    if list(data.muscles) != list(MUSCLES):
        raise DataError(f"MuscleData.muscles must be the arm's {list(MUSCLES)}")
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
    if arrays["R"].shape != (S, T, M, 5):
        raise DataError(f"MuscleData.moment_arm must have shape {(S, T, M, 5)}")
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise DataError(f"arm record field {k!r} contains NaN/inf")
    if method == "M1":
        driven = np.array([MUSCLES.index(m) for m in IDENTIFIABLE_MUSCLES])
    else:
        driven = np.arange(M)
    lsq = np.setdiff1d(np.arange(M), driven)
    arrays["driven"] = driven
    arrays["lsq"] = lsq
    return arrays


def _null_basis(J: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of the null space of ``J`` per sample, zero-padded to a fixed width.

    Parameters
    ----------
    J : ndarray, shape (S, T, n_lsq, 5)
        ``J_md`` (rows: least-squares muscles, columns: DoFs), m.
    rcond : float
        Singular values below ``rcond * s_max`` count as zero.

    Returns
    -------
    N : ndarray, shape (S, T, 5, k)
        Columns span ``null(J_md)`` (the torque directions no least-squares force can give);
        ``k = 5 - min rank``; samples of higher rank have zero columns.
    pad : ndarray, shape (S, T, k)
        1 for the zero (padding) columns.
    """
    S, T = J.shape[:2]
    if J.shape[2] == 0:
        return np.broadcast_to(np.eye(5), (S, T, 5, 5)).copy(), np.zeros((S, T, 5))
    _, s, Vt = np.linalg.svd(J, full_matrices=True)
    rank = np.sum(s > rcond * s[..., :1], axis=-1)  # (S, T)
    k = 5 - int(rank.min())
    if k == 0:
        raise DataError("the least-squares muscles span every DoF at every sample: "
                        "002:Eq.14 is identically zero")
    N = np.swapaxes(Vt[..., 5 - k:, :], -1, -2)  # (S, T, 5, k): smallest singular directions
    pad = (np.arange(k)[None, None, :] < (k - (5 - rank))[..., None]).astype(float)
    return N * (1.0 - pad)[..., None, :], pad


@jax.jit
def _regressors(q, qd, qdd):
    """``Y`` (S, T, 5, 30) with ``tau_ID = Y pi`` and ``dM/dpi`` (S, T, 5, 5, 30), exact (the
    RNEA is linear in the inertial parameters)."""
    from plants.arm import rigid

    Y = jax.vmap(jax.vmap(rigid.regressor))(q, qd, qdd)
    YM = jax.vmap(jax.vmap(lambda qt: jax.jacfwd(
        lambda p: rigid.mass_matrix(qt, p.reshape(3, 10)))(jnp.zeros(30))))(q)
    return Y, YM


@cache
def _layout(method: str):
    """Static index sets: learned muscles, driven (EMG) and least-squares muscles, and the
    position of each learned muscle among the driven ones."""
    from plants.arm.muscles import MUSCLES
    from plants.arm.truth import IDENTIFIABLE_MUSCLES, MUSCLE_FIELDS

    learned = IDENTIFIABLE_MUSCLES if method == "M1" else MUSCLES
    driven = tuple(MUSCLES.index(m) for m in learned)  # M1: learned = driven (module doc)
    lsq = tuple(i for i in range(len(MUSCLES)) if i not in driven)
    pos = tuple(driven.index(MUSCLES.index(m)) for m in learned)
    return {"learned": learned, "driven": driven, "lsq": lsq, "pos": np.array(pos),
            "n_m": len(learned) * len(MUSCLE_FIELDS)}


def _precompute(data: MuscleData, method: str, rcond: float) -> dict:
    """Parameter-independent arrays of the fast form of 002:Eq.14 (module docstring)."""
    from plants.arm.muscles import default_muscle_params

    prob = arm_problem(data, method)
    driven, lsq = prob["driven"], prob["lsq"]
    Y, YM = (np.asarray(v) for v in _regressors(
        *(jnp.asarray(prob[k]) for k in ("q", "qd", "qdd"))))
    R = prob["R"]
    N, pad = _null_basis(R[:, :, lsq, :], rcond)
    template = default_muscle_params(float(data.fs))  # only non-learned fields are read
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


def _unpack(z, p0, scale, const, method):
    """Inertial parameters (30,) and the driven muscles' MTUParams from relative coordinates."""
    from plants.arm.truth import MUSCLE_FIELDS, SHARED_FIELDS

    lay = _layout(method)
    p = p0 + scale * jnp.maximum(z, -0.9)  # relative coordinates, sign kept
    per = p[30:30 + lay["n_m"]].reshape(len(lay["learned"]), len(MUSCLE_FIELDS))
    shared = p[30 + lay["n_m"]:]
    fixed = const["fixed"]
    nd = len(lay["driven"])
    sub = {}
    for f in fixed._fields:
        v = getattr(fixed, f)
        if f in MUSCLE_FIELDS:
            v = v.at[lay["pos"]].set(per[:, MUSCLE_FIELDS.index(f)])
        elif f in SHARED_FIELDS:
            v = jnp.full((nd,), shared[SHARED_FIELDS.index(f)])
        sub[f] = v
    return p[:30], type(fixed)(**sub)


def _forces(mp, const, fs):
    """Driven-muscle forces (S, T, nd), N: 002:Eq.19-21 -> Eq.17-18 -> Eq.15."""
    from plants.muscle import first_order_activation, mtu_force, neural_activation

    def trial(emg, lmt, vmt):
        u = neural_activation(emg, mp.c1, mp.c2, mp.delay, fs)  # 002:Eq.19-21
        a = first_order_activation(u, mp.t_act, mp.t_deact, fs)  # 002:Eq.17-18
        return mtu_force(mp, a, lmt, vmt, "rigid")  # 002:Eq.15

    return jax.vmap(trial)(const["emg"], const["lmt"], const["vmt"])


def _fast_terms(z, p0, scale, const, method, fs):
    """``b = N^T e`` (S, T, k) and ``G = N^T M^2 N`` (S, T, k, k) of the fast form."""
    pi, mp = _unpack(z, p0, scale, const, method)
    f = _forces(mp, const, fs)
    b = (jnp.einsum("stkp,p->stk", const["YN"], pi)
         - jnp.einsum("stmk,stm->stk", const["RN"], f) - const["extN"])  # N^T e
    W = jnp.einsum("stikp,p->stik", const["YMN"], pi)  # M N
    G = jnp.einsum("stik,stil->stkl", W, W) + jax.vmap(jax.vmap(jnp.diag))(const["pad"])
    return b, G


def _residual_sq(z, p0, scale, const, method, fs):
    """``||(I - A J_md^T (A J_md^T)^+) d_t||^2`` of 002:Eq.14 in the fast form, shape (S, T)."""
    b, G = _fast_terms(z, p0, scale, const, method, fs)
    return jnp.sum(b * jnp.linalg.solve(G, b[..., None])[..., 0], axis=-1)


def _residual_vec(z, p0, scale, const, method, fs):
    """A residual vector with the norm of 002:Eq.14's: ``L^-1 b`` with ``G = L L^T``
    (S, T, k); equal to the projected residual up to a rotation per sample."""
    b, G = _fast_terms(z, p0, scale, const, method, fs)
    L = jnp.linalg.cholesky(G)
    return jax.scipy.linalg.solve_triangular(L, b[..., None], lower=True)[..., 0]


def _loss(z, p0, scale, vd, const, method, fs):
    """002:Eq.14."""
    r2 = _residual_sq(z, p0, scale, const, method, fs)
    return jnp.sum(r2) / (r2.size * vd)


def _direct(z, p0, scale, const, method, fs, rcond):
    """002:Eq.12-14 as written: ``d`` (S, T, 5) rad/s^2, the least-squares forces ``f_md``
    (S, T, n_lsq) N (002:Eq.13) and the projected residual (S, T, 5) rad/s^2."""
    pi, mp = _unpack(z, p0, scale, const, method)
    f = _forces(mp, const, fs)
    M = jnp.einsum("stijp,p->stij", const["YM"], pi)
    e = (jnp.einsum("stjp,p->stj", const["Y"], pi)
         - jnp.einsum("stmj,stm->stj", const["Rd"], f) - const["tau_ext"])
    d = jnp.linalg.solve(M, e[..., None])[..., 0]  # d = c - A J_ms^T f_ms (002:Eq.10, 14)
    if const["Rl"].shape[2] == 0:
        return d, jnp.zeros((*d.shape[:2], 0)), d
    AJ = jnp.linalg.solve(M, jnp.swapaxes(const["Rl"], -1, -2))  # A J_md^T, (S, T, 5, n_lsq)
    pinv = jnp.linalg.pinv(AJ, rtol=rcond)
    f_md = jnp.einsum("stkj,stj->stk", pinv, d)  # 002:Eq.13
    r = d - jnp.einsum("stjk,stk->stj", AJ, f_md)  # (I - AJ AJ^+) d, 002:Eq.14
    return d, f_md, r


@partial(jax.jit, static_argnames=("method", "fs", "rcond"))
def _direct_many(Z, P0, SC, const, method, fs, rcond):
    return jax.vmap(lambda z, p, s: _direct(z, p, s, const, method, fs, rcond))(Z, P0, SC)


@partial(jax.jit, static_argnames=("method", "fs"))
def _loss_many(Z, P0, SC, VD, const, method, fs):
    return jax.vmap(lambda z, p, s, v: _loss(z, p, s, v, const, method, fs))(Z, P0, SC, VD)


def _adam(lr: float, n_ep: int, lr_decay: float, eps: float):
    sched = optax.cosine_decay_schedule(lr, n_ep, alpha=lr_decay) if lr_decay < 1 else lr
    return optax.adam(sched, eps=eps)


@partial(jax.jit, static_argnames=("method", "fs", "k", "lr", "n_ep", "lr_decay", "eps"))
def _run_block(z, state, P0, SC, VD, NORM, mask, const, method, fs, k, lr, n_ep, lr_decay,
               eps):
    """``k`` Adam epochs of every guess (vmapped), in one scan."""
    opt = _adam(lr, n_ep, lr_decay, eps)

    def obj(zg, p0g, sg, vdg, ng):
        return _loss(zg, p0g, sg, vdg, const, method, fs) / ng

    vg = jax.vmap(jax.value_and_grad(obj))

    def one(carry, _):
        zc, st = carry
        f, g = vg(zc, P0, SC, VD, NORM)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * mask
        upd, st = opt.update(g, st, zc)
        return (optax.apply_updates(zc, upd * mask), st), f

    return jax.lax.scan(one, (z, state), None, length=k)


class DeepMuscleIdentifier:
    """Gradient identification of bone and muscle parameters (002:Eq.12-14).

    Parameters
    ----------
    method : {"M1", "M2"}
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
    """

    def __init__(
        self, *, method: str = "M1", epochs: int = 2000, slack_epochs: int = 400,
        learning_rate: float = 1e-3, slack_learning_rate: float | None = None,
        record_every: int = 10, rcond: float = 1e-8, lr_decay: float = 1.0,
        adam_eps: float = 1e-8, scale_free: bool = False,
    ) -> None:
        if method not in _METHODS:
            raise InvalidParameterError(
                f"The 'method' parameter of DeepMuscleIdentifier must be one of {_METHODS}. "
                f"Got {method!r} instead."
            )
        for name, v in (("epochs", epochs), ("slack_epochs", slack_epochs)):
            if not (isinstance(v, int) and v >= 0):
                raise InvalidParameterError(
                    f"The {name!r} parameter of DeepMuscleIdentifier must be an int >= 0; got {v!r}"
                )
        if not (isinstance(record_every, int) and record_every >= 1):
            raise InvalidParameterError(f"'record_every' must be an int >= 1; got {record_every!r}")
        for name, v in (("learning_rate", learning_rate), ("rcond", rcond),
                        ("adam_eps", adam_eps)):
            if not (np.isfinite(v) and v > 0):
                raise InvalidParameterError(f"The {name!r} parameter must be > 0; got {v!r}")
        if slack_learning_rate is not None and not (
                np.isfinite(slack_learning_rate) and slack_learning_rate > 0):
            raise InvalidParameterError(
                f"The 'slack_learning_rate' parameter must be > 0; got {slack_learning_rate!r}")
        if not (np.isfinite(lr_decay) and 0 < lr_decay <= 1):
            raise InvalidParameterError(
                f"The 'lr_decay' parameter must be in (0, 1]; got {lr_decay!r}")
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

    # ------------------------------------------------------------------ model
    def _builder(self, data: MuscleData, n_params: int | None = None) -> dict:
        """The problem's precomputed arrays and its functions of ``(z, p0, scale)``.

        Returns
        -------
        dict
            ``names``, ``is_muscle``, ``slack`` (mask of ``l_ts``), ``const`` (arrays),
            ``loss(z, p0, scale, var_d)`` (002:Eq.14, fast form), ``direct(z, p0, scale)``
            (``d``, ``f_md``, projected residual by 002:Eq.13-14 as written).
        """
        from plants.arm.truth import parameter_vector

        names, _, is_muscle = parameter_vector(self.method, float(data.fs))
        if n_params is not None and n_params != len(names):
            raise DataError(f"initial guess must have {len(names)} entries (method "
                            f"{self.method!r}); got {n_params}")
        const = _precompute(data, self.method, self.rcond)
        fs, m, rc = float(data.fs), self.method, float(self.rcond)
        return {
            "names": names, "is_muscle": is_muscle, "const": const, "fs": fs,
            "slack": np.array([n.endswith(".l_ts") for n in names]),
            "loss": lambda z, p0, sc, vd: _loss(z, p0, sc, vd, const, m, fs),
            "direct": lambda z, p0, sc: _direct(z, p0, sc, const, m, fs, rc),
        }

    # ------------------------------------------------------------------ fit
    def fit(self, data: MuscleData, p0: np.ndarray) -> DeepLSQResult:
        """Identify the parameters from the initial guess ``p0``.

        Parameters
        ----------
        data : MuscleData
            Arm record(s) (:class:`plants.arm.ArmPlant`).
        p0 : ndarray, shape (n,)
            Initial guess in the layout of :func:`plants.arm.truth.parameter_vector`
            (``method``), e.g. from :func:`plants.arm.truth.sample_initial_guess`.

        Returns
        -------
        DeepLSQResult
        """
        p0 = np.asarray(p0, dtype=float)
        if p0.ndim != 1:
            raise DataError(f"initial guess must be a vector; got shape {p0.shape}")
        return self.fit_many(data, p0[None])[0]

    def fit_many(self, data: MuscleData, initial_guesses: np.ndarray) -> list[DeepLSQResult]:
        """Identify from several initial guesses at once (one vmapped, jitted computation).

        Every guess runs the same schedule; the epochs between two snapshots run in one
        compiled :func:`jax.lax.scan` vmapped over the guesses. Kernels are compiled once per
        (record shape, method, number of guesses, schedule) and reused by later calls.

        Parameters
        ----------
        data : MuscleData
        initial_guesses : ndarray, shape (G, n)

        Returns
        -------
        list of DeepLSQResult, length G
            ``wall_time`` is the whole batch's; ``epoch_time`` is the batch's wall time per
            epoch divided by G (``info["batch_epoch_time"]`` is the undivided one).
        """
        t_start = time.perf_counter()
        P0 = np.asarray(initial_guesses, dtype=float)
        if P0.ndim != 2 or P0.shape[0] < 1:
            raise DataError(f"initial_guesses must have shape (G, n); got {P0.shape}")
        if not np.all(np.isfinite(P0)):
            raise DataError("initial_guesses contain NaN/inf")
        G, n = P0.shape
        b = self._builder(data, n)
        names, slack, const, fs = b["names"], b["slack"], b["const"], b["fs"]
        scale = np.abs(P0)
        p0j, sj = jnp.asarray(P0), jnp.asarray(scale)
        z = jnp.zeros((G, n))
        d0 = _direct_many(z, p0j, sj, const, self.method, fs, float(self.rcond))[0]
        vd = jnp.var(d0.reshape(G, -1), axis=1)  # var(d_t) at the initial guess, 002:Eq.14
        if not np.all(np.asarray(vd) > 0):
            raise DataError("d (002:Eq.14) is constant at an initial guess")
        L0 = _loss_many(z, p0j, sj, vd, const, self.method, fs)
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
                (z, state), f = _run_block(z, state, p0j, sj, vd, norm, mask, const,
                                           self.method, fs, k, **hyper)
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
        f_md = np.asarray(_direct_many(z, p0j, sj, const, self.method, fs,
                                       float(self.rcond))[1])
        final = np.asarray(_loss_many(z, p0j, sj, vd, const, self.method, fs))
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
                epoch_time=batch_epoch / G, deep_force=f_md[g],
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


@partial(jax.jit, static_argnames=("method", "fs"))
def _residual_jacobian(p, const, method, fs):
    """Jacobian of the stacked residual of 002:Eq.14 (:func:`_residual_vec`) w.r.t. the
    relative errors ``(p' - p) / |p|``; shape (S T k, n)."""
    sc = jnp.abs(p)
    return jax.jacfwd(lambda z: _residual_vec(z, p, sc, const, method, fs).ravel())(
        jnp.zeros(p.size))


def excitation_analysis(
    data: MuscleData, method: str = "M1", params: np.ndarray | None = None,
    threshold: float = 1e-3, rcond: float = 1e-8,
) -> dict:
    """Local (Gauss-Newton) identifiability of every parameter on a record (002 Sec. III-D).

    With ``r`` the stacked residuals of 002:Eq.14 (:func:`_residual_vec`) and ``J`` their
    Jacobian with respect to the relative parameter errors ``(p - p*) / |p*|`` at ``p*``
    (default: the truth), ``H = J^T J`` is the Gauss-Newton curvature of the loss. For
    parameter i, the Schur complement ``s_i = 1 / (H^-1)_ii = ||(I - P_-i) J_i||^2`` (``P_-i``:
    projection on the other columns) is the loss curvature along ``p_i`` when every other parameter
    re-adjusts to compensate: ``s_i = 0`` means the data cannot tell ``p_i`` from a combination
    of the others (structurally non-identifiable, e.g. raw inertial parameters outside the base
    set); a small ``s_i / max_j s_j`` means poorly excited (the same relative error costs
    ``max s / s_i`` times less loss than in the best-excited parameter).

    Parameters
    ----------
    data : MuscleData
        Arm record (:class:`plants.arm.ArmPlant`).
    method : {"M1", "M2"}
    params : ndarray, shape (n,), optional
        Linearization point (default: the truth of :func:`plants.arm.truth.parameter_vector`).
    threshold : float
        ``s_i / max s`` at or above which a parameter counts as well excited (stated choice).
    rcond : float
        Pseudoinverse cut-off of 002:Eq.13.

    Returns
    -------
    dict
        ``names``; ``schur`` (n,), ``relative`` (n,) = ``schur / max(schur)``; ``alone`` (n,)
        = ``H_ii`` (no compensation); ``well_excited`` (n,) bool (``relative >= threshold``
        and a non-zero true value); ``eigenvalues`` of ``H`` divided by the largest;
        ``threshold``.
    """
    from plants.arm.truth import parameter_vector

    names, gt, _ = parameter_vector(method, float(data.fs))
    p = gt if params is None else np.asarray(params, dtype=float)
    if p.shape != gt.shape:
        raise DataError(f"params must have shape {gt.shape}; got {p.shape}")
    if not (np.isfinite(threshold) and 0 < threshold < 1):
        raise InvalidParameterError(
            f"The 'threshold' parameter must be in (0, 1); got {threshold!r}")
    const = _precompute(data, method, rcond)
    J = np.asarray(_residual_jacobian(jnp.asarray(p), const, method, float(data.fs)))
    # s_i = 1 / (H^-1)_ii, from the SVD of J (H = V diag(sigma^2) V^T), regularized by
    # delta = 1e-12 sigma_max^2 so that exactly unidentifiable parameters get s_i ~ delta
    _, sv, Vt = np.linalg.svd(J, full_matrices=False)
    w = sv**2
    delta = 1e-12 * w.max()
    schur = 1.0 / np.sum(Vt**2 / (w + delta)[:, None], axis=0)
    rel = schur / schur.max()
    return {"names": list(names), "schur": schur, "relative": rel,
            "alone": np.sum(J * J, axis=0), "well_excited": (rel >= threshold) & (gt != 0),
            "eigenvalues": w / w.max(), "threshold": threshold}
