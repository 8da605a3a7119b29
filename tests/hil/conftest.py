"""Shared helpers of the HIL tests: session files written into a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def write_session(directory: Path, name: str = "s", **over) -> Path:
    """A session YAML (500 Hz, 1 Hz sine pivot, FGWN 2 mm) with top-level overrides."""
    spec = {
        "name": name, "rig": "default", "sample_rate_hz": 500, "duration_s": 10.0,
        "settle_s": 0.5, "repetitions": 1, "seed": 3,
        "perturbation": {"signal": "fgwn", "level_mm": 2.0},
        "pivot": {"shape": "sine", "center_mm": 250.0, "amplitude_mm": 25.0,
                  "frequency_hz": 1.0},
        "watchdog_ms": 50,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"session": spec}, sort_keys=False))
    return path


@pytest.fixture
def session_file(tmp_path):
    def make(name: str = "s", **over) -> Path:
        return write_session(tmp_path, name, **over)

    return make
