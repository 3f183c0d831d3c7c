"""Smoke test of the benchmark runner on tiny data, through a real subprocess."""

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _benchmark_module(name):
    """A script of benchmarks/ (a folder, not a package), imported as a module."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


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
    replace_section = _benchmark_module("throughput").replace_section
    text = "# T\n\n## cpu\n\nold cpu\n\n## cuda\n\ngpu rows\n"
    replaced = replace_section(text, "## cpu\n", "## cpu\n\nnew cpu\n")
    assert replaced == "# T\n\n## cpu\n\nnew cpu\n\n## cuda\n\ngpu rows\n"
    last = replace_section(text, "## cuda\n", "## cuda\n\nnew gpu\n")
    assert last == "# T\n\n## cpu\n\nold cpu\n\n## cuda\n\nnew gpu\n"
    appended = replace_section("# T\n", "## mps\n", "## mps\n\nrows\n")
    assert appended == "# T\n\n## mps\n\nrows\n"


def test_report_tables_the_full_fashion_records(tmp_path):
    full_runs = _benchmark_module("run").full_runs
    assert full_runs(tmp_path) == ""
    record = {"split": "all", "images": 70000, "device": "cpu", "torch_threads": 2,
              "epochs": 50, "seed": 0, "fit_s": 6200.4, "epoch_s": 110.2,
              "images_per_s": 635.2, "refine_s": 410.7, "ACC": 0.66612, "NMI": 0.63, "ARI": 0.52}
    (tmp_path / "fashion_full_cpu.json").write_text(json.dumps(record))
    probe = {k: v for k, v in record.items() if k != "refine_s"} | {"epochs": 2}
    (tmp_path / "fashion_full.json").write_text(json.dumps(probe))
    (tmp_path / "runs.json").write_text("{}")  # not a fashion_full record
    rows = [line for line in full_runs(tmp_path).splitlines() if line.startswith("| fashion")]
    tail = "| 0.666 | 0.630 | 0.520 |"
    assert rows == [
        "| fashion_full.json | all | 70000 | cpu | 2 | 2 | 0 | 6200 | 110.2 | 635 | n/a " + tail,
        "| fashion_full_cpu.json | all | 70000 | cpu | 2 | 50 | 0 | 6200 | 110.2 | 635 | 411 "
        + tail,
    ]


def test_ablation_reads_named_and_parameter_variants():
    variant = _benchmark_module("ablation").variant
    assert variant("n_init=3") == {"n_init": 3}
    assert variant('self_labelling_epochs=30, metric="cosine"') == {
        "self_labelling_epochs": 30, "metric": "cosine"}
    assert variant('negative_weighting="hard" (literal reading)') == {"negative_weighting": "hard"}
    for bad in ("no_such_parameter=1", "n_init", "n_init=)"):
        with pytest.raises(argparse.ArgumentTypeError):
            variant(bad)


def test_ablation_smoothed_input_is_the_mean_over_each_row_and_its_neighbours():
    ablation = _benchmark_module("ablation")
    X = np.array([[0.0], [1.0], [10.0], [12.0]], dtype=np.float32)
    np.testing.assert_allclose(ablation.smooth(X, k=1), [[0.5], [0.5], [11.0], [11.0]])
    assert ablation.smooth(X, k=1).dtype == np.float32
    assert ablation.variant(ablation.SMOOTHED) == {}


def test_targets_mark_the_held_out_sets():
    run = _benchmark_module("run")
    rows = [
        {"dataset": dataset, "method": method, "seed": seed, "ACC": acc, "NMI": acc,
         "ARI": acc, "clusters_used": 3, "fit_s": 1.0, "peak_rss_mb": 1.0}
        for dataset in ("digits", "wine")
        for method, acc in ((run.CDC, 0.9), ("KMeans(n_init=10)", 0.8))
        for seed in (0, 1)
    ]
    lines = run.targets(run.summarise(pd.DataFrame(rows))).splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert {row[0]: row[-1] for row in cells} == {"digits": "", "wine": "yes"}
    assert "+0.100" in lines[2]


def test_scale_mixtures_are_memmaps_with_their_labels_and_tabled(tmp_path, monkeypatch):
    monkeypatch.setenv("SKCDC_CACHE", str(tmp_path))
    scale = _benchmark_module("scale")
    X, y = scale.make_mixture(1000, 7, d=16, imbalance=4.0, seed=3)
    assert isinstance(X, np.memmap) and X.shape == (1000, 16) and not X.flags.writeable
    sizes = np.bincount(y, minlength=7)
    assert sizes.min() > 0 and 2 < sizes.max() / sizes.min() < 8  # about 4:1
    again, _ = scale.make_mixture(1000, 7, d=16, imbalance=4.0, seed=3)
    np.testing.assert_array_equal(X, again)
    record = {"rows": 1000, "clusters": 7, "method": "cdc", "ACC": 0.5, "neighbour_search": "exact"}
    table = scale.report([record])
    assert "| 1,000 | 7 | cdc | 0.500 |" in table and "| exact |" in table


def test_ablation_page_has_the_suite_mean_and_each_rows_largest_fall(tmp_path):
    ablation = _benchmark_module("ablation")
    rows = [
        {"dataset": dataset, "variant": variant, "seed": seed, "ACC": acc, "machine": "m"}
        for dataset, accs in (("digits", (0.9, 0.8, 0.7)), ("wine", (0.6, 0.9, 0.9)))
        for variant, acc in zip(("KMeans(n_init=10)", "default", "n_init=1"), accs, strict=True)
        for seed in (0, 1)
    ]
    page = tmp_path / "ablation.md"
    ablation.report(pd.DataFrame(rows), page)
    lines = {line.split(" | ")[0]: line for line in page.read_text().splitlines()}
    # default: digits 0.8, wine 0.9; n_init=1 falls 0.1 on digits, none on wine.
    assert "| 0.850 |" in lines["| default"]
    assert lines["| n_init=1"].endswith("| 0.800 | +0.100 |")
    assert "0.600 ± 0.000 (2)" in lines["| KMeans(n_init=10)"]


def test_image_mode_variants_are_estimator_parameters_and_tabled_per_set():
    image_mode = _benchmark_module("image_mode")
    from skcdc import CDCClustering

    parameters = set(CDCClustering().get_params())
    assert all(set(params) <= parameters for params in image_mode.VARIANTS.values())
    results = pd.DataFrame({
        "dataset": ["digits-images"] * 3 + ["fashion-mnist-images"],
        "variant": ["default"] * 3 + ["neighbour_share=0.5"],
        "seed": [0, 1, 2, 0],
        "acc": [0.5, 0.6, 0.7, 0.9],
        "fit_time": [1.0, 2.0, 3.0, 10.0],
    })
    table = image_mode.report(results)
    # Mean, population std and count of the seeds, mean fit time.
    assert "| digits-images | default | 0.600 ± 0.082 | 3 | 2 |" in table
    assert "| fashion-mnist-images | neighbour_share=0.5 | 0.900 ± 0.000 | 1 | 10 |" in table
