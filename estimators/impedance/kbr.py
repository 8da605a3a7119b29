"""Frequency-domain kernel-based regression of a time-varying ODE (004 Sec. II-B, App. A6).

The input u (position) and output y (torque) satisfy the linear differential equation
with smooth time-varying coefficients (004:Eq.29)::

    y(t) = - sum_{n=1}^{N_a} a_n(t) y^(n)(t) + sum_{n=0}^{N_b} b_n(t) u^(n)(t)

estimated from the DFT of the equation error in the bins of interest, with a squared-
exponential kernel prior (004:Eq.31) and the iteratively reweighted cost of 004:Eq.30
(Lataire, Pintelon, Piga & Toth 2016). With position input and torque output the frozen
static gain of the model is ``b_0(t)`` (a_0 = 1), so the stiffness is ``K(t) = b_0(t)``;
for the MSD plant ``y = I u'' + B(t) u' + K(t) u`` the exact coefficients are
``b_0 = K``, ``b_1 = B``, ``b_2 = I``, ``a_1 = b_3 = 0``. With N_a = 1, N_b = 3 (004 Table VI)
the model is over-parametrized for that plant: every ``(1 + a_1 s)(I s^2 + B s + K)`` fits
as well, so ``a_1`` and ``b_1..b_3`` are only fixed by the prior while ``b_0`` is not
affected. The frozen damping reported is therefore the first Taylor coefficient of
``B(s)/A(s)`` at s = 0, ``b_1 - a_1 b_0``, which is invariant along that direction.

Formulation on the period grid (the memory fix). The thesis fitted ``a_n(t), b_n(t)`` on
the whole record, a kernel matrix of one row per sample (5000 x 5000 at 50 s, 40 000 x
40 000 = 12.8 GB at 400 s), which ran out of memory at 200 s and 400 s (004 Table III). Here every
realization is one period of the time variation, so all realizations share the same
coefficients on the N-sample period grid; the kernel is the periodized version of Eq. 31,

    k(t, t') = gamma * sum_j exp(-(t - t' + j N)^2 / sigma^2),   t, t' in samples,

a circulant matrix whose eigenvectors are the real Fourier basis and whose eigenvalues are
the DFT of its first row. The coefficients are expanded in the Fourier harmonics whose
eigenvalue exceeds ``1e-8`` of the largest (exact up to that truncation: the prior s.d.
of the dropped harmonics is below 1e-4 of the largest). Each basis function has at most
two DFT lines, so the regressors of 004:Eq.30 (DFTs of products ``s(t) v_j(t)``) are
shifted copies of the signal spectra (circular convolution), and the normal equations are
accumulated over chunks of realizations: memory depends on N and the number of
harmonics, never on the record length.

Equation error per realization (004:Eq.30). Derivatives are computed in the frequency
domain. When the realizations are consecutive periods of one record (``contiguous=True``,
the thesis's and the plants' case) they are taken on the whole record, so the equation
error of every period is exact; the first and last period, which carry the record-end
artefacts of the derivatives, are left out of the fit. Otherwise they are taken on each
realization, where the DFT of the derivative of a non-periodic segment differs from
``(j w)^n X`` by boundary terms, a polynomial in ``j w`` of degree ``n - 1`` in continuous
time; a real polynomial transient of degree ``max(N_a, N_b) - 1`` is then projected out of
every realization (elimination of per-realization nuisance parameters).

Weights. ``sigma_E^2(k)`` starts at 1 (004 App. A6) and is then recomputed from the previous
estimate assuming white output noise: ``sigma_E^2(k) = mean_t |1 + sum_n a_n(t)(j w_k)^n|^2``
up to the noise scale, which is estimated with gamma.

Hyper-parameters. ``gamma`` is chosen in every reweighting step by maximizing the marginal
likelihood ("ml", exact and closed form from the accumulated normal equations) or by
leave-two-out cross-validation ("lto": the real and imaginary part of one frequency bin
are left out together, closed form through the hat matrix). ``sigma`` defaults to the
number of samples in one realization (004 Table VI). The regressors of the different
derivative orders are normalized to unit RMS before one kernel is shared by all
coefficients (Eq. 30 uses one K for coefficients of different units; without the
normalization the prior would fix their ratio by the choice of the time unit).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from scipy.optimize import minimize_scalar

from bench.base import Estimator, Tags
from bench.differentiate import spectral_derivative
from bench.errors import ConvergenceWarning, DataError, EstimationError, InvalidParameterError
from bench.params import ArrayLike, Interval, Options
from bench.types import ImpedanceEstimate, Realizations

__all__ = ["KBR", "periodic_se_eigenvalues"]

_CHUNK = 64  # realizations per streamed block
_EXCITED = 1e-2  # relative input power that ends the "excited" band
_EIG_TOL = 1e-8  # relative kernel eigenvalue kept in the Fourier expansion
_CACHE_BYTES = 256 * 2**20  # largest regressor cache kept across the sigma candidates
_LOG_BETA_SPAN = (-6.0, 10.0)  # search range of log10(beta * max eigenvalue of S)


def periodic_se_eigenvalues(N: int, sigma: float) -> np.ndarray:
    """Eigenvalues of the periodized squared-exponential kernel (004:Eq.31 with gamma = 1).

    Parameters
    ----------
    N : int
        Period, samples.
    sigma : float
        Length scale, samples.

    Returns
    -------
    ndarray, shape (N,)
        ``lambda_h`` for harmonic ``h = 0..N-1`` (DFT of the circulant's first row).
    """
    n = np.arange(N)
    wraps = int(np.ceil(6.0 * sigma / N)) + 1
    row = sum(np.exp(-((n + j * N) ** 2) / sigma**2) for j in range(-wraps, wraps + 1))
    lam = np.real(np.fft.fft(row))
    return np.clip(lam, 0.0, None)


def _fourier_basis(N: int, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real orthonormal Fourier basis of the kept harmonics and their eigenvalues.

    Returns
    -------
    V : ndarray, shape (N, r)
    lam_r : ndarray, shape (r,)
    """
    t = np.arange(N)
    keep = lam >= _EIG_TOL * lam.max()
    cols, vals = [np.full(N, 1.0 / np.sqrt(N))], [lam[0]]
    for h in range(1, N // 2 + 1):
        if not keep[h]:
            continue
        if 2 * h == N:
            cols.append(np.cos(np.pi * t) / np.sqrt(N))
            vals.append(lam[h])
        else:
            cols.append(np.sqrt(2.0 / N) * np.cos(2 * np.pi * h * t / N))
            cols.append(np.sqrt(2.0 / N) * np.sin(2 * np.pi * h * t / N))
            vals.extend([lam[h], lam[h]])
    return np.stack(cols, axis=1), np.asarray(vals)


def _orth(T: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``T`` (the whitened transient regressors)."""
    if T.shape[1] == 0:
        return np.zeros((T.shape[0], 0))
    return np.linalg.qr(T)[0]


def _basis_eigenvalues(lam: np.ndarray, r: int, N: int) -> np.ndarray:
    """Eigenvalues of the first ``r`` functions of the Fourier basis order of
    :func:`_fourier_basis` (constant, then cos/sin of each harmonic, Nyquist alone)."""
    vals = [lam[0]]
    for h in range(1, N // 2 + 1):
        vals.extend([lam[h]] if 2 * h == N else [lam[h], lam[h]])
    return np.asarray(vals[:r])


def _basis_spectrum(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (at most two) nonzero DFT lines of each real Fourier basis function.

    Returns
    -------
    idx : ndarray of int, shape (r, 2)
        DFT indices q of the lines.
    coef : ndarray of complex, shape (r, 2)
        ``DFT(v_j)(q)``; a zero pads single-line (constant, Nyquist) functions.
    """
    Vh = np.fft.fft(V, axis=0)
    r = V.shape[1]
    idx = np.zeros((r, 2), dtype=int)
    coef = np.zeros((r, 2), dtype=complex)
    for j in range(r):
        nz = np.nonzero(np.abs(Vh[:, j]) > 1e-9 * np.abs(Vh[:, j]).max())[0][:2]
        idx[j, : nz.size] = nz
        coef[j, : nz.size] = Vh[nz, j]
    return idx, coef


def _derivatives(x: np.ndarray, w: np.ndarray, orders: int) -> np.ndarray:
    """Frequency-domain derivatives ``IDFT((j w)^n X)`` for n = 0..orders, shape (n+1, R, N)."""
    X = np.fft.fft(x, axis=1)
    N = x.shape[1]
    out = []
    for n in range(orders + 1):
        op = (1j * w) ** n
        if N % 2 == 0 and n % 2 == 1:
            op[N // 2] = 0.0  # odd derivative of the Nyquist line is undefined
        out.append(np.real(np.fft.ifft(X * op, axis=1)))
    return np.stack(out)


class KBR(Estimator):
    """Kernel-based regression of time-varying ODE coefficients (004 App. A6, Eq. 29-31).

    Parameters
    ----------
    n_a : int, default 1
        Output derivative order N_a (004 Table VI: 1).
    n_b : int, default 3
        Input derivative order N_b (004 Table VI: 3).
    sigma : float, "auto" or None, default None
        Kernel length scale of 004:Eq.31, samples. ``None``: the number of samples in one
        realization (004 Table VI). ``"auto"``: chosen together with gamma, by the same
        criterion, among ``N, N/2, N/4, ...`` N/16 (at least 2 samples; our extension).
    gamma : float or None, default None
        Kernel scale (inverse regularization) of 004:Eq.31, in units of the normalized
        regressors. ``None``: chosen by ``selection`` in every reweighting step.
    selection : {"ml", "lto"}, default "ml"
        Marginal likelihood or leave-two-out cross-validation for gamma.
    band : {"excited", "all"} or (float, float), default "excited"
        Frequency band of interest K_int (004:Eq.30), Hz. The thesis does not state it.
        ``"excited"``: from the first bin up to the highest bin whose ensemble-mean input
        power reaches 1 % of its peak (bins without input power carry only noise and the
        discrete-time error of the spectral derivatives); ``"all"``: every bin between DC
        and Nyquist (both excluded); a pair: the bins in ``[f_lo, f_hi]``. "excited"
        confirmed on the tuning plant (``benchmarks/tuning.py``, tied with "all").
    max_iter : int, default 10
        Iterations of the convex relaxation of 004:Eq.30.
    tol : float, default 1e-4
        Relative change of the coefficients that ends the iterations.
    contiguous : bool or "auto", default "auto"
        "auto": the data's ``meta["contiguous"]`` flag decides (True on data without it is
        a DataError). True: the realizations are consecutive periods of one record (as
        ``Realizations.from_record`` cuts them): the derivatives are taken on the whole
        record, no transient term is needed, and the first and last realization (record-end
        artefacts of the derivatives) are left out of the fit; with fewer than 3
        realizations the per-realization form is used. ``False``: independent realizations; the
        derivatives are taken per realization and a polynomial transient of degree
        ``max(n_a, n_b) - 1`` in ``j w`` is projected out of each.
    """

    name: ClassVar[str] = "kbr"
    tags: ClassVar[Tags] = Tags(needs_ensemble=False, min_realizations=1)
    _parameter_constraints: ClassVar[dict] = {
        "n_a": [Interval(int, 0, 4)],
        "n_b": [Interval(int, 0, 4)],
        "sigma": [Interval(float, 0, None, closed="neither"), Options(("auto",)), None],
        "gamma": [Interval(float, 0, None, closed="neither"), None],
        "selection": [Options(("ml", "lto"))],
        "band": [Options(("excited", "all")), ArrayLike()],
        "max_iter": [Interval(int, 1, 100)],
        "tol": [Interval(float, 0, 1, closed="neither")],
        "contiguous": [bool, Options(("auto",))],
    }

    def __init__(
        self,
        *,
        n_a: int = 1,
        n_b: int = 3,
        sigma: float | str | None = None,
        gamma: float | None = None,
        selection: str = "ml",
        band: str | tuple[float, float] = "excited",
        max_iter: int = 10,
        tol: float = 1e-4,
        contiguous: bool | str = "auto",
    ) -> None:
        self.n_a = n_a
        self.n_b = n_b
        self.sigma = sigma
        self.gamma = gamma
        self.selection = selection
        self.band = band
        self.max_iter = max_iter
        self.tol = tol
        self.contiguous = contiguous

    # ------------------------------------------------------------------ setup
    def _bins(self, data: Realizations) -> np.ndarray:
        """Indices of the DFT bins K_int of 004:Eq.30 (positive, no DC, no Nyquist)."""
        N, fs = data.N, data.fs
        f = np.fft.fftfreq(N, d=1.0 / fs)
        k = np.arange(1, (N + 1) // 2)
        band = self.band
        if isinstance(band, str):
            if band == "excited":
                # highest bin whose ensemble-mean input power reaches 1 % of its peak
                pu = np.mean(np.abs(np.fft.fft(data.u, axis=1)[:, k]) ** 2, axis=0)
                k = k[: int(np.nonzero(pu >= _EXCITED * pu.max())[0].max()) + 1]
        else:
            band = np.asarray(band, dtype=float)
            if band.shape != (2,) or band[0] >= band[1]:
                raise InvalidParameterError(
                    f"The 'band' parameter of KBR must be a pair (f_lo, f_hi) in Hz with "
                    f"f_lo < f_hi. Got {self.band!r} instead."
                )
            k = k[(f[k] >= band[0]) & (f[k] <= band[1])]
        if k.size < 2:
            raise DataError(
                f"KBR: fewer than 2 DFT bins of a {N}-sample realization at {fs:g} Hz lie in "
                f"the band {self.band!r}."
            )
        return k

    def _signals(self, data: Realizations, w: np.ndarray):
        """Normalized regressor signals, shape (n_a + n_b + 1, R, N), and their scales."""
        su, sy = float(np.std(data.u)), float(np.std(data.y))
        if su == 0 or sy == 0:
            raise DataError("KBR needs a non-constant input u and output y.")
        yn, un = data.y / sy, data.u / su
        if self._record_mode(data):
            # rows are consecutive periods: differentiate the whole record, then drop the
            # first and last period, whose derivatives carry the record-end artefacts
            R, N = data.R, data.N
            dy = np.stack([spectral_derivative(yn.ravel(), data.fs, n).reshape(R, N)[1:-1]
                           for n in range(self.n_a + 1)])
            du = np.stack([spectral_derivative(un.ravel(), data.fs, n).reshape(R, N)[1:-1]
                           for n in range(self.n_b + 1)])
            yn = yn[1:-1]
        else:
            dy = _derivatives(yn, w, self.n_a)
            du = _derivatives(un, w, self.n_b)
        sig = np.concatenate([dy[1:], -du])  # E = Y + sum a_n Y^(n) - sum b_n U^(n)
        rho = np.sqrt(np.mean(sig**2, axis=(1, 2)))
        if np.any(rho == 0):
            raise DataError("KBR: a derivative of u or y is identically zero in the data.")
        return sig / rho[:, None, None], rho, yn, su, sy

    def _record_mode(self, data: Realizations) -> bool:
        """Whole-record derivatives: contiguous rows and at least 3 of them."""
        if self.contiguous == "auto":
            return bool(data.meta.get("contiguous", False)) and data.R >= 3
        if self.contiguous and not data.meta.get("contiguous", False):
            raise DataError(
                "KBR: contiguous=True needs realizations that are consecutive periods of one "
                "record (meta['contiguous'] = True); use contiguous='auto' or False."
            )
        return bool(self.contiguous) and data.R >= 3

    # ------------------------------------------------------------------ streaming
    @staticmethod
    def _chunk(sig, y, spec, kin, sw2, Qt):
        """Whitened, transient-projected regressors and data of one block of realizations.

        The DFT of ``s(t) v_j(t)`` is the circular convolution of the two spectra
        (1/N) sum_q V_j(q) S(k - q), and each basis function has at most two lines, so the
        regressors are shifted copies of the signal spectra (no per-basis FFT).

        Returns
        -------
        Phi : ndarray, shape (Rc, 2K, P)
            ``[Re; Im]`` rows of the bins, columns coefficient-major.
        Y : ndarray, shape (Rc, 2K)
        """
        idx, coef = spec
        nsig, Rc, N = sig.shape
        K = kin.size
        S = np.fft.fft(sig, axis=-1)  # (nsig, Rc, N)
        F = np.zeros((nsig, Rc, K, idx.shape[0]), dtype=complex)
        for i in range(2):
            F += coef[None, None, None, :, i] * S[:, :, (kin[:, None] - idx[None, :, i]) % N]
        F = (F / N).transpose(1, 2, 0, 3).reshape(Rc, K, -1)  # (Rc, K, P)
        Phi = np.concatenate([F.real, F.imag], axis=1) * sw2[None, :, None]
        Yk = np.fft.fft(y, axis=1)[:, kin]
        Y = np.concatenate([Yk.real, Yk.imag], axis=1) * sw2[None]
        Phi = Phi - Qt @ (Qt.T @ Phi)  # project out the transient polynomial
        Y = Y - (Y @ Qt) @ Qt.T
        return Phi, Y

    def _pass(self, sig, y, spec, kin, T, weight):
        """One streamed pass: accumulate the whitened, transient-projected normal equations.

        Returns ``G (P, P)``, ``g (P,)``, ``yy = |z|^2`` and the number of real observations.
        """
        nsig, R, _ = sig.shape
        r = spec[0].shape[0]
        P = nsig * r
        sw = 1.0 / np.sqrt(weight)  # whitening per bin
        sw2 = np.concatenate([sw, sw])
        Qt = _orth(T * sw2[:, None])
        G, g, yy = np.zeros((P, P)), np.zeros(P), 0.0
        for r0 in range(0, R, _CHUNK):
            Phi, Y = self._chunk(sig[:, r0:r0 + _CHUNK], y[r0:r0 + _CHUNK], spec, kin, sw2, Qt)
            Pf = Phi.reshape(-1, P)
            G += Pf.T @ Pf
            g += Pf.T @ Y.ravel()
            yy += float(np.sum(Y**2))
        m_obs = R * (2 * kin.size - T.shape[1])
        return G, g, yy, m_obs

    def _lto_scores(self, sig, y, spec, kin, T, weight, lam_p, Q, d, b, betas, cache=None):
        """Leave-two-out CV error for each ``beta`` (closed form through the hat matrix).

        ``cache`` (a dict, optional) keeps the regressor blocks between calls that share
        the weights (the sigma candidates of one iteration).
        """
        R = sig.shape[1]
        sw = 1.0 / np.sqrt(weight)
        sw2 = np.concatenate([sw, sw])
        Qt = _orth(T * sw2[:, None])
        M = np.sqrt(lam_p)[:, None] * Q  # Lambda^1/2 Q
        K = kin.size
        score = np.zeros(betas.size)
        shrink = betas[:, None] / (1.0 + betas[:, None] * d[None])  # (nb, P)
        for r0 in range(0, R, _CHUNK):
            if cache is not None and r0 in cache:
                Phi, Y = cache[r0]
            else:
                Phi, Y = self._chunk(
                    sig[:, r0:r0 + _CHUNK], y[r0:r0 + _CHUNK], spec, kin, sw2, Qt)
                if cache is not None:
                    cache[r0] = (Phi, Y)
            Rc, P = Phi.shape[0], Phi.shape[2]
            psi = (Phi.reshape(-1, P) @ M).reshape(Rc, 2 * K, P)  # 2-D product: BLAS
            pr, pi = psi[:, :K], psi[:, K:]  # real / imaginary row of each bin
            yr, yi = Y[:, :K], Y[:, K:]
            # hat-matrix blocks and fitted values for every beta at once:
            # z_hat = Phi Lambda^1/2 Q diag(shrink) b,  H_ii = psi_i diag(shrink) psi_i^T
            h11, h22, h12 = (pr * pr) @ shrink.T, (pi * pi) @ shrink.T, (pr * pi) @ shrink.T
            zr, zi = pr @ (shrink * b).T, pi @ (shrink * b).T  # (Rc, K, nb)
            a11, a22, a12 = 1.0 - h11, 1.0 - h22, -h12
            det = a11 * a22 - a12**2
            er, ei = yr[..., None] - zr, yi[..., None] - zi
            lr = (a22 * er - a12 * ei) / det  # (I - H_ii)^-1 r_i
            li = (-a12 * er + a11 * ei) / det
            score += np.sum(lr**2 + li**2, axis=(0, 1))
        return score

    # ------------------------------------------------------------------ hyper-parameters
    @staticmethod
    def _neg_log_ml(log_beta: float, d: np.ndarray, b2: np.ndarray, yy: float, m: int) -> float:
        """-2 log marginal likelihood profiled over the noise scale s^2."""
        beta = 10.0**log_beta
        quad = yy - float(np.sum(b2 * beta / (1.0 + beta * d)))
        s2 = max(quad / m, np.finfo(float).tiny)
        return m * np.log(s2) + float(np.sum(np.log1p(beta * d)))

    def _select_one(self, sig, y, spec, kin, T, weight, lam_p, G, g, yy, m_obs, cache=None):
        """gamma (as ``beta = gamma / s^2``) for one kernel; returns the pieces of the fit."""
        S = np.sqrt(lam_p)[:, None] * G * np.sqrt(lam_p)[None, :]
        d, Q = np.linalg.eigh(S)  # S = Lambda^1/2 G Lambda^1/2 = Q diag(d) Q^T
        d = np.clip(d, 0.0, None)
        b = Q.T @ (np.sqrt(lam_p) * g)
        dmax = max(float(d.max()), np.finfo(float).tiny)
        lo, hi = _LOG_BETA_SPAN[0] - np.log10(dmax), _LOG_BETA_SPAN[1] - np.log10(dmax)
        grid = np.linspace(lo, hi, 33)
        if self.gamma is not None:  # Eq. 30 as printed: |E|^2 / sigma_E^2 + theta^T K^-1 theta
            lb = float(np.log10(self.gamma))
            crit = self._neg_log_ml(lb, d, b**2, yy, m_obs)
        elif self.selection == "ml":
            vals = [self._neg_log_ml(x, d, b**2, yy, m_obs) for x in grid]
            i = int(np.argmin(vals))
            res = minimize_scalar(
                self._neg_log_ml, bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
                args=(d, b**2, yy, m_obs), method="bounded",
            )
            lb, crit = float(res.x), float(res.fun)
        else:
            scores = self._lto_scores(
                sig, y, spec, kin, T, weight, lam_p, Q, d, b, 10.0**grid, cache)
            i = int(np.argmin(scores))
            lb, crit = float(grid[i]), float(scores[i])
        beta = 10.0**lb
        s2 = (yy - float(np.sum(b**2 * beta / (1.0 + beta * d)))) / m_obs
        gamma = float(self.gamma) if self.gamma is not None else float(beta * s2)
        return beta, Q, d, b, {"gamma": gamma, "noise_scale": float(s2), "criterion": crit,
                               "at_bound": bool(self.gamma is None and lb in (lo, hi))}

    def _select(self, sig, y, spec, kin, T, weight, kernels, G, g, yy, m_obs):
        """Best (sigma, gamma) over the candidate kernels by the selection criterion."""
        best = None
        size = sig.shape[1] * 2 * kin.size * (G.shape[0] + 1) * 8  # bytes of all blocks
        cache = {} if len(kernels) > 1 and size <= _CACHE_BYTES else None
        for sigma, lam_p in kernels:
            fit = self._select_one(sig, y, spec, kin, T, weight, lam_p, G, g, yy, m_obs, cache)
            if best is None or fit[4]["criterion"] < best[1][4]["criterion"]:
                best = (sigma, fit, lam_p)
        sigma, (beta, Q, d, b, hyp), lam_p = best
        return beta, Q, d, b, lam_p, {**hyp, "sigma": sigma}

    # ------------------------------------------------------------------ main
    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        N, fs = data.N, data.fs
        nmax = max(self.n_a, self.n_b)
        kin = self._bins(data)
        w = 2 * np.pi * np.fft.fftfreq(N, d=1.0 / fs)
        if self.sigma == "auto":  # N, N/2, ..., N/16 (at least 2 samples)
            sigmas = [N / 2.0**j for j in range(5) if N / 2.0**j >= 2.0]
        else:
            sigmas = [float(N if self.sigma is None else self.sigma)]
        V, _ = _fourier_basis(N, periodic_se_eigenvalues(N, min(sigmas)))
        sig, rho, y, su, sy = self._signals(data, w)
        nsig, r = sig.shape[0], V.shape[1]
        spec = _basis_spectrum(V)
        kernels = []
        for sg in sigmas:  # same kernel for every coefficient (004:Eq.30)
            lam = _basis_eigenvalues(periodic_se_eigenvalues(N, sg), r, N)
            kernels.append((sg, np.tile(lam / lam.max(), nsig)))
        # transient polynomial in j w of degree nmax - 1, real coefficients, [Re; Im] rows
        jw = 1j * w[kin] / np.abs(w[kin]).max()
        n_t = 0 if self._record_mode(data) else max(nmax, 1)
        Tc = np.stack([jw**j for j in range(n_t)], axis=1) if n_t else np.zeros((kin.size, 0))
        T = np.concatenate([Tc.real, Tc.imag], axis=0)
        if 2 * kin.size <= T.shape[1]:
            raise DataError(
                f"KBR: {kin.size} bins leave no observation after removing the degree-"
                f"{T.shape[1] - 1} transient; use longer realizations or a wider band."
            )

        weight = np.ones(kin.size)  # sigma_E^2 initialized to 1 (004 App. A6)
        c = np.zeros(nsig * r)
        history = []
        converged = False
        for it in range(self.max_iter):
            G, g, yy, m_obs = self._pass(sig, y, spec, kin, T, weight)
            beta, Q, d, b, lam_p, hyp = self._select(
                sig, y, spec, kin, T, weight, kernels, G, g, yy, m_obs)
            # posterior mean: c = -Lambda^1/2 Q diag(1 / (d + 1/beta)) b          (004:Eq.30)
            c_new = -np.sqrt(lam_p) * (Q @ (b / (d + 1.0 / beta)))
            change = np.linalg.norm(c_new - c) / max(np.linalg.norm(c_new), 1e-300)
            c = c_new
            history.append({"iteration": it, "change": float(change), **hyp})
            coef = (V @ c.reshape(nsig, r).T).T / rho[:, None]  # (nsig, N), normalized units
            a = coef[: self.n_a]
            # sigma_E^2(k) for white output noise: mean_t |1 + sum_n a_n(t) (j w_k)^n|^2
            poly = 1.0 + np.einsum("nt,nk->kt", a, (1j * w[kin][None, :]) ** np.arange(
                1, self.n_a + 1)[:, None]) if self.n_a else np.ones((kin.size, N))
            weight = np.mean(np.abs(poly) ** 2, axis=1)
            if not np.all(np.isfinite(weight)) or np.any(weight <= 0):
                raise EstimationError("KBR: the equation-error weights became singular.")
            weight = weight / np.mean(weight)
            if change < self.tol:
                converged = True
                break
        if not converged:
            warnings.warn(
                f"KBR stopped after {self.max_iter} reweighting iterations (relative change "
                f"{history[-1]['change']:.2g} > tol {self.tol:g}).", ConvergenceWarning,
                stacklevel=3,
            )
        a = coef[: self.n_a]
        bcoef = coef[self.n_a:] * (sy / su)
        K = bcoef[0]  # frozen static gain B(0)/A(0) = b_0(t)   (004:Eq.29, a_0 = 1)
        B = bcoef[1] - (a[0] * bcoef[0] if self.n_a else 0.0) if self.n_b >= 1 else None
        return ImpedanceEstimate(
            K=K,
            B=B,
            info={
                "a": a,
                "b": bcoef,
                "sigma": history[-1]["sigma"],
                "harmonics": int(r),
                "bins": int(kin.size),
                "iterations": len(history),
                "converged": converged,
                "history": history,
                "gamma": history[-1]["gamma"],
                "params": self.get_params(),
            },
        )
