"""Synergy-hybrid calibration: EMG-driven calibration that synthesizes unrecorded excitations
from muscle synergies while it calibrates the model (001 Sec. III-C, Eq. 5).

Steps (001 Sec. III-C):

1. **Synergy count**: the smallest number K of synergies whose non-negative matrix
   factorization (scikit-learn ``NMF``) of the recorded excitations, all calibration trials
   stacked, accounts for at least ``vaf_threshold`` (85 %, 001 Sec. III-D after [22]) of their
   variation, VAF = 1 - ||E - H W||^2 / ||E||^2 (uncentred, the synergy literature's form).
2. **Initial synergies**: the same factorization gives trial-specific primitives
   H_t (T, K) (the rows of the stacked factor belonging to trial t) and muscle weightings
   W (K, C). Each synergy is rescaled so that max(H_k) = max(W_k) (the product is unchanged),
   which puts both in [0, 1] whenever the synergy's peak contribution is <= 1. Weightings of
   unrecorded channels are drawn uniformly in [0, 1) ("randomized", 001).
3. **Joint optimization** of the model parameters, the primitives and the weightings with
   AdamW through the differentiable model (:func:`~estimators.calibration.gradient.
   adamw_minimize`). Recorded excitations still drive their own MTUs; unrecorded channels are
   driven by the synthesized excitations e = (H W)[:, s]. The loss is 001:Eq.5:

       F = moment term + P + w_e / N_r sum_r (e_bar_r - (H W)_r)^2 + w_s / N_s sum_s (H W)_s^2

   averaged over trials and samples, where P are the range penalties of 001:Eq.4 (normalized
   fibre length, tendon strain; and synthesized excitations, primitives and weightings kept
   in [0, 1]).

Stated choices (001's Table SII with w_e, w_s and the optimizer settings is not in our
sources):

* The moment term and the fibre/tendon penalties are those of the supplied
  :class:`~estimators.calibration.objectives.Objective` -- the same loss the EMG-driven
  calibrators minimize (moment error divided by the reference variance), so the two methods
  are compared on one objective and coincide when every channel is recorded.
* w_e = 1, w_s = 0.01, range-penalty weight w = 100 (the objectives module's default).
* Primitives and weightings are bounded to [-0.1, 1.1] by the sigmoid reparameterization of
  ``adamw_minimize`` and pulled into [0, 1] by the penalty (bounds exactly at [0, 1] would
  put NMF's exact zeros at the sigmoid's flat tail, where gradients vanish).
* Weightings are shared by the trials (primitives are trial-specific), so excitations of a
  held-out trial can be synthesized from its recorded channels alone
  (:func:`extrapolate_excitations`: non-negative least squares of the primitives on the
  recorded weightings, then H W for the rest; synergy extrapolation as in 001 refs. [25, 27]).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
from scipy.optimize import nnls

from bench.base import Calibrator
from bench.errors import ConvergenceWarning, DataError, InvalidParameterError
from bench.metrics import r2, rmse
from bench.params import Interval
from bench.types import CalibrationResult, MuscleData
from estimators.calibration._problem import make_problem, predict, result_from, valid_mask
from estimators.calibration.gradient import adamw_minimize
from estimators.calibration.objectives import (
    CalibrationSpace,
    Objective,
    sample_weights,
    smooth_range_penalty,
)

__all__ = [
    "SynergyHybridCalibrator",
    "channel_indices",
    "extrapolate_excitations",
    "initial_synergies",
    "mask_channels",
    "synergy_count",
    "synergy_vaf",
    "synthesis_scores",
]

#: Optimizer box of primitives and weightings (the 001:Eq.4 penalty keeps them in [0, 1]).
_SYN_BOX = (-0.1, 1.1)


def channel_indices(data: MuscleData, recorded: Sequence[str | int] | None) -> np.ndarray:
    """Indices of the recorded channels of ``data``.

    Parameters
    ----------
    data : MuscleData
        Its ``excitation`` has shape (S, T, C); ``channels`` names them (optional).
    recorded : sequence of str or int, or None
        Channel names (looked up in ``data.channels``) or indices; None = all channels.

    Returns
    -------
    ndarray of int, shape (C_r,), sorted
    """
    C = np.shape(data.excitation)[-1]
    if recorded is None:
        return np.arange(C)
    out = []
    names = list(data.channels or [])
    for r in recorded:
        if isinstance(r, str):
            if r not in names:
                raise InvalidParameterError(
                    f"recorded channel {r!r} is not in MuscleData.channels {names}"
                )
            out.append(names.index(r))
        else:
            i = int(r)
            if not 0 <= i < C:
                raise InvalidParameterError(f"recorded channel index {i} outside [0, {C})")
            out.append(i)
    idx = np.unique(np.asarray(out, dtype=int))
    if idx.size != len(out):
        raise InvalidParameterError(f"recorded channels repeat: {list(recorded)}")
    return idx


def mask_channels(data: MuscleData, recorded: Sequence[str | int] | None) -> MuscleData:
    """Copy of ``data`` whose unrecorded channels are zero (no excitation).

    This is EMG-driven calibration with channels removed (001 Sec. III-D): the MTUs of a
    removed channel receive no excitation. ``meta["recorded_channels"]`` lists the kept ones.
    """
    idx = channel_indices(data, recorded)
    exc = np.zeros_like(np.asarray(data.excitation, dtype=float))
    exc[..., idx] = np.asarray(data.excitation, dtype=float)[..., idx]
    meta = dict(data.meta or {})
    meta["recorded_channels"] = idx.tolist()
    return replace(data, excitation=exc, meta=meta)


def synergy_vaf(E: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 2000):
    """NMF of ``E`` with ``k`` synergies and its variance accounted for.

    Parameters
    ----------
    E : ndarray, shape (n_samples, C), >= 0
    k : int
    seed : int
        ``random_state`` of scikit-learn's NMF.

    Returns
    -------
    H : ndarray, shape (n_samples, k)
        Primitives.
    W : ndarray, shape (k, C)
        Weightings.
    vaf : float
        1 - ||E - H W||_F^2 / ||E||_F^2, in [0, 1].
    """
    from sklearn.decomposition import NMF

    E = np.asarray(E, dtype=float)
    if E.ndim != 2 or np.any(E < 0) or not np.all(np.isfinite(E)):
        raise DataError("excitations for NMF must be a finite, non-negative (n_samples, C) array")
    denom = float(np.sum(E**2))
    if denom == 0:
        raise DataError("recorded excitations are all zero; no synergies can be extracted")
    nmf = NMF(n_components=k, init="nndsvda", max_iter=max_iter, tol=1e-6, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning at max_iter
        H = nmf.fit_transform(E)
    W = nmf.components_
    return H, W, 1.0 - float(np.sum((E - H @ W) ** 2)) / denom


def synergy_count(
    E: np.ndarray, threshold: float = 0.85, *, seed: int = 0
) -> tuple[int, np.ndarray]:
    """Smallest number of synergies with VAF >= ``threshold`` (001 Sec. III-D, 85 %).

    Parameters
    ----------
    E : ndarray, shape (n_samples, C)
    threshold : float in (0, 1]

    Returns
    -------
    k : int
        In [1, C]; C when no smaller count reaches the threshold.
    vafs : ndarray, shape (k,)
        VAF of 1..k synergies.
    """
    C = np.shape(E)[-1]
    vafs = []
    for k in range(1, C + 1):
        vafs.append(synergy_vaf(E, k, seed=seed)[2])
        if vafs[-1] >= threshold:
            break
    return len(vafs), np.asarray(vafs)


def initial_synergies(
    excitation: np.ndarray,
    recorded: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Initial trial-specific primitives and shared weightings (001 Sec. III-C).

    Parameters
    ----------
    excitation : ndarray, shape (S, T, C)
        Only the ``recorded`` channels are read.
    recorded : ndarray of int, shape (C_r,)
    k : int
        Number of synergies.
    rng : numpy.random.Generator
        Draws the weightings of unrecorded channels, U[0, 1).

    Returns
    -------
    H : ndarray, shape (S, T, k), in [0, 1]
    W : ndarray, shape (k, C), in [0, 1]
    vaf : float
        VAF of the recorded excitations by the (unclipped) factorization.
    """
    S, T, C = excitation.shape
    E = np.asarray(excitation, dtype=float)[..., recorded].reshape(S * T, recorded.size)
    Hs, Wr, vaf = synergy_vaf(E, k, seed=seed)
    # balance each synergy: max(H_k) = max(W_k), product unchanged
    mh = Hs.max(axis=0)
    mw = Wr.max(axis=1)
    g = np.sqrt(np.where((mh > 0) & (mw > 0), mh / np.where(mw > 0, mw, 1.0), 1.0))
    Hs = Hs / g
    Wr = Wr * g[:, None]
    W = rng.uniform(0.0, 1.0, (k, C))
    W[:, recorded] = Wr
    return np.clip(Hs.reshape(S, T, k), 0.0, 1.0), np.clip(W, 0.0, 1.0), vaf


def extrapolate_excitations(
    excitation: np.ndarray, recorded: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Full excitations of (held-out) trials from their recorded channels and fixed weightings.

    Primitives are the non-negative least-squares fit of the recorded excitations on the
    recorded weightings, sample by sample; unrecorded channels are then (H W) clipped to
    [0, 1], recorded ones are kept as recorded.

    Parameters
    ----------
    excitation : ndarray, shape (S, T, C)
    recorded : ndarray of int, shape (C_r,)
    weights : ndarray, shape (K, C)

    Returns
    -------
    ndarray, shape (S, T, C)
    """
    exc = np.asarray(excitation, dtype=float)
    S, T, C = exc.shape
    Wr = np.asarray(weights, dtype=float)[:, recorded]  # (K, C_r)
    E = exc[..., recorded].reshape(-1, recorded.size)
    H = np.stack([nnls(Wr.T, e)[0] for e in E])  # (S T, K)
    out = np.clip(H @ np.asarray(weights, dtype=float), 0.0, 1.0).reshape(S, T, C)
    out[..., recorded] = exc[..., recorded]
    return out


def synthesis_scores(reference: np.ndarray, synthesized: np.ndarray) -> tuple[float, float]:
    """RMSE and mean per-channel r2 of synthesized against reference excitations.

    Parameters
    ----------
    reference, synthesized : ndarray, shape (..., k)
        Excitations of the k synthesized channels; all leading axes (trials, samples) are
        concatenated.

    Returns
    -------
    rmse : float
        Over every sample and channel (excitation units, 0-1).
    r2 : float
        Squared Pearson correlation per channel, averaged over the channels (NaN-aware).
    """
    ref = np.asarray(reference, dtype=float)
    syn = np.asarray(synthesized, dtype=float)
    k = ref.shape[-1]
    a, b = ref.reshape(-1, k), syn.reshape(-1, k)
    return rmse(a, b), float(np.nanmean([r2(a[:, j], b[:, j]) for j in range(k)]))


class SynergyHybridCalibrator(Calibrator):
    """Synergy-hybrid calibration by AdamW through the differentiable model (001:Eq.5).

    Parameters
    ----------
    recorded : sequence of str or int, optional
        Channels whose recorded excitations are used (names in ``MuscleData.channels`` or
        indices); None = all. The others are synthesized; their values in the data are never
        read.
    n_synergies : int, optional
        Fixed number of synergies; None = smallest with VAF >= ``vaf_threshold``.
    vaf_threshold : float
        001: 0.85.
    w_e, w_s : float
        Weights of recorded-excitation tracking and synthesized-excitation minimization.
    range_weight : float
        w of the 001:Eq.4 range penalties on synthesized excitations, primitives, weightings.
    restarts : int
        Start points optimized together: the initial parameters plus ``restarts - 1`` drawn
        uniformly inside the bounds (all with the same initial synergies).
    seed : int
        Seeds NMF, the random weightings and the extra start points.
    learning_rate, decay_steps, decay_rate, weight_decay, max_steps, patience, tol
        See :func:`~estimators.calibration.gradient.adamw_minimize`.
    """

    name = "synergy-hybrid"
    _parameter_constraints = {
        "recorded": [None, list, tuple],
        "n_synergies": [None, Interval(int, 1, None)],
        "vaf_threshold": [Interval(float, 0, 1, closed="right")],
        "w_e": [Interval(float, 0, None)],
        "w_s": [Interval(float, 0, None)],
        "range_weight": [Interval(float, 0, None)],
        "restarts": [Interval(int, 1, 4096)],
        "seed": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "decay_steps": [Interval(int, 1, None)],
        "decay_rate": [Interval(float, 0, 1, closed="right")],
        "weight_decay": [Interval(float, 0, None)],
        "max_steps": [Interval(int, 1, None)],
        "patience": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
    }

    def __init__(
        self, *, recorded: Sequence[str | int] | None = None, n_synergies: int | None = None,
        vaf_threshold: float = 0.85, w_e: float = 1.0, w_s: float = 0.01,
        range_weight: float = 100.0, restarts: int = 1, seed: int = 0,
        learning_rate: float = 0.05, decay_steps: int = 500, decay_rate: float = 0.5,
        weight_decay: float = 1e-4, max_steps: int = 3000, patience: int = 100,
        tol: float = 1e-6,
    ) -> None:
        self.recorded = recorded
        self.n_synergies = n_synergies
        self.vaf_threshold = vaf_threshold
        self.w_e = w_e
        self.w_s = w_s
        self.range_weight = range_weight
        self.restarts = restarts
        self.seed = seed
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.weight_decay = weight_decay
        self.max_steps = max_steps
        self.patience = patience
        self.tol = tol

    def calibrate(
        self, model, data: MuscleData, objective: Objective, *,
        space: CalibrationSpace | None = None, x0: np.ndarray | None = None,
    ) -> CalibrationResult:
        """Calibrate ``model`` and the synergies on ``data``.

        ``model.inputs(data)`` must return a dict with an ``excitation`` entry of shape
        (S, T, C) (as :class:`plants.muscle.model.MuscleModel` does).

        Returns
        -------
        CalibrationResult
            ``params``: the model parameters only; ``info`` adds ``primitives`` (S, T, K),
            ``weights`` (K, C), ``excitation`` (S, T, C) driving the model, ``recorded``,
            ``n_synergies``, ``vaf_curve``, ``vaf`` (initial NMF), ``loss_terms``.
        """
        self._validate()
        rec = channel_indices(data, self.recorded)
        masked = mask_channels(data, rec)  # unrecorded values are never read
        exc = np.asarray(masked.excitation, dtype=float)
        if exc.ndim != 3:
            raise DataError(f"MuscleData.excitation must have shape (S, T, C); got {exc.shape}")
        S, T, C = exc.shape
        syn = np.setdiff1d(np.arange(C), rec)
        rng = np.random.default_rng(self.seed)
        E_rec = exc[..., rec].reshape(S * T, rec.size)
        if self.n_synergies is None:
            k, vafs = synergy_count(E_rec, self.vaf_threshold, seed=self.seed)
        else:
            k = self.n_synergies
            vafs = np.asarray([synergy_vaf(E_rec, k, seed=self.seed)[2]])
        H0, W0, vaf0 = initial_synergies(exc, rec, k, rng, seed=self.seed)

        prob = make_problem(model, masked, objective, space)
        sp = prob.space
        base_inputs = prob.data["inputs"]
        if not isinstance(base_inputs, dict) or "excitation" not in base_inputs:
            raise InvalidParameterError(
                "synergy-hybrid calibration needs model.inputs(data) to return a dict with an "
                "'excitation' entry"
            )
        d = prob.data
        refs = (d["torque"], d["stiffness"], d["var_torque"], d["var_stiffness"])
        e_rec = jnp.asarray(exc[..., rec])
        rec_mask = np.zeros(C, dtype=bool)
        rec_mask[rec] = True
        rec_mask_j = jnp.asarray(rec_mask)
        # trials of different lengths: each averaged over its own samples (001:Eq.5 N_s)
        valid = valid_mask(masked)
        sw = (jnp.ones((S, T)) if valid is None else jnp.asarray(sample_weights(valid)))[..., None]
        n_p, n_h, n_w = sp.size, S * T * k, k * C
        w_e, w_s, w_r = self.w_e, self.w_s, self.range_weight

        def split(x):
            H = x[n_p:n_p + n_h].reshape(S, T, k)
            W = x[n_p + n_h:].reshape(k, C)
            return x[:n_p], H, W

        def terms(x):
            xp, H, W = split(x)
            recon = jnp.einsum("stk,kc->stc", H, W)  # (S, T, C)
            drive = jnp.where(rec_mask_j, jnp.asarray(exc), recon)
            inputs = dict(base_inputs)
            inputs["excitation"] = drive
            out = model.simulate(sp.unpack(xp), inputs)
            J = objective(out, *refs)  # moment term + 001:Eq.4 (lm, strain)
            # 001:Eq.5 F^exc; N_r, N_s averages
            f_rec = w_e * jnp.mean(sw * jnp.square(e_rec - recon[..., rec]))
            f_syn = (w_s * jnp.mean(sw * jnp.square(recon[..., syn])) if syn.size else 0.0)
            # 001:Eq.4 range penalties of synthesized excitations, primitives, weightings
            p_syn = (smooth_range_penalty(recon[..., syn], 0.0, 1.0, w_r) if syn.size else 0.0)
            p_hw = (smooth_range_penalty(H, 0.0, 1.0, w_r)
                    + smooth_range_penalty(W[None], 0.0, 1.0, w_r))
            return J, f_rec, f_syn, p_syn + p_hw, out

        def loss(x):
            J, f_rec, f_syn, p, _ = terms(x)
            return J + f_rec + f_syn + p

        lo = np.concatenate([sp.lower, np.full(n_h + n_w, _SYN_BOX[0])])
        hi = np.concatenate([sp.upper, np.full(n_h + n_w, _SYN_BOX[1])])
        first = sp.x0 if x0 is None else np.asarray(x0, dtype=float)
        if first.shape != (sp.size,):
            raise InvalidParameterError(f"x0 must have shape ({sp.size},); got {first.shape}")
        starts_p = sp.start_points(first, self.restarts, rng)
        syn0 = np.concatenate([H0.ravel(), W0.ravel()])
        starts = np.stack([np.concatenate([p, syn0]) for p in starts_p])
        t0 = time.perf_counter()
        res = adamw_minimize(
            loss, starts, lo, hi, learning_rate=self.learning_rate,
            decay_steps=self.decay_steps, decay_rate=self.decay_rate,
            weight_decay=self.weight_decay, max_steps=self.max_steps, patience=self.patience,
            tol=self.tol,
        )
        wall = time.perf_counter() - t0
        best = res.best
        xb = res.x[best]
        if int(res.steps[best]) >= self.max_steps:
            warnings.warn(
                f"synergy-hybrid calibration stopped at max_steps={self.max_steps} before its "
                "loss reached a plateau", ConvergenceWarning, stacklevel=2,
            )
        J, f_rec, f_syn, p, _ = terms(jnp.asarray(xb))
        xp, H, W = (np.asarray(a) for a in split(xb))
        drive = np.where(rec_mask, exc, np.einsum("stk,kc->stc", H, W))
        hybrid = replace(masked, excitation=drive)
        out = result_from(
            prob, model, hybrid, objective, xp, res.history[:, best], wall, res.evaluations,
            {"calibrator": self.name, "restart_losses": res.fun, "steps": res.steps,
             **self.get_params()},
        )
        out.info.update(
            primitives=H, weights=W, excitation=drive, recorded=rec.tolist(),
            synthesized=syn.tolist(), n_synergies=int(k), vaf_curve=vafs, vaf=float(vaf0),
            loss_terms={"objective": float(J), "recorded_tracking": float(f_rec),
                        "synthesized_minimization": float(f_syn), "range_penalty": float(p)},
            total_loss=float(res.fun[best]),
        )
        # the problem's loss ran on the masked excitations; report it on the hybrid ones
        out.info["objective"] = float(J)
        return out

    # ------------------------------------------------------------------ task hooks
    def predict(self, model, space: CalibrationSpace, result: CalibrationResult,
                data: MuscleData) -> dict:
        """Outputs of the calibrated model on other (held-out) trials.

        The unrecorded channels of ``data`` are synthesized from its recorded ones with the
        calibrated weightings (:func:`extrapolate_excitations`); their values in ``data``
        are never read.

        Parameters
        ----------
        model : object
        space : CalibrationSpace
        result : CalibrationResult
            Of :meth:`calibrate` (``info``: ``x``, ``recorded``, ``synthesized``,
            ``weights``).
        data : MuscleData
            ``excitation`` (S, T, C).

        Returns
        -------
        dict
            The model's outputs (``torque`` (S, T, D) Nm, ``stiffness`` ...), numpy.
        """
        if len(result.info["synthesized"]):
            rec = np.asarray(result.info["recorded"], dtype=int)
            exc = extrapolate_excitations(np.asarray(data.excitation, dtype=float), rec,
                                          result.info["weights"])
            data = replace(data, excitation=exc)
        return predict(model, space, result.info["x"], data)

    def extra_metrics(self, model, space: CalibrationSpace, result: CalibrationResult,
                      calibration: MuscleData, held_out: list) -> dict[str, float]:
        """Synthesis scores (Hambly et al. Sec. III-D; :func:`synthesis_scores`).

        Parameters
        ----------
        model, space
            Unused.
        result : CalibrationResult
            Of :meth:`calibrate`.
        calibration : MuscleData
            The calibration trials with every channel (the withheld ones included) and,
            when synthetic, ``meta["true_excitation"]`` (S, T, C).
        held_out : list of MuscleData
            The held-out trials with every channel.

        Returns
        -------
        dict
            ``n_synergies``, ``vaf`` (initial factorization); with channels synthesized:
            ``synth_rec_rmse``, ``synth_rec_r2`` (synthesized vs the withheld recorded
            excitations of the calibration trials), ``synth_true_rmse``, ``synth_true_r2``
            (vs the true excitations, when given), ``held_synth_rmse``, ``held_synth_r2``
            (held-out trials: extrapolated vs withheld recorded).
        """
        out = {"n_synergies": float(result.info["n_synergies"]),
               "vaf": float(result.info["vaf"])}
        syn = np.asarray(result.info["synthesized"], dtype=int)
        if syn.size == 0:
            return out
        drive = np.asarray(result.info["excitation"], dtype=float)[..., syn]
        out["synth_rec_rmse"], out["synth_rec_r2"] = synthesis_scores(
            np.asarray(calibration.excitation, dtype=float)[..., syn], drive)
        true = (calibration.meta or {}).get("true_excitation")
        if true is not None:
            out["synth_true_rmse"], out["synth_true_r2"] = synthesis_scores(
                np.asarray(true, dtype=float)[..., syn], drive)
        if held_out:
            rec = np.asarray(result.info["recorded"], dtype=int)
            ref, est = [], []
            for h in held_out:
                e = np.asarray(h.excitation, dtype=float)
                x = extrapolate_excitations(e, rec, result.info["weights"])
                ref.append(e[..., syn].reshape(-1, syn.size))
                est.append(x[..., syn].reshape(-1, syn.size))
            out["held_synth_rmse"], out["held_synth_r2"] = synthesis_scores(
                np.concatenate(ref), np.concatenate(est))
        return out
