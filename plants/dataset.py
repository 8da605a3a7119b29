"""A user's recorded trials as a calibration plant: calibrating one's own data is a scenario.

.. code-block:: yaml

    plant:
      name: dataset
      params:
        dofs: [ankle_angle_r]
        mtus:                                 # model order; column = name in the files
          - {name: soleus, column: soleus_r, emg: SOL}
          - {name: per_brev, column: per_brev_r, emg: PL}   # a channel may drive several MTUs
        osim: subject_scaled.osim             # optional: MTU kinematics from the OpenSim model
        fs: 128                               # model rate, Hz (default: the first calibration
                                              #   trial's torque rate)
        resample: false                       # interpolate tables / other-rate trials onto it
        emg:
          kind: excitation                    # or raw (with preset, mvc)
          tolerance: 0.05                     # clip excitations within [-0.05, 1.05]
          normalize: none                     # or trial_peak, peak (over all trials)
          delay: 0.04                         # s, electromechanical delay applied to the data
        initial: {file: scaled.yaml}          # or {preset: ankle}, {osim: model.osim},
                                              #   {ceinms: subject.xml}; + osimx: mtp.osimx
        model: {tendon: rigid, activation_model: recursive, dmoment_arm: fit}
        calibrate:                            # the calibrated-parameter space
          parameters: [l_opt, l_ts, strength, shape]        # + c1c2 (Hambly et al.)
          length_tolerance: 0.05
          strength_bounds: [0.3, 2.5]
          shape_bounds: [-3, 0]
          strength_groups: {gastrocnemii: [gas_med, gas_lat]}
        task_period: 1.66                     # s, optional: SDS reference / per-cycle scores
        trials:
          t1: {torque: t1_id.sto, lengths: t1_Length.sto, moment_arms: {ankle_angle_r: ...},
               emg: t1_emg.sto, angles: t1_ik.mot, stiffness: t1_K.sto}
          t2: {angles: coordinates.sto, torque: id.sto, emg: emg.sto}    # kinematics: osim
          t3: {ceinms: trial3.xml, angles: t3_ik.mot}     # CEINMS inputData lists the files
        calibration: [{trial: t1, window: [0.0, 1.664]}, t2]
        validation: [t3]

Relative paths are resolved against the scenario's folder (``base_dir``, set by the scenario
loader). Validation checks, before anything runs and without OpenSim installed: every file
exists, lies where it is said to and looks like data of its kind (OpenSim storage header,
CEINMS table header, C3D signature, the XML documents' root elements); MTU, channel, DoF
and trial names (and that the ``.osim`` model, the CEINMS subject and the ``.osimx`` file
have the MTUs and DoFs); every window lies inside its trial's time span; strength groups and
bounds. The plant's draw ignores the generator: it reads the files.

* **MTU kinematics**: a trial without ``lengths``/``moment_arms`` files takes them, and
  ``dr/dtheta``, from the ``osim`` model over its ``angles`` (coordinates) file, computed
  by OpenSim's Python package (``pip install 'impbench[opensim]'``; the message says so
  when it is missing). MTUs are looked up in the model under their ``column``.
* **Initial values**: ``preset`` (the synthetic ankle's), ``file`` (the bench's YAML/CSV,
  by MTU ``name``), ``osim`` (the model's ``max_isometric_force``, ``optimal_fiber_length``,
  ``tendon_slack_length``, ``pennation_angle_at_optimal`` and ``max_contraction_velocity``
  as scaled in the file) or ``ceinms`` (a CEINMS subject file); ``osimx`` (an NMSM Pipeline
  file) then replaces the personalized optimal fibre and tendon slack lengths (and forces).
  With ``osim`` given and no ``initial``, the model's values are the initial values.
* **EMG**: see :mod:`bench.formats.trial`; ``normalize: peak`` divides each channel by its
  peak over all trials used. With ``delay`` the model's own delay parameter is set to 0 (it
  is in the data).
* **Rates and lengths**: the model runs at ``fs``; a trial at another rate is interpolated
  onto it over its own span with ``resample: true`` (else an error says so). Calibration
  windows may differ in length (each is averaged over its own samples, Eq. 8 of the
  torque-stiffness EMG model study). What is done is listed in the report's data notes.

Stiffness files give the ``recorded`` reference; ``stiffness_reference: sds`` estimates
it from the trials (with ``task_period``).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr

from bench.base import Plant
from bench.errors import DataError, InvalidParameterError
from bench.formats.ceinms_xml import read_ceinms_subject, read_ceinms_trial
from bench.formats.mtu_params import read_params_file
from bench.formats.osim import osim_coordinates, read_osim_muscles
from bench.formats.osimx import apply_osimx, read_osimx
from bench.formats.trial import (
    TrialSpec,
    channel_peaks,
    excitation_table,
    read_table,
    read_trial,
    uniform_rate,
)
from bench.params import Interval, Schema
from bench.types import CalibrationData, TrialWindow

__all__ = ["BLOCKS", "DatasetPlant"]

#: Calibrated-parameter blocks by config name -> fields of the model's parameters.
BLOCKS = {"l_opt": ("l_opt",), "l_ts": ("l_ts",), "strength": ("f_max",), "shape": ("shape",),
          "c1c2": ("c1", "c2")}

_Num = float | StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MTUConfig(_Strict):
    """One MTU: its name, its column in the files and its EMG channel."""

    name: StrictStr = Field(min_length=1, max_length=100)
    column: StrictStr | None = Field(default=None, min_length=1)
    emg: StrictStr = Field(min_length=1)


class EMGConfig(_Strict):
    """How the EMG files become excitations."""

    kind: Literal["excitation", "raw"] = "excitation"
    preset: Literal["000", "001"] = "000"
    mvc: list[StrictStr] = Field(default_factory=list)
    offset: _Num = Field(0.0, ge=-3600, le=3600)
    tolerance: _Num = Field(0.05, ge=0, le=1)
    normalize: Literal["none", "trial_peak", "peak"] = "none"
    delay: _Num | None = Field(None, ge=0, le=0.5)


class InitialConfig(_Strict):
    """Initial model parameters: a YAML/CSV file, a preset of the model, an OpenSim model or
    a CEINMS subject, optionally with NMSM ``.osimx`` values on top."""

    file: StrictStr | None = None
    preset: Literal["ankle"] | None = None
    osim: StrictStr | None = None
    ceinms: StrictStr | None = None
    osimx: StrictStr | None = None


class ModelConfig(_Strict):
    """The forward model (:class:`plants.muscle.model.MuscleModel`)."""

    tendon: Literal["rigid", "equilibrium", "rosenbrock"] = "rigid"
    activation_model: Literal["recursive", "first_order"] = "recursive"
    dmoment_arm: Literal["fit", "zero"] = "fit"


class SpaceConfig(_Strict):
    """Which parameters are calibrated, their bounds and groups."""

    parameters: list[Literal["l_opt", "l_ts", "strength", "shape", "c1c2"]] = Field(
        default_factory=lambda: ["l_opt", "l_ts", "strength", "shape"], min_length=1)
    length_tolerance: float = Field(0.05, gt=0, lt=1)
    strength_bounds: tuple[float, float] = (0.3, 2.5)
    shape_bounds: tuple[float, float] = (-3.0, 0.0)
    strength_groups: dict[StrictStr, list[StrictStr]] = Field(default_factory=dict)


class TrialConfig(_Strict):
    """The files of one trial (a CEINMS trial XML may list torque, lengths, moment arms and
    EMG; keys given here take precedence)."""

    torque: StrictStr | None = None
    lengths: StrictStr | None = None
    moment_arms: dict[StrictStr, StrictStr] | None = None
    emg: StrictStr | None = None
    angles: StrictStr | None = None
    stiffness: StrictStr | None = None
    ceinms: StrictStr | None = None


class UseConfig(_Strict):
    """A trial used for calibration or validation, optionally a time window of it (s)."""

    trial: StrictStr
    window: tuple[float, float] | None = None


def _root(tp: Any, name: str) -> Schema:
    """A :class:`~bench.params.Schema` for a list or mapping parameter."""

    class _R(RootModel[tp]):  # type: ignore[valid-type]
        pass

    _R.__name__ = name
    return Schema(_R)


class DatasetPlant(Plant):
    """A user's recorded trials (OpenSim storage, CEINMS tables and XML, C3D) for calibration.

    Parameters
    ----------
    trials : dict
        Trial name -> its files (``torque``, ``lengths``, ``moment_arms`` per DoF, ``emg``,
        optional ``angles``, ``stiffness`` and ``ceinms``: a CEINMS trial XML listing
        files).
    calibration : list
        Trials (names, or ``{trial, window: [t0, t1]}`` in s) the calibrators fit.
    validation : list
        Trials scored blindly after calibration.
    dofs : list of str
        DoF (coordinate) names as they appear in the files.
    mtus : list of dict
        ``{name, column, emg}`` per MTU, in model order.
    osim : str, optional
        OpenSim model (``.osim``): MTU kinematics for trials without MuscleAnalysis files
        (needs ``impbench[opensim]``) and, by default, the initial parameters.
    fs : float, Hz, optional
        Model rate (default: the first calibration trial's torque rate).
    resample : bool
        Interpolate tables, and trials at other rates, onto the model time base.
    emg : dict
        ``{kind: excitation | raw, preset, mvc, offset, tolerance, normalize, delay}``.
    initial : dict
        ``{file}``, ``{preset: ankle}``, ``{osim}`` or ``{ceinms}``, optionally with
        ``osimx``.
    model : dict
        ``{tendon, activation_model, dmoment_arm}``.
    calibrate : dict
        The calibrated-parameter space (``parameters``, ``length_tolerance``,
        ``strength_bounds``, ``shape_bounds``, ``strength_groups``).
    task_period : float, s, optional
        Period of the task cycle: the SDS reference stiffness cuts trials at it, and
        held-out scores are taken per cycle.
    base_dir : str
        Folder relative paths are resolved against (the scenario's, by default).
    """

    name = "dataset"
    task = "calibration"
    #: Reads recordings: the same data whatever the seed (``plants.testing``).
    stochastic = False
    _parameter_constraints = {
        "trials": [_root(Annotated[dict[StrictStr, TrialConfig], Field(min_length=1)],
                         "trials")],
        "calibration": [_root(Annotated[list[StrictStr | UseConfig], Field(min_length=1)],
                              "trial uses")],
        "validation": [_root(list[StrictStr | UseConfig], "trial uses")],
        "dofs": [_root(Annotated[list[StrictStr], Field(min_length=1)], "DoF names")],
        "mtus": [_root(Annotated[list[MTUConfig], Field(min_length=1)], "MTUs")],
        "osim": [None, str],
        "fs": [None, Interval(float, 1, 100_000)],
        "resample": [bool],
        "emg": [None, Schema(EMGConfig)],
        "initial": [None, Schema(InitialConfig)],
        "model": [None, Schema(ModelConfig)],
        "calibrate": [None, Schema(SpaceConfig)],
        "task_period": [None, Interval(float, 0.01, 3600)],
        "base_dir": [str],
    }

    def __init__(
        self, *, trials: dict | None = None, calibration: list | None = None,
        validation: list | None = None, dofs: list | None = None, mtus: list | None = None,
        osim: str | None = None, fs: float | None = None, resample: bool = False,
        emg: dict | None = None, initial: dict | None = None, model: dict | None = None,
        calibrate: dict | None = None, task_period: float | None = None, base_dir: str = ".",
    ) -> None:
        self.trials = trials
        self.calibration = calibration
        self.validation = validation
        self.dofs = dofs
        self.mtus = mtus
        self.osim = osim
        self.fs = fs
        self.resample = resample
        self.emg = emg
        self.initial = initial
        self.model = model
        self.calibrate = calibrate
        self.task_period = task_period
        self.base_dir = base_dir

    # ------------------------------------------------------------------ parsed config
    def _cfg(self) -> dict[str, Any]:
        need = [k for k in ("trials", "calibration", "dofs", "mtus")
                if getattr(self, k) is None]
        if need:
            raise InvalidParameterError(f"the dataset plant needs {', '.join(need)}",
                                        path=(need[0],))
        default_initial = {"osim": self.osim} if self.osim else {"preset": "ankle"}
        return {
            "trials": {k: TrialConfig.model_validate(v) for k, v in self.trials.items()},
            "calibration": [self._use(u) for u in self.calibration],
            "validation": [self._use(u) for u in self.validation or []],
            "mtus": [MTUConfig.model_validate(m) for m in self.mtus],
            "emg": EMGConfig.model_validate(self.emg or {}),
            "initial": InitialConfig.model_validate(self.initial or default_initial),
            "model": ModelConfig.model_validate(self.model or {}),
            "space": SpaceConfig.model_validate(self.calibrate or {}),
        }

    @staticmethod
    def _use(entry: Any) -> UseConfig:
        return UseConfig(trial=entry) if isinstance(entry, str) else UseConfig.model_validate(
            entry)

    def path(self, p: str) -> Path:
        """``p`` resolved against :attr:`base_dir`."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q

    def channel_names(self) -> list[str]:
        """EMG channels in order of first use by the MTUs (the task checks settings against
        them)."""
        return list(dict.fromkeys(str(m["emg"]) for m in (self.mtus or [])))

    def _files(self, name: str, tr: TrialConfig) -> dict:
        """A trial's files (paths), the CEINMS trial XML's merged under the explicit keys."""
        out: dict[str, Any] = {}
        if tr.ceinms is not None:
            try:
                out.update(read_ceinms_trial(self.path(tr.ceinms)))
            except DataError as exc:
                raise InvalidParameterError(str(exc), path=("trials", name, "ceinms")) from None
        for role in ("torque", "lengths", "emg", "angles", "stiffness"):
            if getattr(tr, role) is not None:
                out[role] = self.path(getattr(tr, role))
        if tr.moment_arms is not None:
            out["moment_arms"] = {d: self.path(v) for d, v in tr.moment_arms.items()}
        return out

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        super()._validate()
        cfg = self._cfg()
        muscles = [m.name for m in cfg["mtus"]]
        columns = [m.column or m.name for m in cfg["mtus"]]
        seen: dict[str, int] = {}
        for i, m in enumerate(cfg["mtus"]):
            if m.name in seen:
                raise InvalidParameterError(f"duplicate MTU {m.name!r} (also mtus[{seen[m.name]}])",
                                            path=("mtus", i, "name"))
            seen[m.name] = i
        if len(set(self.dofs)) != len(self.dofs):
            raise InvalidParameterError("DoF names must be distinct", path=("dofs",))
        sp = cfg["space"]
        grouped: dict[str, str] = {}
        for g, members in sp.strength_groups.items():
            if not members:
                raise InvalidParameterError("a group needs at least one MTU",
                                            path=("calibrate", "strength_groups", g))
            for k, m in enumerate(members):
                if m not in seen:
                    raise InvalidParameterError(
                        f"unknown MTU {m!r}; MTUs: {', '.join(muscles)}",
                        path=("calibrate", "strength_groups", g, k))
                if m in grouped:
                    raise InvalidParameterError(f"MTU {m!r} is already in group {grouped[m]!r}",
                                                path=("calibrate", "strength_groups", g, k))
                grouped[m] = g
        lo, hi = sp.strength_bounds
        if not (np.isfinite([lo, hi]).all() and 0 < lo < 1 < hi):
            raise InvalidParameterError(f"need 0 < low < 1 < high (1 = the initial strength); "
                                        f"got {[lo, hi]}", path=("calibrate", "strength_bounds"))
        lo, hi = sp.shape_bounds
        if not -3 <= lo < hi <= 0:
            raise InvalidParameterError(f"need -3 <= low < high <= 0; got {[lo, hi]}",
                                        path=("calibrate", "shape_bounds"))
        if self.osim is not None:
            self._check_osim(("osim",), self.osim, columns)
        self._validate_initial(cfg, muscles, columns)
        em = cfg["emg"]
        for i, p in enumerate(em.mvc):
            self._check_file(("emg", "mvc", i), p, "emg")
        if em.kind == "raw" and not em.mvc:
            raise InvalidParameterError("raw EMG needs MVC trials to normalize by",
                                        path=("emg", "mvc"))
        if em.kind == "raw" and em.normalize != "none":
            raise InvalidParameterError("raw EMG is normalized by its MVC trials; 'normalize' "
                                        "applies to processed excitations", path=("emg",
                                                                                  "normalize"))
        spans = {}
        for name, tr in cfg["trials"].items():
            base = ("trials", name)
            files = self._files(name, tr)
            where = {r: (*base, "ceinms") if getattr(tr, r, None) is None else (*base, r)
                     for r in ("torque", "lengths", "emg", "moment_arms")}
            for role in ("torque", "emg"):
                if role not in files:
                    raise InvalidParameterError(
                        f"no {role} file (give '{role}' or a CEINMS trial XML listing it)",
                        path=base)
            if ("lengths" in files) != ("moment_arms" in files):
                raise InvalidParameterError("give both 'lengths' and 'moment_arms' (or neither, "
                                            "to compute them from the 'osim' model)", path=base)
            if "lengths" not in files:
                if self.osim is None:
                    raise InvalidParameterError(
                        "no MTU length / moment-arm files: give 'lengths' and 'moment_arms' "
                        "(MuscleAnalysis outputs), a CEINMS trial XML, or an OpenSim model "
                        "('osim') to compute them from", path=base)
                if files.get("angles") is None:
                    raise InvalidParameterError(
                        "MTU kinematics from the 'osim' model need the trial's coordinates "
                        "('angles': an IK .mot or a coordinates .sto)", path=base)
            for role in ("torque", "lengths", "emg", "angles", "stiffness"):
                if files.get(role) is not None:
                    self._check_file(where.get(role, (*base, role)), files[role],
                                     "emg" if role == "emg" else "table")
            for d, p in (files.get("moment_arms") or {}).items():
                if d not in self.dofs:
                    raise InvalidParameterError(f"unknown DoF {d!r}; dofs: {self.dofs}",
                                                path=(*where["moment_arms"], d)
                                                if tr.moment_arms is not None
                                                else where["moment_arms"])
                self._check_file(where["moment_arms"], p, "table")
            if "moment_arms" in files:
                for d in self.dofs:
                    if d not in files["moment_arms"]:
                        raise InvalidParameterError(f"no moment-arm file for DoF {d!r}",
                                                    path=where["moment_arms"])
            if str(files["emg"]).lower().endswith(".c3d") and em.kind != "raw":
                raise InvalidParameterError("C3D analog channels are raw EMG; set emg.kind: raw",
                                            path=where["emg"])
        for key in ("calibration", "validation"):
            for i, use in enumerate(cfg[key]):
                if use.trial not in cfg["trials"]:
                    raise InvalidParameterError(
                        f"unknown trial {use.trial!r}; trials: {', '.join(cfg['trials'])}",
                        path=(key, i))
                if use.window is None:
                    continue
                t0, t1 = use.window
                if not (np.isfinite([t0, t1]).all() and t0 < t1):
                    raise InvalidParameterError(f"need finite start < end; got {[t0, t1]}",
                                                path=(key, i, "window"))
                if use.trial not in spans:
                    torque = self._files(use.trial, cfg["trials"][use.trial])["torque"]
                    try:
                        t = read_table(torque).time
                    except DataError as exc:
                        raise InvalidParameterError(str(exc), path=(key, i, "window")) from None
                    dt = float(t[1] - t[0]) if t.size > 1 else 0.0
                    spans[use.trial] = (float(t[0]), float(t[-1]) + dt, dt)  # end exclusive
                a, b, dt = spans[use.trial]
                if t0 < a - 0.5 * dt - 1e-9 or t1 > b + 1e-6 * max(abs(b), 1.0):
                    raise InvalidParameterError(
                        f"window [{t0:g}, {t1:g}] s lies outside trial {use.trial!r} "
                        f"([{a:g}, {b:g}] s)", path=(key, i, "window"))

    def _validate_initial(self, cfg: dict, muscles: list[str], columns: list[str]) -> None:
        ini = cfg["initial"]
        given = [k for k in ("file", "preset", "osim", "ceinms") if getattr(ini, k) is not None]
        if len(given) != 1:
            raise InvalidParameterError("give one of 'file', 'preset', 'osim' or 'ceinms'"
                                        + (f"; got {given}" if given else ""), path=("initial",))
        if ini.preset == "ankle":
            from plants.ankle import MUSCLES

            unknown = [m for m in muscles if m not in MUSCLES]
            if unknown:
                raise InvalidParameterError(
                    f"initial.preset 'ankle' has no MTU(s) {unknown}; it has {list(MUSCLES)}",
                    path=("initial", "preset"))
        if ini.file is not None:
            self._check_file(("initial", "file"), ini.file, "params")
        if ini.osim is not None:
            self._check_osim(("initial", "osim"), ini.osim, columns, dofs=False)
        for key, reader in (("ceinms", read_ceinms_subject), ("osimx", read_osimx)):
            value = getattr(ini, key)
            if value is None:
                continue
            if not self.path(value).is_file():
                raise InvalidParameterError(f"file not found: {self.path(value)}",
                                            path=("initial", key))
            try:
                reader(self.path(value), columns)
            except DataError as exc:
                raise InvalidParameterError(str(exc), path=("initial", key)) from None

    def _check_osim(self, path: tuple, value: str, columns: list[str], dofs: bool = True) -> None:
        """The model file parses and has the MTUs (and DoFs as coordinates)."""
        p = self.path(value)
        if not p.is_file():
            raise InvalidParameterError(f"file not found: {p}", path=path)
        try:
            read_osim_muscles(p, columns)
            coords = osim_coordinates(p)
        except DataError as exc:
            raise InvalidParameterError(str(exc), path=path) from None
        if dofs:
            missing = [d for d in self.dofs if d not in coords]
            if missing:
                raise InvalidParameterError(f"{p}: no coordinate(s) {missing} in the model",
                                            path=path)

    def _check_file(self, path: tuple, value: str | Path, kind: str) -> None:
        """The file exists and looks like data of its kind (without reading it whole)."""
        p = self.path(str(value)) if not isinstance(value, Path) else value
        if not p.is_file():
            raise InvalidParameterError(f"file not found: {p}", path=path)
        with open(p, "rb") as fh:
            head = fh.read(4096)
        suffix = p.suffix.lower()
        if suffix == ".c3d":
            if len(head) < 2 or head[1] != 0x50:
                raise InvalidParameterError(f"{p} is not a C3D file (no C3D signature)",
                                            path=path)
            return
        if b"\x00" in head:
            raise InvalidParameterError(f"{p} is binary, not a text table", path=path)
        try:
            text = head.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not a multi-byte character cut at the end
                raise InvalidParameterError(
                    f"{p} is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset "
                    f"{exc.start})", path=path) from None
            text = head[: exc.start].decode("utf-8")
        low = text.lower()
        if kind == "params":
            if suffix not in (".yaml", ".yml", ".csv"):
                raise InvalidParameterError(f"{p}: MTU parameters must be .yaml/.yml or .csv",
                                            path=path)
            return
        if suffix in (".sto", ".mot"):
            if "endheader" not in low:
                raise InvalidParameterError(f"{p} is not an OpenSim storage file (no "
                                            "'endheader' line)", path=path)
        elif "datacolumns" not in low and "time" not in low:
            raise InvalidParameterError(f"{p} is neither an OpenSim storage file nor a CEINMS "
                                        "table (no header with 'datacolumns' or 'time')",
                                        path=path)

    # ------------------------------------------------------------------ simulate
    def simulate(self, rng: np.random.Generator) -> CalibrationData:
        """Read the trials (``rng`` is not used: recordings are what they are)."""
        from plants.muscle.model import MuscleModel

        self._validate()
        cfg = self._cfg()
        muscles = [m.name for m in cfg["mtus"]]
        columns = [m.column or m.name for m in cfg["mtus"]]
        channels = self.channel_names()
        used = list(dict.fromkeys(u.trial for u in [*cfg["calibration"], *cfg["validation"]]))
        files = {n: self._files(n, cfg["trials"][n]) for n in used}
        em = cfg["emg"]
        notes: list[str] = []
        first = cfg["calibration"][0].trial
        if self.fs is not None:
            fs = float(self.fs)
        else:
            fs = uniform_rate(read_table(files[first]["torque"]))
            notes.append(f"model rate {fs:.6g} Hz: the torque rate of trial {first} (the "
                         "first calibration trial)")
        peaks = None
        if em.kind == "excitation" and em.normalize == "peak":
            per = [channel_peaks(excitation_table(self._spec(n, files[n], em), channels))
                   for n in used]
            peaks = tuple(np.max(np.stack(per), axis=0).tolist())
        sets, index = [], {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name in used:
                spec = self._spec(name, files[name], em, peaks)
                d = read_trial(spec, muscles=muscles, dofs=list(self.dofs), channels=channels,
                               muscle_columns=columns, fs=fs,
                               resample_to_model=bool(self.resample),
                               dmoment_arm=cfg["model"].dmoment_arm)
                meta = {**d.meta}
                if self.task_period is not None:
                    meta["period"] = float(self.task_period)
                notes.extend(meta.pop("notes", []))
                index[name] = len(sets)
                sets.append(dataclasses.replace(d, meta=meta))
        for w in caught:  # the readers' warnings go to the report too, and on to the caller
            if "excitation samples clipped" not in str(w.message):  # noted by the reader
                notes.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

        def windows(uses: list[UseConfig]) -> tuple[TrialWindow, ...]:
            out = []
            for u in uses:
                d = sets[index[u.trial]]
                t = np.asarray(d.meta["time"], dtype=float)
                a, b = 0, t.size
                if u.window is not None:
                    half = 0.5 / d.fs
                    keep = np.flatnonzero((t >= u.window[0] - half) & (t < u.window[1] - half))
                    if keep.size < 2:
                        raise DataError(f"trial {u.trial!r}: window {list(u.window)} s keeps "
                                        f"{keep.size} samples")
                    a, b = int(keep[0]), int(keep[-1]) + 1
                label = u.trial + ("" if u.window is None else
                                   f" {u.window[0]:g}-{u.window[1]:g} s")
                out.append(TrialWindow(index[u.trial], 0, a, b, label))
            return tuple(out)

        cal = windows(cfg["calibration"])
        lengths = [w.stop - w.start for w in cal]
        if len(set(lengths)) > 1:
            notes.append("calibration windows of different lengths ("
                         + ", ".join(f"{w.name}: {n}" for w, n in zip(cal, lengths))
                         + " samples) are fitted together: each is averaged over its own "
                         "samples (padded to the longest, the padding weighs nothing)")
        model = self._model(cfg, muscles, columns, channels, fs, MuscleModel, notes)
        sp = cfg["space"]
        space = {"strength_groups": dict(sp.strength_groups) or None,
                 "length_tolerance": sp.length_tolerance,
                 "strength_bounds": tuple(sp.strength_bounds),
                 "shape_bounds": tuple(sp.shape_bounds),
                 "calibrate_filter": "c1c2" in sp.parameters,
                 "blocks": [f for p in sp.parameters for f in BLOCKS[p]]}
        seg = None if self.task_period is None else round(self.task_period * fs)
        return CalibrationData(
            model=model, sets=tuple(sets), calibration=cal,
            held_out=windows(cfg["validation"]), space=space, segment=seg,
            meta={"plant": "dataset", "trials": used, "fs": fs,
                  "notes": list(dict.fromkeys(notes)),
                  "emg_delay": float(em.delay or 0.0)})

    def _spec(self, name: str, files: dict, em: EMGConfig,
              peaks: tuple | None = None) -> TrialSpec:
        return TrialSpec(
            name=name, torque=files["torque"], emg=files["emg"], lengths=files.get("lengths"),
            moment_arms=files.get("moment_arms"), angles=files.get("angles"),
            stiffness=files.get("stiffness"), emg_kind=em.kind,
            mvc=tuple(self.path(m) for m in em.mvc), emg_preset=em.preset,
            emg_offset=float(em.offset),
            osim=None if self.osim is None else self.path(self.osim),
            emg_tolerance=float(em.tolerance),
            emg_normalize="trial_peak" if em.normalize == "trial_peak" else "none",
            emg_peaks=peaks, emg_delay=None if em.delay is None else float(em.delay))

    def _initial(self, cfg: dict, muscles: list[str], columns: list[str], fs: float,
                 model_cls: Any, notes: list[str]) -> dict[str, np.ndarray]:
        """Initial per-MTU parameters (field -> (M,)) from the configured source."""
        ini, mc = cfg["initial"], cfg["model"]
        if ini.preset is not None:
            preset = model_cls.from_ankle(fs, tendon=mc.tendon,
                                          activation_model=mc.activation_model)
            names = list(preset.muscles)
            unknown = [m for m in muscles if m not in names]
            if unknown:
                raise DataError(f"initial.preset {ini.preset!r} has no MTU(s) {unknown}; it "
                                f"has {names}")
            idx = np.array([names.index(m) for m in muscles])
            vals = {f: np.asarray(v)[idx] for f, v in preset.base_params._asdict().items()}
        elif ini.file is not None:
            vals = read_params_file(self.path(ini.file), muscles, fs)
        elif ini.osim is not None:
            vals = read_osim_muscles(self.path(ini.osim), columns)
            notes.append(f"initial f_max, l_opt, l_ts, pennation and v_max of {len(columns)} "
                         f"MTUs from {Path(ini.osim).name} (as scaled in the model)")
        else:
            subj = read_ceinms_subject(self.path(ini.ceinms), columns)
            vals = dict(subj.params)
            notes.append(f"initial values from the CEINMS subject {Path(ini.ceinms).name} "
                         "(f_max = maxIsometricForce x strengthCoefficient)")
            notes.extend(subj.notes)
        if ini.osimx is not None:
            vals, more = apply_osimx(vals, read_osimx(self.path(ini.osimx), columns))
            notes.extend(more)
        if cfg["emg"].delay is not None:
            vals["delay"] = np.zeros(len(muscles))
            notes.append(f"electromechanical delay {cfg['emg'].delay:g} s applied to the EMG "
                         "data; the model's own delay parameter set to 0")
        return vals

    def _model(self, cfg: dict, muscles: list[str], columns: list[str], channels: list[str],
               fs: float, model_cls: Any, notes: list[str]) -> Any:
        from plants.muscle.params import make_params

        emg_map = np.zeros((len(muscles), len(channels)))
        for i, m in enumerate(cfg["mtus"]):
            emg_map[i, channels.index(m.emg)] = 1.0
        mc = cfg["model"]
        vals = dict(self._initial(cfg, muscles, columns, fs, model_cls, notes))
        try:
            base = make_params(vals.pop("f_max"), vals.pop("l_opt"), vals.pop("l_ts"),
                               vals.pop("phi_opt"), **vals)
        except InvalidParameterError as exc:
            raise DataError(f"initial parameters: {exc}") from None
        groups = dict(cfg["space"].strength_groups) or None
        return model_cls(base, muscles, fs=fs, emg_map=emg_map, tendon=mc.tendon,
                         activation_model=mc.activation_model, strength_groups=groups)
