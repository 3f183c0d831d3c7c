"""Views: neighbour positives of vectors and the exact neighbour search."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from skcdc.views import NeighbourViews, knn_indices


@pytest.fixture(scope="module")
def points():
    return torch.as_tensor(np.random.RandomState(0).normal(size=(300, 4)), dtype=torch.float32)


def _pairs(views, draws=200):
    """Every (sample, positive) pair seen in ``draws`` passes over the data."""
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(views.data.shape[0])
    seen = set()
    for _ in range(draws):
        _, positive = views(index, generator)
        # Rows are distinct points, so a positive names its row by equality.
        match = (positive[:, None, :] == views.data[None, :, :]).all(dim=2)
        seen.update(zip(index.tolist(), match.float().argmax(dim=1).tolist()))
    return seen


def test_positives_are_drawn_from_every_neighbour(points):
    views = NeighbourViews(points, 5)
    graph = [set(row) for row in views.neighbors.tolist()]
    assert _pairs(views) == {(i, j) for i, row in enumerate(graph) for j in row}


def test_views_of_itself_pair_each_sample_with_itself(points):
    views = NeighbourViews(points, 5).of_itself()
    assert _pairs(views, draws=2) == {(i, i) for i in range(points.shape[0])}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_search_is_exact_in_blocks(points, metric):
    found = knn_indices(points, points, 6, metric=metric, exclude_self=True, block_size=64)
    reference = NearestNeighbors(n_neighbors=7, metric=metric).fit(points.numpy())
    expected = reference.kneighbors(points.numpy(), return_distance=False)[:, 1:]
    np.testing.assert_array_equal(found.numpy(), expected)


def test_a_single_sample_is_its_own_positive():
    views = NeighbourViews(torch.ones(1, 3), 5)
    assert views.neighbors.tolist() == [[0]]
