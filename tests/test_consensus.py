"""The consensus of restarts: k-means over the runs' cluster probabilities, kept
when it scores at least the best run."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from skcdc import CDCClustering, persistence
from skcdc.training import stages
from skcdc.training.consensus import RestartConsensus, fit_consensus

# Short, unconstrained runs disagree with each other, so there is something to combine.
RUNS = {
    "epochs": 2, "batch_size": 64, "equipartition": "none", "kmeans_floor": False, "random_state": 0
}


@pytest.fixture(scope="module")
def consensus(blobs):
    X, _ = blobs
    model = CDCClustering(3, n_init=3, **RUNS).fit(X)
    # Every run and the consensus find the three blobs: the tie goes to the consensus.
    assert model.consensus_ and isinstance(model.network_, RestartConsensus)
    return model


def _cpu_network(model):
    """A CPU copy of the fitted network: a fit on a GPU leaves it there, and the
    tests compare its outputs with NumPy arrays."""
    return copy.deepcopy(model.network_).cpu()


def _run_probabilities(network, X):
    """Each kept run's cluster probabilities, concatenated (``network`` on the CPU)."""
    data = torch.tensor(X, dtype=torch.float32)
    with torch.inference_mode():
        return torch.cat([torch.softmax(run(data)[0], 1) for run in network.runs], 1)


def test_labels_are_the_nearest_consensus_centres(blobs, consensus):
    X, y = blobs
    assert isinstance(consensus.network_, RestartConsensus) and consensus.consensus_
    assert len(consensus.network_.runs) == consensus.run_scores_.size == 3
    network = _cpu_network(consensus)
    distances = torch.cdist(_run_probabilities(network, X), network.centers)
    np.testing.assert_array_equal(consensus.labels_, distances.argmin(1).numpy())
    np.testing.assert_array_equal(consensus.predict(X), consensus.labels_)
    np.testing.assert_array_equal(consensus.categorical_embedding_.argmax(1), consensus.labels_)
    np.testing.assert_allclose(consensus.categorical_embedding_.sum(1), 1, rtol=1e-5)
    assert adjusted_rand_score(y, consensus.labels_) > 0.9


def test_centres_are_k_means_of_the_runs_probabilities(blobs, consensus):
    X, _ = blobs
    probabilities = _run_probabilities(_cpu_network(consensus), X).numpy()
    blocks = np.split(probabilities, 3, axis=1)
    centers, variance, labels = fit_consensus(blocks, random_state=0)
    nearest = torch.cdist(torch.from_numpy(probabilities), torch.from_numpy(centers)).argmin(1)
    np.testing.assert_array_equal(labels, nearest.numpy())
    # Another k-means seed may number the clusters otherwise; the partition is the same.
    assert adjusted_rand_score(consensus.labels_, labels) == pytest.approx(1.0)
    assert variance > 0


def test_instance_vectors_are_the_best_scored_runs(blobs, consensus):
    X, _ = blobs
    reference = int(np.argmax(consensus.run_scores_))
    assert int(consensus.network_.reference) == reference
    with torch.inference_mode():
        _, z = _cpu_network(consensus).runs[reference](torch.tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(consensus.instance_embedding_, z.numpy(), atol=1e-5)


def test_same_seed_same_consensus(blobs, consensus):
    X, _ = blobs
    again = CDCClustering(3, n_init=3, **RUNS).fit(X)
    np.testing.assert_array_equal(again.labels_, consensus.labels_)


def test_survives_save_load_and_pickle(blobs, consensus, tmp_path):
    X, _ = blobs
    path = tmp_path / "consensus.skcdc"
    persistence.save_model(consensus, path)
    for loaded in (persistence.load_model(path), pickle.loads(pickle.dumps(consensus))):
        assert isinstance(loaded.network_, RestartConsensus)
        np.testing.assert_array_equal(loaded.predict(X), consensus.labels_)
        np.testing.assert_allclose(loaded.transform(X), consensus.transform(X), atol=1e-6)


def test_the_consensus_scores_at_least_as_well_as_every_run(blobs, consensus):
    X, _ = blobs
    assert consensus.score(X) >= consensus.run_scores_.max() - 1e-9


def test_the_default_keeps_the_best_run_when_the_consensus_scores_lower(blobs, monkeypatch):
    X, _ = blobs

    def one_cluster(probabilities, random_state, reference):
        # A consensus with every sample at its first centre scores 0.
        centers, variance, labels = fit_consensus(probabilities, random_state, reference)
        centers[1:] += 100.0
        return centers, variance, np.zeros_like(labels)

    monkeypatch.setattr(stages, "fit_consensus", one_cluster)
    default = CDCClustering(3, n_init=3, **RUNS).fit(X)
    assert not default.consensus_ and not isinstance(default.network_, RestartConsensus)
    assert default.score(X) == pytest.approx(default.run_scores_.max())
    assert default.score(X) > 0


def test_the_default_survives_save_load_either_way(tmp_path):
    X = StandardScaler().fit_transform(load_iris().data)
    for seed in (0, 3):
        model = CDCClustering(3, n_init=5, epochs=5, random_state=seed).fit(X)
        persistence.save_model(model, tmp_path / "model.skcdc")
        loaded = persistence.load_model(tmp_path / "model.skcdc")
        assert loaded.consensus_ == model.consensus_
        np.testing.assert_array_equal(loaded.predict(X), model.labels_)


def test_one_run_is_not_combined(blobs):
    X, _ = blobs
    model = CDCClustering(3, n_init=1, **RUNS).fit(X)
    assert not isinstance(model.network_, RestartConsensus) and not model.consensus_


def test_many_clusters_start_from_the_reference_partition():
    # Beyond k-means++'s range of clusters the consensus of identical runs is
    # their own partition, found from the reference run's start.
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(400) % 40)
    probabilities = np.full((400, 40), 0.1 / 39)
    probabilities[np.arange(400), labels] = 0.9
    centers, _, consensus = fit_consensus([probabilities, probabilities], 0, reference=1)
    assert centers.shape == (40, 80)
    assert adjusted_rand_score(labels, consensus) == 1.0
