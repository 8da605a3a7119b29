"""Reports: Table III layout with reference values, footnotes, embedded figure."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.report import write_report
from bench.runner import run_scenario
from bench.scenario import load_scenario

DATA = Path(__file__).parent / "data"
F = "tests.runner_fakes"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    text = (DATA / "fake_ok.yaml").read_text().replace(
        "    label: mean\n",
        f"    label: mean\n  - {{name: '{F}:FakeBroken', label: broken}}\n")
    f = tmp / "s.yaml"
    f.write_text(text)
    out = tmp / "out"
    run_scenario(load_scenario(f), out, jobs=1, progress=False)
    return out


def test_markdown_has_table_iii_layout_with_reference(run_dir):
    paths = write_report(run_dir)
    md = paths["md"].read_text()
    rows = pq.read_table(paths["parquet"]).to_pylist()

    def ours(label, pert, snr):
        v = np.array([r["stiffness_error"] for r in rows if r["label"] == label
                      and r["perturbation"] == pert and r["snr_db"] == snr])
        return v.mean(), v.std(ddof=1)

    assert "### perturbation = fgwn" in md and "### perturbation = prbs" in md
    assert "| factor | level | LS [%] | LS ref | mean [%] | mean ref | broken [%] |" in md
    block = md.split("### perturbation = fgwn")[1].split("###")[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("| snr_db") or ln.startswith(
        "| Median")]
    assert len(lines) == 3  # two levels of the row factor and the median row
    m, s = ours("LS", "fgwn", 0)
    base = lines[0]
    assert base.startswith("| snr_db | **0** | ")  # baseline in bold
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", base)[1:-1]]
    assert cells[2:4] == [f"{m:.1f} ± {s:.3g}", "10.0"]  # ours and the reference apart
    mm, _ = ours("mean", "fgwn", 0)
    assert cells[4].startswith(f"{mm:.1f} ± ") and cells[5] == "44.7"
    assert re.fullmatch(r"-\[\d\]", cells[6])  # failed method: "-" with a footnote
    med = [r["stiffness_error"] for r in rows if r["label"] == "LS"
           and r["perturbation"] == "fgwn"]
    assert lines[2].startswith(f"| Median |  | {np.median(med):.1f} | 9.5 |")
    assert "broken: failed: EstimationError: matrix is singular (fake)" in md
    prbs = md.split("### perturbation = prbs")[1].split("###")[0]
    assert re.search(r"\| snr_db \| 10 \| [0-9.]+ ± [0-9.]+ \| - \|", prbs)  # ref failed
    assert "![estimated vs true K(t)](figures/baseline_K.png)" in md
    assert "## Appendix: all records" in md


def test_html_is_self_contained_with_embedded_png(run_dir):
    paths = write_report(run_dir)
    html = paths["html"].read_text()
    assert "<table>" in html and "<details>" in html
    pngs = [base64.b64decode(m) for m in
            re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)]
    assert pngs and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert paths["figure"].read_bytes() in pngs
    assert "src='http" not in html and "<link" not in html


def test_report_without_arrays_or_reference(run_dir, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_dir, out)
    shutil.rmtree(out / "arrays")
    shutil.rmtree(out / "figures")
    paths = write_report(out)
    assert "figure" not in paths
    assert "estimated vs true K(t)" not in paths["html"].read_text()


def test_report_of_non_run_dir_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an impbench run directory"):
        write_report(tmp_path)


def test_counts_against_the_reference_are_summed_over_panels(run_dir):
    md = write_report(run_dir)["md"].read_text()
    rows = pq.read_table(run_dir / "results.parquet").to_pylist()
    ls = np.mean([r["stiffness_error"] for r in rows if r["label"] == "LS"
                  and r["perturbation"] == "fgwn" and r["snr_db"] == 0])
    mean = np.mean([r["stiffness_error"] for r in rows if r["label"] == "mean"
                    and r["perturbation"] == "fgwn" and r["snr_db"] == 0])
    total = md.split("## Against the reference, all panels")[1].split("##")[0]
    # one reference cell per method (fgwn, 0 dB); prbs 10 dB's reference failed ("-")
    want_ls = int(ls <= 10.0)
    assert f"| LS | {want_ls} of 1 | {int(ls > 12.0)} |" in total
    assert f"| mean | {int(mean <= 44.7)} of 1 | {int(mean > 1.2 * 44.7)} |" in total
    n_at = want_ls + int(mean <= 44.7)
    assert f"| all methods | {n_at} of 2 ({50 * n_at:.1f} %) |" in total
    # each method's own statement of its departures from the source, once
    assert md.count("LS: a static gain per sample, not the source's method (fake).") == 1
