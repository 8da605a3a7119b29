"""Smooth generic Hill-type muscle-tendon curves and their analytic derivatives.

All curves are the analytic, infinitely differentiable curves of De Groote et al. (2016),
"Evaluation of direct collocation optimal control problem formulations for solving the
muscle redundancy problem", Ann. Biomed. Eng. 44(10), Eq. (S1)-(S4) of its supplement, with
the constants documented for OpenSim's ``DeGrooteFregly2016Muscle``:

* active force-length ``f_L``: sum of three Gaussian-like terms (published constants);
* passive force-length ``f_PE``: exponential with ``kPE = 4``, ``e0 = 0.6``, shifted as in
  OpenSim so that ``f_PE(0.2) = 0`` (OpenSim's minimum normalized fibre length);
* force-velocity ``f_V``: inverse-hyperbolic-sine curve; ``d2, d3`` published and ``d1, d4``
  re-derived (as OpenSim does) so that ``f_V(-1) = 0`` and ``f_V(0) = 1``;
* tendon force-strain ``f_T``: ``c1 exp(kT (lt - c2)) - c3`` with ``c1 = 0.2``, ``c2 = 0.995``,
  ``c3 = 0.25`` and ``kT = ln(6.25) / 0.054`` (unit force at 4.9 % strain, OpenSim's default).
  The exponential continues smoothly below zero strain (to ``-c3``), which is the extension of
  the tendon curve below slack length of 001:App.A; negative strain is penalized by the
  calibrators, not clipped here.

Inputs are normalized: fibre length by optimal fibre length, fibre velocity by
``l_opt * v_max`` (negative = shortening), tendon length by tendon slack length. Outputs are
normalized by the maximum isometric force. Every function is elementwise, jit-, vmap- and
grad-compatible.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "ACTIVE_FL",
    "FV_D",
    "PASSIVE_E0",
    "PASSIVE_KPE",
    "TENDON_C",
    "TENDON_KT",
    "active_force_length",
    "active_force_length_deriv",
    "force_velocity",
    "force_velocity_deriv",
    "passive_force_length",
    "passive_force_length_deriv",
    "tendon_force_length",
    "tendon_force_length_deriv",
]

#: De Groote et al. 2016 active force-length constants, rows (b1, b2, b3, b4) per term.
ACTIVE_FL = np.array(
    [
        [0.815, 1.055, 0.162, 0.063],
        [0.433, 0.717, -0.030, 0.200],
        [0.100, 1.000, 0.354, 0.000],
    ]
)
#: Passive force-length exponent shape and strain at unit force (De Groote et al. 2016).
PASSIVE_KPE = 4.0
PASSIVE_E0 = 0.6
_PASSIVE_LMIN = 0.2  # OpenSim's minimum normalized fibre length (f_PE(0.2) = 0)
_PASSIVE_OFFSET = float(np.exp(PASSIVE_KPE * (_PASSIVE_LMIN - 1.0) / PASSIVE_E0))
_PASSIVE_DEN = float(np.exp(PASSIVE_KPE) - _PASSIVE_OFFSET)

_D2, _D3 = -8.149, -0.374  # De Groote et al. 2016
_D1 = float(1.0 / (np.arcsinh(_D3) - np.arcsinh(-_D2 + _D3)))  # f_V(-1) = 0 (OpenSim change)
_D4 = float(1.0 - _D1 * np.arcsinh(_D3))  # f_V(0) = 1 (OpenSim change)
#: Force-velocity constants (d1, d2, d3, d4); d1 = -0.32113, d4 = 0.88253.
FV_D = (_D1, _D2, _D3, _D4)

#: Tendon force-strain constants (c1, c2, c3) and stiffness exponent kT (OpenSim/De Groote).
TENDON_C = (0.2, 0.995, 0.25)
TENDON_KT = float(np.log(6.25) / (1.049 - 0.995))


def active_force_length(l: jnp.ndarray) -> jnp.ndarray:
    """Active force-length multiplier ``f_L(l)`` (De Groote 2016, Eq. S2), dimensionless."""
    out = 0.0
    for b1, b2, b3, b4 in ACTIVE_FL:
        s = b3 + b4 * l
        out = out + b1 * jnp.exp(-0.5 * (l - b2) ** 2 / s**2)
    return out


def active_force_length_deriv(l: jnp.ndarray) -> jnp.ndarray:
    """``d f_L / d l`` (analytic)."""
    out = 0.0
    for b1, b2, b3, b4 in ACTIVE_FL:
        s = b3 + b4 * l
        g = b1 * jnp.exp(-0.5 * (l - b2) ** 2 / s**2)
        # d/dl [-(l-b2)^2 / (2 s^2)] = -(l-b2)/s^2 + (l-b2)^2 b4 / s^3
        out = out + g * (-(l - b2) / s**2 + (l - b2) ** 2 * b4 / s**3)
    return out


def passive_force_length(l: jnp.ndarray) -> jnp.ndarray:
    """Passive force-length ``f_PE(l)`` (De Groote 2016, Eq. S3; OpenSim offset)."""
    return (jnp.exp(PASSIVE_KPE * (l - 1.0) / PASSIVE_E0) - _PASSIVE_OFFSET) / _PASSIVE_DEN


def passive_force_length_deriv(l: jnp.ndarray) -> jnp.ndarray:
    """``d f_PE / d l`` (analytic)."""
    k = PASSIVE_KPE / PASSIVE_E0
    return k * jnp.exp(k * (l - 1.0)) / _PASSIVE_DEN


def force_velocity(v: jnp.ndarray) -> jnp.ndarray:
    """Force-velocity multiplier ``f_V(v)`` (De Groote 2016, Eq. S4); v < 0 is shortening."""
    d1, d2, d3, d4 = FV_D
    return d1 * jnp.arcsinh(d2 * v + d3) + d4


def force_velocity_deriv(v: jnp.ndarray) -> jnp.ndarray:
    """``d f_V / d v`` (analytic)."""
    d1, d2, d3, _ = FV_D
    x = d2 * v + d3
    return d1 * d2 / jnp.sqrt(x * x + 1.0)


def tendon_force_length(lt: jnp.ndarray) -> jnp.ndarray:
    """Tendon force ``f_T(lt)`` for normalized tendon length ``lt = l_t / l_ts`` (Eq. S1).

    Smoothly extended below slack length (001:App.A): tends to ``-c3`` for ``lt -> -inf``.
    """
    c1, c2, c3 = TENDON_C
    return c1 * jnp.exp(TENDON_KT * (lt - c2)) - c3


def tendon_force_length_deriv(lt: jnp.ndarray) -> jnp.ndarray:
    """``d f_T / d lt`` (analytic), normalized force per normalized length."""
    c1, c2, _ = TENDON_C
    return c1 * TENDON_KT * jnp.exp(TENDON_KT * (lt - c2))
