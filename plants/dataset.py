"""A user's recorded trials as a calibration plant: calibrating one's own data is a scenario.

.. code-block:: yaml

    plant:
      name: dataset
      params:
        dofs: [ankle_angle_r]
        mtus:                                 # model order; column = name in the files
          - {name: soleus, column: soleus_r, emg: SOL}
          - {name: per_brev, column: per_brev_r, emg: PL}   # a channel may drive several MTUs
        fs: 128                               # model rate, Hz (default: the torque files')
        resample: false                       # interpolate tables onto the model time base
        emg: {kind: excitation}               # or {kind: raw, preset: "000", mvc: [mvc.c3d]}
        initial: {file: scaled.yaml}          # YAML/CSV per MTU, or {preset: ankle}
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
        calibration: [{trial: t1, window: [0.0, 1.664]}]
        validation: [t2]

Relative paths are resolved against the scenario's folder (``base_dir``, set by the scenario
loader). Validation checks, before anything runs: every file exists, lies where it is said
to and looks like data of its kind (OpenSim storage header, CEINMS table header, C3D
signature); MTU, channel, DoF and trial names; every window lies inside its trial's time
span; strength groups and bounds. The plant's draw ignores the generator: it reads the
files. Stiffness files give the ``recorded`` reference; ``stiffness_reference: sds`` estimates
it from the trials (with ``task_period``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr

from bench.base import Plant
from bench.errors import DataError, InvalidParameterError
from bench.formats.mtu_params import read_params_file
from bench.formats.trial import TrialSpec, read_table, read_trial
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


class InitialConfig(_Strict):
    """Initial model parameters: a YAML/CSV file, or a preset of the model."""

    file: StrictStr | None = None
    preset: Literal["ankle"] | None = None


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
    """The files of one trial."""

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


def _root(tp: Any, name: str) -> Schema:
    """A :class:`~bench.params.Schema` for a list or mapping parameter."""

    class _R(RootModel[tp]):  # type: ignore[valid-type]
        pass

    _R.__name__ = name
    return Schema(_R)


class DatasetPlant(Plant):
    """A user's recorded trials (OpenSim storage, CEINMS tables, C3D) for calibration.

    Parameters
    ----------
    trials : dict
        Trial name -> its files (``torque``, ``lengths``, ``moment_arms`` per DoF, ``emg``,
        optional ``angles`` and ``stiffness``).
    calibration : list
        Trials (names, or ``{trial, window: [t0, t1]}`` in s) the calibrators fit.
    validation : list
        Trials scored blindly after calibration.
    dofs : list of str
        DoF (coordinate) names as they appear in the files.
    mtus : list of dict
        ``{name, column, emg}`` per MTU, in model order.
    fs : float, Hz, optional
        Model rate (default: the torque files').
    resample : bool
        Interpolate tables onto the model time base.
    emg : dict
        ``{kind: excitation | raw, preset, mvc, offset}``.
    initial : dict
        ``{file: path}`` (per-MTU YAML/CSV) or ``{preset: ankle}``.
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
        "fs": [None, Interval(float, 1, 100_000)],
        "resample": [bool],
        "emg": [Schema(EMGConfig)],
        "initial": [Schema(InitialConfig)],
        "model": [Schema(ModelConfig)],
        "calibrate": [Schema(SpaceConfig)],
        "task_period": [None, Interval(float, 0.01, 3600)],
        "base_dir": [str],
    }

    def __init__(
        self, *, trials: dict | None = None, calibration: list | None = None,
        validation: list | None = None, dofs: list | None = None, mtus: list | None = None,
        fs: float | None = None, resample: bool = False, emg: dict | None = None,
        initial: dict | None = None, model: dict | None = None, calibrate: dict | None = None,
        task_period: float | None = None, base_dir: str = ".",
    ) -> None:
        self.trials = trials
        self.calibration = calibration
        self.validation = validation
        self.dofs = dofs
        self.mtus = mtus
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
        return {
            "trials": {k: TrialConfig.model_validate(v) for k, v in self.trials.items()},
            "calibration": [self._use(u) for u in self.calibration],
            "validation": [self._use(u) for u in self.validation or []],
            "mtus": [MTUConfig.model_validate(m) for m in self.mtus],
            "emg": EMGConfig.model_validate(self.emg or {}),
            "initial": InitialConfig.model_validate(self.initial or {"preset": "ankle"}),
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

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        super()._validate()
        cfg = self._cfg()
        muscles = [m.name for m in cfg["mtus"]]
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
        ini = cfg["initial"]
        if (ini.file is None) == (ini.preset is None):
            raise InvalidParameterError("give either 'file' or 'preset'", path=("initial",))
        if ini.preset == "ankle":
            from plants.ankle import MUSCLES

            unknown = [m for m in muscles if m not in MUSCLES]
            if unknown:
                raise InvalidParameterError(
                    f"initial.preset 'ankle' has no MTU(s) {unknown}; it has {list(MUSCLES)}",
                    path=("initial", "preset"))
        if ini.file is not None:
            self._check_file(("initial", "file"), ini.file, "params")
        for i, p in enumerate(cfg["emg"].mvc):
            self._check_file(("emg", "mvc", i), p, "emg")
        if cfg["emg"].kind == "raw" and not cfg["emg"].mvc:
            raise InvalidParameterError("raw EMG needs MVC trials to normalize by",
                                        path=("emg", "mvc"))
        spans = {}
        for name, tr in cfg["trials"].items():
            base = ("trials", name)
            for role in ("torque", "lengths", "emg", "angles", "stiffness"):
                if getattr(tr, role) is not None:
                    self._check_file((*base, role), getattr(tr, role),
                                     "emg" if role == "emg" else "table")
            for d, p in tr.moment_arms.items():
                if d not in self.dofs:
                    raise InvalidParameterError(f"unknown DoF; dofs: {self.dofs}",
                                                path=(*base, "moment_arms", d))
                self._check_file((*base, "moment_arms", d), p, "table")
            for d in self.dofs:
                if d not in tr.moment_arms:
                    raise InvalidParameterError(f"no moment-arm file for DoF {d!r}",
                                                path=(*base, "moment_arms"))
            if tr.emg.lower().endswith(".c3d") and cfg["emg"].kind != "raw":
                raise InvalidParameterError("C3D analog channels are raw EMG; set emg.kind: raw",
                                            path=(*base, "emg"))
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
                    t = read_table(self.path(cfg["trials"][use.trial].torque)).time
                    dt = float(t[1] - t[0]) if t.size > 1 else 0.0
                    spans[use.trial] = (float(t[0]), float(t[-1]) + dt)  # end exclusive
                a, b = spans[use.trial]
                if t0 < a - 1e-9 or t1 > b + 1e-6 * max(abs(b), 1.0):
                    raise InvalidParameterError(
                        f"window [{t0:g}, {t1:g}] s lies outside trial {use.trial!r} "
                        f"([{a:g}, {b:g}] s)", path=(key, i, "window"))

    def _check_file(self, path: tuple, value: str, kind: str) -> None:
        """The file exists and looks like data of its kind (without reading it whole)."""
        p = self.path(value)
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
        from plants.muscle.params import make_params

        self._validate()
        cfg = self._cfg()
        muscles = [m.name for m in cfg["mtus"]]
        channels = self.channel_names()
        used = list(dict.fromkeys(u.trial for u in [*cfg["calibration"], *cfg["validation"]]))
        sets, index = [], {}
        for name in used:
            tr = cfg["trials"][name]
            spec = TrialSpec(
                name=name, torque=self.path(tr.torque), lengths=self.path(tr.lengths),
                moment_arms={d: self.path(p) for d, p in tr.moment_arms.items()},
                emg=self.path(tr.emg),
                angles=None if tr.angles is None else self.path(tr.angles),
                stiffness=None if tr.stiffness is None else self.path(tr.stiffness),
                emg_kind=cfg["emg"].kind, mvc=tuple(self.path(m) for m in cfg["emg"].mvc),
                emg_preset=cfg["emg"].preset, emg_offset=float(cfg["emg"].offset))
            d = read_trial(spec, muscles=muscles, dofs=list(self.dofs), channels=channels,
                           muscle_columns=[m.column or m.name for m in cfg["mtus"]],
                           fs=self.fs, resample_to_model=bool(self.resample),
                           dmoment_arm=cfg["model"].dmoment_arm)
            if self.task_period is not None:
                d = dataclasses.replace(d, meta={**d.meta, "period": float(self.task_period)})
            index[name] = len(sets)
            sets.append(d)
        rates = {n: sets[i].fs for n, i in index.items()}
        fs = next(iter(rates.values()))
        if any(abs(r - fs) > 1e-6 * fs for r in rates.values()):
            raise DataError(f"trials are sampled at different rates {rates}; set 'fs' and "
                            "'resample: true' to bring them onto one model time base")

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

        model = self._model(cfg, muscles, channels, fs, make_params, MuscleModel)
        sp = cfg["space"]
        space = {"strength_groups": dict(sp.strength_groups) or None,
                 "length_tolerance": sp.length_tolerance,
                 "strength_bounds": tuple(sp.strength_bounds),
                 "shape_bounds": tuple(sp.shape_bounds),
                 "calibrate_filter": "c1c2" in sp.parameters,
                 "blocks": [f for p in sp.parameters for f in BLOCKS[p]]}
        seg = None if self.task_period is None else round(self.task_period * fs)
        return CalibrationData(
            model=model, sets=tuple(sets), calibration=windows(cfg["calibration"]),
            held_out=windows(cfg["validation"]), space=space, segment=seg,
            meta={"plant": "dataset", "trials": used, "fs": fs})

    def _model(self, cfg: dict, muscles: list[str], channels: list[str], fs: float,
               make_params: Any, model_cls: Any) -> Any:
        emg_map = np.zeros((len(muscles), len(channels)))
        for i, m in enumerate(cfg["mtus"]):
            emg_map[i, channels.index(m.emg)] = 1.0
        mc = cfg["model"]
        ini = cfg["initial"]
        if ini.preset is not None:
            import jax.numpy as jnp

            preset = model_cls.from_ankle(fs, tendon=mc.tendon,
                                          activation_model=mc.activation_model)
            names = list(preset.muscles)
            unknown = [m for m in muscles if m not in names]
            if unknown:
                raise DataError(f"initial.preset {ini.preset!r} has no MTU(s) {unknown}; it "
                                f"has {names}")
            idx = np.array([names.index(m) for m in muscles])
            base = type(preset.base_params)(*(jnp.asarray(np.asarray(f)[idx])
                                              for f in preset.base_params))
        else:
            vals = read_params_file(self.path(ini.file), muscles, fs)
            base = make_params(vals.pop("f_max"), vals.pop("l_opt"), vals.pop("l_ts"),
                               vals.pop("phi_opt"), **vals)
        groups = dict(cfg["space"].strength_groups) or None
        return model_cls(base, muscles, fs=fs, emg_map=emg_map, tendon=mc.tendon,
                         activation_model=mc.activation_model, strength_groups=groups)
