"""Runner mechanics on stand-in plugins: results, failure capture, resume, kill -9, executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench import store
from bench.executors import LocalProcessExecutor, SerialExecutor, get_executor
from bench.grid import unit_rng, units
from bench.runner import run_scenario
from bench.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
F = "tests.runner_fakes"


def _scenario(tmp_path: Path, methods: str, *, name: str = "s", seeds: str = "[0, 1]",
              grid: str = "{perturbation: [fgwn, prbs], snr_db: [0, 10]}") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(
        f"name: {name}\nplant: {{name: '{F}:FakePlant', params: {{duration: 5}}}}\n"
        f"grid: {grid}\nmethods:\n{methods}\nseeds: {seeds}\n"
        "metrics: [stiffness_error, nan_share]\n"
    )
    return f


LS_MEAN = (f"  - {{name: '{F}:FakeLS', label: LS}}\n"
           f"  - {{name: '{F}:FakeMean', label: mean}}")


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}


def test_results_table_and_ground_truth(tmp_path):
    sc = load_scenario(_scenario(tmp_path, LS_MEAN))
    out = tmp_path / "out"
    s = run_scenario(sc, out, jobs=1, progress=False)
    assert s.units == 8 and s.skipped_units == 0
    assert s.computed == {"ok": 16, "failed": 0, "unavailable": 0}
    t = pq.read_table(out / "results.parquet")
    assert t.column_names == [
        "scenario", "cell_id", "unit_id", "seed", "perturbation", "snr_db", "method", "label",
        "method_key", "params", "status", "reason", "stiffness_error", "nan_share",
        "wall_time_s", "peak_mem_mib", "sim_time_s", "arrays",
    ]
    rows = t.to_pylist()
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    assert all(r["wall_time_s"] >= 0 and r["peak_mem_mib"] > 0 for r in rows)
    # The constant estimate of a 50 <-> 150 square wave: 100 * 50 / rms(K) = 44.72 %.
    mean_err = [r["stiffness_error"] for r in rows if r["label"] == "mean" and r["snr_db"] == 10]
    np.testing.assert_allclose(mean_err, 100 * 50 / np.sqrt((150**2 + 50**2) / 2), atol=1.5)
    # Ensemble LS tracks K: at 10 dB SNR its error is ~ noise / sqrt(R=5) ~ 15 %, well below.
    ls_err = [r["stiffness_error"] for r in rows if r["label"] == "LS" and r["snr_db"] == 10]
    assert max(ls_err) < 30
    arr = store.load_arrays(out / rows[0]["arrays"])
    assert set(arr) == {"t", "K", "K_true"} and arr["K"].shape == (50,)
    np.testing.assert_array_equal(np.unique(arr["K_true"]), [50.0, 150.0])


def test_failures_are_recorded_and_run_continues(tmp_path):
    methods = (f"  - {{name: '{F}:FakeBroken', label: broken}}\n"
               f"  - {{name: '{F}:FakeNaN', label: nan}}\n"
               f"  - {{name: '{F}:FakeLS', label: LS}}")
    sc = load_scenario(_scenario(tmp_path, methods, seeds="[3]"))
    out = tmp_path / "out"
    s = run_scenario(sc, out, jobs=1, progress=False)
    assert s.computed == {"ok": 4, "failed": 8, "unavailable": 0}
    rows = pq.read_table(out / "results.parquet").to_pylist()
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    assert {r["status"] for r in by["LS"]} == {"ok"}
    assert {(r["status"], r["reason"]) for r in by["broken"]} == {
        ("failed", "EstimationError: matrix is singular (fake)")}
    assert {(r["status"], r["reason"]) for r in by["nan"]} == {
        ("failed", "estimate K is NaN everywhere")}
    assert all(np.isnan(r["stiffness_error"]) for r in by["broken"] + by["nan"])
    # failed records are final: a rerun recomputes nothing
    assert run_scenario(sc, out, jobs=1, progress=False).computed["failed"] == 0


def test_resume_skips_finished_and_runs_only_added_method(tmp_path):
    out = tmp_path / "out"
    one = f"  - {{name: '{F}:FakeLS', label: LS}}"
    sc1 = load_scenario(_scenario(tmp_path, one, name="a"))
    assert run_scenario(sc1, out, jobs=1, progress=False).computed["ok"] == 8
    before = _mtimes(out)
    again = run_scenario(sc1, out, jobs=1, progress=False)
    assert again.skipped_units == 8 and again.computed["ok"] == 0
    sc2 = load_scenario(_scenario(tmp_path, LS_MEAN, name="a"))
    s2 = run_scenario(sc2, out, jobs=1, progress=False)
    assert s2.computed == {"ok": 8, "failed": 0, "unavailable": 0}
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before  # LS records untouched
    assert len(after) == 16
    assert pq.read_table(out / "results.parquet").num_rows == 16
    forced = run_scenario(sc2, out, jobs=1, progress=False, force=True)
    assert forced.computed["ok"] == 16 and forced.skipped_units == 0


def test_same_cell_and_seed_give_same_data_on_any_executor(tmp_path):
    sc = load_scenario(_scenario(tmp_path, LS_MEAN, seeds="[0]",
                                 grid="{perturbation: [fgwn, prbs]}"))
    from tests.runner_fakes import FakePlant

    u = units(sc)[0]
    d1 = FakePlant(**u.cell.params).simulate(unit_rng(u.cell.cell_id, u.seed))
    d2 = FakePlant(**u.cell.params).simulate(unit_rng(u.cell.cell_id, u.seed))
    np.testing.assert_array_equal(d1.y, d2.y)
    serial = run_scenario(sc, tmp_path / "serial", jobs=1, progress=False)
    pool = run_scenario(sc, tmp_path / "pool", jobs=2, progress=False)
    assert serial.computed == pool.computed == {"ok": 4, "failed": 0, "unavailable": 0}
    a = pq.read_table(tmp_path / "serial" / "results.parquet").to_pylist()
    b = pq.read_table(tmp_path / "pool" / "results.parquet").to_pylist()
    key = lambda r: (r["unit_id"], r["method_key"])  # noqa: E731
    assert [(key(r), r["stiffness_error"]) for r in sorted(a, key=key)] == [
        (key(r), r["stiffness_error"]) for r in sorted(b, key=key)]


def test_kill_minus_9_loses_no_finished_unit(tmp_path):
    slow = f"  - {{name: '{F}:FakeLS', label: LS, params: {{delay: 0.25}}}}"
    f = _scenario(tmp_path, slow, seeds="[0, 1, 2]")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(f), "--out", str(out), "--jobs", "1",
         "--quiet", "--no-report"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((out / "cells").glob("*.json"))
                                                  if (out / "cells").is_dir() else []) < 3:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _mtimes(out)
    assert 3 <= len(before) < 12, "the kill must land mid-run"
    for name in before:  # every record on disk is complete, with its arrays
        rec = json.loads((out / "cells" / name).read_text())
        assert rec["status"] == "ok" and (out / rec["arrays"]).is_file()
    sc = load_scenario(f)
    s = run_scenario(sc, out, jobs=1, progress=False)
    assert s.computed["ok"] == 12 - len(before)
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before
    assert pq.read_table(out / "results.parquet").num_rows == 12


def test_executor_selection_and_errors():
    assert isinstance(get_executor("local", 1), SerialExecutor)
    assert isinstance(get_executor("local", 2), LocalProcessExecutor)
    with pytest.raises(ValueError, match="unknown executor 'mpi'"):
        get_executor("mpi")
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        LocalProcessExecutor(jobs=0)
    got = sorted(SerialExecutor().imap_unordered(lambda x: 10 / x, [1, 0, 2]),
                 key=lambda t: t[0])
    assert [(i, r) for i, r, _ in got] == [(0, 10.0), (1, None), (2, 5.0)]
    assert isinstance(got[1][2], ZeroDivisionError)


def test_worker_crash_is_reported_not_recorded(tmp_path):
    sc = load_scenario(_scenario(tmp_path, f"  - {{name: '{F}:FakeCrash', label: crash}}",
                                 seeds="[0]", grid="{perturbation: [fgwn, prbs]}"))
    lines = []
    s = run_scenario(sc, tmp_path / "out", jobs=2, progress=False, log=lines.append)
    assert sorted(s.crashed) == sorted(f"{u.cell.data_id}:{u.seed}" for u in units(sc))
    assert s.computed == {"ok": 0, "failed": 0, "unavailable": 0}
    assert len(lines) == 2 and all("worker error" in ln and "rerun retries" in ln
                                   for ln in lines)
    assert pq.read_table(tmp_path / "out" / "results.parquet").num_rows == 0


def test_metric_status_primary_metric_decides():
    from bench.tasks.impedance import metric_status

    values = {"stiffness_error": 5.0, "r2": float("nan")}
    assert metric_status(["stiffness_error", "r2"], values) == ("ok", "", "undefined (NaN): r2")
    status, reason, _ = metric_status(["stiffness_error", "r2"],
                                      {"stiffness_error": float("nan"), "r2": 0.5})
    assert status == "failed" and "stiffness_error" in reason
    assert metric_status(["stiffness_error"], {"stiffness_error": 1.0}) == ("ok", "", None)


def test_method_restricted_to_cells_runs_only_there_and_resume_is_complete(tmp_path):
    methods = (f"  - {{name: '{F}:FakeLS', label: LS}}\n"
               f"  - {{name: '{F}:FakeMean', label: mean, cells: {{snr_db: [10]}}}}")
    sc = load_scenario(_scenario(tmp_path, methods))
    assert [m.takes({"perturbation": "fgwn", "snr_db": 0}) for m in sc.methods] == [True, False]
    out = tmp_path / "out"
    s = run_scenario(sc, out, jobs=1, progress=False)
    assert s.computed == {"ok": 12, "failed": 0, "unavailable": 0}  # 8 LS + 4 mean (snr 10)
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["snr_db"] for r in rows if r["label"] == "mean"} == {10}
    plan = store.read_plan(out)
    assert len(store.expected_pairs(plan)) == 12
    again = run_scenario(load_scenario(_scenario(tmp_path, methods)), out, jobs=1,
                         progress=False)
    assert again.skipped_units == 8 and again.computed["ok"] == 0


def test_method_cells_name_unknown_factors_and_levels(tmp_path):
    from bench.errors import ScenarioError

    methods = (f"  - {{name: '{F}:FakeLS', label: LS, cells: {{snr: [10]}}}}\n"
               f"  - {{name: '{F}:FakeMean', label: mean, cells: {{snr_db: [5]}}}}")
    with pytest.raises(ScenarioError) as e:
        load_scenario(_scenario(tmp_path, methods))
    msg = str(e.value)
    assert "methods[0].cells.snr" in msg and "not a grid factor" in msg
    assert "methods[1].cells.snr_db[0]" in msg and "not a level of snr_db" in msg
