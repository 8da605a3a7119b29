"""Run-to-run comparison on stand-in plugins with known better/worse/identical changes."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from bench.cli import main
from bench.compare import ComparisonError, compare_runs, write_comparison
from bench.runner import run_scenario
from bench.scenario import load_scenario

F = "tests.runner_fakes"
GRID = "{perturbation: [fgwn, prbs], snr_db: [0, 10]}"


def _run(tmp_path: Path, name: str, methods: dict[str, str], *, seeds: str = "[0, 1, 2]",
         grid: str = GRID, duration: float = 5, metrics: str = "[stiffness_error, vaf]") -> Path:
    """Run a fake scenario whose method labels map to the given fake classes."""
    lines = "\n".join(f"  - {{name: '{F}:{cls}', label: {lab}}}" for lab, cls in methods.items())
    f = tmp_path / f"{name}.yaml"
    f.write_text(f"name: study\nplant: {{name: '{F}:FakePlant', params: {{duration: {duration}}}}}"
                 f"\ngrid: {grid}\nmethods:\n{lines}\nseeds: {seeds}\nmetrics: {metrics}\n")
    out = tmp_path / name
    run_scenario(load_scenario(f), out, jobs=1, progress=False)
    return out


def _metric(out: Path, label: str, metric: str) -> dict:
    """(factors, seed) -> value of one method's metric, from the results table."""
    return {(r["perturbation"], r["snr_db"], r["seed"]): r[metric]
            for r in pq.read_table(out / "results.parquet").to_pylist() if r["label"] == label}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    # "new": constant gain in A, ensemble LS (tracks the square wave) in B -> better.
    # "same": LS in both -> identical.  "fix": raises in A, LS in B -> status change.
    a = _run(tmp, "a", {"new": "FakeMean", "same": "FakeLS", "fix": "FakeBroken",
                        "gone": "FakeMean"})
    b = _run(tmp, "b", {"new": "FakeLS", "same": "FakeLS", "fix": "FakeLS",
                        "added": "FakeMean"})
    return tmp, a, b


def test_changes_and_paired_tests_match_the_data(runs):
    _, a, b = runs
    cmp = compare_runs(a, b)
    assert cmp.methods == ["new", "same", "fix"]
    assert cmp.only_a == ["gone"] and cmp.only_b == ["added"]
    assert set(cmp.settings) == {"new", "fix"}  # backend changed under the same label
    ea, eb = _metric(a, "new", "stiffness_error"), _metric(b, "new", "stiffness_error")
    new = [c for c in cmp.changes if c.method == "new" and c.metric == "stiffness_error"]
    assert len(new) == 4
    for c in new:
        keys = [(c.factors["perturbation"], c.factors["snr_db"], s) for s in (0, 1, 2)]
        xa, xb = np.array([ea[k] for k in keys]), np.array([eb[k] for k in keys])
        ref = stats.ttest_rel(xb, xa)
        assert c.n == 3
        assert c.delta == pytest.approx(np.mean(xb - xa), rel=1e-12)
        assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
        ci = ref.confidence_interval(0.95)
        assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # constant estimate: 44.7 % error (100 * 50 / rms K); LS at 10 dB SNR: ~ 15 %
    hi_snr = [c for c in new if c.factors["snr_db"] == 10]
    assert all(c.mean_a == pytest.approx(44.72, abs=1.5) for c in hi_snr)
    assert all(c.delta < -20 and c.verdict == "better" and c.p < 0.05 for c in hi_snr)
    # VAF is higher-is-better: the same improvement reads "better" with a positive change
    vaf = [c for c in cmp.changes if c.method == "new" and c.metric == "vaf"
           and c.factors["snr_db"] == 10]
    assert all(c.delta > 0 and c.verdict == "better" for c in vaf)
    same = [c for c in cmp.changes if c.method == "same"]
    assert {c.verdict for c in same} == {"identical"} and all(c.delta == 0 for c in same)
    fix = [c for c in cmp.changes if c.method == "fix"]
    assert {(c.n, c.verdict) for c in fix} == {(0, "n/a (n < 3)")}
    assert len(cmp.status_changes) == 12
    assert {(s["A"], s["B"]) for s in cmp.status_changes} == {("failed", "ok")}


def test_summary_pools_pairs_with_wilcoxon(runs):
    _, a, b = runs
    cmp = compare_runs(a, b)
    s = next(s for s in cmp.summary if s.method == "new" and s.metric == "stiffness_error")
    ea, eb = _metric(a, "new", "stiffness_error"), _metric(b, "new", "stiffness_error")
    d = np.array([eb[k] - ea[k] for k in ea])
    assert s.pairs == 12 and s.median_delta == pytest.approx(np.median(d), rel=1e-12)
    assert s.p == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-12)
    assert np.median(d) < 0
    assert s.verdict == ("better" if s.p < 0.05 else "no significant change")
    cells = [c for c in cmp.changes if c.method == "new" and c.metric == "stiffness_error"]
    assert s.counts == dict(Counter(c.verdict for c in cells))
    q = stats.false_discovery_control([c.p for c in cells])
    assert s.significant_fdr == int(np.sum(q < 0.05))
    # swapping the runs turns every improvement into a deterioration
    back = compare_runs(b, a)
    sb = next(x for x in back.summary if x.method == "new" and x.metric == "stiffness_error")
    assert sb.counts.get("worse", 0) == s.counts.get("better", 0) > 0
    assert sb.median_delta == pytest.approx(-s.median_delta, rel=1e-12)


def test_fewer_than_three_seeds_gives_no_test(tmp_path):
    a = _run(tmp_path, "a", {"m": "FakeMean"}, seeds="[0, 1]")
    b = _run(tmp_path, "b", {"m": "FakeLS"}, seeds="[0, 1, 5]")
    cmp = compare_runs(a, b)
    assert cmp.seeds == [0, 1] and cmp.seeds_only == {"A": [], "B": [5]}
    assert {(c.n, c.verdict) for c in cmp.changes} == {(2, "n/a (n < 3)")}
    assert all(np.isnan(c.p) and np.isfinite(c.delta) for c in cmp.changes)


def test_report_files(runs):
    tmp, a, b = runs
    paths = write_comparison(compare_runs(a, b), tmp / "rep")
    md = paths["md"].read_text()
    assert "paired t-test" in md and "Wilcoxon" in md and "## Status changes" in md
    assert "| fgwn | 10 | new | 3 |" in md and "better" in md
    assert "methods only in A ['gone'], only in B ['added']" in md
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and '<td class="better">better</td>' in html
    data = json.loads(paths["json"].read_text())
    assert len(data["changes"]) == 3 * 4 * 2 and data["alpha"] == 0.05


def test_mismatched_scenarios_name_what_differs(tmp_path, runs):
    _, a, _ = runs
    levels = _run(tmp_path, "levels", {"new": "FakeLS"},
                  grid="{perturbation: [fgwn, prbs], snr_db: [0, 20]}")
    with pytest.raises(ComparisonError, match=r"levels of grid factor 'snr_db': only in A "
                                              r"\[10\], only in B \[20\]"):
        compare_runs(a, levels)
    factors = _run(tmp_path, "factors", {"new": "FakeLS"}, grid="{perturbation: [fgwn, prbs]}")
    with pytest.raises(ComparisonError, match=r"grid factors differ: only in A \['snr_db'\]"):
        compare_runs(a, factors)
    plant = _run(tmp_path, "plant", {"new": "FakeLS"}, duration=6)
    with pytest.raises(ComparisonError, match="plant parameter 'duration': 5 in A, 6 in B"):
        compare_runs(a, plant)
    other = _run(tmp_path, "other", {"x": "FakeLS"})
    with pytest.raises(ComparisonError, match="no method label in common"):
        compare_runs(a, other)
    # same factors, other cell ids: the plant resolved its parameters differently (new code)
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    plan = json.loads((moved / "scenario.json").read_text())
    for u in plan["units"]:
        if u["factors"] == {"perturbation": "prbs", "snr_db": 10}:
            u["cell_id"] = "0123456789abcdef"
    (moved / "scenario.json").write_text(json.dumps(plan))
    with pytest.raises(ComparisonError, match=r"cell \{'perturbation': 'prbs', 'snr_db': 10\} "
                                              r"has id \w{16} in A but 0123456789abcdef in B"):
        compare_runs(a, moved)
    with pytest.raises(FileNotFoundError, match="not an impbench run directory"):
        compare_runs(a, tmp_path)


def test_cli_compare(runs, tmp_path, capsys):
    _, a, b = runs
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "12 status change(s)" in out
    assert (tmp_path / "c" / "compare.html").is_file()
    assert main(["compare", str(a), str(b)]) == 0
    assert (b / "compare_a" / "compare.md").is_file()
    levels = _run(tmp_path, "lv", {"new": "FakeLS"}, grid="{perturbation: [fgwn]}")
    assert main(["compare", str(a), str(levels)]) == 2
    assert "only in A ['snr_db']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(b), "--alpha", "2"])
