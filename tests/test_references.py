"""User text names the source papers by their reference keys (:mod:`bench.references`)."""

from __future__ import annotations

import pytest

from bench.references import REFERENCES, humanize, keys_in, reference_lines


@pytest.mark.parametrize("text, expected", [
    ("004 Table III", "Kraaijevanger 2018 Table III"),
    ("seed 000 Table 1", "Torque-stiffness EMG model study Table 1"),
    ("000:Eq.8 residuals", "Torque-stiffness EMG model study, Eq.8 residuals"),
    ("see 001 and 002", "see Hambly et al. and Sanderink et al."),
    ("ESM (issue 20) floor", "ESM floor"),
    # digit groups of numbers written with spaces are not paper numbers
    ("Sec. IV-C: 10 000 + 2 000 epochs", "Sec. IV-C: 10 000 + 2 000 epochs"),
    ("took 1 000 s; file 004.yaml; v1.000", "took 1 000 s; file 004.yaml; v1.000"),
])
def test_humanize_names_papers_by_key(text, expected):
    assert humanize(text) == expected


def test_keys_in_order_of_appearance_and_full_lines():
    keys = keys_in("Sanderink et al. beside 004 Table III")
    assert keys == ["Sanderink et al.", "Kraaijevanger 2018"]
    lines = reference_lines([*keys, "unknown"])
    assert len(lines) == 2 and lines[1] == f"**Kraaijevanger 2018**: {REFERENCES[keys[1]].text}"
