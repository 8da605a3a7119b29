"""Readers for OpenSim storage, CEINMS trial and C3D analog files (issue 13 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import DataError
from bench.formats import read_c3d_analog, read_ceinms_table, read_storage, write_storage

T = np.linspace(0.0, 1.0, 11)


@pytest.mark.parametrize("version", [1, 3])
def test_storage_round_trip_and_degrees(tmp_path, version):
    data = np.stack([np.linspace(-10, 10, 11), np.linspace(1, 2, 11)], axis=1)
    path = tmp_path / "ik.mot"
    write_storage(path, T, data, ["ankle_angle_r", "ankle_angle_r_moment"], version=version,
                  in_degrees=True)
    tab = read_storage(path)
    np.testing.assert_allclose(tab.time, T)
    np.testing.assert_allclose(tab.column("ankle_angle_r"), np.deg2rad(data[:, 0]), rtol=1e-9)
    np.testing.assert_allclose(tab.column("ankle_angle_r_moment"), data[:, 1])  # not converted
    assert tab.fs == pytest.approx(10.0)


def test_storage_reads_legacy_file_written_by_hand(tmp_path):
    path = tmp_path / "id.sto"
    path.write_text(
        "Inverse Dynamics\nversion=1\nnRows=3\nnColumns=2\ninDegrees=no\nendheader\n"
        "time\tankle_angle_r_moment\n0.0\t1.5\n0.01\t2.5\n0.02\t3.5\n"
    )
    tab = read_storage(path)
    assert tab.columns == ["ankle_angle_r_moment"]
    assert tab.header["name"] == "Inverse Dynamics"


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ("version=1\ntime\ta\n0\t1\n", "no 'endheader'"),
        ("nRows=5\nendheader\ntime\ta\n0\t1\n0.1\t2\n", "nRows=5 but the file has 2"),
        ("endheader\ntime\ta\n0\t1\n0.1\tNaN\n", r":4: column 'a': value is NaN"),
        ("endheader\ntime\ta\n0\t1\n0.1\tabc\n", r":4: column 'a': 'abc' is not a number"),
        ("endheader\ntime\ta\n0\t1\n0.1\n", ":4: expected 2 values, found 1"),
        ("endheader\ntime\ta\n0.1\t1\n0.0\t2\n", "time is not strictly increasing"),
        ("endheader\nframe\ta\n0\t1\n", "first column must be 'time'"),
    ],
)
def test_storage_errors_name_file_and_line(tmp_path, body, msg):
    path = tmp_path / "bad.sto"
    path.write_text(body)
    with pytest.raises(DataError, match=msg) as exc:
        read_storage(path)
    assert "bad.sto" in str(exc.value)


def test_storage_missing_column_lists_columns(tmp_path):
    path = tmp_path / "x.sto"
    write_storage(path, T, np.zeros((11, 1)), ["soleus"])
    with pytest.raises(DataError, match=r"missing column 'tibant'.*soleus"):
        read_storage(path).column("tibant")


def _ceinms(path, rows, extra=""):
    lines = ["datacolumns 3", f"datarows {rows}", "range 0 1", extra + "time\tsoleus\ttibant"]
    lines += [f"{t:.2f}\t{0.1 * i}\t{0.2 * i}" for i, t in enumerate(T)]
    path.write_text("\n".join(lines) + "\n")


def test_ceinms_table(tmp_path):
    path = tmp_path / "emg.txt"
    _ceinms(path, 11)
    tab = read_ceinms_table(path)
    assert tab.columns == ["soleus", "tibant"]
    np.testing.assert_allclose(tab.column("tibant"), 0.2 * np.arange(11))
    _ceinms(path, 12)
    with pytest.raises(DataError, match="datarows=12 but 11 data rows"):
        read_ceinms_table(path)
    path.write_text("columns 3\n")
    with pytest.raises(DataError, match=r"emg.txt:1: expected 'datacolumns N'"):
        read_ceinms_table(path)


@pytest.mark.filterwarnings("ignore:No point data:UserWarning")
def test_c3d_analog_round_trip(tmp_path):
    import c3d

    rate, per_frame, frames = 100.0, 10, 20
    w = c3d.Writer(point_rate=rate, analog_rate=rate * per_frame)
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((2, per_frame * frames)).astype(np.float32)
    for f in range(frames):
        w.add_frames([(np.zeros((0, 5), np.float32), sig[:, f * per_frame:(f + 1) * per_frame])])
    w.set_analog_labels(["EMG_SOL", "EMG_TA"])
    path = tmp_path / "trial.c3d"
    with open(path, "wb") as fh:
        w.write(fh)
    tab = read_c3d_analog(path, ["EMG_TA"])
    np.testing.assert_allclose(tab.column("EMG_TA"), sig[1], rtol=1e-5, atol=1e-6)
    assert tab.header["rate"] == pytest.approx(1000.0)
    with pytest.raises(DataError, match="missing analog channel"):
        read_c3d_analog(path, ["EMG_GM"])
