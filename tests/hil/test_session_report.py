"""`impbench report` and `impbench estimate` on a recorded rig session (issue 10, "Done when").

The session is recorded as a user would: ``impbench rig virtual`` runs in its own process (the
first terminal) and ``impbench rig record`` talks to it over the pseudo-terminal (the second).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.metrics import stiffness_error
from hil import protocol as P
from hil.session import _Assembler, _build_dataset, load_session, plan_session, resolve_session
from hil.session_data import find_datasets, is_session_dataset, session_realizations

from .conftest import write_session

REPO = Path(__file__).resolve().parents[2]
#: Mapping trials of 10 s instead of the rig file's 60 s keep the test short; the mapping's
#: stiffness values move by well under 1 % with it (as in test_e2e).
MAPPING_S = "10"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 10 s session (500 Hz, 1 Hz sine pivot, FGWN 2 mm) recorded over a pty."""
    d = tmp_path_factory.mktemp("session")
    # A generous watchdog: the fast virtual rig runs ahead of wall time, and on a loaded test
    # machine a host stall of 50 ms of device time would end the session (not tested here).
    spec = write_session(d, "rig", duration_s=10.0, watchdog_ms=1000)
    link = d / "ttyRIG"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rig = subprocess.Popen([sys.executable, "-m", "hil.cli", "rig", "virtual", "--link",
                            str(link), "--seed", "5"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = rig.stdout.readline()
        assert "virtual rig" in banner and str(link) in banner, rig.stderr.read()
        assert main(["rig", "record", str(spec), "--port", str(link), "--out",
                     str(d / "rig"), "--quiet"]) == 0
    finally:
        rig.send_signal(signal.SIGINT)
        try:
            out, err = rig.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            rig.kill()
            out, err = rig.communicate()
            pytest.fail(f"rig virtual did not stop within 20 s of SIGINT; stdout {out!r}, "
                        f"stderr {err!r}")
    assert rig.returncode == 0, err
    assert "served 5250 samples" in out
    return d


def test_report_shows_estimate_beside_true_mapping(recorded, capsys):
    from estimators.impedance.sds import SDS
    from plants.lever.mapping import true_stiffness_mapping
    from plants.lever.rig import Rig

    assert main(["report", str(recorded), "--mapping-duration", MAPPING_S]) == 0
    out = capsys.readouterr().out
    assert re.search(r"session rig: sds on 10 x 100 at 100 Hz; stiffness error \d", out)
    md = (recorded / "report.md").read_text()
    html = (recorded / "report.html").read_text()
    numbers = json.loads((recorded / "report.json").read_text())
    # Stiffness table and the figure, in both formats (HTML self-contained).
    assert "## Stiffness" in md and "| sds | defaults | 100 | 10 x 100 |" in md
    assert "![Estimated K(t) over the pivot cycle" in md
    assert (recorded / "figures" / "report_K.png").read_bytes()[:4] == b"\x89PNG"
    b64 = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html).group(1)
    assert base64.b64decode(b64)[:4] == b"\x89PNG"
    assert "<h2>Stiffness</h2>" in html and "<td>sds</td>" in html
    # Sample counts, gaps, faults, firmware, clocks.
    assert "| received | 5250 |" in md and "| missing | 0 |" in md
    assert "## Gaps\n\nnone" in md and "## Faults\n\nnone" in md
    assert "| firmware | 0.1.0 |" in md and "| device span [s] | 10.5 |" in md
    assert "wall clock start (UTC)" in md
    # The number in the report is the stiffness error (004:Eq.6-7) of SDS on the session,
    # decimated to 100 Hz (004 Sec. IV-B), against the rig's FGWN mapping (004 App. B).
    meta = json.loads((recorded / "rig.json").read_text())
    mapping = true_stiffness_mapping(Rig.model_validate(meta["rig_description"]), "fgwn",
                                     duration=float(MAPPING_S))
    np.testing.assert_allclose(numbers["mapping"]["coef"], mapping.coef, rtol=1e-12)
    R = session_realizations(recorded / "rig", truth=mapping, decimate_by=5)
    want = stiffness_error(R.truth.K, SDS().estimate(R).K)
    assert numbers["stiffness_error_pct"] == pytest.approx(want, rel=1e-9)
    assert f"| {want:.3g} |" in md
    assert want < 30.0  # thesis, mechanical study: SDS 12.1 % median (004 Table V)
    assert numbers["r2"] > 0.64  # it follows the pivot cycle (correlation > 0.8)
    assert numbers["received"] == numbers["total"] == 5250 and numbers["firmware"] == "0.1.0"


def test_report_method_choice_and_mapping_cache(recorded, capsys):
    args = ["report", str(recorded / "rig.npz"), "--mapping-duration", MAPPING_S]
    assert main([*args, "--method", "eirf"]) == 0
    first = json.loads((recorded / "report.json").read_text())
    assert first["method"] == "eirf" and "| eirf | defaults |" in (recorded /
                                                                     "report.md").read_text()
    # The mapping trials ran once for this rig + perturbation + trial length: now cached.
    assert "cached in rig.mapping.json" in (recorded / "report.md").read_text()
    assert main([*args, "--method", "sds", "--param", "window=20", "--decimate", "10"]) == 0
    again = json.loads((recorded / "report.json").read_text())
    assert again["params"] == {"window": 20} and again["fs_identification"] == 50.0
    assert again["mapping"] == first["mapping"]
    assert np.isfinite(again["stiffness_error_pct"])
    capsys.readouterr()
    # A bad hyper-parameter is a user error naming it (exit 2).
    assert main([*args, "--param", "window=0"]) == 2
    assert "'window'" in capsys.readouterr().err


def test_estimate_cli_takes_the_session_dataset(recorded, tmp_path, capsys):
    from estimators.impedance.sds import SDS

    out = tmp_path / "k.csv"
    assert main(["estimate", "--method", "sds", "--period", "1", "--decimate", "5",
                 str(recorded / "rig.npz"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "10 realizations x 100 samples at 100 Hz (period 1 s); method sds" in text
    got = np.genfromtxt(out, delimiter=",", names=True)
    R = session_realizations(recorded / "rig", truth=None, decimate_by=5)
    want = SDS().estimate(R)
    np.testing.assert_allclose(got["t"], R.t)
    np.testing.assert_allclose(got["K"], want.K, rtol=1e-12, equal_nan=True)
    # At the recorded rate, with a period that halves the realizations' length.
    assert main(["estimate", "--method", "sds", "--period", "0.5", str(recorded / "rig")]) == 0
    assert "20 realizations x 250 samples at 500 Hz" in capsys.readouterr().out
    # --decimate works on plain records too; a CSV beside a dataset stays a CSV record.
    rng = np.random.default_rng(1)
    u = rng.standard_normal(5000) * 1e-3
    csv = recorded / "rig.csv"
    np.savetxt(csv, np.column_stack([np.arange(5000) / 500, u, 1500 * u]), delimiter=",",
               header="t,u,y", comments="")
    try:
        assert main(["estimate", "--method", "sds", "--period", "1", "--decimate", "5",
                     str(csv)]) == 0
    finally:
        csv.unlink()
    text = capsys.readouterr().out
    assert "10 realizations x 100 samples at 100 Hz" in text
    assert float(re.search(r"K  mean (\S+)", text).group(1)) == pytest.approx(1500, rel=0.02)


def _gappy_dataset(directory: Path) -> Path:
    """A dataset of a constant 1500 N/m spring with two gap runs and a FAULT (no rig)."""
    path = write_session(directory, "gappy", duration_s=10.0)
    res = resolve_session(load_session(path), directory)
    plan = plan_session(res)
    rng = np.random.default_rng(7)
    u_um = np.round(2000 * rng.standard_normal(plan.total)).astype(int)
    missing = set(range(plan.n_settle + 1200, plan.n_settle + 1210)) | {plan.n_settle + 4000}
    asm = _Assembler(plan.total)
    asm.add(P.Hello(1, 0, 2, 0, 9, 500, 3, 128, 56), 0.0, 0)
    for i in range(plan.total):
        if i not in missing:  # force = 1500 N/m x displacement, in mN; 2000 us per sample
            asm.add(P.Sample(i, 2000 * i, int(u_um[i]), round(1.5 * u_um[i]),
                             int(plan.pivot.ravel()[i]) * 10, 0, 1), 0.002 * i, 0)
    asm.add(P.Fault(int(P.FaultCode.UNDERRUN), plan.n_settle + 1200, 0), 2.9, 0)
    ds = _build_dataset(asm, plan, res, {"recovered": True, "raw_log": "gappy.rawlog"})
    ds.save(directory / "gappy")
    return directory / "gappy"


def test_report_lists_gaps_faults_and_dropped_periods(tmp_path, capsys):
    stem = _gappy_dataset(tmp_path)
    assert find_datasets(tmp_path) == [stem] and is_session_dataset(stem.with_suffix(".json"))
    assert main(["report", str(tmp_path), "--truth", "none"]) == 0
    md = (tmp_path / "report.md").read_text()
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert numbers["gaps"] == {"missing": 11, "runs": [[1450, 10], [4250, 1]]}
    assert "| 1450 | 10 | 2.9 | 0 |" in md and "| 4250 | 1 | 8.5 | 0 |" in md
    assert f"| UNDERRUN | {int(P.FaultCode.UNDERRUN)} | 1450 | 0 | 0 |" in md
    assert "| periods used / dropped (gaps, restarts) | 8 / 2 |" in md
    assert "| firmware | 0.2.0 |" in md and "| recovered from raw log | True |" in md
    assert "No true stiffness: no truth requested." in md
    assert numbers["stiffness_error_pct"] is None
    # The estimate of the constant spring is right without any truth to compare with.
    assert numbers["K_est_mean"] == pytest.approx(1500.0, rel=0.02)
    # `impbench estimate` drops the same two periods.
    assert main(["estimate", "--method", "sds", "--period", "1", "--decimate", "5",
                 str(stem) + ".json"]) == 0
    assert "8 realizations x 100 samples" in capsys.readouterr().out


def test_report_dispatch_keeps_run_directories_and_hints_recover(tmp_path, capsys):
    # Neither a run nor a session: the scenario-run error, as before.
    assert main(["report", str(tmp_path)]) == 2
    assert "not an impbench run directory" in capsys.readouterr().err
    # Only a raw log (a crashed host): point at `rig recover`.
    (tmp_path / "s.rawlog").write_bytes(b"IMPBENCH-RAWLOG v1\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "impbench rig recover" in capsys.readouterr().err
    assert not find_datasets(tmp_path) and not is_session_dataset(tmp_path / "s")


def test_recorded_dataset_carries_both_clocks(recorded):
    # The recorded dataset carries both clocks: device span = 10.5 s of samples at 2000 us.
    meta = json.loads((recorded / "rig.json").read_text())
    assert meta["clocks"]["device_span_s"] == pytest.approx(10.5 - 0.002)
    assert meta["wall"]["ended"] > meta["wall"]["started"] > time.time() - 3600
