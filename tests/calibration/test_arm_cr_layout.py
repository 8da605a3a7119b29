"""The ``arm-cr`` layout of Sanderink et al.'s M1 vs M2 identification: Cr table over the
runs (one per initial guess), paired Wilcoxon tests, per-parameter errors and curves, on
hand-made records and on a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench import registry, store
from bench.layouts.arm import SCORES, ArmCrLayout, collect_runs, paired_tests
from bench.report import write_report
from bench.runner import plan_of, run_scenario
from bench.scenario import load_scenario

YAML = """
name: arm-tiny
plant:
  name: arm-identification
  params: {{duration: 1.0, n_guesses: 2}}
grid:
  movement: [reach]
methods:
  - {{name: deep-lsq, label: M1, params: {{method: M1, epochs: {ep}, slack_epochs: 2,
     record_every: 2, learning_rate: 0.001}}}}
  - {{name: deep-lsq, label: M2, params: {{method: M2, epochs: {ep}, slack_epochs: 2,
     record_every: 2, learning_rate: 0.001}}}}
seeds: {seeds}
metrics: [cr2, cr1, cr2m, cr2_own, cr2_base, cr2_we, initial_cr2, epoch_time]
layout: {{name: arm-cr}}
reference: {{source: Sanderink et al., epoch_time_s: 0.77, run_time_h: 2.5}}
"""
NAMES = ["humerus.m", "PECM1.f_max", "BIClong.phi_opt", "shared.delay"]


def _scenario(tmp_path, ep: int = 2, seeds: str = "[0]") -> str:
    f = tmp_path / "arm.yaml"
    f.write_text(YAML.format(ep=ep, seeds=seeds))
    return str(f)


def _fake_run(tmp_path, arrays: bool = True):
    """Two seeds x two methods, three guesses each; M1's Cr2 = 5 + guess, M2's 6 + 2 guess
    (+ seed) so that M1 is lower in every pair."""
    plan = plan_of(load_scenario(_scenario(tmp_path, seeds="[0, 1]")))
    out = tmp_path / "fake"
    store.write_plan(out, plan)
    G = 3
    for u in plan["units"]:
        s = u["seed"]
        for j, m in enumerate(plan["methods"]):
            final = {k: np.array([5.0 + g + s if j == 0 else 6.0 + 2 * g + s
                                  for g in range(G)]) for k in SCORES}
            init = {k: np.full(G, 8.0) for k in SCORES}
            a = {"x": np.zeros(1), "deep_names": np.array(NAMES),
                 "deep_true": np.array([1.0, 2.0, 0.0, 0.01]),
                 "deep_identifiable": np.array([True, True, True, True]),
                 "percent_error": np.array([[1.0 + j, 2.0, np.nan, 3.0]] * G),
                 "snapshot_epochs": np.array([0, 2, 4]),
                 "excitation_names": np.array(NAMES),
                 "excitation_relative": np.array([1e-9, 1.0, 0.0, 0.1]),
                 "well_excited": np.array([False, True, False, True])}
            for k in SCORES:
                a[f"guess_{k}"] = final[k]
                a[f"guess_initial_{k}"] = init[k]
                a[f"curve_{k}"] = np.stack([np.linspace(8.0, f, 3) for f in final[k]])
            apath = store.array_path(out, u["unit_id"], m["key"])
            store.save_arrays(apath, **(a if arrays else {"x": np.zeros(1)}))
            store.write_record(out, {
                "scenario": plan["name"], "cell_id": u["cell_id"], "unit_id": u["unit_id"],
                "seed": s, "factors": u["factors"], "plant": "arm-identification",
                "sim_time_s": 0.1, "method": m["name"], "label": m["label"],
                "method_key": m["key"], "params": m["params"], "status": "ok", "reason": "",
                "metrics": {**{k: float(np.median(final[k])) for k in SCORES},
                            "initial_cr2": 8.0, "epoch_time": 1e-3 * (j + 1)},
                "wall_time_s": 10.0, "peak_mem_mib": None,
                "arrays": str(apath.relative_to(out)), "info": {}})
    return out, plan


def test_layout_on_handmade_records(tmp_path):
    assert registry.resolve("layouts", "arm-cr") is ArmCrLayout
    out, plan = _fake_run(tmp_path)
    runs = collect_runs(out, store.read_records(out, plan))
    assert len(runs) == 12 and {r["guess"] for r in runs} == {0, 1, 2}
    tests = paired_tests(runs, "M1", "M2")
    m1 = [5.0 + g + s for s in (0, 1) for g in range(3)]
    m2 = [6.0 + 2 * g + s for s in (0, 1) for g in range(3)]
    assert tests["cr2"]["n"] == 6 and tests["cr2"]["a_lower"] == 6
    assert tests["cr2"]["p"] == pytest.approx(wilcoxon(m1, m2).pvalue)
    md = write_report(out)["md"].read_text()
    q1, med, q3 = np.percentile(m1, [25, 50, 75])
    assert f"| M1 | 6 | {med:.2f} [{q1:.2f}, {q3:.2f}]" in md
    assert "| initial guess | 6 | 8.00 [8.00, 8.00]" in md
    assert "| Cr2 | 6 |" in md and "0.77 s per epoch, 2.5 h per run" in md
    assert "seed 0, movement=reach: 2 of 4" in md
    # per parameter: one excitation analysis per record (not per method), NaN unscored
    assert "| humerus.m | yes | 0/2 | 1.0e-09 | 1.00 | 2.00 |" in md
    assert "| BIClong.phi_opt | yes | 0/2 | 0.0e+00 | - | - |" in md
    assert (out / "figures" / "cr_curves.png").is_file()
    assert (out / "figures" / "parameter_errors.png").is_file()


def test_layout_without_per_guess_arrays(tmp_path):
    """Records whose arrays lack the per-guess values: one run per record (its metrics)."""
    out, plan = _fake_run(tmp_path, arrays=False)
    runs = collect_runs(out, store.read_records(out, plan))
    assert len(runs) == 4 and all(r["guess"] == -1 for r in runs)
    md = write_report(out)["md"].read_text()
    assert "| M1 | 2 |" in md and "carry no per-guess arrays" in md
    assert not (out / "figures" / "cr_curves.png").exists()


@pytest.mark.slow
def test_tiny_run_report(tmp_path):
    """Two guesses, a few epochs per method, on a 1 s reaching record."""
    out = tmp_path / "run"
    summary = run_scenario(load_scenario(_scenario(tmp_path)), out, jobs=1, progress=False)
    assert summary.computed["ok"] == 2
    recs = store.read_records(out, store.read_plan(out))
    for r in recs:
        assert {"cr1", "cr2", "cr2m", "cr2_own", "cr2_base", "initial_cr2"} <= set(r["metrics"])
        assert r["info"]["n_guesses"] == 2 and r["info"]["calibrator"] == "deep-lsq"
    # the calibrator's per-guess arrays reach the record's array file: one run per guess
    runs = collect_runs(out, recs)
    assert len(runs) == 4 and sorted(r["guess"] for r in runs) == [0, 0, 1, 1]
    md = write_report(out)["md"].read_text()
    assert "| M1 | 2 |" in md and "| M2 | 2 |" in md and "### M1 vs M2: paired tests" in md
