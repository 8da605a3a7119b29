"""The README runs as written: its Python example, and every command line it shows parses,
names files that exist and scenarios that validate."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.scenario import load_scenario
from tests.example_data import write_example

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]

#: Placeholders of the command table (upper case words, options in brackets).
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_.]+\b|\[|\||\.\.\.")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _commands(text: str) -> list[str]:
    """Concrete ``impbench ...`` / ``python ...`` command lines: in ``bash`` code blocks and
    in the first cell of table rows (prose that names a command in passing is not one)."""
    found = [m for line in text.splitlines() if line.startswith("| `")
             for m in re.findall(r"`((?:impbench|python) [^`]+)`", line.split("|")[1])]
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for part in line.split("&&"):
                if part.strip().startswith(("impbench ", "python ")):
                    found.append(part.strip())
    return [c for c in dict.fromkeys(found) if not _PLACEHOLDER.search(c)]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    (code,) = _python_blocks(README)
    assert code == _python_blocks(next(d for d in DOCS if "From Python" in d))[0], (
        "the README's example and docs/index.md's must be the same")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == ["sds", "eirf"]
    errors = [float(ln.split()[1]) for ln in lines]
    assert all(0 < e < 40 for e in errors), lines  # 50 s, 0 dB: errors in the tens of %
    assert (tmp_path / "my_record.csv").is_file()


@pytest.fixture(scope="module")
def example_copy(tmp_path_factory) -> Path:
    """``scenarios/calibrate-example.yaml`` beside the files ``make_example.py`` writes (git
    ignores them: a clean clone has none until the README's command writes them)."""
    root = tmp_path_factory.mktemp("scenarios")
    write_example(root / "data" / "example")
    shutil.copy(ROOT / "scenarios" / "calibrate-example.yaml", root)
    return root / "calibrate-example.yaml"


@pytest.mark.parametrize("command", _commands(README + "\n".join(DOCS)))
def test_readme_command_lines_parse_and_name_real_files(command, request):
    argv = shlex.split(command)
    if argv[0] == "python":
        if argv[1] == "-m":
            assert importlib.util.find_spec(argv[2]) is not None, command
        else:
            assert (ROOT / argv[1]).is_file(), command
        return
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv[1:])
    except SystemExit as exc:  # --version / --help exit 0; a line that does not parse, 2
        assert exc.code == 0, command
        return
    for a in argv[1:]:
        if a.startswith("scenarios/") and a.endswith(".yaml"):
            assert (ROOT / a).is_file(), a
            if args.command in ("run", "validate", "calibrate") and "rig-session" not in a:
                path = (request.getfixturevalue("example_copy")
                        if a == "scenarios/calibrate-example.yaml" else ROOT / a)
                load_scenario(path)  # raises with the located errors when invalid


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml")))
def test_every_shipped_scenario_validates(name, request, capsys):
    """``impbench validate`` exits 0 on every file in ``scenarios/`` (rig sessions included);
    the calibration example beside the files its README command writes."""
    from bench.cli import main

    path = (request.getfixturevalue("example_copy") if name == "calibrate-example.yaml"
            else ROOT / "scenarios" / name)
    assert main(["validate", str(path)]) == 0, capsys.readouterr()
