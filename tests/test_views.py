"""Views: neighbour positives of vectors, in memory or streamed."""

import numpy as np
import pytest
import torch

from skcdc.views import NeighbourViews


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


def test_streamed_rows_give_the_views_of_the_same_rows_in_memory(points, tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, points.numpy())
    streamed = NeighbourViews(np.load(path, mmap_mode="r"), 5)
    in_memory = NeighbourViews(points, 5)
    assert torch.equal(streamed.neighbors, in_memory.neighbors)
    index = torch.arange(0, 300, 7)
    a = streamed(index, torch.Generator().manual_seed(1))
    b = in_memory(index, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_single_sample_is_its_own_positive():
    views = NeighbourViews(torch.ones(1, 3), 5)
    assert views.neighbors.tolist() == [[0]]
