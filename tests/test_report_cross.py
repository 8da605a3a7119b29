"""Cross-table reports (004 Table V layout), layout validation and the plant figure hook."""

from __future__ import annotations

import base64
import itertools
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.figures import plant_figures
from bench.layouts.table import _Notes, build_blocks
from bench.report import write_report
from bench.runner import run_scenario
from bench.scenario import ScenarioValidationError, load_scenario
from tests.runner_fakes import FakePlant

ROOT = Path(__file__).resolve().parents[1]
MOD = "tests.test_report_cross"
F = "tests.runner_fakes"
_PNG = b"\x89PNG\r\n\x1a\n"


class FigurePlant(FakePlant):
    """FakePlant with a ``report_figures`` hook (a tiny valid PNG made by matplotlib)."""

    @classmethod
    def report_figures(cls, plan: dict) -> dict[str, bytes]:
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(1, 1))
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([0, 1], [0, float(plan["plant"]["params"]["period"])])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=20)
        return {"sketch": buf.getvalue()}


class BadFigurePlant(FakePlant):
    @staticmethod
    def report_figures(plan: dict) -> dict[str, bytes]:
        return {"sketch": b"GIF89a not a png"}


SCENARIO = f"""\
name: cross
plant:
  name: {MOD}:FigurePlant
  params: {{period: 1.0}}
grid:
  perturbation: [fgwn, prbs]
  snr_db: [0, 10]
  duration: [2, 4]
  variation: [K, none]
methods:
  - {{name: '{F}:FakeLS', label: LS}}
  - {{name: '{F}:FakeMean', label: mean}}
  - {{name: '{F}:FakeBroken', label: broken}}
seeds: [0, 1]
metrics: [stiffness_error, nan_share]
layout:
  split: perturbation
  rows: [snr_db, duration]
  rows_mode: cross
  baseline: {{variation: K}}
reference:
  source: made-up Table V
  table:
    fgwn:
      median: {{LS: 9.5, mean: 40}}
  values:
    - {{perturbation: fgwn, snr_db: 10, duration: 4, method: LS, value: 12.5}}
    - {{perturbation: prbs, snr_db: 0, duration: 2, method: mean, value: null}}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cross")
    f = tmp / "s.yaml"
    f.write_text(SCENARIO)
    out = tmp / "out"
    run_scenario(load_scenario(f), out, jobs=1, progress=False)
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_cross_table_rows_values_and_medians(run_dir):
    paths = write_report(run_dir)
    md = paths["md"].read_text()
    rows = pq.read_table(paths["parquet"]).to_pylist()
    assert ("| snr_db | duration | LS [%] | LS ref | mean [%] | mean ref | broken [%] |"
            in md)
    for pert in ("fgwn", "prbs"):
        block = md.split(f"### perturbation = {pert}")[1].split("###")[0].split("\n## ")[0]
        block = block.split("Against the reference")[0].split("Why ours differs")[0]
        lines = [ln for ln in block.splitlines() if ln.startswith("| ") and "---" not in ln]
        body = [ln for ln in lines[1:] if not ln.startswith(("| Median", "| Coverage"))]
        median = next(ln for ln in lines if ln.startswith("| Median |"))
        # every combination of the row factors, first factor outermost (004 Table V)
        combos = list(itertools.product([0, 10], [2, 4]))
        assert [tuple(_cells(ln)[:2]) for ln in body] == [(str(a), str(b)) for a, b in combos]
        for ln, (snr, dur) in zip(body, combos):
            c = _cells(ln)
            v = np.array([r["stiffness_error"] for r in rows if r["label"] == "LS"
                          and r["perturbation"] == pert and r["snr_db"] == snr
                          and r["duration"] == dur and r["variation"] == "K"])
            assert v.size == 2  # the non-row factor is held at the baseline (variation K)
            assert c[2].startswith(f"{v.mean():.3g} ± " if v.mean() < 10 else f"{v.mean():.1f} ± ")
            assert re.fullmatch(r"-\[\d\]", c[6])  # failed method with a footnote
        med = np.median([r["stiffness_error"] for r in rows
                         if r["label"] == "LS" and r["perturbation"] == pert])
        mc = _cells(median)
        assert mc[:2] == ["Median", ""]
        assert mc[2].startswith(f"{med:.3g}" if med < 10 else f"{med:.1f}")
    def line(block: str, prefix: str) -> list[str]:
        return _cells(next(ln for ln in block.splitlines() if ln.startswith(prefix)))

    fg = md.split("### perturbation = fgwn")[1].split("###")[0]
    assert line(fg, "| 10 | 4 |")[3] == "12.5"
    assert line(fg, "| Median |")[3] == "9.5"
    pr = md.split("### perturbation = prbs")[1].split("###")[0]
    assert line(pr, "| 0 | 2 |")[5] == "-"  # the reference's own failure
    assert "**" not in fg  # no baseline bolding in the cross layout
    assert "rows: every combination of snr_db x duration" in md


def test_plant_figure_hook_is_written_and_embedded(run_dir):
    paths = write_report(run_dir)
    png = paths["plant_sketch"].read_bytes()
    assert png.startswith(_PNG)
    assert "![sketch](figures/plant_sketch.png)" in paths["md"].read_text()
    html = paths["html"].read_text()
    b64 = re.findall(r"<img alt='sketch' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", html)
    assert len(b64) == 1 and base64.b64decode(b64[0]) == png


def test_plant_figure_hook_errors_and_absence():
    plan = {"plant": {"name": f"{MOD}:BadFigurePlant", "params": {}}}
    with pytest.raises(ValueError, match="'sketch' is not PNG bytes"):
        plant_figures(plan)
    assert plant_figures({"plant": {"name": f"{F}:FakePlant", "params": {}}}) == ({}, "")
    figs, note = plant_figures({"plant": {"name": "tests.nowhere:Plant", "params": {}}})
    assert figs == {} and "Plant figures unavailable" in note


@pytest.mark.parametrize("layout, message", [
    ("{split: perturbation, rows: [snr_db], rows_mode: crossed}", r":\d+: layout.rows_mode"),
    ("{split: perturbation, rows: [], rows_mode: cross}",
     r":\d+: layout.rows_mode: 'cross' needs at least one row factor"),
])
def test_cross_layout_validation(tmp_path, layout, message):
    text = re.sub(r"layout:\n(  .*\n)+", f"layout: {layout}\n", SCENARIO)
    text = text.split("reference:")[0]
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioValidationError, match=message):
        load_scenario(f)


def test_cross_layout_rejects_one_at_a_time_reference_table(tmp_path):
    text = SCENARIO.replace("      median: {LS: 9.5, mean: 40}\n",
                            "      snr_db: {0: {LS: 1.0}}\n")
    f = tmp_path / "s.yaml"
    f.write_text(text)
    line = text.splitlines().index("      snr_db: {0: {LS: 1.0}}") + 1
    with pytest.raises(ScenarioValidationError,
                       match=rf"s.yaml:{line}: reference.table.fgwn.snr_db: with layout.rows_mode "
                             "'cross' give cell values under reference.values"):
        load_scenario(f)


def test_thesis_mechanical_in_table_v_layout():
    # The shipped mechanical study, laid out as 004 Table V without running it: synthetic
    # records (value = index of the cell) show that every published value sits in its row.
    sc = load_scenario(ROOT / "scenarios" / "thesis-mechanical.yaml")
    assert sc.layout["rows_mode"] == "cross" and sc.layout["rows"] == ["schedule", "duration"]
    plan = sc.to_dict()
    assert plan["layout"]["rows_mode"] == "cross"
    recs = []
    for i, combo in enumerate(itertools.product(*sc.grid.values())):
        factors = dict(zip(sc.grid, combo))
        for m in sc.methods:
            recs.append({"method_key": m.key, "factors": factors, "status": "ok",
                         "metrics": {"stiffness_error": float(i)}, "reason": ""})
    blocks = build_blocks(plan, recs, _Notes())
    assert [b.title for b in blocks] == ["perturbation = fgwn", "perturbation = prbs"]
    labels = [m.label for m in sc.methods]
    for b in blocks:
        assert b.head == ["schedule", "duration"] and len(b.rows) == 4 * 5
        assert all(list(cells) == labels for _, _, cells in b.rows)
    fg = {tuple(lbl): cells for lbl, _, cells in blocks[0].rows}
    # 004 Table V, FGWN, 0.5 Hz square, 24 s: LPV 14.5, bIRF 17.2; 1 Hz sine 400 s: LPV "-"
    cell = fg[("square_0.5", "24")]
    assert cell["LPV"] == ("0", "14.5") and cell["bIRF"] == ("0", "17.2")
    assert fg[("sine_1", "400")]["LPV"][1] == "-"
    pr = {tuple(lbl): cells for lbl, _, cells in blocks[1].rows}
    assert pr[("sine_2", "400")]["SDS"][1] == "6.7"
    # medians: over the 20 cells of each block; the thesis's medians beside them
    assert blocks[0].median["SDS"] == ("9.5", "12.1")
    assert blocks[0].median["bIRF"] == ("9.5", "11.7")
    assert blocks[1].median["SDS"] == ("29.5", "12.5")
    n_ref = sum(bool(r) for b in blocks for _, _, cells in b.rows for _, r in cells.values())
    assert n_ref == 280  # all Table V values placed
