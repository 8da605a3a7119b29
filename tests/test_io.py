"""Record loaders (.npz, .csv, .mat) and atomic estimate writers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io

from bench.errors import DataError
from bench.io import load_record, save_estimate
from bench.types import Realizations

FS = 100.0


def _record(n: int = 250, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return {
        "t": t,
        "u": rng.standard_normal(n),
        "y": rng.standard_normal(n),
        "schedule": np.sin(2 * np.pi * t),
    }


def _write_csv(path, rec: dict, cols=("t", "u", "y", "schedule"), header=None) -> None:
    header = header if header is not None else ",".join(cols)
    rows = np.column_stack([rec[c] for c in cols])
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for r in rows:
            fh.write(",".join(repr(float(v)) for v in r) + "\n")


# --------------------------------------------------------------------------- formats


def test_load_npz_with_fs(tmp_path):
    rec = _record()
    p = tmp_path / "rec.npz"
    np.savez(p, u=rec["u"], y=rec["y"], fs=FS, schedule=rec["schedule"])
    out = load_record(p)
    np.testing.assert_array_equal(out["u"], rec["u"])
    np.testing.assert_array_equal(out["y"], rec["y"])
    np.testing.assert_array_equal(out["schedule"], rec["schedule"])
    assert out["fs"] == FS
    np.testing.assert_allclose(out["t"], rec["t"], atol=1e-15)
    # straight into the ensemble cut
    data = Realizations.from_record(out["u"], out["y"], out["fs"], 1.0, schedule=out["schedule"])
    assert data.u.shape == (2, 100)


def test_load_npz_with_time_only(tmp_path):
    rec = _record()
    p = tmp_path / "rec.npz"
    np.savez(p, u=rec["u"], y=rec["y"], t=rec["t"] + 3.0)
    out = load_record(p)
    assert out["fs"] == pytest.approx(FS, rel=1e-12)
    assert out["t"][0] == 3.0
    assert "schedule" not in out


def test_load_csv(tmp_path):
    rec = _record()
    p = tmp_path / "rec.csv"
    _write_csv(p, rec)
    out = load_record(p)
    for k in ("t", "u", "y", "schedule"):
        np.testing.assert_array_equal(out[k], rec[k])
    assert out["fs"] == pytest.approx(FS, rel=1e-12)


def test_load_csv_any_column_order_extra_columns_and_comments(tmp_path):
    rec = _record(50)
    rec["emg"] = np.ones(50)
    p = tmp_path / "rec.csv"
    rows = np.column_stack([rec["y"], rec["emg"], rec["t"], rec["u"]])
    with open(p, "w") as fh:
        fh.write("# rig 3, session 7\n\n Y , EMG,t,u\n")
        for r in rows:
            fh.write(",".join(repr(float(v)) for v in r) + "\n")
    out = load_record(p)
    np.testing.assert_array_equal(out["u"], rec["u"])
    np.testing.assert_array_equal(out["y"], rec["y"])
    assert "schedule" not in out


def test_load_mat(tmp_path):
    rec = _record()
    p = tmp_path / "rec.mat"
    # MATLAB stores vectors as (N, 1) or (1, N) matrices
    scipy.io.savemat(p, {"u": rec["u"][:, None], "y": rec["y"][None, :], "fs": FS})
    out = load_record(p)
    np.testing.assert_array_equal(out["u"], rec["u"])
    np.testing.assert_array_equal(out["y"], rec["y"])
    assert out["fs"] == FS
    p2 = tmp_path / "rec_t.mat"
    scipy.io.savemat(p2, {"u": rec["u"], "y": rec["y"], "t": rec["t"], "schedule": rec["t"]})
    out2 = load_record(p2)
    assert out2["fs"] == pytest.approx(FS)
    np.testing.assert_array_equal(out2["schedule"], rec["t"])


# --------------------------------------------------------------------------- errors


def test_csv_nan_names_line_and_column(tmp_path):
    rec = _record(20)
    rec["y"][6] = np.nan
    p = tmp_path / "bad.csv"
    _write_csv(p, rec)
    # header is line 1, sample 6 is on line 8
    with pytest.raises(DataError, match=r"bad\.csv, line 8, column 'y': non-finite"):
        load_record(p)


def test_csv_non_numeric_names_line_and_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t,u,y\n0.0,1,2\n0.01,abc,2\n0.02,1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 3, column 'u': non-numeric value 'abc'"):
        load_record(p)


def test_csv_missing_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t,u,torque\n0.0,1,2\n0.01,1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 1: missing column 'y'"):
        load_record(p)


def test_csv_short_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t,u,y\n0.0,1,2\n0.01,1\n")
    with pytest.raises(DataError, match=r"line 3: 2 field\(s\)"):
        load_record(p)


def test_csv_unsorted_time(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t,u,y\n0.00,1,2\n0.01,1,2\n0.03,1,2\n0.02,1,2\n")
    with pytest.raises(DataError, match=r"line 5, column 't': time is not strictly increasing"):
        load_record(p)


def test_csv_non_uniform_time(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("t,u,y\n0.00,1,2\n0.01,1,2\n0.02,1,2\n0.035,1,2\n0.04,1,2\n")
    with pytest.raises(DataError, match=r"line 5, column 't': time is not uniformly sampled"):
        load_record(p)


def test_csv_empty_and_too_short(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("# nothing\n")
    with pytest.raises(DataError, match="empty CSV"):
        load_record(p)
    p2 = tmp_path / "one.csv"
    p2.write_text("t,u,y\n0.0,1,2\n")
    with pytest.raises(DataError, match="at least 2 data lines"):
        load_record(p2)


def test_npz_missing_variable_and_sampling(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, u=np.zeros(10), fs=FS)
    with pytest.raises(DataError, match=r"bad\.npz: missing variable 'y'"):
        load_record(p)
    p2 = tmp_path / "nofs.npz"
    np.savez(p2, u=np.zeros(10), y=np.zeros(10))
    with pytest.raises(DataError, match="'fs' or a time vector 't'"):
        load_record(p2)


def test_npz_bad_values(tmp_path):
    p = tmp_path / "bad.npz"
    y = np.zeros(10)
    y[4] = np.inf
    np.savez(p, u=np.zeros(10), y=y, fs=FS)
    with pytest.raises(DataError, match=r"'y' has 1 non-finite value\(s\); first at index 4"):
        load_record(p)
    np.savez(p, u=np.zeros(10), y=np.zeros(9), fs=FS)
    with pytest.raises(DataError, match="differ in length"):
        load_record(p)
    np.savez(p, u=np.zeros(10), y=np.zeros(10), fs=-5.0)
    with pytest.raises(DataError, match="fs must be a positive"):
        load_record(p)
    np.savez(p, u=np.zeros(10), y=np.zeros(10), fs=FS, t=np.arange(10) / 50.0)
    with pytest.raises(DataError, match="disagrees with the time vector"):
        load_record(p)
    np.savez(p, u=np.zeros((2, 10)), y=np.zeros((2, 10)), fs=FS)
    with pytest.raises(DataError, match="'u' must be a 1-D record"):
        load_record(p)


def test_mat_missing_variable(tmp_path):
    p = tmp_path / "bad.mat"
    scipy.io.savemat(p, {"u": np.zeros(10), "fs": FS})
    with pytest.raises(DataError, match=r"bad\.mat: missing variable 'y'"):
        load_record(p)


def test_unsupported_format_and_missing_file(tmp_path):
    p = tmp_path / "rec.txt"
    p.write_text("t,u,y\n")
    with pytest.raises(DataError, match=r"rec\.txt: unsupported record format '\.txt'"):
        load_record(p)
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_record(tmp_path / "nope.npz")
    p2 = tmp_path / "garbage.npz"
    p2.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"garbage\.npz: cannot read"):
        load_record(p2)


# --------------------------------------------------------------------------- saving


def test_save_estimate_npz_roundtrip(tmp_path):
    t = np.arange(100) / FS
    K = 100 + 50 * np.sign(np.sin(2 * np.pi * t))
    K[:3] = np.nan
    B = np.full(100, 2.2)
    p = save_estimate(tmp_path / "est.npz", t, K, B=B, I=0.02)
    with np.load(p) as z:
        np.testing.assert_array_equal(z["t"], t)
        np.testing.assert_array_equal(z["K"], K)
        np.testing.assert_array_equal(z["B"], B)
        assert float(z["I"]) == 0.02
    assert os.listdir(tmp_path) == ["est.npz"]  # no temporary left behind


def test_save_estimate_csv_roundtrip(tmp_path):
    t = np.arange(50) / FS
    K = np.linspace(50, 150, 50)
    K[10] = np.nan
    p = save_estimate(tmp_path / "est.csv", t, K, I=0.02)
    lines = p.read_text().splitlines()
    assert lines[0] == "t,K,I"
    table = np.genfromtxt(p, delimiter=",", skip_header=1)
    np.testing.assert_array_equal(table[:, 0], t)  # 17 significant digits: exact
    np.testing.assert_array_equal(table[:, 1], K)
    np.testing.assert_array_equal(table[:, 2], 0.02)


def test_save_estimate_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "est.csv"
    target.write_text("previous content\n")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # the write fails after the temporary is open
    with pytest.raises(OSError, match="disk full"):
        save_estimate(target, np.arange(5.0), np.ones(5))
    # the old file is untouched and no temporary is left
    assert target.read_text() == "previous content\n"
    assert os.listdir(tmp_path) == ["est.csv"]


def test_save_estimate_csv_precision_and_mat_round_trip(tmp_path):
    from scipy.io import loadmat

    t = np.arange(4) * 0.01
    k = np.array([100.0, np.nan, 1 / 3, 2e-7])
    save_estimate(tmp_path / "e.csv", t * 3, k, I=0.02)
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "t,K,I" and lines[2] == "0.03,nan,0.02"  # not 0.029999999999999999
    back = np.genfromtxt(tmp_path / "e.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(back["K"][[0, 2, 3]], k[[0, 2, 3]])  # exact round trip
    save_estimate(tmp_path / "e.mat", t, k, B=np.ones(4), meta={"method": "sds"})
    m = loadmat(tmp_path / "e.mat", squeeze_me=True)
    np.testing.assert_array_equal(m["t"], t)
    np.testing.assert_array_equal(m["K"], k)
    assert m["B"].shape == (4,) and str(m["meta"]) == '{"method": "sds"}'


def test_save_estimate_errors(tmp_path):
    t = np.arange(5.0)
    with pytest.raises(DataError, match=r"unsupported estimate format '\.json'"):
        save_estimate(tmp_path / "e.json", t, np.ones(5))
    with pytest.raises(DataError, match=r"B must have the shape of t \(5,\)"):
        save_estimate(tmp_path / "e.npz", t, np.ones(5), B=np.ones(4))
    with pytest.raises(DataError, match="finite 1-D time"):
        save_estimate(tmp_path / "e.npz", np.array([0.0, np.nan]), np.ones(2))
    with pytest.raises(FileNotFoundError):
        save_estimate(tmp_path / "missing" / "e.npz", t, np.ones(5))
