"""Property-based fuzzing of every file input (issue 18, item 8).

Hypothesis mutates every shipped YAML file (``scenarios/*.yaml``, globbed when the tests are
collected, so a new file is fuzzed without being named here) and a small record (``.csv``
and ``.npz``): keys deleted or renamed, values swapped for other types, huge and non-finite
numbers, names that are paths, duplicated and deleted lines, files cut short, bad bytes.
Each mutant goes through the command line in-process (``impbench validate FILE``, or
``impbench estimate FILE --method sds --period 1``), and the property is:

* exit 0, or exit 2 with every message line located (``FILE:LINE: ...``; ``FILE: ...`` only
  for a file that cannot be read as text at all, such as a bad encoding or size), the
  estimate's one ``error: FILE...`` line;
* never a traceback (the command line turns an unexpected exception into exit 1, so exit 1
  fails the property too);
* nothing written: the sandbox (a copy of ``scenarios/`` and the working directory) holds the
  same files afterwards, and nothing new appears in the repository's top level or
  ``scenarios/``.

The default run tries a few hundred mutants (deterministic: ``derandomize=True``, no example
database); ``-m slow`` runs many more.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))
SUMMARY = re.compile(r"\d+ errors?; nothing was run\.")
#: Messages that may come without a line: the file could not be read as text at all.
NO_LINE = ("not UTF-8 text", "file is larger than", "no such file", "is a directory",
           "cannot read")
EVIL = "/tmp/impbench-fuzz-evil"

FAST = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)
SLOW = settings(FAST, max_examples=400)


# --------------------------------------------------------------------------- mutations

#: Values swapped in for any value of a document.
SWAPS: list[Any] = [
    None, True, False, 0, -1, 1.5, "", "x", [1, 2], {"fuzz": 1}, [], {},
    10**30, 2**63, 2**64, -(2**63) - 1, 1e308, -1e308, 5e-324,
    float("inf"), float("-inf"), float("nan"),
    "..", ".", "../fuzz-evil", EVIL, "x" * 5000, "nonexistent_fuzz_module:Thing",
]
#: Text put in place of a number in the file.
NUMBER_TOKENS = [".inf", "-.inf", ".nan", "1.0e+999", "1e999", "-1", "0", "1" * 5000,
                 "9223372036854775808", "5e-324", "x", "[]", "{}", "~", "&a 1", "*nope"]
BAD_BYTES = [b"\xff", b"\x00", b"\xc3", b"\xe4", b"\xfe\xff", b"\xef\xbb\xbf", b"\x1b[2J",
             b"\t", b"\r", b"\\", b"'", b'"', b":", b"- ", b"{", b"[", b"&a ", b"*a", b"!!binary "]
_NUMBER = re.compile(rb"(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.])")


class Mutant(bytes):
    """Mutated file content whose ``repr`` lists the mutations, not the bytes."""

    ops: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Mutant({len(self)} bytes: {'; '.join(self.ops) or 'unchanged'})"


def _mutant(raw: bytes, ops: list[str]) -> Mutant:
    m = Mutant(raw)
    m.ops = tuple(ops)
    return m


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _paths(data: Any) -> list[tuple]:
    """Every node's path in a parsed document (iterative)."""
    out: list[tuple] = []
    todo: list[tuple[Any, tuple]] = [(data, ())]
    while todo:
        node, path = todo.pop()
        out.append(path)
        if isinstance(node, dict):
            todo.extend((v, (*path, k)) for k, v in node.items())
        elif isinstance(node, list):
            todo.extend((v, (*path, i)) for i, v in enumerate(node))
    return sorted(out, key=repr)


def _parent(data: Any, path: tuple) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def tree_mutant(draw: st.DrawFn, data: Any, ops: list[str]) -> Any:
    """``data`` with 1-3 structural mutations (described in ``ops``)."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        op = draw(st.sampled_from(["delete", "swap", "swap", "rename", "wrap", "repeat"]))
        if op == "delete":
            del parent[key]
        elif op == "swap":
            value = draw(st.sampled_from(SWAPS))
            parent[key] = copy.deepcopy(value)
            op = f"swap to {_short(value)}"
        elif op == "rename" and isinstance(parent, dict):
            parent[f"fuzz_{key}"] = parent.pop(key)
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "repeat" and isinstance(parent, list):
            n = draw(st.sampled_from([1, 2, 1000]))
            parent.extend([parent[key]] * n)
            op = f"repeat x{n}"
        else:
            continue
        ops.append(f"{op} {'.'.join(map(str, path))}")
    return data


@st.composite
def text_mutant(draw: st.DrawFn, raw: bytes, ops: list[str]) -> bytes:
    """``raw`` with 1-2 byte-level mutations (described in ``ops``)."""
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["cut", "bytes", "dup_line", "del_line", "number",
                                   "indent"]))
        lines = raw.split(b"\n")
        if op == "cut":
            at = draw(st.integers(0, max(len(raw) - 1, 0)))
            raw = raw[:at]
            ops.append(f"cut at byte {at}")
        elif op == "bytes":
            at = draw(st.integers(0, len(raw)))
            bad = draw(st.sampled_from(BAD_BYTES) | st.binary(min_size=1, max_size=4))
            raw = raw[:at] + bad + raw[at:]
            ops.append(f"insert {bad!r} at byte {at}")
        elif op in ("dup_line", "del_line", "indent") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "del_line":
                del lines[i]
            else:
                lines[i] = lines[i][1:] if draw(st.booleans()) else b" " + lines[i]
            raw = b"\n".join(lines)
            ops.append(f"{op} {i + 1}")
        elif op == "number":
            spans = [m.span() for m in _NUMBER.finditer(raw)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                token = draw(st.sampled_from(NUMBER_TOKENS))
                ops.append(f"number {raw[a:b]!r} at byte {a} -> {_short(token)}")
                raw = raw[:a] + token.encode() + raw[b:]
    return raw


@st.composite
def yaml_mutant(draw: st.DrawFn, raw: bytes) -> Mutant:
    """A mutant of a YAML file: structural, byte-level, or both."""
    kind = draw(st.sampled_from(["tree", "text", "both"]))
    ops: list[str] = []
    if kind != "text":
        data = yaml.safe_load(raw)
        raw = yaml.safe_dump(draw(tree_mutant(data, ops)), sort_keys=False,
                             allow_unicode=True).encode()
        ops.insert(0, "re-dumped")
    if kind != "tree":
        raw = draw(text_mutant(raw, ops))
    return _mutant(raw, ops)


# --------------------------------------------------------------------------- sandbox


def _listing(root: Path) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        rel = os.path.relpath(d, root)
        out.update(os.path.join(rel, f) for f in files + dirs)
    return out


def _repo_top() -> set[str]:
    return set(os.listdir(REPO)) | {f"scenarios/{p}" for p in _listing(REPO / "scenarios")}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A copy of ``scenarios/`` (relative data references resolve) and a working directory."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "scenarios", root / "scenarios",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "cwd").mkdir()
    (root / "records").mkdir()
    return root


def _cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                np.errstate(all="ignore"):
            rc = main(argv)
    finally:
        os.chdir(here)
    return rc, out.getvalue(), err.getvalue()


def _check_validate(rc: int, out: str, err: str, file: Path, folder: Path) -> None:
    assert "Traceback" not in err + out, err
    assert rc in (0, 2), f"exit {rc}: {err}"
    if rc == 0:
        assert out.startswith(f"{file}: OK"), out
        return
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines and SUMMARY.fullmatch(lines[-1]), err
    for x in lines[:-1]:
        m = re.match(r"(?P<file>[^:]+)(?::(?P<line>\d+))?: (?P<msg>.+)", x)
        assert m is not None, f"not located: {x!r}"
        where = m["file"]
        assert where.startswith(str(folder)) or where.startswith(str(REPO)), x
        if where == str(file) and m["line"] is None:
            assert m["msg"].startswith(NO_LINE), f"no line: {x!r}"


def _fuzz_yaml(sandbox: Path, source: Path, raw: bytes) -> None:
    folder = sandbox / "scenarios"
    file = folder / f"{source.stem}.fuzz.yaml"
    file.write_bytes(raw)
    before = _listing(sandbox)
    rc, out, err = _cli(["validate", str(file)], sandbox / "cwd")
    _check_validate(rc, out, err, file, folder)
    assert _listing(sandbox) == before, "validate wrote into the sandbox"
    assert not os.path.exists(EVIL)


def _yaml_test(source: Path, sandbox: Path, config: settings) -> None:
    raw = source.read_bytes()
    top = _repo_top()

    @config
    @given(yaml_mutant(raw))
    def run(mutant: Mutant) -> None:
        _fuzz_yaml(sandbox, source, mutant)

    run()
    new = {p for p in _repo_top() - top if "fuzz" in p or "evil" in p}
    assert not new, f"written into the repository: {sorted(new)}"


def test_every_shipped_yaml_file_is_fuzzed():
    names = {p.name for p in SHIPPED}
    assert {"quickstart.yaml", "rig-session.yaml", "rig-session-emulator.yaml"} <= names
    assert all(not p.name.endswith(".fuzz.yaml") for p in SHIPPED)


@pytest.mark.parametrize("source", SHIPPED, ids=[p.name for p in SHIPPED])
def test_mutated_yaml_is_accepted_or_located(source, sandbox):
    _yaml_test(source, sandbox, FAST)


#: Known failures of the long run, each pinned by a strict regression test in
#: tests/test_hostile_input.py (remove the entry when that test passes).
KNOWN_LONG: dict[str, str] = {}  # shipped files whose long fuzz run is a known failure


@pytest.mark.slow
@pytest.mark.parametrize("source", [
    pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_LONG[p.name]))
    if p.name in KNOWN_LONG else p for p in SHIPPED], ids=[p.name for p in SHIPPED])
def test_mutated_yaml_is_accepted_or_located_long(source, sandbox):
    _yaml_test(source, sandbox, SLOW)


# --------------------------------------------------------------------------- records


def _record() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fs, n = 100.0, 1000
    u = rng.standard_normal(n)
    return {"t": np.arange(n) / fs, "u": u, "y": 50.0 * u + 0.1 * rng.standard_normal(n),
            "fs": np.float64(fs)}


RECORD = _record()
CSV = ("t,u,y\n" + "".join(
    f"{float(t)!r},{float(u)!r},{float(y)!r}\n"
    for t, u, y in zip(RECORD["t"], RECORD["u"], RECORD["y"]))).encode()

#: Arrays swapped in for a record variable.
ARRAY_SWAPS = [
    np.array([]), np.array(1.0), np.array(["a", "b"]), np.zeros((3, 4)), np.ones(1000, bool),
    np.full(1000, 1e308), np.full(1000, np.nan), np.full(1000, np.inf),
    np.full(1000, 2**63 - 1, np.int64), np.ones(1000, complex), np.arange(999.0),
    np.array([0.0]), np.array([-1.0]), np.array([1e-308]), np.array([1e308]),
    np.array([np.nan]), np.array([1.0, 2.0]), np.array([{"a": 1}], dtype=object),
]


@st.composite
def npz_mutant(draw: st.DrawFn) -> Mutant:
    """An .npz record with 1-3 variables deleted, swapped or scaled, maybe cut or damaged."""
    ops: list[str] = []
    arrays = {k: v for k, v in RECORD.items() if k != "t"}
    if draw(st.booleans()):
        arrays["t"] = RECORD["t"]
        ops.append("with t")
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*sorted(arrays), "schedule", "fuzz"]))
        op = draw(st.sampled_from(["delete", "swap", "scale", "poke"]))
        if op == "delete":
            arrays.pop(key, None)
        elif op == "swap":
            value = draw(st.sampled_from(ARRAY_SWAPS))
            arrays[key] = value
            op = f"swap to {value.dtype}{value.shape}"
        elif op == "scale" and key in arrays and arrays[key].dtype.kind in "biufc":
            factor = draw(st.sampled_from([1e300, 1e-300, 0.0, -1.0]))
            with np.errstate(all="ignore"):
                arrays[key] = arrays[key] * factor
            op = f"scale by {factor:g}"
        elif (op == "poke" and key in arrays and np.ndim(arrays[key]) == 1
              and np.size(arrays[key]) and arrays[key].dtype.kind in "biuf"):
            a = np.array(arrays[key], dtype=float)
            i = draw(st.integers(0, a.size - 1))
            a[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308]))
            arrays[key] = a
            op = f"poke {a[i]} at {i}"
        else:
            continue
        ops.append(f"{op} {key}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    if draw(st.integers(0, 3)) == 0:
        raw = draw(text_mutant(raw, ops))
    return _mutant(raw, ops)


@st.composite
def csv_mutant(draw: st.DrawFn) -> Mutant:
    """A CSV record with byte-level mutations, a header damaged, or a 200 kB field."""
    ops: list[str] = []
    raw = CSV
    op = draw(st.sampled_from(["text", "text", "header", "field"]))
    if op == "header":
        header = draw(st.sampled_from(
            [b"t,u", b"u,y", b"t,u,y,y", b"T,U,Y", b"t;u;y", b"", b"t,u,y,schedule"]))
        raw = raw.replace(b"t,u,y", header, 1)
        ops.append(f"header {header!r}")
    elif op == "field":
        lines = raw.split(b"\n")
        i = draw(st.integers(1, len(lines) - 2))
        lines[i] = lines[i] + b"," + b"9" * 200_000
        raw = b"\n".join(lines)
        ops.append(f"200 kB field on line {i + 1}")
    if op == "text" or draw(st.booleans()):
        raw = draw(text_mutant(raw, ops))
    return _mutant(raw, ops)


def _fuzz_record(sandbox: Path, suffix: str, raw: bytes) -> None:
    file = sandbox / "records" / f"record{suffix}"
    file.write_bytes(raw)
    before = _listing(sandbox)
    rc, out, err = _cli(["estimate", str(file), "--method", "sds", "--period", "1"],
                        sandbox / "cwd")
    assert "Traceback" not in err + out, err
    assert rc in (0, 2), f"exit {rc}: {err}"
    if rc == 0:
        assert out.startswith(f"{file}: "), out
    else:
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _listing(sandbox) == before, "estimate wrote into the sandbox"


def _record_test(sandbox: Path, config: settings) -> None:
    top = _repo_top()

    @config
    @given(st.one_of(st.tuples(st.just(".npz"), npz_mutant()),
                     st.tuples(st.just(".csv"), csv_mutant())))
    def run(case: tuple[str, Mutant]) -> None:
        _fuzz_record(sandbox, *case)

    run()
    new = {p for p in _repo_top() - top if "fuzz" in p or "record" in p}
    assert not new, f"written into the repository: {sorted(new)}"


def test_mutated_record_is_estimated_or_refused_in_one_line(sandbox):
    _record_test(sandbox, settings(FAST, max_examples=80))


@pytest.mark.slow
def test_mutated_record_is_estimated_or_refused_in_one_line_long(sandbox):
    _record_test(sandbox, settings(FAST, max_examples=2000))
