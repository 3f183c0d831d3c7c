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
    assert variant('self_labelling_epochs=30, init="kmeans"') == {
        "self_labelling_epochs": 30, "init": "kmeans"}
    for bad in ("no_such_parameter=1", "n_init", "n_init=)"):
        with pytest.raises(argparse.ArgumentTypeError):
            variant(bad)


def test_kept_accuracy_is_the_accuracy_of_the_best_scored_run_of_each_subset():
    kept_accuracy = _benchmark_module("restarts").kept_accuracy
    scores, accuracy = [3.0, 2.0, 1.0], [0.9, 0.5, 0.1]
    np.testing.assert_allclose(kept_accuracy(scores, accuracy, 1), accuracy)
    # Pairs {0, 1} and {0, 2} keep run 0, {1, 2} keeps run 1.
    np.testing.assert_allclose(kept_accuracy(scores, accuracy, 2), [0.9, 0.9, 0.5])
    # More subsets than allowed: a random draw of them, each still keeping its best.
    sampled = kept_accuracy(scores, accuracy, 2, max_subsets=2)
    assert len(sampled) == 2 and set(sampled) <= {0.9, 0.5}


def test_expected_best_accuracy_is_the_mean_over_every_subset_and_its_error_is_bootstrapped():
    restarts = _benchmark_module("restarts")
    rng = np.random.default_rng(0)
    scores, accuracy = rng.normal(size=9), rng.uniform(size=9)
    for n in (1, 3, 9):
        every = restarts.kept_accuracy(scores, accuracy, n, max_subsets=10**6)
        assert restarts.expected_best_accuracy(scores, accuracy, n) == pytest.approx(every.mean())
    # Nothing to resample when every run is as good; otherwise it shrinks with the pool.
    assert restarts.pool_error(scores, np.full(9, 0.5), 3) == pytest.approx(0.0)
    small = restarts.pool_error(scores, accuracy, 3)
    large = restarts.pool_error(np.tile(scores, 4), np.tile(accuracy, 4), 3)
    assert 0 < large < small


def test_seed_spread_is_the_std_of_fits_drawn_from_what_a_fit_keeps():
    restarts = _benchmark_module("restarts")
    # Every fit keeps the same ACC: five seeds can only read no spread.
    assert np.all(restarts.seed_spread(np.full(7, 0.6)) == 0)
    # Two outcomes, equally likely: five draws split at best 3 to 2, a std of
    # 0.1 * sqrt(0.4 * 0.6), and are sometimes all alike, a std of zero.
    spread = restarts.seed_spread(np.array([0.6, 0.7]), draws=4000)
    assert spread.shape == (4000,) and spread.max() == pytest.approx(0.1 * np.sqrt(0.24))
    assert 0 < np.mean(spread == 0) < 0.1
    # More seeds estimate the same spread more tightly.
    wide = restarts.seed_spread(np.linspace(0.5, 0.7, 21), seeds=5).std()
    assert restarts.seed_spread(np.linspace(0.5, 0.7, 21), seeds=50).std() < wide / 2


def test_the_gate_keeps_the_consensus_only_when_it_scores_at_least_the_best_run():
    consensus_accuracy = _benchmark_module("restarts").consensus_accuracy
    y = np.array([0, 0, 0, 1, 1, 1])
    neighbors = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    # Two runs find the groups, one does not; run 2 is the one the scores favour.
    right, wrong = np.eye(2)[y], np.eye(2)[[0, 1, 0, 1, 0, 1]]
    probabilities = [right, right, wrong]
    combined, _ = consensus_accuracy(probabilities, y, 3)
    assert combined.tolist() == [1.0]
    # Run 2's score beats anything the consensus can reach (at most log 2 nats)...
    _, gated = consensus_accuracy(
        probabilities, y, 3, scores=np.array([0.0, 0.0, 9.0]), neighbors=neighbors
    )
    assert gated.tolist() == [pytest.approx(4 / 6)]
    # ...or falls short of the consensus's (the groups, no neighbour crossing: log 2).
    _, gated = consensus_accuracy(
        probabilities, y, 3, scores=np.array([0.0, 0.0, 0.5]), neighbors=neighbors
    )
    assert gated.tolist() == [1.0]


def _restarts(out, *args):
    """``benchmarks/restarts.py`` with one-epoch runs, in a subprocess: its
    stdout and the runs it wrote to ``out``."""
    result = subprocess.run(
        [sys.executable, "restarts.py", *args, "--epochs", "1", "--out", str(out)],
        cwd=ROOT / "benchmarks", check=True, capture_output=True, text=True, timeout=600,
    )
    return result.stdout, pd.read_csv(out)


def _stored(*args):
    """``benchmarks/restarts.py --stored`` on runs written before: its stdout."""
    return subprocess.run(
        [sys.executable, "restarts.py", "--stored", *map(str, args)],
        cwd=ROOT / "benchmarks", check=True, capture_output=True, text=True, timeout=600,
    ).stdout


def test_restarts_script_records_every_run(tmp_path):
    stdout, runs = _restarts(
        tmp_path / "restarts.csv", "--dataset", "digits", "--runs", "3", "--keep", "1", "2"
    )
    assert list(runs["seed"]) == [0, 1, 2]
    assert runs["ACC"].between(0, 1).all() and (runs["score"] > 0).all()
    two = next(line for line in stdout.splitlines() if line.startswith("| 2 |"))
    # The best-scored run's ACC, the consensus's and the default's, each a mean ± std;
    # the share of bad picks, and how often five seeds of the best-scored run and of
    # the default would read a std above the target.
    assert two.count("±") == 3 and two.count("%") == 3
    # The stored runs give the best-scored run's cells again, without a fit.
    stored = _stored(tmp_path / "restarts.csv", "--keep", "2")
    again = next(line for line in stored.splitlines() if line.startswith("| 2 |"))
    assert two.startswith(again)
    # A continued pool starts where the first ended, and the two read as one.
    _, more = _restarts(
        tmp_path / "more.csv", "--dataset", "digits", "--runs", "1", "--first-seed", "3",
        "--keep", "1",
    )
    assert list(more["seed"]) == [3]
    both = _stored(tmp_path / "restarts.csv", tmp_path / "more.csv", "--keep", "4")
    assert "4 runs" in both and any(line.startswith("| 4 |") for line in both.splitlines())
    with pytest.raises(subprocess.CalledProcessError) as error:
        _stored(tmp_path / "restarts.csv", tmp_path / "restarts.csv")
    assert "repeat a seed" in error.value.stderr


def test_restarts_script_reads_features_from_a_file(tmp_path, blobs):
    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X.astype(np.float32), y=y)
    _, runs = _restarts(
        tmp_path / "r.csv", "--features", str(tmp_path / "blobs.npz"), "--runs", "2",
        "--keep", "1", "--device", "cpu", "--set", "learning_rate=1e-2, n_neighbors=5",
    )
    assert list(runs["seed"]) == [0, 1] and runs["ACC"].between(1 / 3, 1).all()


@pytest.mark.parametrize(
    "params, message",
    [("learnin_rate=1e-2", "unknown: ['learnin_rate']"),
     ("n_init=3, learning_rate=1e-2", "--set cannot change ['n_init']")],
)
def test_restarts_script_refuses_parameters_it_cannot_set(tmp_path, params, message):
    with pytest.raises(subprocess.CalledProcessError) as error:
        _restarts(tmp_path / "r.csv", "--set", params)
    assert message in error.value.stderr


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
