"""Hostile input (issue 18): every file a user hands the bench gets a located error.

One test per case of the issue that concerns scenario files, rig session files and
``impbench estimate``. Each runs the command line in-process (:func:`bench.cli.main`) from
a working directory inside ``tmp_path`` and checks the outcome: exit 2, every message line
located (``FILE:LINE: field: message``, or ``FILE: message`` for encoding and size), never a
traceback, and nothing written outside the folder the command was given. Memory bounds are
asserted (``tracemalloc``), never wall-clock times.
"""

from __future__ import annotations

import os
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = (REPO / "scenarios" / "quickstart.yaml").read_text()
SESSION = (REPO / "scenarios" / "rig-session.yaml").read_text()
SUMMARY = re.compile(r"\d+ errors?; nothing was run\.")
MORE = re.compile(r".+: \.\.\. and \d+ more issues not shown")  # beyond the issues shown


def _listing(root: Path) -> set[str]:
    """Every path below ``root`` (relative), caches left out."""
    skip = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"}
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip]
        rel = os.path.relpath(d, root)
        out.update(os.path.join(rel, f) for f in files + dirs)
    return out


@pytest.fixture
def work(tmp_path, monkeypatch):
    """``tmp_path/in`` for the hostile files, the working directory ``tmp_path/cwd``; after
    the test, nothing new anywhere in ``tmp_path`` but what the test wrote itself, and nothing
    new at the repository's top level or in ``runs/`` and ``scenarios/``."""
    (tmp_path / "in").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    repo_before = {p for p in os.listdir(REPO)} | _listing(REPO / "scenarios")
    yield tmp_path / "in"
    assert os.listdir(tmp_path / "cwd") == [], "a command wrote into the working directory"
    assert sorted(os.listdir(tmp_path)) == ["cwd", "in"], "a command wrote beside its folder"
    repo_after = {p for p in os.listdir(REPO)} | _listing(REPO / "scenarios")
    assert not {p for p in repo_after - repo_before
                if "evil" in p or p.endswith((".rawlog", ".parquet", "scenario.json"))}


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _run(capsys, *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(rc: int, err: str, file: Path, *, line: bool = True) -> list[str]:
    """Exit 2, no traceback, every line located at ``file`` (with a line number unless
    ``line`` is False); returns the issue lines."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines and SUMMARY.fullmatch(lines[-1]), err
    pattern = re.escape(str(file)) + (r":\d+: \S" if line else r": \S")
    for x in lines[:-1]:  # the count of the issues not shown is located too
        assert re.match(pattern, x), x
    issues = [x for x in lines[:-1] if not MORE.fullmatch(x)]
    assert issues
    return issues


def _estimate_refused(rc: int, err: str) -> str:
    """Exit 2 with one ``error: ...`` line, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --------------------------------------------------------------------------- scenario files


def _billion_laughs() -> str:
    """Nine levels of nine aliases: 9**9 (387 million) values once expanded."""
    text = 'lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, 10):
        text += f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
    return text


def test_anchor_bomb_is_refused_at_its_line_in_bounded_memory(work, capsys):
    path = _write(work, "bomb.yaml", QUICKSTART + _billion_laughs())
    _run(capsys, "validate", path)  # imports and caches warm, outside the measurement
    tracemalloc.start()
    try:
        rc, _, err = _run(capsys, "validate", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (issue,) = _refused(rc, err, path)
    assert "anchor bomb" in issue
    first = QUICKSTART.count("\n") + 1  # line of lol0
    line = int(re.match(rf"{re.escape(str(path))}:(\d+): alias \*l\d ", issue).group(1))
    assert first < line < first + 10
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_recursive_alias_is_refused(work, capsys):
    path = _write(work, "loop.yaml", QUICKSTART + "extra: &x [1, *x]\n")
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert "recursive" in issue


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (QUICKSTART.encode().replace(b"Quickstart", b"Quickst\xe4rt"),
         r"not UTF-8 text \(byte 0xe4 at offset 9\)"),
        (bytes(range(256)) * 4, r"not UTF-8 text \(byte 0x80 at offset 128\)"),
        (b"\x00\x01\x02" + QUICKSTART.encode(), r"not UTF-8 text \(byte 0x00 at offset 0\)"),
        (QUICKSTART.encode("utf-16"), r"not UTF-8 text \(UTF-16 byte-order mark 0x"),
        (QUICKSTART.encode("utf-32"), r"not UTF-8 text \(UTF-32 byte-order mark 0x"),
    ],
    ids=["latin-1", "binary", "nul", "utf-16", "utf-32"],
)
def test_non_utf8_scenario_is_refused_with_byte_and_offset(work, capsys, content, message):
    path = _write(work, "enc.yaml", content)
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path, line=False)
    assert re.fullmatch(rf"{re.escape(str(path))}: {message}.*", issue)


def test_scenario_without_seeds_names_the_missing_key(work, capsys):
    path = _write(work, "noseeds.yaml", QUICKSTART.replace("seeds: [0, 1]\n", ""))
    issues = _refused(*_run(capsys, "validate", path)[::2], path)
    assert any(re.search(r":\d+: seeds: required key is missing", x) for x in issues)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_nesting_is_refused(work, capsys, depth):
    path = _write(work, "deep.yaml", QUICKSTART + "extra: " + "[" * depth + "]" * depth + "\n")
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert "nesting deeper than" in issue


def test_200000_seeds_are_refused(work, capsys):
    seeds = "seeds: [" + ", ".join(map(str, range(200_000))) + "]"
    path = _write(work, "seeds.yaml", QUICKSTART.replace("seeds: [0, 1]", seeds))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path, line=False)
    assert "larger than" in issue


def test_45000_seeds_are_refused_by_the_grid_size(work, capsys):
    # Under the reader's limits (1 MiB, 50 000 values): the scenario's own size check answers.
    seeds = "seeds: [" + ", ".join(map(str, range(45_000))) + "]"
    path = _write(work, "seeds.yaml", QUICKSTART.replace("seeds: [0, 1]", seeds))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert "45000 seeds" in issue and "records" in issue


def test_45000_duplicate_seeds_are_each_reported(work, capsys):
    seeds = "seeds: [" + ", ".join(["7"] * 45_000) + "]"
    path = _write(work, "seeds.yaml", QUICKSTART.replace("seeds: [0, 1]", seeds))
    rc, _, err = _run(capsys, "validate", path)
    issues = _refused(rc, err, path)
    # every duplicate is found; the first 50 are shown and the rest counted
    assert len(issues) == 50 and all("duplicate seed" in x for x in issues)
    assert "... and 44949 more issues not shown" in err and "44999 errors;" in err


def test_8000_duplicate_levels_of_one_factor_are_refused(work, capsys):
    levels = "snr_db: [" + ", ".join(["5"] * 8000) + "]"
    path = _write(work, "levels.yaml", QUICKSTART.replace("snr_db: [0, 10]", levels))
    issues = _refused(*_run(capsys, "validate", path)[::2], path)
    assert any("grid.snr_db" in x for x in issues)


@pytest.mark.slow
def test_8000_distinct_levels_of_one_factor_validate(work, capsys):
    levels = "snr_db: [" + ", ".join(f"{0.01 * i:.2f}" for i in range(8000)) + "]"
    path = _write(work, "levels.yaml", QUICKSTART.replace("snr_db: [0, 10]", levels))
    rc, out, err = _run(capsys, "validate", path)
    assert rc == 0, err
    assert "16000 cells" in out


@pytest.mark.parametrize("seed", ["9223372036854775808", "-1", "1" * 5000])
def test_seed_outside_the_int64_range_is_refused(work, capsys, seed):
    path = _write(work, "seed.yaml", QUICKSTART.replace("seeds: [0, 1]", f"seeds: [0, {seed}]"))
    issues = _refused(*_run(capsys, "validate", path)[::2], path)
    seeds_line = next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                      if t.startswith("seeds:"))
    assert all(x.startswith(f"{path}:{seeds_line}: ") for x in issues), issues


@pytest.mark.parametrize("name", ["..", ".", "../evil", "/tmp/evil", "x" * 5000, "a/b"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_scenario_name_must_be_a_path_component(work, capsys, name, command):
    path = _write(work, "named.yaml", QUICKSTART.replace("name: quickstart", f"name: '{name}'"))
    argv = [command, path] + (["--quiet", "--jobs", "1"] if command == "run" else [])
    (issue,) = _refused(*_run(capsys, *argv)[::2], path)
    name_line = next(i for i, t in enumerate(QUICKSTART.splitlines(), 1) if t.startswith("name:"))
    assert re.match(rf"{re.escape(str(path))}:{name_line}: name: .* is not a valid name", issue)
    assert os.listdir(work) == ["named.yaml"]


def test_nan_reference_value_is_refused(work, capsys):
    path = _write(work, "nanref.yaml",
                  QUICKSTART.replace("{eIRF: 117.7, SDS: 23.6}", "{eIRF: .nan, SDS: 23.6}"))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert "eIRF" in issue


def test_reference_method_of_the_wrong_type_is_located(work, capsys):
    text = (REPO / "scenarios" / "thesis-mechanical.yaml").read_text()
    doc = yaml.safe_load(text)
    first = doc["reference"]["values"][0]["method"]
    path = _write(work, "ref.yaml", text.replace(f"method: {first}", f"method: [{first}]", 1))
    _refused(*_run(capsys, "validate", path)[::2], path)


def test_reference_value_beyond_int64_is_a_number_not_a_crash(work, capsys):
    """10**30 - 1 is a finite float (it was a TypeError in np.isfinite, exit 1): accepted;
    a value beyond the float range is refused at its line."""
    path = _write(work, "ref.yaml",
                  QUICKSTART.replace("{eIRF: 117.7, SDS: 23.6}", "{eIRF: " + "9" * 30 +
                                     ", SDS: 23.6}"))
    rc, _, err = _run(capsys, "validate", path)
    assert rc == 0 and "Traceback" not in err, err
    path = _write(work, "ref2.yaml",
                  QUICKSTART.replace("{eIRF: 117.7, SDS: 23.6}", "{eIRF: " + "9" * 400 +
                                     ", SDS: 23.6}"))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert "a reference value must be a finite number" in issue


def test_shipped_broken_test_files_are_located(capsys):
    for path in sorted((REPO / "tests" / "data").glob("broken_*.yaml")):
        _refused(*_run(capsys, "validate", path)[::2], path)


# --------------------------------------------------------------------------- rig sessions


def _line(path: Path, key: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                if t.strip().startswith(f"{key}:"))


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e9", "1.0e+9", "3601"])
def test_session_duration_must_be_finite_and_bounded(work, capsys, value):
    path = _write(work, "s.yaml", SESSION.replace("duration_s: 20.0", f"duration_s: {value}"))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert issue.startswith(f"{path}:{_line(path, 'duration_s')}: session.duration_s: ")
    # rig record refuses it before touching the port
    rc, _, err = _run(capsys, "rig", "record", path, "--port", work / "no-such-port")
    assert rc == 2 and err.startswith(f"{path}:{_line(path, 'duration_s')}: ")
    assert os.listdir(work) == ["s.yaml"]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("repetitions: 1", "repetitions: 1000000", "repetitions"),
        ("repetitions: 1", "repetitions: 1000\n  settle_s: 10", "duration_s"),  # 30 M samples
        ("sample_rate_hz: 1000", "sample_rate_hz: 1000000", "sample_rate_hz"),
        ("settle_s: 0.5", "settle_s: 1e300", "settle_s"),
        ("  seed: 0", "  seed: 18446744073709551616", "seed"),
        ("lowpass_hz: 40.0", "lowpass_hz: 1e-9", "lowpass_hz"),
        ("lowpass_hz: 40.0", "lowpass_hz: 600", "lowpass_hz"),
        ("center_mm: 250.0", "center_mm: .inf", "center_mm"),
    ],
)
def test_session_numbers_that_size_work_are_bounded(work, capsys, old, new, key):
    text = SESSION.replace(old, new)
    if "settle_s: 10" in new:
        text = text.replace("  settle_s: 0.5 ", "  ")
    path = _write(work, "s.yaml", text)
    issues = _refused(*_run(capsys, "validate", path)[::2], path)
    assert any(x.startswith(f"{path}:{_line(path, key)}: ") for x in issues), issues


def test_session_duplicate_keys_name_both_lines(work, capsys):
    path = _write(work, "dup.yaml", SESSION.replace("  seed: 0\n", "  seed: 0\n  seed: 1\n"))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    first = _line(path, "seed")
    assert issue == (f"{path}:{first + 1}: session.seed: duplicate key 'seed' (first given at "
                     f"line {first})")


@pytest.mark.parametrize("name", ["..", "../evil", "/tmp/evil", "x" * 5000])
def test_session_name_must_be_a_path_component(work, capsys, name):
    path = _write(work, "s.yaml", SESSION.replace("name: rig-session", f"name: '{name}'"))
    (issue,) = _refused(*_run(capsys, "validate", path)[::2], path)
    assert issue.startswith(f"{path}:{_line(path, 'name')}: session.name: ")


@pytest.mark.parametrize(
    "text",
    [QUICKSTART.replace("plant:", "session:\n  name: x\nplant:"),
     SESSION + _billion_laughs(), SESSION.replace("session:", "session: " + "[" * 500)],
    ids=["scenario-and-session", "bomb", "deep"],
)
def test_hostile_session_files_are_refused(work, capsys, text):
    path = _write(work, "s.yaml", text)
    _refused(*_run(capsys, "validate", path)[::2], path)


def test_session_errors_all_carry_a_line(work, capsys, tmp_path):
    # One file, many problems: every one of them is reported, each at its own line.
    text = (SESSION.replace("duration_s: 20.0", "duration_s: -1")
            .replace("level_mm: 2.0", "level_mm: many")
            .replace("watchdog_ms: 50", "watchdog_ms: 50\n  colour: red")
            .replace("shape: sine", "shape: zigzag"))
    path = _write(work, "s.yaml", text)
    issues = _refused(*_run(capsys, "validate", path)[::2], path)
    assert len(issues) == 4
    for key in ("duration_s", "level_mm", "colour", "shape"):
        assert any(x.startswith(f"{path}:{_line(path, key)}: ") for x in issues), key
    rig = _write(work, "rig.yaml", (REPO / "plants" / "rigs" / "default.yaml").read_text()
                 .replace("  kt: 0.02 ", "  kt: .nan ").replace("  fs: 2500.0 ", "  fs: 1e12 "))
    path = _write(work, "s2.yaml", SESSION.replace("rig: default ", "rig: rig.yaml "))
    rc, _, err = _run(capsys, "validate", path)
    assert rc == 2 and "Traceback" not in err
    lines = err.splitlines()[:-1]
    assert f"{rig}:{_line(rig, 'kt')}: motor.kt: " in err
    assert f"{rig}:{_line(rig, 'fs')}: sampling.fs: " in err
    assert f"{path}:{_line(path, 'rig')}: session.rig: " in err
    assert len(lines) == 3


def test_shipped_session_files_validate(capsys):
    files = [REPO / "scenarios" / "rig-session.yaml",
             REPO / "scenarios" / "rig-session-emulator.yaml"]
    rc, out, err = _run(capsys, "validate", *files)
    assert rc == 0, err
    assert all(f"{f}: OK: rig session" in out for f in files)


def test_failed_start_leaves_nothing_behind(work, capsys):
    from hil.session import SessionError, record
    from hil.virtual import VirtualRig

    path = _write(work, "s.yaml", SESSION.replace("duration_s: 20.0", "duration_s: 2.0"))
    # A port that does not exist: exit 1, no raw log; every retry gets the same answer.
    for _ in range(2):
        rc, _, err = _run(capsys, "rig", "record", path, "--port", work / "ttyNOPE")
        assert rc == 1 and "cannot open" in err and "raw log exists" not in err
        assert sorted(os.listdir(work)) == ["s.yaml"]
    # A rig that refuses the session (CONFIG beyond its travel): nothing left behind either.
    wide = _write(work, "wide.yaml", SESSION.replace(
        "duration_s: 20.0", "duration_s: 2.0\n  limits: {actuator_mm: [-50, 50], "
                            "pivot_mm: [225, 275]}"))
    with VirtualRig(seed=1) as rig:
        for _ in range(2):
            with pytest.raises(SessionError, match="refused CONFIG"):
                record(wide, rig.url, out=work / "wide")
            assert sorted(os.listdir(work)) == ["s.yaml", "wide.yaml"]


def test_default_output_folder_appears_only_once_the_rig_answers(work, capsys):
    # impbench rig record writes under runs/<name>/ of the working directory: a wrong port
    # leaves no empty folder there either.
    path = _write(work, "s.yaml", SESSION)
    rc, _, err = _run(capsys, "rig", "record", path, "--port", work / "ttyNOPE")
    assert rc == 1 and "cannot open" in err
    assert os.listdir(".") == []


def test_record_under_a_file_fails_before_the_port(work, capsys):
    path = _write(work, "s.yaml", SESSION)
    rc, _, err = _run(capsys, "rig", "record", path, "--port", "loop://",
                      "--out", work / "s.yaml" / "x")
    assert rc == 1 and "is not a directory" in err
    assert os.listdir(work) == ["s.yaml"]


# --------------------------------------------------------------------------- impbench estimate


@pytest.fixture
def record_arrays():
    rng = np.random.default_rng(0)
    fs, n = 100.0, 1000
    u = rng.standard_normal(n)
    return {"t": np.arange(n) / fs, "u": u, "y": 50.0 * u + 0.1 * rng.standard_normal(n),
            "fs": fs}


def _csv(a: dict) -> str:
    rows = zip(a["t"], a["u"], a["y"])
    return "t,u,y\n" + "".join(f"{t!r},{u!r},{y!r}\n" for t, u, y in
                               ((float(t), float(u), float(y)) for t, u, y in rows))


def _estimate(capsys, path: Path) -> tuple[int, str, str]:
    return _run(capsys, "estimate", path, "--method", "sds", "--period", "1")


def test_a_good_record_estimates(work, capsys, record_arrays):
    path = _write(work, "rec.csv", _csv(record_arrays))
    rc, out, err = _estimate(capsys, path)
    assert rc == 0, err
    assert "K  mean 50" in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("text.mat", b"hello, this is not a MATLAB file\n", "cannot read as MATLAB .mat"),
        ("empty.mat", b"", "the file is empty"),
        ("empty.npz", b"", "the file is empty"),
        ("text.npz", b"u,y\n1,2\n", "cannot read as .npz"),
        ("latin1.csv", b"t,u,y\n0,1,\xe4\n", "not UTF-8 text (byte 0xe4 at offset 10)"),
        ("utf16.csv", "t,u,y\n0,1,2\n".encode("utf-16"), "not UTF-8 text (UTF-16"),
    ],
)
def test_unreadable_records_give_one_line(work, capsys, name, content, message):
    path = _write(work, name, content)
    line = _estimate_refused(*_estimate(capsys, path)[::2])
    assert str(path) in line and message in line


def test_truncated_npz_gives_one_line(work, capsys, record_arrays):
    full = work / "full.npz"
    np.savez(full, **{k: record_arrays[k] for k in ("u", "y", "fs")})
    path = _write(work, "cut.npz", full.read_bytes()[: full.stat().st_size // 2])
    line = _estimate_refused(*_estimate(capsys, path)[::2])
    assert str(path) in line and "cannot read as .npz" in line


@pytest.mark.parametrize("field", ["1" * 200_000, "x" * 200_000])
def test_csv_with_a_200kb_field_gives_one_line(work, capsys, record_arrays, field):
    lines = _csv(record_arrays).splitlines()
    t, _, y = lines[5].split(",")
    lines[5] = f"{t},{field},{y}"
    path = _write(work, "field.csv", "\n".join(lines) + "\n")
    line = _estimate_refused(*_estimate(capsys, path)[::2])
    assert str(path) in line


@pytest.mark.parametrize("scale", [1e300, 1e154, 1e-300, 0.0])
def test_values_that_break_the_linear_algebra_give_one_line(work, capsys, record_arrays,
                                                            scale):
    path = work / "huge.npz"
    np.savez(path, u=record_arrays["u"] * scale, y=record_arrays["y"] * scale, fs=100.0)
    with np.errstate(all="ignore"):
        line = _estimate_refused(*_estimate(capsys, path)[::2])
    assert line.startswith("error: the estimator failed: ")


@pytest.mark.parametrize("value", ["inf", "nan", "1e999"])
def test_non_finite_csv_values_are_located(work, capsys, record_arrays, value):
    lines = _csv(record_arrays).splitlines()
    t, _, y = lines[7].split(",")
    lines[7] = f"{t},{value},{y}"
    path = _write(work, "nonfinite.csv", "\n".join(lines) + "\n")
    line = _estimate_refused(*_estimate(capsys, path)[::2])
    assert line.startswith(f"error: {path}, line 8, column 'u': non-finite value")
