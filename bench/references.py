"""The source papers the bench implements and reproduces, as the reports cite them.

Each entry is given as far as our copy of the paper states it (the copies are text
extractions; where a title page is missing, the entry says so rather than guess). Tables
and notes cite a paper by its short ``key``; every report ends with the full entries of the
papers it cited (:meth:`bench.reportkit.Report.cite`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REFERENCES", "Reference", "humanize", "keys_in", "reference_lines"]


@dataclass(frozen=True)
class Reference:
    """One source paper.

    Attributes
    ----------
    key : str
        Short name used in tables ("Kraaijevanger 2018").
    text : str
        The full reference.
    uses : str
        What the bench takes from it.
    """

    key: str
    text: str
    uses: str


REFERENCES: dict[str, Reference] = {
    r.key: r for r in (
        Reference(
            "Kraaijevanger 2018",
            "S. Kraaijevanger, *Comparison of time-varying system identification methods to "
            "assess joint impedance*, MSc thesis, Delft University of Technology, 2018 "
            "(supervisors A.C. Schouten, W. Mugge, M. van de Ruit).",
            "the time-varying mass-spring-damper, the FGWN/PRBS/multisine perturbations, the "
            "seven estimators (eIRF, bIRF, SDS, ESM, mESM, LPV, KBR), the 240-cell simulation "
            "grid (Table II) and its results (Table III), the lever rig (Table IV/V)",
        ),
        Reference(
            "Torque-stiffness EMG model study",
            "An EMG-driven musculoskeletal modelling framework calibrated to match reference "
            "ankle joint torque and stiffness simultaneously through a multi-term objective "
            "function; journal article, experiments approved by the University of Twente "
            "(title page, authors and year are not in our copy of the paper).",
            "the Hill-type MTU force and stiffness, the torque + stiffness objective with "
            "alpha/beta weights, the ankle protocol, Table 1 and the three tests",
        ),
        Reference(
            "Hambly et al.",
            "M.J. Hambly, M.T.O. Worsey, D.G. Lloyd, C. Pizzolato, \"Improving Calibration of "
            "EMG-Informed Neuromusculoskeletal Models Through Differentiable Physics and Muscle "
            "Synergies\", IEEE journal article (year not stated in our copy; it cites work of "
            "2024).",
            "the differentiable Hill-type model calibrated with AdamW, the synergy-hybrid "
            "calibration and the EMG-channel removal study (Fig. 5)",
        ),
        Reference(
            "Sanderink et al.",
            "P. Sanderink, Y. Zhou, S. Luo, C. Fang, \"Parameter Identification of a "
            "Differentiable Human Arm Musculoskeletal Model without Deep Muscle EMG "
            "Reconstruction\", IEEE conference paper (year not stated in our copy; it cites "
            "work of 2023).",
            "the 5-DoF, 16-muscle arm, the least-squares deep-muscle loss and the Cr1/Cr2 "
            "parameter criteria (M1 vs M2)",
        ),
    )
}


def reference_lines(keys: list[str]) -> list[str]:
    """``"key: full reference"`` for each known key, in the order given."""
    return [f"**{k}**: {REFERENCES[k].text}" for k in keys if k in REFERENCES]


#: The internal numbers of the source papers (``seeds/``) and the key each stands for.
_LABELS = {"000": "Torque-stiffness EMG model study", "001": "Hambly et al.",
           "002": "Sanderink et al.", "003": "Hambly et al.", "004": "Kraaijevanger 2018"}
#: Not a group of digits of a number written with spaces ("10 000 + 2 000 epochs").
_LABEL = re.compile(r"(?<![\w.])(?<!\d )(?:seed |paper )?(00[0-4])(?![\w.])(:Eq\.)?")
_ISSUE = re.compile(r"\s*\((?:see )?issues? \d+(?:[,-] ?\d+)*(?: item \d+)?\)", re.I)


def humanize(text: str) -> str:
    """User text with the papers named by their keys instead of internal numbers
    (``004 Table III`` -> ``Kraaijevanger 2018 Table III``, ``000:Eq.8`` -> ``Eq.8 of the
    Torque-stiffness EMG model study``) and without internal issue labels."""
    def repl(m: re.Match) -> str:
        key = _LABELS[m.group(1)]
        return f"{key}, Eq." if m.group(2) else key

    return _LABEL.sub(repl, _ISSUE.sub("", text))


def keys_in(text: str) -> list[str]:
    """The reference keys a text cites (after :func:`humanize`), in order of appearance."""
    text = humanize(text)
    found = [(text.find(k), k) for k in REFERENCES if k in text]
    return [k for _, k in sorted(found)]
