"""Non-causal LPV subspace identification of joint impedance (004 Sec. II-A, App. A1).

The model is the generalized (causal + anti-causal) LPV state-space description of
004:Eq.8-12 (Kerklaan 2018, after van Wingerden & Verhaegen 2009 and Verhaegen 1996),
written in predictor form with ``z_k = [u_k, y_k]`` (``z_k = u_k`` in the output-error
form, ``innovation=False``, the default: then ``K^c = K^ac = 0``)::

    x^c_{k+1}  = A~c(mu_k) x^c_k + B~c(mu_k) z_k               causal part      (004:Eq.8)
    x^ac_k     = E~(mu_{k+1}) x^ac_{k+1} + B~ac(mu_{k+1}) z_{k+1}  anti-causal part (004:Eq.9)
    y_k        = C^c x^c_k + C^ac x^ac_k + D(mu_k) u_k + e_k                          (004:Eq.10)

with every time-varying matrix affine in the scheduling vector ``mu_k = [1, p_k, ...]``
(004:Eq.11-12). Two conventions differ from the printed equations and are deliberate:

* the anti-causal state that enters the output at step k summarizes strictly future data
  ``z_{k+1}, z_{k+2}, ...`` (004:Eq.9 shifted by one sample); with ``y_k`` inside ``x^ac_k``
  the output equation would contain ``y_k`` on both sides;
* ``D`` is affine in ``mu_k`` as well. With constant ``C`` and ``D`` an instantaneous
  stiffness change at step k could only act through states that depend on ``mu_{k-1}``
  and ``mu_{k+1}``, smearing every jump over three samples.

Identification (predictor-based subspace, after van Wingerden & Verhaegen 2009):

1. least squares of ``y_k`` on the Khatri-Rao past and future data vectors and on
   ``mu_k (x) u_k`` gives ``C^c K^c_p``, ``C^ac K^ac_f`` and ``D``;
2. the LPV observability-times-controllability matrices are assembled from these Markov
   coefficients and an SVD, weighted by the data covariance, gives a state basis; the
   state sequences are ``x_k = S_n^{-1/2} U_n^T (Gamma K) N_k``;
3. least squares on the state sequences gives ``C, D`` and the affine local matrices
   ``A~^(i), B~^(i)`` of both parts;
4. the orders ``n_c, n_ac <= max_order`` (004 Table VI: ``P_end = 3``) maximize the VAF
   of the identified two-sided predictor.

The stiffness at each time step is the frozen static gain (z = 1) of the identified
position->torque model at that step's scheduling value.

Memory. The kernel (dual) form of van Wingerden & Verhaegen (2009) solves step 1 with a
Gram matrix of one row per sample: 20 000 samples (200 s at 100 Hz) need 3.2 GB, the likely
reason LPV ran out of memory at 200 s and 400 s in the thesis (004 Table III). Here the
windows are short, so the primal normal equations (dimension
``nz (m + ... + m^p + m + ... + m^f) + m``, 14 for the defaults) are accumulated over
chunks of realizations: memory does not grow with the record length, and the result is
the same least-squares solution.

:class:`LPVIRF` ("lpv-irf") is the simpler variant: a two-sided impulse response whose lags
are affine in the scheduling vector, fitted by least squares, without the state space.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bench.base import Estimator, Tags
from bench.errors import DataError, EstimationError
from bench.params import Interval
from bench.types import ImpedanceEstimate, Realizations
from estimators.impedance._lpv_core import data_vectors, markov_hankel, n_words

__all__ = ["LPV", "LPVIRF"]

_CHUNK = 64  # realizations per streamed block
_MAX_DIM = 4000  # largest regressor dimension accepted (Gram matrix of 128 MB)


def _scheduling(p: np.ndarray, degree: int) -> np.ndarray:
    """Affine scheduling vectors ``mu = [1, p~, p~^2, ...]`` (004:Eq.12), shape (R, N, m).

    ``p~`` is ``p`` mapped onto [-1, 1] over its range; an affine reparametrization, so
    the model class is unchanged but the Khatri-Rao products stay well conditioned.
    """
    lo, hi = float(p.min()), float(p.max())
    half = 0.5 * (hi - lo)
    pn = (p - 0.5 * (hi + lo)) / half if half > 0 else np.zeros_like(p)
    return np.stack([pn**d for d in range(degree + 1)], axis=-1)


def _solve_ls(G: np.ndarray, g: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge-regularized normal equations ``(G + ridge tr(G)/n I) x = g``."""
    n = G.shape[0]
    lam = ridge * max(np.trace(G) / n, np.finfo(float).tiny)
    try:
        return np.linalg.solve(G + lam * np.eye(n), g)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(G + lam * np.eye(n), g, rcond=None)[0]


def _kron_rows(mu: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise Khatri-Rao product ``mu (x) x`` over the leading axes."""
    return (mu[..., :, None] * x[..., None, :]).reshape(*x.shape[:-1], -1)


class LPV(Estimator):
    """Non-causal LPV predictor-based subspace identification (004 App. A1, Eq. 8-12).

    Parameters
    ----------
    max_order : int, default 3
        Largest state order of each part tried; orders ``1..max_order`` of the causal and
        of the anti-causal part are chosen by VAF (004 Table VI, ``P_end = 3``).
    past : int, default 4
        Past window ``p`` (samples) of the causal predictor. Not given by the thesis; 4 was
        chosen on the tuning plant (``benchmarks/tuning.py``, geometric mean 4.5 % over 2..4
        x future 2..3 x both forms), not on a study's plant.
    future : int, default 2
        Future window ``f`` (samples) of the anti-causal predictor. Not given by the thesis;
        2 chosen with ``past`` on the tuning plant.
    schedule_degree : int, default 1
        Polynomial degree of the affine scheduling vector, ``m = degree + 1`` local models
        (004:Eq.11-12): 1 for the normalized K(t) shape of the MSD plant, 2 for the
        lever rig whose stiffness is quadratic in the pivot position (004:Eq.34).
    regularization : float, default 1e-8
        Tikhonov weight relative to the mean diagonal of each normal-equation matrix.
    innovation : bool, default False
        ``True``: the innovation (Kalman) form of 004:Eq.8-9, predictor input
        ``z = [u, y]``. ``False``: output-error form, ``K^c = K^ac = 0`` and ``z = u``. The
        simulated and rig torques carry additive measurement noise (004 Sec. III-A), for
        which the innovation gain is zero; estimating it adds variance and feeds the noise
        back through ``1 / (1 - G_y)`` in the static gain. False confirmed on the tuning
        plant (``benchmarks/tuning.py``: 4.5 % against 10.1 % at best with True).

    Notes
    -----
    ``data.schedule`` (R, N) is required. Realizations are treated independently: the
    first ``past`` and last ``future`` samples of each row enter the data vectors but not
    the regressions. ``K`` is averaged over realizations of the per-step static gain.
    """

    name: ClassVar[str] = "lpv"
    deviations: ClassVar[str] = (
        "the thesis's LPV grows worse with SNR; ours has no such bias and improves with SNR. "
        'Its schedule is the measured driver of K (a noise-free copy of the K shape), an '
        'advantage the other methods do not have.'
    )
    tags: ClassVar[Tags] = Tags(needs_schedule=True, needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "max_order": [Interval(int, 1, 10)],
        "past": [Interval(int, 1, 12)],
        "future": [Interval(int, 1, 12)],
        "schedule_degree": [Interval(int, 0, 4)],
        "regularization": [Interval(float, 0, 1, closed="both")],
        "innovation": [bool],
    }

    def __init__(
        self,
        *,
        max_order: int = 3,
        past: int = 4,
        future: int = 2,
        schedule_degree: int = 1,
        regularization: float = 1e-8,
        innovation: bool = False,
    ) -> None:
        self.max_order = max_order
        self.past = past
        self.future = future
        self.schedule_degree = schedule_degree
        self.regularization = regularization
        self.innovation = innovation

    @property
    def _nz(self) -> int:
        """Predictor inputs per step: 2 (``[u, y]``, innovation form) or 1 (``u``)."""
        return 2 if self.innovation else 1

    # ------------------------------------------------------------------ steps
    def _prepare(self, data: Realizations) -> tuple[np.ndarray, np.ndarray, float, float]:
        su, sy = float(np.std(data.u)), float(np.std(data.y))
        if su == 0 or sy == 0:
            raise DataError("LPV needs a non-constant input u and output y.")
        z = np.stack([data.u / su, data.y / sy], axis=-1)  # (R, N, 2)
        mu = _scheduling(data.schedule, self.schedule_degree)
        return mu, z, su, sy

    def _regressors(self, mu: np.ndarray, z: np.ndarray, ks: np.ndarray) -> np.ndarray:
        """``[N^c_k, N^ac_k, mu_k (x) u_k]`` for rows of a chunk, shape (R, K, d)."""
        p, f = self.past, self.future
        n = mu.shape[1]
        zp = z[:, :, : self._nz]  # predictor inputs: [u, y] (innovation form) or [u]
        nc = data_vectors(mu, zp, p, ks)
        nac = data_vectors(mu[:, ::-1], zp[:, ::-1], f, n - 1 - ks)  # future = reversed past
        mu_u = mu[:, ks, :] * z[:, ks, 0:1]
        return np.concatenate([nc, nac, mu_u], axis=2)

    def _markov(self, mu, z, ks):
        """Step 1: streamed least squares for ``C^c K^c``, ``C^ac K^ac`` and ``D``."""
        G = g = None
        for r0 in range(0, mu.shape[0], _CHUNK):
            phi = self._regressors(mu[r0:r0 + _CHUNK], z[r0:r0 + _CHUNK], ks)
            phi = phi.reshape(-1, phi.shape[2])
            y = z[r0:r0 + _CHUNK][:, ks, 1].ravel()
            if G is None:
                d = phi.shape[1]
                G, g = np.zeros((d, d)), np.zeros(d)
            G += phi.T @ phi
            g += phi.T @ y
        h = _solve_ls(G, g, self.regularization)
        return h, G

    def _state_maps(self, h: np.ndarray, G: np.ndarray, m: int, nz: int) -> list[np.ndarray]:
        """Step 2: weighted SVD of ``Gamma K`` per part; returns ``[P_c, P_ac]``."""
        maps = []
        dims = (nz * n_words(m, self.past), nz * n_words(m, self.future))
        offset = 0
        for window, dim in zip((self.past, self.future), dims):
            hk = h[offset:offset + dim]
            Sigma = G[offset:offset + dim, offset:offset + dim]
            offset += dim
            GK = markov_hankel(hk, m, window, nz)
            w, V = np.linalg.eigh(Sigma / max(np.trace(Sigma), np.finfo(float).tiny))
            L = V * np.sqrt(np.clip(w, 0.0, None))  # Sigma ~ L L^T
            U, s, _ = np.linalg.svd(GK @ L, full_matrices=False)
            n = min(self.max_order, int(np.sum(s > s[0] * 1e-10)) if s.size else 0)
            if n < 1:
                raise EstimationError("LPV: the estimated Markov coefficients are all zero.")
            maps.append((U[:, :n] / np.sqrt(s[:n])).T @ GK)  # x_k = S^-1/2 U^T (Gamma K) N_k
        return maps

    def _state_grams(self, mu, z, ks, maps):
        """Step 3 data: Gram matrices of the output, causal and anti-causal regressions."""
        dc = maps[0].shape[1]
        dac = maps[1].shape[1]
        nz = self._nz
        gram = {"out": 0.0, "c": 0.0, "ac": 0.0}
        for r0 in range(0, mu.shape[0], _CHUNK):
            m_, z_ = mu[r0:r0 + _CHUNK], z[r0:r0 + _CHUNK]
            phi = self._regressors(m_, z_, ks)
            xc = phi[:, :, :dc] @ maps[0].T  # (R, K, nc)
            xac = phi[:, :, dc:dc + dac] @ maps[1].T
            mk, zk = m_[:, ks, :], z_[:, ks, :]
            o = np.concatenate([xc, xac, mk * zk[:, :, 0:1], zk[:, :, 1:2]], axis=2)
            o = o.reshape(-1, o.shape[2])
            gram["out"] = gram["out"] + o.T @ o
            # causal: x^c_{k+1} on [mu_k (x) x^c_k, mu_k (x) z_k]              (004:Eq.8)
            rc = np.concatenate(
                [_kron_rows(mk[:, :-1], xc[:, :-1]), _kron_rows(mk[:, :-1], zk[:, :-1, :nz]),
                 xc[:, 1:]], axis=2)
            rc = rc.reshape(-1, rc.shape[2])
            gram["c"] = gram["c"] + rc.T @ rc
            # anti-causal: x^ac_k on [mu_{k+1} (x) x^ac_{k+1}, mu_{k+1} (x) z_{k+1}]  (004:Eq.9)
            ra = np.concatenate(
                [_kron_rows(mk[:, 1:], xac[:, 1:]), _kron_rows(mk[:, 1:], zk[:, 1:, :nz]),
                 xac[:, :-1]], axis=2)
            ra = ra.reshape(-1, ra.shape[2])
            gram["ac"] = gram["ac"] + ra.T @ ra
        return gram

    def _fit_orders(self, gram, nmax_c, nmax_ac, m, nz):
        """Step 3: least squares for the system matrices of orders (n_c, n_ac)."""

        def part(G, nmax, n):
            # columns: mu (x) x (m*nmax), mu (x) z (m*nz), targets x (nmax)
            ix = [i * nmax + s for i in range(m) for s in range(n)]
            iz = [m * nmax + j for j in range(m * nz)]
            it = [m * nmax + m * nz + s for s in range(n)]
            cols = ix + iz
            theta = _solve_ls(G[np.ix_(cols, cols)], G[np.ix_(cols, it)], self.regularization)
            A = theta[: m * n].T.reshape(n, m, n).transpose(1, 0, 2)  # (m, n, n)
            B = theta[m * n:].T.reshape(n, m, nz).transpose(1, 0, 2)  # (m, n, nz)
            return A, B

        models = {}
        Go = gram["out"]
        for nc in range(1, nmax_c + 1):
            Ac, Bc = part(gram["c"], nmax_c, nc)
            for nac in range(1, nmax_ac + 1):
                Aa, Ba = part(gram["ac"], nmax_ac, nac)
                cols = (list(range(nc)) + [nmax_c + s for s in range(nac)]
                        + [nmax_c + nmax_ac + i for i in range(m)])
                ty = nmax_c + nmax_ac + m
                th = _solve_ls(Go[np.ix_(cols, cols)], Go[cols, ty], self.regularization)
                models[(nc, nac)] = {
                    "Ac": Ac, "Bc": Bc, "Cc": th[:nc],
                    "Aac": Aa, "Bac": Ba, "Cac": th[nc:nc + nac], "D": th[nc + nac:],
                }
        return models

    def _predict(self, model, mu, z, ks, maps):
        """Two-sided predictor output of an identified model on the valid steps."""
        nc, nac = model["Cc"].size, model["Cac"].size
        nz = self._nz
        k0, k1 = int(ks[0]), int(ks[-1])
        R = mu.shape[0]
        yhat = np.empty((R, ks.size))
        xc_all = np.empty((R, ks.size, nc))
        xac_all = np.empty((R, ks.size, nac))
        dc = maps[0].shape[1]
        phi0 = self._regressors(mu, z, np.array([k0, k1]))
        xc = phi0[:, 0, :dc] @ maps[0][:nc].T
        xac = phi0[:, 1, dc:dc + maps[1].shape[1]] @ maps[1][:nac].T
        for i, k in enumerate(range(k0, k1 + 1)):
            xc_all[:, i] = xc
            if k < k1:
                A = np.einsum("ri,ist->rst", mu[:, k], model["Ac"])
                B = np.einsum("ri,ist->rst", mu[:, k], model["Bc"])
                xc = np.einsum("rst,rt->rs", A, xc) + np.einsum("rst,rt->rs", B, z[:, k, :nz])
        for i, k in zip(range(ks.size - 1, -1, -1), range(k1, k0 - 1, -1)):
            xac_all[:, i] = xac
            if k > k0:
                E = np.einsum("ri,ist->rst", mu[:, k], model["Aac"])
                B = np.einsum("ri,ist->rst", mu[:, k], model["Bac"])
                xac = np.einsum("rst,rt->rs", E, xac) + np.einsum("rst,rt->rs", B, z[:, k, :nz])
        yhat = (xc_all @ model["Cc"] + xac_all @ model["Cac"]
                + (mu[:, ks, :] @ model["D"]) * z[:, ks, 0])  # 004:Eq.10
        return yhat

    @staticmethod
    def _static_gain(model, mu: np.ndarray) -> np.ndarray:
        """Frozen static gain u -> y at scheduling vectors ``mu`` (..., m), closed over y."""
        shape = mu.shape[:-1]
        mu = mu.reshape(-1, mu.shape[-1])
        gu = mu @ model["D"]
        gy = np.zeros_like(gu)
        for A, B, C in (("Ac", "Bc", "Cc"), ("Aac", "Bac", "Cac")):
            Am = np.einsum("ri,ist->rst", mu, model[A])
            Bm = np.einsum("ri,ist->rst", mu, model[B])
            n = Am.shape[1]
            M = np.eye(n)[None] - Am  # z = 1: (I - A~(mu))^-1 B~(mu)
            try:
                X = np.linalg.solve(M, Bm)
            except np.linalg.LinAlgError:
                X = np.linalg.pinv(M) @ Bm
            g = np.einsum("s,rsj->rj", model[C], X)
            gu = gu + g[:, 0]
            if g.shape[1] > 1:
                gy = gy + g[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            K = gu / (1.0 - gy)  # predictor y = Gu u + Gy y  =>  y = Gu / (1 - Gy) u
        return K.reshape(shape)

    # ------------------------------------------------------------------ main
    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        p, f = self.past, self.future
        N = data.N
        if N < p + f + 3:
            raise DataError(
                f"LPV needs realizations longer than past + future + 2 = {p + f + 2} samples; "
                f"got N = {N}."
            )
        mu, z, su, sy = self._prepare(data)
        m, nz = mu.shape[2], self._nz
        dim = nz * (n_words(m, p) + n_words(m, f)) + m
        if dim > _MAX_DIM:
            raise EstimationError(
                f"LPV regressor dimension {dim} exceeds {_MAX_DIM}; lower 'past', 'future' "
                "or 'schedule_degree'."
            )
        ks = np.arange(p, N - f)
        if data.R * ks.size < 2 * dim:
            raise DataError(
                f"LPV needs at least {2 * dim} regression samples for {dim} unknowns; got "
                f"{data.R * ks.size} (R = {data.R} realizations of {ks.size} usable steps)."
            )
        h, G = self._markov(mu, z, ks)  # step 1
        maps = self._state_maps(h, G, m, nz)  # step 2
        gram = self._state_grams(mu, z, ks, maps)  # step 3
        models = self._fit_orders(gram, maps[0].shape[0], maps[1].shape[0], m, nz)
        yv = z[:, ks, 1]
        vafs = {}
        for key, model in models.items():  # step 4: order by VAF
            with np.errstate(all="ignore"):
                yhat = self._predict(model, mu, z, ks, maps)
                vaf = 100.0 * (1.0 - np.var(yv - yhat) / np.var(yv))
            vafs[key] = float(vaf) if np.isfinite(vaf) else -np.inf
        best = max(vafs, key=lambda k: (vafs[k], -sum(k)))
        if not np.isfinite(vafs[best]):
            raise EstimationError("LPV: every identified model diverged (no finite VAF).")
        model = models[best]
        K_rk = self._static_gain(model, mu) * (sy / su)
        with np.errstate(all="ignore"):
            K = np.nanmean(np.where(np.isfinite(K_rk), K_rk, np.nan), axis=0)
        return ImpedanceEstimate(
            K=K,
            info={
                "order_causal": best[0],
                "order_anticausal": best[1],
                "vaf": vafs[best],
                "vaf_by_order": {f"{a},{b}": v for (a, b), v in vafs.items()},
                "past": p,
                "future": f,
                "local_models": m,
                "regressors": dim,
                "params": self.get_params(),
            },
        )


class LPVIRF(Estimator):
    """LPV two-sided impulse response: the simpler variant of :class:`LPV`.

    The IRF of 004:Eq.13 with each lag affine in the scheduling vector at the output step
    (004:Eq.11-12 applied to the IRF instead of the state-space matrices)::

        y_k = dt * sum_{j=-L}^{L} h_j(mu_k) u_{k-j},    h_j(mu) = sum_i mu^(i) h_j^(i)

    solved by least squares over all realizations (normal equations accumulated in chunks).
    The stiffness is the frozen static gain ``K_k = dt sum_j h_j(mu_k)``.

    Parameters
    ----------
    lags : int, default 4
        One-sided number of lags L (samples); 004 Table VI uses 4 lags for its IRF methods.
    schedule_degree : int, default 1
        Polynomial degree of the scheduling vector (``m = degree + 1`` local models).
    regularization : float, default 1e-8
        Tikhonov weight relative to the mean diagonal of the normal equations.
    """

    name: ClassVar[str] = "lpv-irf"
    tags: ClassVar[Tags] = Tags(needs_schedule=True, needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "lags": [Interval(int, 0, 50)],
        "schedule_degree": [Interval(int, 0, 4)],
        "regularization": [Interval(float, 0, 1, closed="both")],
    }

    def __init__(
        self, *, lags: int = 4, schedule_degree: int = 1, regularization: float = 1e-8
    ) -> None:
        self.lags = lags
        self.schedule_degree = schedule_degree
        self.regularization = regularization

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        L, N = self.lags, data.N
        if N < 2 * L + 2:
            raise DataError(f"LPVIRF needs realizations of at least 2 lags + 2 = {2 * L + 2} "
                            f"samples; got N = {N}.")
        mu = _scheduling(data.schedule, self.schedule_degree)  # (R, N, m)
        m = mu.shape[2]
        ks = np.arange(L, N - L)
        shifts = np.arange(-L, L + 1)
        dim = m * shifts.size
        if data.R * ks.size < 2 * dim:
            raise DataError(
                f"LPVIRF needs at least {2 * dim} regression samples for {dim} unknowns; got "
                f"{data.R * ks.size}."
            )
        G, g = np.zeros((dim, dim)), np.zeros(dim)
        for r0 in range(0, data.R, _CHUNK):
            u = data.u[r0:r0 + _CHUNK]
            lagged = u[:, ks[:, None] - shifts[None, :]]  # (Rc, K, 2L+1): u_{k-j}
            phi = _kron_rows(mu[r0:r0 + _CHUNK][:, ks], lagged).reshape(-1, dim)  # 004:Eq.13
            G += phi.T @ phi
            g += phi.T @ data.y[r0:r0 + _CHUNK][:, ks].ravel()
        theta = _solve_ls(G, g, self.regularization).reshape(m, shifts.size) / data.dt
        irf_r = np.einsum("rki,ij->rkj", mu, theta)  # h_j(mu_k) per realization and step
        irf = irf_r.mean(axis=0)  # (N, 2L+1)
        K = irf_r.sum(axis=2).mean(axis=0) * data.dt  # frozen static gain
        resid_var = float(np.sum(data.y[:, ks] ** 2) - 2 * (theta.ravel() * data.dt) @ g
                          + (theta.ravel() * data.dt) @ G @ (theta.ravel() * data.dt))
        vaf = 100.0 * (1.0 - resid_var / float(np.sum(
            (data.y[:, ks] - data.y[:, ks].mean()) ** 2)))
        return ImpedanceEstimate(
            K=K, irf=irf, lags=shifts / data.fs,
            info={"vaf": vaf, "lags": L, "local_models": m, "params": self.get_params()},
        )
