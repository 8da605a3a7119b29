"""Schema of ``impbench calibrate CONFIG.yaml``: users' own trials in, a calibrated model out.

.. code-block:: yaml

    name: my-ankle
    dofs: [ankle_angle_r]
    mtus:                                  # model order; column = name in the files
      - {name: soleus, column: soleus_r, emg: SOL}
      - {name: per_brev, column: per_brev_r, emg: PL}     # channels may drive several MTUs
    fs: 128                                # model rate, Hz (default: the torque files' rate)
    resample: false                        # interpolate tables onto the model time base
    emg: {kind: excitation}                # or {kind: raw, preset: "000", mvc: [mvc.c3d]}
    initial: {file: scaled.yaml}           # YAML/CSV per MTU, or {preset: ankle}
    model: {tendon: rigid, activation_model: recursive}
    calibrate:
      parameters: [l_opt, l_ts, strength, shape]          # + c1c2 (001)
      length_tolerance: 0.05
      strength_bounds: [0.3, 2.5]
      shape_bounds: [-3, 0]
      strength_groups: {gastrocnemii: [gas_med, gas_lat]}
    calibrator: {name: annealing, params: {seed: 0, max_evaluations: 20000}}
    objective: {alpha: 1, beta: 0.5}       # penalty: hard (annealing) / smooth (adamw)
    stiffness: {source: files}             # or {source: estimator, estimator: sds, period: 1.66}
    trials:
      t1: {torque: t1_id.sto, lengths: t1_Length.sto, moment_arms: {ankle_angle_r: ...},
           emg: t1_emg.sto, angles: t1_ik.mot, stiffness: t1_K.sto}
    calibration: [{trial: t1, window: [0.0, 1.664]}]
    validation: [t2]

Relative paths are resolved against the directory of the config file. Loading first checks
the structure with strict pydantic models (unknown keys are errors), then the content: files
exist, MTU and channel names, strength groups, the calibrator and its parameters (against
its declared ``_parameter_constraints``), the objective weights, the stiffness source and the
trial references. Every problem is reported as ``FILE:LINE: field.path: message`` (the YAML
node-mark machinery of :mod:`bench.scenario`), all at once, before any data are read.

Initial-parameter files (``initial.file``) hold per-MTU values of the fields of the model's
parameter pytree (``f_max`` N, ``l_opt`` m, ``l_ts`` m, ``phi_opt`` rad required; ``v_max``,
``damping``, ``shape``, ``c1``, ``c2``, ``delay`` s, ``t_act`` s, ``t_deact`` s optional,
the model's defaults otherwise): YAML ``{fs: 128, mtus: {soleus: {f_max: 3549, ...}}}`` or CSV
with a header ``mtu,f_max,l_opt,...`` (a unit suffix such as ``f_max [N]`` is allowed), one
row per MTU. ``c1, c2`` are at the model rate; a YAML ``fs`` different from it is an error.
The ``calibrated.yaml`` and ``calibrated_mtus.csv`` that ``impbench calibrate`` writes are
such files.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as _PydanticError

from bench.errors import DataError, InvalidParameterError, RegistryError
from bench.params import validate_params
from bench.registry import resolve
from bench.scenario import ScenarioValidationError, _Collector, _compose, _pydantic_issues

__all__ = [
    "BLOCKS",
    "PARAMETER_FIELDS",
    "PARAMETER_UNITS",
    "CalibrateConfig",
    "load_calibration_config",
    "parse_calibration_config",
    "read_params_file",
]

#: Calibrated-parameter blocks of :class:`~estimators.calibration.objectives.CalibrationSpace`
#: by config name -> block field(s).
BLOCKS = {"l_opt": ("l_opt",), "l_ts": ("l_ts",), "strength": ("f_max",), "shape": ("shape",),
          "c1c2": ("c1", "c2")}

#: Per-MTU parameter fields an initial-parameter file may give, with units.
PARAMETER_UNITS = {
    "f_max": "N", "l_opt": "m", "l_ts": "m", "phi_opt": "rad", "v_max": "l_opt/s",
    "damping": "1", "shape": "1", "c1": "1", "c2": "1", "delay": "s", "t_act": "s",
    "t_deact": "s",
}
PARAMETER_FIELDS = tuple(PARAMETER_UNITS)
_REQUIRED_FIELDS = ("f_max", "l_opt", "l_ts", "phi_opt")

_Num = float | StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MTUConfig(_Strict):
    """One MTU of the model: its name, its column in the files and its EMG channel."""

    name: StrictStr = Field(min_length=1)
    column: StrictStr | None = Field(default=None, min_length=1)
    emg: StrictStr = Field(min_length=1)


class EMGConfig(_Strict):
    """How the EMG files are turned into excitations."""

    kind: Literal["excitation", "raw"] = "excitation"
    preset: Literal["000", "001"] = "000"
    mvc: list[StrictStr] = Field(default_factory=list)
    offset: _Num = 0.0


class InitialConfig(_Strict):
    """Initial model parameters: a YAML/CSV file, or a preset of the model."""

    file: StrictStr | None = None
    preset: Literal["ankle"] | None = None


class ModelConfig(_Strict):
    """The forward model (a class following the calibration model protocol)."""

    target: StrictStr = "plants.muscle.model:MuscleModel"
    params_factory: StrictStr = "plants.muscle.params:make_params"
    tendon: Literal["rigid", "equilibrium", "rosenbrock"] = "rigid"
    activation_model: Literal["recursive", "first_order"] = "recursive"
    dmoment_arm: Literal["fit", "zero"] = "fit"


class CalibrateSpaceConfig(_Strict):
    """Which parameters are calibrated, their bounds and groups (000 Fig. 2 caption)."""

    parameters: list[Literal["l_opt", "l_ts", "strength", "shape", "c1c2"]] = Field(
        default_factory=lambda: ["l_opt", "l_ts", "strength", "shape"], min_length=1)
    length_tolerance: float = Field(0.05, gt=0, lt=1)
    strength_bounds: tuple[float, float] = (0.3, 2.5)
    shape_bounds: tuple[float, float] = (-3.0, 0.0)
    strength_groups: dict[StrictStr, list[StrictStr]] = Field(default_factory=dict)


class CalibratorConfig(_Strict):
    name: StrictStr = "annealing"
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Strict):
    """000:Eq.8 weights and the physiological penalty (000:Eq.9 / 001:Eq.4)."""

    alpha: float = Field(1.0, ge=0, le=1)
    beta: float = Field(0.0, ge=0, le=1)
    penalty: Literal["hard", "smooth", "both", "none"] | None = None


class StiffnessConfig(_Strict):
    """Reference joint stiffness: per-trial files, or an estimator on perturbed trials."""

    source: Literal["files", "estimator"]
    estimator: StrictStr = "sds"
    params: dict[StrictStr, Any] = Field(default_factory=dict)
    period: float | None = Field(default=None, gt=0)
    smooth: StrictInt = Field(20, ge=1)


class TrialConfig(_Strict):
    torque: StrictStr
    lengths: StrictStr
    moment_arms: dict[StrictStr, StrictStr]
    emg: StrictStr
    angles: StrictStr | None = None
    stiffness: StrictStr | None = None


class UseConfig(_Strict):
    """A trial used for calibration or validation, optionally a time window of it (s)."""

    trial: StrictStr
    window: tuple[float, float] | None = None


class CalibrateConfig(_Strict):
    """The validated calibration config (see the module docstring)."""

    name: StrictStr = Field(min_length=1)
    description: StrictStr | None = None
    dofs: list[StrictStr] = Field(min_length=1)
    mtus: list[MTUConfig] = Field(min_length=1)
    fs: float | None = Field(default=None, gt=0)
    resample: StrictBool = False
    emg: EMGConfig = Field(default_factory=EMGConfig)
    initial: InitialConfig = Field(default_factory=lambda: InitialConfig(preset="ankle"))
    model: ModelConfig = Field(default_factory=ModelConfig)
    calibrate: CalibrateSpaceConfig = Field(default_factory=CalibrateSpaceConfig)
    calibrator: CalibratorConfig = Field(default_factory=CalibratorConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    stiffness: StiffnessConfig | None = None
    trials: dict[StrictStr, TrialConfig] = Field(min_length=1)
    calibration: list[StrictStr | UseConfig] = Field(min_length=1)
    validation: list[StrictStr | UseConfig] = Field(default_factory=list)
    base_dir: StrictStr = Field(default=".", exclude=True)

    # ------------------------------------------------------------------ derived
    @property
    def muscles(self) -> list[str]:
        return [m.name for m in self.mtus]

    @property
    def muscle_columns(self) -> list[str]:
        return [m.column or m.name for m in self.mtus]

    @property
    def channels(self) -> list[str]:
        """EMG channels in order of first use by the MTUs."""
        return list(dict.fromkeys(m.emg for m in self.mtus))

    @property
    def emg_map(self) -> np.ndarray:
        """(M, C) channel-to-MTU map (000 Sec. 2.4: one channel may drive several MTUs)."""
        ch = self.channels
        out = np.zeros((len(self.mtus), len(ch)))
        for i, m in enumerate(self.mtus):
            out[i, ch.index(m.emg)] = 1.0
        return out

    @property
    def penalty(self) -> str:
        """The penalty actually used: as given, else hard for annealing, smooth otherwise."""
        if self.objective.penalty is not None:
            return self.objective.penalty
        return "hard" if self.calibrator.name == "annealing" else "smooth"

    def path(self, p: str) -> Path:
        """``p`` resolved against the config's directory."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    @staticmethod
    def use(entry: str | UseConfig) -> UseConfig:
        return entry if isinstance(entry, UseConfig) else UseConfig(trial=entry)


# --------------------------------------------------------------------------- content checks


def _check_files(cfg: CalibrateConfig, col: _Collector) -> None:
    def exists(path: tuple, value: str | None) -> None:
        if value is not None and not cfg.path(value).is_file():
            col.add(path, f"file not found: {cfg.path(value)}")

    for name, tr in cfg.trials.items():
        base = ("trials", name)
        for role in ("torque", "lengths", "emg", "angles", "stiffness"):
            exists((*base, role), getattr(tr, role))
        for d, p in tr.moment_arms.items():
            if d not in cfg.dofs:
                col.add((*base, "moment_arms", d), f"unknown DoF; dofs: {cfg.dofs}")
            exists((*base, "moment_arms", d), p)
        for d in cfg.dofs:
            if d not in tr.moment_arms:
                col.add((*base, "moment_arms"), f"no moment-arm file for DoF {d!r}")
        if str(cfg.path(tr.emg)).lower().endswith(".c3d") and cfg.emg.kind != "raw":
            col.add((*base, "emg"), "C3D analog channels are raw EMG; set emg.kind: raw")
    for i, p in enumerate(cfg.emg.mvc):
        exists(("emg", "mvc", i), p)
    if cfg.emg.kind == "raw" and not cfg.emg.mvc:
        col.add(("emg", "mvc"), "raw EMG needs MVC trials to normalize by")
    if cfg.initial.file is not None:
        exists(("initial", "file"), cfg.initial.file)


def _check_names(cfg: CalibrateConfig, col: _Collector) -> None:
    seen: dict[str, int] = {}
    for i, m in enumerate(cfg.mtus):
        if m.name in seen:
            col.add(("mtus", i, "name"), f"duplicate MTU {m.name!r} (also mtus[{seen[m.name]}])")
        seen[m.name] = i
    if len(set(cfg.dofs)) != len(cfg.dofs):
        col.add(("dofs",), "DoF names must be distinct")
    grouped: dict[str, str] = {}
    for g, members in cfg.calibrate.strength_groups.items():
        if not members:
            col.add(("calibrate", "strength_groups", g), "a group needs at least one MTU")
        for k, m in enumerate(members):
            if m not in seen:
                col.add(("calibrate", "strength_groups", g, k),
                        f"unknown MTU {m!r}; MTUs: {', '.join(cfg.muscles)}")
            elif m in grouped:
                col.add(("calibrate", "strength_groups", g, k),
                        f"MTU {m!r} is already in group {grouped[m]!r}")
            grouped.setdefault(m, g)
    lo, hi = cfg.calibrate.strength_bounds
    if not 0 < lo < 1 < hi:
        col.add(("calibrate", "strength_bounds"),
                f"need 0 < low < 1 < high (1 = the initial strength); got {[lo, hi]}")
    lo, hi = cfg.calibrate.shape_bounds
    if not -3 <= lo < hi <= 0:
        col.add(("calibrate", "shape_bounds"), f"need -3 <= low < high <= 0; got {[lo, hi]}")
    if len(set(cfg.calibrate.parameters)) != len(cfg.calibrate.parameters):
        col.add(("calibrate", "parameters"), "values must be distinct")
    if cfg.initial.file is None and cfg.initial.preset is None:
        col.add(("initial",), "give 'file' or 'preset'")
    if cfg.initial.file is not None and cfg.initial.preset is not None:
        col.add(("initial",), "give either 'file' or 'preset', not both")


def _check_uses(cfg: CalibrateConfig, col: _Collector) -> None:
    for key in ("calibration", "validation"):
        for i, entry in enumerate(getattr(cfg, key)):
            use = cfg.use(entry)
            where = (key, i) if isinstance(entry, str) else (key, i, "trial")
            if use.trial not in cfg.trials:
                col.add(where, f"unknown trial {use.trial!r}; trials: {', '.join(cfg.trials)}")
            if use.window is not None and not use.window[0] < use.window[1]:
                col.add((key, i, "window"), f"need start < end; got {list(use.window)}")


def _check_method(cfg: CalibrateConfig, col: _Collector) -> None:
    try:
        cls = resolve("calibrators", cfg.calibrator.name)
    except RegistryError as exc:
        col.add(("calibrator", "name"), str(exc))
        return
    cons = getattr(cls, "_parameter_constraints", {})
    for key, value in cfg.calibrator.params.items():
        if key not in cons:
            col.add(("calibrator", "params", key),
                    f"unknown parameter of {cls.__name__}; valid: {', '.join(cons)}")
            continue
        try:
            validate_params(cls.__name__, cons, {key: value})
        except InvalidParameterError as exc:
            col.add(("calibrator", "params", key), str(exc))
    ob = cfg.objective
    if ob.alpha + ob.beta == 0:
        col.add(("objective",), "alpha + beta must be > 0")
    if cfg.calibrator.name == "adamw" and cfg.penalty in ("hard",):
        col.add(("objective", "penalty"),
                "the hard penalty (000:Eq.9) has no gradient; use 'smooth' or 'both' with adamw")
    st = cfg.stiffness
    if ob.beta > 0 and st is None:
        col.add(("objective", "beta"), "beta > 0 needs a reference stiffness: add a "
                "'stiffness' block (source: files or estimator)")
    if st is None:
        return
    if st.source == "files" and ob.beta > 0:
        for i, entry in enumerate(cfg.calibration):
            use = cfg.use(entry)
            tr = cfg.trials.get(use.trial)
            if tr is not None and tr.stiffness is None:
                col.add(("calibration", i), f"beta > 0 and stiffness from files, but trial "
                        f"{use.trial!r} has no 'stiffness' file")
    if st.source == "estimator":
        if st.period is None:
            col.add(("stiffness", "period"), "the estimator cuts trials at the task cycle: "
                    "give its period in s")
        try:
            est = resolve("estimators", st.estimator)
        except RegistryError as exc:
            col.add(("stiffness", "estimator"), str(exc))
        else:
            cons = getattr(est, "_parameter_constraints", {})
            for key, value in st.params.items():
                if key not in cons:
                    col.add(("stiffness", "params", key),
                            f"unknown parameter of {est.__name__}; valid: {', '.join(cons)}")
                    continue
                try:
                    validate_params(est.__name__, cons, {key: value})
                except InvalidParameterError as exc:
                    col.add(("stiffness", "params", key), str(exc))
        for key in ("calibration", "validation"):
            for i, entry in enumerate(getattr(cfg, key)):
                use = cfg.use(entry)
                tr = cfg.trials.get(use.trial)
                if tr is not None and tr.angles is None:
                    col.add((key, i), f"the stiffness estimator needs joint angles; trial "
                            f"{use.trial!r} has no 'angles' file")


def parse_calibration_config(text: str, file: str = "<string>",
                             base_dir: str | Path | None = None) -> CalibrateConfig:
    """Validate YAML text; raise :class:`~bench.scenario.ScenarioValidationError` listing
    every problem as ``FILE:LINE: field: message``.

    Parameters
    ----------
    text : str
    file : str
        Name used in messages.
    base_dir : path-like, optional
        Directory relative paths are resolved against (default: that of ``file``).
    """
    data, lines, issues = _compose(text, file)
    col = _Collector(file, lines)
    col.issues.extend(issues)
    if data is None or col.issues:
        raise ScenarioValidationError(col.issues)
    if not isinstance(data, dict):
        col.add((), "the config must be a mapping")
        raise ScenarioValidationError(col.issues)
    if "base_dir" in data:
        col.add(("base_dir",), "unknown key")
        raise ScenarioValidationError(col.issues)
    base = Path(base_dir) if base_dir is not None else Path(file).parent
    try:
        cfg = CalibrateConfig.model_validate({**data, "base_dir": str(base)})
    except _PydanticError as exc:
        _pydantic_issues(exc, col)
        raise ScenarioValidationError(col.issues) from None
    _check_names(cfg, col)
    _check_uses(cfg, col)
    _check_files(cfg, col)
    _check_method(cfg, col)
    if col.issues:
        raise ScenarioValidationError(col.issues)
    return cfg


def load_calibration_config(path: str | Path) -> CalibrateConfig:
    """Read and validate a calibration config (errors name the file, line and field)."""
    p = Path(path)
    return parse_calibration_config(p.read_text(), str(p))


# --------------------------------------------------------------------------- parameter files

_UNIT_SUFFIX = re.compile(r"\s*\[[^\]]*\]\s*$")


def _check_fields(where: str, values: dict[str, Any], muscle: str) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if k not in PARAMETER_UNITS:
            raise DataError(f"{where}: MTU {muscle!r}: unknown parameter {k!r}; valid: "
                            f"{', '.join(PARAMETER_FIELDS)}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{where}: MTU {muscle!r}: {k} = {v!r} is not a number") from None
        if not np.isfinite(f):
            raise DataError(f"{where}: MTU {muscle!r}: {k} = {v!r} is not finite")
        out[k] = f
    miss = [k for k in _REQUIRED_FIELDS if k not in out]
    if miss:
        raise DataError(f"{where}: MTU {muscle!r}: missing parameter(s) {miss}")
    return out


def read_params_file(path: str | Path, muscles: list[str],
                     fs: float | None = None) -> dict[str, np.ndarray]:
    """Per-MTU initial parameters from a YAML or CSV file (format in the module docstring).

    Parameters
    ----------
    path : path-like
        ``.yaml``/``.yml`` or ``.csv``.
    muscles : list of str, length M
        Model MTUs; the file must give each (extra MTUs are an error too).
    fs : float, Hz, optional
        Model rate; a YAML ``fs`` (rate of ``c1, c2``) must equal it.

    Returns
    -------
    dict of str to ndarray, shape (M,)
        Field -> values in model order (only the fields every MTU gives; a field given for
        some MTUs only is an error naming them).
    """
    p = Path(path)
    rows: dict[str, dict[str, float]] = {}
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise DataError(f"{p}{line}: invalid YAML: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("mtus"), dict):
            raise DataError(f"{p}: expected a mapping with 'mtus: {{name: {{field: value}}}}'")
        file_fs = doc.get("fs")
        if file_fs is not None and fs is not None and abs(float(file_fs) - fs) > 1e-9 * fs:
            raise DataError(f"{p}: fs = {file_fs} Hz (rate of c1, c2) differs from the model "
                            f"rate {fs} Hz")
        for m, vals in doc["mtus"].items():
            if not isinstance(vals, dict):
                raise DataError(f"{p}: MTU {m!r}: expected a mapping of parameters")
            rows[str(m)] = _check_fields(str(p), vals, str(m))
    elif p.suffix.lower() == ".csv":
        with open(p, newline="") as fh:
            reader = csv.reader(fh)
            try:
                header = [_UNIT_SUFFIX.sub("", h).strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{p}: empty CSV file") from None
            if not header or header[0] != "mtu":
                raise DataError(f"{p}:1: the first column must be 'mtu'; found {header[:1]}")
            for line_no, row in enumerate(reader, start=2):
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{p}:{line_no}: expected {len(header)} values, found "
                                    f"{len(row)}")
                m = row[0].strip()
                rows[m] = _check_fields(f"{p}:{line_no}", dict(zip(header[1:], row[1:])), m)
    else:
        raise DataError(f"{p}: initial parameters must be a .yaml/.yml or .csv file")
    missing = [m for m in muscles if m not in rows]
    extra = [m for m in rows if m not in muscles]
    if missing or extra:
        raise DataError(f"{p}: MTUs do not match the config: missing {missing}, extra {extra}")
    fields = set.union(*(set(r) for r in rows.values()))
    out = {}
    for k in PARAMETER_FIELDS:
        if k not in fields:
            continue
        lacking = [m for m in muscles if k not in rows[m]]
        if lacking:
            raise DataError(f"{p}: parameter {k!r} is given for some MTUs but not for {lacking}")
        out[k] = np.array([rows[m][k] for m in muscles])
    return out
