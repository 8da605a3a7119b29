"""Report figures (matplotlib, Agg canvas, no pyplot global state)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench import registry, store
from bench.errors import RegistryError
from bench.reportkit import new_figure, png_bytes
from bench.scenario import canonical_json

__all__ = ["baseline_cells", "plant_figures", "plot_k_tracks"]

_PNG = b"\x89PNG\r\n\x1a\n"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def plant_figures(plan: dict) -> tuple[dict[str, bytes], str]:
    """Figures contributed by the scenario's plant through its ``report_figures`` hook.

    A plant class may define a class- or staticmethod ``report_figures(plan) -> dict[str,
    bytes]`` (figure name -> PNG bytes) that draws plant-specific context for the report,
    e.g. the lever rig's true-stiffness mapping (004 App. B, Fig. 8/17).

    Parameters
    ----------
    plan : dict
        ``scenario.json`` content.

    Returns
    -------
    figures : dict of str to bytes
        PNG bytes by name (empty when the plant has no hook or it could not run).
    note : str
        Why no figure came although the plant has a hook (empty otherwise), for the report.
    """
    try:
        cls = registry.resolve("plants", plan["plant"]["name"])
    except RegistryError as exc:
        return {}, f"Plant figures unavailable: {exc}"
    hook = getattr(cls, "report_figures", None)
    if hook is None:
        return {}, ""
    figs = hook(plan)
    if not isinstance(figs, dict):
        raise TypeError(f"{cls.__name__}.report_figures must return a dict of name -> PNG "
                        f"bytes; got {type(figs).__name__}")
    for name, data in figs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{cls.__name__}.report_figures: figure name {name!r} must match "
                             f"{_NAME.pattern}")
        if not isinstance(data, bytes) or not data.startswith(_PNG):
            raise ValueError(f"{cls.__name__}.report_figures: figure {name!r} is not PNG bytes")
    return dict(figs), ""


def baseline_cells(plan: dict) -> list[tuple[str, dict]]:
    """``(title, factors)`` of the baseline cell of each split level (or the one baseline)."""
    lay = plan["layout"]
    base = dict(lay["baseline"])
    split = lay["split"]
    if split is None:
        return [("baseline", base)]
    return [(f"{split}={lvl}", {**base, split: lvl}) for lvl in plan["grid"][split]]


def _match(factors: dict, where: dict) -> bool:
    return all(canonical_json(factors.get(k)) == canonical_json(v) for k, v in where.items())


def plot_k_tracks(out: Path, plan: dict, records: list[dict]) -> bytes | None:
    """PNG of the estimated vs true K(t) of every method in each baseline cell (first seed).

    Parameters
    ----------
    out : Path
        Run directory (arrays are read from ``out/arrays``).
    plan : dict
        ``scenario.json`` content.
    records : list of dict
        Result records.

    Returns
    -------
    bytes or None
        The PNG, or None when no baseline cell has estimate arrays.
    """
    panels = []
    for title, where in baseline_cells(plan):
        recs = [r for r in records if r.get("arrays") and (out / r["arrays"]).is_file()
                and _match(r["factors"], where)]
        if not recs:
            continue
        seed = min(r["seed"] for r in recs)
        tracks = []
        for m in plan["methods"]:
            for r in recs:
                if r["seed"] == seed and r["method_key"] == m["key"]:
                    tracks.append((m["label"], r["status"], store.load_arrays(out / r["arrays"])))
        if tracks:
            panels.append((f"{title}, seed {seed}", tracks))
    if not panels:
        return None
    fig, axes = new_figure(8.0, 2.8 * len(panels), len(panels), 1)
    axes = axes[:, 0]
    for ax, (title, tracks) in zip(axes, panels):
        arr0 = tracks[0][2]
        ax.plot(arr0["t"], arr0["K_true"], "k--", lw=2.0, label="true K")
        for label, status, arr in tracks:
            k = np.asarray(arr["K"], dtype=float)
            ax.plot(arr["t"], k, lw=1.2, label=label + ("" if status == "ok" else " (failed)"))
        lo, hi = float(np.min(arr0["K_true"])), float(np.max(arr0["K_true"]))
        span = max(hi - lo, abs(hi), 1.0)
        ax.set_ylim(lo - 0.6 * span, hi + 0.6 * span)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time within one period [s]")
        ax.set_ylabel("K [Nm/rad]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=min(4, len(tracks) + 1), loc="upper right")
    return png_bytes(fig)
