"""``estimators`` never imports ``plants`` (docs/architecture.md "Layout"): every estimator and
calibrator must work on rig or third-party data, so the two meet only in ``bench``.

``tests/test_layering.py`` checks the import statements of the source tree; this test checks
what importing every ``estimators`` module actually loads (imports through ``importlib`` or
through a third module included)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_every_estimators_module_loads_no_plants():
    """In a fresh interpreter: import every module of ``estimators``, then no ``plants``
    module may be loaded (catches imports through ``importlib`` or third modules)."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import estimators\n"
        "mods = [m.name for m in pkgutil.walk_packages(estimators.__path__, 'estimators.')]\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps({'modules': mods, 'plants': sorted(k for k in sys.modules\n"
        "                  if k == 'plants' or k.startswith('plants.'))}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert "estimators.calibration.deep_lsq" in got["modules"]
    assert got["plants"] == [], f"importing estimators loaded {got['plants']}"
