"""Write the true-stiffness mapping of a rig (004 App. B, Fig. 8/17) as PNG + JSON.

Usage::

    python -m plants.lever [--rig PATH] [--ideal] [--out DIR]

Runs the time-invariant trials for FGWN and PRBS (5 x 60 s each, fixed seed of the rig file),
writes ``DIR/lever_mapping.png`` (theoretical Eq. 34, per-trial and fitted curves) and
``DIR/lever_mapping.json`` (quadratic coefficients, trial positions and stiffnesses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plants.lever.mapping import PERTURBATIONS, mapping_figure, true_stiffness_mapping
from plants.lever.physics import theoretical_stiffness
from plants.lever.rig import load_rig


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry: compute both mappings, save figure and JSON, return the summary."""
    ap = argparse.ArgumentParser(prog="python -m plants.lever", description=__doc__.splitlines()[0])
    ap.add_argument("--rig", type=Path, default=None, help="rig YAML (default: shipped rig)")
    ap.add_argument("--ideal", action="store_true", help="remove every non-ideality")
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    rig = load_rig(args.rig)
    if args.ideal:
        rig = rig.ideal()
    maps = {k: true_stiffness_mapping(rig, k) for k in PERTURBATIONS}
    args.out.mkdir(parents=True, exist_ok=True)
    fig = mapping_figure(rig, maps)
    fig.savefig(args.out / "lever_mapping.png", dpi=120)
    summary = {k: m.to_dict() for k, m in maps.items()}
    for k, m in maps.items():
        summary[k]["theory_at_positions"] = theoretical_stiffness(m.positions, rig).tolist()
    (args.out / "lever_mapping.json").write_text(json.dumps(summary, indent=2))
    for k, m in maps.items():
        th = theoretical_stiffness(m.positions, rig)
        rel = ", ".join(f"{100 * (s / t - 1):+.1f}%" for s, t in zip(m.stiffness, th))
        print(f"{k}: K at {[round(float(p) * 1e3, 1) for p in m.positions]} mm = "
              f"{[round(float(s)) for s in m.stiffness]} N/m (vs Eq. 34: {rel})")
    print(f"wrote {args.out / 'lever_mapping.png'} and {args.out / 'lever_mapping.json'}")
    return summary


if __name__ == "__main__":
    main()
