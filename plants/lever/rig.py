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

Rig files are read by the bench's one hardened YAML reader (:func:`bench.yamlfile.read_yaml`:
size, encoding, nesting, alias bombs, duplicate keys with both lines); numbers must be finite,
and those that size the simulation are bounded: ``sampling.fs`` <= 100 kHz, at most
:data:`MAX_SUBSTEPS` physics sub-steps per sample, filter cut-offs within
:data:`MAX_FS_PER_CUTOFF` of ``fs``, and the mapping trials (positions x duration x fs) at
most :data:`MAX_MAPPING_SAMPLES` samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import InvalidParameterError
from bench.yamlfile import Collector, FileValidationError, Issue, fmt_path, read_yaml

__all__ = [
    "MAX_FS_PER_CUTOFF",
    "MAX_MAPPING_SAMPLES",
    "MAX_SUBSTEPS",
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


#: Most physics sub-steps per sample (``1 / (sampling.fs * sampling.max_step)``).
MAX_SUBSTEPS = 1000
#: Largest ratio of ``sampling.fs`` to a filter cut-off: a filter's start-up transient lasts
#: about ``4 fs / cut-off`` samples, generated and discarded before every signal.
MAX_FS_PER_CUTOFF = 100_000
#: Most samples of the true-stiffness mapping trials (positions x duration x fs): 50 M is
#: 20 x 1000 s at 2500 Hz (the shipped rig: 5 x 60 s at 2500 Hz = 0.75 M).
MAX_MAPPING_SAMPLES = 50_000_000


class RigFileError(FileValidationError, InvalidParameterError):
    """A rig description is invalid; :attr:`issues` name the file, line and field.

    A :class:`bench.errors.ScenarioError` (located issues, exit status 2 on the command line)
    and an :class:`bench.errors.InvalidParameterError`.
    """


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


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
    fs: float = Field(gt=0, le=100_000)
    max_step: float = Field(gt=0, le=1.0)

    @model_validator(mode="after")
    def _substeps(self) -> Sampling:
        if 1.0 / (self.fs * self.max_step) > MAX_SUBSTEPS:
            raise ValueError(f"max_step ({self.max_step:g} s) would take more than "
                             f"{MAX_SUBSTEPS} physics sub-steps per sample at fs = "
                             f"{self.fs:g} Hz")
        return self


class PerturbationSpec(_Section):
    fgwn_std: float = Field(gt=0)
    fgwn_cutoff: float = Field(gt=0)
    fgwn_order: int = Field(ge=1, le=10)
    prbs_amplitude: float = Field(gt=0)
    prbs_switch_interval: float = Field(gt=0, le=3600)
    lowpass: float = Field(gt=0)
    lowpass_order: int = Field(ge=1, le=10)
    decimation: int = Field(ge=1, le=10_000)


class MappingSpec(_Section):
    positions: tuple[float, ...] = Field(min_length=5, max_length=1000)
    duration: float = Field(gt=0, le=3600)
    band: tuple[float, float]
    seed: int = Field(ge=0, le=2**63 - 1)

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
        fs, p = self.sampling.fs, self.perturbation
        for name, cutoff in (("lowpass", p.lowpass), ("fgwn_cutoff", p.fgwn_cutoff)):
            if not fs / MAX_FS_PER_CUTOFF <= cutoff < fs / 2:
                raise ValueError(f"perturbation.{name} ({cutoff:g} Hz) must lie in "
                                 f"[fs / {MAX_FS_PER_CUTOFF}, fs / 2) = [{fs / MAX_FS_PER_CUTOFF:g}"
                                 f", {fs / 2:g}) Hz")
        n_map = len(self.mapping.positions) * self.mapping.duration * fs
        if n_map > MAX_MAPPING_SAMPLES:
            raise ValueError(f"the mapping trials (mapping.positions x mapping.duration x "
                             f"sampling.fs) would simulate {n_map:.3g} samples; at most "
                             f"{MAX_MAPPING_SAMPLES:.3g}")
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


_MSG = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "missing required field",
    "too_short": "needs at least {min_length} items",
}


def _rig_issues(exc: ValidationError, col: Collector | None, source: str) -> list[Issue]:
    """One located issue per pydantic error (``FILE:LINE: field.path: message``)."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        tmpl = _MSG.get(err["type"])
        ctx = err.get("ctx") or {}
        nums = {k: f"{v:g}" if isinstance(v, (int, float)) else v for k, v in ctx.items()}
        msg = tmpl.format(**nums) if tmpl else err["msg"]
        if err["type"] == "value_error":
            msg = str(ctx.get("error", err["msg"]))
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            given = err["input"]
            if not isinstance(given, (Mapping, list, tuple)):
                text = repr(given)
                msg += f" (got {text if len(text) <= 60 else text[:57] + '...'})"
        if col is not None:
            col.add(loc, msg)
        else:
            out.append(Issue(source, None, fmt_path(loc), msg))
    return col.issues if col is not None else out


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
        Every problem, one issue each: ``FILE:LINE: field.path: message`` (unreadable, too
        large, not UTF-8, invalid YAML, duplicate keys, unknown or missing keys, values out of
        range).
    """
    if isinstance(source, Rig):
        return source
    if source is None:
        source = default_rig_path()
    col: Collector | None = None
    if isinstance(source, Mapping):
        name, data = "<rig>", dict(source)
    else:
        name = str(source)
        try:
            doc = read_yaml(source)
        except FileValidationError as exc:
            raise RigFileError(exc.issues) from None
        data, col = doc.data, doc.collector()
        if not isinstance(data, Mapping):
            raise RigFileError([Issue(name, doc.lines.get((), 1), "",
                                      "a rig file must hold a mapping of sections")])
    try:
        return Rig.model_validate(data)
    except ValidationError as exc:
        raise RigFileError(_rig_issues(exc, col, name)) from None
