"""Views: neighbour positives of vectors, in memory or streamed, and of images."""

import numpy as np
import pytest
import torch

from skcdc.views import AugmentedViews, NeighbourViews


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


def _image_partners(views, draws=100):
    """Every (image, image of its second view) pair in ``draws`` passes, with
    an augmentation that changes nothing."""
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(views.images.shape[0])
    images = views.images.float().div(255).flatten(1)
    seen = []
    for _ in range(draws):
        first, second = views(index, generator)
        assert torch.equal(first.flatten(1), images)
        match = (second.flatten(1)[:, None, :] == images[None, :, :]).all(dim=2)
        seen += zip(index.tolist(), match.float().argmax(dim=1).tolist())
    return seen


@pytest.fixture(scope="module")
def distinct_images():
    # Image i is filled with the value i: a view names its image.
    return torch.arange(40, dtype=torch.uint8)[:, None, None, None].expand(40, 1, 4, 4).clone()


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_an_image_is_paired_with_a_neighbour_as_often_as_asked(distinct_images, share):
    neighbors = torch.stack([(torch.arange(40) + d) % 40 for d in (1, 2, 3)], dim=1)
    views = AugmentedViews(
        distinct_images, lambda image: image, torch.device("cpu"),
        neighbors=neighbors, neighbour_share=share,
    )
    seen = _image_partners(views)
    from_neighbour = [j != i for i, j in seen]
    assert all(j == i or j in neighbors[i].tolist() for i, j in seen)
    assert np.mean(from_neighbour) == pytest.approx(share, abs=0.03)
    if share == 1.0:
        assert {(i, j) for i, j in seen} == {(i, j) for i in range(40) for j in neighbors[i].tolist()}
    assert all(i == j for i, j in _image_partners(views.of_itself(), draws=2))
