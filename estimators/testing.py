"""Shipped checks every impedance estimator must pass, and a closed-form data generator.

Modelled on scikit-learn's ``sklearn/utils/estimator_checks.py``: a new estimator gets the
whole suite by adding one line to its tests::

    from estimators.testing import check_estimator
    check_estimator(MyEstimator(window=10), tolerance_pct=5.0)

or, one pytest case per check::

    @pytest.mark.parametrize("name, check", list(iter_checks(MyEstimator())))
    def test_shipped(name, check):
        check()

Among the checks, :func:`check_experimenter_view_only` holds every backend to the data an
experimenter has (``Realizations.experimenter_view``: u, y, fs, the declared schedule and the
contiguity flag): its estimate must not change when the data also carry a false truth and plant
parameters.

The data come from a closed-form impedance (:func:`make_impedance_data`), never from
``plants`` (estimators must not import plants, docs/architecture.md "Layout"):

    y(t) = I u''(t) + B(t) u'(t) + K(t) u(t)        (004:Eq.4, with the position u as input)

with ``u`` a smooth band-limited random signal whose derivatives are computed exactly in the
frequency domain, so the torque is exact on the sample grid (no integration error), also for a
memoryless time-varying stiffness K(t) and damping B(t).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from bench.base import Estimator
from bench.errors import DataError, EstimationError, InvalidParameterError
from bench.metrics import nan_share, stiffness_error
from bench.types import GroundTruth, ImpedanceEstimate, Realizations

__all__ = [
    "CHECK_DATA",
    "check_bad_parameter_type",
    "check_constant_stiffness",
    "check_deterministic",
    "check_does_not_mutate_input",
    "check_estimator",
    "check_experimenter_view_only",
    "check_get_params_clone",
    "check_needs_schedule",
    "check_returns_estimate",
    "check_too_few_realizations",
    "iter_checks",
    "make_impedance_data",
]

#: Plant of the shared checks: the thesis MSD values (004 Sec. III-A: I = 0.02 kg m^2,
#: B in 1.2-3.2 Nms/rad, K in 50-150 Nm/rad, data at 100 Hz, realizations of one 1 s period).
CHECK_DATA = {"K": 100.0, "B": 2.2, "I": 0.02, "N": 100, "fs": 100.0, "snr_db": 40.0}


def make_impedance_data(
    K: float = 100.0,
    B: float = 2.2,
    I: float = 0.02,
    R: int = 100,
    N: int = 100,
    fs: float = 100.0,
    seed: int | np.random.Generator = 0,
    snr_db: float | None = None,
    K_t: np.ndarray | None = None,
    *,
    B_t: np.ndarray | None = None,
    bandwidth: float | None = None,
) -> Realizations:
    """Build realizations of a closed-form joint impedance ``y = I u'' + B u' + K(t) u``.

    One contiguous record of ``R * N`` samples is drawn and cut into R realizations of N
    samples (consecutive periods of the time variation, as ``Realizations.from_record``).
    ``u`` is white Gaussian noise band-limited by a brick-wall low-pass at ``bandwidth`` in
    the frequency domain (circularly over the whole record) and scaled to 0.02 rad RMS; its
    first and second derivatives are computed exactly in the frequency domain
    (``j w U`` and ``-w^2 U``), so the torque is exact on the samples (004:Eq.4).

    Parameters
    ----------
    K : float, Nm/rad
        Constant stiffness (ignored when ``K_t`` is given).
    B : float, Nms/rad
        Constant damping (ignored when ``B_t`` is given).
    I : float, kg m^2
        Inertia.
    R : int
        Number of realizations (>= 1).
    N : int
        Samples per realization (>= 2).
    fs : float, Hz
        Sampling rate.
    seed : int or numpy.random.Generator
        Source of every random draw.
    snr_db : float, optional
        Signal-to-noise ratio of the measured torque, dB: white Gaussian noise of variance
        ``var(y) / 10**(snr_db / 10)`` is added. ``None``: noiseless.
    K_t : ndarray, shape (N,), optional
        Time-varying stiffness over one realization, Nm/rad (repeated in every realization).
    B_t : ndarray, shape (N,), optional
        Time-varying damping over one realization, Nms/rad.
    bandwidth : float, optional
        Band edge of ``u``, Hz; default ``0.2 * fs`` (20 Hz at 100 Hz).

    Returns
    -------
    Realizations
        ``u`` (rad) and ``y`` (Nm) of shape (R, N), ``truth`` with ``K`` and ``B`` of shape
        (N,) and ``I``, ``schedule`` = the true stiffness trajectory repeated per realization
        (a perfect scheduling variable), ``meta`` with ``contiguous=True`` (the rows are
        consecutive periods of one record) and the generator settings.
    """
    R, N = int(R), int(N)
    if R < 1:
        raise DataError(f"R must be >= 1 realization; got {R}.")
    if N < 2:
        raise DataError(f"N must be >= 2 samples; got {N}.")
    if not (np.isfinite(fs) and fs > 0):
        raise DataError(f"fs must be a positive sampling rate in Hz; got {fs!r}.")
    bw = 0.2 * fs if bandwidth is None else float(bandwidth)
    if not (0 < bw <= fs / 2):
        raise DataError(f"bandwidth must be in (0, fs/2] = (0, {fs / 2:g}] Hz; got {bandwidth!r}.")
    Kt = np.full(N, float(K)) if K_t is None else np.asarray(K_t, dtype=float)
    Bt = np.full(N, float(B)) if B_t is None else np.asarray(B_t, dtype=float)
    for name, arr in (("K_t", Kt), ("B_t", Bt)):
        if arr.shape != (N,) or not np.all(np.isfinite(arr)):
            raise DataError(
                f"{name} must be a finite array of shape (N,) = ({N},); got {arr.shape}."
            )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    T = R * N
    f = np.fft.rfftfreq(T, d=1.0 / fs)
    U = np.fft.rfft(rng.standard_normal(T))
    U[f > bw] = 0.0
    U[0] = 0.0  # zero-mean perturbation
    w = 2.0 * np.pi * f
    u = np.fft.irfft(U, n=T)
    scale = 0.02 / np.sqrt(np.mean(u**2))
    u *= scale
    du = np.fft.irfft(1j * w * U, n=T) * scale
    d2u = np.fft.irfft(-(w**2) * U, n=T) * scale
    y = I * d2u + np.tile(Bt, R) * du + np.tile(Kt, R) * u  # 004:Eq.4
    if snr_db is not None:
        noise_var = np.var(y) / 10.0 ** (float(snr_db) / 10.0)
        y = y + rng.standard_normal(T) * np.sqrt(noise_var)
    return Realizations(
        u=u.reshape(R, N),
        y=y.reshape(R, N),
        fs=fs,
        schedule=np.tile(Kt, (R, 1)),
        truth=GroundTruth(K=Kt.copy(), B=Bt.copy(), I=float(I)),
        meta={
            "contiguous": True,  # consecutive periods of one record
            "generator": "estimators.testing.make_impedance_data",
            "K": float(K) if K_t is None else "K_t",
            "B": float(B) if B_t is None else "B_t",
            "I": float(I), "R": R, "N": N, "fs": float(fs),
            "snr_db": snr_db, "bandwidth": bw,
            "seed": seed if isinstance(seed, int) else "generator",
        },
    )


def _check_data(estimator: Estimator, seed: int = 0, R: int | None = None) -> Realizations:
    tags = estimator.tags
    if R is None:
        R = max(100, tags.min_realizations)
    c = CHECK_DATA
    return make_impedance_data(
        K=c["K"], B=c["B"], I=c["I"], R=R, N=c["N"], fs=c["fs"], seed=seed, snr_db=c["snr_db"]
    )


def _clone(estimator: Estimator) -> Estimator:
    return type(estimator)(**estimator.get_params())


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def check_returns_estimate(estimator: Estimator) -> None:
    """``estimate`` returns an ImpedanceEstimate with K (N,), consistent irf/lags, dict info."""
    data = _check_data(estimator)
    est = estimator.estimate(data)
    name = type(estimator).__name__
    assert isinstance(est, ImpedanceEstimate), f"{name}.estimate returned {type(est)}"
    assert est.K.shape == (data.N,), f"{name}: K has shape {est.K.shape}, expected ({data.N},)"
    assert isinstance(est.info, dict), f"{name}: info must be a dict"
    assert np.isfinite(est.K).any(), f"{name}: K is NaN everywhere on clean data"
    for field in ("B", "I"):
        v = getattr(est, field)
        if v is not None and np.ndim(v) == 1:
            assert np.shape(v) == (data.N,), f"{name}: {field} has shape {np.shape(v)}"
    if est.irf is not None:
        assert est.irf.ndim == 2 and est.irf.shape[0] == data.N, (
            f"{name}: irf must have shape (N, L); got {est.irf.shape}"
        )
        assert est.lags is not None and est.lags.shape == (est.irf.shape[1],), (
            f"{name}: lags must have shape (L,) matching irf"
        )
    if est.frf is not None:
        assert est.freqs is not None and est.frf.shape[-1] == est.freqs.shape[0], (
            f"{name}: frf last axis must match freqs"
        )


def check_deterministic(estimator: Estimator) -> None:
    """Two runs of equal estimators on equal data give identical results."""
    data = _check_data(estimator)
    a = estimator.estimate(data)
    b = _clone(estimator).estimate(data)
    name = type(estimator).__name__
    for field in ("K", "B", "I", "irf", "frf"):
        assert _same(getattr(a, field), getattr(b, field)), f"{name}: {field} differs between runs"


def check_does_not_mutate_input(estimator: Estimator) -> None:
    """The input arrays (u, y, schedule, truth) are unchanged after ``estimate``."""
    data = _check_data(estimator)
    before = {k: np.copy(getattr(data, k)) for k in ("u", "y", "schedule")}
    K_true = np.copy(data.truth.K)
    params = dict(estimator.get_params())
    estimator.estimate(data)
    name = type(estimator).__name__
    for k, v in before.items():
        assert np.array_equal(getattr(data, k), v), f"{name} mutated data.{k}"
    assert np.array_equal(data.truth.K, K_true), f"{name} mutated data.truth.K"
    after = estimator.get_params()
    assert set(after) == set(params) and all(after[k] is params[k] for k in params), (
        f"{name} changed its hyper-parameters during estimate"
    )


def _poisoned(view: Realizations) -> Realizations:
    """``view`` plus everything an experimenter does not have, all of it wrong.

    A false ground truth (a stiffness ramp 10-400 Nm/rad, damping 9 Nms/rad, inertia
    1 kg m^2, per-realization truth too), plant-like parameters in ``meta`` (ranges, profile
    shapes, a phase, jitter draws, SNRs) and, for a method that does not declare
    ``needs_schedule``, a scheduling variable it is never handed by the runner.
    """
    R, N = view.R, view.N
    ramp = np.linspace(10.0, 400.0, N)
    truth = GroundTruth(
        K=ramp, B=np.full(N, 9.0), I=1.0, K_r=np.tile(ramp[::-1], (R, 1)),
    )
    meta = {
        **view.meta,
        "plant": "msd",
        "params": {"K_range": [10.0, 400.0], "B_range": [9.0, 9.0], "inertia": 1.0,
                   "K_profile": "sine", "phase": 0.37, "snr_db": 40.0},
        "period": 1.0,
        "phase": 0.37,
        "K_shape": (ramp - ramp.min()) / np.ptp(ramp),
        "B_shape": np.zeros(N),
        "K": 400.0, "B": 9.0, "I": 1.0,
        "jitter_shift_s": np.full(R, 0.013),
        "snr_db_decimated": 40.0,
    }
    schedule = view.schedule
    if schedule is None:
        schedule = np.tile(meta["K_shape"], (R, 1))
    return Realizations(u=view.u.copy(), y=view.y.copy(), fs=view.fs, schedule=schedule,
                        truth=truth, meta=meta)


def check_experimenter_view_only(estimator: Estimator) -> None:
    """The estimate depends only on what an experimenter has (docs/architecture.md "Scenario").

    The runner hands an estimator :meth:`~bench.types.Realizations.experimenter_view`:
    ``u``, ``y``, ``fs``, the schedule if the method declares ``needs_schedule``, and
    ``meta = {"contiguous": ...}``. The estimator is run on that view and on a copy that
    also carries a false ground truth, plant parameters in ``meta`` and (for a method
    without ``needs_schedule``) a schedule (:func:`_poisoned`); K, B, I, irf and frf must
    be identical. An estimator that reads the truth, the plant's settings or a schedule it
    did not ask for fails.
    """
    data = _check_data(estimator)
    view = data.experimenter_view(schedule=bool(estimator.tags.needs_schedule))
    a = estimator.estimate(view)
    b = _clone(estimator).estimate(_poisoned(view))
    name = type(estimator).__name__
    for field in ("K", "B", "I", "irf", "frf"):
        assert _same(getattr(a, field), getattr(b, field)), (
            f"{name}: {field} changes when the data also carry a (false) truth, plant "
            "parameters in meta or an unrequested schedule; an estimator may use only u, y, "
            "fs, meta['contiguous'] and the schedule it declares (tags.needs_schedule)"
        )


def check_constant_stiffness(estimator: Estimator, tolerance_pct: float = 5.0) -> None:
    """Recovers a constant known stiffness (K = 100 Nm/rad) within ``tolerance_pct``.

    The error is 004:Eq.6-7 over the finite samples; at least half the samples must be finite.
    """
    data = _check_data(estimator)
    est = estimator.estimate(data)
    name = type(estimator).__name__
    share = nan_share(est.K)
    assert share <= 0.5, f"{name}: {100 * share:.0f} % of K is NaN on clean constant data"
    err = stiffness_error(data.truth.K, est.K)
    assert err <= tolerance_pct, (
        f"{name}: stiffness error {err:.2f} % exceeds {tolerance_pct:.2f} % on constant K = "
        f"{CHECK_DATA['K']:g} Nm/rad (median estimate {np.nanmedian(est.K):.3f})"
    )


def check_get_params_clone(estimator: Estimator) -> None:
    """``type(est)(**est.get_params())`` reproduces the parameters (scikit-learn convention)."""
    params = estimator.get_params()
    clone = _clone(estimator)
    assert clone.get_params().keys() == params.keys()
    for k, v in params.items():
        assert clone.get_params()[k] is v, f"{type(estimator).__name__}.{k} not stored unchanged"


_BAD_VALUE = "__not_a_valid_value__"


def check_bad_parameter_type(estimator: Estimator) -> None:
    """A wrong-typed hyper-parameter raises InvalidParameterError naming the parameter."""
    data = _check_data(estimator, R=max(4, estimator.tags.min_realizations))
    constraints = type(estimator)._parameter_constraints
    name = type(estimator).__name__
    for pname in estimator.get_params():
        if constraints.get(pname) == "no_validation":
            continue
        bad = _clone(estimator)
        setattr(bad, pname, _BAD_VALUE)
        try:
            bad.estimate(data)
        except InvalidParameterError as exc:
            assert repr(pname) in str(exc) or pname in str(exc), (
                f"{name}: the error for a bad {pname!r} does not name it: {exc}"
            )
        else:
            raise AssertionError(
                f"{name} accepted {pname}={_BAD_VALUE!r} without InvalidParameterError"
            )


def check_too_few_realizations(estimator: Estimator) -> None:
    """An ensemble method given one realization fails with DataError/EstimationError."""
    tags = estimator.tags
    if not tags.needs_ensemble and tags.min_realizations <= 1:
        return
    data = make_impedance_data(R=1, N=CHECK_DATA["N"], fs=CHECK_DATA["fs"], seed=1)
    try:
        estimator.estimate(data)
    except (DataError, EstimationError):
        return
    raise AssertionError(
        f"{type(estimator).__name__} (needs_ensemble) accepted a single realization"
    )


def check_needs_schedule(estimator: Estimator) -> None:
    """A method that needs a scheduling variable fails with DataError without one."""
    if not estimator.tags.needs_schedule:
        return
    data = _check_data(estimator).replace(schedule=None)
    try:
        estimator.estimate(data)
    except DataError:
        return
    raise AssertionError(f"{type(estimator).__name__} ran without its schedule")


_CHECKS: tuple[Callable[..., None], ...] = (
    check_get_params_clone,
    check_returns_estimate,
    check_deterministic,
    check_does_not_mutate_input,
    check_experimenter_view_only,
    check_constant_stiffness,
    check_bad_parameter_type,
    check_too_few_realizations,
    check_needs_schedule,
)


def iter_checks(
    estimator: Estimator, *, tolerance_pct: float = 5.0
) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check name, zero-argument callable)`` for pytest parametrization."""
    for chk in _CHECKS:
        if chk is check_constant_stiffness:
            yield chk.__name__, partial(chk, estimator, tolerance_pct=tolerance_pct)
        else:
            yield chk.__name__, partial(chk, estimator)


def check_estimator(estimator: Estimator, *, tolerance_pct: float = 5.0) -> None:
    """Run every shipped check on ``estimator``; raise AssertionError naming the failed one.

    Parameters
    ----------
    estimator : Estimator
        Instance with the hyper-parameters to test.
    tolerance_pct : float
        Largest accepted stiffness error (004:Eq.7, percent) on the constant-stiffness data
        (K = 100 Nm/rad, B = 2.2 Nms/rad, I = 0.02 kg m^2, 100 Hz, 40 dB SNR, 1 s realizations).
    """
    for name, check in iter_checks(estimator, tolerance_pct=tolerance_pct):
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"{name} failed for {estimator!r}: {exc}") from exc
