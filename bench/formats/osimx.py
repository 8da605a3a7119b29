"""NMSM Pipeline ``.osimx`` files: personalized muscle parameters as initial values.

The NMSM Pipeline (Rapid Control and Neuromechanics Lab; ``rcnl-org/nmsm-core``) writes the
results of its Muscle-Tendon Personalization next to an OpenSim model, e.g.::

    <NMSMPipelineDocument Version="0.1.0">
      <OsimxModel name="optModel">
        <associated_osim_model>model.osim</associated_osim_model>
        <RCNLMuscleSet><objects>
          <RCNLMuscle name="soleus_l">
            <optimal_fiber_length>0.0419</optimal_fiber_length>
            <tendon_slack_length>0.2651</tendon_slack_length>
            ...

Older files have an ``OpenSimDocument`` root, an ``MTPMuscleSet`` or ``NCPMuscleSet``, the
spelling ``slack_tendon_length``, or scale factors of the model's values
(``optimal_fiber_length_scale_factor``, ``tendon_slack_length_scale_factor``); all are read.

Used: ``optimal_fiber_length`` (m), ``tendon_slack_length`` (m), ``max_isometric_force`` (N)
and the two scale factors. Not used, and reported as such: ``electromechanical_delay``,
``activation_time_constant``, ``activation_nonlinearity_constant`` and ``emg_scale_factor``
(the pipeline's activation model is not the bench's, and the delay's unit differs between
pipeline versions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats.osim import parse_xml

__all__ = ["OsimxValues", "apply_osimx", "read_osimx"]

#: Element -> (MTU field, "value" or "scale").
_USED = {
    "optimal_fiber_length": ("l_opt", "value"),
    "tendon_slack_length": ("l_ts", "value"),
    "slack_tendon_length": ("l_ts", "value"),
    "max_isometric_force": ("f_max", "value"),
    "optimal_fiber_length_scale_factor": ("l_opt", "scale"),
    "tendon_slack_length_scale_factor": ("l_ts", "scale"),
}


@dataclass(frozen=True)
class OsimxValues:
    """Personalized values of the requested MTUs.

    Attributes
    ----------
    path : str
    values : dict of str to ndarray, shape (M,)
        ``l_opt``/``l_ts`` (m), ``f_max`` (N); NaN where the file gives none for an MTU.
    scales : dict of str to ndarray, shape (M,)
        Scale factors of the model's ``l_opt``/``l_ts``; NaN where none.
    found : list of str
        Requested MTUs present in the file.
    ignored : list of str
        Element names present but not used.
    model : str
        ``associated_osim_model`` as written (may be empty).
    """

    path: str
    values: dict
    scales: dict
    found: list
    ignored: list = field(default_factory=list)
    model: str = ""


def read_osimx(path: str | os.PathLike, muscles: Sequence[str]) -> OsimxValues:
    """Read an ``.osimx`` file's muscle parameters for ``muscles``.

    Raises
    ------
    DataError
        Naming the file: not XML / not an osimx document, none of ``muscles`` in it, a value
        that is not a positive finite number.
    """
    p = Path(path)
    root = parse_xml(p, ("NMSMPipelineDocument", "OpenSimDocument"), "an NMSM Pipeline "
                     ".osimx file")
    model = root.find("OsimxModel")
    if model is None:
        raise DataError(f"{p}: no <OsimxModel> element; not an .osimx file")
    per: dict[str, dict[str, tuple[str, float]]] = {}
    ignored: set[str] = set()
    for el in model.iter("RCNLMuscle"):
        name = el.get("name")
        if not name:
            continue
        vals = {}
        for child in el:
            if child.tag in _USED:
                text = (child.text or "").strip()
                try:
                    v = float(text)
                except ValueError:
                    raise DataError(f"{p}: muscle {name!r}: <{child.tag}> {text!r} is not a "
                                    "number") from None
                if not (np.isfinite(v) and v > 0):
                    raise DataError(f"{p}: muscle {name!r}: <{child.tag}> = {v} must be a "
                                    "positive finite number")
                vals[child.tag] = (_USED[child.tag], v)
            elif isinstance(child.tag, str):
                ignored.add(child.tag)
        per[name] = vals
    found = [m for m in muscles if m in per]
    if not found:
        have = sorted(per)
        raise DataError(f"{p}: none of the MTUs {list(muscles)} is in the file; it has "
                        f"{len(have)}: {', '.join(have[:12])}" + (" ..." if len(have) > 12
                                                                  else ""))
    M = len(muscles)
    values = {f: np.full(M, np.nan) for f in ("l_opt", "l_ts", "f_max")}
    scales = {f: np.full(M, np.nan) for f in ("l_opt", "l_ts")}
    for i, m in enumerate(muscles):
        for (fld, kind), v in per.get(m, {}).values():
            (values if kind == "value" else scales)[fld][i] = v
    return OsimxValues(str(p), values, scales, found, sorted(ignored),
                       (model.findtext("associated_osim_model") or "").strip())


def apply_osimx(base: Mapping[str, np.ndarray], ox: OsimxValues) -> tuple[dict, list[str]]:
    """``base`` per-MTU parameters with the osimx values put in (values replace, scale
    factors multiply).

    Returns
    -------
    params : dict of str to ndarray, shape (M,)
    notes : list of str
        What was replaced, for the report.
    """
    out = {k: np.asarray(v, dtype=float).copy() for k, v in base.items()}
    changed = []
    for fld, v in ox.values.items():
        ok = np.isfinite(v)
        if ok.any():
            out[fld][ok] = v[ok]
            changed.append(f"{fld} ({int(ok.sum())} MTUs)")
    for fld, s in ox.scales.items():
        ok = np.isfinite(s)
        if ok.any():
            out[fld][ok] = out[fld][ok] * s[ok]
            changed.append(f"{fld} scaled ({int(ok.sum())} MTUs)")
    note = (f"initial values from {Path(ox.path).name}: "
            + (", ".join(changed) if changed else "no usable values")
            + (f"; not used: {', '.join(ox.ignored)}" if ox.ignored else ""))
    return out, [note]
