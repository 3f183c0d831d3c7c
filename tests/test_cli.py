"""The skcdc command line on real files: the console script in real
subprocesses for the end-to-end paths, and ``main`` in this process for the
error paths, which run the same code without an interpreter start each."""

import contextlib
import io
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from skcdc.cli import main
from skcdc.persistence import load_model


def skcdc(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "skcdc", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=cwd, check=False,
    )


def skcdc_main(*args):
    """``main`` called as the console script calls it, with its exit code
    (argparse's usage errors exit) and what it printed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    X, y = make_blobs(n_samples=300, centers=3, n_features=6, random_state=0)
    np.save(root / "emb.npy", X)
    np.savez(root / "two.npz", a=X, b=X[:, :2])
    columns = [f"f{i}" for i in range(6)]
    pd.DataFrame(X, columns=columns).to_csv(root / "emb.csv", index=False)
    pd.DataFrame({"label": y}).to_csv(root / "truth.csv", index=False)
    return root, X, y


FIT = ("--n-clusters", 3, "--epochs", 15, "--quiet")


def test_fit_writes_labels_and_a_model_then_predict_and_evaluate(files):
    root, X, _ = files
    result = skcdc("fit", root / "emb.npy", *FIT, "--out", root / "labels.csv",
                   "--save", root / "model.skcdc")
    assert result.returncode == 0, result.stderr
    labels = pd.read_csv(root / "labels.csv")["label"].to_numpy()
    assert labels.shape == (300,)
    model = load_model(root / "model.skcdc")
    np.testing.assert_array_equal(model.labels_, labels)
    np.testing.assert_array_equal(model.predict(X), labels)

    predicted = skcdc("predict", root / "model.skcdc", root / "emb.npy")
    assert predicted.returncode == 0, predicted.stderr
    stdout_labels = pd.read_csv(io.StringIO(predicted.stdout))["label"].to_numpy()
    np.testing.assert_array_equal(stdout_labels, labels)

    report = skcdc("evaluate", root / "labels.csv", root / "truth.csv")
    assert report.returncode == 0, report.stderr
    acc = float(report.stdout.split("ACC")[1].split()[0])
    assert acc > 0.95 and "NMI" in report.stdout and "ARI" in report.stdout


def test_csv_with_header_and_a_progress_bar_on_stderr(files):
    root, _, _ = files
    result = skcdc("fit", root / "emb.csv", "--n-clusters", 3, "--epochs", 3,
                   "--save", root / "csv-model.skcdc")
    assert result.returncode == 0, result.stderr
    assert "label" in result.stdout.splitlines()[0] and len(result.stdout.splitlines()) == 301
    assert "CDCClustering" in result.stderr  # the tqdm bar
    model = load_model(root / "csv-model.skcdc")
    assert list(model.feature_names_in_) == [f"f{i}" for i in range(6)]


def test_npz_needs_a_key_when_it_holds_several_arrays(files):
    root, _, _ = files
    result = skcdc_main("fit", root / "two.npz", *FIT)
    assert result.returncode == 1
    assert "choose one with --key" in result.stderr and "Traceback" not in result.stderr
    assert skcdc_main("fit", root / "two.npz", *FIT, "--key", "a").returncode == 0


def test_parquet_reads_or_names_pyarrow(files):
    root, X, _ = files
    path = root / "emb.parquet"
    try:
        pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1")  # unreadable without pyarrow either way
        result = skcdc_main("fit", path, *FIT)
        assert result.returncode == 1 and "pip install pyarrow" in result.stderr
        return
    assert skcdc_main("fit", path, *FIT).returncode == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing.npy", "no such file"),
        (lambda root: _save(root / "nan.npy", np.array([[1.0, np.nan], [2, 3], [4, 5]])), "NaN"),
        (lambda root: _save(root / "one.npy", np.ones((1, 4))), "1 sample"),
        (lambda root: _write(root / "text.csv", "a,b\n1,x\n2,y\n"), "non-numeric columns"),
        (lambda root: _write(root / "emb.txt", "1 2\n"), "unsupported file type"),
    ],
    ids=["missing", "nan", "one-row", "text-column", "suffix"],
)
def test_bad_files_give_one_line_errors(files, make, message):
    root, _, _ = files
    result = skcdc_main("fit", make(root), *FIT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skcdc: error:") and message in lines[0]


def test_predict_with_wrong_width_or_header_mismatch(files):
    root, X, _ = files
    assert skcdc_main("fit", root / "emb.csv", *FIT, "--save", root / "m.skcdc").returncode == 0
    _save(root / "narrow.npy", X[:, :4])
    narrow = skcdc_main("predict", root / "m.skcdc", root / "narrow.npy")
    assert narrow.returncode == 1 and "4 features" in narrow.stderr
    pd.DataFrame(X, columns=[f"g{i}" for i in range(6)]).to_csv(root / "other.csv", index=False)
    renamed = skcdc_main("predict", root / "m.skcdc", root / "other.csv")
    assert renamed.returncode == 1 and "feature names" in renamed.stderr
    not_a_model = skcdc_main("predict", root / "emb.npy", root / "emb.csv")
    assert not_a_model.returncode == 1 and "skcdc model" in not_a_model.stderr


def test_usage_errors_exit_2_and_help_has_examples():
    assert skcdc_main("fit").returncode == 2
    assert skcdc_main("nonsense").returncode == 2
    help_text = skcdc_main("--help").stdout
    assert "skcdc fit embeddings.npy --n-clusters 10" in help_text
    assert skcdc_main("fit", "--help").returncode == 0


def _save(path, array):
    np.save(path, array)
    return path


def _write(path, text):
    path.write_text(text)
    return path
