"""Smoke test of the benchmark runner on tiny data, through a real subprocess."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_quick_suite_writes_table_csv_and_plots(tmp_path):
    report = tmp_path / "docs" / "benchmarks.md"
    subprocess.run(
        [sys.executable, "run.py", "--quick", "--seeds", "0", "1",
         "--results", str(tmp_path / "results"), "--report", str(report)],
        cwd=ROOT / "benchmarks", check=True, capture_output=True, timeout=600,
    )
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert set(runs["method"]) == {"KMeans(n_init=10)", "CDCClustering (default)"}
    assert len(runs) == 4
    assert runs["ACC"].between(0, 1).all() and (runs["fit_s"] > 0).all()
    text = report.read_text()
    assert "| digits-300 | CDCClustering (default) |" in text
    for png in ("benchmarks_acc.png", "benchmarks_curves.png"):
        data = (report.parent / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_throughput_run_replaces_only_its_own_device_section():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from throughput import replace_section
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    text = "# T\n\n## cpu\n\nold cpu\n\n## cuda\n\ngpu rows\n"
    replaced = replace_section(text, "## cpu\n", "## cpu\n\nnew cpu\n")
    assert replaced == "# T\n\n## cpu\n\nnew cpu\n\n## cuda\n\ngpu rows\n"
    last = replace_section(text, "## cuda\n", "## cuda\n\nnew gpu\n")
    assert last == "# T\n\n## cpu\n\nold cpu\n\n## cuda\n\nnew gpu\n"
    appended = replace_section("# T\n", "## mps\n", "## mps\n\nrows\n")
    assert appended == "# T\n\n## mps\n\nrows\n"
