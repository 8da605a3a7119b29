"""YAML schema of the ankle torque + stiffness calibration study (000 Sec. 2.5-2.6).

.. code-block:: yaml

    name: ankle-torque-stiffness
    seed: 0
    subjects: {n: 5, l_opt: 0.04, l_ts: 0.04, strength: [0.7, 1.4], shape: 0.5}
    plant: {n_cycles: 60}                 # keyword parameters of plants.ankle.AnklePlant
    model: {tendon: rigid}
    calibration:
      cycle: 1
      alpha: [0, 0.2, 0.4, 0.6, 0.8, 1.0]
      beta: [0, 0.2, 0.4, 0.6, 0.8, 1.0]
      repetitions: 5
      adamw: {max_steps: 1500}
    stiffness_references: [sds, truth]
    acceptance: 1.44
    third_test: {enabled: true, alpha: 0.05}
    reference: {source: "000 Table 1", subjects: {1: {torque_only: {...}, ...}}}

Structure is checked by strict pydantic models (unknown keys are errors), then the content
(plant parameters against :class:`plants.ankle.AnklePlant`'s declared constraints, the
alpha/beta grids, the reference block). Every error reads ``FILE:LINE: field.path: message``
with the line taken from the YAML node marks (the helpers of :mod:`bench.scenario`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as _PydanticError

from bench.errors import InvalidParameterError
from bench.params import validate_params
from bench.scenario import (
    ScenarioValidationError,
    _Collector,
    _compose,
    _pydantic_issues,
)

__all__ = ["AnkleStudyConfig", "load_study_config", "parse_study_config"]

_Num = float | StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectsConfig(_Strict):
    """How the synthetic subjects' true parameters are drawn around the generic ones."""

    n: StrictInt = Field(5, ge=1, le=100)
    l_opt: float = Field(0.04, ge=0.0, lt=0.05)  # relative half-width, inside the +-5 % bounds
    l_ts: float = Field(0.04, ge=0.0, lt=0.05)
    strength: tuple[float, float] = (0.7, 1.4)  # uniform range, inside (0.3, 2.5)
    shape: float = Field(0.5, ge=0.0, le=1.5)  # +- around the generic shape factor


class ModelConfig(_Strict):
    tendon: Literal["rigid", "equilibrium", "rosenbrock"] = "rigid"
    activation_model: Literal["recursive", "first_order"] = "recursive"


class AdamWConfig(_Strict):
    learning_rate: float = Field(0.05, gt=0)
    decay_steps: StrictInt = Field(500, ge=1)
    decay_rate: float = Field(0.5, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    max_steps: StrictInt = Field(1500, ge=1)
    patience: StrictInt = Field(100, ge=1)
    tol: float = Field(1e-6, ge=0)


class CalibrationConfig(_Strict):
    cycle: StrictInt = Field(1, ge=0)
    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    beta: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    repetitions: StrictInt = Field(5, ge=1, le=100)
    penalty: Literal["smooth", "both"] = "smooth"
    adamw: AdamWConfig = Field(default_factory=AdamWConfig)


class ThirdTestConfig(_Strict):
    enabled: StrictBool = True
    alpha: float = Field(0.05, gt=0, lt=1)


class RefRow(_Strict):
    nrmse_torque: float
    nrmse_stiffness: float
    r2_torque: float
    r2_stiffness: float
    iqr: dict[StrictStr, float] = Field(default_factory=dict)


class RefSubject(_Strict):
    torque_only: RefRow
    torque_stiffness: RefRow


class ReferenceConfig(_Strict):
    source: StrictStr
    note: StrictStr | None = None
    subjects: dict[StrictInt, RefSubject] = Field(default_factory=dict)
    accepted_torque: dict[StrictInt, StrictInt] = Field(default_factory=dict)
    accepted_total: dict[StrictInt, StrictInt] = Field(default_factory=dict)
    parameter_iqr_percent: dict[StrictStr, float] = Field(default_factory=dict)
    wall_time_min_per_calibration: tuple[float, float] | None = None


class AnkleStudyConfig(_Strict):
    """The validated study configuration (see the module docstring)."""

    name: StrictStr = Field(min_length=1)
    description: StrictStr | None = None
    seed: StrictInt = Field(0, ge=0)
    subjects: SubjectsConfig = Field(default_factory=SubjectsConfig)
    plant: dict[StrictStr, Any] = Field(default_factory=dict)
    model: ModelConfig = Field(default_factory=ModelConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    stiffness_references: list[Literal["sds", "truth"]] = Field(
        default_factory=lambda: ["sds", "truth"], min_length=1
    )
    acceptance: float = Field(1.44, ge=1.0)
    third_test: ThirdTestConfig = Field(default_factory=ThirdTestConfig)
    reference: ReferenceConfig | None = None

    @property
    def combinations(self) -> list[tuple[float, float]]:
        """(alpha, beta) pairs with alpha + beta > 0 (000 Sec. 2.5: 36 - 1 = 35)."""
        return [(a, b) for a in self.calibration.alpha for b in self.calibration.beta
                if a + b > 0]


#: AnklePlant keywords the study sets itself (one trial layout per role).
_RESERVED_PLANT = ("n_trials", "perturbed")


def _check_content(cfg: AnkleStudyConfig, col: _Collector) -> None:
    from plants.ankle import AnklePlant

    cons = AnklePlant._parameter_constraints
    for key, value in cfg.plant.items():
        if key in _RESERVED_PLANT:
            col.add(("plant", key), f"{key!r} is set by the study (calibration/blind/unperturbed "
                    "trials); remove it")
            continue
        if key not in cons:
            col.add(("plant", key), f"unknown AnklePlant parameter; valid: {', '.join(cons)}")
            continue
        try:
            validate_params("AnklePlant", cons, {key: value})
        except InvalidParameterError as exc:
            col.add(("plant", key), str(exc))
    n_cycles = cfg.plant.get("n_cycles", 20)
    if isinstance(n_cycles, int) and cfg.calibration.cycle >= n_cycles:
        col.add(("calibration", "cycle"),
                f"calibration cycle {cfg.calibration.cycle} is not below plant.n_cycles "
                f"({n_cycles})")
    for key in ("alpha", "beta"):
        vals = getattr(cfg.calibration, key)
        if not vals:
            col.add(("calibration", key), "needs at least one value")
        for i, v in enumerate(vals):
            if not 0.0 <= v <= 1.0:
                col.add(("calibration", key, i), f"weights must be in [0, 1]; got {v}")
        if len(set(vals)) != len(vals):
            col.add(("calibration", key), "values must be distinct")
    if not cfg.combinations:
        col.add(("calibration",), "no (alpha, beta) combination with alpha + beta > 0")
    lo, hi = cfg.subjects.strength
    if not 0.3 < lo <= hi < 2.5:
        col.add(("subjects", "strength"),
                f"need 0.3 < low <= high < 2.5 (the calibration bounds); got {[lo, hi]}")
    if len(set(cfg.stiffness_references)) != len(cfg.stiffness_references):
        col.add(("stiffness_references",), "values must be distinct")
    if cfg.reference is not None:
        for s in cfg.reference.subjects:
            if s < 1:
                col.add(("reference", "subjects", s), "subjects are numbered from 1")


def parse_study_config(text: str, file: str = "<string>") -> AnkleStudyConfig:
    """Validate YAML text; raise :class:`ScenarioValidationError` listing every problem."""
    data, lines, issues = _compose(text, file)
    col = _Collector(file, lines)
    col.issues.extend(issues)
    if data is None or col.issues:
        raise ScenarioValidationError(col.issues)
    if not isinstance(data, dict):
        col.add((), "the study file must be a mapping")
        raise ScenarioValidationError(col.issues)
    try:
        cfg = AnkleStudyConfig.model_validate(data)
    except _PydanticError as exc:
        _pydantic_issues(exc, col)
        raise ScenarioValidationError(col.issues) from None
    _check_content(cfg, col)
    if col.issues:
        raise ScenarioValidationError(col.issues)
    return cfg


def load_study_config(path: str | Path) -> AnkleStudyConfig:
    """Read and validate a study file (errors name the file, line and field)."""
    p = Path(path)
    return parse_study_config(p.read_text(), str(p))
