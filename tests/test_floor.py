"""The k-means floor: k-means' partition replaces the trained one when it agrees
better with the held-out neighbours."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from skcdc import CDCClustering, persistence
from skcdc._inference import predict_labels
from skcdc.neighbours import neighbour_search
from skcdc.scoring import neighbour_agreement
from skcdc.training import floor
from skcdc.training.floor import NearestCentroid, agreement_gap_error
from skcdc.views import NeighbourViews

# One epoch without the equal-size constraint: a partition k-means beats.
WEAK = {"epochs": 1, "self_labelling_epochs": 0, "equipartition": "none", "n_init": 1}


@pytest.fixture(scope="module")
def separated():
    X, y = make_blobs(n_samples=300, centers=6, n_features=8, cluster_std=0.5, random_state=1)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def floored(separated):
    X, _ = separated
    model = CDCClustering(6, batch_size=64, random_state=0, **WEAK).fit(X)
    assert model.kmeans_floor_, model.floor_scores_
    return model


def test_weak_training_ends_with_k_means_partition(separated, floored):
    X, y = separated
    kmeans = KMeans(6, n_init=10, random_state=0).fit(X)
    assert adjusted_rand_score(kmeans.labels_, floored.labels_) == 1.0
    assert adjusted_rand_score(y, floored.labels_) == 1.0
    assert floored.floor_scores_[1] > floored.floor_scores_[0]
    assert isinstance(floored.network_, NearestCentroid)


def test_floored_model_predicts_and_transforms_as_fitted(separated, floored):
    X, _ = separated
    np.testing.assert_array_equal(floored.predict(X), floored.labels_)
    proba = floored.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), floored.labels_)
    out = floored.transform(X[:4])
    assert out.shape == (4, 6 + 128)
    np.testing.assert_allclose(np.linalg.norm(out[:, 6:], axis=1), 1.0, rtol=1e-4)
    # The centres are the input-space means of the clusters k-means found.
    for k in range(6):
        np.testing.assert_allclose(
            floored.cluster_centers_[k], X[floored.labels_ == k].mean(0), atol=1e-4
        )


def test_floored_model_survives_save_load_and_pickle(tmp_path, separated, floored):
    X, _ = separated
    persistence.save_model(floored, tmp_path / "model.skcdc")
    loaded = persistence.load_model(tmp_path / "model.skcdc")
    assert loaded.kmeans_floor_
    np.testing.assert_array_equal(loaded.predict(X), floored.labels_)
    np.testing.assert_array_equal(loaded.floor_scores_, floored.floor_scores_)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(floored)).predict(X), floored.labels_)


class _BlindKMeans(KMeans):
    """k-means of the input drowned in noise: centres that ignore the blobs."""

    def fit(self, X, y=None, sample_weight=None):
        noise = np.random.default_rng(0).normal(scale=100.0, size=X.shape)
        return super().fit(X + noise.astype(X.dtype))


def test_trained_partition_kept_when_it_agrees_clearly_better(separated, monkeypatch):
    X, y = separated
    monkeypatch.setattr(floor, "KMeans", _BlindKMeans)
    model = CDCClustering(6, batch_size=64, n_init=1, random_state=0).fit(X)
    assert not model.kmeans_floor_
    assert model.floor_scores_[0] > model.floor_scores_[1]
    assert not isinstance(model.network_, NearestCentroid)
    assert adjusted_rand_score(y, model.labels_) > 0.9


@pytest.mark.filterwarnings("ignore:Cluster collapse")
def test_switched_off_keeps_the_partition_the_floor_replaced(separated, floored):
    X, _ = separated
    model = CDCClustering(6, batch_size=64, kmeans_floor=False, random_state=0, **WEAK).fit(X)
    assert not model.kmeans_floor_ and model.floor_scores_.shape == (0,)
    # The floor runs after training: what it replaced is this fit's partition
    # (benchmarks/ablation.py reads the row without the floor off it).
    replaced = predict_labels(floored.network_.network, X)
    np.testing.assert_array_equal(replaced, model.labels_)


def test_held_out_neighbours_follow_the_positives():
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32))
    views = NeighbourViews(X, 4, n_held_out=8)
    found, _ = neighbour_search(X, 12, device=torch.device("cpu"))
    torch.testing.assert_close(views.neighbors, found[:, :4])
    torch.testing.assert_close(views.held_out, found[:, 4:])
    # Positives are drawn from the first four only.
    _, positives = views(torch.arange(200), torch.Generator().manual_seed(0))
    assert all(
        any(torch.equal(positives[i], X[j]) for j in views.neighbors[i]) for i in range(200)
    )


def test_floor_scores_read_the_held_out_neighbours(separated, floored):
    X, _ = separated
    found, _ = neighbour_search(X, 30, device=torch.device("cpu"))
    held_out = found[:, 10:].numpy()
    assert neighbour_agreement(floored.labels_, held_out) == pytest.approx(
        floored.floor_scores_[1]
    )


def test_gap_error_is_zero_for_one_partition_and_positive_for_two():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    other = labels.copy()
    other[:60] = rng.integers(0, 4, 60)
    neighbors = rng.integers(0, 300, (300, 8))
    assert agreement_gap_error(labels, labels, neighbors, seed=0) == 0.0
    error = agreement_gap_error(labels, other, neighbors, seed=0)
    assert error > 0
    assert error == agreement_gap_error(labels, other, neighbors, seed=0)
