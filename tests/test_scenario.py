"""Scenario schema, YAML line mapping, whole-grid validation and grid hashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench import grid, registry
from bench.errors import ScenarioError
from bench.scenario import (
    ScenarioValidationError,
    canonical_json,
    cell_id,
    data_id,
    load_scenario,
)

DATA = Path(__file__).parent / "data"
LS = "tests.runner_fakes:FakeLS"


def _issues(name: str) -> list[str]:
    path = DATA / name
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(path)
    assert isinstance(info.value, ScenarioError)
    return [str(i) for i in info.value.issues]


def test_valid_scenario_loads_with_defaults_and_reference():
    sc = load_scenario(DATA / "fake_ok.yaml")
    assert sc.name == "fake-ok"
    assert sc.n_cells == 4
    assert [m.label for m in sc.methods] == ["LS", "mean"]
    assert sc.task == "impedance"
    assert sc.layout["name"] == "table"
    assert sc.layout["split"] == "perturbation"
    assert sc.layout["rows"] == ["snr_db"]
    assert sc.layout["baseline"] == {"snr_db": 0}
    recs = {(r["kind"], r["method"], json.dumps(r["where"], sort_keys=True)): r["value"]
            for r in sc.reference["records"]}
    assert recs[("cell", "LS", '{"perturbation": "fgwn", "snr_db": 0}')] == 10.0
    assert recs[("cell", "mean", '{"perturbation": "fgwn", "snr_db": 0}')] == 44.7
    assert recs[("median", "LS", '{"perturbation": "fgwn"}')] == 9.5
    assert recs[("cell", "LS", '{"perturbation": "prbs", "snr_db": 10}')] is None
    assert len(recs) == 4


def test_unknown_keys_name_line_and_field():
    p = DATA / "broken_keys.yaml"
    assert _issues("broken_keys.yaml") == [
        f"{p}:8: methods[0].lable: unknown key; did you mean 'label'?; valid keys: name, label, "
        "params, cells",
        f"{p}:10: repetitions: unknown key; valid keys: name, description, plant, grid, "
        "exclude, methods, seeds, metrics, layout, reference",
    ]


def test_wrong_types_are_all_reported():
    p = DATA / "broken_types.yaml"
    assert _issues("broken_types.yaml") == [
        f"{p}:4: plant.params: Input should be a valid dictionary",
        f"{p}:7: seeds[1]: Input should be a valid integer (got 'one')",
        f"{p}:8: metrics: Input should be a valid list (got 'stiffness_error')",
    ]


def test_bad_levels_params_methods_metrics_seeds():
    p = DATA / "broken_content.yaml"
    got = _issues("broken_content.yaml")
    valid = "Valid parameters: duration, fs, period, perturbation, snr_db, variation."
    expected = [
        f"{p}:6: plant.params.colour: FakePlant has no parameter 'colour'. {valid}",
        f"{p}:8: grid.perturbation[1]: The 'perturbation' parameter of FakePlant must be one "
        "of {'fgwn', 'prbs'}. Got 'sine' instead.",
        f"{p}:9: grid.snr_db[1]: The 'snr_db' parameter of FakePlant must be a float in "
        "[-20, 40]. Got 100 instead.",
        f"{p}:10: grid.shape: is neither a parameter of the plant, a setting of the impedance "
        "task nor a parameter of a method; valid keys: delay, duration, fs, period, "
        "perturbation, snr_db, variation",
        f"{p}:13: methods[0].params.delay: The 'delay' parameter of FakeLS must be a float in "
        "[0, 10]. Got -1 instead.",
    ]
    assert got[:5] == expected
    assert got[5].startswith(
        f"{p}:14: methods[1].name: unknown estimator or calibrator 'eirff'. Did you mean 'eirf'")
    assert got[6:] == [
        f"{p}:15: seeds[1]: duplicate seed 0 (also item 0)",
        f"{p}:16: metrics[1]: unknown metric 'speed' for the impedance task; choose from "
        "stiffness_error, nan_share, rmse, nrmse, r2, vaf",
    ]


def test_unknown_plant():
    p = DATA / "broken_plant.yaml"
    (msg,) = _issues("broken_plant.yaml")
    assert msg.startswith(f"{p}:3: plant.name: unknown plant 'msdd'.")


def test_yaml_syntax_error_has_line():
    p = DATA / "broken_syntax.yaml"
    (msg,) = _issues("broken_syntax.yaml")
    assert msg.startswith(f"{p}:5: invalid YAML:")


def test_every_cell_is_instantiated_and_reference_checked():
    p = DATA / "broken_cell.yaml"
    assert _issues("broken_cell.yaml") == [
        f"{p}:5: grid: cell duration=1: duration (1 s) must be at least one period (2 s)",
        f"{p}:13: reference.values[0].method: 'LS' is not a method label of this scenario "
        f"({LS})",
        f"{p}:13: reference.values[0].duration: 3 is not a level of duration [1, 4]",
        f"{p}:14: reference.values[1].method: 'nope' is not a method label of this scenario "
        f"({LS})",
    ]


def test_duplicate_key_and_empty_file(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text(f"name: a\nname: b\nplant: {{name: '{LS[:-6]}FakePlant'}}\n"
                 f"methods: [{{name: '{LS}'}}]\nseeds: [0]\n")
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(f)
    assert [str(i) for i in info.value.issues] == [
        f"{f}:2: name: duplicate key 'name' (first given at line 1)"]
    e = tmp_path / "empty.yaml"
    e.write_text("")
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(e)
    assert [str(i) for i in info.value.issues] == [f"{e}:1: the file is empty"]


def test_registered_but_unloadable_method_is_unavailable(tmp_path, monkeypatch):
    real = registry.entries

    def fake_entries(kind):
        out = dict(real(kind))
        if kind == "estimators":
            out["ghost"] = registry.Entry(kind, "ghost", "nowhere.ghost:Ghost")
        return out

    monkeypatch.setattr(registry, "entries", fake_entries)
    f = tmp_path / "s.yaml"
    f.write_text(f"name: s\nplant: {{name: 'tests.runner_fakes:FakePlant'}}\n"
                 f"methods: [{{name: '{LS}'}}, {{name: ghost, params: {{any: 1}}}}]\nseeds: [0]\n")
    sc = load_scenario(f)
    assert sc.methods[0].key.startswith("tests.runner_fakes_FakeLS-")  # file-name safe
    ghost = sc.methods[1]
    assert (ghost.status, ghost.reason) == (
        "unavailable", "ModuleNotFoundError: No module named 'nowhere'")
    assert sc.methods[0].status == "ok"


def test_canonical_hash_is_order_and_spelling_independent():
    a = cell_id("msd", {"duration": 25, "snr_db": 0, "perturbation": "fgwn"})
    b = cell_id("msd", {"perturbation": "fgwn", "snr_db": 0.0, "duration": 25.0})
    assert a == b == data_id("msd", {"duration": 25, "snr_db": 0, "perturbation": "fgwn"})
    text = '{"params":{"duration":25.0,"perturbation":"fgwn","snr_db":0.0},"plant":"msd"}'
    assert a == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert cell_id("msd", {"duration": 50}) != cell_id("msd", {"duration": 25})
    # a task setting makes a new cell but the same data draw
    assert cell_id("msd", {"duration": 25}, {"alpha": 1}) != cell_id("msd", {"duration": 25})
    assert grid.unit_id("msd", {"d": 1}, 0) != grid.unit_id("msd", {"d": 1}, 1)
    assert canonical_json({"b": [1, 2.5], "a": None}) == '{"a":null,"b":[1.0,2.5]}'


def test_unit_ids_do_not_depend_on_methods_or_key_order(tmp_path):
    base = DATA / "fake_ok.yaml"
    other = tmp_path / "other.yaml"
    text = base.read_text().replace("  - name: tests.runner_fakes:FakeMean\n    label: mean\n",
                                    "").replace(", mean: 44.7", "")
    text = text.replace("params: {duration: 5}", "params: {duration: 5.0, fs: 50}")
    other.write_text(text)
    u1 = [(u.unit_id, u.cell.factors, u.seed) for u in grid.units(load_scenario(base))]
    u2 = [(u.unit_id, u.cell.factors, u.seed) for u in grid.units(load_scenario(other))]
    assert u1 == u2
    assert len({u for u, _, _ in u1}) == 8
    assert len({u.cell.cell_id for u in grid.units(load_scenario(base))}) == 4


def test_quickstart_scenario_is_valid():
    root = Path(__file__).resolve().parents[1]
    sc = load_scenario(root / "scenarios" / "quickstart.yaml")
    assert sc.n_cells == 4 and [m.name for m in sc.methods] == ["eirf", "sds"]
    vals = {(r["where"]["perturbation"], r["method"]): r["value"]
            for r in sc.reference["records"]}
    assert vals == {("fgwn", "eIRF"): 117.7, ("fgwn", "SDS"): 23.6,
                    ("prbs", "eIRF"): 65.0, ("prbs", "SDS"): 15.6}


def test_reference_table_errors_are_located(tmp_path):
    f = tmp_path / "ref.yaml"
    f.write_text(
        "name: ref\n"
        "plant: {name: 'tests.runner_fakes:FakePlant'}\n"
        "grid: {perturbation: [fgwn, prbs], snr_db: [0, 10]}\n"
        f"methods: [{{name: '{LS}', label: LS}}]\n"
        "seeds: [0]\n"
        "layout: {split: perturbation, rows: [snr_db], baseline: {snr_db: 10}}\n"
        "reference:\n"
        "  source: test\n"
        "  table:\n"
        "    sine: {snr_db: {0: {LS: 1}}}\n"
        "    prbs:\n"
        "      speed: {0: {LS: 1}}\n"
        "      snr_db: {5: {LS: 1}, 0: {ls: 2, LS: x}}\n"
        "  values:\n"
        "    - {perturbation: fgwn, method: LS}\n"
    )
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(f)
    assert [str(i) for i in info.value.issues] == [
        f"{f}:10: reference.table.sine: 'sine' is not a level of the split factor "
        "perturbation ['fgwn', 'prbs']",
        f"{f}:12: reference.table.prbs.speed: 'speed' is not a row factor of the layout (snr_db)",
        f"{f}:13: reference.table.prbs.snr_db[5]: 5 is not a level of snr_db [0, 10]",
        f"{f}:13: reference.table.prbs.snr_db[0].ls: 'ls' is not a method label of this "
        "scenario (LS)",
        f"{f}:13: reference.table.prbs.snr_db[0].LS: a reference value must be a finite number "
        "or null; got 'x'",
        f"{f}:15: reference.values[0]: each record needs 'method' and 'value' (plus factor: "
        "level keys)",
    ]


def test_layout_defaults_and_errors(tmp_path):
    f = tmp_path / "lay.yaml"
    head = ("name: lay\nplant: {name: 'tests.runner_fakes:FakePlant'}\n"
            "grid: {perturbation: [fgwn, prbs], snr_db: [0, 10]}\n"
            f"methods: [{{name: '{LS}'}}]\nseeds: [0]\n")
    f.write_text(head)
    lay = load_scenario(f).layout
    assert (lay["split"], lay["rows"], lay["baseline"]) == (
        None, ["perturbation", "snr_db"], {"perturbation": "fgwn", "snr_db": 0})
    f.write_text(head + "layout: {split: snr, rows: [perturbation, x], baseline: {snr_db: 5},"
                        " columns: seed}\n")
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(f)
    assert [str(i) for i in info.value.issues] == [
        f"{f}:6: layout.columns: Input should be 'method' (got 'seed')",
    ]
    f.write_text(head + "layout: {split: snr, rows: [perturbation, x], baseline: {snr_db: 5}}\n")
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(f)
    assert [str(i) for i in info.value.issues] == [
        f"{f}:6: layout.split: 'snr' is not a grid factor (perturbation, snr_db)",
        f"{f}:6: layout.rows[1]: 'x' is not a grid factor (perturbation, snr_db)",
        f"{f}:6: layout.baseline.snr_db: 5 is not a level of snr_db [0, 10]",
    ]


def test_errors_in_one_section_do_not_hide_others(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("name: g\nplant: {name: 'tests.runner_fakes:NoSuch'}\ngrid: [1, 2]\n"
                 f"methods: [{{name: '{LS}', params: {{delay: 99}}}}]\nseeds: []\n")
    with pytest.raises(ScenarioValidationError) as info:
        load_scenario(f)
    got = [str(i) for i in info.value.issues]
    assert got[0].startswith(f"{f}:2: plant.name: cannot load plant 'tests.runner_fakes:NoSuch'")
    assert got[1:] == [
        f"{f}:3: grid: Input should be a valid dictionary",
        f"{f}:4: methods[0].params.delay: The 'delay' parameter of FakeLS must be a float in "
        "[0, 10]. Got 99 instead.",
        f"{f}:5: seeds: List should have at least 1 item after validation, not 0",
    ]
