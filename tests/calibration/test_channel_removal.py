"""Hambly et al.'s channel-removal study on the bench: the generic-ankle protocol of the
calibration plant, and the ``channel-removal`` layout (removal order, parameter distances,
Fig. 5-style report) on hand-made records and on a tiny run.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import registry, store
from bench.layouts.channel_removal import (
    ChannelRemovalLayout,
    parameter_distance,
    removal_order,
)
from bench.report import write_report
from bench.runner import plan_of, run_scenario
from bench.scenario import ScenarioValidationError, load_scenario
from plants.ankle import CHANNELS, AnklePlant
from plants.ankle_subject import AnkleSubjectPlant

GENERIC = {"subject": "generic", "perturbed": False, "unperturbed": False, "n_cycles": 2,
           "calibration_cycle": 0, "calibration_cycles": 2, "score_per_cycle": False,
           "tendon": "rigid"}


def _scenario(tmp_path, grid: str, **methods) -> str:
    f = tmp_path / "cr.yaml"
    f.write_text(f"""
name: cr-tiny
plant:
  name: ankle-subject
  params: {{subject: generic, perturbed: false, unperturbed: false, n_cycles: 2,
           calibration_cycle: 0, calibration_cycles: 2, score_per_cycle: false,
           tendon: rigid, model_tendon: rigid, activation_model: recursive}}
grid: {grid}
methods:
  - {{name: adamw, label: EMG-driven, params: {{restarts: 1, max_steps: 5, patience: 5}}}}
  - {{name: synergy-hybrid, params: {{w_e: 100.0, max_steps: 5, patience: 5}}}}
seeds: [0]
metrics: [torque_rmse, torque_r2, cal_torque_nrmse, synth_rec_r2, synth_true_r2,
          held_synth_r2, n_synergies, vaf]
layout: {{name: channel-removal}}
""")
    return str(f)


def test_generic_protocol_is_the_ankle_plant_itself():
    """``subject: generic`` draws no subject: the data are AnklePlant's with the same
    generator; calibration on the whole first trial, held out the whole second one."""
    plant = AnkleSubjectPlant(**GENERIC)
    unit = plant.simulate(np.random.default_rng(4))
    ref = AnklePlant(n_cycles=2, n_trials=2, perturbed=False, tendon="rigid").simulate(
        np.random.default_rng(4))
    np.testing.assert_array_equal(unit.sets[0].excitation, ref.excitation)
    np.testing.assert_array_equal(unit.sets[0].torque, ref.torque)
    T = ref.excitation.shape[1]
    (cal,), (held,) = unit.calibration, unit.held_out
    assert (cal.trial, cal.start, cal.stop) == (0, 0, T) and (held.trial, held.stop) == (1, T)
    assert cal.name == "unperturbed trial 1, cycles 1-2" and unit.segment is None
    assert unit.extra == {} and unit.skip_segments == 0
    assert plant.channel_names() == tuple(CHANNELS)
    assert unit.truth["l_opt"] == pytest.approx(np.asarray(unit.model.base_params.l_opt))


def test_default_protocol_windows_unchanged():
    """The study's protocol (the defaults): one calibration cycle of a perturbed trial,
    the second perturbed trial held out and scored per cycle, an unperturbed trial."""
    unit = AnkleSubjectPlant(n_cycles=3, tendon="rigid").simulate(np.random.default_rng(0))
    n = unit.segment
    (cal,) = unit.calibration
    assert (cal.start, cal.stop, cal.name) == (n, 2 * n, "perturbed trial 1, cycle 2")
    assert unit.held_out[0].name == "perturbed trial 2" and unit.skip_segments == 1
    assert "unperturbed" in unit.extra
    with pytest.raises(ValueError, match="unperturbed"):
        AnkleSubjectPlant(perturbed=False)._validate()
    with pytest.raises(ValueError, match="calibration_cycles"):
        AnkleSubjectPlant(n_cycles=3, calibration_cycle=2, calibration_cycles=2)._validate()


def _rec(removed: int, recorded, key="A", seed=0, arrays=None) -> dict:
    return {"factors": {"removed": removed}, "info": {"recorded": recorded}, "seed": seed,
            "method_key": key, "unit_id": f"u{removed}", "status": "ok", "arrays": arrays,
            "label": key, "metrics": {}}


def test_removal_order_and_parameter_distance():
    ch = ["a", "b", "c", "d"]
    recs = [_rec(0, None), _rec(2, ["a", "d"]), _rec(1, ["a", "c", "d"]), _rec(3, ["d"])]
    assert removal_order(recs, ch) == ["b", "c", "a"]
    assert removal_order(recs, None) == ["c", "a"]  # the first removed is never recorded
    ref = {"x": np.array([1.0, 0.0]), "lower": np.array([0.0, -1.0]),
           "upper": np.array([2.0, 1.0]), "names": np.array(["p", "q"])}
    a = {**ref, "x": np.array([1.5, 1.0])}
    assert parameter_distance(a, ref) == pytest.approx((0.5 / 2 + 1.0 / 2) / 2)
    assert np.isnan(parameter_distance({**a, "names": np.array(["p", "r"])}, ref))


def test_layout_needs_removed_with_level_zero(tmp_path):
    assert registry.resolve("layouts", "channel-removal") is ChannelRemovalLayout
    with pytest.raises(ScenarioValidationError, match="removed = 0"):
        load_scenario(_scenario(tmp_path, "{removed: [1, 2]}"))
    with pytest.raises(ScenarioValidationError, match="'removed' as a grid factor"):
        load_scenario(_scenario(tmp_path, "{alpha: [1.0]}"))


def _fake_run(tmp_path, order: list[str]):
    """A run directory with hand-made records: parameters drift by 0.01 of their range per
    removed channel (EMG-driven) or 0.02 (synergy-hybrid), torque RMSE 1 + removed."""
    sc = load_scenario(_scenario(tmp_path, "{removed: [0, 1, 2]}"))
    plan = plan_of(sc)
    out = tmp_path / "fake"
    store.write_plan(out, plan)
    names = np.array(["l_opt[a]", "shape[a]"])
    lo, hi = np.array([0.0, -3.0]), np.array([1.0, 0.0])
    for u in plan["units"]:
        k = u["factors"]["removed"]
        for j, m in enumerate(plan["methods"]):
            x = np.array([0.5, -1.0]) + 0.01 * (j + 1) * k * (hi - lo)
            apath = store.array_path(out, u["unit_id"], m["key"])
            store.save_arrays(apath, x=x, lower=lo, upper=hi, names=names)
            metrics = {"torque_rmse": 1.0 + k, "torque_r2": 0.9, "cal_torque_nrmse": 0.1 * k}
            if j == 1:
                metrics.update(n_synergies=1.0, vaf=0.9)
                if k:
                    metrics.update(synth_rec_r2=0.5, synth_true_r2=0.4, held_synth_r2=0.3)
            store.write_record(out, {
                "scenario": plan["name"], "cell_id": u["cell_id"], "unit_id": u["unit_id"],
                "seed": u["seed"], "factors": u["factors"], "plant": "ankle-subject",
                "sim_time_s": 0.1, "method": m["name"], "label": m["label"],
                "method_key": m["key"], "params": m["params"], "status": "ok", "reason": "",
                "metrics": metrics, "wall_time_s": 1.0, "peak_mem_mib": None,
                "arrays": str(apath.relative_to(out)),
                "info": {"recorded": None if k == 0 else [c for c in CHANNELS
                                                          if c not in order[:k]]}})
    return out


def test_layout_on_handmade_records(tmp_path):
    out = _fake_run(tmp_path, ["per_long", "tib_ant"])
    md = write_report(out)["md"].read_text()
    assert "seed 0: per_long, tib_ant" in md and "Ranked per plant draw" in md
    rows = [line for line in md.splitlines() if line.startswith(("| EMG-driven", "| synergy"))]
    # method | recorded | last removed | cal nRMSE | held RMSE | held R2 | param dist | ...
    assert rows[0].startswith("| EMG-driven | 5 | - | 0.000 | 1.000 | 0.900 | 0.000 |")
    assert rows[5].startswith("| synergy-hybrid | 3 | tib_ant | 0.200 | 3.000 | 0.900 | 0.040 |")
    assert "cal nRMSE" in md and "carry no calibration RMSE" in md
    assert "| synergy-hybrid | 4 | 1 | 0.90 | 0.50 | 0.40 | 0.30 |" in md
    assert (out / "figures" / "fig5.png").is_file()


@pytest.mark.slow
def test_tiny_run_report(tmp_path):
    """Given removal order (no ranking), a few AdamW steps per calibration."""
    sc = load_scenario(_scenario(
        tmp_path, "{removed: [0, 1, 2], removal_order: [[gas_lat, soleus]], penalty: [smooth]}"))
    out = tmp_path / "run"
    summary = run_scenario(sc, out, jobs=1, progress=False)
    assert summary.computed["ok"] == 6
    paths = write_report(out)
    md = paths["md"].read_text()
    plan = store.read_plan(out)
    recs = store.read_records(out, plan)
    assert "Given by the scenario: gas_lat, soleus." in md
    assert "seed 0: gas_lat, soleus" in md
    assert "| EMG-driven | 4 | gas_lat |" in md and "| synergy-hybrid | 3 | soleus |" in md
    assert (out / "figures" / "fig5.png").is_file() and paths["html"].is_file()
    # distances: 0 for the all-channels record, from the arrays otherwise
    by = {(r["label"], r["factors"]["removed"]): r for r in recs}
    a0 = store.load_arrays(out / by[("EMG-driven", 0)]["arrays"])
    a2 = store.load_arrays(out / by[("EMG-driven", 2)]["arrays"])
    d = parameter_distance(a2, a0)
    assert d > 0 and "| EMG-driven | 3 | soleus |" in md
    row = next(line for line in md.splitlines() if line.startswith("| EMG-driven | 3 |"))
    assert f"{d:.3f}" in row
    syn = by[("synergy-hybrid", 2)]["metrics"]
    assert {"synth_rec_r2", "synth_true_r2", "held_synth_r2", "n_synergies"} <= set(syn)
    assert "## Synthesized excitations" in md
