"""CEINMS XML: subject files (MTU parameters) in and out, trial (input data) files in.

Formats of CEINMS's XML schemas (``cfg/XSD/subject.xsd`` and ``inputData.xsd`` of
CEINMS/CEINMS; Pizzolato et al. 2015).

**Subject** (``<subject>``): ``mtuDefault`` (``emDelay`` s, ``percentageChange``,
``damping``, up to four ``curve`` elements), ``mtuSet`` of ``mtu`` (``name``, optional
``emDelay``, ``c1``, ``c2``, ``shapeFactor``, ``optimalFibreLength`` m, ``pennationAngle``
(``unit="deg"`` or rad), ``tendonSlackLength`` m, optional ``maxContractionVelocity``
(optimal fibre lengths per s) and ``damping``, ``maxIsometricForce`` N,
``strengthCoefficient``), ``dofSet`` (``dof``: ``name``, ``mtuNameSet``) and
``calibrationInfo``. Read as initial values: ``f_max = maxIsometricForce x
strengthCoefficient``; ``c1, c2`` as the bench's recursive-filter coefficients (at the
model's rate); ``shapeFactor`` is the activation shape factor A (a value outside the
bench's (-3, 0) is moved just inside, with a note); ``percentageChange`` and the curves are
not part of the bench's model (noted). Written after calibration
(:func:`write_ceinms_subject`): ``maxIsometricForce`` = initial f_max and
``strengthCoefficient`` = calibrated / initial, so a CEINMS user sees the calibrated
strength where CEINMS keeps it.

**Trial** (``<inputData>``): ``muscleTendonLengthFile``, ``momentArmsFiles`` (one
``momentArmsFile dofName="..."`` per DoF), ``excitationsFile`` and optional
``externalTorquesFile``, paths relative to the XML file's folder; the data files are OpenSim
storage or CEINMS tables (:func:`bench.formats.trial.read_table`).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats.osim import parse_xml

__all__ = ["CeinmsSubject", "read_ceinms_subject", "read_ceinms_trial",
           "write_ceinms_subject"]

#: subject.xsd ``mtu`` element -> MTU parameter field.
_MTU_FIELDS = {
    "emDelay": "delay", "c1": "c1", "c2": "c2", "shapeFactor": "shape",
    "optimalFibreLength": "l_opt", "pennationAngle": "phi_opt", "tendonSlackLength": "l_ts",
    "maxContractionVelocity": "v_max", "damping": "damping", "maxIsometricForce": "f_max",
    "strengthCoefficient": "strength",
}
_REQUIRED = ("c1", "c2", "shapeFactor", "optimalFibreLength", "pennationAngle",
             "tendonSlackLength", "maxIsometricForce", "strengthCoefficient")
_SHAPE_MARGIN = 1e-3


@dataclass(frozen=True)
class CeinmsSubject:
    """A CEINMS subject's MTU parameters for the requested MTUs.

    Attributes
    ----------
    path : str
    params : dict of str to ndarray, shape (M,)
        ``f_max`` N (times the strength coefficient), ``l_opt`` m, ``l_ts`` m, ``phi_opt``
        rad, ``c1``, ``c2``, ``shape``, ``delay`` s, ``damping``, ``v_max`` where given.
    dofs : dict of str to list of str
        DoF -> MTUs spanning it (``dofSet``).
    notes : list of str
        What was adapted (shape factors moved inside (-3, 0), unused elements).
    """

    path: str
    params: dict
    dofs: dict
    notes: list = field(default_factory=list)


def _float(p: Path, where: str, text: str | None) -> float:
    try:
        v = float((text or "").strip())
    except ValueError:
        raise DataError(f"{p}: {where}: {text!r} is not a number") from None
    if not np.isfinite(v):
        raise DataError(f"{p}: {where}: value {text!r} is not finite")
    return v


def read_ceinms_subject(path: str | os.PathLike, muscles: Sequence[str]) -> CeinmsSubject:
    """Read a CEINMS subject file's parameters for ``muscles`` (model order).

    Raises
    ------
    DataError
        Naming the file: not a subject file, an MTU of ``muscles`` missing, a required
        element missing or not a number, a non-positive length or force.
    """
    p = Path(path)
    root = parse_xml(p, ("subject",), "a CEINMS subject file (<subject>)")
    default = root.find("mtuDefault")
    dflt = {}
    if default is not None:
        for tag, fld in (("emDelay", "delay"), ("damping", "damping")):
            if default.find(tag) is not None:
                dflt[fld] = _float(p, f"mtuDefault/{tag}", default.findtext(tag))
    rows: dict[str, dict[str, float]] = {}
    mtu_set = root.find("mtuSet")
    for mtu in (mtu_set if mtu_set is not None else []):
        if mtu.tag != "mtu":
            continue
        name = (mtu.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{p}: an <mtu> without a <name>")
        vals = {}
        for tag, fld in _MTU_FIELDS.items():
            el = mtu.find(tag)
            if el is None:
                continue
            v = _float(p, f"MTU {name!r} <{tag}>", el.text)
            if tag == "pennationAngle" and (el.get("unit") or "rad").strip() == "deg":
                v = float(np.deg2rad(v))
            vals[fld] = v
        rows[name] = vals
    missing = [m for m in muscles if m not in rows]
    if missing:
        raise DataError(f"{p}: no MTU(s) {missing} in <mtuSet>; it has "
                        f"{', '.join(list(rows)[:12])}" + (" ..." if len(rows) > 12 else ""))
    notes = []
    for m in muscles:
        lack = [t for t in _REQUIRED if _MTU_FIELDS[t] not in rows[m]]
        if lack:
            raise DataError(f"{p}: MTU {m!r} has no <{'>, <'.join(lack)}>")
        for fld in ("l_opt", "l_ts", "f_max", "strength"):
            if rows[m][fld] <= 0:
                raise DataError(f"{p}: MTU {m!r}: {fld} = {rows[m][fld]} must be > 0")
    out: dict[str, np.ndarray] = {}
    for fld in ("l_opt", "l_ts", "phi_opt", "c1", "c2", "shape", "delay", "damping", "v_max"):
        vals = [rows[m].get(fld, dflt.get(fld)) for m in muscles]
        if all(v is not None for v in vals):
            out[fld] = np.asarray(vals, dtype=float)
    out["f_max"] = np.asarray([rows[m]["f_max"] * rows[m]["strength"] for m in muscles])
    sh = out["shape"]
    bad = (sh <= -3) | (sh >= 0)
    if bad.any():
        out["shape"] = np.clip(sh, -3 + _SHAPE_MARGIN, -_SHAPE_MARGIN)
        notes.append(f"{p.name}: shape factor(s) of {[m for m, b in zip(muscles, bad) if b]} "
                     f"outside (-3, 0) moved just inside (to {out['shape'][bad].tolist()})")
    for fld in ("c1", "c2"):
        if np.any(np.abs(out[fld]) >= 1):
            raise DataError(f"{p}: {fld} must be in (-1, 1); got {out[fld].tolist()}")
    unused = []
    if default is not None:
        if default.find("percentageChange") is not None:
            unused.append("percentageChange")
        if default.find("curve") is not None:
            unused.append("curve")
    if unused:
        notes.append(f"{p.name}: not part of the bench's model, not used: {', '.join(unused)}")
    dofs = {}
    dof_set = root.find("dofSet")
    for dof in (dof_set if dof_set is not None else []):
        name = (dof.findtext("name") or "").strip()
        if name:
            dofs[name] = (dof.findtext("mtuNameSet") or "").split()
    return CeinmsSubject(str(p), out, dofs, notes)


def read_ceinms_trial(path: str | os.PathLike) -> dict:
    """The data files a CEINMS trial (``<inputData>``) file lists.

    Returns
    -------
    dict
        ``lengths`` (Path), ``moment_arms`` (dict DoF -> Path), ``emg`` (Path) and, when
        given, ``torque`` (Path); relative paths resolved against the XML file's folder.

    Raises
    ------
    DataError
        Naming the file: not an ``inputData`` document, an element missing or given twice,
        a ``momentArmsFile`` without ``dofName``.
    """
    p = Path(path)
    root = parse_xml(p, ("inputData",), "a CEINMS trial file (<inputData>)")

    def resolve(text: str | None, what: str) -> Path:
        t = (text or "").strip()
        if not t:
            raise DataError(f"{p}: <{what}> is empty")
        q = Path(t.replace("\\", "/"))
        return q if q.is_absolute() else p.parent / q

    out: dict = {}
    for tag, role in (("muscleTendonLengthFile", "lengths"), ("excitationsFile", "emg"),
                      ("externalTorquesFile", "torque")):
        found = root.findall(tag)
        if len(found) > 1:
            raise DataError(f"{p}: <{tag}> is given {len(found)} times")
        if found:
            out[role] = resolve(found[0].text, tag)
    for tag in ("muscleTendonLengthFile", "excitationsFile"):
        if root.find(tag) is None:
            raise DataError(f"{p}: no <{tag}>")
    arms = root.findall("momentArmsFiles/momentArmsFile")
    if not arms:
        raise DataError(f"{p}: no <momentArmsFiles>/<momentArmsFile dofName=...>")
    out["moment_arms"] = {}
    for el in arms:
        dof = (el.get("dofName") or "").strip()
        if not dof:
            raise DataError(f"{p}: a <momentArmsFile> without its dofName attribute")
        if dof in out["moment_arms"]:
            raise DataError(f"{p}: two moment-arm files for DoF {dof!r}")
        out["moment_arms"][dof] = resolve(el.text, "momentArmsFile")
    return out


def _sub(parent: ET.Element, tag: str, value: float | str, comment: str | None = None) -> None:
    if comment:
        parent.append(ET.Comment(f" {comment} "))
    el = ET.SubElement(parent, tag)
    el.text = value if isinstance(value, str) else repr(float(value))


def write_ceinms_subject(
    path: str | os.PathLike,
    params: Mapping[str, Mapping[str, float]],
    dofs: Mapping[str, Sequence[str]],
    *,
    initial_f_max: Mapping[str, float] | None = None,
    start_subject: str = "",
    fs: float | None = None,
) -> str:
    """A CEINMS subject file of calibrated parameters (``subject.xsd``), as text.

    Parameters
    ----------
    path : path-like
        Written atomically when given (``None``: only return the text).
    params : dict
        MTU name -> its fields (``f_max`` N, ``l_opt`` m, ``l_ts`` m, ``phi_opt`` rad,
        ``c1``, ``c2``, ``shape``, optional ``delay`` s, ``damping``, ``v_max``).
    dofs : dict
        DoF -> MTUs spanning it.
    initial_f_max : dict, optional
        MTU -> initial f_max (N): written as ``maxIsometricForce`` with
        ``strengthCoefficient`` = calibrated / initial (default: coefficient 1).
    start_subject : str
        Recorded as ``calibrationInfo/calibrated/startSubjectFile``.
    fs : float, Hz, optional
        The model rate, recorded in a comment (c1 and c2 are per-sample coefficients).
    """
    root = ET.Element("subject")
    root.append(ET.Comment(" Calibrated by impbench. Hill-type curves are the bench's own "
                           "(analytic), not CEINMS's curve points; c1, c2 are recursive-filter "
                           "coefficients per sample"
                           + (f" at {fs:g} Hz" if fs else "") + ". "))
    dflt = ET.SubElement(root, "mtuDefault")
    first = next(iter(params.values()), {})
    _sub(dflt, "emDelay", float(first.get("delay", 0.0)))
    _sub(dflt, "percentageChange", 0.0, "the bench's model has no activation-dependent "
                                        "optimal fibre length")
    _sub(dflt, "damping", float(first.get("damping", 0.1)))
    mtu_set = ET.SubElement(root, "mtuSet")
    for name, v in params.items():
        mtu = ET.SubElement(mtu_set, "mtu")
        _sub(mtu, "name", str(name))
        if "delay" in v:
            _sub(mtu, "emDelay", v["delay"])
        _sub(mtu, "c1", v.get("c1", -0.5))
        _sub(mtu, "c2", v.get("c2", -0.5))
        _sub(mtu, "shapeFactor", v["shape"])
        _sub(mtu, "optimalFibreLength", v["l_opt"])
        _sub(mtu, "pennationAngle", v["phi_opt"])
        _sub(mtu, "tendonSlackLength", v["l_ts"])
        if "v_max" in v:
            _sub(mtu, "maxContractionVelocity", v["v_max"])
        if "damping" in v:
            _sub(mtu, "damping", v["damping"])
        f0 = float((initial_f_max or {}).get(name, v["f_max"]))
        _sub(mtu, "maxIsometricForce", f0)
        _sub(mtu, "strengthCoefficient", float(v["f_max"]) / f0)
    dof_set = ET.SubElement(root, "dofSet")
    for d, names in dofs.items():
        dof = ET.SubElement(dof_set, "dof")
        _sub(dof, "name", str(d))
        _sub(dof, "mtuNameSet", " ".join(names))
    info = ET.SubElement(ET.SubElement(root, "calibrationInfo"), "calibrated")
    _sub(info, "startSubjectFile", start_subject)
    ET.SubElement(info, "calibrationSequence")
    ET.indent(root, space="    ")
    text = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(
        root, encoding="unicode") + "\n"
    if path is not None:
        q = Path(path)
        tmp = q.with_name(q.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, q)
    return text
