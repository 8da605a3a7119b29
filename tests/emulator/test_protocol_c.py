"""The firmware's C protocol code (``hil/firmware/rig/protocol.c``), compiled with the host gcc
and run against the shared vectors ``hil/vectors/protocol_vectors.json`` (not an emulator test:
it needs only gcc)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from hil.firmware_build import FIRMWARE_DIR, build_protocol_tests, write_vector_header
from hil.protocol import build_vectors

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="gcc is not installed: the C protocol tests need it")


def test_c_protocol_matches_the_shared_vectors(tmp_path):
    exe = build_protocol_tests(tmp_path)
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout
    checks, failures = (int(x) for x in p.stdout.split()[-4::2])
    assert failures == 0 and checks >= 300, p.stdout


def test_the_vector_file_is_the_one_the_python_side_generates():
    path = FIRMWARE_DIR.parent / "vectors" / "protocol_vectors.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(build_vectors()))


def test_a_wrong_vector_makes_the_c_tests_fail(tmp_path):
    v = build_vectors()
    v["frames"][9]["wire"] = v["frames"][9]["wire"][:-4] + "ff00"  # corrupt one SAMPLE frame
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(v))
    exe = build_protocol_tests(tmp_path / "b", bad)
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "FAIL" in p.stdout
    write_vector_header(v, tmp_path / "h.h")
    assert "SAMPLE" in (tmp_path / "h.h").read_text()
