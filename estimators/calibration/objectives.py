"""Calibration objective (000:Eq.8-9, 001:Eq.4) and the calibrated-parameter space.

Calibrators never import ``plants``: they receive a *model* object exposing

* ``base_params`` — a NamedTuple pytree whose fields are arrays of shape (M,)
  (e.g. ``plants.muscle.MTUParams``: ``f_max``, ``l_opt``, ``l_ts``, ``shape``, ``c1``, ...);
* ``muscles`` — the M MTU names;
* ``simulate(params, inputs) -> dict`` — a JAX-traceable forward model over all trials
  returning ``torque`` (S, T, D), ``stiffness`` (S, T, D), ``lm`` (S, T, M) normalized fibre
  length and ``lt`` (S, T, M) normalized tendon length l_t / l_ts.

:class:`CalibrationSpace` maps a flat vector x (physical units) to such a pytree:

=============  ======================  ==================================  ===========
block          per                     bounds (000 Fig. 2 caption)          unit
=============  ======================  ==================================  ===========
l_opt          MTU                     initial +- 5 %                       m
l_ts           MTU                     initial +- 5 %                       m
strength       group (declared)        (0.3, 2.5), scales f_max             1
shape          MTU                     (-3, 0)  (000:Eq.1)                  1
c1, c2         shared (optional, 001)  (-1, 1)                              1
=============  ======================  ==================================  ===========

:class:`Objective` is 000:Eq.8: alpha times the torque error and beta times the stiffness
error, each the squared error divided by the variance of the reference profile of that
trial and DoF and averaged over trials, DoFs and samples, plus a physiological penalty:
the hard one of 000:Eq.9 (MAX = 1000 per MTU and sample with l_m outside [0.5, 1.5] or
l_t < l_ts, averaged over samples), and/or the smooth range penalties of 001:Eq.4
(w (x_min - x)^2 below, w (x - x_max)^2 above, for the normalized fibre length in
[0.5, 1.5] and the tendon strain in [0, 0.5]) that gradient methods need.

Trials of different lengths are stacked padded to the longest (:func:`~estimators.
calibration.task.cut_windows`) with a per-sample weight ``w = valid T / N_s`` (zero on the
padding, ``N_s`` the trial's own samples): every average over samples becomes the weighted
mean, so each trial's terms are averaged over its own samples as 000:Eq.8 writes them
(1/N_s inside the sum over trials). The fit terms take the weight folded into the variance
(``Var / w``, infinite on the padding; :meth:`Objective.reference_variances`), the penalties
take it as ``sample_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import DataError, InvalidParameterError
from bench.types import ParameterSpec

__all__ = [
    "CalibrationSpace",
    "Objective",
    "assemble",
    "hard_penalty",
    "hard_penalty_rows",
    "row_parts",
    "sample_weights",
    "smooth_range_penalty",
    "smooth_range_rows",
]


@dataclass(frozen=True)
class _Block:
    field: str
    kind: str  # "relative" (l_opt, l_ts), "strength", "absolute"
    index: tuple  # per entry: tuple of muscle indices it sets
    names: tuple
    unit: str
    lower: np.ndarray
    upper: np.ndarray
    x0: np.ndarray


@dataclass(frozen=True)
class CalibrationSpace:
    """Flat, bounded vector of calibrated parameters <-> model parameter pytree.

    Build it with :meth:`build`.
    """

    base: Any
    muscles: tuple
    blocks: tuple
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    x0: np.ndarray = field(repr=False)

    @classmethod
    def build(
        cls,
        base: Any,
        muscles: list[str],
        *,
        strength_groups: dict[str, list[str]] | None = None,
        length_tolerance: float = 0.05,
        strength_bounds: tuple[float, float] = (0.3, 2.5),
        shape_bounds: tuple[float, float] = (-3.0, 0.0),
        calibrate_filter: bool = False,
    ) -> CalibrationSpace:
        """Declare what is calibrated.

        Parameters
        ----------
        base : NamedTuple
            Initial (generic or scaled) model parameters, fields of shape (M,).
        muscles : list of str, length M
        strength_groups : dict, optional
            Group name -> muscles sharing one strength coefficient (000: GM+GL, PL+PB);
            muscles not listed get their own.
        length_tolerance : float
            Relative bound on l_opt and l_ts (0.05 = +-5 %).
        strength_bounds, shape_bounds : (float, float)
        calibrate_filter : bool
            Also calibrate the shared recursive-filter coefficients C1, C2 (001).
        """
        M = len(muscles)
        for f in ("l_opt", "l_ts", "f_max", "shape"):
            if not hasattr(base, f) or np.shape(getattr(base, f)) != (M,):
                raise InvalidParameterError(
                    f"model parameters need a field {f!r} of shape ({M},) to calibrate"
                )
        groups = dict(strength_groups or {})
        seen: dict[str, str] = {}
        for g, members in groups.items():
            for m in members:
                if m not in muscles:
                    raise InvalidParameterError(
                        f"strength group {g!r} names unknown MTU {m!r}; MTUs: {muscles}"
                    )
                if m in seen:
                    raise InvalidParameterError(f"MTU {m!r} is in groups {seen[m]!r} and {g!r}")
                seen[m] = g
        for m in muscles:
            if m not in seen:
                groups[m] = [m]
        per = tuple((i,) for i in range(M))
        blocks = []
        for f, unit in (("l_opt", "m"), ("l_ts", "m")):
            v = np.asarray(getattr(base, f), dtype=float)
            blocks.append(_Block(f, "relative", per, tuple(f"{f}[{m}]" for m in muscles), unit,
                                 v * (1 - length_tolerance), v * (1 + length_tolerance), v))
        gidx = tuple(tuple(muscles.index(m) for m in mem) for mem in groups.values())
        ng = len(gidx)
        blocks.append(_Block("f_max", "strength", gidx, tuple(f"strength[{g}]" for g in groups),
                             "1", np.full(ng, strength_bounds[0]), np.full(ng, strength_bounds[1]),
                             np.ones(ng)))
        sh = np.clip(np.asarray(base.shape, dtype=float), shape_bounds[0] + 1e-6,
                     shape_bounds[1] - 1e-6)
        blocks.append(_Block("shape", "absolute", per, tuple(f"shape[{m}]" for m in muscles),
                             "1", np.full(M, shape_bounds[0]), np.full(M, shape_bounds[1]), sh))
        if calibrate_filter:
            for f in ("c1", "c2"):
                if not hasattr(base, f):
                    raise InvalidParameterError(f"model parameters have no field {f!r}")
                v = float(np.mean(getattr(base, f)))
                blocks.append(_Block(f, "absolute", (tuple(range(M)),), (f,), "1",
                                     np.array([-1.0]), np.array([1.0]), np.array([v])))
        lower = np.concatenate([b.lower for b in blocks])
        upper = np.concatenate([b.upper for b in blocks])
        x0 = np.concatenate([b.x0 for b in blocks])
        return cls(base, tuple(muscles), tuple(blocks), lower, upper, x0)

    @property
    def size(self) -> int:
        return self.x0.size

    @property
    def names(self) -> list[str]:
        return [n for b in self.blocks for n in b.names]

    @property
    def specs(self) -> list[ParameterSpec]:
        """Name, unit and bounds of every calibrated parameter."""
        out = []
        for b in self.blocks:
            for n, lo, hi in zip(b.names, b.lower, b.upper):
                out.append(ParameterSpec(n, b.unit, float(lo), float(hi), group=b.field))
        return out

    def unpack(self, x: jnp.ndarray) -> Any:
        """Model parameter pytree for a flat vector ``x`` (JAX-traceable)."""
        params = self.base
        k = 0
        for b in self.blocks:
            n = len(b.names)
            vals = x[k:k + n]
            k += n
            M = len(self.muscles)
            # scatter entry values onto MTUs
            scatter = np.zeros((n, M))
            for e, idx in enumerate(b.index):
                scatter[e, list(idx)] = 1.0
            per_mtu = vals @ jnp.asarray(scatter)
            base_val = jnp.asarray(getattr(self.base, b.field))
            if b.kind == "strength":
                new = base_val * per_mtu
            else:
                covered = jnp.asarray(scatter.sum(axis=0) > 0)
                new = jnp.where(covered, per_mtu, base_val)
            params = params._replace(**{b.field: new})
        return params

    def to_dict(self, x: np.ndarray) -> dict[str, float]:
        """Named values of a flat vector."""
        return {n: float(v) for n, v in zip(self.names, np.asarray(x))}

    def start_points(
        self, first: np.ndarray, n: int, rng: np.random.Generator | None
    ) -> np.ndarray:
        """``n`` start points strictly inside the bounds, shape (n, size).

        The first is ``first`` clipped 1e-6 of the range inside the bounds (a sigmoid
        reparameterization needs interior points); the other ``n - 1`` are drawn uniformly in
        the same interior from ``rng`` (not touched when ``n == 1``).
        """
        margin = 1e-6 * (self.upper - self.lower)
        lo, hi = self.lower + margin, self.upper - margin
        starts = [np.clip(np.asarray(first, dtype=float), lo, hi)]
        if n > 1:
            starts += list(lo + rng.uniform(size=(n - 1, self.size)) * (hi - lo))
        return np.stack(starts)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` start points drawn uniformly inside the bounds, shape (n, size)."""
        return rng.uniform(self.lower, self.upper, (n, self.size))


def hard_penalty(lm: jnp.ndarray, lt: jnp.ndarray, max_value: float = 1000.0,
                 sample_weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """000:Eq.9 averaged over samples: MAX per MTU and sample with l_m outside [0.5, 1.5]
    or l_t < l_ts (normalized l_t < 1). Arrays (..., T, M); returns a scalar.
    ``sample_weight`` (..., T): weighted mean over samples (padded trials)."""
    bad = (lm < 0.5) | (lm > 1.5) | (lt < 1.0)
    per_sample = max_value * jnp.sum(bad, axis=-1)
    if sample_weight is not None:
        per_sample = sample_weight * per_sample
    return jnp.mean(per_sample)


def smooth_range_penalty(x: jnp.ndarray, lo: float, hi: float, weight: float,
                         sample_weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """001:Eq.4 summed over MTUs and averaged over samples: w (lo - x)^2 below, w (x - hi)^2
    above, 0 inside. ``x`` (..., T, M); returns a scalar. ``sample_weight`` (..., T):
    weighted mean over samples (padded trials)."""
    p = weight * (jnp.square(jnp.minimum(x - lo, 0.0)) + jnp.square(jnp.maximum(x - hi, 0.0)))
    per_sample = jnp.sum(p, axis=-1)
    if sample_weight is not None:
        per_sample = sample_weight * per_sample
    return jnp.mean(per_sample)


def smooth_range_rows(x: jnp.ndarray, lo: float, hi: float, weight: float,
                      sample_weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """Residual rows of :func:`smooth_range_penalty`, flattened, shape (prod(x.shape),).

    ``sqrt(w / n) (min(x - lo, 0) + max(x - hi, 0))`` per element, ``n`` the number of
    samples (all axes but the last), times ``sqrt(sample_weight)`` when given; at most one of
    the two terms is nonzero (lo < hi), so the rows' squared sum is the penalty exactly
    (001:Eq.4).
    """
    n = max(int(np.prod(x.shape[:-1])), 1)
    viol = jnp.minimum(x - lo, 0.0) + jnp.maximum(x - hi, 0.0)
    if sample_weight is not None:
        viol = jnp.sqrt(sample_weight)[..., None] * viol
    return (np.sqrt(weight / n) * viol).ravel()


def hard_penalty_rows(lm: jnp.ndarray, lt: jnp.ndarray, max_value: float = 1000.0,
                      sample_weight: jnp.ndarray | None = None) -> jnp.ndarray:
    """Residual rows of :func:`hard_penalty` (000:Eq.9), flattened, shape (lm.size,).

    ``sqrt(MAX / n)`` where an MTU violates its range at a sample, 0 elsewhere (``n`` the
    number of samples; times ``sqrt(sample_weight)`` when given); their squared sum is the
    penalty. The rows are piecewise constant, so they carry no derivative.
    """
    n = max(int(np.prod(lm.shape[:-1])), 1)
    bad = ((lm < 0.5) | (lm > 1.5) | (lt < 1.0)).astype(lm.dtype)
    if sample_weight is not None:
        bad = jnp.sqrt(sample_weight)[..., None] * bad
    return (np.sqrt(max_value / n) * bad).ravel()


def sample_weights(valid: np.ndarray) -> np.ndarray:
    """Per-sample weights of padded trials: ``valid T / N_s`` (shape (S, T)), so that a mean
    over all T samples of ``w x`` is the mean of ``x`` over each trial's own N_s samples.

    Raises
    ------
    DataError
        A trial without a valid sample.
    """
    v = np.asarray(valid, dtype=bool)
    n = v.sum(axis=-1, keepdims=True)
    if np.any(n == 0):
        raise DataError("a trial has no valid sample")
    return v * (v.shape[-1] / n)


def _masked_var(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Per-trial, per-DoF variance over the valid samples, shape (S, 1, D)."""
    x = np.asarray(x, dtype=float)
    if valid is None:
        return np.var(x, axis=1, keepdims=True)
    v = np.asarray(valid, dtype=bool)[..., None]
    n = v.sum(axis=1, keepdims=True)
    mean = np.where(v, x, 0.0).sum(axis=1, keepdims=True) / n
    return np.where(v, (x - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n


def assemble(parts: list[jnp.ndarray]) -> jnp.ndarray:
    """Concatenate 1-D arrays into one vector by ``dynamic_update_slice`` (JAX-traceable).

    The same values as ``jnp.concatenate``, built differently on purpose: XLA's CPU backend
    fuses a concatenate with everything that produces its operands, so concatenating the
    model's torque, stiffness and fibre-length rows pulls the whole Hill model (force-length
    Gaussians, force-velocity asinh, pennation) into one element-by-element loop that
    recomputes the shared subexpressions for every kind of row and is not vectorized: 0.37
    against 0.07 ms per residual vector of the ankle problem (``benchmarks/calibration.py``
    measures both). Writing each part into a buffer keeps the parts separate fusions.
    Assemble all rows in one call: XLA rewrites an ``assemble`` of ``assemble`` results
    back into a concatenate (0.38 ms again).
    """
    parts = [jnp.ravel(p) for p in parts]
    if not parts:
        return jnp.zeros(0)
    if len(parts) == 1:
        return parts[0]
    dtype = jnp.result_type(*parts)
    out = jnp.zeros(sum(int(p.size) for p in parts), dtype)
    k = 0
    for part in parts:
        out = jax.lax.dynamic_update_slice(out, part.astype(dtype), (k,))
        k += int(part.size)
    return out


def row_parts(out: Any) -> tuple[list, list]:
    """Normalize what a residual function returns to ``(fit, penalty)`` lists of 1-D arrays.

    ``out`` is a vector (all fit rows), or a pair ``(fit, penalty)`` whose members are a
    vector or a list/tuple of vectors (:meth:`Objective.residual_parts`).
    """
    def as_list(v):
        return [jnp.ravel(a) for a in v] if isinstance(v, (list, tuple)) else [jnp.ravel(v)]

    if isinstance(out, tuple) and len(out) == 2:
        return as_list(out[0]), as_list(out[1])
    return as_list(out), []


@dataclass(frozen=True)
class Objective:
    """000:Eq.8 with the penalty of 000:Eq.9 and/or 001:Eq.4.

    Parameters
    ----------
    alpha, beta : float
        Weights of the normalized torque and stiffness errors, in [0, 1].
    penalty : {"hard", "smooth", "both", "none"}
        Which physiological penalty to add. Annealing can use the hard one; gradient
        methods need "smooth" (the hard one has zero gradient almost everywhere).
    fiber_range, strain_range : (float, float)
        Normalized fibre length and tendon strain operating ranges (001:Eq.4).
    smooth_weight : float
        w of 001:Eq.4.
    max_penalty : float
        MAX of 000:Eq.9.
    """

    alpha: float = 1.0
    beta: float = 0.0
    penalty: str = "hard"
    fiber_range: tuple = (0.5, 1.5)
    strain_range: tuple = (0.0, 0.5)
    smooth_weight: float = 100.0
    max_penalty: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise InvalidParameterError(
                    f"The {name!r} parameter of Objective must be a float in [0, 1]. Got {v!r}."
                )
        if self.penalty not in ("hard", "smooth", "both", "none"):
            raise InvalidParameterError(
                "The 'penalty' parameter of Objective must be one of "
                f"{{'hard', 'smooth', 'both', 'none'}}. Got {self.penalty!r} instead."
            )

    def reference_variances(self, torque: np.ndarray, stiffness: np.ndarray | None,
                            valid: np.ndarray | None = None):
        """Per-trial, per-DoF variances of the references, shapes (S, 1, D).

        With ``valid`` (S, T) (padded trials of different lengths) each variance is taken
        over the trial's valid samples and divided by the sample weight
        (:func:`sample_weights`): the result has shape (S, T, D) and is infinite on the
        padding, so that ``mean((x_hat - x)^2 / var)`` over all samples is 000:Eq.8's
        per-trial average.
        """
        vt = _masked_var(torque, valid)
        if np.any(vt == 0):
            raise DataError("a reference torque profile is constant (zero variance)")
        if self.beta > 0:
            if stiffness is None:
                raise DataError("beta > 0 needs a reference stiffness")
            vk = _masked_var(stiffness, valid)
            if np.any(vk == 0):
                raise DataError("a reference stiffness profile is constant (zero variance)")
        else:
            vk = None
        if valid is not None:
            w = sample_weights(valid)[..., None]
            with np.errstate(divide="ignore"):
                vt = np.where(w > 0, vt / np.where(w > 0, w, 1.0), np.inf)
                if vk is not None:
                    vk = np.where(w > 0, vk / np.where(w > 0, w, 1.0), np.inf)
        return vt, vk

    def __call__(self, out: dict, torque, stiffness, var_torque, var_stiffness,
                 sample_weight=None):
        """Objective value from model outputs (JAX-traceable).

        Parameters
        ----------
        out : dict
            ``torque``, ``stiffness`` (S, T, D); ``lm``, ``lt`` (S, T, M).
        torque, stiffness : arrays (S, T, D)
            References.
        var_torque, var_stiffness : arrays (S, 1, D), or (S, T, D) for padded trials
            From :meth:`reference_variances`.
        sample_weight : array (S, T), optional
            Weights of padded trials (:func:`sample_weights`) for the penalties.
        """
        sw = sample_weight
        J = self.alpha * jnp.mean(jnp.square(out["torque"] - torque) / var_torque)
        if self.beta > 0:
            J = J + self.beta * jnp.mean(jnp.square(out["stiffness"] - stiffness) / var_stiffness)
        if self.penalty in ("hard", "both"):
            J = J + hard_penalty(out["lm"], out["lt"], self.max_penalty, sw)
        if self.penalty in ("smooth", "both"):
            J = J + smooth_range_penalty(out["lm"], *self.fiber_range, self.smooth_weight, sw)
            J = J + smooth_range_penalty(out["lt"] - 1.0, *self.strain_range,
                                         self.smooth_weight, sw)
        return J

    def residual_parts(
        self, out: dict, torque, stiffness, var_torque, var_stiffness,
        weights: jnp.ndarray | None = None, sample_weight=None,
    ) -> tuple[list, list]:
        """000:Eq.8 as residual rows: ``(fit, penalty)``, lists of 1-D arrays.

        ``fit``: ``sqrt(alpha / N) (tau_hat - tau) / sqrt(Var tau)`` per trial, sample and
        DoF (N of them), and the same for the stiffness with beta when beta > 0 (or when
        ``weights`` are given); ``penalty``: the rows of 000:Eq.9
        (:func:`hard_penalty_rows`) and/or of 001:Eq.4 (:func:`smooth_range_rows`) for the
        fibre length and the tendon strain. The squared sum of all rows is
        :meth:`__call__`'s value.

        Parameters
        ----------
        out, torque, stiffness, var_torque, var_stiffness
            As :meth:`__call__`.
        weights : array, shape (2,), optional
            ``(alpha, beta)`` replacing the objective's own (traceable), for a weight sweep;
            the stiffness rows are then always present (zero with beta = 0).
        sample_weight : array (S, T), optional
            Weights of padded trials for the penalty rows.
        """
        if weights is None:
            wa, wb, with_k = self.alpha, self.beta, self.beta > 0
            sa, sb = np.sqrt(wa), np.sqrt(wb)
        else:
            sa, sb, with_k = jnp.sqrt(weights[0]), jnp.sqrt(weights[1]), True
        n_t = np.sqrt(float(np.prod(np.shape(torque))))
        fit = [sa * ((out["torque"] - torque) / jnp.sqrt(var_torque)).ravel() / n_t]
        if with_k:
            n_k = np.sqrt(float(np.prod(np.shape(stiffness))))
            fit.append(sb * ((out["stiffness"] - stiffness) / jnp.sqrt(var_stiffness)).ravel()
                       / n_k)
        pen = []
        sw = sample_weight
        if self.penalty in ("hard", "both"):
            pen.append(hard_penalty_rows(out["lm"], out["lt"], self.max_penalty, sw))
        if self.penalty in ("smooth", "both"):
            pen.append(smooth_range_rows(out["lm"], *self.fiber_range, self.smooth_weight, sw))
            pen.append(smooth_range_rows(out["lt"] - 1.0, *self.strain_range,
                                         self.smooth_weight, sw))
        return fit, pen

    def residuals(self, out: dict, torque, stiffness, var_torque, var_stiffness,
                  sample_weight=None) -> jnp.ndarray:
        """All residual rows of :meth:`residual_parts` as one vector; ``sum(r**2)`` is the
        objective's value (000:Eq.8)."""
        fit, pen = self.residual_parts(out, torque, stiffness, var_torque, var_stiffness,
                                       sample_weight=sample_weight)
        return assemble(fit + pen)

    def errors(self, out: dict, torque, stiffness, valid=None) -> dict[str, float]:
        """The torque-stiffness EMG model study's fitting errors: E_tau = Var(tau_hat - tau)
        / Var(tau) and E_tau+K = E_tau + Var(K_hat - K) / Var(K) (Sec. 2.6, second test),
        over the ``valid`` samples (S, T) of padded trials when given."""
        keep = (slice(None),) if valid is None else (np.asarray(valid, dtype=bool),)

        def ratio(est, ref):
            est, ref = np.asarray(est)[keep], np.asarray(ref)[keep]
            return float(np.var(est - ref) / np.var(ref))

        e_t = ratio(out["torque"], torque)
        res = {"E_tau": e_t}
        if stiffness is not None:
            e_k = ratio(out["stiffness"], stiffness)
            res["E_K"] = e_k
            res["E_tau_K"] = e_t + e_k
        return res
