"""``impbench rig record`` writes its session under ``runs/<name>/`` by default, never beside
the session file (a shipped file in ``scenarios/``)."""

from __future__ import annotations

import os

from bench.cli import main
from hil.virtual import VirtualRig
from tests.hil.conftest import write_session


def test_rig_record_default_output_is_under_runs(tmp_path, monkeypatch):
    spec_dir = tmp_path / "scenarios"
    spec_dir.mkdir()
    path = write_session(spec_dir, "short", duration_s=2.0, settle_s=0.2)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rig = VirtualRig(seed=1).start()
    try:
        assert main(["rig", "record", str(path), "--port", rig.url, "--quiet"]) == 0
    finally:
        rig.stop()
    out = work / "runs" / "short"
    assert sorted(p.name for p in out.iterdir()) == ["short.json", "short.npz", "short.rawlog"]
    assert os.listdir(spec_dir) == ["short.yaml"]  # nothing beside the session file
