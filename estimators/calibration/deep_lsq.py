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

Stated choices (002 does not give its optimizer settings): Adam (optax) on relative
coordinates ``p = p0 + |p0| z`` (z0 = 0), so one learning rate serves parameters of very
different units; zero-valued entries (un-pennated ``phi_opt``) stay zero; learning rate 1e-3
per epoch. Positivity is kept by clipping ``z >= -0.9`` inside the model, i.e. every
parameter keeps at least 10 % of its initial magnitude and its sign.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.errors import DataError, InvalidParameterError
from bench.types import MuscleData

__all__ = ["DeepLSQResult", "DeepMuscleIdentifier", "arm_problem"]

_METHODS = ("M1", "M2")


@dataclass
class DeepLSQResult:
    """Outcome of :meth:`DeepMuscleIdentifier.fit`.

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
        Whole run (compilation included).
    epoch_time : float, s
        Mean wall time of one epoch after compilation.
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
        Epochs between parameter snapshots.
    rcond : float
        Relative singular-value cut-off of the pseudoinverse (002:Eq.13).
    """

    def __init__(
        self, *, method: str = "M1", epochs: int = 2000, slack_epochs: int = 400,
        learning_rate: float = 1e-3, slack_learning_rate: float | None = None,
        record_every: int = 10, rcond: float = 1e-8,
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
        for name, v in (("learning_rate", learning_rate), ("rcond", rcond)):
            if not (np.isfinite(v) and v > 0):
                raise InvalidParameterError(f"The {name!r} parameter must be > 0; got {v!r}")
        self.method = method
        self.epochs = epochs
        self.slack_epochs = slack_epochs
        self.learning_rate = learning_rate
        self.slack_learning_rate = slack_learning_rate
        self.record_every = record_every
        self.rcond = rcond

    # ------------------------------------------------------------------ model
    def _builder(self, data: MuscleData, p0: np.ndarray):
        from plants.arm import rigid
        from plants.arm.muscles import default_muscle_params
        from plants.arm.truth import MUSCLE_FIELDS, SHARED_FIELDS, parameter_vector
        from plants.muscle import first_order_activation, mtu_force, neural_activation

        prob = arm_problem(data, self.method)
        names, _, is_muscle = parameter_vector(self.method, float(data.fs))
        if p0.shape != (len(names),):
            raise DataError(f"initial guess must have shape ({len(names)},); got {p0.shape}")
        from plants.arm.muscles import MUSCLES
        from plants.arm.truth import IDENTIFIABLE_MUSCLES

        learned = IDENTIFIABLE_MUSCLES if self.method == "M1" else MUSCLES
        midx = np.array([MUSCLES.index(m) for m in learned])
        template = default_muscle_params(float(data.fs))  # only non-learned fields are read
        fs = float(data.fs)
        driven, lsq = prob["driven"], prob["lsq"]
        nd = len(driven)
        arr = {k: jnp.asarray(prob[k]) for k in ("emg", "q", "qd", "qdd", "lmt", "vmt", "R",
                                                    "tau_ext")}
        n_m = len(learned) * len(MUSCLE_FIELDS)
        scale = jnp.asarray(np.abs(p0))
        p0j = jnp.asarray(p0)
        # position of each muscle's learned fields among the driven muscles
        pos = np.array([list(driven).index(i) for i in midx])

        def unpack(z):
            p = p0j + scale * jnp.maximum(z, -0.9)  # relative coordinates, sign kept
            pi = p[:30].reshape(3, 10)
            per = p[30:30 + n_m].reshape(len(learned), len(MUSCLE_FIELDS))
            shared = p[30 + n_m:]
            sub = {}
            for f in template._fields:
                v = jnp.asarray(getattr(template, f))[driven]
                if f in MUSCLE_FIELDS:
                    v = v.at[pos].set(per[:, MUSCLE_FIELDS.index(f)])
                elif f in SHARED_FIELDS:
                    v = jnp.full((nd,), shared[SHARED_FIELDS.index(f)])
                sub[f] = v
            return pi, type(template)(**sub)

        def residual(z):
            """d of 002:Eq.14 and the A J_md^T blocks, per trial and sample."""
            pi, mp = unpack(z)

            def trial(emg, q, qd, qdd, lmt, vmt, R, tau_ext):
                u = neural_activation(emg[:, driven], mp.c1, mp.c2, mp.delay, fs)  # Eq.19-21
                a = first_order_activation(u, mp.t_act, mp.t_deact, fs)  # 002:Eq.17-18
                f = mtu_force(mp, a, lmt[:, driven], vmt[:, driven], "rigid")  # 002:Eq.15
                tau_s = jnp.einsum("tm,tmj->tj", f, R[:, driven])  # J_ms^T f_ms

                def sample(qt, qdt, qddt, ts, te, Rt):
                    Mq = rigid.mass_matrix(qt, pi)
                    bias = rigid.bias_torques(qt, qdt, pi)
                    A = jnp.linalg.inv(Mq)  # 002:Eq.10, no constraint rows
                    c = qddt + A @ bias
                    d = c - A @ (ts + te)  # 002:Eq.14
                    AJ = A @ Rt[lsq].T  # A J_md^T, (5, n_lsq)
                    return d, AJ

                return jax.vmap(sample)(q, qd, qdd, tau_s, tau_ext, R)

            return jax.vmap(trial)(*(arr[k] for k in ("emg", "q", "qd", "qdd", "lmt", "vmt",
                                                        "R", "tau_ext")))

        rcond = self.rcond

        def projected(z):
            d, AJ = residual(z)
            if len(lsq) == 0:
                return d, jnp.zeros((*d.shape[:2], 0))
            pinv = jnp.linalg.pinv(AJ, rtol=rcond)  # (S, T, n_lsq, 5)
            f_md = jnp.einsum("stkj,stj->stk", pinv, d)  # 002:Eq.13
            r = d - jnp.einsum("stjk,stk->stj", AJ, f_md)  # (I - AJ AJ^+) d
            return r, f_md

        d0, _ = residual(jnp.zeros(p0.size))
        var_d = float(np.var(np.asarray(d0)))
        if var_d == 0:
            raise DataError("d (002:Eq.14) is constant at the initial guess")
        T_all = d0.shape[0] * d0.shape[1]

        def loss(z):
            r, _ = projected(z)
            return jnp.sum(jnp.square(r)) / (T_all * var_d)  # 002:Eq.14

        slack = np.array([n.endswith(".l_ts") for n in names])
        return names, is_muscle, loss, projected, unpack, slack, scale, var_d

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
        t_start = time.perf_counter()
        p0 = np.asarray(p0, dtype=float)
        names, is_muscle, loss, projected, _, slack, scale, var_d = self._builder(data, p0)
        vg = jax.value_and_grad(loss)
        n = p0.size
        lr2 = self.learning_rate if self.slack_learning_rate is None else self.slack_learning_rate

        def make_step(opt, mask):
            mj = jnp.asarray(mask, dtype=float)

            @jax.jit
            def step(z, state):
                f, g = vg(z)
                g = jnp.where(jnp.isfinite(g), g, 0.0) * mj
                upd, state = opt.update(g, state, z)
                return optax.apply_updates(z, upd * mj), state, f

            return step

        z = jnp.zeros(n)
        losses, snaps, snap_ep = [], [np.asarray(p0)], [0]
        epoch_times = []
        stages = ((self.epochs, ~slack & (scale > 0), self.learning_rate),
                  (self.slack_epochs, slack & (scale > 0), lr2))
        ep = 0
        for n_ep, mask, lr in stages:
            if n_ep == 0:
                continue
            opt = optax.adam(lr)
            state = opt.init(z)
            step = make_step(opt, np.asarray(mask))
            for _ in range(n_ep):
                t0 = time.perf_counter()
                z, state, f = step(z, state)
                f = float(f)
                epoch_times.append(time.perf_counter() - t0)
                losses.append(f)
                ep += 1
                if ep % self.record_every == 0:
                    snaps.append(np.asarray(p0 + np.asarray(scale) * np.maximum(np.asarray(z),
                                                                                  -0.9)))
                    snap_ep.append(ep)
        est = p0 + np.asarray(scale) * np.maximum(np.asarray(z), -0.9)
        _, f_md = projected(z)
        et = np.asarray(epoch_times[1:] if len(epoch_times) > 2 else epoch_times)
        return DeepLSQResult(
            names=list(names), estimate=est, initial=p0, loss=np.asarray(losses),
            trajectory=np.stack(snaps), snapshot_epochs=np.asarray(snap_ep),
            wall_time=time.perf_counter() - t_start,
            epoch_time=float(np.median(et)) if et.size else float("nan"),
            deep_force=np.asarray(f_md),
            info={"method": self.method, "var_d0": var_d, "is_muscle": is_muscle,
                  "final_loss": float(loss(z)), "epochs": self.epochs,
                  "slack_epochs": self.slack_epochs, "learning_rate": self.learning_rate},
        )
