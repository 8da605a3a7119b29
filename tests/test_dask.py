"""Dask executor: same results as the local executor, resume, failure capture, dead workers.

One 2-worker LocalCluster (processes, one thread each) serves the module; runs reach it
through ``DaskExecutor(address=...)``, the path a real cluster takes. The CLI test starts
its own LocalCluster (``--executor dask`` without ``--address``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench import store
from bench.base import Estimator
from bench.cli import main
from bench.errors import InvalidParameterError
from bench.executors import DaskExecutor, SerialExecutor, get_executor
from bench.grid import units
from bench.runner import run_scenario
from bench.scenario import load_scenario
from bench.types import ImpedanceEstimate, Realizations

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
F = "tests.runner_fakes"
D = "tests.test_dask"
FAKE_METRICS = ["stiffness_error", "nan_share"]
#: Columns that must agree between executors (everything but the timings).
SAME = ["scenario", "cell_id", "unit_id", "seed", "method", "label", "method_key", "params",
        "status", "reason", "arrays"]


class CrashOnce(Estimator):
    """Ensemble least squares that kills its worker process the first time it runs.

    The first call creates ``marker`` atomically (``O_EXCL``), writes its pid there and
    ends the process with ``os._exit`` (no cleanup, as a node failure or the OOM killer);
    every later call, in any process, finds the marker and estimates normally.
    """

    name = "crash_once"
    _parameter_constraints = {"marker": [str]}

    def __init__(self, *, marker: str = "") -> None:
        self.marker = marker

    def _estimate(self, data: Realizations) -> ImpedanceEstimate:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            k = np.sum(data.u * data.y, axis=0) / np.sum(data.u**2, axis=0)
            return ImpedanceEstimate(K=k)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        scheduler_kwargs={"allowed_failures": 1},
    ) as c:
        yield c


def _scenario(tmp_path: Path, methods: str, *, name: str = "s", seeds: str = "[0, 1]",
              grid: str = "{perturbation: [fgwn, prbs], snr_db: [0, 10]}") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(
        f"name: {name}\nplant: {{name: '{F}:FakePlant', params: {{duration: 5}}}}\n"
        f"grid: {grid}\nmethods:\n{methods}\nseeds: {seeds}\n"
        "metrics: [stiffness_error, nan_share]\n"
    )
    return f


def _rows(out: Path) -> list[dict]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    return sorted(rows, key=lambda r: (r["unit_id"], r["method_key"]))


def _assert_same_results(a: Path, b: Path, metrics: list[str]) -> None:
    """Identical tables (timings aside) and identical estimate arrays."""
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb):
        assert {k: x[k] for k in SAME} == {k: y[k] for k in SAME}
        for m in metrics:  # bit-identical: same data, same code, only the process differs
            assert x[m] == y[m] or (np.isnan(x[m]) and np.isnan(y[m])), (m, x[m], y[m])
        if x["arrays"]:
            ka, kb = store.load_arrays(a / x["arrays"]), store.load_arrays(b / y["arrays"])
            assert ka.keys() == kb.keys()
            for k in ka:
                np.testing.assert_array_equal(ka[k], kb[k])


def test_quickstart_dask_equals_local(tmp_path, cluster):
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    local = run_scenario(sc, tmp_path / "local", jobs=1, progress=False)
    dask = run_scenario(sc, tmp_path / "dask", progress=False,
                        executor=DaskExecutor(address=cluster.scheduler_address))
    assert local.computed == dask.computed == {"ok": 16, "failed": 0, "unavailable": 0}
    assert dask.crashed == []
    _assert_same_results(tmp_path / "local", tmp_path / "dask", list(sc.metrics))
    # and the numbers are real estimates: SDS tracks the 50 <-> 150 Nm/rad square wave
    sds = [r["stiffness_error"] for r in _rows(tmp_path / "dask") if r["label"] == "SDS"]
    assert len(sds) == 8 and max(sds) < 30


def test_failure_capture_and_resume_on_dask(tmp_path, cluster):
    two = (f"  - {{name: '{F}:FakeLS', label: LS}}\n"
           f"  - {{name: '{F}:FakeBroken', label: broken}}")
    addr = cluster.scheduler_address
    f = _scenario(tmp_path, two, name="r")
    out = tmp_path / "out"
    s = run_scenario(load_scenario(f), out, progress=False,
                     executor=DaskExecutor(address=addr))
    assert s.computed == {"ok": 8, "failed": 8, "unavailable": 0} and s.crashed == []
    rows = _rows(out)
    assert {(r["status"], r["reason"]) for r in rows if r["label"] == "broken"} == {
        ("failed", "EstimationError: matrix is singular (fake)")}
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    again = run_scenario(load_scenario(f), out, progress=False,
                         executor=DaskExecutor(address=addr))
    assert again.skipped_units == 8 and again.computed == {"ok": 0, "failed": 0,
                                                           "unavailable": 0}
    three = two + f"\n  - {{name: '{F}:FakeMean', label: mean}}"
    f3 = _scenario(tmp_path, three, name="r")
    added = run_scenario(load_scenario(f3), out, progress=False,
                         executor=DaskExecutor(address=addr))
    assert added.computed == {"ok": 8, "failed": 0, "unavailable": 0}
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert {k: after[k] for k in before} == before and len(after) == 24
    run_scenario(load_scenario(f3), tmp_path / "serial", jobs=1, progress=False)
    _assert_same_results(tmp_path / "serial", out, FAKE_METRICS)


def test_killed_worker_does_not_lose_a_cell(tmp_path, cluster):
    marker = tmp_path / "crashed.pid"
    methods = (f"  - {{name: '{F}:FakeLS', label: LS}}\n"
               f"  - {{name: '{D}:CrashOnce', label: once, params: {{marker: '{marker}'}}}}")
    sc = load_scenario(_scenario(tmp_path, methods))
    workers_before = set(cluster.scheduler_info["workers"])
    s = run_scenario(sc, tmp_path / "dask", progress=False,
                     executor=DaskExecutor(address=cluster.scheduler_address))
    # a worker really died mid-cell ...
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert pid != os.getpid()
    # ... and its cell was retried elsewhere: nothing crashed, nothing missing
    assert s.crashed == []
    assert s.computed == {"ok": 16, "failed": 0, "unavailable": 0}
    assert len(list((tmp_path / "dask" / "cells").glob("*.json"))) == 16
    # the retried unit's records are the ones a clean run gives (the marker now exists)
    run_scenario(sc, tmp_path / "serial", jobs=1, progress=False)
    _assert_same_results(tmp_path / "serial", tmp_path / "dask",
                         FAKE_METRICS)
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the dead worker
    assert set(cluster.scheduler_info["workers"]) != workers_before


def test_worker_that_always_dies_is_reported_not_lost(tmp_path, cluster):
    sc = load_scenario(_scenario(tmp_path, f"  - {{name: '{F}:FakeCrash', label: crash}}",
                                 seeds="[0]", grid="{perturbation: [fgwn]}"))
    lines = []
    s = run_scenario(sc, tmp_path / "out", progress=False, log=lines.append,
                     executor=DaskExecutor(address=cluster.scheduler_address))
    # allowed_failures=1: the unit killed two workers, then the scheduler gave it up
    assert s.crashed == [f"{u.cell.data_id}:{u.seed}" for u in units(sc)]
    assert s.computed == {"ok": 0, "failed": 0, "unavailable": 0}
    assert len(lines) == 1 and "KilledWorker" in lines[0] and "rerun retries" in lines[0]
    assert pq.read_table(tmp_path / "out" / "results.parquet").num_rows == 0
    cluster.wait_for_workers(2, timeout=60)


def test_cli_dask_local_cluster(tmp_path, capsys):
    f = _scenario(tmp_path, f"  - {{name: '{F}:FakeLS', label: LS}}", seeds="[0, 1]",
                  grid="{perturbation: [fgwn, prbs]}")
    assert main(["run", str(f), "--out", str(tmp_path / "d"), "--executor", "dask",
                 "--jobs", "2", "--quiet", "--no-report"]) == 0
    assert "4 ok, 0 failed" in capsys.readouterr().out
    assert main(["run", str(f), "--out", str(tmp_path / "l"), "--jobs", "1", "--quiet",
                 "--no-report"]) == 0
    _assert_same_results(tmp_path / "l", tmp_path / "d", FAKE_METRICS)


def test_cli_and_executor_errors(tmp_path, capsys):
    f = _scenario(tmp_path, f"  - {{name: '{F}:FakeLS', label: LS}}", seeds="[0]",
                  grid="{perturbation: [fgwn]}")
    assert main(["run", str(f), "--out", str(tmp_path / "o"), "--address",
                 "tcp://127.0.0.1:8786"]) == 2
    assert "only used by the dask executor" in capsys.readouterr().err
    assert main(["run", str(f), "--out", str(tmp_path / "o"), "--executor", "dask",
                 "--jobs", "2", "--address", "tcp://127.0.0.1:8786"]) == 2
    assert "with address 'tcp://127.0.0.1:8786'" in capsys.readouterr().err
    with pytest.raises(InvalidParameterError,
                       match=r"cannot reach the Dask scheduler at address 'tcp://127\.0\.0\.1:9'"):
        DaskExecutor(address="tcp://127.0.0.1:9", timeout=1).connect()
    for bad, match in (({"retries": -1}, "retries must be a non-negative integer"),
                       ({"address": ""}, "address must be a scheduler address"),
                       ({"timeout": 0}, "timeout must be a positive number")):
        with pytest.raises(InvalidParameterError, match=match):
            DaskExecutor(**bad)
    assert isinstance(get_executor("dask", 2), DaskExecutor)
    ex = SerialExecutor()
    assert get_executor(ex) is ex
