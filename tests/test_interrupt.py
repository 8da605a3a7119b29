"""Ctrl-C stops ``impbench run`` within seconds, keeps every finished record and prints no
traceback: in one process and with a pool of workers (which ignore SIGINT and are stopped by
the runner)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SLOW = """\
name: slow
plant: {name: msd, params: {duration: 400, variation: K}}
grid: {snr_db: [0, 5, 10, 15, 20, 25]}
methods: [{name: lpv, label: LPV}, {name: kbr, label: KBR}, {name: sds, label: SDS}]
seeds: [0, 1]
metrics: [stiffness_error, nan_share]
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_within_seconds_and_keeps_finished_records(tmp_path, jobs):
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMPBENCH_JAX_CACHE": "off"}
    # The child gets Ctrl-C as from a terminal: a test process started in the background of a
    # non-interactive shell (``cmd &``, as CI runners may) has SIGINT ignored, an ignored signal
    # is inherited across exec, and Python then leaves it ignored. A handler is not inherited.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", str(scenario), "--out", str(out),
             "--jobs", jobs, "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if list((out / "cells").glob("*.json")):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        finished = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=2)  # stops within 2 s (a TimeoutExpired fails)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and any pool workers it left
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; finished records are kept" in err, err
    kept = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert finished.items() <= kept.items()  # nothing finished was lost or rewritten
    for content in kept.values():
        assert json.loads(content)["status"] in ("ok", "failed")  # nothing half-written
    assert not list((out / "cells").glob(".*.tmp"))
