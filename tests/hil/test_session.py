"""Session files, plans, raw logs and datasets (no rig needed)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import DataError, ScenarioError
from hil import protocol as P
from hil.session import (
    RawLog,
    SessionDataset,
    SessionError,
    _Assembler,
    _build_dataset,
    load_dataset,
    load_session,
    plan_session,
    read_raw_log,
    resolve_session,
    session_config,
)


def test_shipped_session_file_is_valid():
    spec = load_session("scenarios/rig-session.yaml")
    res = resolve_session(spec, "scenarios")
    assert res.fs == 1000 and res.control_divider == 2
    plan = plan_session(res)
    assert plan.total == (20 + 0.5) * 1000
    cfg = session_config(res)
    assert cfg.pivot_min_um == round(res.rig.geometry.pivot_min * 1e6)


@pytest.mark.parametrize(
    ("over", "field", "key"),
    [
        ({"duration_s": -1}, "session.duration_s", "duration_s"),
        ({"pivot": {"frequency_hz": 0.35}}, "session.duration_s", "duration_s"),
        ({"perturbation": {"signal": "chirp"}}, "session.perturbation.signal", "signal"),
        ({"colour": "red"}, "session.colour", "colour"),
        ({"pivot": {"center_mm": "x"}}, "session.pivot.center_mm", "center_mm"),
    ],
)
def test_session_errors_name_file_line_and_field(session_file, over, field, key):
    path = session_file("bad", **over)
    with pytest.raises(ScenarioError) as err:
        load_session(path)
    msg = str(err.value)
    lines = path.read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.strip().startswith(f"{key}:"))
    assert f"{path}:{line}: {field}: " in msg


def test_session_must_fit_the_rig(session_file, tmp_path):
    def line_of(path, key):
        return next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                    if t.strip().startswith(f"{key}:"))

    path = session_file("wide", pivot={"amplitude_mm": 45.0})
    with pytest.raises(ScenarioError, match=rf":{line_of(path, 'pivot')}: session\.pivot: .*"
                                            "pivot limits"):
        resolve_session(load_session(path), tmp_path, str(path))
    path = session_file("rate", sample_rate_hz=700)
    with pytest.raises(ScenarioError, match=rf":{line_of(path, 'sample_rate_hz')}: "
                                            r"session\.sample_rate_hz: 700 Hz"):
        resolve_session(load_session(path), tmp_path, str(path))
    path = session_file("big", perturbation={"level_mm": 20.0})
    with pytest.raises(ScenarioError, match=rf":{line_of(path, 'level_mm')}: "
                                            r"session\.perturbation\.level_mm: "):
        plan_session(resolve_session(load_session(path), tmp_path, str(path)))
    path = session_file("norig", rig="missing.yaml")
    with pytest.raises(ScenarioError, match=rf":{line_of(path, 'rig')}: session\.rig: "):
        resolve_session(load_session(path), tmp_path, str(path))


def test_plan_is_deterministic_and_scaled(session_file, tmp_path):
    res = resolve_session(load_session(session_file(repetitions=2)), tmp_path)
    a, b = plan_session(res), plan_session(res)
    np.testing.assert_array_equal(a.actuator, b.actuator)
    assert a.actuator.shape == (2, 5250)
    run = a.actuator[:, a.n_settle:] * P.SETPOINT_UNIT_UM * 1e-3  # mm
    np.testing.assert_allclose(run.std(axis=1), 2.0, rtol=2e-3)  # level_mm, to quantization
    assert not np.array_equal(a.actuator[0], a.actuator[1])  # own draw per repetition
    assert np.all(a.actuator[:, : a.n_settle] == 0)
    piv = a.pivot[0, a.n_settle:] * 1e-2  # mm
    assert piv.min() == pytest.approx(225.0, abs=0.02) and piv.max() == pytest.approx(275.0,
                                                                                     abs=0.02)


def test_raw_log_survives_torn_tail_and_never_overwrites(tmp_path):
    path = tmp_path / "x.rawlog"
    log = RawLog(path)
    log.meta({"kind": "session", "n": 1})
    wires = [P.encode_frame(P.Heartbeat(), s)[:-1] for s in range(5)]
    for w in wires:
        log.rx(w, 1.5, 0)
    log.event("done", {"ok": True})
    log.close()
    with open(path, "ab") as f:  # a crash mid-record
        f.write(b"\x05\x01\x02")
    metas, rx, events, torn = read_raw_log(path)
    assert metas == [{"kind": "session", "n": 1}]
    assert [r[2] for r in rx] == wires and rx[0][0] == pytest.approx(1.5)
    assert events == [{"event": "done", "ok": True}]
    assert torn == 1
    with pytest.raises(SessionError, match="never overwritten"):
        RawLog(path)
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(DataError, match="not an impbench raw log"):
        read_raw_log(tmp_path / "junk")


def test_deferred_raw_log_is_created_only_when_started(tmp_path):
    path = tmp_path / "d.rawlog"
    log = RawLog(path, deferred=True)
    log.meta({"kind": "session"})
    log.rx(P.encode_frame(P.Heartbeat(), 0)[:-1], 1.0, 0)
    assert not path.exists() and not log.started
    log.close()  # never started (the handshake failed): nothing on disk
    assert not path.exists()
    log = RawLog(path, deferred=True)
    log.meta({"kind": "session"})
    log.rx(P.encode_frame(P.Heartbeat(), 0)[:-1], 1.0, 0)
    log.start()  # the rig answered: the records kept so far come first
    log.event("done", {"ok": True})
    log.close()
    metas, rx, events, torn = read_raw_log(path)
    assert metas == [{"kind": "session"}] and len(rx) == 1 and torn == 0
    assert events == [{"event": "done", "ok": True}]
    with pytest.raises(SessionError, match="never overwritten"):
        RawLog(path, deferred=True)  # refused before any port is opened


def test_dataset_realizations_drop_periods_with_gaps(session_file, tmp_path):
    res = resolve_session(load_session(session_file()), tmp_path)
    plan = plan_session(res)
    asm = _Assembler(plan.total)
    missing = {plan.n_settle + 1200, plan.n_settle + 1201, plan.n_settle + 4000}
    for i in range(plan.total):
        if i not in missing:
            asm.add(P.Sample(i, 2000 * i, 10 * i, i, 250000, 0, 1), float(i), 0)
    asm.add(P.Sample(10**7, 0, 0, 0, 0, 0, 0), 0.0, 0)  # beyond the session: not stored
    asm.add(P.Sample(5, 0, 0, 0, 0, 0, 0), 0.0, 0)  # repeat: first copy kept
    ds = _build_dataset(asm, plan, res, {"recovered": False})
    assert ds.gaps == {"missing": 3, "runs": [[plan.n_settle + 1200, 2],
                                              [plan.n_settle + 4000, 1]]}
    assert ds.meta["samples_out_of_range"] == 1 and ds.meta["samples_repeated"] == 1
    assert ds.arrays["act_m"][5] == pytest.approx(50e-6)
    R = ds.realizations(rig_truth=lambda p: 2.0 * p)
    assert R.N == 500 and R.R == 10 - 2  # periods 2 and 8 hold gaps
    assert ds.meta["period_s"] == 1.0 and R.meta["dropped_periods"] == 2
    np.testing.assert_allclose(R.truth.K, 2 * 0.25)
    ds.save(tmp_path / "ds")
    back = load_dataset(tmp_path / "ds.npz")
    assert isinstance(back, SessionDataset) and back.gaps == ds.gaps
    np.testing.assert_array_equal(back.arrays["valid"], ds.arrays["valid"])
    asm2 = _Assembler(plan.total)
    with pytest.raises(DataError, match="no complete pivot period"):
        _build_dataset(asm2, plan, res, {}).realizations()


def test_hostile_session_datasets_are_data_errors(session_file, tmp_path, capsys):
    import json

    from bench.cli import main
    from hil.session_data import is_session_dataset

    res = resolve_session(load_session(session_file()), tmp_path)
    plan = plan_session(res)
    asm = _Assembler(plan.total)
    for i in range(plan.total):
        asm.add(P.Sample(i, 2000 * i, 10 * i, i, 250000, 0, 1), float(i), 0)
    npz, js = _build_dataset(asm, plan, res, {"recovered": False}).save(tmp_path / "ds")
    meta = json.loads(js.read_text())
    cases = {
        "fs": {**meta, "fs": "fast"},
        "total": {**meta, "total": -3},
        "period": {**meta, "period_s": float("nan")},
    }
    for key, bad in cases.items():
        js.write_text(json.dumps(bad))
        assert is_session_dataset(npz)
        rc = main(["estimate", str(npz), "--method", "sds", "--period", "1"])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, (key, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (key, err)
    js.write_text(json.dumps({**meta, "spec": {"name": ".."}, "rig_description": {}}))
    from hil.session_data import session_mapping

    with pytest.raises(DataError, match="session spec is invalid"):
        session_mapping(load_dataset(npz))
    js.write_text("[" * 100_000 + "]" * 100_000)  # deeper than json's recursion limit
    assert not is_session_dataset(npz)
    js.write_text(json.dumps(meta))
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DataError, match=r"cannot read as \.npz"):
        load_dataset(npz)
