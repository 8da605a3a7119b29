"""Rig description files of the variable-stiffness lever device (004 Sec. IV-A, Fig. 6-7).

A rig file is YAML with the sections below; every key is required unless it has a default,
unknown keys are errors, and a bad value raises :class:`RigFileError` naming the file, the
line and the field, e.g. ``default.yaml:41: motor.kt: must be > 0 (got -0.02)``.

The thesis publishes neither the geometry nor the drive train of its device, so the shipped
``plants/rigs/default.yaml`` is an illustrative rig of plausible parts (T8 lead screw,
12 V DC motor, Arduino-style 10-bit potentiometer); a real rig's calibration goes into a
file of the same schema.

Sections (SI units throughout)
------------------------------
geometry   rod_length r (m), rod_mass (kg), pivot travel [pivot_min, pivot_max] = range of r1
           (distance from the actuator end to the pivot, m) where the limit switches sit,
           overtravel to the hard end stops (m).
springs    stiffness K2 (N/m, both springs combined), damping (N s/m), preload = pre-tension
           deflection of the two opposing springs (m; beyond it one goes slack and the rate
           halves; null = never slack).
play       backlash = total play of the pivot bearing across the rod (m), bearing_friction =
           Coulomb force holding the rod inside that play (N), bending_compliance = 1/(E I) of
           the rod (1/(N m^2)). Each 0 = ideal.
lead_screw lead (m/rev), carriage_mass (kg), coulomb_friction (N), viscous_friction (N s/m),
           efficiency (0-1].
motor      resistance (ohm), inductance (H, 0 = no electrical lag), kt (N m/A), ke (V s/rad),
           inertia (kg m^2, rotor + screw), supply_voltage (V).
controller Arduino-style integer PID on the pivot potentiometer counts: rate (Hz, divides
           sampling.fs), kp, ki, kd (integers, output = (kp e + ki sum(e) + kd de) >> shift),
           shift, pwm_max (full-scale PWM count), integral_limit (counts).
actuator   position-controlled linear motor as a 2nd-order servo: bandwidth (Hz),
           damping_ratio, stroke (+- m).
sensors    pivot / force / actuator: bits (ADC bits, 0 = no quantization), scale (unit per
           count), offset (unit at count 0), noise_std (unit, 0 = none), signed (count range).
sampling   fs (Hz, 004 Sec. IV-B: 2500), max_step (s, largest physics sub-step).
perturbation  fgwn_std (m, 2 mm), prbs_amplitude (m, 5 mm peak-to-peak: levels 0 and 5 mm),
           prbs_switch_interval (s, 147 ms), lowpass (Hz, 40), lowpass_order (4),
           fgwn_cutoff (Hz, 5), fgwn_order (2), decimation (25: 2500 -> 100 Hz).
mapping    positions (m, >= 5 pivot positions), duration (s, 60), band (Hz, [0.1, 2.5]),
           seed (fixed: the mapping does not depend on the experiment's seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import InvalidParameterError

__all__ = [
    "Actuator",
    "Controller",
    "Geometry",
    "LeadScrew",
    "MappingSpec",
    "Motor",
    "PerturbationSpec",
    "Play",
    "Rig",
    "RigFileError",
    "Sampling",
    "Sensor",
    "Sensors",
    "Springs",
    "default_rig_path",
    "load_rig",
]


class RigFileError(InvalidParameterError):
    """A rig description is invalid; the message names the file, line and field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Geometry(_Section):
    rod_length: float = Field(gt=0)
    rod_mass: float = Field(ge=0)
    pivot_min: float = Field(gt=0)
    pivot_max: float = Field(gt=0)
    overtravel: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> Geometry:
        if not self.pivot_min < self.pivot_max:
            raise ValueError(f"pivot_min ({self.pivot_min}) must be < pivot_max ({self.pivot_max})")
        if not self.pivot_max + self.overtravel < self.rod_length:
            raise ValueError("pivot_max + overtravel must be < rod_length (pivot on the rod)")
        if not self.pivot_min - self.overtravel > 0:
            raise ValueError("pivot_min - overtravel must be > 0 (pivot on the rod)")
        return self


class Springs(_Section):
    stiffness: float = Field(gt=0)
    damping: float = Field(ge=0)
    preload: float | None = Field(default=None, gt=0)


class Play(_Section):
    backlash: float = Field(ge=0)
    bearing_friction: float = Field(ge=0)
    bending_compliance: float = Field(ge=0)


class LeadScrew(_Section):
    lead: float = Field(gt=0)
    carriage_mass: float = Field(gt=0)
    coulomb_friction: float = Field(ge=0)
    viscous_friction: float = Field(ge=0)
    efficiency: float = Field(gt=0, le=1)


class Motor(_Section):
    resistance: float = Field(gt=0)
    inductance: float = Field(ge=0)
    kt: float = Field(gt=0)
    ke: float = Field(gt=0)
    inertia: float = Field(ge=0)
    supply_voltage: float = Field(gt=0)


class Controller(_Section):
    rate: float = Field(gt=0)
    kp: int = Field(ge=0, le=2**15)
    ki: int = Field(ge=0, le=2**15)
    kd: int = Field(ge=0, le=2**15)
    shift: int = Field(ge=0, le=24)
    pwm_max: int = Field(gt=0, le=2**15)
    integral_limit: int = Field(ge=0, le=2**20)


class Actuator(_Section):
    bandwidth: float = Field(gt=0)
    damping_ratio: float = Field(gt=0)
    stroke: float = Field(gt=0)


class Sensor(_Section):
    bits: int = Field(ge=0, le=32)
    scale: float = Field(gt=0)
    offset: float = 0.0
    noise_std: float = Field(ge=0)
    signed: bool = False

    @property
    def count_range(self) -> tuple[float, float]:
        """Smallest and largest ADC count (infinite when ``bits == 0``)."""
        if self.bits == 0:
            return (-float("inf"), float("inf"))
        if self.signed:
            return (-(2.0 ** (self.bits - 1)), 2.0 ** (self.bits - 1) - 1)
        return (0.0, 2.0**self.bits - 1)


class Sensors(_Section):
    pivot: Sensor
    force: Sensor
    actuator: Sensor


class Sampling(_Section):
    fs: float = Field(gt=0)
    max_step: float = Field(gt=0)


class PerturbationSpec(_Section):
    fgwn_std: float = Field(gt=0)
    fgwn_cutoff: float = Field(gt=0)
    fgwn_order: int = Field(ge=1, le=10)
    prbs_amplitude: float = Field(gt=0)
    prbs_switch_interval: float = Field(gt=0)
    lowpass: float = Field(gt=0)
    lowpass_order: int = Field(ge=1, le=10)
    decimation: int = Field(ge=1)


class MappingSpec(_Section):
    positions: tuple[float, ...] = Field(min_length=5)
    duration: float = Field(gt=0)
    band: tuple[float, float]
    seed: int = Field(ge=0)

    @model_validator(mode="after")
    def _band(self) -> MappingSpec:
        if not 0 < self.band[0] < self.band[1]:
            raise ValueError(f"band must be (f_lo, f_hi) with 0 < f_lo < f_hi; got {self.band}")
        if len(set(self.positions)) < 3:
            raise ValueError("positions must hold at least 3 distinct pivot positions")
        return self


class Rig(_Section):
    """A validated, frozen rig description (see the module docstring for the fields)."""

    name: str = Field(min_length=1)
    description: str = ""
    geometry: Geometry
    springs: Springs
    play: Play
    lead_screw: LeadScrew
    motor: Motor
    controller: Controller
    actuator: Actuator
    sensors: Sensors
    sampling: Sampling
    perturbation: PerturbationSpec
    mapping: MappingSpec

    @model_validator(mode="after")
    def _cross(self) -> Rig:
        ratio = self.sampling.fs / self.controller.rate
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"controller.rate ({self.controller.rate:g} Hz) must divide sampling.fs "
                f"({self.sampling.fs:g} Hz) into an integer number of samples"
            )
        g = self.geometry
        lo, hi = g.pivot_min - g.overtravel, g.pivot_max + g.overtravel
        bad = [p for p in self.mapping.positions if not lo <= p <= hi]
        if bad:
            raise ValueError(f"mapping.positions {bad} lie outside the pivot travel [{lo}, {hi}]")
        if self.mapping.band[1] >= self.sampling.fs / 2:
            raise ValueError("mapping.band must lie below the Nyquist frequency sampling.fs / 2")
        return self

    @property
    def control_divider(self) -> int:
        """Samples of ``sampling.fs`` per controller period."""
        return round(self.sampling.fs / self.controller.rate)

    def ideal(self, effects: tuple[str, ...] | None = None) -> Rig:
        """Copy with non-idealities set to zero.

        Parameters
        ----------
        effects : tuple of str, optional
            Which to remove, from :data:`NONIDEAL_EFFECTS`; default all of them.
        """
        effects = NONIDEAL_EFFECTS if effects is None else tuple(effects)
        unknown = sorted(set(effects) - set(NONIDEAL_EFFECTS))
        if unknown:
            raise InvalidParameterError(
                f"unknown non-ideality {unknown[0]!r}; valid: {', '.join(NONIDEAL_EFFECTS)}."
            )
        d = self.model_dump()
        if "backlash" in effects:
            d["play"]["backlash"] = 0.0
            d["play"]["bearing_friction"] = 0.0
        if "spring_slack" in effects:
            d["springs"]["preload"] = None
        if "rod_compliance" in effects:
            d["play"]["bending_compliance"] = 0.0
        if "screw_friction" in effects:
            d["lead_screw"]["coulomb_friction"] = 0.0
            d["lead_screw"]["viscous_friction"] = 0.0
        for s in ("pivot", "force", "actuator"):
            if "sensor_noise" in effects:
                d["sensors"][s]["noise_std"] = 0.0
            if "quantization" in effects:
                d["sensors"][s]["bits"] = 0
        return Rig.model_validate(d)


#: Non-idealities that :meth:`Rig.ideal` (and ``LeverPlant(disable=...)``) can switch off.
NONIDEAL_EFFECTS = (
    "backlash", "spring_slack", "rod_compliance", "screw_friction", "sensor_noise", "quantization",
)


def default_rig_path() -> Path:
    """Path of the shipped ``plants/rigs/default.yaml``."""
    return Path(str(resources.files("plants").joinpath("rigs").joinpath("default.yaml")))


def _line_map(text: str) -> dict[tuple, int]:
    """Map key paths to 1-based line numbers from the YAML node marks."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = (*path, k.value)
                lines[sub] = k.start_mark.line + 1
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


_MSG = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "missing required field",
    "too_short": "needs at least {min_length} items",
}


def _format_errors(exc: ValidationError, source: str, lines: Mapping[tuple, int]) -> str:
    out = []
    for err in exc.errors():
        loc = tuple(str(x) if not isinstance(x, int) else x for x in err["loc"])
        field = ".".join(str(x) for x in loc) or "(top level)"
        tmpl = _MSG.get(err["type"])
        ctx = err.get("ctx") or {}
        nums = {k: f"{v:g}" if isinstance(v, (int, float)) else v for k, v in ctx.items()}
        msg = tmpl.format(**nums) if tmpl else err["msg"]
        if err["type"] == "value_error":
            msg = str(ctx.get("error", err["msg"]))
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            if not isinstance(err["input"], Mapping):
                msg += f" (got {err['input']!r})"
        line = None
        for k in range(len(loc), -1, -1):
            line = lines.get(loc[:k])
            if line is not None:
                break
        where = f"{source}:{line}" if line is not None else source
        out.append(f"{where}: {field}: {msg}")
    return "\n".join(out)


def load_rig(source: str | Path | Mapping | Rig | None = None) -> Rig:
    """Load and validate a rig description.

    Parameters
    ----------
    source : str or Path or mapping or Rig or None
        A YAML file path, an already-parsed mapping, a :class:`Rig` (returned as is) or None
        for the shipped default rig.

    Returns
    -------
    Rig

    Raises
    ------
    RigFileError
        One line per problem: ``FILE:LINE: field.path: message``.
    """
    if isinstance(source, Rig):
        return source
    if source is None:
        source = default_rig_path()
    if isinstance(source, Mapping):
        name, data, lines = "<rig>", dict(source), {}
    else:
        path = Path(source)
        name = path.name
        try:
            text = path.read_text()
        except OSError as exc:
            raise RigFileError(f"{path}: cannot read rig file: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RigFileError(f"{name}: invalid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise RigFileError(f"{name}: a rig file must hold a mapping of sections")
        lines = _line_map(text)
    try:
        return Rig.model_validate(data)
    except ValidationError as exc:
        raise RigFileError(_format_errors(exc, name, lines)) from None
