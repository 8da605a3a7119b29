"""bench.studies._common: the scenario reader and command line of the script-run studies."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import ScenarioError
from bench.studies._common import merge_defaults, read_scenario, study_main


def test_read_scenario_rejects_non_mappings_and_unknown_keys(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: a demo scenario must be a YAML mapping"):
        read_scenario(f, "demo", {"seed"})
    f.write_text("seed: 1\nsede: 2\ndescription: x\n")
    with pytest.raises(ScenarioError, match=r"demo scenario has unknown keys \['sede'\]"):
        read_scenario(f, "demo", {"seed"})
    assert read_scenario({"seed": 3}, "demo", {"seed"}) == {"seed": 3}


def test_merge_defaults_merges_one_level_and_copies():
    defaults = {"a": {"x": 1, "y": 2}, "b": 3}
    out = merge_defaults(defaults, {"a": {"y": 5}, "b": 4})
    assert out == {"a": {"x": 1, "y": 5}, "b": 4}
    assert defaults == {"a": {"x": 1, "y": 2}, "b": 3}  # not mutated


def test_study_main_runs_and_rereads_results(tmp_path, capsys):
    calls = []

    def run(scenario, out):
        calls.append((scenario, out))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.json").write_text('{"wall_time": 12.0}')
        return {"wall_time": 12.0}

    def write(res, out):
        p = Path(out) / "report.md"
        p.write_text("# r\n")
        return {"report": p, "note": "not a file"}

    assert study_main(["s.yaml", "--out", str(tmp_path)], "demo", run, write) == 0
    assert calls == [("s.yaml", str(tmp_path))]
    expected = f"wrote {tmp_path / 'report.md'} (study wall time 12 s)"
    assert capsys.readouterr().out.strip() == expected
    assert study_main(["s.yaml", "--out", str(tmp_path), "--report-only"], "demo", run,
                      write) == 0
    assert len(calls) == 1  # --report-only does not run the study
