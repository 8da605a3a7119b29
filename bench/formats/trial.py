"""Assemble an EMG-driven modelling trial (:class:`~bench.types.MuscleData`) from files.

One trial is a set of tables sampled in time (issue 13 items 1, 3):

===============  ===========================================  =============================
role             OpenSim                                      CEINMS
===============  ===========================================  =============================
angles           IK ``.mot`` (columns = coordinates)           (a ``.mot``; CEINMS has none)
torque           ID ``.sto`` (``<dof>_moment`` or ``<dof>``)   torque file (columns = DoFs)
lengths          MuscleAnalysis ``_Length.sto`` (MTUs)         ``lmt`` file (MTUs)
moment arms      MuscleAnalysis ``_MomentArm_<dof>.sto``       one moment-arm file per DoF
EMG              ``.sto`` / C3D analog (raw or processed)      ``emg`` file (processed)
stiffness        ``.sto`` (``<dof>`` or ``<dof>_stiffness``)   file with DoF columns
===============  ===========================================  =============================

The format follows the extension: ``.sto``/``.mot`` OpenSim storage, ``.c3d`` C3D analog,
anything else a CEINMS ``datacolumns``/``datarows`` table. Only angles are converted from
degrees (``inDegrees=yes``); lengths, moment arms (m), torques (Nm) and stiffness (Nm/rad)
are read as written. Without MuscleAnalysis files, MTU lengths, moment arms and
``dr/dtheta`` are computed from an OpenSim model over the angles (coordinates) file
(:func:`bench.formats.osim.osim_kinematics`, the ``opensim`` extra).

The **model time base** is the time column of the torque file (or, with ``fs`` and
``resample=True``, a uniform grid at ``fs`` over the torque file's span). Every other table
must share it sample for sample; with ``resample=True`` it is interpolated onto it instead
(:func:`bench.emg.resample`, no extrapolation). Raw EMG is always processed at its own rate
(:func:`bench.emg.process_emg`, presets of seeds 000 and 001) and its envelope resampled
onto the model time base, which it must cover.

Processed EMG (excitations) are used as given (``kind: excitation``), optionally divided by
each channel's peak in the trial (``emg_normalize="trial_peak"``) or by given peaks;
excursions below 0 or above 1 within ``emg_tolerance`` (filter undershoot) are clipped with a
:class:`~bench.formats._table.FormatWarning` that counts them, larger ones are an error. An
excitation file on another time base than the model's is interpolated onto it. With an
explicit electromechanical delay (``emg_delay``, s) the excitation at model time t is the
envelope at t - delay, taken from the samples recorded before the trial's first torque
sample where the file has them (pre-roll).

Every conversion is stated in ``MuscleData.meta["notes"]`` (and reports print them).

The moment-arm derivative ``dr/dtheta`` of 000:Eq.7 is not in the files: with angles it is
taken from a least-squares quadratic fit of each moment arm in the joint angles over the
trial (exact for the synthetic ankle's quadratic kinematics); without angles it is zero,
which drops the ``dr/dtheta F`` term of the joint stiffness.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.emg import delayed, excitation_range, mvc_peaks, process_emg, resample
from bench.errors import DataError
from bench.formats._table import FormatWarning, Table
from bench.formats.c3d import read_c3d_analog
from bench.formats.ceinms import read_ceinms_table
from bench.formats.opensim import read_storage, write_storage
from bench.types import MuscleData

__all__ = [
    "TrialSpec",
    "channel_peaks",
    "excitation_table",
    "fit_moment_arm_derivative",
    "read_table",
    "read_trial",
    "stack_trials",
    "uniform_rate",
    "window_trial",
    "write_ceinms_table",
    "write_trial",
]

#: MuscleData.meta entries that are per-sample arrays (S, T, ...) and follow cuts/stacking.
_PER_SAMPLE_META = ("dmoment_arm", "true_stiffness")


@dataclass(frozen=True, kw_only=True)
class TrialSpec:
    """The files of one trial and how to read them.

    Attributes
    ----------
    name : str
        Trial name (for messages and reports).
    torque : path
        Joint torques (Nm), one column per DoF; defines the model time base.
    lengths : path, optional
        MTU lengths (m), one column per MTU (None: computed from ``osim``).
    moment_arms : mapping of str to path, optional
        DoF name -> moment-arm file (m), one column per MTU (None: computed from ``osim``).
    emg : path
        Processed excitations in [0, 1] (``emg_kind="excitation"``) or raw EMG
        (``emg_kind="raw"``), one column per channel.
    angles : path, optional
        Joint angles (rad, or degrees with ``inDegrees=yes``), one column per DoF.
    stiffness : path, optional
        Reference joint stiffness (Nm/rad), one column per DoF.
    emg_kind : {"excitation", "raw"}
    mvc : tuple of path
        Raw MVC trials (same channels) for ``emg_kind="raw"``: normalization by the peak
        envelope (:func:`bench.emg.mvc_peaks`).
    emg_preset : str
        :data:`bench.emg.PRESETS` key for raw EMG.
    emg_offset : float, s
        Added to the EMG file's time (C3D analog time starts at 0 at the first frame).
    osim : path, optional
        OpenSim model for MTU kinematics over ``angles`` when ``lengths``/``moment_arms``
        are not given.
    emg_tolerance : float
        Excitations within [-tolerance, 1 + tolerance] are clipped to [0, 1] (counted in a
        warning); beyond it they are an error.
    emg_normalize : {"none", "trial_peak"}
        Divide each channel by its peak over this trial's EMG file.
    emg_peaks : tuple of float, optional
        Divide each channel by these values (e.g. peaks over all trials); excludes
        ``emg_normalize``.
    emg_delay : float, s, optional
        Electromechanical delay applied to the data (excitation at t - delay).
    """

    name: str
    torque: Path
    emg: Path
    lengths: Path | None = None
    moment_arms: Mapping[str, Path] | None = None
    angles: Path | None = None
    stiffness: Path | None = None
    emg_kind: str = "excitation"
    mvc: tuple = ()
    emg_preset: str = "000"
    emg_offset: float = 0.0
    osim: Path | None = None
    emg_tolerance: float = 0.05
    emg_normalize: str = "none"
    emg_peaks: tuple | None = None
    emg_delay: float | None = None


# --------------------------------------------------------------------------- tables


def read_table(path: str | os.PathLike, *, angles: bool = False,
               channels: Sequence[str] | None = None) -> Table:
    """Read one time-indexed table, choosing the reader by extension.

    Parameters
    ----------
    path : path-like
        ``.sto``/``.mot`` (OpenSim), ``.c3d`` (analog channels), else CEINMS table.
    angles : bool
        Convert ``inDegrees=yes`` storage columns to radians (joint angles only).
    channels : list of str, optional
        C3D analog labels to read.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    ext = p.suffix.lower()
    if ext in (".sto", ".mot"):
        return read_storage(p, degrees_to_radians=angles)
    if ext == ".c3d":
        return read_c3d_analog(p, None if channels is None else list(channels))
    return read_ceinms_table(p)


def _span(tab: Table) -> str:
    return f"{tab.time.size} samples over [{tab.time[0]:.6g}, {tab.time[-1]:.6g}] s"


def uniform_rate(tab: Table) -> float:
    """Sampling rate of a uniformly sampled table, Hz (error naming the file otherwise)."""
    if tab.time.size < 2:
        raise DataError(f"{tab.path}: needs at least 2 samples; has {tab.time.size}")
    dt = np.diff(tab.time)
    step = (tab.time[-1] - tab.time[0]) / (tab.time.size - 1)
    k = int(np.argmax(np.abs(dt - step)))
    if abs(dt[k] - step) > 1e-3 * step:
        raise DataError(
            f"{tab.path}: time is not uniformly sampled (step {dt[k]:.6g} s at data row "
            f"{k + 2}, mean step {step:.6g} s)"
        )
    return 1.0 / step


def _on_base(tab: Table, t: np.ndarray, ref: Table, values: np.ndarray, do_resample: bool,
             trial: str) -> np.ndarray:
    """``values`` (rows of ``tab``) on the model time base ``t`` (from file ``ref``)."""
    same = tab.time.size == t.size and np.max(np.abs(tab.time - t)) <= 1e-6 * max(
        1.0, float(np.max(np.abs(t))))
    if same:
        return values
    if not do_resample:
        raise DataError(
            f"trial {trial!r}: time bases differ: {tab.path} has {_span(tab)}, the model time "
            f"base ({ref.path}) has {t.size} samples over [{t[0]:.6g}, {t[-1]:.6g}] s; set "
            "'resample: true' to interpolate onto the model time base"
        )
    if tab.time[0] > t[0] + 1e-9 or tab.time[-1] < t[-1] - 1e-9:
        raise DataError(
            f"trial {trial!r}: cannot resample {tab.path} ({_span(tab)}) onto the model time "
            f"base ({ref.path}: [{t[0]:.6g}, {t[-1]:.6g}] s): it does not cover it"
        )
    return resample(values, tab.time, t)


def _torque_columns(tab: Table, dofs: Sequence[str]) -> list[str]:
    cols = []
    for d in dofs:
        for cand in (f"{d}_moment", d):
            if cand in tab.columns:
                cols.append(cand)
                break
        else:
            raise DataError(
                f"{tab.path}: missing torque column for DoF {d!r} (looked for "
                f"'{d}_moment' and '{d}'); the file has: {', '.join(tab.columns)}"
            )
    return cols


def _stiffness_columns(tab: Table, dofs: Sequence[str]) -> list[str]:
    cols = []
    for d in dofs:
        for cand in (f"{d}_stiffness", d):
            if cand in tab.columns:
                cols.append(cand)
                break
        else:
            raise DataError(
                f"{tab.path}: missing stiffness column for DoF {d!r} (looked for "
                f"'{d}_stiffness' and '{d}'); the file has: {', '.join(tab.columns)}"
            )
    return cols


# --------------------------------------------------------------------------- moment arms


def _poly_terms(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic design matrix in D angles and its derivative w.r.t. each angle.

    Returns ``phi`` (T, P) and ``dphi`` (D, T, P) with terms 1, theta_i, theta_i theta_j.
    """
    T, D = theta.shape
    pairs = list(itertools.combinations_with_replacement(range(D), 2))
    phi = np.concatenate(
        [np.ones((T, 1)), theta, np.stack([theta[:, i] * theta[:, j] for i, j in pairs], 1)], 1
    )
    dphi = np.zeros((D, T, phi.shape[1]))
    for d in range(D):
        dphi[d, :, 1 + d] = 1.0
        for k, (i, j) in enumerate(pairs):
            col = 1 + D + k
            if i == d:
                dphi[d, :, col] += theta[:, j]
            if j == d:
                dphi[d, :, col] += theta[:, i]
    return phi, dphi


def fit_moment_arm_derivative(angle: np.ndarray, moment_arm: np.ndarray) -> np.ndarray:
    """``dr/dtheta`` (000:Eq.7) from a least-squares quadratic fit of r in the joint angles.

    Each moment arm r_md(t) is fitted as a quadratic polynomial in all D joint angles over
    the trial; the derivative of that fit with respect to theta_d is returned.

    Parameters
    ----------
    angle : ndarray, shape (T, D), rad
    moment_arm : ndarray, shape (T, M, D), m

    Returns
    -------
    ndarray, shape (T, M, D), m/rad
        Zero for a DoF whose angle barely moves (std below 1e-4 rad), with a warning.
    """
    theta = np.asarray(angle, dtype=float)
    r = np.asarray(moment_arm, dtype=float)
    T, M, D = r.shape
    if theta.shape != (T, D):
        raise DataError(f"angle must have shape {(T, D)}; got {theta.shape}")
    moving = np.std(theta, axis=0) >= 1e-4
    if not np.all(moving):
        warnings.warn(
            f"joint angle(s) {np.flatnonzero(~moving).tolist()} barely move; their moment-arm "
            "derivative is set to zero", stacklevel=2)
    centre = theta.mean(axis=0)
    phi, dphi = _poly_terms(theta - centre)
    coef, *_ = np.linalg.lstsq(phi, r.reshape(T, M * D), rcond=None)  # (P, M*D)
    coef = coef.reshape(-1, M, D)
    out = np.einsum("dtp,pmd->tmd", dphi, coef)
    out[:, :, ~moving] = 0.0
    return out


# --------------------------------------------------------------------------- one trial


def _rate_text(tab: Table) -> str:
    return f"{tab.fs:.5g} Hz" if tab.time.size > 1 else "one sample"


def excitation_table(spec: TrialSpec, channels: Sequence[str]) -> Table:
    """The trial's processed EMG file as read (offset added, channels selected), before
    normalization."""
    tab = read_table(spec.emg, channels=channels)
    x = tab.select(list(channels))
    return dataclasses.replace(tab, time=tab.time + float(spec.emg_offset), data=x,
                               columns=list(channels))


def channel_peaks(tab: Table) -> np.ndarray:
    """Each column's peak over the whole file, shape (C,) (errors name the file and a
    column without a positive value)."""
    peaks = np.max(tab.data, axis=0)
    bad = np.flatnonzero(~(peaks > 0))
    if bad.size:
        raise DataError(f"{tab.path}: column {tab.columns[int(bad[0])]!r} has no positive value "
                        "to normalize by")
    return peaks


def _excitation(spec: TrialSpec, channels: Sequence[str], t: np.ndarray, ref: Table,
                notes: list[str]) -> np.ndarray:
    """Processed EMG onto the model time base (see the module docstring)."""
    tab = excitation_table(spec, channels)
    x = tab.data
    name = Path(tab.path).name
    if spec.emg_peaks is not None:
        peaks = np.asarray(spec.emg_peaks, dtype=float)
        if peaks.shape != (len(channels),) or not np.all(peaks > 0):
            raise DataError(f"trial {spec.name!r}: need one positive peak per channel; got "
                            f"{peaks.tolist()}")
        x = x / peaks[None, :]
        notes.append(f"{name}: channels divided by their peaks over all trials "
                     f"({', '.join(f'{c} {v:.4g}' for c, v in zip(channels, peaks))})")
    elif spec.emg_normalize == "trial_peak":
        peaks = channel_peaks(tab)
        x = x / peaks[None, :]
        notes.append(f"{name}: channels divided by their peak in this trial "
                     f"({', '.join(f'{c} {v:.4g}' for c, v in zip(channels, peaks))})")
    elif spec.emg_normalize != "none":
        raise DataError(f"emg_normalize must be 'none' or 'trial_peak'; got "
                        f"{spec.emg_normalize!r}")
    tol = float(spec.emg_tolerance)
    rng = excitation_range(x, tol)
    if rng["bad"] is not None:
        k, c = rng["bad"]
        raise DataError(
            f"{tab.path}: column {channels[c]!r}: excitation {x[k, c]:.6g} at t = "
            f"{tab.time[k]:.6g} s is outside [0, 1] by more than the tolerance {tol:g}; give "
            "normalized excitations (emg normalize: trial_peak or peak), a larger tolerance, "
            "or 'kind: raw' EMG with MVC trials")
    if rng["below"] or rng["above"]:
        what = []
        if rng["below"]:
            what.append(f"{rng['below']} below 0 (down to {rng['min']:.3g})")
        if rng["above"]:
            what.append(f"{rng['above']} above 1 (up to {rng['max']:.4g})")
        msg = (f"{tab.path}: {' and '.join(what)} of {x.size} excitation samples clipped to "
               f"[0, 1] (within the tolerance {tol:g})")
        warnings.warn(msg, FormatWarning, stacklevel=3)
        notes.append(f"{name}: {' and '.join(what)} of {x.size} excitation samples clipped "
                     "to [0, 1]")
        x = np.clip(x, 0.0, 1.0)
    delay = float(spec.emg_delay or 0.0)
    same = tab.time.size == t.size and np.max(np.abs(tab.time - t)) <= 1e-6 * max(
        1.0, float(np.max(np.abs(t))))
    if same and delay == 0.0:
        return x
    try:
        out, held = delayed(x, tab.time, t, delay)
    except DataError as exc:
        raise DataError(f"trial {spec.name!r}: the EMG {tab.path} ({_span(tab)}) does not "
                        f"cover the model time base ({ref.path}: [{t[0]:.6g}, {t[-1]:.6g}] s): "
                        f"{exc}") from None
    text = (f"{name}: excitations ({tab.time.size} samples at {_rate_text(tab)} from "
            f"{tab.time[0]:.4g} s) linearly interpolated onto the model time base "
            f"({t.size} samples from {t[0]:.4g} s)")
    if delay:
        pre = max(0.0, min(float(t[0] - tab.time[0]), delay))
        text += (f" at t - {delay:g} s (electromechanical delay; {pre:.4g} s of pre-roll "
                 "before the first torque sample used")
        text += f"; first sample held for {held} samples)" if held else ")"
    notes.append(text)
    return out


def _emg(spec: TrialSpec, channels: Sequence[str], t: np.ndarray, ref: Table,
         notes: list[str]) -> np.ndarray:
    if spec.emg_kind not in ("excitation", "raw"):
        raise DataError(f"trial {spec.name!r}: emg_kind must be 'excitation' or 'raw'; "
                        f"got {spec.emg_kind!r}")
    if spec.emg_kind == "excitation":
        return _excitation(spec, channels, t, ref, notes)
    tab = read_table(spec.emg, channels=channels)
    tab = dataclasses.replace(tab, time=tab.time + float(spec.emg_offset))
    x = tab.select(list(channels))
    if not spec.mvc:
        raise DataError(f"trial {spec.name!r}: raw EMG ({tab.path}) needs MVC trials to "
                        "normalize by")
    fs_emg = uniform_rate(tab)
    mvc_raw = []
    for m in spec.mvc:
        mt = read_table(m, channels=channels)
        if abs(uniform_rate(mt) - fs_emg) > 1e-6 * fs_emg:
            raise DataError(f"{mt.path}: MVC rate {mt.fs:.6g} Hz differs from the EMG rate "
                            f"{fs_emg:.6g} Hz of {tab.path}")
        mvc_raw.append(mt.select(list(channels)))
    peaks = mvc_peaks(mvc_raw, fs_emg, spec.emg_preset)
    delay = float(spec.emg_delay or 0.0)
    tq = t - delay
    if tq[-1] > tab.time[-1] + 1e-9 or t[0] < tab.time[0] - 1e-9:
        raise DataError(
            f"trial {spec.name!r}: the EMG {tab.path} ({_span(tab)}, offset "
            f"{spec.emg_offset} s) does not cover the model time base ({ref.path}: "
            f"[{t[0]:.6g}, {t[-1]:.6g}] s)"
        )
    held = int(np.sum(tq < tab.time[0] - 1e-9))
    tq = np.maximum(tq, tab.time[0])
    if delay:
        notes.append(f"{Path(tab.path).name}: envelope taken at t - {delay:g} s "
                     f"(electromechanical delay)" + (f"; first sample held for {held} samples"
                                                     if held else ""))
    return process_emg(x, fs_emg, peaks, preset=spec.emg_preset, t_out=tq - tab.time[0])


def _kinematics(spec: TrialSpec, cols: list[str], dofs: Sequence[str], t: np.ndarray,
                ref: Table, do_resample: bool, notes: list[str]) -> tuple:
    """(lmt (T, M), r (T, M, D), dr (T, M, D), angle (T, D)) from the OpenSim model."""
    from bench.formats.osim import osim_kinematics

    if spec.angles is None:
        raise DataError(f"trial {spec.name!r}: MTU kinematics from {spec.osim} need the "
                        "trial's coordinates ('angles': an IK .mot or coordinates .sto)")
    ct = read_table(spec.angles, angles=False)
    kin = osim_kinematics(spec.osim, ct, cols, dofs,
                          in_degrees=str(ct.header.get("inDegrees", "no")).lower() == "yes")
    M, D = len(cols), len(dofs)
    T0 = kin["time"].size
    flat = np.concatenate([kin["lmt"], kin["moment_arm"].reshape(T0, M * D),
                           kin["dmoment_arm"].reshape(T0, M * D), kin["angle"]], axis=1)
    tab = Table(time=kin["time"], data=flat, columns=[str(i) for i in range(flat.shape[1])],
                path=str(ct.path))
    on = _on_base(tab, t, ref, flat, do_resample, spec.name)
    lmt = on[:, :M]
    r = on[:, M:M + M * D].reshape(-1, M, D)
    dr = on[:, M + M * D:M + 2 * M * D].reshape(-1, M, D)
    angle = on[:, M + 2 * M * D:]
    notes.append(f"{Path(ct.path).name}: MTU lengths, moment arms and dr/dtheta of {M} MTUs "
                 f"about {', '.join(dofs)} computed with OpenSim from {Path(spec.osim).name} "
                 f"({T0} frames; {len(kin['set'])} coordinates set"
                 + (f", {len(kin['ignored'])} columns not model coordinates" if kin["ignored"]
                    else "") + ")")
    return lmt, r, dr, angle


def read_trial(
    spec: TrialSpec,
    *,
    muscles: Sequence[str],
    dofs: Sequence[str],
    channels: Sequence[str],
    muscle_columns: Sequence[str] | None = None,
    fs: float | None = None,
    resample_to_model: bool = False,
    dmoment_arm: str = "fit",
) -> MuscleData:
    """Read one trial's files into a one-trial :class:`MuscleData` (S = 1).

    Parameters
    ----------
    spec : TrialSpec
    muscles : list of str, length M
        Model MTU names (order of the model).
    dofs : list of str, length D
        DoF (coordinate) names as they appear in the files.
    channels : list of str, length C
        EMG columns / C3D analog labels, in the model's channel order.
    muscle_columns : list of str, optional
        Column of each MTU in the length and moment-arm files (default: ``muscles``).
    fs : float, Hz, optional
        Model rate. Without ``resample_to_model`` it must equal the torque file's rate.
    resample_to_model : bool
        Interpolate tables whose time base differs from the model's (else: an error naming
        both files and their time spans).
    dmoment_arm : {"fit", "zero"}
        How ``meta["dmoment_arm"]`` is obtained without an OpenSim model (see the module
        docstring); with one (``spec.osim`` and no MuscleAnalysis files) it is the model's.

    Returns
    -------
    MuscleData
        ``excitation`` (1, T, C), ``angle`` (1, T, D) rad (NaN without an angle file),
        ``torque`` (1, T, D) Nm, ``lmt`` (1, T, M) m, ``moment_arm`` (1, T, M, D) m,
        ``stiffness`` (1, T, D) Nm/rad or None; ``meta`` holds ``time`` (T,) s, ``trial``,
        ``files``, ``dmoment_arm`` (1, T, M, D) m/rad, ``dmoment_arm_source`` ("osim",
        "fit" or "zero") and ``notes`` (what was converted, one sentence each).
    """
    if dmoment_arm not in ("fit", "zero"):
        raise DataError(f"dmoment_arm must be 'fit' or 'zero'; got {dmoment_arm!r}")
    cols = list(muscle_columns) if muscle_columns is not None else list(muscles)
    if len(cols) != len(muscles):
        raise DataError(f"{len(cols)} muscle columns for {len(muscles)} muscles")
    from_model = spec.lengths is None or spec.moment_arms is None
    if from_model and spec.osim is None:
        raise DataError(f"trial {spec.name!r}: no MTU length / moment-arm files and no OpenSim "
                        "model to compute them from")
    if not from_model:
        missing = [d for d in dofs if d not in spec.moment_arms]
        if missing:
            raise DataError(f"trial {spec.name!r}: no moment-arm file for DoF(s) {missing}")
    notes: list[str] = []
    ref = read_table(spec.torque)
    rate = uniform_rate(ref)
    if fs is not None and abs(rate - fs) > 1e-6 * fs:
        if not resample_to_model:
            raise DataError(
                f"trial {spec.name!r}: {ref.path} is sampled at {rate:.6g} Hz ({_span(ref)}) "
                f"but the model runs at fs = {fs:.6g} Hz; set 'resample: true' to interpolate"
            )
        n = int(np.floor((ref.time[-1] - ref.time[0]) * fs + 1e-9)) + 1
        t = ref.time[0] + np.arange(n) / fs
        torque = resample(ref.select(_torque_columns(ref, dofs)), ref.time, t)
        notes.append(f"trial {spec.name}: {ref.time.size} samples at {rate:.5g} Hz "
                     f"({Path(ref.path).name}) linearly interpolated onto {n} samples at the "
                     f"model rate {fs:g} Hz over the same span [{t[0]:.4g}, {t[-1]:.4g}] s")
        rate = float(fs)
    else:
        t = ref.time
        torque = ref.select(_torque_columns(ref, dofs))
    files = {"torque": str(ref.path)}

    dr = None
    if from_model:
        lmt, r, dr, angle = _kinematics(spec, cols, dofs, t, ref, resample_to_model, notes)
        files["angles"] = str(spec.angles)
        files["osim"] = str(spec.osim)
    else:
        lt = read_table(spec.lengths)
        lmt = _on_base(lt, t, ref, lt.select(cols), resample_to_model, spec.name)
        files["lengths"] = str(lt.path)
        r = np.empty((t.size, len(muscles), len(dofs)))
        for j, d in enumerate(dofs):
            mt = read_table(spec.moment_arms[d])
            r[:, :, j] = _on_base(mt, t, ref, mt.select(cols), resample_to_model, spec.name)
            files[f"moment_arm[{d}]"] = str(mt.path)
        if spec.angles is not None:
            at = read_table(spec.angles, angles=True)
            angle = _on_base(at, t, ref, at.select(list(dofs)), resample_to_model, spec.name)
            files["angles"] = str(at.path)
        else:
            angle = np.full((t.size, len(dofs)), np.nan)
    exc = _emg(spec, channels, t, ref, notes)
    files["emg"] = str(spec.emg)
    stiff = None
    if spec.stiffness is not None:
        st = read_table(spec.stiffness)
        stiff = _on_base(st, t, ref, st.select(_stiffness_columns(st, dofs)),
                         resample_to_model, spec.name)[None]
        files["stiffness"] = str(st.path)
    if dr is not None:
        source = "osim"
    elif dmoment_arm == "fit" and spec.angles is not None:
        dr, source = fit_moment_arm_derivative(angle, r), "fit"
    else:
        dr, source = np.zeros_like(r), "zero"
    return MuscleData(
        excitation=exc[None], angle=angle[None], torque=torque[None], fs=float(rate),
        lmt=lmt[None], moment_arm=r[None], stiffness=stiff, channels=list(channels),
        muscles=list(muscles), dofs=list(dofs),
        meta={"trial": spec.name, "time": np.asarray(t, dtype=float), "files": files,
              "dmoment_arm": dr[None], "dmoment_arm_source": source, "notes": notes},
    )


def window_trial(data: MuscleData, window: tuple[float, float] | None) -> MuscleData:
    """Samples with ``t0 <= t < t1`` (s, model time ``meta["time"]``) of every trial.

    ``None`` returns ``data`` unchanged. Per-sample ``meta`` arrays are cut alike.
    """
    if window is None:
        return data
    t = np.asarray(data.meta["time"], dtype=float)
    t0, t1 = map(float, window)
    half = 0.5 / data.fs
    keep = (t >= t0 - half) & (t < t1 - half)
    name = data.meta.get("trial", "?")
    if keep.sum() < 2:
        raise DataError(
            f"trial {name!r}: window [{t0}, {t1}] s keeps {int(keep.sum())} samples of "
            f"[{t[0]:.6g}, {t[-1]:.6g}] s"
        )
    idx = np.flatnonzero(keep)
    sl = (slice(None), slice(int(idx[0]), int(idx[-1]) + 1))

    def cut(x):
        return None if x is None else np.asarray(x)[sl]

    meta = dict(data.meta)
    meta["time"] = t[sl[1]]
    meta["window"] = (t0, t1)
    for k in _PER_SAMPLE_META:
        if k in meta and np.ndim(meta[k]) >= 2:
            meta[k] = np.asarray(meta[k])[sl]
    return dataclasses.replace(
        data, excitation=cut(data.excitation), angle=cut(data.angle), torque=cut(data.torque),
        lmt=cut(data.lmt), moment_arm=cut(data.moment_arm), stiffness=cut(data.stiffness),
        meta=meta,
    )


def stack_trials(trials: Sequence[MuscleData]) -> MuscleData:
    """Concatenate one-or-more-trial :class:`MuscleData` along the trial axis.

    All must share ``fs``, channels, muscles, DoFs and the number of samples T (errors name
    the trials). ``stiffness`` is kept only when every trial has one. ``meta["trials"]``
    lists the trial names.
    """
    if not trials:
        raise DataError("no trials to stack")
    first = trials[0]
    names = [d.meta.get("trial", f"#{i}") for i, d in enumerate(trials)]
    for d, n in zip(trials, names):
        for attr in ("channels", "muscles", "dofs"):
            if list(getattr(d, attr)) != list(getattr(first, attr)):
                raise DataError(f"trial {n!r} has {attr} {getattr(d, attr)}; trial "
                                f"{names[0]!r} has {getattr(first, attr)}")
        if abs(d.fs - first.fs) > 1e-9 * first.fs:
            raise DataError(f"trial {n!r} is at {d.fs} Hz; trial {names[0]!r} at {first.fs} Hz")
    lengths = [d.torque.shape[1] for d in trials]
    if len(set(lengths)) != 1:
        raise DataError(
            "calibration trials must have the same number of samples (use windows of equal "
            "length); got " + ", ".join(f"{n!r}: {k}" for n, k in zip(names, lengths))
        )

    def cat(attr):
        vals = [getattr(d, attr) for d in trials]
        return None if any(v is None for v in vals) else np.concatenate(vals, axis=0)

    meta = {"trials": names, "time": np.stack([np.asarray(d.meta["time"]) for d in trials]),
            "files": [d.meta.get("files", {}) for d in trials]}
    for k in _PER_SAMPLE_META:
        vals = [d.meta.get(k) for d in trials]
        if all(v is not None for v in vals):
            meta[k] = np.concatenate([np.asarray(v) for v in vals], axis=0)
    return MuscleData(
        excitation=cat("excitation"), angle=cat("angle"), torque=cat("torque"), fs=first.fs,
        lmt=cat("lmt"), moment_arm=cat("moment_arm"), stiffness=cat("stiffness"),
        channels=list(first.channels), muscles=list(first.muscles), dofs=list(first.dofs),
        meta=meta,
    )


# --------------------------------------------------------------------------- writing


def write_ceinms_table(path: str | os.PathLike, time: np.ndarray, data: np.ndarray,
                       columns: Sequence[str]) -> None:
    """Write a CEINMS ``datacolumns``/``datarows`` table (tab-separated), atomically."""
    p = Path(path)
    time = np.asarray(time, dtype=float)
    data = np.atleast_2d(np.asarray(data, dtype=float))
    if data.shape != (time.size, len(columns)):
        raise DataError(f"data shape {data.shape} does not match time and columns")
    head = [f"datacolumns {len(columns) + 1}", f"datarows {time.size}",
            f"range {time[0]:.10g} {time[-1]:.10g}", "\t".join(["time", *columns])]
    body = ["\t".join(f"{v:.12g}" for v in (t, *row)) for t, row in zip(time, data)]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(head + body) + "\n")
    os.replace(tmp, p)


def write_trial(
    data: MuscleData, directory: str | os.PathLike, *, trial: int = 0, prefix: str = "trial",
    fmt: str = "opensim", version: int = 1, angles_in_degrees: bool = True,
    muscle_columns: Sequence[str] | None = None, write_stiffness: bool = True,
) -> dict[str, object]:
    """Write one trial of ``data`` as OpenSim or CEINMS files (the layout :func:`read_trial`
    reads); processed excitations go to the EMG file.

    Parameters
    ----------
    data : MuscleData
    directory : path-like
        Created if needed.
    trial : int
        Which trial of ``data``.
    prefix : str
        File-name prefix.
    fmt : {"opensim", "ceinms"}
        Storage files (``_ik.mot``, ``_id.sto``, ``_MuscleAnalysis_Length.sto``,
        ``_MuscleAnalysis_MomentArm_<dof>.sto``, ``_emg.sto``, ``_stiffness.sto``) or CEINMS
        tables (``_lmt.txt``, ``_ma_<dof>.txt``, ``_torque.txt``, ``_emg.txt``,
        ``_stiffness.txt``; angles still as ``_ik.mot``).
    version : {1, 3}
        OpenSim header version.
    angles_in_degrees : bool
        Write the angles in degrees with ``inDegrees=yes`` (as OpenSim IK does).

    Returns
    -------
    dict
        Role -> path (``moment_arms`` a dict DoF -> path), ready for :class:`TrialSpec`.
    """
    if fmt not in ("opensim", "ceinms"):
        raise DataError(f"fmt must be 'opensim' or 'ceinms'; got {fmt!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    T = data.torque.shape[1]
    t = np.asarray(data.meta["time"])[trial] if "time" in data.meta and np.ndim(
        data.meta["time"]) == 2 else np.asarray(data.meta.get("time", np.arange(T) / data.fs))
    mcols = list(muscle_columns) if muscle_columns is not None else list(data.muscles)
    dofs = list(data.dofs)

    def sto(name, values, columns, in_degrees=False):
        p = d / f"{prefix}_{name}"
        vals = np.rad2deg(values) if in_degrees else values
        write_storage(p, t, vals, columns, name=f"{prefix} {name}", version=version,
                      in_degrees=in_degrees)
        return p

    def txt(name, values, columns):
        p = d / f"{prefix}_{name}"
        write_ceinms_table(p, t, values, columns)
        return p

    out: dict[str, object] = {}
    out["angles"] = sto("ik.mot", data.angle[trial], dofs, angles_in_degrees)
    if fmt == "opensim":
        out["torque"] = sto("id.sto", data.torque[trial], [f"{x}_moment" for x in dofs])
        out["lengths"] = sto("MuscleAnalysis_Length.sto", data.lmt[trial], mcols)
        out["moment_arms"] = {
            x: sto(f"MuscleAnalysis_MomentArm_{x}.sto", data.moment_arm[trial, :, :, j], mcols)
            for j, x in enumerate(dofs)}
        out["emg"] = sto("emg.sto", data.excitation[trial], list(data.channels))
        if write_stiffness and data.stiffness is not None:
            out["stiffness"] = sto("stiffness.sto", data.stiffness[trial], dofs)
    else:
        out["torque"] = txt("torque.txt", data.torque[trial], dofs)
        out["lengths"] = txt("lmt.txt", data.lmt[trial], mcols)
        out["moment_arms"] = {
            x: txt(f"ma_{x}.txt", data.moment_arm[trial, :, :, j], mcols)
            for j, x in enumerate(dofs)}
        out["emg"] = txt("emg.txt", data.excitation[trial], list(data.channels))
        if write_stiffness and data.stiffness is not None:
            out["stiffness"] = txt("stiffness.txt", data.stiffness[trial], dofs)
    return out
