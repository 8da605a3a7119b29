"""Shared correlation / impulse-response maths of the IRF-family estimators.

One vectorized implementation serves the time-invariant IRF, the ensemble IRF (eIRF,
004 App. A2), the short-data-segment method (SDS, 004 App. A4) and the basis IRF
(bIRF, 004 App. A3):

1. :func:`lagged_input` builds, for every realization r and time step t, the vector of
   lagged inputs ``x_r(t) = [u(t - M1, r), ..., u(t - M2, r)]`` (lags M1 <= 0 <= M2,
   negative = anti-causal) as a strided view, with a validity mask for time steps whose
   lags fall outside the data.
2. :func:`ensemble_statistics` sums, per time step, the ensemble products
   ``S_xx(t) = sum_r x_r(t) x_r(t)^T`` (L, L), ``S_xy(t) = sum_r x_r(t) y(t, r)`` (L,),
   ``S_yy(t)`` and the count ``n(t)`` of realizations used. Divided by ``n(t)`` these are the
   ensemble correlations phi_xx / phi_xy of 004:Eq.17, arranged as the per-time Phi_xx
   matrix of 004:Eq.16 and the vector Phi_xy of 004:Eq.15 (element (a, b) of Phi_xx is
   phi_xx(t - m_a, m_b - m_a) = E_r[u(t - m_a) u(t - m_b)]).
3. :func:`window_sum` turns them into the short-data-segment correlations of 004:Eq.23
   (a centred moving sum over ``window`` time steps).
4. :func:`solve_projected` restricts the problem to the lag directions the input excites
   over the record (:func:`lag_subspace`, a pseudo-inverse for band-limited inputs) and
   :func:`solve_irf` solves 004:Eq.14, ``h(t) = dt^-1 Phi_xx(t)^-1 Phi_xy(t)``, batched over
   time steps by a symmetric eigen-decomposition, with all directions or with the order
   chosen per step by the minimum description length (MDL), as the pseudo-inverse IRF of
   Westwick & Kearney (NLID toolbox ``tv_ident``, 'pseudo' approach). Steps whose own
   Phi_xx is rank deficient in those directions (no input there, too few realizations)
   give NaN and a recorded warning, never a silent minimum-norm number.
5. :func:`impedance_from_irf` maps an IRF to stiffness K, damping B and inertia I, either by
   an input-spectrum-weighted least-squares fit of ``K - I w^2 + j B w`` to the IRF's
   frequency response (:func:`fit_second_order`, the default) or by its zero-frequency
   moments (:func:`irf_to_impedance`, static gain).

Conventions: input u = position (rad), output y = torque (Nm); the IRF h is in Nm/rad/s
so that ``y(i) = dt * sum_j h(i, j) u(i - j)`` (004:Eq.13).

Edges: with ``contiguous=False`` a time step is used only where all its lags lie inside
the realization (the first ``M2`` and last ``-M1`` steps are NaN for per-time methods, as
the NLID ``tv_ident`` domain ``M2+1 .. N+M1``). With ``contiguous=True`` the realizations
are taken as consecutive periods of one record (``Realizations.from_record``): lags reach
into the neighbouring realization, so only the very first (last) realization drops out of
the ensemble at the first (last) steps and every time step is estimable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.errors import DataError, EstimationError

__all__ = [
    "RCOND_GRID",
    "EnsembleStats",
    "coverage_info",
    "ensemble_statistics",
    "estimate_from_stats",
    "fit_second_order",
    "impedance_from_irf",
    "input_spectrum",
    "irf_to_impedance",
    "lag_subspace",
    "lag_vector",
    "lagged_input",
    "project_stats",
    "remove_mean",
    "require_estimate",
    "resolve_contiguous",
    "select_rcond",
    "solve_irf",
    "solve_projected",
    "vaf_from_stats",
    "window_sum",
]


def lag_vector(n_lags: int) -> np.ndarray:
    """Two-sided lags ``-n_lags .. n_lags`` in samples, shape (2 n_lags + 1,).

    ``n_lags`` is the number of lags on *each* side of zero (004 Table VI N_lags = 4 at
    100 Hz: 40 ms anti-causal and 40 ms causal memory, 9 IRF values in all).
    """
    n = int(n_lags)
    return np.arange(-n, n + 1)


def remove_mean(x: np.ndarray, how: str) -> np.ndarray:
    """Remove the deterministic part of (R, N) data.

    Parameters
    ----------
    x : ndarray, shape (R, N)
    how : {"ensemble", "mean", "none"}
        "ensemble": subtract the ensemble average at each time step (the mean trajectory
        theta_0(i) and torque TQ_0 of 004:Eq.18-19, as NLID ``tv_ident``); "mean": subtract
        the overall mean (stationary record); "none": unchanged.

    Returns
    -------
    ndarray, shape (R, N), a new array.
    """
    x = np.asarray(x, dtype=float)
    if how == "ensemble":
        return x - x.mean(axis=0, keepdims=True)
    if how == "mean":
        return x - x.mean()
    if how == "none":
        return x.copy()
    raise ValueError(f"remove_mean: how must be 'ensemble', 'mean' or 'none'; got {how!r}")


def lagged_input(
    u: np.ndarray, lags: np.ndarray, *, contiguous: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Lagged-input regressors of every realization and time step.

    Parameters
    ----------
    u : ndarray, shape (R, N)
        Input, rad.
    lags : ndarray of int, shape (L,)
        Increasing lags in samples (negative = anti-causal).
    contiguous : bool
        Realizations are consecutive pieces of one record (see module docstring).

    Returns
    -------
    X : ndarray, shape (R, N, L)
        ``X[r, t, a] = u(t - lags[a], r)`` (zero where outside the data); a read-only
        strided view, no copy of the R N L values.
    valid : ndarray of bool, shape (R, N)
        True where every lag of (r, t) lies inside the data.
    """
    u = np.asarray(u, dtype=float)
    lags = np.asarray(lags, dtype=int)
    R, N = u.shape
    lo, hi = int(lags.min()), int(lags.max())
    left, right = max(hi, 0), max(-lo, 0)  # samples needed before / after t
    if contiguous:
        flat = np.concatenate([np.zeros(left), u.ravel(), np.zeros(right)])
        win = np.lib.stride_tricks.sliding_window_view(flat, left + right + 1)  # (R N, W)
        # window of global sample g starts at g - left; lag m sits at offset left - m
        X = win[:, left - lags].reshape(R, N, lags.size)
        g = np.arange(R * N).reshape(R, N)
        valid = (g - hi >= 0) & (g - lo <= R * N - 1)
    else:
        pad = np.pad(u, ((0, 0), (left, right)))
        win = np.lib.stride_tricks.sliding_window_view(pad, left + right + 1, axis=1)
        X = win[:, :, left - lags]
        t = np.arange(N)
        valid = np.broadcast_to((t - hi >= 0) & (t - lo <= N - 1), (R, N))
    return X, np.asarray(valid)


@dataclass(frozen=True)
class EnsembleStats:
    """Per-time-step ensemble sums (unnormalized correlations).

    Attributes
    ----------
    Sxx : ndarray, shape (N, L, L)
        sum_r x_r(t) x_r(t)^T, rad^2.
    Sxy : ndarray, shape (N, L)
        sum_r x_r(t) y(t, r), rad Nm.
    Syy : ndarray, shape (N,)
        sum_r y(t, r)^2, Nm^2.
    n : ndarray, shape (N,)
        Number of realizations summed at each step.
    lags : ndarray, shape (L,)
        Lags in samples.
    """

    Sxx: np.ndarray
    Sxy: np.ndarray
    Syy: np.ndarray
    n: np.ndarray
    lags: np.ndarray

    def total(self) -> EnsembleStats:
        """Sums over all time steps (a stationary record), shapes (1, L, L), (1, L), (1,)."""
        return EnsembleStats(
            self.Sxx.sum(0, keepdims=True), self.Sxy.sum(0, keepdims=True),
            self.Syy.sum(0, keepdims=True), self.n.sum(0, keepdims=True), self.lags,
        )

    def correlations(self) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble correlations Phi_xx (N, L, L) and Phi_xy (N, L) (004:Eq.15-17).

        NaN where no realization was summed.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(self.n > 0, 1.0 / np.maximum(self.n, 1), np.nan)
        return self.Sxx * inv[:, None, None], self.Sxy * inv[:, None]


def ensemble_statistics(
    u: np.ndarray,
    y: np.ndarray,
    lags: np.ndarray,
    *,
    contiguous: bool = False,
    weights: np.ndarray | None = None,
) -> EnsembleStats:
    """Per-time ensemble sums of lagged-input products (004:Eq.15-17, unnormalized).

    Parameters
    ----------
    u, y : ndarray, shape (R, N)
        Input (rad) and output (Nm), deterministic part already removed.
    lags : ndarray of int, shape (L,)
    contiguous : bool
        See :func:`lagged_input`.
    weights : ndarray, shape (R,) or (R, N), optional
        0/1 (or real) weight per realization (or per output sample), e.g. a
        cross-validation fold mask.

    Returns
    -------
    EnsembleStats
    """
    X, valid = lagged_input(u, lags, contiguous=contiguous)
    w = valid.astype(float)
    if weights is not None:
        wt = np.asarray(weights, dtype=float)
        w = w * (wt[:, None] if wt.ndim == 1 else wt)
    yw = np.asarray(y, dtype=float) * w  # (R, N)
    Xw = X * w[:, :, None]  # (R, N, L), the only R N L copy
    Sxx = np.einsum("rta,rtb->tab", Xw, X, optimize=True)
    Sxy = np.einsum("rta,rt->ta", X, yw, optimize=True)
    Syy = np.einsum("rt,rt->t", yw, np.asarray(y, dtype=float))
    return EnsembleStats(Sxx, Sxy, Syy, w.sum(0), np.asarray(lags, dtype=int))


def window_sum(
    stats: EnsembleStats, window: int, reference: EnsembleStats | None = None
) -> EnsembleStats:
    """Centred moving sums over ``window`` time steps (short data segments, 004:Eq.23).

    The segment of step t covers ``t - (window - 1) // 2 .. t + window // 2`` (for an even
    window one more sample after t than before). Steps whose segment leaves the record get
    ``n = 0`` (then NaN downstream), as do steps whose segment holds an unusable sample.

    Parameters
    ----------
    stats : EnsembleStats
        Per-time sums from :func:`ensemble_statistics`.
    window : int
        Segment length in samples (004 Table VI N_window = 10).
    reference : EnsembleStats, optional
        Unweighted sums of the same data: which segments are complete is decided on their
        counts (so a cross-validation fold's sums keep every segment the full data keep).

    Returns
    -------
    EnsembleStats
        Sums over the segment; divided by ``n`` they are 004:Eq.23's 1/(N R) averages.
    """
    N = stats.n.shape[0]
    w = int(window)
    if not 1 <= w <= N:
        raise DataError(f"window must be in [1, N] = [1, {N}] samples; got {w}.")
    before, after = (w - 1) // 2, w // 2

    def msum(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(a, axis=0)], axis=0)
        out = np.zeros_like(a)
        t = np.arange(before, N - after)
        out[t] = c[t + after + 1] - c[t - before]
        return out

    ref = stats if reference is None else reference
    full = ref.n.max()
    t = np.arange(N)
    complete = (t >= before) & (t < N - after) & (msum(ref.n) >= w * full)  # all usable
    n = np.where(complete, msum(stats.n), 0.0)
    keep = complete.astype(float)
    return EnsembleStats(
        msum(stats.Sxx) * keep[:, None, None], msum(stats.Sxy) * keep[:, None],
        msum(stats.Syy) * keep, n, stats.lags,
    )


def solve_irf(
    Sxx: np.ndarray,
    Sxy: np.ndarray,
    dt: float,
    *,
    rank: str = "full",
    Syy: np.ndarray | None = None,
    n: np.ndarray | None = None,
    rcond: float | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Solve ``Phi_xx h dt = Phi_xy`` for a stack of systems (004:Eq.14).

    Parameters
    ----------
    Sxx : ndarray, shape (T, P, P)
        Symmetric positive semi-definite Gram (or correlation) matrices.
    Sxy : ndarray, shape (T, P)
        Cross sums in the same normalization as ``Sxx``.
    dt : float
        Sampling interval, s.
    rank : {"full", "mdl"}
        "full": the plain inverse. "mdl": pseudo-inverse of the order minimizing
        MDL(d) = (1 + d ln(n) / n) (sigma_y^2 - sum_{k<=d} c_k^2 / s_k), with c = V^T phi_xy
        and eigenvalues s in descending order (Westwick & Kearney's pseudo-inverse IRF, which
        drops noise-dominated directions); needs ``Syy`` and ``n``. Without ``rcond``, a
        system that is *numerically* rank deficient (smallest eigenvalue below
        ``P * eps * largest``: some lag direction carries no input at all) gives NaN and a
        warning, never a minimum-norm number (project on :func:`lag_subspace` first when
        the input as a whole excites fewer than P lag directions, see :func:`solve_projected`).
    rcond : float, optional
        Truncated-SVD pseudo-inverse (Westwick & Kearney's ensemble IRF). Rank rule: per
        system, keep the eigen-directions with eigenvalue ``s_k > max(rcond, P eps) * s_1``
        (``s_1`` the largest); ``"mdl"`` then chooses the order among them. A rank-deficient
        system is solved in the directions it has (the minimum-norm solution there) instead
        of NaN, and the number of such steps is reported in the warnings.
    Syy : ndarray, shape (T,), optional
        Output sums (same normalization as ``Sxx`` times n); for ``rank="mdl"``.
    n : ndarray, shape (T,), optional
        Number of samples behind each system; for ``rank="mdl"``.

    Returns
    -------
    h : ndarray, shape (T, P)
        Solutions divided by ``dt`` (Nm/rad/s for an IRF); NaN rows where not solvable.
    order : ndarray of int, shape (T,)
        Number of eigen-directions used (0 where unsolvable).
    warnings : list of str
        Human-readable reasons for NaN rows (empty when all solved).
    """
    Sxx = np.asarray(Sxx, dtype=float)
    Sxy = np.asarray(Sxy, dtype=float)
    T, P = Sxy.shape
    finite = np.all(np.isfinite(Sxx.reshape(T, -1)), axis=1) & np.all(np.isfinite(Sxy), axis=1)
    A = np.where(finite[:, None, None], Sxx, 0.0)
    b = np.where(finite[:, None], Sxy, 0.0)
    s, V = np.linalg.eigh(A)  # ascending
    s, V = s[:, ::-1], V[:, :, ::-1]  # descending
    smax = s[:, 0]
    rel = P * np.finfo(float).eps if rcond is None else max(float(rcond), P * np.finfo(float).eps)
    tol = rel * np.abs(smax)
    num_rank = np.sum(s > tol[:, None], axis=1)  # the rank rule (numerical or rcond)
    c = np.einsum("tpk,tp->tk", V, b)  # projections on the eigenvectors
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(s > tol[:, None], c / s, 0.0)
    warnings: list[str] = []
    empty = ~finite | (smax <= 0)
    if rank == "full":
        order = np.full(T, P)
    elif rank == "mdl":
        if Syy is None or n is None:
            raise ValueError("solve_irf(rank='mdl') needs Syy and n")
        nn = np.maximum(np.asarray(n, dtype=float), 1.0)
        explained = np.cumsum(c * coef, axis=1)  # output power of the first d directions
        d = np.arange(1, P + 1)
        mdl = (1.0 + d[None, :] * np.log(nn)[:, None] / nn[:, None]) * (
            np.asarray(Syy, dtype=float)[:, None] - explained
        )
        mdl = np.where(d[None, :] <= num_rank[:, None], mdl, np.inf)
        order = np.argmin(mdl, axis=1) + 1
    else:
        raise ValueError(f"rank must be 'full' or 'mdl'; got {rank!r}")
    deficient = (num_rank < P) & ~empty
    if rcond is not None:
        order = np.minimum(order, num_rank)
        if deficient.any():
            warnings.append(
                f"truncated-SVD pseudo-inverse at {int(deficient.sum())} of {T} time steps "
                f"(rank {int(num_rank[deficient].min())}..{int(num_rank[deficient].max())} of "
                f"{P} above rcond = {rel:g} x the largest eigenvalue)"
            )
    else:
        order = np.where(deficient, 0, order)
    if deficient.any() and rcond is None:
        warnings.append(
            f"Phi_xx is rank deficient at {int(deficient.sum())} of {T} time steps "
            f"(numerical rank {int(num_rank[deficient].min())}.."
            f"{int(num_rank[deficient].max())} < {P}: some excited lag direction carries no "
            "input there); IRF set to NaN there"
        )
    order = np.where(empty, 0, order)
    no_data = empty & (np.asarray(n) == 0 if n is not None else False)
    if no_data.any():
        warnings.append(
            f"no data at {int(no_data.sum())} of {T} time steps (lags or segment outside the "
            "realization; see contiguous=True); IRF set to NaN there"
        )
    if (empty & ~no_data).any():
        warnings.append(
            f"no input power (Phi_xx = 0) at {int((empty & ~no_data).sum())} of {T} time "
            "steps; IRF set to NaN there"
        )
    keep = np.arange(P)[None, :] < order[:, None]
    h = np.einsum("tpk,tk->tp", V, np.where(keep, coef, 0.0)) / dt
    h[order == 0] = np.nan
    return h, order, warnings


def vaf_from_stats(h: np.ndarray, stats: EnsembleStats, dt: float) -> float:
    """Variance accounted for (percent) by IRFs ``h`` (T, L) on the data behind ``stats``.

    Uses sum_t [S_yy - 2 dt h.S_xy + dt^2 h^T S_xx h] as the residual energy, so no
    prediction pass over the data is needed; NaN rows of ``h`` are skipped.
    """
    ok = np.all(np.isfinite(h), axis=1) & (stats.n > 0)
    if not ok.any():
        return float("nan")
    hh = h[ok] * dt
    res = (
        stats.Syy[ok]
        - 2.0 * np.einsum("ta,ta->t", hh, stats.Sxy[ok])
        + np.einsum("ta,tab,tb->t", hh, stats.Sxx[ok], hh)
    ).sum()
    tot = stats.Syy[ok].sum()
    return float(100.0 * (1.0 - res / tot)) if tot > 0 else float("nan")


def irf_to_impedance(
    h: np.ndarray, lags: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stiffness, damping and inertia from the low-frequency moments of the IRF.

    Expanding u(i - j) = u - j dt u' + (j dt)^2 / 2 u'' in 004:Eq.13 gives
    ``y = K u + B u' + I u''`` with

        K = dt sum_j h(j)                 (static gain, Nm/rad)
        B = -dt^2 sum_j j h(j)            (Nms/rad)
        I = dt^3 / 2 sum_j j^2 h(j)       (kg m^2)

    i.e. the value, slope and curvature at zero frequency of the IRF's frequency response.
    They are exact for a second-order impedance I s^2 + B s + K whenever the IRF spans the
    lags of its sampled response (for a 3-point stencil, lags -1..1).

    Parameters
    ----------
    h : ndarray, shape (..., L)
        IRF, Nm/rad/s.
    lags : ndarray of int, shape (L,)
    dt : float, s

    Returns
    -------
    K, B, I : ndarray, shape (...)
    """
    j = np.asarray(lags, dtype=float)
    K = dt * np.sum(h, axis=-1)
    B = -(dt**2) * np.sum(h * j, axis=-1)
    I = 0.5 * dt**3 * np.sum(h * j**2, axis=-1)
    return K, B, I


def input_spectrum(u: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Input power spectrum averaged over realizations and segments (Welch, Hann window of
    ``min(N, 256)`` samples, half overlap).

    Parameters
    ----------
    u : ndarray, shape (R, N)
        Input, rad.
    fs : float, Hz

    Returns
    -------
    freqs : ndarray, shape (F,), Hz
    S_uu : ndarray, shape (F,), rad^2/Hz
    """
    from scipy import signal

    u = np.asarray(u, dtype=float)
    f, S = signal.welch(u, fs=fs, nperseg=min(u.shape[-1], 256), axis=-1)
    return f, np.atleast_2d(S).mean(axis=0)


def fit_second_order(
    h: np.ndarray, lags: np.ndarray, dt: float, freqs: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``I s^2 + B s + K`` to the frequency response of IRFs, weighted by input power.

    With ``H(f) = dt sum_j h(j) exp(-i w j dt)`` (the DTFT of 004:Eq.13's kernel) this solves

        min_{K, I} sum_f W(f) (Re H(f) - K + I w^2)^2,   min_B sum_f W(f) (Im H(f) - B w)^2

    with W = the input power spectrum, i.e. the second-order model that best reproduces the
    IRF's response to the actual perturbation. For an ideal impedance (and an IRF covering
    its response) it returns K, B, I exactly; unlike the static gain it is not thrown off by
    IRF errors at frequencies the input does not excite (see the module's numbers in the
    eIRF docstring).

    Parameters
    ----------
    h : ndarray, shape (T, L)
        IRFs, Nm/rad/s (NaN rows give NaN).
    lags : ndarray of int, shape (L,)
    dt : float, s
    freqs : ndarray, shape (F,), Hz
    weight : ndarray, shape (F,)
        Non-negative weights (the input PSD).

    Returns
    -------
    K : ndarray, shape (T,), Nm/rad
    B : ndarray, shape (T,), Nms/rad
    I : ndarray, shape (T,), kg m^2
    """
    h = np.atleast_2d(np.asarray(h, dtype=float))
    w = 2.0 * np.pi * np.asarray(freqs, dtype=float)
    sw = np.sqrt(np.maximum(np.asarray(weight, dtype=float), 0.0))
    if not np.any(sw[w > 0] > 0):
        raise DataError("fit_second_order: the input spectrum is zero at every frequency > 0")
    ok = np.all(np.isfinite(h), axis=1)
    E = np.exp(-1j * np.outer(w, np.asarray(lags, dtype=float) * dt))  # (F, L)
    H = dt * (E @ np.where(ok[:, None], h, 0.0).T)  # (F, T)
    A = np.stack([np.ones_like(w), -(w**2)], axis=1) * sw[:, None]
    KI = np.linalg.lstsq(A, H.real * sw[:, None], rcond=None)[0]  # (2, T)
    Bc = np.linalg.lstsq((w * sw)[:, None], H.imag * sw[:, None], rcond=None)[0][0]
    nan = np.where(ok, 1.0, np.nan)
    return KI[0] * nan, Bc * nan, KI[1] * nan


def impedance_from_irf(
    h: np.ndarray,
    lags: np.ndarray,
    dt: float,
    u: np.ndarray,
    method: str = "fit",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K, B, I trajectories from IRFs by ``method`` ("fit": :func:`fit_second_order`
    weighted by the spectrum of ``u`` (R, N); "gain": :func:`irf_to_impedance`)."""
    if method == "gain":
        return irf_to_impedance(h, lags, dt)
    if method == "fit":
        f, S = input_spectrum(u, 1.0 / dt)
        return fit_second_order(h, lags, dt, f, S)
    raise ValueError(f"stiffness method must be 'fit' or 'gain'; got {method!r}")


def require_estimate(K: np.ndarray, warnings: list[str], owner: str) -> None:
    """Raise EstimationError with the recorded reasons when no time step was estimable."""
    if not np.any(np.isfinite(K)):
        why = "; ".join(warnings) if warnings else "no time step could be solved"
        raise EstimationError(f"{owner}: no stiffness could be estimated: {why}")


def lag_subspace(
    stats: EnsembleStats, rank: str = "full", rcond: float = 1e-9
) -> tuple[np.ndarray, list[str]]:
    """Lag directions the input excites over the whole record (pseudo-inverse subspace).

    Eigenvectors of the time-summed Phi_xx whose eigenvalue exceeds ``rcond`` times the
    largest, i.e. the directions a band-limited input actually excites; with
    ``rank="mdl"`` further cut to the order minimizing MDL on the time-summed system
    (:func:`solve_irf`). Projecting the lagged inputs on them turns the numerically
    rank-deficient problem of a band-limited input with many lags into a well-conditioned
    one; the IRF is then ``V c``, the minimum-norm (pseudo-inverse) solution.

    Returns
    -------
    V : ndarray, shape (L, r)
        Orthonormal directions, r >= 1, strongest first.
    warnings : list of str

    Raises
    ------
    EstimationError
        When the input has no power at all.
    """
    tot = stats.total()
    s, V = np.linalg.eigh(tot.Sxx[0])
    s, V = s[::-1], V[:, ::-1]
    if not (np.all(np.isfinite(s)) and s[0] > 0):
        raise EstimationError("no input power (Phi_xx = 0 over the whole record)")
    r = int(np.sum(s > rcond * s[0]))
    warns: list[str] = []
    if rank == "mdl":
        Vr = V[:, :r]
        _, order, _ = solve_irf(
            (Vr.T @ tot.Sxx[0] @ Vr)[None], (tot.Sxy[0] @ Vr)[None], 1.0, rank="mdl",
            Syy=tot.Syy, n=tot.n,
        )
        r = max(1, int(order[0]))
    if r < s.size:
        warns.append(
            f"the input excites {r} of {s.size} lag directions over the record "
            f"(eigenvalues above {rcond:g} x the largest{', MDL order' if rank == 'mdl' else ''});"
            " the IRF is the pseudo-inverse solution in that subspace"
        )
    return V[:, :r], warns


def solve_projected(
    stats: EnsembleStats, dt: float, rank: str = "mdl", rcond: float | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """Per-time IRFs in the record's excited lag subspace (004:Eq.14 with a pseudo-inverse).

    The lag subspace comes from :func:`lag_subspace` (``rcond`` truncation only), each time
    step is solved there by :func:`solve_irf` with ``rank`` (MDL order per step, or all
    directions); steps whose own Phi_xx is deficient in the subspace (no input, too few
    realizations) are NaN with a warning, or, with ``rcond``, solved by the truncated-SVD
    pseudo-inverse of :func:`solve_irf`.

    Returns
    -------
    h : ndarray, shape (T, L), Nm/rad/s
    order : ndarray of int, shape (T,)
    warnings : list of str
    vaf : float
        In-sample variance accounted for, percent (:func:`vaf_from_stats`).
    """
    V, warns = lag_subspace(stats, "full")
    ps = project_stats(stats, V)
    hp, order, w2 = solve_irf(ps.Sxx, ps.Sxy, dt, rank=rank, Syy=ps.Syy, n=ps.n, rcond=rcond)
    return hp @ V.T, order, warns + w2, vaf_from_stats(hp, ps, dt)


def project_stats(stats: EnsembleStats, V: np.ndarray) -> EnsembleStats:
    """Express per-time sums in the lag directions ``V`` (L, r): x -> V^T x."""
    return EnsembleStats(
        np.einsum("la,tlm,mb->tab", V, stats.Sxx, V, optimize=True),
        stats.Sxy @ V, stats.Syy, stats.n, stats.lags,
    )


#: Candidate relative eigenvalue thresholds of the truncated-SVD rank rule (``rcond="cv"``).
RCOND_GRID = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def resolve_contiguous(option: bool | str, meta: dict, owner: str) -> bool:
    """Whether to treat the realizations as consecutive periods of one record.

    Parameters
    ----------
    option : bool or "auto"
        The estimator's ``contiguous`` hyper-parameter. ``"auto"``: the data's contiguity
        flag ``meta["contiguous"]`` (the only meta entry an estimator is handed, see
        :meth:`bench.types.Realizations.experimenter_view`).
    meta : dict
        ``Realizations.meta``.
    owner : str
        Estimator name for the error message.

    Raises
    ------
    DataError
        ``option=True`` on data whose ``meta["contiguous"]`` is not True.
    """
    flag = bool(meta.get("contiguous", False))
    if option == "auto":
        return flag
    if option and not flag:
        raise DataError(
            f"{owner}: contiguous=True needs realizations that are consecutive periods of one "
            "record (meta['contiguous'] = True); use contiguous='auto' or False."
        )
    return bool(option)


def select_rcond(
    full: EnsembleStats,
    folds: list[EnsembleStats],
    dt: float,
    rank: str,
    grid: tuple[float, ...] = RCOND_GRID,
) -> tuple[float, dict[float, float]]:
    """Rank rule of the truncated-SVD pseudo-inverse chosen on held-out realizations.

    For every ``rcond`` of ``grid`` the per-step IRFs are solved on all folds but one
    (:func:`solve_irf` with that ``rcond``) and predict the held-out fold; the ``rcond``
    with the largest pooled held-out VAF wins (ties: the larger, i.e. the lower rank).

    Parameters
    ----------
    full : EnsembleStats
        Sums over all realizations (already projected on the lag subspace).
    folds : list of EnsembleStats
        Sums of each fold (same projection); they add up to ``full``.
    dt : float, s
    rank : {"mdl", "full"}
    grid : tuple of float

    Returns
    -------
    rcond : float
    scores : dict of float to float
        Held-out VAF (%) per candidate.
    """
    scores: dict[float, float] = {}
    for rc in grid:
        res = tot = 0.0
        for st in folds:
            tr = EnsembleStats(full.Sxx - st.Sxx, full.Sxy - st.Sxy, full.Syy - st.Syy,
                               full.n - st.n, full.lags)
            h, _, _ = solve_irf(tr.Sxx, tr.Sxy, dt, rank=rank, Syy=tr.Syy, n=tr.n, rcond=rc)
            h = np.where(np.isfinite(h), h, 0.0)  # a step without training data predicts 0
            e = float(st.Syy[st.n > 0].sum())
            v = vaf_from_stats(h, st, dt)
            if np.isfinite(v):
                res += (1.0 - v / 100.0) * e
                tot += e
        scores[float(rc)] = float(100.0 * (1.0 - res / tot)) if tot > 0 else float("nan")
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        return float(max(grid)), scores
    best = max(finite.values())
    return max(k for k, v in finite.items() if v >= best - 1e-12), scores


def coverage_info(K: np.ndarray, contiguous: bool) -> dict:
    """Which samples of the period an estimate covers (for ``ImpedanceEstimate.info``).

    Returns
    -------
    dict
        ``coverage`` (share of the N samples with a finite K, 0-1), ``contiguous``
        (whether neighbouring periods were used at the realization edges) and ``covered``
        (the finite sample ranges as text, e.g. ``"4-95"`` or ``"all"``).
    """
    ok = np.isfinite(np.asarray(K, dtype=float))
    if ok.all():
        text = "all"
    else:
        idx = np.flatnonzero(ok)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if idx.size else []
        text = ", ".join(f"{r[0]}-{r[-1]}" if r.size > 1 else f"{r[0]}" for r in runs) or "none"
    return {"coverage": float(ok.mean()), "contiguous": bool(contiguous), "covered": text}


def estimate_from_stats(
    stats: EnsembleStats,
    fold_stats: Callable[[np.ndarray], EnsembleStats],
    *,
    R: int,
    dt: float,
    u: np.ndarray,
    rank: str,
    rcond: float | str | None,
    n_folds: int,
    stiffness: str,
    contiguous: bool,
    owner: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Per-step IRFs from ensemble sums (004:Eq.14) with the truncated-SVD rank rule, and the
    impedance read from them: the common end of eIRF and SDS.

    Parameters
    ----------
    stats : EnsembleStats
        Sums over all R realizations.
    fold_stats : callable
        ``fold_stats(weights)`` -> the same sums with realization weights ``weights``
        (shape (R,), 0/1), for the held-out choice of ``rcond``.
    R : int
        Number of realizations.
    dt : float, s
    u : ndarray, shape (R, N), rad
        Mean-removed input (for the stiffness fit).
    rank : {"mdl", "full"}
    rcond : float, "cv" or None
        Relative eigenvalue threshold of the pseudo-inverse; "cv" chooses it from
        :data:`RCOND_GRID` by held-out VAF over ``n_folds`` folds (:func:`select_rcond`).
    n_folds : int
    stiffness : str
        As :func:`impedance_from_irf`.
    contiguous : bool
        Whether the sums used neighbouring periods at the realization edges.
    owner : str
        Estimator name for error messages.

    Returns
    -------
    K, B, I : ndarray, shape (N,)
    h : ndarray, shape (N, L)
    info : dict
        ``rank`` per step and its min/median/max, ``rcond``, ``rcond_scores``, ``vaf``,
        ``nan_steps``, coverage (:func:`coverage_info`) and ``warnings``.

    Raises
    ------
    DataError
        ``rcond="cv"`` with fewer than ``n_folds`` realizations, or no step estimated.
    """
    from bench.errors import DataError

    scores: dict[float, float] = {}
    if rcond == "cv":
        if R < n_folds:
            raise DataError(f"{owner} with rcond='cv' needs at least n_folds={n_folds} "
                            f"realizations; got {R}.")
        V, _ = lag_subspace(stats, "full")
        folds = np.arange(R) % n_folds
        held = [project_stats(fold_stats((folds == k).astype(float)), V)
                for k in range(n_folds)]
        rcond, scores = select_rcond(project_stats(stats, V), held, dt, rank)
    h, order, warns, vaf = solve_projected(stats, dt, rank, rcond)  # 004:Eq.14
    require_estimate(h[:, 0], warns, owner)
    K, B, I = impedance_from_irf(h, stats.lags, dt, u, stiffness)
    used = order[order > 0]
    info = {
        "rank": order,
        "rank_min": int(used.min()) if used.size else 0,
        "rank_median": float(np.median(used)) if used.size else 0.0,
        "rank_max": int(used.max()) if used.size else 0,
        "rcond": rcond,
        "rcond_scores": scores,
        "vaf": vaf,
        "nan_steps": int(np.sum(~np.isfinite(K))),
        **coverage_info(K, contiguous),
        "warnings": warns,
    }
    return K, B, I, h, info
