"""What the script-run studies share: reading their YAML scenario and their command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ScenarioError

__all__ = ["merge_defaults", "read_scenario", "study_main"]


def read_scenario(source: str | Path | dict, name: str, allowed: set[str]) -> dict:
    """The top-level mapping of a study scenario (a path or an already-read dict).

    Raises
    ------
    ScenarioError
        The file is not a YAML mapping, or it has top-level keys outside ``allowed`` (plus
        ``description`` and ``reference``); the message names the scenario and the keys.
    """
    if isinstance(source, dict):
        cfg = dict(source)
    else:
        data = yaml.safe_load(Path(source).read_text())
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: a {name} scenario must be a YAML mapping")
        cfg = data
    unknown = set(cfg) - set(allowed) - {"description", "reference"}
    if unknown:
        raise ScenarioError(f"{name} scenario has unknown keys {sorted(unknown)}")
    return cfg


def merge_defaults(defaults: dict, cfg: dict) -> dict:
    """``defaults`` updated by ``cfg``; mappings are merged one level deep (copies)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in defaults.items()}
    for k, v in cfg.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def study_main(
    argv: list[str] | None, description: str, run: Callable[[str, str], dict],
    write: Callable[[dict, str], dict[str, Any]],
) -> int:
    """``SCENARIO --out DIR [--report-only]``: run the study (or reread ``results.json``) and
    write its report; prints the files written (the ``Path`` values ``write`` returns) and
    the study's wall time."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("scenario")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from OUT/results.json without running")
    a = ap.parse_args(argv)
    if a.report_only:
        res: dict[str, Any] = json.loads((Path(a.out) / "results.json").read_text())
    else:
        res = run(a.scenario, a.out)
    paths = write(res, a.out)
    files = [str(p) for p in paths.values() if isinstance(p, Path)]
    print(f"wrote {', '.join(files)} (study wall time {res['wall_time']:.0f} s)")
    return 0
