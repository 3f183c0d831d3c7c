"""The label-free score: mutual information between a sample's cluster and its neighbours'."""

import numpy as np
import pytest

from skcdc.scoring import neighbour_agreement, neighbour_graph


def test_clusters_no_neighbour_crosses_score_log_k():
    labels = np.repeat([0, 1, 2], 4)
    # Each sample's neighbours are the other members of its cluster.
    neighbors = np.array([[j for j in range(12) if j // 4 == i // 4 and j != i] for i in range(12)])
    assert neighbour_agreement(labels, neighbors) == pytest.approx(np.log(3))


def test_one_cluster_or_no_neighbours_score_zero():
    neighbors = np.array([[1], [0], [3], [2]])
    assert neighbour_agreement(np.zeros(4, dtype=int), neighbors) == 0.0
    assert neighbour_agreement(np.arange(4), np.zeros((4, 0), dtype=int)) == 0.0


def test_clusters_that_ignore_the_neighbourhood_score_lower():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    graph = neighbour_graph(X, 5)
    assert graph.shape == (100, 5) and not (graph == np.arange(100)[:, None]).any()
    good = np.repeat([0, 1], 50)
    shuffled = rng.permutation(good)
    assert neighbour_agreement(good, graph) > neighbour_agreement(shuffled, graph) + 0.5


def test_the_graph_has_at_most_n_minus_one_neighbours():
    assert neighbour_graph(np.eye(3), 10).shape == (3, 2)
    assert neighbour_graph(np.ones((1, 2)), 10).shape == (1, 0)
