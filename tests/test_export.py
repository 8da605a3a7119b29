"""``impbench export``: a run's table and arrays as CSV (full precision) and MATLAB .mat."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.io import loadmat

from bench.cli import main
from bench.runner import run_scenario
from bench.scenario import load_scenario
from bench.store import load_arrays, read_records

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_scenario(load_scenario(DATA / "fake_ok.yaml"), out, jobs=1, progress=False)
    return out


def test_csv_export_round_trips_the_table_and_arrays(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "csv"]) == 0
    assert "results.csv" in capsys.readouterr().out
    table = pq.read_table(run_dir / "results.parquet").to_pylist()
    with open(run_dir / "export" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(table) == 16
    for a, b in zip(rows, table):
        assert float(a["stiffness_error"]) == b["stiffness_error"]  # exact: full precision
        assert a["label"] == b["label"] and int(a["seed"]) == b["seed"]
    rec = read_records(run_dir)[0]
    arr = load_arrays(run_dir / rec["arrays"])
    name = f"r{rec['unit_id']}_{rec['method_key']}".replace("-", "_")
    got = np.genfromtxt(run_dir / "export" / "arrays" / f"{name}.csv", delimiter=",",
                        names=True)
    np.testing.assert_array_equal(got["K"], arr["K"])
    np.testing.assert_array_equal(got["t"], arr["t"])


def test_mat_export_reads_back_in_scipy(run_dir, tmp_path):
    assert main(["export", str(run_dir), "--format", "mat", "--out", str(tmp_path)]) == 0
    m = loadmat(tmp_path / "results.mat", squeeze_me=True, struct_as_record=False)
    table = pq.read_table(run_dir / "results.parquet").to_pylist()
    np.testing.assert_array_equal(m["results"].stiffness_error,
                                  [r["stiffness_error"] for r in table])
    assert list(m["results"].label) == [r["label"] for r in table]
    rec = read_records(run_dir)[0]
    name = f"r{rec['unit_id']}_{rec['method_key']}".replace("-", "_")
    entry = getattr(m["records"], name)
    np.testing.assert_array_equal(entry.K, load_arrays(run_dir / rec["arrays"])["K"])
    assert entry.method == rec["label"] and entry.status == "ok"


def test_export_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "not an impbench run directory" in capsys.readouterr().err


def test_estimate_to_mat_round_trips(tmp_path, capsys):
    rng = np.random.default_rng(7)
    fs, n, reps = 50.0, 50, 6
    t = np.arange(n * reps) / fs
    k = np.where((t % 1.0) < 0.5, 150.0, 50.0)
    u = rng.standard_normal(t.size)
    np.savez(tmp_path / "rec.npz", u=u, y=k * u, fs=fs)
    out = tmp_path / "est.mat"
    assert main(["estimate", str(tmp_path / "rec.npz"), "--method",
                 "tests.runner_fakes:FakeLS", "--period", "1", "--out", str(out)]) == 0
    m = loadmat(out, squeeze_me=True)
    np.testing.assert_allclose(m["t"], np.arange(n) / fs)
    np.testing.assert_allclose(m["K"], k[:n], rtol=1e-9)
    assert '"method": "tests.runner_fakes:FakeLS"' in str(m["meta"])
    # a format it cannot write is refused before anything is computed
    assert main(["estimate", str(tmp_path / "rec.npz"), "--method", "tests.runner_fakes:FakeLS",
                 "--period", "1", "--out", str(tmp_path / "est.xlsx")]) == 2
    assert "unsupported estimate format '.xlsx'" in capsys.readouterr().err
