"""The calibration model protocol on top of :mod:`plants.muscle`, for any set of MTUs.

:class:`MuscleModel` is what the calibrators of :mod:`estimators.calibration` receive (the
protocol is documented in :mod:`estimators.calibration.objectives`):

* ``base_params`` - the initial (generic or scaled) :class:`~plants.muscle.MTUParams`;
* ``muscles`` - the M MTU names, ``strength_groups`` - MTUs sharing one strength coefficient;
* ``inputs(data)`` - the arrays of a :class:`~bench.types.MuscleData` the forward model needs;
* ``simulate(params, inputs)`` - the EMG-driven forward model (000:Eq.1-7) vmapped over the S
  trials, returning ``torque`` (S, T, D), ``stiffness`` (S, T, D), ``lm`` (S, T, M) normalized
  fibre length and ``lt`` (S, T, M) normalized tendon length; pure and JAX-traceable, so the
  same function serves annealing (jitted) and AdamW (differentiated).

The model takes MTU lengths and moment arms from the data (``MuscleData.lmt``,
``MuscleData.moment_arm``) and the moment-arm derivative ``dr/dtheta`` of 000:Eq.7 from
``MuscleData.meta["dmoment_arm"]`` when present (zeros otherwise, which drops the
``-dr/dtheta F`` term of the joint stiffness).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.errors import DataError, InvalidParameterError
from bench.types import MuscleData
from plants.muscle.joint import ACTIVATION_MODELS, simulate_torque
from plants.muscle.mtu import TENDON_MODELS
from plants.muscle.params import MTUParams

__all__ = ["ANKLE_STRENGTH_GROUPS", "MuscleModel"]

#: 000 Sec. 2.4-2.5: the gastrocnemii and the peronei longus and brevis share a strength
#: coefficient (they share an EMG channel or a muscle group); every other MTU has its own.
ANKLE_STRENGTH_GROUPS = {
    "gastrocnemii": ["gas_med", "gas_lat"],
    "peronei": ["per_long", "per_brev"],
}


class MuscleModel:
    """EMG-driven Hill-type model of a set of MTUs spanning D joints (000 Sec. 2.4).

    Parameters
    ----------
    base_params : MTUParams, fields (M,)
        Initial parameters; ``c1, c2`` must be expressed at ``fs``.
    muscles : sequence of str, length M
    fs : float, Hz
        Sampling rate of the data the model is run on.
    emg_map : array, shape (M, M_emg), optional
        Channel-to-MTU map (identity when omitted, then M_emg = M).
    tendon : {"rigid", "equilibrium", "rosenbrock"}
        Tendon model of :func:`plants.muscle.mtu.mtu_trajectory`.
    activation_model : {"recursive", "first_order"}
    strength_groups : dict of str to list of str, optional
        MTUs sharing one strength coefficient in the calibration space.
    """

    def __init__(
        self,
        base_params: MTUParams,
        muscles: list[str] | tuple[str, ...],
        *,
        fs: float,
        emg_map: np.ndarray | None = None,
        tendon: str = "rigid",
        activation_model: str = "recursive",
        strength_groups: dict[str, list[str]] | None = None,
    ) -> None:
        if not isinstance(base_params, MTUParams):
            raise InvalidParameterError(
                f"base_params must be plants.muscle.MTUParams; got {type(base_params).__name__}"
            )
        M = len(muscles)
        if np.shape(base_params.f_max) != (M,):
            raise InvalidParameterError(
                f"base_params fields must have shape ({M},) for {M} muscles; "
                f"got {np.shape(base_params.f_max)}"
            )
        if tendon not in TENDON_MODELS:
            raise InvalidParameterError(
                f"The 'tendon' parameter of MuscleModel must be one of {TENDON_MODELS}. "
                f"Got {tendon!r} instead."
            )
        if activation_model not in ACTIVATION_MODELS:
            raise InvalidParameterError(
                "The 'activation_model' parameter of MuscleModel must be one of "
                f"{ACTIVATION_MODELS}. Got {activation_model!r} instead."
            )
        if not (np.isfinite(fs) and fs > 0):
            raise InvalidParameterError(f"The 'fs' parameter of MuscleModel must be > 0; got {fs}")
        if emg_map is not None:
            emg_map = np.asarray(emg_map, dtype=float)
            if emg_map.ndim != 2 or emg_map.shape[0] != M:
                raise InvalidParameterError(
                    f"emg_map must have shape ({M}, n_channels); got {emg_map.shape}"
                )
        self.base_params = base_params
        self.muscles = tuple(muscles)
        self.fs = float(fs)
        self.emg_map = emg_map
        self.tendon = tendon
        self.activation_model = activation_model
        self.strength_groups = None if strength_groups is None else dict(strength_groups)

    @classmethod
    def from_ankle(
        cls,
        fs: float = 128.0,
        *,
        params: MTUParams | None = None,
        tendon: str = "equilibrium",
        activation_model: str = "recursive",
    ) -> MuscleModel:
        """The 7-MTU, 5-EMG ankle model of 000 Sec. 2.4 (:mod:`plants.ankle`).

        Parameters
        ----------
        fs : float, Hz
            Rate of the ankle's ``MuscleData`` (``AnklePlant.fs_out``, 128 Hz by default).
        params : MTUParams, optional
            Initial parameters; default: the generic ankle parameters
            (:func:`plants.ankle.default_ankle_params` at ``fs``).
        tendon, activation_model
            See :class:`MuscleModel`.
        """
        from plants.ankle import EMG_MAP, MUSCLES, default_ankle_params

        base = default_ankle_params(fs) if params is None else params
        return cls(
            base, MUSCLES, fs=fs, emg_map=EMG_MAP, tendon=tendon,
            activation_model=activation_model, strength_groups=ANKLE_STRENGTH_GROUPS,
        )

    @classmethod
    def from_arm(
        cls,
        fs: float = 100.0,
        *,
        params: MTUParams | None = None,
        tendon: str = "rigid",
        activation_model: str = "recursive_first_order",
        strength_groups: dict[str, list[str]] | None = None,
    ) -> MuscleModel:
        """The 16-MTU, 16-EMG model of the synthetic arm of 002 (:mod:`plants.arm`).

        With the defaults it is the arm's own forward model (:mod:`plants.arm.simulate`):
        rigid tendon, the recursive filter with continuous delay (002:Eq.19-21) followed by
        the first-order activation dynamics (002:Eq.17-18), no shape factor (002 has none:
        ``shape = -1e-6``, where ``(exp(A u) - 1) / (exp(A) - 1) = u`` to 1e-6); one EMG
        channel per MTU (identity map). Joint moments are the muscle torques
        ``J_m^T f_m`` (002:Eq.1) over the 5 DoFs, from ``MuscleData.lmt`` and
        ``MuscleData.moment_arm``; the fibre velocity is the central difference of the MTU
        length (the arm integrates the analytic one, a difference of O(dt^2)).

        Parameters
        ----------
        fs : float, Hz
            Rate of the arm's ``MuscleData`` (``ArmPlant.fs``, 100 Hz by default).
        params : MTUParams, optional
            Initial parameters; default: the arm's ground truth
            (:func:`plants.arm.muscles.default_muscle_params` at ``fs``) with the shape factor
            set to -1e-6 (the identity).
        tendon, activation_model
            See :class:`MuscleModel`.
        strength_groups : dict, optional
            Default none: every arm MTU has its own EMG channel, and 000 shares a strength
            coefficient only between MTUs that share a channel or a group; 002 identifies
            ``f_max`` per muscle.
        """
        from plants.arm.muscles import MUSCLES, default_muscle_params

        if params is None:
            base = default_muscle_params(fs)
            params = base._replace(shape=jnp.full_like(base.shape, -1e-6))
        return cls(
            params, MUSCLES, fs=fs, emg_map=None, tendon=tendon,
            activation_model=activation_model, strength_groups=strength_groups,
        )

    # ------------------------------------------------------------------ protocol
    def inputs(self, data: MuscleData) -> dict[str, jnp.ndarray]:
        """Arrays of ``data`` the forward model needs.

        Returns
        -------
        dict
            ``excitation`` (S, T, M_emg), ``lmt`` (S, T, M) m, ``moment_arm`` (S, T, M, D) m,
            ``dmoment_arm`` (S, T, M, D) m/rad (zeros when ``data.meta`` has none).

        Raises
        ------
        DataError
            Missing MTU lengths or moment arms, a sampling rate other than the model's, or
            shapes that do not agree (names the field).
        """
        if not isinstance(data, MuscleData):
            raise DataError(f"MuscleModel needs MuscleData; got {type(data).__name__}")
        if abs(float(data.fs) - self.fs) > 1e-9 * self.fs:
            raise DataError(
                f"MuscleData.fs is {data.fs} Hz but the model runs at {self.fs} Hz "
                "(its recursive-filter coefficients are expressed at that rate)"
            )
        if data.lmt is None or data.moment_arm is None:
            raise DataError("MuscleData.lmt and MuscleData.moment_arm are required by MuscleModel")
        exc = np.asarray(data.excitation, dtype=float)
        lmt = np.asarray(data.lmt, dtype=float)
        r = np.asarray(data.moment_arm, dtype=float)
        M = len(self.muscles)
        if exc.ndim != 3:
            raise DataError(f"MuscleData.excitation must have shape (S, T, M_emg); got {exc.shape}")
        S, T, C = exc.shape
        n_ch = M if self.emg_map is None else self.emg_map.shape[1]
        if C != n_ch:
            raise DataError(f"MuscleData.excitation has {C} channels; the model expects {n_ch}")
        if lmt.shape != (S, T, M):
            raise DataError(f"MuscleData.lmt must have shape {(S, T, M)}; got {lmt.shape}")
        if r.ndim == 3:
            r = r[..., None]
        if r.shape[:3] != (S, T, M):
            raise DataError(
                f"MuscleData.moment_arm must have shape {(S, T, M)} + (D,); got {r.shape}"
            )
        dr = data.meta.get("dmoment_arm") if data.meta else None
        dr = np.zeros_like(r) if dr is None else np.asarray(dr, dtype=float)
        if dr.ndim == 3:
            dr = dr[..., None]
        if dr.shape != r.shape:
            raise DataError(
                f"MuscleData.meta['dmoment_arm'] must have shape {r.shape}; got {dr.shape}"
            )
        for name, arr in (("excitation", exc), ("lmt", lmt), ("moment_arm", r)):
            if not np.all(np.isfinite(arr)):
                raise DataError(f"MuscleData.{name} contains NaN/inf")
        return {
            "excitation": jnp.asarray(exc),
            "lmt": jnp.asarray(lmt),
            "moment_arm": jnp.asarray(r),
            "dmoment_arm": jnp.asarray(dr),
        }

    def simulate(self, params: MTUParams, inputs: dict[str, Any]) -> dict[str, jnp.ndarray]:
        """Forward model over all trials (JAX-traceable, differentiable in ``params``).

        Parameters
        ----------
        params : MTUParams, fields (M,)
        inputs : dict
            From :meth:`inputs`.

        Returns
        -------
        dict
            ``torque`` (S, T, D) Nm (000:Eq.6), ``stiffness`` (S, T, D) Nm/rad (000:Eq.7),
            ``lm`` (S, T, M) normalized fibre length, ``lt`` (S, T, M) normalized tendon
            length l_t / l_ts, ``activation`` (S, T, M).
        """
        emg_map = None if self.emg_map is None else jnp.asarray(self.emg_map)

        def one(e, lmt, r, dr):
            return simulate_torque(
                params, e, lmt, r, self.fs, dmoment_arm=dr, emg_map=emg_map,
                tendon=self.tendon, activation_model=self.activation_model,
            )

        res = jax.vmap(one)(
            inputs["excitation"], inputs["lmt"], inputs["moment_arm"], inputs["dmoment_arm"]
        )
        return {
            "torque": res.torque,
            "stiffness": res.stiffness,
            "lm": res.mtu.lm,
            "lt": res.mtu.lt,
            "activation": res.activation,
        }

    def __repr__(self) -> str:
        return (
            f"MuscleModel(muscles={len(self.muscles)}, fs={self.fs}, tendon={self.tendon!r}, "
            f"activation_model={self.activation_model!r})"
        )
