"""The benchmarks' offline loaders read real files and name what to install when
one is missing."""

import gzip
import importlib
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
datasets = importlib.import_module("datasets")
sys.path.pop(0)


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(
        struct.pack(">I", n) for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28))
    labels = rng.integers(0, 10, 7)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    got_images, got_labels = datasets.load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        datasets.load_fashion_mnist("test", root=tmp_path)


def test_bad_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        datasets.load_fashion_mnist("validation", root=tmp_path)


def test_digits_and_imbalanced_blobs():
    digits = datasets.load_digits_features()
    assert digits.X.shape == (1797, 64) and digits.n_clusters == 10
    blobs = datasets.make_imbalanced_blobs(n_clusters=4, ratio=10, n_largest=200)
    sizes = np.bincount(blobs.y)
    assert sizes.max() / sizes.min() == pytest.approx(10, rel=0.05)


def test_separated_blobs_are_what_k_means_finds_exactly():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    blobs = datasets.make_separated_blobs(n_samples=300, n_features=20, n_clusters=3)
    assert blobs.X.shape == (300, 20) and blobs.X.dtype == np.float32
    labels = KMeans(3, n_init=3, random_state=0).fit_predict(blobs.X)
    assert adjusted_rand_score(blobs.y, labels) == 1.0


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKCDC_CACHE", str(tmp_path))
    assert datasets.cache_dir() == tmp_path


@pytest.mark.parametrize(
    ("name", "shape", "n_clusters"),
    [("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast-cancer", (569, 30), 2)],
)
def test_held_out_tables_are_standardised(name, shape, n_clusters):
    table = datasets.BENCHMARK_DATASETS[name]()
    assert table.X.shape == shape and table.n_clusters == n_clusters
    assert table.X.dtype == np.float32
    np.testing.assert_allclose(table.X.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(table.X.std(0), 1, atol=1e-4)


def test_unknown_table_is_refused():
    with pytest.raises(ValueError, match="iris"):
        datasets.load_table("boston")


def test_held_out_sets_are_in_the_suite():
    assert set(datasets.HELD_OUT_DATASETS) <= set(datasets.BENCHMARK_DATASETS)


def test_long_tailed_draw_falls_by_the_ratio():
    digits = datasets.load_digits_features()
    tail = datasets.BENCHMARK_DATASETS["digits-long-tailed"]()
    sizes = np.bincount(tail.y)
    assert tail.n_clusters == 10 and sizes[0] == np.bincount(digits.y)[0]
    assert 9 <= sizes[0] / sizes[-1] <= 11
    assert np.all(np.diff(sizes) < 0)
    # The same rows at every call, each one a row of the full set.
    again = datasets.long_tailed(digits)
    np.testing.assert_array_equal(tail.X, again.X)
    rows = {row.tobytes(): label for row, label in zip(digits.X, digits.y)}
    assert all(rows[row.tobytes()] == label for row, label in zip(tail.X, tail.y))


def test_glyphs_render_every_class_once_per_face():
    try:
        fonts = datasets._glyph_fonts()[:3]
    except ImportError:
        pytest.skip("fontconfig is not installed")
    if not fonts:
        pytest.skip("no installed font has the 62 glyphs")
    images, labels, faces = datasets._render_glyphs(fonts, 32)
    n_faces = faces.max() + 1
    assert images.shape == (62 * n_faces, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), np.full(62, n_faces))
    # Every glyph has ink, and the classes of a face are drawn apart (some
    # fonts draw a few alike: l, I and 1; o, O and 0).
    first = images[faces == 0].reshape(62, -1)
    assert first.max(axis=1).min() > 0
    assert len({row.tobytes() for row in first}) >= 50
