"""Plots render under a non-interactive backend to real, non-blank PNG files."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from skcdc import CDCClustering
from skcdc.plotting import (
    plot_cluster_examples,
    plot_confusion,
    plot_embedding,
    plot_history,
)


def _assert_png(figure, path):
    figure.savefig(path, dpi=60)
    plt.close(figure)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 2000
    pixels = mpimg.imread(path)
    assert pixels.std() > 0.01  # not a blank canvas


def test_history_plot(fitted, tmp_path):
    _assert_png(plot_history(fitted), tmp_path / "history.png")
    _assert_png(plot_history(fitted.history_), tmp_path / "history-frame.png")


@pytest.mark.parametrize("part, method", [("instance", "pca"), ("categorical", "tsne")])
def test_embedding_maps(fitted, blobs, part, method, tmp_path):
    X, y = blobs
    fig = plot_embedding(fitted, part=part, method=method, labels_true=y)
    assert len(fig.axes) == 2
    _assert_png(fig, tmp_path / f"{part}-{method}.png")
    _assert_png(plot_embedding(fitted, X[:50]), tmp_path / "new-samples.png")


def test_embedding_refuses_unknown_options(fitted):
    with pytest.raises(ValueError, match="part"):
        plot_embedding(fitted, part="both")


def test_confusion_matrix_plot(fitted, blobs, tmp_path):
    _, y = blobs
    ax = plot_confusion(y, fitted.labels_)
    assert ax.get_title() == "matched confusion matrix"
    _assert_png(ax.figure, tmp_path / "confusion.png")


def test_cluster_examples_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 10, 10), dtype=np.uint8)
    model = CDCClustering(3, epochs=1, batch_size=16, n_init=1, random_state=0).fit(images)
    fig = plot_cluster_examples(model, images, n_per_cluster=4)
    assert len(fig.axes) == 12
    _assert_png(fig, tmp_path / "examples.png")


def test_cluster_examples_needs_image_mode(fitted, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="image mode"):
        plot_cluster_examples(fitted, X)
