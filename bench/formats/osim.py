"""OpenSim models (``.osim``): muscle parameters, and MTU kinematics through OpenSim itself.

Two things are taken from a model file:

* **muscle parameters** (:func:`read_osim_muscles`): ``max_isometric_force`` (N),
  ``optimal_fiber_length`` (m), ``tendon_slack_length`` (m), ``pennation_angle_at_optimal``
  (rad) and ``max_contraction_velocity`` (optimal fibre lengths per s) of any muscle class
  (``Millard2012EquilibriumMuscle``, ``Thelen2003Muscle``, ``DeGrooteFregly2016Muscle`` ...),
  read from the XML as written: a model scaled by OpenSim's Scale tool already holds its
  scaled lengths. Properties left out of a muscle take OpenSim's defaults (pennation 0,
  maximum contraction velocity 10). No OpenSim installation is needed.
* **MTU kinematics** (:func:`osim_kinematics`): MTU lengths, moment arms and the moment arms'
  derivatives with respect to each DoF over a recorded motion (coordinates or IK file),
  computed by OpenSim's Python package (``pip install 'impbench[opensim]'``): for every
  frame all coordinates in the file are set, the MTU length is the muscle's path length,
  the moment arm is OpenSim's ``computeMomentArm`` (its moment-arm solver, which handles
  coupled coordinates) and ``dr/dtheta`` (the torque-stiffness EMG model study's Eq. 7) is
  the central difference of ``computeMomentArm`` over +-``step`` rad of the DoF.

XML is parsed with the standard library after refusing document-type declarations (no
entities, hence no entity expansion) and files above 256 MiB.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.formats._table import Table

__all__ = [
    "MUSCLE_PROPERTIES",
    "OPENSIM_EXTRA",
    "osim_coordinates",
    "osim_kinematics",
    "parse_xml",
    "read_osim_muscles",
    "require_opensim",
]

#: How to install the optional OpenSim dependency (named in every message that needs it).
OPENSIM_EXTRA = "pip install 'impbench[opensim]'"

#: OpenSim muscle property -> (MTU parameter field, OpenSim's default or None if required).
MUSCLE_PROPERTIES = {
    "max_isometric_force": ("f_max", None),
    "optimal_fiber_length": ("l_opt", None),
    "tendon_slack_length": ("l_ts", None),
    "pennation_angle_at_optimal": ("phi_opt", 0.0),
    "max_contraction_velocity": ("v_max", 10.0),
}

_MAX_XML_BYTES = 256 * 2**20


def parse_xml(path: str | os.PathLike, root_tags: Sequence[str], what: str) -> ET.Element:
    """Parse an XML file safely and check its root element.

    Parameters
    ----------
    path : path-like
    root_tags : list of str
        Accepted root element names.
    what : str
        What the file should be (for messages: "an OpenSim model").

    Raises
    ------
    DataError
        Naming the file (and line/column of a syntax error): unreadable, too large, a
        document-type declaration, malformed XML, another root element.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > _MAX_XML_BYTES:
            raise DataError(f"{p}: file is larger than {_MAX_XML_BYTES >> 20} MiB")
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror or exc}") from None
    head = raw[:65536].lower()
    if b"<!doctype" in head or b"<!entity" in raw.lower():
        raise DataError(f"{p}: XML with a document-type declaration or entities is not "
                        "accepted")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (1, 0))
        msg = str(exc).split(":")[0]
        raise DataError(f"{p}:{line}:{col + 1}: not well-formed XML ({msg}); expected "
                        f"{what}") from None
    if root.tag not in root_tags:
        raise DataError(f"{p}: root element <{root.tag}>; expected {what} "
                        f"(<{'> or <'.join(root_tags)}>)")
    return root


@functools.lru_cache(maxsize=8)
def _model_index(path: str, mtime_ns: int, size: int) -> tuple[dict, tuple]:
    """Muscle property text and coordinate names of a model file (cached by file state)."""
    root = parse_xml(path, ("OpenSimDocument",), "an OpenSim model (.osim)")
    model = root.find("Model")
    if model is None:
        raise DataError(f"{path}: no <Model> element; not an OpenSim model file")
    muscles: dict[str, dict[str, str]] = {}
    for fs in model.iter("ForceSet"):
        for el in fs.iter():
            name = el.get("name")
            if name is None or el.find("optimal_fiber_length") is None:
                continue
            if el.find("max_isometric_force") is None:
                continue
            props = {k: (el.findtext(k) or "").strip() for k in MUSCLE_PROPERTIES
                     if el.find(k) is not None}
            props["class"] = el.tag
            muscles[name] = props
    coords = tuple(c.get("name") for c in model.iter("Coordinate") if c.get("name"))
    return muscles, coords


def _index(path: str | os.PathLike) -> tuple[dict, tuple]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return _model_index(str(p), st.st_mtime_ns, st.st_size)


def osim_coordinates(path: str | os.PathLike) -> list[str]:
    """Names of the model's coordinates (DoFs), in file order."""
    return list(_index(path)[1])


def read_osim_muscles(path: str | os.PathLike, muscles: Sequence[str]) -> dict[str, np.ndarray]:
    """Muscle parameters of ``muscles`` from an OpenSim model file.

    Parameters
    ----------
    path : path-like
        ``.osim`` model (OpenSim 3 or 4).
    muscles : list of str, length M
        Muscle names as in the model's ``ForceSet``.

    Returns
    -------
    dict of str to ndarray, shape (M,)
        ``f_max`` N, ``l_opt`` m, ``l_ts`` m, ``phi_opt`` rad, ``v_max`` l_opt/s.

    Raises
    ------
    DataError
        A muscle the model does not have (listing some it has), a property that is not a
        positive finite number.
    """
    index, _ = _index(path)
    missing = [m for m in muscles if m not in index]
    if missing:
        have = sorted(index)
        raise DataError(f"{path}: no muscle(s) {missing} in the model's ForceSet; it has "
                        f"{len(have)} muscles: {', '.join(have[:12])}"
                        + (" ..." if len(have) > 12 else ""))
    out: dict[str, list[float]] = {f: [] for f, _ in MUSCLE_PROPERTIES.values()}
    for m in muscles:
        props = index[m]
        for key, (field, default) in MUSCLE_PROPERTIES.items():
            text = props.get(key)
            if text is None or text == "":
                if default is None:
                    raise DataError(f"{path}: muscle {m!r} has no <{key}>")
                out[field].append(default)
                continue
            try:
                v = float(text)
            except ValueError:
                raise DataError(f"{path}: muscle {m!r}: <{key}> {text!r} is not a "
                                "number") from None
            if not np.isfinite(v) or (v <= 0 and field != "phi_opt") or v < 0:
                raise DataError(f"{path}: muscle {m!r}: <{key}> = {v} is out of range")
            out[field].append(v)
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def require_opensim():
    """Import OpenSim's Python package, or raise a :class:`DataError` naming the extra."""
    try:
        import opensim
    except ImportError:
        raise DataError("computing MTU lengths and moment arms from an OpenSim model needs "
                        f"OpenSim's Python package: {OPENSIM_EXTRA} (or give the trials' "
                        "MuscleAnalysis files as 'lengths' and 'moment_arms')") from None
    return opensim


def osim_kinematics(
    model_path: str | os.PathLike,
    coordinates: Table,
    muscles: Sequence[str],
    dofs: Sequence[str],
    *,
    in_degrees: bool = False,
    step: float = 1e-3,
) -> dict[str, np.ndarray]:
    """MTU lengths, moment arms and their DoF derivatives over a recorded motion.

    Parameters
    ----------
    model_path : path-like
        ``.osim`` model.
    coordinates : Table
        Coordinate values per frame (``coordinates.sto``, IK ``.mot``), columns named by
        coordinate (state paths already mapped, :func:`bench.formats.opensim.read_storage`);
        read without a degree conversion.
    muscles : list of str, length M
    dofs : list of str, length D
        Coordinates the moment arms are taken about.
    in_degrees : bool
        The file is in degrees: rotational coordinates (by the model's motion types) are
        converted to radians.
    step : float, rad
        Half-width of the central difference of the moment arm.

    Returns
    -------
    dict
        ``time`` (T,) s, ``lmt`` (T, M) m, ``moment_arm`` (T, M, D) m, ``dmoment_arm``
        (T, M, D) m/rad, ``angle`` (T, D) rad, ``set`` (list of the file's columns that
        are model coordinates), ``ignored`` (the other columns).

    Raises
    ------
    DataError
        OpenSim missing (naming the extra), a model OpenSim cannot load, a muscle or DoF
        the model does not have.
    """
    osim = require_opensim()
    osim.Logger.setLevelString("error")
    p = Path(model_path)
    try:
        model = osim.Model(str(p))
        state = model.initSystem()
    except Exception as exc:  # OpenSim raises its own RuntimeError subclasses
        raise DataError(f"{p}: OpenSim cannot load the model: "
                        f"{str(exc).strip().splitlines()[0][:300]}") from None
    cs = model.getCoordinateSet()
    ms = model.getMuscles()
    have_m = {ms.get(i).getName() for i in range(ms.getSize())}
    missing = [m for m in muscles if m not in have_m]
    if missing:
        raise DataError(f"{p}: no muscle(s) {missing} in the model")
    for d in dofs:
        if not cs.contains(d):
            raise DataError(f"{p}: no coordinate {d!r} in the model")
    used = [c for c in coordinates.columns if cs.contains(c)]
    ignored = [c for c in coordinates.columns if not cs.contains(c)]
    for d in dofs:
        if d not in used:
            raise DataError(f"{coordinates.path}: no column for coordinate {d!r} (the model's "
                            f"DoF); the file has: {', '.join(coordinates.columns[:12])}")
    cols = [coordinates.columns.index(c) for c in used]
    values = np.asarray(coordinates.data[:, cols], dtype=float).copy()
    objs = [cs.get(c) for c in used]
    if in_degrees:
        rot = np.array([o.getMotionType() != 2 for o in objs])  # 2: translational
        values[:, rot] = np.deg2rad(values[:, rot])
    coupled = set()
    cons = model.getConstraintSet()
    for i in range(cons.getSize()):
        c = osim.CoordinateCouplerConstraint.safeDownCast(cons.get(i))
        if c is not None:
            names = c.getIndependentCoordinateNames()
            coupled.update(names.get(k) for k in range(names.getSize()))
    mus = [ms.get(m) for m in muscles]
    dof_objs = [cs.get(d) for d in dofs]
    T, M, D = values.shape[0], len(muscles), len(dofs)
    lmt = np.empty((T, M))
    r = np.empty((T, M, D))
    dr = np.empty((T, M, D))
    for k in range(T):
        for o, v in zip(objs, values[k]):
            o.setValue(state, float(v), False)
        model.realizePosition(state)
        for i, mu in enumerate(mus):
            lmt[k, i] = mu.getLength(state)
        for j, c in enumerate(dof_objs):
            enforce = c.getName() in coupled
            for i, mu in enumerate(mus):
                r[k, i, j] = mu.computeMomentArm(state, c)
            q = c.getValue(state)
            plus, minus = np.empty(M), np.empty(M)
            for sign, buf in ((1.0, plus), (-1.0, minus)):
                c.setValue(state, q + sign * step, enforce)
                model.realizePosition(state)
                for i, mu in enumerate(mus):
                    buf[i] = mu.computeMomentArm(state, c)
            dr[k, :, j] = (plus - minus) / (2.0 * step)
            c.setValue(state, q, enforce)
            if enforce:
                for o, v in zip(objs, values[k]):
                    o.setValue(state, float(v), False)
            model.realizePosition(state)
    angle = values[:, [used.index(d) for d in dofs]]
    return {"time": np.asarray(coordinates.time, float), "lmt": lmt, "moment_arm": r,
            "dmoment_arm": dr, "angle": angle, "set": used, "ignored": ignored}
