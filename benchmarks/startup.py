"""Start-up time of the ``impbench`` command line, and which heavy modules each command loads.

Every command runs in a fresh process, ``--repeat`` times (median, min and max wall time):

* ``--help``, ``--version``;
* ``validate scenarios/quickstart.yaml`` (a valid scenario);
* ``validate`` of a YAML syntax error and of a non-UTF-8 file (the answer a user with a
  broken file waits for);
* ``validate scenarios/rig-session.yaml`` (a rig session file, through ``hil``'s hook).

Wall times are of the installed console script (``impbench``). A second run of each command
through a small wrapper reports whether it imported ``jax``, ``matplotlib``, ``scipy.signal``,
``pandas`` or ``pyarrow`` (assert-free: the table just says so).

Baseline: ``impbench --help`` (and the two ``validate`` cases of broken files) at commit
``08490d7`` (before the hardening of issue 18), measured in the same run from a temporary
``git worktree`` put first on ``PYTHONPATH``; the worktree is removed afterwards. The table
shows each command's ratio to the baseline where there is one.

Usage::

    python benchmarks/startup.py [--repeat 7] [--baseline 08490d7] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "matplotlib", "scipy.signal", "pandas", "pyarrow")
#: Runs ``bench.cli.main`` with the given arguments and prints which heavy modules were
#: loaded (at exit, whatever the exit status), and where ``bench`` was imported from.
WRAPPER = """
import atexit, json, sys
def _report():
    import bench
    mods = {m: m in sys.modules for m in HEAVY}
    sys.__stderr__.write("STARTUP " + json.dumps({"modules": mods,
                                                  "bench": bench.__file__}) + "\\n")
atexit.register(_report)
from bench.cli import main
sys.exit(main(sys.argv[1:]))
""".replace("HEAVY", repr(HEAVY))


def _commands(work: Path) -> list[tuple[str, list[str]]]:
    broken = work / "broken-syntax.yaml"
    broken.write_text((REPO / "scenarios" / "quickstart.yaml").read_text()
                      .replace("seeds: [0, 1]", "seeds: [0, 1"))
    latin1 = work / "latin-1.yaml"
    latin1.write_bytes((REPO / "scenarios" / "quickstart.yaml").read_bytes()
                       .replace(b"Quickstart", b"Quickst\xe4rt"))
    return [
        ("--help", ["--help"]),
        ("--version", ["--version"]),
        ("validate quickstart.yaml", ["validate", str(REPO / "scenarios" / "quickstart.yaml")]),
        ("validate YAML syntax error", ["validate", str(broken)]),
        ("validate non-UTF-8 file", ["validate", str(latin1)]),
        ("validate rig-session.yaml", ["validate",
                                       str(REPO / "scenarios" / "rig-session.yaml")]),
    ]


def _env(pythonpath: Path | None) -> dict:
    env = {**os.environ, "IMPBENCH_JAX_CACHE": "off"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _time(cmd: list[str], env: dict, repeat: int, cwd: Path) -> dict:
    walls, rc = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
        walls.append(time.perf_counter() - t0)
        rc = p.returncode
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3), "exit": rc}


def _modules(args: list[str], env: dict, cwd: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, cwd=cwd,
                       capture_output=True, text=True)
    for line in p.stderr.splitlines():
        if line.startswith("STARTUP "):
            return json.loads(line[len("STARTUP "):])
    return {"modules": None, "bench": None, "error": p.stderr.strip().splitlines()[-1:]}


def _baseline_worktree(commit: str, path: Path) -> bool:
    p = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path),
                        commit], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"no baseline: {p.stderr.strip()}", file=sys.stderr)
    return p.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per command (median)")
    ap.add_argument("--baseline", default="08490d7", help="commit to compare --help with")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "startup.json"))
    args = ap.parse_args(argv)

    exe = shutil.which("impbench")
    if exe is None:
        print("error: the impbench console script is not installed (pip install -e .)",
              file=sys.stderr)
        return 1
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="impbench-startup-") as tmp:
        work = Path(tmp)
        commands = _commands(work)
        env = _env(None)
        for label, cmd_args in commands:
            row = {"command": f"impbench {label}", "args": cmd_args,
                   **_time([exe, *cmd_args], env, args.repeat, work)}
            mods = _modules(cmd_args, env, work)
            row["heavy_modules"] = mods.get("modules")
            rows.append(row)
            print(f"  measured {row['command']}: {row['median_s']:.3f} s", file=sys.stderr)
        base_rows = []
        base = Path(tempfile.mkdtemp(prefix="startup_base_"))
        shutil.rmtree(base)
        if _baseline_worktree(args.baseline, base):
            try:
                benv = _env(base)
                for label, cmd_args in commands:
                    if label not in ("--help", "validate YAML syntax error",
                                     "validate non-UTF-8 file"):
                        continue
                    row = {"command": f"impbench {label}", "args": cmd_args,
                           **_time([exe, *cmd_args], benv, args.repeat, work)}
                    mods = _modules(cmd_args, benv, work)
                    row["heavy_modules"] = mods.get("modules")
                    row["bench_imported_from"] = mods.get("bench")
                    base_rows.append(row)
                    print(f"  baseline {row['command']}: {row['median_s']:.3f} s",
                          file=sys.stderr)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(base)], capture_output=True)
                subprocess.run(["git", "-C", str(REPO), "worktree", "prune"],
                               capture_output=True)
    by_cmd = {r["command"]: r for r in base_rows}
    for r in rows:
        b = by_cmd.get(r["command"])
        r["baseline_median_s"] = None if b is None else b["median_s"]
        r["speedup"] = None if b is None else round(b["median_s"] / r["median_s"], 2)

    def mods(r: dict) -> str:
        m = r.get("heavy_modules")
        return "?" if m is None else (", ".join(k for k, v in m.items() if v) or "none")

    print(f"\n{'command':38s} {'median s':>9s} {'min s':>7s} {'exit':>4s} "
          f"{args.baseline + ' s':>11s} {'speed-up':>8s}  heavy modules imported")
    for r in rows:
        bs = "" if r["baseline_median_s"] is None else f"{r['baseline_median_s']:.3f}"
        sp = "" if r["speedup"] is None else f"x{r['speedup']:.1f}"
        print(f"{r['command']:38s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['exit']:4d} "
              f"{bs:>11s} {sp:>8s}  {mods(r)}")
    for r in base_rows:
        print(f"baseline {args.baseline}: {r['command']} imports {mods(r)} "
              f"(exit {r['exit']}; bench from {r.get('bench_imported_from')})")
    out = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg()},
        "repeat": args.repeat, "baseline_commit": args.baseline,
        "rows": rows, "baseline_rows": base_rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
