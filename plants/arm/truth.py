"""Ground-truth parameter vectors, identifiability masks and initial guesses (002 Sec. III-D/E,
IV-B/C).

Parameter vector layout (002 Sec. III-E): ten inertial parameters for each of humerus, ulna and
radius (``pi_b``, 30), then five parameters per muscle in the order of 002 Sec. III-F
(``f_max``, ``l_opt``, ``v_max``, ``phi_opt``, ``l_ts``), then the five parameters shared by all
muscles (``t_act``, ``t_deact``, ``c1``, ``c2``, ``t_d``):

* ``"M1"`` - identification without deep-muscle EMG: the nine superficial muscles spanning the
  shoulder DoFs (PECM1-3, DELT1-3, BIClong, BICshort, TRIlong) are identifiable through the
  overdetermined shoulder subsystem of the deep muscles (INFSP, SUBSC); TRIlat and BRD span
  only the elbow, where the deep subsystem (TRImed, BRA, PQ: 2 equations, 3 forces) is
  underdetermined and absorbs any error, so their parameters are not identifiable (002 Sec.
  III-D). ``pi_ms`` has 9 x 5 + 5 = 50 entries as in 002 Sec. III-E; 80 in all.
* ``"M2"`` - all EMGs available: all 16 muscles, 30 + 80 + 5 = 115.

Scoring (002:Eq.22-23 via :func:`bench.metrics.cr1`/:func:`~bench.metrics.cr2`): entries whose
true value is zero are not scored (the un-pennated BIClong/BICshort ``phi_opt``, which 002
Sec. IV-C keeps at zero); with ``bone="base"`` the 30 inertial parameters are replaced by their
identifiable linear combinations (:func:`plants.arm.rigid.base_parameter_map`): 23 in our chain,
where 002 reports 17 for its OpenSim model (its 11 dependent shoulder DoFs change which
combinations are excited; our chain has none, see ``rigid.base_parameter_map``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bench.errors import DataError, InvalidParameterError
from bench.metrics import cr1, cr2
from plants.arm import rigid
from plants.arm.muscles import MUSCLES, SUPERFICIAL, default_muscle_params
from plants.muscle import params_to_dict

__all__ = [
    "IDENTIFIABLE_MUSCLES",
    "MUSCLE_FIELDS",
    "SHARED_FIELDS",
    "base_inertial_map",
    "ground_truth",
    "identifiable_mask",
    "parameter_vector",
    "sample_initial_guess",
    "score",
]

MUSCLE_FIELDS = ("f_max", "l_opt", "v_max", "phi_opt", "l_ts")
SHARED_FIELDS = ("t_act", "t_deact", "c1", "c2", "delay")
#: Superficial muscles that span a shoulder DoF (002 Sec. III-D, Fig. 2).
IDENTIFIABLE_MUSCLES = SUPERFICIAL[:9]
_BODIES = ("humerus", "ulna", "radius")
_INERTIAL = ("m", "mcx", "mcy", "mcz", "Ixx", "Ixy", "Ixz", "Iyy", "Iyz", "Izz")
_METHODS = ("M1", "M2")


@lru_cache(maxsize=1)
def base_inertial_map() -> np.ndarray:
    """``P`` (n_base, 30) with ``beta = P @ pi.ravel()`` (cached :func:`rigid.base_parameter_map`).

    n_base = 23 for this chain (002 reports 17 for its constrained OpenSim model).
    """
    P, _ = rigid.base_parameter_map()
    return P


def _muscles(method: str) -> tuple[str, ...]:
    if method not in _METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {_METHODS}. Got {method!r} instead."
        )
    return IDENTIFIABLE_MUSCLES if method == "M1" else MUSCLES


def parameter_vector(
    method: str = "M1", fs: float = 100.0, bone: str = "raw"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ground-truth parameter vector ``pi_gt`` of an identification method.

    Parameters
    ----------
    method : {"M1", "M2"}
        Parameters learnable without (M1) or with (M2) deep-muscle EMG (module docstring).
    fs : float, Hz
        Rate at which ``c1, c2`` are expressed.
    bone : {"raw", "base"}
        30 inertial parameters, or the base (identifiable) combinations for scoring.

    Returns
    -------
    names : list of str
        ``"humerus.m"``, ..., ``"PECM1.f_max"``, ..., ``"shared.delay"``.
    values : ndarray, shape (n,)
        SI units: kg, kg m, kg m^2; N, m, l_opt/s, rad, m; s, -, -, s.
    is_muscle : ndarray of bool, shape (n,)
        Muscle (per-muscle and shared) entries: the set over which Cr2^m is taken.
    """
    muscles = _muscles(method)
    pi = rigid.default_inertial_parameters().ravel()
    if bone == "raw":
        names = [f"{b}.{p}" for b in _BODIES for p in _INERTIAL]
        vals = [pi]
    elif bone == "base":
        P = base_inertial_map()
        names = [f"base.{i}" for i in range(P.shape[0])]
        vals = [P @ pi]
    else:
        raise InvalidParameterError(
            f"The 'bone' parameter must be one of ('raw', 'base'). Got {bone!r} instead."
        )
    n_bone = len(names)
    params = default_muscle_params(fs)
    idx = [MUSCLES.index(m) for m in muscles]
    for m, i in zip(muscles, idx):
        names += [f"{m}.{f}" for f in MUSCLE_FIELDS]
        vals.append(np.array([float(getattr(params, f)[i]) for f in MUSCLE_FIELDS]))
    names += [f"shared.{f}" for f in SHARED_FIELDS]
    vals.append(np.array([float(getattr(params, f)[0]) for f in SHARED_FIELDS]))
    values = np.concatenate(vals)
    is_muscle = np.arange(values.size) >= n_bone
    return names, values, is_muscle


def identifiable_mask(names: list[str]) -> np.ndarray:
    """True for parameters identifiable without deep-muscle EMG (002 Sec. III-D).

    Bone and shared parameters and those of the nine shoulder-spanning superficial muscles
    are; TRIlat, BRD (elbow-only superficial) and the deep muscles are not.

    Parameters
    ----------
    names : list of str
        As returned by :func:`parameter_vector`.

    Returns
    -------
    ndarray of bool, shape (len(names),)
    """
    out = []
    for n in names:
        owner = n.split(".", 1)[0]
        out.append(owner not in MUSCLES or owner in IDENTIFIABLE_MUSCLES)
    return np.array(out, dtype=bool)


def sample_initial_guess(
    values: np.ndarray, rng: np.random.Generator, rel_std: float = 0.1, size: int | None = None
) -> np.ndarray:
    """Initial guesses ``pi_0 ~ N(pi_gt, (0.1 |pi_gt|)^2)``, elementwise (002:Eq.24).

    002 writes ``N(pi_gt, 0.1 pi_gt)``; we read the second argument as the standard deviation
    (a 10 % relative spread), so a zero true value gets a zero-spread guess.

    Parameters
    ----------
    values : ndarray, shape (n,)
        Ground truth ``pi_gt``.
    rng : numpy.random.Generator
    rel_std : float
        Relative standard deviation (002: 0.1).
    size : int, optional
        Number of guesses (002 Sec. IV-C: 5 per movement and method); None gives one vector.

    Returns
    -------
    ndarray, shape (n,) or (size, n)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng)}")
    if not (np.isfinite(rel_std) and rel_std >= 0):
        raise InvalidParameterError(f"The 'rel_std' parameter must be >= 0. Got {rel_std}.")
    v = np.asarray(values, dtype=float)
    shape = v.shape if size is None else (size, *v.shape)
    return v + rel_std * np.abs(v) * rng.standard_normal(shape)  # 002:Eq.24


def score(
    names: list[str], true: np.ndarray, estimate: np.ndarray, is_muscle: np.ndarray
) -> dict[str, float]:
    """Cr1, Cr2 and Cr2^m of an estimate, percent (002:Eq.22-23 and Sec. IV-B).

    Entries with a zero true value are left out (undefined relative error; 002 Sec. IV-C keeps
    the un-pennated BIC ``phi_opt`` at zero).

    Parameters
    ----------
    names : list of str; true, estimate : ndarrays, shape (n,); is_muscle : bool (n,)

    Returns
    -------
    dict with ``"Cr1"``, ``"Cr2"``, ``"Cr2m"`` and ``"n_scored"``.
    """
    t = np.asarray(true, dtype=float)
    e = np.asarray(estimate, dtype=float)
    if t.shape != e.shape or t.shape != (len(names),):
        raise DataError(
            f"true {t.shape}, estimate {e.shape} and names ({len(names)}) must agree in length"
        )
    keep = t != 0
    mus = keep & np.asarray(is_muscle, dtype=bool)
    return {
        "Cr1": cr1(t[keep], e[keep]),  # 002:Eq.22
        "Cr2": cr2(t[keep], e[keep]),  # 002:Eq.23
        "Cr2m": cr2(t[mus], e[mus]),  # 002 Sec. IV-B: muscle parameters only
        "n_scored": int(keep.sum()),
    }


def ground_truth(fs: float = 100.0) -> dict:
    """The arm's true parameters as plain Python (``MuscleData.truth``).

    Returns
    -------
    dict
        ``inertial`` (3 x 10 nested list; bodies humerus, ulna, radius), ``muscle_params``
        (every :class:`~plants.muscle.MTUParams` field, 16 values each, ``c1, c2`` at ``fs``),
        ``muscles``, ``identifiable_muscles``, ``fs``.
    """
    return {
        "inertial": rigid.default_inertial_parameters().tolist(),
        "muscle_params": params_to_dict(default_muscle_params(fs)),
        "muscles": list(MUSCLES),
        "identifiable_muscles": list(IDENTIFIABLE_MUSCLES),
        "fs": float(fs),
    }
