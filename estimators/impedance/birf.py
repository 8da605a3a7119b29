"""Basis-function-expansion IRF (bIRF), Guarin & Kearney 2017 (004 App. A3, Eq.18-22).

The time-varying intrinsic IRF is expanded on time basis functions over the realization
period (004:Eq.21-22)::

    TQ_p(i) = dt sum_{j=-M}^{M} h(j, i) theta_p(i - j)                       (004:Eq.21)
    h(j, i) = sum_{p} lambda_{j, p} Lambda_p(i)                               (004:Eq.22)

(the torque reflex pathway is not modelled, as in the thesis), so the coefficients
``lambda`` follow from one linear least-squares problem over all realizations with the
regressors ``u(i - j, r) Lambda_p(i)``. Its normal equations are assembled from the
per-time ensemble sums of the eIRF (:mod:`estimators.impedance._core`) without forming the
(R N) x (P L) regressor matrix:

    G = sum_t (Lambda(t) Lambda(t)^T) kron S_xx(t),   g = sum_t Lambda(t) kron S_xy(t).

The ensemble mean is removed first (theta_0 and TQ_0 of 004:Eq.18-19).

Basis family (periodic, since realizations are periods of the time variation):

* ``"bspline"`` (default): ``n_basis`` periodic cardinal B-splines of degree q with
  uniformly spaced knots every ``N / n_basis`` samples (degree 0: piecewise constant,
  3: cubic); they form a partition of unity, so a constant IRF is represented exactly.
* ``"fourier"``: ``1, cos(2 pi k i / N), sin(2 pi k i / N)``, k = 1 .. (n_basis - 1) / 2.

Order selection: the thesis lists P_max = 3, "maximum number of iterations to optimize the
VAF" (004 Table VI), without further detail. We read it as the highest B-spline degree
explored: every degree q = 0 .. ``max_degree`` is combined with every candidate number of
basis functions and the model with the best VAF on *held-out* realizations (``n_folds``
interleaved folds, no randomness) is refitted on all data; ``selection="mdl"`` instead
minimizes MDL = (1 + d ln(n) / n) RSS on all data (d = P L parameters, n = samples).

Knot offset (``shifts``): a uniform knot grid that starts at the first sample of the
realization lines up with whatever the plant does at phase 0 and 0.5 of the period. On the
thesis plant (square-wave K with jumps exactly there) degree 0 with 2 bases is the exact
model, so the thesis's bIRF wins by design: with the jumps moved by 0.3 of a period its
error goes from 2.5 % to 22 %. With ``shifts = S > 1`` the offset of the knot grid is a
selected hyper-parameter like the degree and the number of bases: S offsets equally spaced
within one knot spacing (whole samples) are tried for every (degree, n_basis) and chosen by
the same criterion, so the knots go where the data put the changes, at any phase.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import linalg
from scipy.interpolate import BSpline

from bench.base import Estimator, Tags
from bench.errors import DataError, EstimationError
from bench.params import Interval, Options
from bench.types import ImpedanceEstimate, Realizations
from estimators.impedance import _core

__all__ = ["BIRF", "SHIFTS_DEFAULT", "periodic_basis"]

#: Knot-grid offsets per (degree, n_basis) by default (chosen in ``benchmarks/tuning.py``).
SHIFTS_DEFAULT = 50


def periodic_basis(
    N: int, n_basis: int, family: str = "bspline", degree: int = 3, shift: float = 0.0
) -> np.ndarray:
    """Periodic time basis over one realization.

    Parameters
    ----------
    N : int
        Samples per realization (the period).
    n_basis : int
        Number of basis functions P (for "fourier" an odd number; even is rounded down).
    family : {"bspline", "fourier"}
    degree : int
        B-spline degree q (needs ``n_basis >= q + 1``).
    shift : float
        Offset of the B-spline knot grid, samples: the basis is evaluated at ``i - shift``
        (periodically), so knots sit at ``shift + p N / P``. Ignored by "fourier", whose span
        does not depend on it.

    Returns
    -------
    ndarray, shape (N, P)
        ``Lambda[i, p]`` = basis function p at sample i.
    """
    t = np.arange(N, dtype=float)
    if family == "fourier":
        k = np.arange(1, (int(n_basis) - 1) // 2 + 1)
        ph = 2.0 * np.pi * np.outer(t, k) / N
        return np.concatenate([np.ones((N, 1)), np.cos(ph), np.sin(ph)], axis=1)
    if family != "bspline":
        raise ValueError(f"basis family must be 'bspline' or 'fourier'; got {family!r}")
    P, q = int(n_basis), int(degree)
    if P < q + 1:
        raise ValueError(f"a periodic B-spline basis of degree {q} needs n_basis >= {q + 1}")
    spacing = N / P
    cardinal = BSpline.basis_element(np.arange(q + 2, dtype=float), extrapolate=False)
    # B-spline p is the cardinal spline on [p, p + q + 1] knot spacings, wrapped periodically
    x = np.mod(t - float(shift), N) / spacing  # position in knot spacings, [0, P)
    rel = (x[:, None] - np.arange(P)[None, :]) % P  # (N, P)
    out = np.nan_to_num(cardinal(rel.ravel())).reshape(N, P)
    out[rel >= q + 1] = 0.0
    return out


def _assemble(stats: _core.EnsembleStats, Lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations G (P L, P L) and g (P L,) of the basis expansion.

    ``G = sum_t (Lambda(t) Lambda(t)^T) kron S_xx(t)``: only the k <= q + 1 bases that are
    non-zero at a step contribute, so the sum runs over k^2 blocks per step instead of P^2
    (B-splines; the dense product for the Fourier basis, where every function is non-zero).
    """
    N, P = Lam.shape
    L = stats.Sxy.shape[1]
    nz = Lam != 0
    k = int(nz.sum(axis=1).max()) if nz.any() else 1
    if k * k * 4 > P * P:  # dense bases (Fourier, few functions): plain product
        W = (Lam[:, :, None] * Lam[:, None, :]).reshape(N, P * P)
        G = (W.T @ stats.Sxx.reshape(N, L * L)).reshape(P, P, L, L)
    else:
        idx = np.argsort(~nz, axis=1, kind="stable")[:, :k]  # (N, k) active bases first
        val = np.take_along_axis(Lam, idx, axis=1)  # zero where a row has fewer than k
        pair = (idx[:, :, None] * P + idx[:, None, :]).reshape(-1)  # flat (a, b) block index
        w = (val[:, :, None] * val[:, None, :]).reshape(N, k * k)
        contrib = (w[:, :, None] * stats.Sxx.reshape(N, 1, L * L)).reshape(-1, L * L)
        G = np.zeros((P * P, L * L))
        np.add.at(G, pair, contrib)
        G = G.reshape(P, P, L, L)
    G = G.transpose(0, 2, 1, 3).reshape(P * L, P * L)
    g = (Lam.T @ stats.Sxy).reshape(P * L)
    return G, g


def _assemble_dense(stats: _core.EnsembleStats, Lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference form of :func:`_assemble` (every P^2 block; for tests)."""
    N, P = Lam.shape
    L = stats.Sxy.shape[1]
    W = (Lam[:, :, None] * Lam[:, None, :]).reshape(N, P * P)
    G = (W.T @ stats.Sxx.reshape(N, L * L)).reshape(P, P, L, L)
    G = G.transpose(0, 2, 1, 3).reshape(P * L, P * L)
    return G, (Lam.T @ stats.Sxy).reshape(P * L)


class BIRF(Estimator):
    """Time-varying IRF expanded on periodic time basis functions (004 App. A3).

    Parameters
    ----------
    n_lags : int, default 4
        Lags on each side of zero, samples (004 Table VI: 4).
    basis : {"bspline", "fourier"}, default "bspline"
    max_degree : int, default 3
        Highest B-spline degree explored (004 Table VI P_max = 3, see module docstring).
    n_basis : int or None, default None
        Number of basis functions; None selects it from a geometric grid of candidates
        between 2 and N/2 (and up to ``max_basis``).
    max_basis : int, default 60
        Largest candidate number of basis functions when ``n_basis`` is None.
    selection : {"mdl", "cv"}, default "mdl"
        Minimum description length or held-out-realization VAF (``n_folds`` folds). "mdl"
        was chosen on the tuning plant (``benchmarks/tuning.py``: 9.8 % against 11.5 % for
        "cv" with 50 offsets, and 4-15x faster).
    n_folds : int, default 5
    shifts : int, default 50
        Knot-grid offsets tried per (degree, n_basis), equally spaced whole samples within one
        knot spacing (module docstring; at most one per sample); 1 = knots from sample 0 only
        (the thesis). 50 (every sample offset for 100-sample periods) was chosen on the
        tuning plant (``benchmarks/tuning.py``: geometric mean 9.8 % against 10.4 % with 10
        offsets and 12.1 % with 1), not on a study's plant.
    rank : {"mdl", "full"}, default "mdl"
        How the least-squares system is solved (see :func:`_core.solve_irf`).
    stiffness : {"fit", "gain"}, default "fit"
    contiguous : bool or "auto", default "auto"
        Realizations are consecutive periods of one record: lags reach into the neighbouring
        realization, so every step has data. "auto": the data's ``meta["contiguous"]`` (True
        on data without it is a DataError); False: the first and last ``n_lags`` steps are
        NaN. "auto" chosen on the tuning plant (``benchmarks/tuning.py``: no worse on the
        samples both estimate).

    Notes
    -----
    The model is fitted where data exist; steps without any usable sample (the first and
    last ``n_lags`` steps of non-contiguous realizations) would be extrapolations of the
    expansion and are NaN, as for the eIRF. With ``contiguous=True`` every step is estimated.
    ``rank`` acts on the lag directions: the lagged inputs are projected on the
    identifiable subspace of the time-summed Phi_xx (:func:`_core.lag_subspace`) before the
    expansion is solved, which keeps the normal equations positive definite; candidate bases
    whose normal equations are still singular (a basis function without data) are skipped.
    ``info``: ``degree``, ``n_basis_selected``, ``shift_selected`` (samples), ``scores``
    {(degree, n_basis, shift): VAF % or MDL}, ``vaf`` (in-sample %), ``coverage``,
    ``contiguous``, ``covered``, ``warnings``.
    """

    name: ClassVar[str] = "birf"
    deviations: ClassVar[str] = (
        'the offset of the knot grid is chosen from the data like the degree and basis count, so '
        'its knots follow the jumps at any phase; at phase 0 a jump falling exactly on a sample '
        "and the manipulator loop's sub-sample delay put one sample per jump on the old side "
        '(about 12 % error).'
    )
    tags: ClassVar[Tags] = Tags(time_varying=True, needs_ensemble=True, min_realizations=2)
    _parameter_constraints: ClassVar[dict] = {
        "n_lags": [Interval(int, 1, 200)],
        "basis": [Options(("bspline", "fourier"))],
        "max_degree": [Interval(int, 0, 5)],
        "n_basis": [Interval(int, 1, 100_000), None],
        "max_basis": [Interval(int, 1, 100_000)],
        "selection": [Options(("cv", "mdl"))],
        "n_folds": [Interval(int, 2, 100)],
        "shifts": [Interval(int, 1, 1000)],
        "rank": [Options(("mdl", "full"))],
        "stiffness": [Options(("fit", "gain"))],
        "contiguous": [bool, Options(("auto",))],
    }

    def __init__(
        self,
        *,
        n_lags: int = 4,
        basis: str = "bspline",
        max_degree: int = 3,
        n_basis: int | None = None,
        max_basis: int = 60,
        selection: str = "mdl",
        n_folds: int = 5,
        shifts: int = SHIFTS_DEFAULT,
        rank: str = "mdl",
        stiffness: str = "fit",
        contiguous: bool | str = "auto",
    ) -> None:
        self.n_lags = n_lags
        self.basis = basis
        self.max_degree = max_degree
        self.n_basis = n_basis
        self.max_basis = max_basis
        self.selection = selection
        self.n_folds = n_folds
        self.shifts = shifts
        self.rank = rank
        self.stiffness = stiffness
        self.contiguous = contiguous

    def _offsets(self, N: int, P: int) -> list[int]:
        """Knot-grid offsets (whole samples) tried for ``P`` B-spline bases."""
        if self.basis == "fourier":
            return [0]
        spacing = N / P
        S = max(1, min(int(self.shifts), int(np.floor(spacing))))
        return sorted({round(k * spacing / S) % N for k in range(S)})

    def _candidates(self, N: int, n_params_max: int, L: int) -> list[tuple[int, int, int]]:
        degrees = range(self.max_degree + 1) if self.basis == "bspline" else [0]
        if self.n_basis is not None:
            sizes = [int(self.n_basis)]
        else:
            top = max(2, min(N // 2, self.max_basis))
            sizes = sorted({round(float(v)) for v in np.geomspace(2, top, 12)})
            if self.basis == "fourier":
                sizes = sorted({2 * (s // 2) + 1 for s in sizes} | {1})
        out = [
            (q, P, sh) for q in degrees for P in sizes
            if (self.basis == "fourier" or P >= q + 1) and P * L < n_params_max
            for sh in self._offsets(N, P)
        ]
        if not out:
            raise DataError(
                f"BIRF: no basis size fits the data ({n_params_max} samples for "
                f"{L} lags); use fewer lags or more realizations."
            )
        return out

    @staticmethod
    def _fit(stats: _core.EnsembleStats, Lam: np.ndarray, dt: float) -> np.ndarray | None:
        """IRF (N, r) of the basis model in lag directions, or None when the normal
        equations are not positive definite (a basis function without data, e.g. at the
        edges of non-contiguous realizations: that model is not identifiable)."""
        G, g = _assemble(stats, Lam)
        try:
            lam = linalg.cho_solve(linalg.cho_factor(G), g) / dt
        except linalg.LinAlgError:
            return None
        return Lam @ lam.reshape(-1, stats.Sxy.shape[1])  # 004:Eq.22

    @staticmethod
    def _mdl_offsets(
        stats: _core.EnsembleStats, Lam0: np.ndarray, offsets: list[int], dt: float
    ) -> np.ndarray | None:
        """MDL of one (degree, n_basis) at every knot offset at once, or None.

        With whole-sample offsets the basis at offset s is ``Lam0`` delayed by s samples, so
        ``G_s = sum_tau (Lambda0(tau) Lambda0(tau)^T) kron S_xx(tau + s)``: the offsets share
        one product with the time-shifted sums and one batched solve (the same numbers as
        :meth:`_fit` offset by offset). None when a system is not positive definite (the
        caller then falls back to :meth:`_fit` per offset).
        """
        N, P = Lam0.shape
        r = stats.Sxy.shape[1]
        S = len(offsets)
        t = (np.arange(N)[None, :] + np.asarray(offsets)[:, None]) % N  # (S, N): tau + s
        Sxx = stats.Sxx.reshape(N, r * r)[t]  # (S, N, r^2)
        Sxy = stats.Sxy[t]  # (S, N, r)
        W0 = (Lam0[:, :, None] * Lam0[:, None, :]).reshape(N, P * P)
        G = np.matmul(W0.T[None], Sxx).reshape(S, P, P, r, r)
        G = G.transpose(0, 1, 3, 2, 4).reshape(S, P * r, P * r)
        g = np.matmul(Lam0.T[None], Sxy).reshape(S, P * r)
        try:
            np.linalg.cholesky(G)
        except np.linalg.LinAlgError:
            return None
        lam = np.linalg.solve(G, g[:, :, None])[:, :, 0].reshape(S, P, r)  # 004:Eq.22
        h = np.matmul(Lam0[None], lam)  # (S, N, r): dt h(tau + s) (lam carries the dt)
        n = stats.n[t]
        Syy = stats.Syy[t]
        ok = n > 0
        res = (Syy - 2.0 * np.einsum("sta,sta->st", h, Sxy)
               + np.einsum("sta,stab,stb->st", h, Sxx.reshape(S, N, r, r), h))
        res = np.where(ok, res, 0.0).sum(axis=1)
        tot = np.where(ok, Syy, 0.0).sum(axis=1)
        rss = res / tot * stats.Syy.sum()  # as vaf_from_stats, scaled to all data
        nn = stats.n.sum()
        return (1.0 + P * r * np.log(nn) / nn) * rss

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        lags = _core.lag_vector(self.n_lags)
        u = _core.remove_mean(data.u, "ensemble")
        y = _core.remove_mean(data.y, "ensemble")
        R, N, dt = data.R, data.N, data.dt
        if self.selection == "cv" and R < self.n_folds:
            raise DataError(
                f"BIRF with selection='cv' needs at least n_folds={self.n_folds} "
                f"realizations; got {R}."
            )
        contiguous = _core.resolve_contiguous(self.contiguous, data.meta, type(self).__name__)
        full = _core.ensemble_statistics(u, y, lags, contiguous=contiguous)
        # identifiable lag directions (pseudo-inverse subspace, as the eIRF's rank option)
        V, sub_warns = _core.lag_subspace(full, self.rank)
        full = _core.project_stats(full, V)
        folds = np.arange(R) % self.n_folds
        fold_stats = [
            _core.project_stats(
                _core.ensemble_statistics(
                    u, y, lags, contiguous=contiguous, weights=(folds == k).astype(float)
                ),
                V,
            )
            for k in range(self.n_folds)
        ] if self.selection == "cv" else []
        n_train = full.n.sum() * ((self.n_folds - 1) / self.n_folds if fold_stats else 1.0)
        cands = self._candidates(N, int(n_train), V.shape[1])
        scores: dict[tuple[int, int, int], float] = {}
        if self.selection == "mdl":  # all offsets of a (degree, n_basis) in one batch
            groups: dict[tuple[int, int], list[int]] = {}
            for q, P, sh in cands:
                groups.setdefault((q, P), []).append(sh)
            rest = []
            for (q, P), offs in groups.items():
                mdl = self._mdl_offsets(full, periodic_basis(N, P, self.basis, q), offs, dt)
                if mdl is None:
                    rest += [(q, P, sh) for sh in offs]
                else:
                    scores.update({(q, P, sh): float(v) for sh, v in zip(offs, mdl)})
            cands = rest
        for q, P, sh in cands:
            Lam = periodic_basis(N, P, self.basis, q, sh)
            if self.selection == "cv":
                res = tot = 0.0
                for st in fold_stats:
                    train = _core.EnsembleStats(
                        full.Sxx - st.Sxx, full.Sxy - st.Sxy, full.Syy - st.Syy,
                        full.n - st.n, lags,
                    )
                    h = self._fit(train, Lam, dt)
                    if h is None:
                        res = np.nan
                        break
                    v = _core.vaf_from_stats(h, st, dt)
                    e = st.Syy.sum()
                    res += (1.0 - v / 100.0) * e
                    tot += e
                scores[(q, P, sh)] = float(100.0 * (1.0 - res / tot)) if tot > 0 else np.nan
            else:
                h = self._fit(full, Lam, dt)
                if h is None:
                    scores[(q, P, sh)] = np.nan
                    continue
                v = _core.vaf_from_stats(h, full, dt)
                rss = (1.0 - v / 100.0) * full.Syy.sum()
                n = full.n.sum()
                scores[(q, P, sh)] = float((1.0 + P * V.shape[1] * np.log(n) / n) * rss)
        finite = {k: v for k, v in scores.items() if np.isfinite(v)}
        if not finite:
            raise EstimationError(
                "BIRF: no candidate basis gave a solvable least-squares problem "
                "(no input power or singular regressors)"
            )
        pick = max if self.selection == "cv" else min
        q, P, sh = pick(finite, key=finite.get)
        Lam = periodic_basis(N, P, self.basis, q, sh)
        h_red = self._fit(full, Lam, dt)
        if h_red is None:  # identifiable on every fold but not on all data: cannot happen
            raise EstimationError(f"BIRF: the selected basis ({q}, {P}, {sh}) is singular")
        vaf = _core.vaf_from_stats(h_red, full, dt)
        h = h_red @ V.T  # back to lags, (N, L)
        h[full.n == 0] = np.nan  # no data at these steps: the expansion would extrapolate
        bad = [k for k, v in scores.items() if not np.isfinite(v)]
        warns = sub_warns + (
            [f"{len(bad)} candidate bases (degree, n_basis, shift) not identifiable "
             f"(singular normal equations), skipped: {bad}"] if bad else []
        )
        K, B, I = _core.impedance_from_irf(h, lags, dt, u, self.stiffness)
        return ImpedanceEstimate(
            K=K, B=B, I=I, irf=h, lags=lags * dt,
            info={
                **self.get_params(),
                "lags_samples": lags,
                "degree": q if self.basis == "bspline" else None,
                "n_basis_selected": P,
                "shift_selected": sh,
                "scores": scores,
                "lag_rank": int(V.shape[1]),
                "vaf": vaf,
                **_core.coverage_info(K, contiguous),
                "warnings": warns,
            },
        )
