"""Layering rules of the code base (docs/architecture.md "Layout"), checked on the source tree.

* No module or folder outside the four packages takes one of their names: run as a script,
  it would shadow the package (``python benchmarks/hil.py`` once imported itself as ``hil``).
* ``estimators`` never imports ``plants`` and vice versa; they meet in ``bench``.
* ``bench`` reaches plants and backends only through the registry: no ``bench`` module imports
  ``plants``, ``estimators`` or ``hil``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "plants", "estimators", "hil")
_SKIP = {".git", "build", "dist", "runs", ".venv", "node_modules"}


def _python_files(base: Path) -> list[Path]:
    out = []
    for p in base.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if not _SKIP & set(rel.parts) and not any(part.startswith(".") for part in rel.parts):
            out.append(p)
    return out


def _importable_as(path: Path) -> str:
    """The top-level name ``path`` imports as when its folder heads ``sys.path`` (a script
    run from there): the outermost folder of its package chain, or the module itself."""
    top = path.parent if path.name == "__init__.py" else path
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    return top.stem if top.is_file() else top.name


def test_no_module_outside_the_packages_shadows_one():
    bad = []
    for p in _python_files(ROOT):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in PACKAGES:
            continue
        # a module named like a package shadows it when run as a script from its folder;
        # so does a package of that name whose parent folder is on sys.path
        if p.stem in PACKAGES or _importable_as(p) in PACKAGES:
            bad.append(str(rel))
    assert bad == [], f"modules outside the packages named like one: {bad}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package, forbidden", [
    ("estimators", {"plants", "hil"}),
    ("plants", {"estimators", "hil"}),
    ("bench", {"plants", "estimators", "hil"}),
])
def test_packages_import_each_other_only_as_designed(package, forbidden):
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & forbidden)
           for p in _python_files(ROOT / package) if _imports(p) & forbidden}
    assert bad == {}
