"""combine_restarts: k-means over the runs' cluster probabilities ("consensus"),
kept by default when it scores at least the best run ("best_or_consensus")."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from skcdc import CDCClustering, estimator, persistence
from skcdc.training.consensus import RestartConsensus, fit_consensus
from skcdc.datasets import load_table

# Short, unconstrained runs disagree with each other, so there is something to combine.
RUNS = {"epochs": 2, "batch_size": 64, "equipartition": "none", "random_state": 0}


@pytest.fixture(scope="module")
def consensus(blobs):
    X, _ = blobs
    return CDCClustering(3, n_init=3, combine_restarts="consensus", **RUNS).fit(X)


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
    again = CDCClustering(3, n_init=3, combine_restarts="consensus", **RUNS).fit(X)
    np.testing.assert_array_equal(again.labels_, consensus.labels_)


def test_survives_save_load_and_pickle(blobs, consensus, tmp_path):
    X, _ = blobs
    path = tmp_path / "consensus.skcdc"
    persistence.save_model(consensus, path)
    for loaded in (persistence.load_model(path), pickle.loads(pickle.dumps(consensus))):
        assert isinstance(loaded.network_, RestartConsensus)
        np.testing.assert_array_equal(loaded.predict(X), consensus.labels_)
        np.testing.assert_allclose(loaded.transform(X), consensus.transform(X), atol=1e-6)


def test_best_keeps_the_best_scored_run(blobs, consensus):
    X, _ = blobs
    best = CDCClustering(3, n_init=3, combine_restarts="best", **RUNS).fit(X)
    assert not isinstance(best.network_, RestartConsensus) and not best.consensus_
    assert best.score(X) == pytest.approx(best.run_scores_.max())
    # The same runs: combining them changes the result, not the runs.
    np.testing.assert_allclose(best.run_scores_, consensus.run_scores_)


def test_the_default_keeps_a_consensus_that_scores_as_well(blobs, consensus):
    X, _ = blobs
    default = CDCClustering(3, n_init=3, **RUNS).fit(X)
    assert default.combine_restarts == "best_or_consensus"
    # Every run and the consensus find the three blobs: the tie goes to the consensus.
    assert default.consensus_ and isinstance(default.network_, RestartConsensus)
    assert default.score(X) == pytest.approx(default.run_scores_.max())
    np.testing.assert_array_equal(default.labels_, consensus.labels_)


def test_the_default_keeps_the_best_run_when_the_consensus_scores_lower(blobs, monkeypatch):
    X, _ = blobs

    def one_cluster(probabilities, random_state):
        # A consensus with every sample at its first centre scores 0.
        centers, variance, labels = fit_consensus(probabilities, random_state)
        centers[1:] += 100.0
        return centers, variance, np.zeros_like(labels)

    monkeypatch.setattr(estimator, "fit_consensus", one_cluster)
    default = CDCClustering(3, n_init=3, **RUNS).fit(X)
    best = CDCClustering(3, n_init=3, combine_restarts="best", **RUNS).fit(X)
    assert not default.consensus_ and not isinstance(default.network_, RestartConsensus)
    np.testing.assert_array_equal(default.labels_, best.labels_)
    assert default.score(X) == pytest.approx(default.run_scores_.max())
    assert default.score(X) > 0


def test_the_default_survives_save_load_either_way(tmp_path):
    X = load_table("iris").X
    for seed in (0, 3):
        model = CDCClustering(3, n_init=5, epochs=5, random_state=seed).fit(X)
        persistence.save_model(model, tmp_path / "model.skcdc")
        loaded = persistence.load_model(tmp_path / "model.skcdc")
        assert loaded.consensus_ == model.consensus_
        np.testing.assert_array_equal(loaded.predict(X), model.labels_)


def test_models_pickled_before_the_option_existed_load_as_best(blobs):
    X, _ = blobs
    model = CDCClustering(3, n_init=2, combine_restarts="best", **RUNS).fit(X)
    state = model.__getstate__()
    del state["combine_restarts"], state["consensus_"]
    unpickled = CDCClustering.__new__(CDCClustering)
    unpickled.__setstate__(state)
    assert unpickled.get_params()["combine_restarts"] == "best"
    assert not unpickled.consensus_
    np.testing.assert_array_equal(unpickled.predict(X), model.labels_)


def test_consensus_pickled_before_the_fitted_flag_existed_knows_it(consensus):
    state = consensus.__getstate__()
    del state["consensus_"]
    unpickled = CDCClustering.__new__(CDCClustering)
    unpickled.__setstate__(state)
    assert unpickled.consensus_


def test_consensus_saved_before_the_fitted_flag_existed_loads(blobs, consensus, tmp_path):
    X, _ = blobs
    path = tmp_path / "consensus.skcdc"
    persistence.save_model(consensus, path)
    payload = torch.load(path, weights_only=True)
    del payload["values"]["consensus_"]
    torch.save(payload, path)
    loaded = persistence.load_model(path)
    assert isinstance(loaded.network_, RestartConsensus)
    np.testing.assert_array_equal(loaded.predict(X), consensus.labels_)


def test_one_run_is_not_combined(blobs):
    X, _ = blobs
    model = CDCClustering(3, n_init=1, combine_restarts="consensus", **RUNS).fit(X)
    assert not isinstance(model.network_, RestartConsensus) and not model.consensus_


@pytest.mark.parametrize(
    ("X", "params", "message"),
    [
        (np.zeros((20, 1, 4, 4), dtype=np.uint8), {}, r"image mode keeps the best-scored run"),
        (np.zeros((20, 4)), {"n_init_epochs": 1}, r"set n_init_epochs=None"),
    ],
)
def test_refuses_what_it_cannot_combine_before_training(X, params, message):
    model = CDCClustering(2, n_init=3, combine_restarts="consensus", **params)
    with pytest.raises(ValueError, match=message):
        model.fit(X)
    assert not hasattr(model, "network_")
