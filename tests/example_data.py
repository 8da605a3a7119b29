"""The calibration example's files (``scenarios/data/make_example.py``) written into a test's
temporary folder: git ignores the shipped copies, so a clean clone has none."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_example(folder: Path, **kwargs: Any) -> Any:
    """``make_example(folder, **kwargs)`` with its warnings silenced; returns what it returns."""
    spec = importlib.util.spec_from_file_location(
        "make_example", ROOT / "scenarios" / "data" / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mod.make_example(folder, **kwargs)
