"""Calibration scenarios on the one runner: a third-party calibrator beside the built-in ones,
records per (unit, method) that survive ``kill -9``, ``impbench compare`` and the Dask
executor (same metrics as local)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench import store
from bench.base import Calibrator
from bench.compare import compare_runs, write_comparison
from bench.params import Interval
from bench.report import write_report
from bench.runner import run_scenario
from bench.scenario import load_scenario
from bench.store import read_records
from estimators.calibration._problem import make_problem, result_from

MOD = "tests.calibration.test_calibration_runner"
ROOT = Path(__file__).resolve().parents[2]


class RandomSearch(Calibrator):
    """A deliberately simple third-party calibrator: the best of ``n`` uniform draws inside
    the bounds and the initial point (defined here, named as ``module:Class``)."""

    name = "random-search"
    _parameter_constraints = {"n": [Interval(int, 1, 10_000)], "seed": [Interval(int, 0, None)]}

    def __init__(self, *, n: int = 20, seed: int = 0) -> None:
        self.n = n
        self.seed = seed

    def calibrate(self, model, data, objective, *, space=None):
        self._validate()
        prob = make_problem(model, data, objective, space)
        sp = prob.space
        X = np.vstack([sp.x0, sp.sample(np.random.default_rng(self.seed), self.n)])
        f = np.array([float(prob.loss(x)) for x in X])
        t0 = time.perf_counter()
        b = int(np.argmin(f))
        return result_from(prob, model, data, objective, X[b], np.minimum.accumulate(f),
                           time.perf_counter() - t0, len(X), {"calibrator": "random-search"})

    def extra_arrays(self, model, space, result, calibration, held_out):
        """Arrays for a report beside the record's own (the task's ``extra_arrays`` hook)."""
        return {"rs_draws": np.asarray(self.n + 1), "rs_held_out": np.asarray(len(held_out))}


SCENARIO = f"""\
name: tiny-cal
plant:
  name: ankle-subject
  params: {{n_cycles: 3, unperturbed: false}}
grid:
  alpha: [1.0]
  beta: [0.0, 0.5]
  stiffness_reference: [truth]
methods:
  - {{name: annealing, label: SA, params: {{max_evaluations: 200}}}}
  - {{name: adamw, label: AdamW, params: {{restarts: 1, max_steps: 30, patience: 10}}}}
  - {{name: '{MOD}:RandomSearch', label: RS, params: {{n: 10}}}}
seeds: [3]
metrics: [torque_nrmse, torque_rmse, torque_r2, stiffness_nrmse, e_tau, cr2, objective,
          cal_torque_rmse, cal_torque_r2]
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("tinycal") / "tiny.yaml"
    f.write_text(SCENARIO)
    return f


@pytest.fixture(scope="module")
def local_run(scenario) -> Path:
    out = scenario.parent / "local"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = run_scenario(load_scenario(scenario), out, jobs=1, progress=False)
    assert s.computed == {"ok": 6, "failed": 0, "unavailable": 0}
    return out


def test_third_party_calibrator_is_scored_beside_the_built_in_ones(local_run):
    recs = read_records(local_run)
    by = {(r["label"], r["factors"]["beta"]): r for r in recs}
    assert {lab for lab, _ in by} == {"SA", "AdamW", "RS"}
    for r in recs:
        m = r["metrics"]
        assert r["status"] == "ok", r["reason"]
        # every method on the same calibration window and the same held-out trial, scored
        # the same way: finite held-out nRMSE/RMSE/r2 and parameter errors against the truth
        assert 0 < m["torque_nrmse"] < 2 and m["torque_rmse"] > 0 and m["cr2"] > 0
        # the calibration windows' fit in Nm and r2 beside nRMSE (Hambly et al. Fig. 5)
        assert m["cal_torque_rmse"] > 0 and 0 < m["cal_torque_r2"] <= 1
        arrays = store.load_arrays(Path(local_run) / r["arrays"])
        assert "x" in arrays  # the record's own arrays, and a calibrator's extra ones beside
        if r["label"] == "RS":
            assert int(arrays["rs_draws"]) == 11 and int(arrays["rs_held_out"]) >= 1
    # random search from the initial point cannot beat annealing's objective on torque only
    assert by[("SA", 0.0)]["metrics"]["objective"] <= by[("RS", 0.0)]["metrics"]["objective"]
    paths = write_report(local_run)
    md = paths["md"].read_text()
    assert "| RS |" in md and "| SA |" in md and "torque_rmse [Nm]" in md


#: The runs below that need a calibration per unit but not its cost: the third-party
#: calibrator alone (no compiled annealing or AdamW), on the same plant, grid and seed.
RS_ONLY = "\n".join(ln for ln in SCENARIO.splitlines()
                     if "name: annealing" not in ln and "name: adamw" not in ln) + "\n"


def test_compare_two_calibration_runs(scenario, local_run, tmp_path):
    # a copy of the local run, rerun with RS's setting changed: SA and AdamW are resumed
    # (their records are the local ones), RS alone is recomputed
    other = tmp_path / "other"
    shutil.copytree(local_run, other)
    text = scenario.read_text().replace("{n: 10}", "{n: 15}")
    f2 = tmp_path / "tiny.yaml"
    f2.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_scenario(load_scenario(f2), other, jobs=1, progress=False)
    cmp = compare_runs(local_run, other)
    assert set(cmp.methods) == {"SA", "AdamW", "RS"}
    assert "RS" in cmp.settings  # its parameters changed between the runs
    same = [s for s in cmp.summary if s.method == "SA" and s.metric == "torque_nrmse"]
    assert same and same[0].verdict == "identical"
    paths = write_comparison(cmp, tmp_path / "cmp")
    assert "RS" in paths["md"].read_text()


def test_rerun_recomputes_nothing_and_a_lost_record_alone(scenario, local_run):
    before = {p.name: p.stat().st_mtime_ns for p in (local_run / "cells").glob("*.json")}
    s = run_scenario(load_scenario(scenario), local_run, jobs=1, progress=False)
    assert s.computed == {"ok": 0, "failed": 0, "unavailable": 0} and s.skipped_units == 2
    victim = sorted(before)[0]
    (local_run / "cells" / victim).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = run_scenario(load_scenario(scenario), local_run, jobs=1, progress=False)
    assert s.computed["ok"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in (local_run / "cells").glob("*.json")}
    assert {k for k in before if after[k] != before[k]} == {victim}


def test_kill_9_keeps_finished_calibration_records(tmp_path):
    scenario = tmp_path / "rs.yaml"
    scenario.write_text(RS_ONLY.replace("beta: [0.0, 0.5]", "beta: [0.0, 0.25, 0.5, 0.75]"))
    out = tmp_path / "killed"
    env = {**os.environ, "IMPBENCH_JAX_CACHE": "off", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.cli", "run", str(scenario), "--out", str(out),
           "--jobs", "1", "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "cells").glob("*.json"))) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert len(done) >= 2
    for content in done.values():
        assert json.loads(content)["status"] == "ok"  # nothing half-written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = run_scenario(load_scenario(scenario), out, jobs=1, progress=False)
    assert s.computed["ok"] == 4 - len(done)
    for name, content in done.items():
        assert (out / "cells" / name).read_bytes() == content  # finished ones untouched


def test_dask_executor_gives_the_local_metrics(scenario, local_run, tmp_path):
    pytest.importorskip("distributed")
    from bench.executors import DaskExecutor

    out = tmp_path / "dask"
    rs = tmp_path / "rs.yaml"
    rs.write_text(RS_ONLY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = run_scenario(load_scenario(rs), out, executor=DaskExecutor(1), progress=False)
    assert s.crashed == [] and s.computed["ok"] == 2
    local = {(r["label"], r["unit_id"]): r["metrics"] for r in read_records(local_run)
             if r["label"] == "RS"}
    dask = {(r["label"], r["unit_id"]): r["metrics"] for r in read_records(out)}
    assert local.keys() == dask.keys()
    for k in local:
        assert dask[k] == pytest.approx(local[k], rel=1e-9, abs=1e-12), k
