"""The impbench command line: exit codes, messages, run/report/list/estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import cli, registry

DATA = Path(__file__).parent / "data"
F = "tests.runner_fakes"


def test_validate_broken_exits_2_with_file_line_field(capsys):
    assert cli.main(["validate", str(DATA / "broken_keys.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{DATA / 'broken_keys.yaml'}:8: methods[0].lable: unknown key; did you mean" in err
    assert "2 errors; nothing was run." in err
    assert "Traceback" not in err


def test_validate_ok_prints_summary(capsys):
    assert cli.main(["validate", str(DATA / "fake_ok.yaml")]) == 0
    out = capsys.readouterr().out
    assert "OK: scenario 'fake-ok'" in out and "4 cells x 2 seeds = 8 units, 2 methods" in out


def test_run_refuses_invalid_scenario(tmp_path, capsys):
    assert cli.main(["run", str(DATA / "broken_content.yaml"), "--out", str(tmp_path)]) == 2
    assert "grid.perturbation[1]" in capsys.readouterr().err
    assert not (tmp_path / "cells").exists()


def test_run_then_report_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", str(DATA / "fake_ok.yaml"), "--out", str(out), "--jobs", "1", "--quiet"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "records written: 16 ok, 0 failed, 0 unavailable" in text
    for name in ("results.parquet", "report.md", "report.html", "figures/baseline_K.png"):
        assert (out / name).is_file()
    assert cli.main(argv) == 0
    assert "8 units (8 already finished); records written: 0 ok" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    assert "not an impbench run directory" in capsys.readouterr().err


def test_list_shows_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimators:") and "plants:" in out and "calibrators:" in out
    assert "  msd  [plants.msd:MSDPlant]" in out


def _record(fs: float = 50.0, period: float = 1.0, reps: int = 6):
    rng = np.random.default_rng(7)
    n = int(fs * period)
    t = np.arange(n * reps) / fs
    k = np.where((t % period) < period / 2, 150.0, 50.0)
    u = rng.standard_normal(t.size)
    return t, u, k * u, k[:n]


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_estimate_on_user_record(tmp_path, capsys, suffix):
    t, u, y, k_true = _record()
    src = tmp_path / f"rec{suffix}"
    if suffix == ".csv":
        np.savetxt(src, np.column_stack([t, u, y]), delimiter=",", header="t,u,y", comments="")
    else:
        np.savez(src, u=u, y=y, fs=50.0)
    dst = tmp_path / f"est{suffix}"
    argv = ["estimate", "--method", f"{F}:FakeLS", "--period", "1.0", str(src), "--out", str(dst)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "6 realizations x 50 samples at 50 Hz" in out and f"wrote {dst}" in out
    if suffix == ".csv":
        got = np.genfromtxt(dst, delimiter=",", names=True)
        t_out, k_out = got["t"], got["K"]
    else:
        with np.load(dst) as z:
            t_out, k_out = z["t"], z["K"]
    np.testing.assert_allclose(t_out, np.arange(50) / 50.0)
    np.testing.assert_allclose(k_out, k_true, rtol=1e-9)  # noise-free: exact recovery


def test_estimate_user_errors_exit_2(tmp_path, capsys):
    _, u, y, _ = _record()
    src = tmp_path / "r.npz"
    np.savez(src, u=u, y=y, fs=50.0)
    base = ["estimate", "--period", "1.0", str(src)]
    assert cli.main([*base, "--method", "nosuch"]) == 2
    assert "unknown estimator 'nosuch'" in capsys.readouterr().err
    assert cli.main([*base, "--method", f"{F}:FakeLS", "--param", "delay=-1"]) == 2
    assert "The 'delay' parameter of FakeLS must be" in capsys.readouterr().err
    assert cli.main([*base, "--method", f"{F}:FakeLS", "--param", "delay"]) == 2
    assert "--param expects KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["estimate", "--period", "1", "--method", f"{F}:FakeLS",
                     str(tmp_path / "missing.npz")]) == 2
    with pytest.raises(SystemExit) as info:
        cli.main([*base[:-1], "-1", str(src), "--method", f"{F}:FakeLS"])
    assert info.value.code == 2


def test_command_plugins_register_subcommands(monkeypatch, capsys):
    real = registry.entries

    def entries(kind):
        out = dict(real(kind))
        if kind == "commands":
            out["fake"] = registry.Entry("commands", "fake", f"{F}:register")
            out["broken"] = registry.Entry("commands", "broken", "no_such_pkg.cli:register")
        return out

    monkeypatch.setattr(registry, "entries", entries)
    assert cli.main(["fake-hello", "rig"]) == 0
    got = capsys.readouterr()
    assert got.out == "hello rig\n"
    assert "command plugin 'broken' not available" in got.err
